//! A checkpoint's manifest on a remote: what `push` writes last and `pull` reads first.
//! Encoding and decoding only, no I/O. The invariant: a manifest that decodes is whole
//! (its closing checksum covers every byte before it) and, on a remote with an auth key,
//! was written by a holder of the key (the checksum is then keyed). Layout: `docs/REMOTE.md`.

use crate::blob::{Digest, Hasher, get_leb, put_leb};
use crate::index::MAX_KEY_LEN;

/// The first bytes of every manifest.
pub(crate) const MAGIC: &[u8; 16] = b"pickleshelf rckp";
/// The manifest layout's version.
pub(crate) const VERSION: u8 = 1;
/// Flag: the remote has an auth key (digests and the checksum are keyed).
const FLAG_KEYED: u8 = 0x01;
/// The largest pickle kept in a manifest entry rather than in an object of its own.
pub(crate) const INLINE_MAX: usize = 64;
/// How many leading bytes hold the header fields `ls` shows (name included).
pub(crate) const HEADER_MAX: usize = 16 + 2 + 32 + 24 + 2 + 255;
/// Derivation context of the key that authenticates manifests.
const MANIFEST_KEY_CONTEXT: &str = "pickleshelf 2026 remote manifest key";

/// A key's value as a manifest names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A small value's pickle bytes, in the manifest.
    Inline { digest: Digest, pickle: Vec<u8> },
    /// The remote object `objects/<digest>`, `size` bytes long.
    Object { digest: Digest, size: u64 },
}

impl Entry {
    pub(crate) fn digest(&self) -> Digest {
        match self {
            Entry::Inline { digest, .. } | Entry::Object { digest, .. } => *digest,
        }
    }
}

/// The fields a manifest starts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) keyed: bool,
    pub(crate) auth_check: [u8; 32],
    pub(crate) created_ms: u64,
    pub(crate) keys: u64,
    pub(crate) bytes: u64,
    pub(crate) name: String,
}

/// A decoded manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub(crate) header: Header,
    pub(crate) entries: Vec<(String, Entry)>,
}

/// What authenticates manifests: the keyed checksum's key, or none.
#[derive(Clone)]
pub(crate) struct Sealer {
    key: Option<[u8; 32]>,
}

impl Sealer {
    pub(crate) fn new(auth_key: Option<&[u8]>) -> Sealer {
        Sealer { key: auth_key.map(|k| blake3::derive_key(MANIFEST_KEY_CONTEXT, k)) }
    }

    fn seal(&self, bytes: &[u8]) -> [u8; 32] {
        match &self.key {
            Some(k) => *blake3::keyed_hash(k, bytes).as_bytes(),
            None => *blake3::hash(bytes).as_bytes(),
        }
    }
}

/// The auth check a remote's manifests carry: the hasher's digest of a fixed text, so
/// that a reader tells "wrong key" from "damaged".
pub(crate) fn auth_check(hasher: &Hasher) -> [u8; 32] {
    hasher.digest(crate::store::AUTH_CHECK).0
}

impl Manifest {
    /// The manifest's bytes, sealed.
    pub(crate) fn encode(&self, sealer: &Sealer) -> Vec<u8> {
        let h = &self.header;
        let mut out = Vec::with_capacity(HEADER_MAX + self.entries.len() * 48);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(if h.keyed { FLAG_KEYED } else { 0 });
        out.extend_from_slice(&h.auth_check);
        for v in [h.created_ms, h.keys, h.bytes] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        put_bytes(&mut out, h.name.as_bytes());
        for (key, entry) in &self.entries {
            put_bytes(&mut out, key.as_bytes());
            match entry {
                Entry::Inline { digest, pickle } => {
                    out.push(1);
                    out.extend_from_slice(digest.as_bytes());
                    put_bytes(&mut out, pickle);
                }
                Entry::Object { digest, size } => {
                    out.push(2);
                    out.extend_from_slice(digest.as_bytes());
                    put_leb(&mut out, *size);
                }
            }
        }
        let seal = sealer.seal(&out);
        out.extend_from_slice(&seal);
        out
    }

