//! Record pages: the byte layouts of a page, its stored image and its directory record
//! (pure; see `docs/FORMAT.md`).
//!
//! A page holds the records of one key range `[lo, hi)` in key order. Its *body* is
//! `[lo][count]` then `count × [key][value]` (each a LEB128 length and the bytes); its
//! *image*, the bytes written to a pack file, is `[version][codec][body length LEB128]`
//! and the body raw or as one zstd frame. The directory record that locates an image
//! carries a checksum of the image, so a page is verified before it is parsed.
//!
//! Invariant: [`Page::parse`] accepts only bodies whose keys are strictly increasing and
//! not below `lo`, so binary search over a parsed page is sound; every length is checked
//! against the bytes present, so no input makes it read out of bounds or allocate more
//! than [`MAX_BODY`] bytes.

use std::cell::RefCell;

use crate::blob::Hasher;

/// Image version.
const IMAGE_VERSION: u8 = 1;
const CODEC_RAW: u8 = 0;
const CODEC_ZSTD: u8 = 1;
/// Bodies shorter than this are stored raw (zstd gains nothing on them).
const MIN_COMPRESS: usize = 64;
/// Largest body a page may declare: a larger length in an image is corruption.
pub(crate) const MAX_BODY: usize = 1 << 20;
/// Length of a directory record's checksum.
pub(crate) const CHECKSUM_LEN: usize = 16;
/// Length of a directory record.
pub(crate) const DIR_RECORD_LEN: usize = 4 + 8 + 4 + CHECKSUM_LEN;

/// Appends `v` as unsigned LEB128.
pub(crate) fn put_leb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Reads an unsigned LEB128 of at most 10 bytes at `*at`, advancing it.
fn get_leb(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let b = *bytes.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f).checked_shl(7 * i)?;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn get_slice(bytes: &[u8], at: &mut usize) -> Option<(usize, usize)> {
    let len = usize::try_from(get_leb(bytes, at)?).ok()?;
    let start = *at;
    let end = start.checked_add(len).filter(|&e| e <= bytes.len())?;
    *at = end;
    Some((start, len))
}

/// Builds a page body from records in key order.
pub(crate) struct BodyWriter {
    buf: Vec<u8>,
    entries: usize,
}

impl BodyWriter {
    pub(crate) fn new(lo: &[u8], capacity: usize) -> BodyWriter {
        let mut buf = Vec::with_capacity(capacity + lo.len() + 16);
        put_leb(&mut buf, lo.len() as u64);
        buf.extend_from_slice(lo);
        BodyWriter { buf, entries: 0 }
    }

    pub(crate) fn push(&mut self, key: &[u8], value: &[u8]) {
        put_leb(&mut self.buf, key.len() as u64);
        self.buf.extend_from_slice(key);
        put_leb(&mut self.buf, value.len() as u64);
        self.buf.extend_from_slice(value);
        self.entries += 1;
    }

    /// The body: `lo`, the count, then the records (the count goes before the records,
    /// so they are moved once here).
    pub(crate) fn finish(self) -> Vec<u8> {
        let mut at = 0;
        let lo_end = match get_slice(&self.buf, &mut at) {
            Some((start, len)) => start + len,
            None => 0,
        };
        let mut body = Vec::with_capacity(self.buf.len() + 10);
        body.extend_from_slice(&self.buf[..lo_end]);
        put_leb(&mut body, self.entries as u64);
        body.extend_from_slice(&self.buf[lo_end..]);
        body
    }
}

/// Size of a record in a body: what [`BodyWriter::push`] adds.
pub(crate) fn entry_size(key: &[u8], value: &[u8]) -> usize {
    leb_len(key.len() as u64) + key.len() + leb_len(value.len() as u64) + value.len()
}

