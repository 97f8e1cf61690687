//! The decoded-object cache: an LRU of decoded values keyed by content digest, with a
//! budget in estimated bytes and in entries, explicit eviction and pinning, and a
//! bounded map from keys to digests so that a hot read touches no storage at all.
//!
//! Invariants:
//! - Content under a digest never changes, so an object entry never goes stale; only the
//!   key → digest map must follow writes, and writers update it (under the store's write
//!   lock) after their change is applied.
//! - A reader that fetched a key's digest from storage records it only if no write
//!   touched that key's shard meanwhile (a per-shard write counter), so a slow reader can
//!   never put an old digest back after a writer replaced it.
//! - Unpinned entries' estimated bytes stay within the byte budget and their number
//!   within the entry budget (both split evenly across shards); pinned entries are never
//!   evicted and are counted apart.
//!
//! Sharded (16 shards, chosen by the digest's first byte, and by a key's hash for the
//! key map): two threads reading hot keys rarely meet on one lock.

use std::any::{Any, TypeId};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};

use lru::LruCache;

use crate::blob::Digest;

const SHARDS: usize = 16;

/// A cached decoded object (a `Value` or a typed `T`), shared.
pub(crate) type Object = Arc<dyn Any + Send + Sync>;

/// Counters of the cache, cheap enough to keep on always.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Reads answered from the cache.
    pub hits: u64,
    /// Reads that had to decode.
    pub misses: u64,
    /// Entries evicted to keep within the budget (not counting explicit eviction).
    pub evictions: u64,
    /// Entries held now (pinned included).
    pub entries: u64,
    /// Estimated bytes held now (pinned included).
    pub bytes: u64,
    /// Pinned entries among them.
    pub pinned: u64,
}

/// A counter alone on its cache line.
#[derive(Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

/// A fast, per-process-seeded hasher for digests (already uniform: their first 8 bytes
/// suffice) and for keys.
#[derive(Clone)]
struct Seeded(u64);

impl BuildHasher for Seeded {
    type Hasher = Mix;
    fn build_hasher(&self) -> Mix {
        Mix(self.0)
    }
}

struct Mix(u64);

impl Hasher for Mix {
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0 ^ u64::from_le_bytes(w)).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.0 = (self.0 ^ u64::from_le_bytes(w) ^ rest.len() as u64)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .rotate_left(29);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct ObjKey {
    digest: Digest,
    ty: TypeId,
}

impl Hash for ObjKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut w = [0u8; 8];
        w.copy_from_slice(&self.digest.0[8..16]);
        state.write_u64(u64::from_le_bytes(w));
        self.ty.hash(state);
    }
}

struct Entry {
    value: Object,
    bytes: u64,
    pinned: bool,
}

struct Shard {
    lru: LruCache<ObjKey, Entry, Seeded>,
    /// Estimated bytes of unpinned entries.
    bytes: u64,
    unpinned: u64,
    pinned_bytes: u64,
    pinned: u64,
}

struct KeyShard {
    map: std::collections::HashMap<Box<str>, KeyEntry, Seeded>,
}

/// What the key map holds for a key: its digest, and a weak link to the object last
/// returned for it (with its type), so that a repeated read of a hot key is one lookup.
/// The link is weak: it never keeps an object the LRU evicted alive.
struct KeyEntry {
    digest: Digest,
    recent: Option<(TypeId, Weak<dyn Any + Send + Sync>)>,
}

