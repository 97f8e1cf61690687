//! [`Transaction`]: reads and writes of several keys that commit together
//! ([`Shelf::transaction`](crate::Shelf::transaction)).
//!
//! Invariant: a transaction holds the store's write lock from its first read to its
//! commit, its reads see its own writes first, and its writes reach the store in one
//! commit, or not at all when its closure fails.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::blob::Digest;
use crate::error::{Error, Result, decode_as};
use crate::pickle;
use crate::store::{Store, Txn};

/// The view of the store inside [`Shelf::transaction`](crate::Shelf::transaction): reads see the transaction's own
/// writes; writes are kept until the closure returns `Ok`, then committed together.
pub struct Transaction<'t, 's> {
    tx: &'t mut Txn<'s>,
}

impl Transaction<'_, '_> {
    /// The value under `key` as a `T`, as this transaction sees it.
    ///
    /// # Errors
    /// As for [`Shelf::get`](crate::Shelf::get).
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.tx.get(key)?.map(|bytes| decode_as(key, &bytes)).transpose()
    }

    /// The pickle bytes under `key`, as this transaction sees them.
    ///
    /// # Errors
    /// As for [`Shelf::get_pickle`](crate::Shelf::get_pickle).
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

/// Runs `f` as one transaction over `store` ([`crate::Shelf::transaction`]).
pub(crate) fn run<R, E, F>(store: &Store, f: F) -> Result<R, E>
where
    E: From<Error>,
    F: FnOnce(&mut Transaction<'_, '_>) -> Result<R, E>,
{
    store.transact(|tx| f(&mut Transaction { tx }))
}
