//! Record layouts of the sled tree (pure; see `docs/FORMAT.md`).

use crate::blob::Digest;

const KIND_INLINE: u8 = 1;
const KIND_OBJECT: u8 = 2;

/// A parsed key record.
pub(crate) enum KeyRecord {
    /// `[1][digest 32][frame]`: the frame starts at `frame_at`.
    Inline { digest: Digest, frame_at: usize },
    /// `[2][digest 32]`: the frame is in the object file of `digest`.
    Object { digest: Digest },
}

impl KeyRecord {
    pub(crate) fn inline(digest: &Digest, frame: &[u8]) -> Vec<u8> {
        let mut r = Vec::with_capacity(33 + frame.len());
        r.push(KIND_INLINE);
        r.extend_from_slice(digest.as_bytes());
        r.extend_from_slice(frame);
        r
    }

    pub(crate) fn object(digest: &Digest) -> Vec<u8> {
        let mut r = Vec::with_capacity(33);
        r.push(KIND_OBJECT);
        r.extend_from_slice(digest.as_bytes());
        r
    }

    pub(crate) fn parse(raw: &[u8]) -> Option<KeyRecord> {
        let (&kind, rest) = raw.split_first()?;
        let digest = Digest::from_slice(rest.get(..32)?)?;
        match kind {
            KIND_INLINE if rest.len() > 32 => Some(KeyRecord::Inline { digest, frame_at: 33 }),
            KIND_OBJECT if rest.len() == 32 => Some(KeyRecord::Object { digest }),
            _ => None,
        }
    }
}

/// An object record. Two layouts (see `docs/FORMAT.md`):
/// - 24 bytes `[refs u64][stored_len u64][generation u64]`: a whole frame in its file;
/// - longer: the same 24 bytes, then `[flags u8]`, then — when flag [`FLAG_BASE`] is set —
///   `[base digest 32][depth u8][seq u32 LE]`. Flag [`FLAG_IN_TREE`]: the frame is in the
///   object's frame record (`f` + digest) instead of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ObjectRecord {
    /// References: key and memo records of layout `0x02`, checkpoint entries of layout
    /// `0x02`, and delta objects whose base this is.
    pub(crate) refs: u64,
    /// Length of the object's frame (its file's or frame record's length).
    pub(crate) stored_len: u64,
    /// The store generation when the object was first written.
    pub(crate) generation: u64,
    /// The frame is in the frame record, not in a file.
    pub(crate) in_tree: bool,
    /// The object is a delta against this object (which it holds a reference on).
    pub(crate) base: Option<Digest>,
    /// Length of the chain of bases below this object (0 for a whole frame).
    pub(crate) depth: u8,
    /// Position in its line of versions (0 for a whole frame); chooses the next delta's base.
    pub(crate) seq: u32,
}

/// The frame is in the object's frame record.
pub(crate) const FLAG_IN_TREE: u8 = 1;
/// A base digest, depth and seq follow the flags.
pub(crate) const FLAG_BASE: u8 = 2;

impl ObjectRecord {
    /// A whole object (no base) stored in a file or in the tree.
    pub(crate) fn whole(refs: u64, stored_len: u64, generation: u64, in_tree: bool) -> ObjectRecord {
        ObjectRecord { refs, stored_len, generation, in_tree, base: None, depth: 0, seq: 0 }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(62);
        b.extend_from_slice(&self.refs.to_le_bytes());
        b.extend_from_slice(&self.stored_len.to_le_bytes());
        b.extend_from_slice(&self.generation.to_le_bytes());
        let flags = if self.in_tree { FLAG_IN_TREE } else { 0 } | if self.base.is_some() { FLAG_BASE } else { 0 };
        if flags != 0 {
            b.push(flags);
        }
        if let Some(base) = &self.base {
            b.extend_from_slice(base.as_bytes());
            b.push(self.depth);
            b.extend_from_slice(&self.seq.to_le_bytes());
        }
        b
    }

    pub(crate) fn parse(raw: &[u8]) -> Option<ObjectRecord> {
        let u = |i: usize| raw.get(i..i + 8).and_then(|s| <[u8; 8]>::try_from(s).ok()).map(u64::from_le_bytes);
        let mut r = ObjectRecord::whole(u(0)?, u(8)?, u(16)?, false);
        match raw.len() {
            24 => return Some(r),
            25 | 62 => {}
            _ => return None,
        }
        let flags = raw[24];
        if flags & !(FLAG_IN_TREE | FLAG_BASE) != 0 || (flags & FLAG_BASE != 0) != (raw.len() == 62) {
            return None;
        }
        r.in_tree = flags & FLAG_IN_TREE != 0;
        if flags & FLAG_BASE != 0 {
            r.base = Some(Digest::from_slice(raw.get(25..57)?)?);
            r.depth = raw[57];
            r.seq = u32::from_le_bytes(<[u8; 4]>::try_from(raw.get(58..62)?).ok()?);
        }
        Some(r)
    }
}

/// A checkpoint's header record: `[created ms u64][keys u64][bytes u64]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CheckpointHeader {
    /// When it was taken, in milliseconds since the Unix epoch.
    pub(crate) created_ms: u64,
    /// Number of keys it holds.
    pub(crate) keys: u64,
    /// Stored bytes of the values it names: the frames of its distinct objects and of the
    /// frames copied into it.
    pub(crate) bytes: u64,
}

impl CheckpointHeader {
    pub(crate) fn encode(&self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&self.created_ms.to_le_bytes());
        b[8..16].copy_from_slice(&self.keys.to_le_bytes());
        b[16..].copy_from_slice(&self.bytes.to_le_bytes());
        b
    }

    pub(crate) fn parse(raw: &[u8]) -> Option<CheckpointHeader> {
        if raw.len() != 24 {
            return None;
        }
        let u = |i: usize| raw.get(i..i + 8).and_then(|s| <[u8; 8]>::try_from(s).ok()).map(u64::from_le_bytes);
        Some(CheckpointHeader { created_ms: u(0)?, keys: u(8)?, bytes: u(16)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_records_round_trip() {
        let d = Digest([7; 32]);
        for r in [
            ObjectRecord::whole(3, 5000, 9, false),
            ObjectRecord::whole(1, 70, 2, true),
            ObjectRecord { base: Some(d), depth: 4, seq: 77, ..ObjectRecord::whole(2, 600, 1, true) },
            ObjectRecord { base: Some(d), depth: 1, seq: 1, ..ObjectRecord::whole(1, 9000, 1, false) },
        ] {
            let e = r.encode();
            assert_eq!(ObjectRecord::parse(&e), Some(r), "{e:?}");
        }
        assert_eq!(ObjectRecord::whole(1, 2, 3, false).encode().len(), 24);
        let mut bad = ObjectRecord::whole(1, 2, 3, true).encode();
        bad[24] = 0x80;
        assert_eq!(ObjectRecord::parse(&bad), None);
        assert_eq!(ObjectRecord::parse(&[0; 30]), None);
    }
}
