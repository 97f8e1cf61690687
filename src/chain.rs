//! Versions of values: delta storage on the write path, chains of bases on the read path.
//!
//! **Writing.** A value large enough to become an object ([`DELTA_MIN`] bytes of pickle or
//! more) is sketched ([`Sketch`]). When one of the last [`RECENT`] objects written resembles
//! it, the value is stored as a delta (codec 3) within that object's *line of versions*: the
//! new object gets position `seq = p.seq + 1` after the resembling object `p`, and its base
//! is the ancestor of `p` at position [`skip_base`]`(seq)` — skip-deltas, as Subversion's
//! FSFS stores revisions: with radix [`SKIP`] = 8, version `n` is a delta against version
//! `n − 8^v` (`8^v` the largest power of 8 dividing `n`), so reading any version decodes as
//! many deltas as the sum of `n`'s base-8 digits (≤ 7 per digit: 7 for the 50th version, 14
//! at most below the 64th), while 7 deltas in 8 span a single version. (Measured on W5, 50
//! snapshots: radix 8 stores 652 KB, radix 4 and 16 684 KB — their 16-version deltas
//! outgrow frame records and become files — radix 2 692 KB, and plain chains bounded at 24
//! deltas 756 KB with a 24-delta read of the last snapshot.) A delta is kept when it is at most 1/16 of the value, or at
//! most half the whole frame; otherwise the value starts a new line (`seq` 0). A line also
//! restarts before a chain would exceed [`MAX_DEPTH`]. A key's own previous value is not
//! used as a base when nothing else refers to it: overwriting a key then frees the old
//! value instead of keeping it alive as a base.
//!
//! **Reading.** An object's frame names its base; the reader walks down the chain (a loop
//! bounded by [`MAX_DEPTH`]) to a whole frame or to a base in the *base cache*, then decodes
//! back up, verifying every object against its digest. The base cache keeps the decoded
//! bytes of recent chain members (never of whole objects read alone, so large unrelated
//! values do not pass through it), so reading versions in order decodes one delta each.
//!
//! Invariant: a delta is only ever applied against bytes verified against its base's
//! digest, and its output is verified against its own; the cache holds only verified
//! bytes, keyed by their digest, so it can never serve stale content.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use crate::blob::{Codec, Digest, FrameKind, Sketch, frame_kind};
use crate::error::{Error, Result};
use crate::index::{Delta, INLINE_MAX, Index, MAX_DEPTH, Stored};

/// Values below this many pickle bytes are never stored as deltas.
pub(crate) const DELTA_MIN: usize = 2 * INLINE_MAX;
/// Objects remembered as candidate bases.
pub(crate) const RECENT: usize = 8;
/// Least sketch similarity for a candidate base.
const SIMILAR: f32 = 0.5;
/// Radix of the skip-deltas (1: each version a delta against the previous one).
pub(crate) const SKIP: u32 = 8;
/// A delta at most 1/CLEARLY_SMALL of the value is kept without trying a whole frame.
const CLEARLY_SMALL: usize = 16;
/// Base cache budget: entries, bytes, and the largest entry.
const CACHE_ENTRIES: usize = 16;
const CACHE_BYTES: usize = 32 << 20;
const CACHE_ENTRY_MAX: usize = 8 << 20;

/// The base position of version `seq` in a line of versions (see the module docs).
pub(crate) fn skip_base(seq: u32) -> u32 {
    if SKIP <= 1 {
        return seq.saturating_sub(1);
    }
    let mut unit = 1u32;
    while let Some(next) = unit.checked_mul(SKIP)
        && next <= seq
        && seq.is_multiple_of(next)
    {
        unit = next;
    }
    seq.saturating_sub(unit)
}

/// A recently written object, as a candidate base.
#[derive(Clone, Debug)]
pub(crate) struct Recent {
    digest: Digest,
    len: usize,
    sketch: Sketch,
}

/// The stored form chosen for a new value.
pub(crate) struct Encoded {
    /// The frame: whole, or a delta against `delta.base`.
    pub(crate) frame: Vec<u8>,
    /// The base, for a delta.
    pub(crate) delta: Option<Delta>,
    /// To remember once the write is done ([`Chains::written`]).
    pub(crate) recent: Option<Recent>,
}