/// The cache shared by all handles of a store.
pub(crate) struct Cache {
    shards: Box<[Mutex<Shard>]>,
    keys: Box<[RwLock<KeyShard>]>,
    /// Bumped by every write to a key of the shard (see the module invariants).
    key_writes: Box<[AtomicU64]>,
    key_hasher: Seeded,
    max_bytes: AtomicU64,
    max_entries: AtomicU64,
    /// Per key shard (for the key map's fast path) and per object shard, each on its own
    /// cache line, so threads reading different keys do not bounce one counter.
    hits: Box<[Padded]>,
    misses: Box<[Padded]>,
    evictions: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Cache {
    /// A cache holding at most `max_bytes` estimated bytes and `max_entries` entries
    /// (either zero disables it).
    pub(crate) fn new(max_bytes: u64, max_entries: u64) -> Cache {
        let seed = std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64);
        let shards = (0..SHARDS)
            .map(|i| {
                Mutex::new(Shard {
                    lru: LruCache::unbounded_with_hasher(Seeded(seed ^ i as u64)),
                    bytes: 0,
                    unpinned: 0,
                    pinned_bytes: 0,
                    pinned: 0,
                })
            })
            .collect();
        let keys = (0..SHARDS)
            .map(|i| {
                RwLock::new(KeyShard {
                    map: std::collections::HashMap::with_hasher(Seeded(seed.rotate_left(i as u32 + 1))),
                })
            })
            .collect();
        Cache {
            shards,
            keys,
            key_writes: (0..SHARDS).map(|_| AtomicU64::new(0)).collect(),
            key_hasher: Seeded(seed.rotate_left(17)),
            max_bytes: AtomicU64::new(max_bytes),
            max_entries: AtomicU64::new(max_entries),
            hits: (0..SHARDS).map(|_| Padded::default()).collect(),
            misses: (0..SHARDS).map(|_| Padded::default()).collect(),
            evictions: AtomicU64::new(0),
        }
    }

    /// True when the budget allows caching anything.
    pub(crate) fn enabled(&self) -> bool {
        self.max_bytes.load(Ordering::Relaxed) > 0 && self.max_entries.load(Ordering::Relaxed) > 0
    }

    fn shard(&self, d: &Digest) -> &Mutex<Shard> {
        &self.shards[usize::from(d.0[0]) % SHARDS]
    }

    fn key_shard(&self, key: &str) -> usize {
        (self.key_hasher.hash_one(key) % SHARDS as u64) as usize
    }

    fn per_shard(&self) -> (u64, u64) {
        let b = self.max_bytes.load(Ordering::Relaxed);
        let e = self.max_entries.load(Ordering::Relaxed);
        (b.div_ceil(SHARDS as u64), e.div_ceil(SHARDS as u64))
    }

    // ----- key → digest -----

    /// The digest cached for `key`, the object last returned for it as type `ty` when it is
    /// still alive (counted as a hit), and the shard's write counter to pass back to
    /// [`Cache::remember_key`] after a storage lookup.
    pub(crate) fn key_lookup(&self, key: &str, ty: Option<TypeId>) -> (Option<Digest>, Option<Object>, u64) {
        let s = self.key_shard(key);
        let stamp = self.key_writes[s].load(Ordering::Acquire);
        let shard = self.keys[s].read().unwrap_or_else(PoisonError::into_inner);
        let Some(e) = shard.map.get(key) else {
            return (None, None, stamp);
        };
        let obj = match (&e.recent, ty) {
            (Some((t, weak)), Some(ty)) if *t == ty => weak.upgrade(),
            _ => None,
        };
        if obj.is_some() {
            self.hits[s].0.fetch_add(1, Ordering::Relaxed);
        }
        (Some(e.digest), obj, stamp)
    }

    /// Links `key` to the object just returned for it, if the key map still gives it
    /// `digest`.
    pub(crate) fn remember_object(&self, key: &str, digest: &Digest, ty: TypeId, obj: &Object) {
        let s = self.key_shard(key);
        let mut shard = self.keys[s].write().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = shard.map.get_mut(key)
            && e.digest == *digest
        {
            e.recent = Some((ty, Arc::downgrade(obj)));
        }
    }

    /// Records `key → digest` read from storage, unless a write to the shard happened
    /// since `stamp` was taken.
    pub(crate) fn remember_key(&self, key: &str, digest: Digest, stamp: u64) {
        if !self.enabled() {
            return;
        }
        let s = self.key_shard(key);
        let mut shard = self.keys[s].write().unwrap_or_else(PoisonError::into_inner);
        if self.key_writes[s].load(Ordering::Acquire) != stamp {
            return;
        }
        let (_, max_entries) = self.per_shard();
        if shard.map.len() as u64 >= max_entries.max(1)
            && !shard.map.contains_key(key)
            && let Some(victim) = shard.map.keys().next().cloned()
        {
            shard.map.remove(&victim);
        }
        shard.map.insert(key.into(), KeyEntry { digest, recent: None });
    }

