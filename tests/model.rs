//! Model test: the store against a `BTreeMap`, with reopens.

use pickleshelf::{Durability, Shelf};

/// Found by proptest (not shrinkable: a race): sled 0.34 lets go of its file lock in
/// background threads after its `Db` is dropped, so opening the store right after the last
/// handle was dropped failed with `Error::Engine` ("could not acquire lock").
#[test]
fn regression_reopen_right_after_drop() {
    let int = |n: u8| vec![0x80, 4, b'K', n, b'.'];
    let mut big = vec![0x80, 4, 0x8e];
    big.extend_from_slice(&20_000u64.to_le_bytes());
    big.extend((0..20_000u32).map(|n| (n.wrapping_mul(2_654_435_761) >> 13) as u8));
    big.extend_from_slice(b"\x94.");
    for durability in [Durability::ProcessCrash, Durability::PowerLoss] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("reopen.db");
        for i in 0..60u8 {
            let shelf = Shelf::builder(&path)
                .durability(durability)
                .open()
                .expect("open right after the last handle was dropped");
            for j in 0..20u8 {
                shelf.insert_pickle(&format!("k{}", (i + j) % 16), &int(j)).expect("insert_pickle");
            }
            shelf.insert_pickle(&format!("big{}", i % 4), &big).expect("insert_pickle");
            shelf.remove(&format!("k{}", i / 2 % 16)).expect("remove");
        }
    }
}
