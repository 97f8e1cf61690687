//! [`Digest`]: the address of an object.

use std::fmt;

/// The address of a stored object: 32 bytes of blake3 (or keyed blake3) of its
/// uncompressed pickle bytes. Displays as 64 lowercase hex digits.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Reads a digest from exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Digest> {
        <[u8; 32]>::try_from(bytes).ok().map(Digest)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Digest> {
        if text.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Digest(out))
    }

    /// The 64-digit lowercase hex form.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        s
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

/// Computes digests: plain blake3, or keyed blake3 (a MAC) when the store has an auth key.
#[derive(Clone)]
pub enum Hasher {
    /// `blake3(bytes)`.
    Plain,
    /// `blake3::keyed_hash(key, bytes)`.
    Keyed([u8; 32]),
}

impl Hasher {
    /// The hasher of a store (or remote) with auth key `key`: keyed BLAKE3 with a key
    /// derived from it, or plain BLAKE3 without one.
    pub(crate) fn for_auth_key(key: Option<&[u8]>) -> Hasher {
        match key {
            Some(k) => Hasher::Keyed(blake3::derive_key("pickleshelf 2026 object auth key", k)),
            None => Hasher::Plain,
        }
    }

    /// The digest of `bytes`.
    pub fn digest(&self, bytes: &[u8]) -> Digest {
        match self {
            Hasher::Plain => Digest(*blake3::hash(bytes).as_bytes()),
            Hasher::Keyed(key) => Digest(*blake3::keyed_hash(key, bytes).as_bytes()),
        }
    }

    /// True when a key is configured.
    pub fn is_keyed(&self) -> bool {
        matches!(self, Hasher::Keyed(_))
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.write_str(if self.is_keyed() { "Hasher::Keyed(..)" } else { "Hasher::Plain" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let d = Hasher::Plain.digest(b"abc");
        assert_eq!(d.to_hex(), "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85");
        assert_eq!(Digest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(Digest::from_hex("zz"), None);
    }

    #[test]
    fn keyed_differs() {
        let k = Hasher::Keyed([7; 32]);
        assert_ne!(k.digest(b"abc"), Hasher::Plain.digest(b"abc"));
        assert_eq!(format!("{k:?}"), "Hasher::Keyed(..)");
    }
}