    /// A writer changed `key` (to `digest`, or removed it with `None`). Called after the
    /// change is applied.
    pub(crate) fn key_written(&self, key: &str, digest: Option<Digest>) {
        let s = self.key_shard(key);
        let mut shard = self.keys[s].write().unwrap_or_else(PoisonError::into_inner);
        self.key_writes[s].fetch_add(1, Ordering::AcqRel);
        match digest {
            // Keep the map warm for keys already in it; new keys enter on reads.
            Some(d) => {
                if let Some(slot) = shard.map.get_mut(key) {
                    *slot = KeyEntry { digest: d, recent: None };
                }
            }
            None => {
                shard.map.remove(key);
            }
        }
    }

    /// Forgets every key → digest entry (e.g. after a batch that touched many keys).
    pub(crate) fn forget_keys(&self) {
        for (s, shard) in self.keys.iter().enumerate() {
            let mut shard = shard.write().unwrap_or_else(PoisonError::into_inner);
            self.key_writes[s].fetch_add(1, Ordering::AcqRel);
            shard.map.clear();
        }
    }

    // ----- digest → object -----

    /// The cached object of type `ty` for `digest`, counting a hit or a miss.
    pub(crate) fn get(&self, digest: &Digest, ty: TypeId) -> Option<Object> {
        let k = ObjKey { digest: *digest, ty };
        let found = lock(self.shard(digest)).lru.get(&k).map(|e| Arc::clone(&e.value));
        match &found {
            Some(_) => self.hits[usize::from(digest.0[0]) % SHARDS].0.fetch_add(1, Ordering::Relaxed),
            None => self.misses[usize::from(digest.0[0]) % SHARDS].0.fetch_add(1, Ordering::Relaxed),
        };
        found
    }

    /// Caches an object of estimated size `bytes`, evicting least recently used entries
    /// of its shard to stay in budget. An object larger than a shard's budget is not
    /// cached.
    pub(crate) fn insert(&self, digest: &Digest, ty: TypeId, value: Object, bytes: u64) {
        if !self.enabled() {
            return;
        }
        let (max_bytes, max_entries) = self.per_shard();
        if bytes > max_bytes {
            return;
        }
        let mut shard = lock(self.shard(digest));
        let k = ObjKey { digest: *digest, ty };
        if let Some(old) = shard.lru.pop(&k) {
            shard.account(&old, -1);
        }
        let entry = Entry { value, bytes, pinned: false };
        shard.account(&entry, 1);
        shard.lru.put(k, entry);
        let evicted = shard.shrink(max_bytes, max_entries);
        self.evictions.fetch_add(evicted, Ordering::Relaxed);
    }

    /// Drops every cached object of `digest` (all types). Returns how many.
    pub(crate) fn evict(&self, digest: &Digest) -> u64 {
        let mut shard = lock(self.shard(digest));
        let keys: Vec<ObjKey> = shard.lru.iter().filter(|(k, _)| k.digest == *digest).map(|(k, _)| *k).collect();
        for k in &keys {
            if let Some(e) = shard.lru.pop(k) {
                shard.account(&e, -1);
            }
        }
        keys.len() as u64
    }

    /// Drops everything (pinned entries included) and the key map.
    pub(crate) fn clear(&self) {
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            shard.lru.clear();
            shard.bytes = 0;
            shard.unpinned = 0;
            shard.pinned_bytes = 0;
            shard.pinned = 0;
        }
        self.forget_keys();
    }

    /// Sets a new budget, evicting at once what no longer fits.
    pub(crate) fn set_budget(&self, max_bytes: u64, max_entries: u64) {
        self.max_bytes.store(max_bytes, Ordering::Relaxed);
        self.max_entries.store(max_entries, Ordering::Relaxed);
        let (b, e) = self.per_shard();
        for shard in self.shards.iter() {
            let evicted = lock(shard).shrink(b, e);
            self.evictions.fetch_add(evicted, Ordering::Relaxed);
        }
        if max_bytes == 0 || max_entries == 0 {
            self.forget_keys();
        }
    }

    /// The budget: (estimated bytes, entries).
    pub(crate) fn budget(&self) -> (u64, u64) {
        (self.max_bytes.load(Ordering::Relaxed), self.max_entries.load(Ordering::Relaxed))
    }

    /// Pins or unpins every cached object of `digest`; returns how many entries changed.
    pub(crate) fn set_pinned(&self, digest: &Digest, pinned: bool) -> u64 {
        let mut shard = lock(self.shard(digest));
        let keys: Vec<ObjKey> =
            shard.lru.iter().filter(|(k, e)| k.digest == *digest && e.pinned != pinned).map(|(k, _)| *k).collect();
        for k in &keys {
            if let Some(mut e) = shard.lru.pop(k) {
                shard.account(&e, -1);
                e.pinned = pinned;
                shard.account(&e, 1);
                shard.lru.put(*k, e);
            }
        }
        if !pinned {
            let (b, e) = self.per_shard();
            let evicted = shard.shrink(b, e);
            self.evictions.fetch_add(evicted, Ordering::Relaxed);
        }
        keys.len() as u64
    }

    pub(crate) fn stats(&self) -> CacheStats {
        let mut s = CacheStats {
            hits: self.hits.iter().map(|c| c.0.load(Ordering::Relaxed)).sum(),
            misses: self.misses.iter().map(|c| c.0.load(Ordering::Relaxed)).sum(),
            evictions: self.evictions.load(Ordering::Relaxed),
            ..CacheStats::default()
        };
        for shard in self.shards.iter() {
            let shard = lock(shard);
            s.entries += shard.unpinned + shard.pinned;
            s.bytes += shard.bytes + shard.pinned_bytes;
            s.pinned += shard.pinned;
        }
        s
    }
}

