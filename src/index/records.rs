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

/// An object record: `[refs u64 LE][stored_len u64 LE][generation u64 LE]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ObjectRecord {
    /// Number of key records pointing at the object.
    pub(crate) refs: u64,
    /// Length of the object's frame (its file's length).
    pub(crate) stored_len: u64,
    /// The store generation when the object was first written.
    pub(crate) generation: u64,
}

impl ObjectRecord {
    pub(crate) fn encode(&self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&self.refs.to_le_bytes());
        b[8..16].copy_from_slice(&self.stored_len.to_le_bytes());
        b[16..].copy_from_slice(&self.generation.to_le_bytes());
        b
    }

    pub(crate) fn parse(raw: &[u8]) -> Option<ObjectRecord> {
        if raw.len() != 24 {
            return None;
        }
        let u = |i: usize| raw.get(i..i + 8).and_then(|s| <[u8; 8]>::try_from(s).ok()).map(u64::from_le_bytes);
        Some(ObjectRecord { refs: u(0)?, stored_len: u(8)?, generation: u(16)? })
    }
}