/// Why an object could not be read.
pub(crate) enum LoadError {
    /// The store could not be read (I/O, engine, a missing file).
    Store(Error),
    /// An object of the chain is damaged: its digest and how.
    Bad(Digest, &'static str),
}

impl From<Error> for LoadError {
    fn from(e: Error) -> LoadError {
        LoadError::Store(e)
    }
}

/// Decoded bytes of recent chain members, by digest (a small LRU, most recent last).
#[derive(Default)]
struct BaseCache {
    entries: VecDeque<(Digest, Arc<Vec<u8>>)>,
    bytes: usize,
}

impl BaseCache {
    fn get(&mut self, d: &Digest) -> Option<Arc<Vec<u8>>> {
        let at = self.entries.iter().position(|(e, _)| e == d)?;
        let entry = self.entries.remove(at)?;
        let bytes = Arc::clone(&entry.1);
        self.entries.push_back(entry);
        Some(bytes)
    }

    fn insert(&mut self, d: Digest, bytes: Arc<Vec<u8>>) {
        if bytes.len() > CACHE_ENTRY_MAX || self.entries.iter().any(|(e, _)| *e == d) {
            return;
        }
        self.bytes += bytes.len();
        self.entries.push_back((d, bytes));
        while self.entries.len() > CACHE_ENTRIES || self.bytes > CACHE_BYTES {
            match self.entries.pop_front() {
                Some((_, b)) => self.bytes -= b.len(),
                None => break,
            }
        }
    }
}

/// The per-store state of version handling: recent objects and the base cache.
#[derive(Default)]
pub(crate) struct Chains {
    recent: Mutex<VecDeque<Recent>>,
    bases: Mutex<BaseCache>,
}

impl Chains {
    fn bases(&self) -> std::sync::MutexGuard<'_, BaseCache> {
        self.bases.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops the decoded bytes kept as bases.
    pub(crate) fn clear(&self) {
        *self.bases() = BaseCache::default();
    }

    /// The pickle bytes of object `d`, verified: its chain of bases walked down to a whole
    /// frame or a cached base, then decoded back up. The caller holds
    /// [`Index::pin_files`].
    pub(crate) fn load(&self, index: &Index, codec: &Codec, d: &Digest) -> Result<Arc<Vec<u8>>, LoadError> {
        if let Some(b) = self.bases().get(d) {
            return Ok(b);
        }
        let mut links: Vec<(Digest, Vec<u8>)> = Vec::new();
        let mut at = *d;
        let mut bytes = loop {
            if !links.is_empty()
                && let Some(b) = self.bases().get(&at)
            {
                break b;
            }
            let frame = index.frame(&at)?;
            match frame_kind(&frame).map_err(|r| LoadError::Bad(at, r))? {
                FrameKind::Whole => {
                    let b = Arc::new(codec.decode_owned(frame, &at).map_err(|r| LoadError::Bad(at, r))?);
                    if !links.is_empty() {
                        self.bases().insert(at, Arc::clone(&b));
                    }
                    break b;
                }
                FrameKind::Delta(base) => {
                    links.push((at, frame));
                    if links.len() > usize::from(MAX_DEPTH) {
                        return Err(LoadError::Bad(at, "its chain of bases is too long or loops"));
                    }
                    at = base;
                }
            }
        };
        while let Some((digest, frame)) = links.pop() {
            let out = codec.decode_delta(&frame, &digest, &bytes).map_err(|r| LoadError::Bad(digest, r))?;
            bytes = Arc::new(out);
            self.bases().insert(digest, Arc::clone(&bytes));
        }
        Ok(bytes)
    }