impl Shard {
    fn account(&mut self, e: &Entry, sign: i64) {
        let (bytes, count) =
            if e.pinned { (&mut self.pinned_bytes, &mut self.pinned) } else { (&mut self.bytes, &mut self.unpinned) };
        if sign > 0 {
            *bytes += e.bytes;
            *count += 1;
        } else {
            *bytes = bytes.saturating_sub(e.bytes);
            *count = count.saturating_sub(1);
        }
    }

    /// Evicts least recently used unpinned entries until within budget.
    fn shrink(&mut self, max_bytes: u64, max_entries: u64) -> u64 {
        let mut evicted = 0;
        // Pinned entries met at the LRU end are moved to the front; each at most once.
        let mut skips = self.pinned;
        while self.bytes > max_bytes || self.unpinned > max_entries {
            let Some((k, e)) = self.lru.pop_lru() else {
                break;
            };
            if e.pinned {
                self.lru.put(k, e);
                if skips == 0 {
                    break;
                }
                skips -= 1;
                continue;
            }
            self.account(&e, -1);
            evicted += 1;
        }
        evicted
    }
}

/// Estimated heap and inline bytes of a decoded [`crate::pickle::Value`].
pub(crate) fn value_bytes(v: &crate::pickle::Value) -> u64 {
    use crate::pickle::Node;
    let mut total = std::mem::size_of::<crate::pickle::Value>() as u64 + 64;
    for n in v.nodes() {
        total += std::mem::size_of::<Node>() as u64;
        total += match n {
            Node::Str(s) => s.as_surrogatepass().len() as u64 + 16,
            Node::Bytes(b) | Node::ByteArray(b) => b.capacity() as u64 + 16,
            Node::List(x) | Node::Tuple(x) | Node::Set(x) | Node::FrozenSet(x) => x.capacity() as u64 * 4 + 16,
            Node::Dict(x) => x.capacity() as u64 * 8 + 16,
            Node::BigInt(b) => b.magnitude().len() as u64 * 4 + 48,
            Node::Global(g) => (g.module.len() + g.name.len()) as u64 + 80,
            Node::Object(_) => 128,
            _ => 0,
        };
    }
    total
}