fn leb_len(v: u64) -> usize {
    let bits = 64 - v.max(1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// A parsed page body: the records of `[lo, hi)`.
pub(crate) struct Page {
    body: Vec<u8>,
    lo: (usize, usize),
    /// Per record: key start, key length, value start, value length.
    entries: Vec<[u32; 4]>,
}

impl Page {
    /// Parses a body; `None` if it is malformed (bad lengths, keys out of order or below
    /// `lo`, trailing bytes).
    pub(crate) fn parse(body: Vec<u8>) -> Option<Page> {
        if body.len() > MAX_BODY {
            return None;
        }
        let mut at = 0;
        let lo = get_slice(&body, &mut at)?;
        let count = usize::try_from(get_leb(&body, &mut at)?).ok()?;
        // Each record takes at least two bytes: the count cannot promise more.
        if count > (body.len() - at) / 2 {
            return None;
        }
        let mut entries = Vec::with_capacity(count);
        let mut prev: Option<(usize, usize)> = None;
        for _ in 0..count {
            let k = get_slice(&body, &mut at)?;
            let v = get_slice(&body, &mut at)?;
            let key = &body[k.0..k.0 + k.1];
            let floor = match prev {
                Some(p) => key > &body[p.0..p.0 + p.1],
                None => key >= &body[lo.0..lo.0 + lo.1],
            };
            if !floor {
                return None;
            }
            prev = Some(k);
            entries.push([k.0 as u32, k.1 as u32, v.0 as u32, v.1 as u32]);
        }
        if at != body.len() {
            return None;
        }
        Some(Page { body, lo, entries })
    }

    /// The page's lower bound (the fence it was written under).
    pub(crate) fn lo(&self) -> &[u8] {
        &self.body[self.lo.0..self.lo.0 + self.lo.1]
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of memory the parsed page holds (body and entry table).
    pub(crate) fn footprint(&self) -> usize {
        self.body.capacity() + self.entries.capacity() * 16 + 64
    }

    pub(crate) fn key(&self, i: usize) -> &[u8] {
        let e = self.entries[i];
        &self.body[e[0] as usize..(e[0] + e[1]) as usize]
    }

    pub(crate) fn value(&self, i: usize) -> &[u8] {
        let e = self.entries[i];
        &self.body[e[2] as usize..(e[2] + e[3]) as usize]
    }

    /// Where the value of record `i` is in the body: start and length.
    pub(crate) fn value_range(&self, i: usize) -> (u32, u32) {
        let e = self.entries[i];
        (e[2], e[3])
    }

    /// The bytes of the body at `start..start + len` (empty when out of range).
    pub(crate) fn bytes(&self, start: u32, len: u32) -> &[u8] {
        self.body.get(start as usize..(start as usize).saturating_add(len as usize)).unwrap_or_default()
    }

    /// The position of `key`, or where it would go.
    pub(crate) fn search(&self, key: &[u8]) -> Result<usize, usize> {
        self.entries.binary_search_by(|e| self.body[e[0] as usize..(e[0] + e[1]) as usize].cmp(key))
    }

    /// The value of `key`.
    #[cfg(test)]
    pub(crate) fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.search(key).ok().map(|i| self.value(i))
    }
}

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// The stored image of a body: zstd at `level` when that makes it smaller, else raw.
pub(crate) fn image(body: &[u8], level: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() / 2 + 16);
    out.push(IMAGE_VERSION);
    if body.len() >= MIN_COMPRESS {
        let compressed = COMPRESSOR.with(|c| {
            let mut c = c.borrow_mut();
            if c.as_ref().is_none_or(|(l, _)| *l != level) {
                *c = zstd::bulk::Compressor::new(level).ok().map(|z| (level, z));
            }
            c.as_mut().and_then(|(_, z)| z.compress(body).ok())
        });
        if let Some(z) = compressed
            && z.len() + 1 < body.len()
        {
            out.push(CODEC_ZSTD);
            put_leb(&mut out, body.len() as u64);
            out.extend_from_slice(&z);
            return out;
        }
    }
    out.push(CODEC_RAW);
    put_leb(&mut out, body.len() as u64);
    out.extend_from_slice(body);
    out
}

/// The body of an image; an error names what is wrong.
pub(crate) fn body_of(image: &[u8]) -> Result<Vec<u8>, &'static str> {
    let (&version, rest) = image.split_first().ok_or("empty page image")?;
    if version != IMAGE_VERSION {
        return Err("unknown page image version");
    }
    let (&codec, rest) = rest.split_first().ok_or("truncated page image")?;
    let mut at = 0;
    let len = get_leb(rest, &mut at).ok_or("bad length in page image")?;
    let len = usize::try_from(len).ok().filter(|&l| l <= MAX_BODY).ok_or("page image declares an impossible length")?;
    let payload = &rest[at..];
    match codec {
        CODEC_RAW if payload.len() == len => Ok(payload.to_vec()),
        CODEC_RAW => Err("page image length does not match its header"),
        CODEC_ZSTD => {
            let body = DECOMPRESSOR.with(|d| {
                let mut d = d.borrow_mut();
                if d.is_none() {
                    *d = zstd::bulk::Decompressor::new().ok();
                }
                d.as_mut().map(|z| z.decompress(payload, len))
            });
            match body {
                Some(Ok(b)) if b.len() == len => Ok(b),
                Some(Ok(_)) => Err("page image length does not match its header"),
                Some(Err(_)) => Err("page image does not decompress"),
                None => Err("no zstd decompressor"),
            }
        }
        _ => Err("unknown page image codec"),
    }
}

/// Where a page's image is: pack file, offset, length, and the image's checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PageLoc {
    pub(crate) pack: u32,
    pub(crate) offset: u64,
    pub(crate) len: u32,
    pub(crate) checksum: [u8; CHECKSUM_LEN],
}

