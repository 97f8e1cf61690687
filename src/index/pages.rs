//! Record pages and the entries of pack files: the byte layouts of a page, its stored
//! image, the commit records that vouch for images, and a page's directory record (pure;
//! see `docs/FORMAT.md`).
//!
//! A page holds the records of one key range `[lo, hi)` in key order. Its *body* is
//! `[lo][hi]` then `[count]` and `count × [key][value]` (each a LEB128 length and the bytes;
//! `hi` a flag byte first, absent for the last page); its *image*, the bytes written to a
//! pack file, is a header (magic, sequence number, codec, lengths), the body raw or as one
//! zstd frame, and a checksum of everything before it. A *commit record*, appended after the
//! images of a commit (or of a compaction), lists them — where they are, their checksums,
//! sequence numbers and key ranges — with the number of pages of the directory after the
//! commit and a hash of it, so that the directory can be rebuilt from the packs alone.
//! The directory record that locates an image carries the image's checksum and sequence
//! number, so a page is verified before it is parsed.
//!
//! Format 2 images (version byte `0x01`, no sequence number, no `hi`, checked against the
//! directory record only) are still read, to upgrade a format 2 store.
//!
//! Invariant: [`Page::parse`] accepts only bodies whose keys are strictly increasing, not
//! below `lo` and below `hi`, so binary search over a parsed page is sound; every length is
//! checked against the bytes present, so no input makes it read out of bounds or allocate
//! more than [`MAX_BODY`] bytes.

use std::cell::RefCell;

use crate::blob::Hasher;

/// First bytes of a format 3 page image.
pub(crate) const IMAGE_MAGIC: [u8; 4] = [0xb7, b'p', b'g', 0x03];
/// First bytes of a commit record.
pub(crate) const RECORD_MAGIC: [u8; 4] = [0xb7, b'c', b'm', 0x03];
/// Version byte of a format 2 image.
const IMAGE_VERSION_2: u8 = 1;
const CODEC_RAW: u8 = 0;
const CODEC_ZSTD: u8 = 1;
/// Bodies shorter than this are stored raw (zstd gains nothing on them).
const MIN_COMPRESS: usize = 64;
/// Largest body a page may declare: a larger length in an image is corruption.
pub(crate) const MAX_BODY: usize = 1 << 20;
/// Largest commit record: a larger length is corruption.
pub(crate) const MAX_RECORD: usize = 64 << 20;
/// Length of a checksum (of an image or a record).
pub(crate) const CHECKSUM_LEN: usize = 16;
/// Length of a directory record (format 3; format 2's lacked the sequence number).
pub(crate) const DIR_RECORD_LEN: usize = 4 + 8 + 4 + CHECKSUM_LEN + 8;
const DIR_RECORD_LEN_2: usize = DIR_RECORD_LEN - 8;
/// Bytes of an image before the body's length: magic, seq, codec, payload length.
const IMAGE_HEAD: usize = 4 + 8 + 1 + 4;

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
    /// Where the records start (after `lo` and `hi`).
    head: usize,
    entries: usize,
}

impl BodyWriter {
    /// A body for the range `[lo, hi)` (`hi` `None`: to the end of the key space).
    pub(crate) fn new(lo: &[u8], hi: Option<&[u8]>, capacity: usize) -> BodyWriter {
        let mut buf = Vec::with_capacity(capacity + lo.len() + hi.map_or(0, <[u8]>::len) + 24);
        put_bytes(&mut buf, lo);
        put_bound(&mut buf, hi);
        BodyWriter { head: buf.len(), buf, entries: 0 }
    }

    pub(crate) fn push(&mut self, key: &[u8], value: &[u8]) {
        put_bytes(&mut self.buf, key);
        put_bytes(&mut self.buf, value);
        self.entries += 1;
    }