    /// Chooses how to store `bytes` (digest `digest`) written under `key`: a delta against a
    /// resembling recent object's line, or a whole frame (see the module docs). Reads the
    /// base (taking [`Index::pin_files`]); any failure to read it means a whole frame.
    pub(crate) fn encode(
        &self,
        index: &Index,
        codec: &Codec,
        key: Option<&str>,
        bytes: &[u8],
        digest: &Digest,
    ) -> Result<Encoded> {
        // Arrays are stored whole and aligned, so that they can be mapped.
        if bytes.len() < DELTA_MIN || crate::blob::array_data_offset(bytes).is_some() {
            return Ok(Encoded { frame: codec.encode(bytes), delta: None, recent: None });
        }
        let sketch = Sketch::of(bytes);
        let candidate = self.resembling(&sketch, bytes.len(), digest);
        let recent = Some(Recent { digest: *digest, len: bytes.len(), sketch });
        if let Some(p) = candidate
            && let Some(delta) = self.base_for(index, key, &p)?
        {
            let base_bytes = {
                let _pin = index.pin_files();
                self.load(index, codec, &delta.base)
            };
            if let Ok(base_bytes) = base_bytes
                && let Some(frame) = codec.encode_delta(bytes, &delta.base, &base_bytes, bytes.len() / 2)
            {
                if frame.len() * CLEARLY_SMALL <= bytes.len() {
                    return Ok(Encoded { frame, delta: Some(delta), recent });
                }
                let whole = codec.encode(bytes);
                return Ok(if frame.len() * 2 <= whole.len() {
                    Encoded { frame, delta: Some(delta), recent }
                } else {
                    Encoded { frame: whole, delta: None, recent }
                });
            }
        }
        Ok(Encoded { frame: codec.encode(bytes), delta: None, recent })
    }

    /// The most similar recent object of comparable size (ties: the most recent).
    fn resembling(&self, sketch: &Sketch, len: usize, digest: &Digest) -> Option<Recent> {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let mut best: Option<(f32, &Recent)> = None;
        for r in recent.iter() {
            if r.digest == *digest || r.len > len.saturating_mul(2) || r.len.saturating_mul(2) < len {
                continue;
            }
            let s = r.sketch.similarity(sketch);
            if s >= SIMILAR && best.is_none_or(|(b, _)| s > b) {
                best = Some((s, r));
            }
        }
        best.map(|(_, r)| r.clone())
    }

    /// The base of a new version after `p`: `p`'s ancestor at position `skip_base(seq)`,
    /// found by walking `p`'s chain. `None` when `p` is gone, when `p` is `key`'s current
    /// value and nothing else refers to it, or when the chain would grow too long.
    fn base_for(&self, index: &Index, key: Option<&str>, p: &Recent) -> Result<Option<Delta>> {
        let Some(mut rec) = index.object(&p.digest)? else {
            return Ok(None);
        };
        if rec.refs == 1
            && let Some(key) = key
            && let Some(Stored::Object { digest }) = index.get(key)?
            && digest == p.digest
        {
            return Ok(None);
        }
        let Some(seq) = rec.seq.checked_add(1) else {
            return Ok(None);
        };
        let target = skip_base(seq);
        let mut at = p.digest;
        for _ in 0..=MAX_DEPTH {
            if rec.seq == target {
                return Ok((rec.depth < MAX_DEPTH).then_some(Delta { base: at, seq }));
            }
            let Some(base) = rec.base.filter(|_| rec.seq > target) else {
                break;
            };
            let Some(next) = index.object(&base)? else {
                break;
            };
            (at, rec) = (base, next);
        }
        Ok(None)
    }

    /// Records a written object as a candidate base; a delta's bytes also go into the base
    /// cache (the next version's base is most often this one).
    pub(crate) fn written(&self, recent: Option<Recent>, delta: Option<Delta>, bytes: &[u8]) {
        let Some(r) = recent else {
            return;
        };
        if delta.is_some() && bytes.len() <= CACHE_ENTRY_MAX {
            self.bases().insert(r.digest, Arc::new(bytes.to_vec()));
        }
        let mut list = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        list.retain(|e| e.digest != r.digest);
        list.push_front(r);
        list.truncate(RECENT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_bases() {
        let got: Vec<u32> = (1..=20).map(skip_base).collect();
        if SKIP == 8 {
            assert_eq!(got, [0, 1, 2, 3, 4, 5, 6, 0, 8, 9, 10, 11, 12, 13, 14, 8, 16, 17, 18, 19]);
            assert_eq!(skip_base(64), 0);
            assert_eq!(skip_base(72), 64);
        }
        // The chain of any version is short: at most (SKIP - 1) per base-SKIP digit.
        for n in 1..5000u32 {
            let mut depth = 0;
            let mut at = n;
            while at > 0 {
                at = skip_base(at);
                depth += 1;
            }
            let mut digits = 0;
            let mut m = n;
            while m > 0 {
                digits += m % SKIP.max(2);
                m /= SKIP.max(2);
            }
            assert!(SKIP <= 1 || depth == digits, "{n}: {depth} vs {digits}");
        }
        assert_eq!(skip_base(u32::MAX), u32::MAX - 1);
    }
}