/// Estimated bytes of a typed value decoded from a pickle of `pickle_len` bytes: the
/// type's inline size plus twice the pickle's length (decoded Rust data — strings,
/// vectors and their allocator overhead — came to 1.0–2.2× its pickle for the records of
/// the benchmarks and of `tests/cache.rs`, so the estimate errs on the safe side).
pub(crate) fn typed_bytes<T>(pickle_len: usize) -> u64 {
    std::mem::size_of::<T>() as u64 + 2 * pickle_len as u64 + 64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(i: u8) -> Digest {
        Digest([i; 32])
    }

    fn obj(v: u64) -> Object {
        Arc::new(v)
    }

    fn get_u64(c: &Cache, i: u8) -> Option<u64> {
        c.get(&d(i), TypeId::of::<u64>()).and_then(|o| o.downcast_ref::<u64>().copied())
    }

    #[test]
    fn evicts_least_recently_used_within_a_shard() {
        // Digests whose first byte is a multiple of 16 share shard 0; 3 entries per shard.
        let c = Cache::new(1 << 30, 3 * SHARDS as u64);
        for i in [0u8, 16, 32] {
            c.insert(&d(i), TypeId::of::<u64>(), obj(u64::from(i)), 10);
        }
        assert_eq!(get_u64(&c, 0), Some(0)); // 0 is now the most recent
        c.insert(&d(48), TypeId::of::<u64>(), obj(48), 10);
        assert_eq!(get_u64(&c, 16), None, "16 was least recently used");
        assert_eq!(get_u64(&c, 0), Some(0));
        assert_eq!(get_u64(&c, 32), Some(32));
        assert_eq!(get_u64(&c, 48), Some(48));
        let s = c.stats();
        assert_eq!((s.entries, s.bytes, s.evictions, s.hits, s.misses), (3, 30, 1, 4, 1));
    }

    #[test]
    fn byte_budget_holds() {
        let c = Cache::new(1000 * SHARDS as u64, 1 << 20);
        for i in 0..=255u8 {
            c.insert(&d(i), TypeId::of::<u64>(), obj(u64::from(i)), 300);
        }
        let s = c.stats();
        assert!(s.bytes <= 1000 * SHARDS as u64, "{s:?}");
        assert_eq!(s.entries, 3 * SHARDS as u64);
        assert_eq!(s.evictions, 256 - 3 * SHARDS as u64);
        // Too large for a shard: not cached at all.
        c.insert(&d(7), TypeId::of::<String>(), Arc::new(String::new()), 5000);
        assert!(c.get(&d(7), TypeId::of::<String>()).is_none());
    }

    #[test]
    fn types_are_separate_and_evict_drops_all() {
        let c = Cache::new(1 << 20, 1 << 20);
        c.insert(&d(1), TypeId::of::<u64>(), obj(1), 10);
        c.insert(&d(1), TypeId::of::<String>(), Arc::new("one".to_string()), 10);
        assert!(c.get(&d(1), TypeId::of::<i32>()).is_none());
        assert_eq!(c.evict(&d(1)), 2);
        assert_eq!(c.stats().entries, 0);
        assert_eq!(c.stats().bytes, 0);
    }

    #[test]
    fn shrink_and_disable() {
        let c = Cache::new(1 << 20, 1 << 20);
        for i in 0..=255u8 {
            c.insert(&d(i), TypeId::of::<u64>(), obj(u64::from(i)), 100);
        }
        c.set_budget(1 << 20, SHARDS as u64);
        assert_eq!(c.stats().entries, SHARDS as u64);
        c.set_budget(0, 0);
        assert!(!c.enabled());
        assert_eq!(c.stats().entries, 0);
        c.insert(&d(1), TypeId::of::<u64>(), obj(1), 1);
        assert_eq!(c.stats().entries, 0);
    }

    #[test]
    fn pinned_entries_stay() {
        let c = Cache::new(1 << 20, SHARDS as u64); // one entry per shard
        c.insert(&d(0), TypeId::of::<u64>(), obj(0), 10);
        assert_eq!(c.set_pinned(&d(0), true), 1);
        c.insert(&d(16), TypeId::of::<u64>(), obj(16), 10);
        c.insert(&d(32), TypeId::of::<u64>(), obj(32), 10);
        assert_eq!(get_u64(&c, 0), Some(0));
        assert_eq!(get_u64(&c, 16), None);
        assert_eq!(get_u64(&c, 32), Some(32));
        assert_eq!(c.stats().pinned, 1);
        c.set_pinned(&d(0), false);
        assert_eq!(c.stats().pinned, 0);
        assert_eq!(c.stats().entries, 1);
    }

    #[test]
    fn stale_key_lookups_are_not_remembered() {
        let c = Cache::new(1 << 20, 1 << 20);
        let (none, _, stamp) = c.key_lookup("k", None);
        assert!(none.is_none());
        // A writer changes "k" between the reader's storage lookup and its remember.
        c.key_written("k", Some(d(2)));
        c.remember_key("k", d(1), stamp);
        assert_eq!(c.key_lookup("k", None).0, None);
        let (_, _, stamp) = c.key_lookup("k", None);
        c.remember_key("k", d(2), stamp);
        assert_eq!(c.key_lookup("k", None).0, Some(d(2)));
        c.key_written("k", None);
        assert_eq!(c.key_lookup("k", None).0, None);
    }
}