    /// The body: `lo`, `hi`, the count, then the records (the count goes before the
    /// records, so they are moved once here).
    pub(crate) fn finish(self) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.buf.len() + 10);
        body.extend_from_slice(&self.buf[..self.head]);
        put_leb(&mut body, self.entries as u64);
        body.extend_from_slice(&self.buf[self.head..]);
        body
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_leb(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// An upper bound: `0` for none, else `1` and the bytes.
fn put_bound(out: &mut Vec<u8>, hi: Option<&[u8]>) {
    match hi {
        Some(h) => {
            out.push(1);
            put_bytes(out, h);
        }
        None => out.push(0),
    }
}

fn get_bound(bytes: &[u8], at: &mut usize) -> Option<Option<(usize, usize)>> {
    let flag = *bytes.get(*at)?;
    *at += 1;
    match flag {
        0 => Some(None),
        1 => get_slice(bytes, at).map(Some),
        _ => None,
    }
}

fn get_u64(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let v = u64::from_le_bytes(bytes.get(*at..*at + 8)?.try_into().ok()?);
    *at += 8;
    Some(v)
}

fn get_u32(bytes: &[u8], at: &mut usize) -> Option<u32> {
    let v = u32::from_le_bytes(bytes.get(*at..*at + 4)?.try_into().ok()?);
    *at += 4;
    Some(v)
}

fn get_array<const N: usize>(bytes: &[u8], at: &mut usize) -> Option<[u8; N]> {
    let v: [u8; N] = bytes.get(*at..*at + N)?.try_into().ok()?;
    *at += N;
    Some(v)
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
    /// `None` for a format 2 body (which does not hold its upper bound).
    hi: Option<Option<(usize, usize)>>,
    /// Per record: key start, key length, value start, value length.
    entries: Vec<[u32; 4]>,
}

impl Page {
    /// Parses a body (of format 2 when `format2`, without `hi`); `None` if it is malformed
    /// (bad lengths, keys out of order, below `lo` or not below `hi`, trailing bytes).
    pub(crate) fn parse(body: Vec<u8>, format2: bool) -> Option<Page> {
        if body.len() > MAX_BODY {
            return None;
        }
        let mut at = 0;
        let lo = get_slice(&body, &mut at)?;
        let hi = if format2 { None } else { Some(get_bound(&body, &mut at)?) };
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
            let ceiling = match hi {
                Some(Some(h)) => key < &body[h.0..h.0 + h.1],
                _ => true,
            };
            if !floor || !ceiling {
                return None;
            }
            prev = Some(k);
            entries.push([k.0 as u32, k.1 as u32, v.0 as u32, v.1 as u32]);
        }
        if at != body.len() {
            return None;
        }
        Some(Page { body, lo, hi, entries })
    }

    /// The page's upper bound as its body records it: `None` for a format 2 body,
    /// `Some(None)` for the last page.
    pub(crate) fn hi(&self) -> Option<Option<&[u8]>> {
        self.hi.map(|h| h.map(|(s, l)| &self.body[s..s + l]))
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

/// The stored image of a body, sequence number `seq`: zstd at `level` when that makes
/// it smaller, else raw; the checksum (keyed with `hasher`'s key, if any) ends it.
pub(crate) fn image(body: &[u8], level: i32, seq: u64, hasher: &Hasher) -> Vec<u8> {
    let compressed = if body.len() >= MIN_COMPRESS {
        COMPRESSOR
            .with(|c| {
                let mut c = c.borrow_mut();
                if c.as_ref().is_none_or(|(l, _)| *l != level) {
                    *c = zstd::bulk::Compressor::new(level).ok().map(|z| (level, z));
                }
                c.as_mut().and_then(|(_, z)| z.compress(body).ok())
            })
            .filter(|z| z.len() + 1 < body.len())
    } else {
        None
    };
    let (codec, payload) = match &compressed {
        Some(z) => (CODEC_ZSTD, z.as_slice()),
        None => (CODEC_RAW, body),
    };
    let mut out = Vec::with_capacity(IMAGE_HEAD + 10 + payload.len() + CHECKSUM_LEN);
    out.extend_from_slice(&IMAGE_MAGIC);
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(codec);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    put_leb(&mut out, body.len() as u64);
    out.extend_from_slice(payload);
    let sum = checksum(hasher, &out);
    out.extend_from_slice(&sum);
    out
}

/// The length of the entry (image or record) that starts `bytes`, read from its header
/// (not verified); `None` when no entry starts there.
pub(crate) fn entry_len(bytes: &[u8]) -> Option<usize> {
    let magic: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    let mut at = 4;
    if magic == IMAGE_MAGIC {
        at += 9;
        let payload = get_u32(bytes, &mut at)? as usize;
        get_leb(bytes, &mut at)?;
        at.checked_add(payload)?.checked_add(CHECKSUM_LEN)
    } else if magic == RECORD_MAGIC {
        let len = get_u32(bytes, &mut at)? as usize;
        if len > MAX_RECORD {
            return None;
        }
        at.checked_add(len)?.checked_add(CHECKSUM_LEN)
    } else {
        None
    }
}

/// Checks the checksum that ends an entry (image or record) of exactly `entry.len()`
/// bytes; returns it.
pub(crate) fn verify_entry(entry: &[u8], hasher: &Hasher) -> Result<[u8; CHECKSUM_LEN], &'static str> {
    let split = entry.len().checked_sub(CHECKSUM_LEN).ok_or("truncated entry")?;
    let (head, sum) = entry.split_at(split);
    if checksum(hasher, head) != sum {
        return Err("checksum mismatch (damaged, or not written with this store's auth key)");
    }
    sum.try_into().map_err(|_| "truncated entry")
}

/// The sequence number and body of a verified format 3 image; an error names what is
/// wrong.
pub(crate) fn body_of(image: &[u8]) -> Result<(u64, Vec<u8>), &'static str> {
    if image.get(..4) != Some(&IMAGE_MAGIC[..]) {
        return Err("not a page image");
    }
    let mut at = 4;
    let seq = get_u64(image, &mut at).ok_or("truncated page image")?;
    let codec = *image.get(at).ok_or("truncated page image")?;
    at += 1;
    let payload_len = get_u32(image, &mut at).ok_or("truncated page image")? as usize;
    let len = get_leb(image, &mut at).ok_or("bad length in page image")?;
    let len = usize::try_from(len).ok().filter(|&l| l <= MAX_BODY).ok_or("page image declares an impossible length")?;
    let end = at.checked_add(payload_len).filter(|&e| e + CHECKSUM_LEN == image.len());
    let payload = &image[at..end.ok_or("page image length does not match its header")?];
    decode_payload(codec, payload, len).map(|b| (seq, b))
}

