//! `Shelf::transaction`: all-or-nothing commits over several keys, reads of the
//! transaction's own writes, aborts by error and by panic, and serialized writers.

use pickleshelf::{Error, Shelf};

fn open(dir: &tempfile::TempDir) -> Shelf {
    Shelf::open(dir.path().join("s")).expect("open")
}

#[test]
fn reads_see_the_transactions_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let shelf = open(&dir);
    shelf.insert("gone", &1).unwrap();
    let seen = shelf
        .transaction(|tx| {
            assert_eq!(tx.get::<i64>("a")?, None);
            tx.insert("a", &1)?;
            assert_eq!(tx.get::<i64>("a")?, Some(1));
            tx.insert("a", &2)?;
            assert!(tx.remove("gone")?);
            assert!(!tx.contains_key("gone")?);
            assert!(!tx.remove("never")?);
            tx.insert_pickle("p", b"\x80\x02K\x05.")?;
            assert_eq!(tx.get_pickle("p")?.as_deref(), Some(&b"\x80\x02K\x05."[..]));
            // Other readers do not see the writes before the commit.
            assert_eq!(shelf.get::<i64>("a")?, None);
            assert_eq!(shelf.get::<i64>("gone")?, Some(1));
            tx.get::<i64>("a")
        })
        .unwrap();
    assert_eq!(seen, Some(2));
    assert_eq!(shelf.get::<i64>("a").unwrap(), Some(2));
    assert_eq!(shelf.get::<i64>("p").unwrap(), Some(5));
    assert!(!shelf.contains_key("gone").unwrap());
    shelf.close().unwrap();
    let shelf = open(&dir);
    let all: Vec<(String, i64)> = shelf.iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(all, [("a".to_string(), 2), ("p".to_string(), 5)]);
}

#[derive(Debug)]
enum AppError {
    Store(Error),
    Insufficient,
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError::Store(e)
    }
}

#[test]
fn an_error_or_a_panic_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let shelf = open(&dir);
    shelf.insert("x", &vec![0u8; 100_000]).unwrap();
    let r: Result<(), AppError> = shelf.transaction(|tx| {
        tx.insert("x", &1)?;
        tx.insert("y", &vec![1u8; 100_000])?;
        tx.remove("x")?;
        Err(AppError::Insufficient)
    });
    assert!(matches!(r, Err(AppError::Insufficient)));
    // Bad input inside aborts too, naming what is wrong.
    let r = shelf.transaction(|tx| {
        tx.insert("z", &1)?;
        tx.insert_pickle("bad", b"not a pickle")
    });
    assert!(matches!(r, Err(Error::Pickle(_))));
    let long = "k".repeat(pickleshelf::MAX_KEY_LEN + 1);
    assert!(matches!(shelf.transaction(|tx| tx.insert(&long, &1)), Err(Error::InvalidKey { .. })));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        shelf.transaction(|tx| -> Result<(), Error> {
            tx.insert("w", &1)?;
            panic!("the closure fails");
        })
    }));
    assert!(r.is_err());
    let keys: Vec<String> = shelf.keys().collect::<Result<_, _>>().unwrap();
    assert_eq!(keys, ["x"]);
    assert_eq!(shelf.get::<Vec<u8>>("x").unwrap(), Some(vec![0u8; 100_000]));
    // The store takes writes after the panic.
    shelf.insert("after", &1).unwrap();
    assert!(shelf.verify().unwrap().is_ok());
    // A type mismatch inside names the key and aborts.
    let r: Result<(), AppError> = shelf.transaction(|tx| {
        tx.insert("after", &2)?;
        let _: Option<String> = tx.get("x")?;
        Ok(())
    });
    assert!(matches!(r, Err(AppError::Store(Error::Mismatch { ref key, .. })) if key == "x"), "{r:?}");
    assert_eq!(shelf.get::<i64>("after").unwrap(), Some(1));
    shelf.close().unwrap();
    let ro = Shelf::builder(dir.path().join("s")).read_only(true).open().unwrap();
    assert!(matches!(ro.transaction(|tx| tx.insert("k", &1)), Err(Error::ReadOnly { .. })));
}

#[test]
fn transfers_keep_the_total_under_contention() {
    let dir = tempfile::tempdir().unwrap();
    let shelf = open(&dir);
    let accounts = 8;
    for i in 0..accounts {
        shelf.insert(&format!("acct:{i}"), &1000i64).unwrap();
    }
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let shelf = &shelf;
            s.spawn(move || {
                let mut x = t + 1;
                for _ in 0..150 {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let (from, to) = ((x >> 33) % accounts, (x >> 13) % accounts);
                    let amount = ((x >> 40) % 300) as i64;
                    let r: Result<(), AppError> = shelf.transaction(|tx| {
                        let a: i64 = tx.get(&format!("acct:{from}"))?.unwrap_or(0);
                        if a < amount {
                            return Err(AppError::Insufficient);
                        }
                        tx.insert(&format!("acct:{from}"), &(a - amount))?;
                        let b: i64 = tx.get(&format!("acct:{to}"))?.unwrap_or(0);
                        tx.insert(&format!("acct:{to}"), &(b + amount))?;
                        Ok(())
                    });
                    assert!(matches!(r, Ok(()) | Err(AppError::Insufficient)), "{r:?}");
                    // Plain writes to other keys interleave with transactions.
                    shelf.insert(&format!("log:{t}"), &x).unwrap();
                }
            });
        }
    });
    let total: i64 = shelf.scan_prefix::<i64>("acct:").map(|r| r.unwrap().1).sum();
    assert_eq!(total, 1000 * accounts as i64);
    assert!(shelf.scan_prefix::<i64>("acct:").all(|r| r.unwrap().1 >= 0));
}
