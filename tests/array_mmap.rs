//! Memory maps of stored arrays: arrays of 64 KiB of data or more are stored in aligned
//! frames and mapped in place; the data of a map equals the array's; damage to the data is
//! found by `MappedArray::verify`, `Shelf::verify` and every full read, and a damaged
//! header is an error, never a panic.

use std::path::{Path, PathBuf};

use pickleshelf::pickle::numpy::{self, ArrayHeader, Dtype, Order};
use pickleshelf::{Compression, Error, Shelf};

fn object_file(store: &Path, shelf: &Shelf, key: &str) -> PathBuf {
    let hex = shelf.digest(key).unwrap().unwrap().to_string();
    store.join("objects").join(&hex[..2]).join(&hex[2..])
}

fn f64_array(n: usize, order: Order, shape: &[usize]) -> (ArrayHeader, Vec<u8>) {
    let values = (0..n).map(|i| i as f64 * 0.5 - 7.0);
    (ArrayHeader::new(Dtype::Float64, shape, order), numpy::to_le_bytes(values))
}

#[test]
fn large_arrays_are_mapped_and_small_ones_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let shelf = Shelf::open(&path).unwrap();
    let (big, big_data) = f64_array(300 * 40, Order::Fortran, &[300, 40]);
    let (small, small_data) = f64_array(100, Order::C, &[10, 10]);
    shelf.insert_array_bytes("big", &big, &big_data).unwrap();
    shelf.insert_array_bytes("small", &small, &small_data).unwrap();
    let infos: Vec<_> = shelf.key_info("").map(|i| i.unwrap()).collect();
    assert_eq!(infos[0].key, "big");
    assert_eq!(infos[0].compression, Some(Compression::Aligned));
    shelf.close().unwrap();

    for read_only in [false, true] {
        let shelf = Shelf::builder(&path).read_only(read_only).open().unwrap();
        let m = shelf.map_array("big").unwrap().unwrap();
        assert!(m.is_mapped());
        assert_eq!(m.header(), &big);
        assert_eq!(m.data(), &big_data[..]);
        let slice = m.as_slice::<f64>().unwrap();
        assert_eq!(slice[1], -6.5);
        assert_eq!(slice.as_ptr() as usize % 64, 0, "data aligned to 64 bytes");
        m.verify().unwrap();
        let s = shelf.map_array("small").unwrap().unwrap();
        assert!(!s.is_mapped());
        assert_eq!(s.data(), &small_data[..]);
        assert!(shelf.map_array("missing").unwrap().is_none());
        assert!(matches!(m.as_slice::<f32>(), Err(numpy::ArrayError::TypeMismatch { .. })));
    }
}

#[test]
fn damaged_array_data_is_found_by_verify_and_full_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let shelf = Shelf::open(&path).unwrap();
    let (h, data) = f64_array(20_000, Order::C, &[20_000]);
    shelf.insert_array_bytes("a", &h, &data).unwrap();
    shelf.sync().unwrap();
    let file = object_file(&path, &shelf, "a");
    shelf.close().unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() - 5_000; // inside the data
    bytes[at] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();

    let shelf = Shelf::open(&path).unwrap();
    // The map is made without reading the data (documented): its own check finds it.
    let m = shelf.map_array("a").unwrap().unwrap();
    assert!(m.is_mapped());
    assert!(matches!(m.verify(), Err(Error::CorruptedObject { .. })));
    assert!(matches!(shelf.get_pickle("a"), Err(Error::CorruptedObject { .. })));
    assert!(matches!(shelf.get_array_bytes("a"), Err(Error::CorruptedObject { .. })));
    let report = shelf.verify().unwrap();
    assert!(!report.is_ok(), "{report:?}");
    assert!(report.problems.iter().any(|p| p.contains("hash")), "{report:?}");
}

#[test]
fn damaged_array_headers_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let shelf = Shelf::open(&path).unwrap();
    let (h, data) = f64_array(10_000, Order::C, &[100, 100]);
    shelf.insert_array_bytes("a", &h, &data).unwrap();
    shelf.sync().unwrap();
    let file = object_file(&path, &shelf, "a");
    shelf.close().unwrap();
    let good = std::fs::read(&file).unwrap();
    // every byte of the frame header and of the pickle around the data, and truncations
    let data_start = good.windows(8).position(|w| w == &data[..8]).unwrap();
    let mut spots: Vec<usize> = (0..data_start).collect();
    spots.extend(data_start + data.len()..good.len());
    for &i in &spots {
        for v in [good[i] ^ 0x01, good[i] ^ 0x80, 0xff] {
            if v == good[i] {
                continue;
            }
            let mut b = good.clone();
            b[i] = v;
            std::fs::write(&file, &b).unwrap();
            let shelf = Shelf::builder(&path).read_only(true).open().unwrap();
            match shelf.map_array("a") {
                // still a consistent array (e.g. a flip numpy's pickle ignores); a full
                // read then finds the damage
                Ok(Some(m)) => {
                    assert_eq!(Some(m.data().len()), m.header().data_len());
                    if m.is_mapped() {
                        assert!(
                            m.verify().is_err(),
                            "flip at {i} (of {}, data at {data_start}) to {v:#x} from {:#x} not found by verify: {:?}",
                            good.len(),
                            good[i],
                            m.header()
                        );
                    }
                }
                Ok(None) => panic!("key lost"),
                Err(e) => assert!(!e.to_string().is_empty()),
            }
            assert!(shelf.get_pickle("a").is_err(), "flip at {i} not found by a full read");
        }
    }
    for cut in [0, 3, data_start, good.len() - 1] {
        std::fs::write(&file, &good[..cut]).unwrap();
        let shelf = Shelf::builder(&path).read_only(true).open().unwrap();
        assert!(shelf.map_array("a").is_err(), "cut at {cut}");
    }
}

/// numpy's own pickles (protocols 3–5 keep the data in one piece) are mapped too.
#[test]
fn numpy_made_pickles_are_mapped() {
    // Python: pickle.dumps(numpy.arange(70000, dtype='u1') % 251, protocol=p); made here
    // by the writer, whose bytes equal numpy's (tests of pickleshelf-pickle).
    let data: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let p5 = numpy::write(&ArrayHeader::new(Dtype::UInt8, [70_000], Order::C), &data).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::open(dir.path().join("s.db")).unwrap();
    shelf.insert_pickle("p5", &p5).unwrap();
    let m = shelf.map_array("p5").unwrap().unwrap();
    assert!(m.is_mapped());
    assert_eq!(m.data(), &data[..]);
    assert_eq!(shelf.get_pickle("p5").unwrap().unwrap(), p5, "the pickle comes back byte for byte");
}