/// The body of a format 2 image (version byte `0x01`).
pub(crate) fn body_of_format2(image: &[u8]) -> Result<Vec<u8>, &'static str> {
    let (&version, rest) = image.split_first().ok_or("empty page image")?;
    if version != IMAGE_VERSION_2 {
        return Err("unknown page image version");
    }
    let (&codec, rest) = rest.split_first().ok_or("truncated page image")?;
    let mut at = 0;
    let len = get_leb(rest, &mut at).ok_or("bad length in page image")?;
    let len = usize::try_from(len).ok().filter(|&l| l <= MAX_BODY).ok_or("page image declares an impossible length")?;
    decode_payload(codec, &rest[at..], len)
}

fn decode_payload(codec: u8, payload: &[u8], len: usize) -> Result<Vec<u8>, &'static str> {
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

/// True when `image` is a format 2 image.
pub(crate) fn is_format2(image: &[u8]) -> bool {
    image.first() == Some(&IMAGE_VERSION_2)
}

/// What a commit record says: see [`CommitRecord`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordKind {
    /// A commit: the images it wrote, all of sequence number `seq`.
    Commit,
    /// A compaction: the images it copied (each keeping its sequence number).
    Compaction,
    /// Sequence numbers `(base, seq]` are void: commits an interrupted process wrote to a
    /// pack but never installed in the directory (found at the next writable open).
    Void,
}

/// An image a record vouches for, and the page it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Vouched {
    pub(crate) offset: u64,
    pub(crate) len: u32,
    pub(crate) seq: u64,
    pub(crate) checksum: [u8; CHECKSUM_LEN],
    pub(crate) lo: Vec<u8>,
    pub(crate) hi: Option<Vec<u8>>,
}