    /// Decodes and checks a whole manifest: its seal first, then every field.
    pub(crate) fn decode(bytes: &[u8], sealer: &Sealer, hasher: &Hasher) -> Result<Manifest, Problem> {
        let header = Header::decode(bytes)?;
        if header.keyed != sealer.key.is_some() {
            return Err(Problem::Key(if header.keyed {
                "it was written with an auth key and none was given"
            } else {
                "it was written without an auth key and one was given"
            }));
        }
        if header.auth_check != auth_check(hasher) {
            return Err(Problem::Key("it was written with another auth key"));
        }
        let body_len = bytes.len().checked_sub(32).ok_or(Problem::Bad("shorter than its checksum".into()))?;
        if sealer.seal(&bytes[..body_len]) != bytes[body_len..] {
            return Err(if header.keyed {
                Problem::Key("its keyed checksum does not verify: changed by a writer without the key, or damaged")
            } else {
                Problem::Bad("its checksum does not verify: damaged or changed".into())
            });
        }
        let mut r = Reader { bytes: &bytes[..body_len], pos: header_len(bytes)? };
        let mut entries = Vec::new();
        while r.pos < r.bytes.len() {
            let at = r.pos;
            let key = r.bytes_field("key")?;
            if key.len() > MAX_KEY_LEN {
                return Err(Problem::Bad(format!("key of {} bytes at offset {at}", key.len())));
            }
            let key = String::from_utf8(key.to_vec())
                .map_err(|_| Problem::Bad(format!("key at offset {at} is not UTF-8")))?;
            if entries.last().is_some_and(|(k, _): &(String, Entry)| k.as_bytes() >= key.as_bytes()) {
                return Err(Problem::Bad(format!("key {key:?} at offset {at} is out of order")));
            }
            let kind = r.take(1, "entry kind")?[0];
            let digest = Digest::from_slice(r.take(32, "digest")?).ok_or(Problem::Bad("digest".into()))?;
            let entry = match kind {
                1 => {
                    let pickle = r.bytes_field("inline value")?;
                    if pickle.len() > INLINE_MAX {
                        return Err(Problem::Bad(format!("inline value of {} bytes for key {key:?}", pickle.len())));
                    }
                    Entry::Inline { digest, pickle: pickle.to_vec() }
                }
                2 => Entry::Object { digest, size: r.leb("object size")? },
                k => return Err(Problem::Bad(format!("unknown entry kind {k} at offset {}", r.pos - 33))),
            };
            entries.push((key, entry));
        }
        if entries.len() as u64 != header.keys {
            return Err(Problem::Bad(format!("{} entries where the header says {}", entries.len(), header.keys)));
        }
        Ok(Manifest { header, entries })
    }
}

impl Header {
    /// Decodes the header fields from the first bytes of a manifest (unverified: the
    /// seal covers the whole manifest).
    pub(crate) fn decode(bytes: &[u8]) -> Result<Header, Problem> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(16, "magic")? != MAGIC {
            return Err(Problem::Bad("not a pickleshelf checkpoint manifest (magic)".into()));
        }
        let version = r.take(1, "version")?[0];
        if version != VERSION {
            return Err(Problem::Bad(format!("manifest version {version}; this build reads {VERSION}")));
        }
        let flags = r.take(1, "flags")?[0];
        if flags & !FLAG_KEYED != 0 {
            return Err(Problem::Bad(format!("unknown flags {flags:#04x}")));
        }
        let mut auth_check = [0u8; 32];
        auth_check.copy_from_slice(r.take(32, "auth check")?);
        let created_ms = r.u64("created")?;
        let keys = r.u64("keys")?;
        let bytes_total = r.u64("bytes")?;
        let name = r.bytes_field("name")?;
        let name = String::from_utf8(name.to_vec()).map_err(|_| Problem::Bad("name is not UTF-8".into()))?;
        Ok(Header { keyed: flags & FLAG_KEYED != 0, auth_check, created_ms, keys, bytes: bytes_total, name })
    }
}

/// The length of the header of `bytes` (which decoded).
fn header_len(bytes: &[u8]) -> Result<usize, Problem> {
    let mut r = Reader { bytes, pos: 16 + 2 + 32 + 24 };
    r.bytes_field("name")?;
    Ok(r.pos)
}

