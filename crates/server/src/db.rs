//! The store as commands see it: directly, or through a transaction (`MULTI`/`EXEC`)
//! whose writes are collected in one [`Batch`] and applied all-or-nothing.
//!
//! Invariant: inside a transaction, reads see the transaction's own earlier writes
//! (an overlay) and the store; nothing reaches the store before [`Txn::commit`], which
//! applies every write in one atomic `Shelf::apply`.

use std::collections::BTreeMap;

use pickleshelf::{Batch, Shelf};

/// The writes of a transaction not yet applied.
#[derive(Default)]
pub(crate) struct Txn {
    overlay: BTreeMap<String, Option<Vec<u8>>>,
    batch: Batch,
}

impl Txn {
    /// Applies every write at once.
    pub(crate) fn commit(self, shelf: &Shelf) -> pickleshelf::Result<()> {
        if self.batch.is_empty() { Ok(()) } else { shelf.apply(self.batch) }
    }

    /// True when the transaction wrote something.
    pub(crate) fn wrote(&self) -> bool {
        !self.batch.is_empty()
    }

    /// The keys the transaction wrote (`Some`) or removed (`None`), in order.
    pub(crate) fn overlay(&self) -> &BTreeMap<String, Option<Vec<u8>>> {
        &self.overlay
    }
}

/// The store for one command.
pub(crate) struct Db<'a> {
    pub(crate) shelf: &'a Shelf,
    pub(crate) txn: Option<&'a mut Txn>,
}

impl Db<'_> {
    /// The stored pickle of `key`.
    pub(crate) fn get(&self, key: &str) -> pickleshelf::Result<Option<Vec<u8>>> {
        if let Some(t) = &self.txn
            && let Some(v) = t.overlay.get(key)
        {
            return Ok(v.clone());
        }
        self.shelf.get_pickle(key)
    }

    /// True when `key` holds a value.
    pub(crate) fn exists(&self, key: &str) -> pickleshelf::Result<bool> {
        if let Some(t) = &self.txn
            && let Some(v) = t.overlay.get(key)
        {
            return Ok(v.is_some());
        }
        self.shelf.contains_key(key)
    }

    /// Stores the pickle `stored` (already checked to decode) under `key`.
    pub(crate) fn put(&mut self, key: &str, stored: &[u8]) -> pickleshelf::Result<()> {
        match &mut self.txn {
            Some(t) => {
                t.batch.insert_pickle(key, stored)?;
                t.overlay.insert(key.to_owned(), Some(stored.to_vec()));
                Ok(())
            }
            None => self.shelf.insert_pickle(key, stored),
        }
    }

    /// Stores several pickles at once (atomically).
    pub(crate) fn put_many(&mut self, items: &[(&str, &[u8])]) -> pickleshelf::Result<()> {
        match &mut self.txn {
            Some(_) => {
                for (k, v) in items {
                    self.put(k, v)?;
                }
                Ok(())
            }
            None => {
                let mut batch = Batch::new();
                for (k, v) in items {
                    batch.insert_pickle(k, v)?;
                }
                self.shelf.apply(batch)
            }
        }
    }

    /// Removes `keys` at once (atomically); returns how many existed (a key named
    /// twice counts once).
    pub(crate) fn del_many(&mut self, keys: &[&str]) -> pickleshelf::Result<i64> {
        let mut seen = std::collections::HashSet::new();
        let mut n = 0;
        let mut batch = Batch::new();
        for k in keys {
            if seen.insert(*k) && self.exists(k)? {
                n += 1;
                batch.remove(k);
            }
        }
        match &mut self.txn {
            Some(t) => {
                for k in seen {
                    t.batch.remove(k);
                    t.overlay.insert(k.to_owned(), None);
                }
            }
            None if batch.is_empty() => {}
            None => self.shelf.apply(batch)?,
        }
        Ok(n)
    }
}