/// A commit record (see the module docs and `docs/FORMAT.md`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CommitRecord {
    pub(crate) kind: RecordKind,
    /// The commit's sequence number; for a compaction the directory's newest; for a void
    /// record the newest void one.
    pub(crate) seq: u64,
    /// Void records: the sequence numbers above this one (up to `seq`) are void; else 0.
    pub(crate) base: u64,
    /// The store's generation when it was written.
    pub(crate) generation: u64,
    /// Pages of the directory after it.
    pub(crate) pages: u64,
    /// Hash of the directory after it ([`DirHash`]).
    pub(crate) hash: [u8; CHECKSUM_LEN],
    /// The images it vouches for, in the same pack.
    pub(crate) images: Vec<Vouched>,
}

impl CommitRecord {
    /// The record's bytes, checksum included.
    pub(crate) fn encode(&self, hasher: &Hasher) -> Vec<u8> {
        let mut body = Vec::with_capacity(64 + self.images.len() * 80);
        body.push(match self.kind {
            RecordKind::Commit => 0,
            RecordKind::Compaction => 1,
            RecordKind::Void => 2,
        });
        for v in [self.seq, self.base, self.generation, self.pages] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        body.extend_from_slice(&self.hash);
        put_leb(&mut body, self.images.len() as u64);
        for i in &self.images {
            body.extend_from_slice(&i.offset.to_le_bytes());
            body.extend_from_slice(&i.len.to_le_bytes());
            body.extend_from_slice(&i.seq.to_le_bytes());
            body.extend_from_slice(&i.checksum);
            put_bytes(&mut body, &i.lo);
            put_bound(&mut body, i.hi.as_deref());
        }
        let mut out = Vec::with_capacity(8 + body.len() + CHECKSUM_LEN);
        out.extend_from_slice(&RECORD_MAGIC);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        let sum = checksum(hasher, &out);
        out.extend_from_slice(&sum);
        out
    }

    /// Parses a verified record (the whole entry, checksum included).
    pub(crate) fn parse(entry: &[u8]) -> Option<CommitRecord> {
        if entry.get(..4) != Some(&RECORD_MAGIC[..]) {
            return None;
        }
        let mut at = 4;
        let len = get_u32(entry, &mut at)? as usize;
        let body = entry.get(at..at.checked_add(len)?)?;
        if at + len + CHECKSUM_LEN != entry.len() {
            return None;
        }
        let mut at = 0;
        let kind = match *body.first()? {
            0 => RecordKind::Commit,
            1 => RecordKind::Compaction,
            2 => RecordKind::Void,
            _ => return None,
        };
        at += 1;
        let seq = get_u64(body, &mut at)?;
        let base = get_u64(body, &mut at)?;
        let generation = get_u64(body, &mut at)?;
        let pages = get_u64(body, &mut at)?;
        let hash = get_array(body, &mut at)?;
        let count = usize::try_from(get_leb(body, &mut at)?).ok()?;
        if count > body.len() / 38 {
            return None;
        }
        let mut images = Vec::with_capacity(count);
        for _ in 0..count {
            let offset = get_u64(body, &mut at)?;
            let len = get_u32(body, &mut at)?;
            let seq = get_u64(body, &mut at)?;
            let checksum = get_array(body, &mut at)?;
            let (s, l) = get_slice(body, &mut at)?;
            let lo = body[s..s + l].to_vec();
            let hi = get_bound(body, &mut at)?.map(|(s, l)| body[s..s + l].to_vec());
            images.push(Vouched { offset, len, seq, checksum, lo, hi });
        }
        (at == body.len()).then_some(CommitRecord { kind, seq, base, generation, pages, hash, images })
    }
}

/// The hash of a directory: the XOR, over its pages, of the first 16 bytes of blake3 of
/// `[seq u64][lo][hi]` (as a record entry encodes them). Order does not matter, so it is
/// the same however the pages are listed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DirHash(pub(crate) [u8; CHECKSUM_LEN]);

