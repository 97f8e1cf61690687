//! [`Transaction`]: reads and writes of several keys that commit together
//! ([`Shelf::transaction`]).
//!
//! Invariant: a transaction holds the store's write lock from its first read to its
//! commit, its reads see its own writes first, and its writes reach the store in one
//! commit, or not at all when its closure fails.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::blob::Digest;
use crate::error::{Error, Result, decode_as};
use crate::pickle;
use crate::shelf::Shelf;
use crate::store::Txn;

/// The view of the store inside [`Shelf::transaction`]: reads see the transaction's own
/// writes; writes are kept until the closure returns `Ok`, then committed together.
pub struct Transaction<'t, 's> {
    tx: &'t mut Txn<'s>,
}

impl Transaction<'_, '_> {
    /// The value under `key` as a `T`, as this transaction sees it.
    ///
    /// # Errors
    /// As for [`Shelf::get`].
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.tx.get(key)?.map(|bytes| decode_as(key, &bytes)).transpose()
    }

    /// The pickle bytes under `key`, as this transaction sees them.
    ///
    /// # Errors
    /// As for [`Shelf::get_pickle`].
    pub fn get_pickle(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.tx.get(key)
    }

    /// True when `key` holds a value, as this transaction sees it.
    ///
    /// # Errors
    /// [`Error::Engine`], [`Error::Corrupted`].
    pub fn contains_key(&self, key: &str) -> Result<bool> {
        self.tx.contains(key)
    }

    /// The address of the value under `key`, as this transaction sees it.
    ///
    /// # Errors
    /// [`Error::Engine`], [`Error::Corrupted`].
    pub fn digest(&self, key: &str) -> Result<Option<Digest>> {
        self.tx.digest(key)
    }

    /// Stores `value` under `key` when the transaction commits (pickled now, with the
    /// store's protocol).
    ///
    /// # Errors
    /// [`Error::Pickle`] when `value` cannot be pickled; [`Error::InvalidKey`].
    pub fn insert<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<()> {
        let bytes = pickle::to_vec_with_protocol(value, self.tx.protocol())?;
        self.tx.put(key, bytes)
    }

    /// Stores pickle bytes under `key` byte-exact when the transaction commits, after
    /// checking that they decode.
    ///
    /// # Errors
    /// [`Error::Pickle`] when `bytes` is not a valid pickle; [`Error::InvalidKey`].
    pub fn insert_pickle(&mut self, key: &str, bytes: &[u8]) -> Result<()> {
        pickle::check(bytes)?;
        self.tx.put(key, bytes.to_vec())
    }

    /// Removes `key` when the transaction commits; returns whether it holds a value now.
    ///
    /// # Errors
    /// [`Error::Engine`], [`Error::Corrupted`].
    pub fn remove(&mut self, key: &str) -> Result<bool> {
        let was = self.tx.contains(key)?;
        self.tx.remove(key);
        Ok(was)
    }
}

impl Shelf {
    /// Runs `f` as one read-write transaction over any number of keys: all of its writes
    /// commit together in one atomic commit (after a crash all of them are there or none),
    /// and when `f` returns an error — or panics — nothing is written. Inside, reads see
    /// the transaction's own writes.
    ///
    /// Isolation: the transaction holds the store's write lock from start to commit, so
    /// transactions and all other writes are serialized (other writers wait; keep `f`
    /// short). Reads through other handles do not wait and see the store as it was until
    /// the commit. Inside `f`, write only through the [`Transaction`]: a write through a
    /// `Shelf` (or memo) of the same store would wait for the lock `f` holds, forever.
    ///
    /// `f`'s error type is yours, as long as a store error converts into it
    /// (`pickleshelf::Error` itself, `anyhow::Error`, ...).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = pickleshelf::Shelf::open(dir.path().join("s"))?;
    /// shelf.insert("alice", &100)?;
    /// shelf.insert("bob", &0)?;
    /// shelf.transaction(|tx| {
    ///     let a: i64 = tx.get("alice")?.unwrap_or(0);
    ///     let b: i64 = tx.get("bob")?.unwrap_or(0);
    ///     tx.insert("alice", &(a - 30))?;
    ///     tx.insert("bob", &(b + 30))?;
    ///     Ok::<_, pickleshelf::Error>(())
    /// })?;
    /// assert_eq!((shelf.get::<i64>("alice")?, shelf.get::<i64>("bob")?), (Some(70), Some(30)));
    ///
    /// // An error aborts: nothing is written.
    /// let r: Result<(), pickleshelf::Error> = shelf.transaction(|tx| {
    ///     tx.insert("alice", &0)?;
    ///     Err(pickleshelf::Error::Config("changed my mind".into()))
    /// });
    /// assert!(r.is_err());
    /// assert_eq!(shelf.get::<i64>("alice")?, Some(70));
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    ///
    /// # Errors
    /// `f`'s error (nothing written); [`Error::ReadOnly`]; when the commit fails, the
    /// store errors of [`Shelf::apply`] (nothing written).
    pub fn transaction<R, E, F>(&self, f: F) -> Result<R, E>
    where
        E: From<Error>,
        F: FnOnce(&mut Transaction<'_, '_>) -> Result<R, E>,
    {
        self.store().transact(|tx| f(&mut Transaction { tx }))
    }
}