/// Why a manifest was refused.
#[derive(Debug)]
pub(crate) enum Problem {
    /// Malformed or damaged.
    Bad(String),
    /// Does not authenticate.
    Key(&'static str),
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_leb(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], Problem> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| Problem::Bad(format!("truncated in the {what} at offset {}", self.pos)))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u64(&mut self, what: &str) -> Result<u64, Problem> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn leb(&mut self, what: &str) -> Result<u64, Problem> {
        let rest = &self.bytes[self.pos..];
        let (v, after) =
            get_leb(rest).ok_or_else(|| Problem::Bad(format!("bad length of the {what} at offset {}", self.pos)))?;
        self.pos += rest.len() - after.len();
        Ok(v)
    }

    fn bytes_field(&mut self, what: &str) -> Result<&'a [u8], Problem> {
        let at = self.pos;
        let n = self.leb(what)?;
        let n =
            usize::try_from(n).map_err(|_| Problem::Bad(format!("impossible length of the {what} at offset {at}")))?;
        self.take(n, what)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample(hasher: &Hasher, keyed: bool) -> Manifest {
        let small = b"\x80\x04K\x01.".to_vec();
        Manifest {
            header: Header {
                keyed,
                auth_check: auth_check(hasher),
                created_ms: 1_700_000_000_000,
                keys: 2,
                bytes: 1234,
                name: "run/1".into(),
            },
            entries: vec![
                ("a".into(), Entry::Inline { digest: hasher.digest(&small), pickle: small }),
                ("b".into(), Entry::Object { digest: hasher.digest(b"x"), size: 1229 }),
            ],
        }
    }

    #[test]
    fn round_trip_plain_and_keyed() {
        let plain = Hasher::Plain;
        let m = sample(&plain, false);
        let bytes = m.encode(&Sealer::new(None));
        assert_eq!(Manifest::decode(&bytes, &Sealer::new(None), &plain).unwrap(), m);
        assert_eq!(Header::decode(&bytes[..HEADER_MAX.min(bytes.len())]).unwrap(), m.header);

        let key = b"0123456789abcdef0123".as_slice();
        let keyed = Hasher::Keyed(blake3::derive_key("pickleshelf 2026 object auth key", key));
        let m = sample(&keyed, true);
        let bytes = m.encode(&Sealer::new(Some(key)));
        assert_eq!(Manifest::decode(&bytes, &Sealer::new(Some(key)), &keyed).unwrap(), m);
        // Wrong key, no key.
        let other = b"another key of 20 b.".as_slice();
        let other_h = Hasher::Keyed(blake3::derive_key("pickleshelf 2026 object auth key", other));
        assert!(matches!(Manifest::decode(&bytes, &Sealer::new(Some(other)), &other_h), Err(Problem::Key(_))));
        assert!(matches!(Manifest::decode(&bytes, &Sealer::new(None), &plain), Err(Problem::Key(_))));
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_refused() {
        let plain = Hasher::Plain;
        let bytes = sample(&plain, false).encode(&Sealer::new(None));
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(Manifest::decode(&b, &Sealer::new(None), &plain).is_err(), "flip at {i}");
            assert!(Manifest::decode(&bytes[..i], &Sealer::new(None), &plain).is_err(), "cut at {i}");
        }
    }

    #[test]
    fn a_resealed_forgery_is_refused_with_a_key() {
        // A bucket writer without the key rewrites an entry and recomputes a plain seal.
        let key = b"0123456789abcdef0123".as_slice();
        let keyed = Hasher::Keyed(blake3::derive_key("pickleshelf 2026 object auth key", key));
        let mut bytes = sample(&keyed, true).encode(&Sealer::new(Some(key)));
        let n = bytes.len();
        bytes[n - 40] ^= 1;
        let seal = *blake3::hash(&bytes[..n - 32]).as_bytes();
        bytes[n - 32..].copy_from_slice(&seal);
        assert!(matches!(Manifest::decode(&bytes, &Sealer::new(Some(key)), &keyed), Err(Problem::Key(_))));
    }
}