impl DirHash {
    /// Adds (or, again, removes) a page.
    pub(crate) fn toggle(&mut self, lo: &[u8], hi: Option<&[u8]>, seq: u64) {
        let mut b = Vec::with_capacity(lo.len() + hi.map_or(0, <[u8]>::len) + 24);
        b.extend_from_slice(&seq.to_le_bytes());
        put_bytes(&mut b, lo);
        put_bound(&mut b, hi);
        let h = blake3::hash(&b);
        for (x, y) in self.0.iter_mut().zip(h.as_bytes()) {
            *x ^= y;
        }
    }
}

/// Where a page's image is: pack file, offset, length, the image's checksum and its
/// sequence number (0 for a format 2 image).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PageLoc {
    pub(crate) pack: u32,
    pub(crate) offset: u64,
    pub(crate) len: u32,
    pub(crate) checksum: [u8; CHECKSUM_LEN],
    pub(crate) seq: u64,
}

impl PageLoc {
    pub(crate) fn encode(&self) -> [u8; DIR_RECORD_LEN] {
        let mut b = [0u8; DIR_RECORD_LEN];
        b[..4].copy_from_slice(&self.pack.to_le_bytes());
        b[4..12].copy_from_slice(&self.offset.to_le_bytes());
        b[12..16].copy_from_slice(&self.len.to_le_bytes());
        b[16..32].copy_from_slice(&self.checksum);
        b[32..].copy_from_slice(&self.seq.to_le_bytes());
        b
    }