impl PageLoc {
    pub(crate) fn encode(&self) -> [u8; DIR_RECORD_LEN] {
        let mut b = [0u8; DIR_RECORD_LEN];
        b[..4].copy_from_slice(&self.pack.to_le_bytes());
        b[4..12].copy_from_slice(&self.offset.to_le_bytes());
        b[12..16].copy_from_slice(&self.len.to_le_bytes());
        b[16..].copy_from_slice(&self.checksum);
        b
    }

    pub(crate) fn parse(raw: &[u8]) -> Option<PageLoc> {
        if raw.len() != DIR_RECORD_LEN {
            return None;
        }
        let pack = u32::from_le_bytes(raw[..4].try_into().ok()?);
        let offset = u64::from_le_bytes(raw[4..12].try_into().ok()?);
        let len = u32::from_le_bytes(raw[12..16].try_into().ok()?);
        let checksum = raw[16..].try_into().ok()?;
        Some(PageLoc { pack, offset, len, checksum })
    }
}

/// The checksum of an image: its (keyed, with an auth key) blake3 digest, truncated.
pub(crate) fn checksum(hasher: &Hasher, image: &[u8]) -> [u8; CHECKSUM_LEN] {
    let d = hasher.digest(image);
    let mut c = [0u8; CHECKSUM_LEN];
    c.copy_from_slice(&d.as_bytes()[..CHECKSUM_LEN]);
    c
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn body(lo: &[u8], records: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut w = BodyWriter::new(lo, 0);
        for (k, v) in records {
            w.push(k, v);
        }
        w.finish()
    }

    #[test]
    fn body_round_trip_and_search() {
        let b = body(b"a", &[(b"a", b"1"), (b"b", b""), (b"bz", b"333")]);
        let expected: usize = 2 + 1 + [(1, 1), (1, 0), (2, 3)].iter().map(|&(k, v)| 2 + k + v).sum::<usize>();
        assert_eq!(b.len(), expected);
        let p = Page::parse(b).unwrap();
        assert_eq!(p.lo(), b"a");
        assert_eq!(p.len(), 3);
        assert_eq!(p.get(b"bz"), Some(&b"333"[..]));
        assert_eq!(p.get(b"b"), Some(&b""[..]));
        assert_eq!(p.get(b"c"), None);
        assert_eq!(p.search(b"ba"), Err(2));
        assert_eq!(entry_size(b"bz", b"333"), 7);
    }

    #[test]
    fn malformed_bodies_are_refused() {
        // Out of order, duplicate, below lo, trailing bytes, truncated, huge count.
        assert!(Page::parse(body(b"", &[(b"b", b""), (b"a", b"")])).is_none());
        assert!(Page::parse(body(b"", &[(b"a", b""), (b"a", b"")])).is_none());
        assert!(Page::parse(body(b"m", &[(b"a", b"")])).is_none());
        let mut b = body(b"", &[(b"a", b"x")]);
        b.push(0);
        assert!(Page::parse(b.clone()).is_none());
        b.truncate(b.len() - 2);
        assert!(Page::parse(b).is_none());
        assert!(Page::parse(vec![0, 0xff, 0xff, 0xff, 0x0f]).is_none());
        assert!(Page::parse(Vec::new()).is_none());
    }

    #[test]
    fn images_round_trip_raw_and_compressed() {
        let small = body(b"", &[(b"k", b"v")]);
        let big = body(
            b"",
            &(0..200u32)
                .map(|i| (i.to_be_bytes(), [7u8; 40]))
                .collect::<Vec<_>>()
                .iter()
                .map(|(k, v)| (&k[..], &v[..]))
                .collect::<Vec<_>>(),
        );
        for b in [small, big] {
            let img = image(&b, 3);
            assert_eq!(body_of(&img).unwrap(), b);
        }
        let big = body(b"", &[(b"k", &[1u8; 10_000][..])]);
        assert!(image(&big, 3).len() < 200);
    }

    #[test]
    fn bad_images_are_errors() {
        let img = image(&body(b"", &[(b"k", &[5u8; 1000][..])]), 3);
        assert!(body_of(&img[..img.len() - 1]).is_err());
        assert!(body_of(&[]).is_err());
        assert!(body_of(&[9, 0, 0]).is_err());
        assert!(body_of(&[1, 7, 0]).is_err());
        assert!(body_of(&[1, 0, 0xff, 0xff, 0xff, 0xff, 0x7f]).is_err());
        let mut lying = img.clone();
        lying[2] ^= 1;
        assert!(body_of(&lying).is_err());
    }

    #[test]
    fn locations_round_trip() {
        let loc = PageLoc { pack: 3, offset: 1 << 33, len: 999, checksum: [7; CHECKSUM_LEN] };
        assert_eq!(PageLoc::parse(&loc.encode()), Some(loc));
        assert_eq!(PageLoc::parse(&loc.encode()[1..]), None);
    }
}