    /// Parses a directory record of format 3 (40 bytes) or format 2 (32 bytes, seq 0).
    pub(crate) fn parse(raw: &[u8]) -> Option<PageLoc> {
        if raw.len() != DIR_RECORD_LEN && raw.len() != DIR_RECORD_LEN_2 {
            return None;
        }
        let pack = u32::from_le_bytes(raw[..4].try_into().ok()?);
        let offset = u64::from_le_bytes(raw[4..12].try_into().ok()?);
        let len = u32::from_le_bytes(raw[12..16].try_into().ok()?);
        let checksum = raw[16..32].try_into().ok()?;
        let seq = match raw.get(32..40) {
            Some(s) => u64::from_le_bytes(s.try_into().ok()?),
            None => 0,
        };
        Some(PageLoc { pack, offset, len, checksum, seq })
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

    fn body(lo: &[u8], hi: Option<&[u8]>, records: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut w = BodyWriter::new(lo, hi, 0);
        for (k, v) in records {
            w.push(k, v);
        }
        w.finish()
    }

    #[test]
    fn body_round_trip_and_search() {
        let b = body(b"a", Some(b"c"), &[(b"a", b"1"), (b"b", b""), (b"bz", b"333")]);
        let expected: usize = 2 + 3 + 1 + [(1, 1), (1, 0), (2, 3)].iter().map(|&(k, v)| 2 + k + v).sum::<usize>();
        assert_eq!(b.len(), expected);
        let p = Page::parse(b, false).unwrap();
        assert_eq!(p.lo(), b"a");
        assert_eq!(p.hi(), Some(Some(&b"c"[..])));
        assert_eq!(p.len(), 3);
        assert_eq!(p.get(b"bz"), Some(&b"333"[..]));
        assert_eq!(p.get(b"b"), Some(&b""[..]));
        assert_eq!(p.get(b"c"), None);
        assert_eq!(p.search(b"ba"), Err(2));
        assert_eq!(entry_size(b"bz", b"333"), 7);
        assert_eq!(Page::parse(body(b"", None, &[]), false).unwrap().hi(), Some(None));
    }

    #[test]
    fn malformed_bodies_are_refused() {
        // Out of order, duplicate, below lo, not below hi, trailing bytes, truncated, huge count.
        assert!(Page::parse(body(b"", None, &[(b"b", b""), (b"a", b"")]), false).is_none());
        assert!(Page::parse(body(b"", None, &[(b"a", b""), (b"a", b"")]), false).is_none());
        assert!(Page::parse(body(b"m", None, &[(b"a", b"")]), false).is_none());
        assert!(Page::parse(body(b"", Some(b"b"), &[(b"b", b"")]), false).is_none());
        let mut b = body(b"", None, &[(b"a", b"x")]);
        b.push(0);
        assert!(Page::parse(b.clone(), false).is_none());
        b.truncate(b.len() - 2);
        assert!(Page::parse(b, false).is_none());
        assert!(Page::parse(vec![0, 0, 0xff, 0xff, 0xff, 0x0f], false).is_none());
        assert!(Page::parse(vec![0, 7, 0], false).is_none());
        assert!(Page::parse(Vec::new(), false).is_none());
    }

    #[test]
    fn images_round_trip_raw_and_compressed() {
        let small = body(b"", None, &[(b"k", b"v")]);
        let big = body(
            b"",
            None,
            &(0..200u32)
                .map(|i| (i.to_be_bytes(), [7u8; 40]))
                .collect::<Vec<_>>()
                .iter()
                .map(|(k, v)| (&k[..], &v[..]))
                .collect::<Vec<_>>(),
        );
        for (seq, b) in [(1u64, small), (u64::MAX, big)] {
            let img = image(&b, 3, seq, &Hasher::Plain);
            assert_eq!(entry_len(&img), Some(img.len()));
            verify_entry(&img, &Hasher::Plain).unwrap();
            assert!(verify_entry(&img, &Hasher::Keyed([1; 32])).is_err());
            assert_eq!(body_of(&img).unwrap(), (seq, b));
        }
        let big = body(b"", None, &[(b"k", &[1u8; 10_000][..])]);
        assert!(image(&big, 3, 1, &Hasher::Plain).len() < 200);
    }

    #[test]
    fn bad_images_are_errors() {
        let img = image(&body(b"", None, &[(b"k", &[5u8; 1000][..])]), 3, 9, &Hasher::Plain);
        assert!(body_of(&img[..img.len() - 1]).is_err());
        assert!(body_of(&[]).is_err());
        assert!(body_of(&[9, 0, 0]).is_err());
        let mut lying = img.clone();
        lying[13] ^= 1;
        assert!(verify_entry(&lying, &Hasher::Plain).is_err());
        assert!(body_of(&lying).is_err());
        assert!(body_of_format2(&[1, 7, 0]).is_err());
        assert!(body_of_format2(&[1, 0, 0xff, 0xff, 0xff, 0xff, 0x7f]).is_err());
        assert_eq!(body_of_format2(&[1, 0, 2, 5, 6]).unwrap(), vec![5, 6]);
    }

    #[test]
    fn records_round_trip() {
        let r = CommitRecord {
            kind: RecordKind::Compaction,
            seq: 77,
            base: 0,
            generation: 5,
            pages: 2,
            hash: [3; CHECKSUM_LEN],
            images: vec![
                Vouched { offset: 64, len: 100, seq: 70, checksum: [1; 16], lo: vec![], hi: Some(b"kb".to_vec()) },
                Vouched { offset: 164, len: 99, seq: 77, checksum: [2; 16], lo: b"kb".to_vec(), hi: None },
            ],
        };
        let e = r.encode(&Hasher::Plain);
        assert_eq!(entry_len(&e), Some(e.len()));
        verify_entry(&e, &Hasher::Plain).unwrap();
        assert_eq!(CommitRecord::parse(&e), Some(r));
        assert_eq!(CommitRecord::parse(&e[..e.len() - 1]), None);
    }

    #[test]
    fn directory_hashes_ignore_order() {
        let (mut a, mut b) = (DirHash::default(), DirHash::default());
        a.toggle(b"", Some(b"m"), 1);
        a.toggle(b"m", None, 2);
        b.toggle(b"m", None, 2);
        b.toggle(b"", Some(b"m"), 1);
        assert_eq!(a, b);
        b.toggle(b"m", None, 2);
        b.toggle(b"m", None, 3);
        assert_ne!(a, b);
    }

    #[test]
    fn locations_round_trip() {
        let loc = PageLoc { pack: 3, offset: 1 << 33, len: 999, checksum: [7; CHECKSUM_LEN], seq: 42 };
        assert_eq!(PageLoc::parse(&loc.encode()), Some(loc));
        assert_eq!(PageLoc::parse(&loc.encode()[..32]), Some(PageLoc { seq: 0, ..loc }));
        assert_eq!(PageLoc::parse(&loc.encode()[1..]), None);
    }
}
