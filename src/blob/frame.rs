//! Frames: the stored form of an object (see the module docs of [`crate::blob`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::digest::{Digest, Hasher};

/// The frame format version written into every frame's first byte.
pub(crate) const FRAME_VERSION: u8 = 1;
/// Size of a trained dictionary.
pub(crate) const DICT_SIZE: usize = 16 * 1024;
/// A dictionary is trained once this many values it would compress are collected...
pub(crate) const TRAIN_SAMPLES: usize = 1000;
/// ...or once the collected values total this many bytes (64 times [`DICT_SIZE`]).
pub(crate) const TRAIN_BYTES: usize = 1 << 20;

const CODEC_RAW: u8 = 0;
const CODEC_ZSTD: u8 = 1;
const CODEC_ZSTD_DICT: u8 = 2;
/// A delta against another object (see [`super::delta`]).
pub(crate) const CODEC_DELTA: u8 = 3;
/// Raw, with the pickle placed so that the numpy array data inside it starts at a
/// multiple of [`ALIGN`] from the frame's start (see [`Codec::encode`]).
pub(crate) const CODEC_ALIGNED: u8 = 4;
/// The alignment of array data in an aligned frame (a cache line; every dtype's item size
/// divides it).
pub(crate) const ALIGN: usize = 64;
/// Arrays with at least this many data bytes are stored in aligned frames.
pub(crate) const ALIGNED_MIN: usize = 64 * 1024;
/// Values up to this size are compressed with the dictionary when there is one.
pub(crate) const DICT_MAX_VALUE: usize = 64 * 1024;
/// Values of at most this size are framed raw: they are stored inline in the store's
/// record pages, which are compressed whole (a page of similar small values compresses
/// far better, and faster, than each value alone). A raw frame's header takes at most 3
/// bytes here, so such a frame fits the index's inline limit of 4,096 bytes.
pub(crate) const RAW_MAX: usize = 4088;
/// Largest uncompressed length a frame may declare (1 TiB): a corrupted length field
/// must not become a huge allocation.
pub(crate) const MAX_LEN: u64 = 1 << 40;

struct Dict {
    bytes: Vec<u8>,
    compressors: Mutex<Vec<zstd::bulk::Compressor<'static>>>,
    decompressors: Mutex<Vec<zstd::bulk::Decompressor<'static>>>,
}

/// Compresses, frames, verifies. Shared by all handles of a store (`Sync`).
pub(crate) struct Codec {
    level: i32,
    hasher: Hasher,
    dicts: RwLock<HashMap<u32, Arc<Dict>>>,
    /// Dictionary used for new small values; 0 = none.
    current: AtomicU32,
    plain: Mutex<Vec<zstd::bulk::Compressor<'static>>>,
    plain_d: Mutex<Vec<zstd::bulk::Decompressor<'static>>>,
}

impl Codec {
    pub(crate) fn new(level: i32, hasher: Hasher) -> Codec {
        Codec {
            level,
            hasher,
            dicts: RwLock::new(HashMap::new()),
            current: AtomicU32::new(0),
            plain: Mutex::new(Vec::new()),
            plain_d: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn digest(&self, pickle: &[u8]) -> Digest {
        self.hasher.digest(pickle)
    }

    /// The store's hasher (keyed with its auth key, if any).
    pub(crate) fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    /// The zstd level new frames are compressed with.
    pub(crate) fn level(&self) -> i32 {
        self.level
    }

    /// Registers a dictionary read from the store. Fails when zstd rejects it.
    pub(crate) fn add_dict(&self, id: u32, bytes: Vec<u8>) -> Result<(), &'static str> {
        zstd::bulk::Decompressor::with_dictionary(&bytes).map_err(|_| "dictionary rejected by zstd")?;
        let dict = Arc::new(Dict { bytes, compressors: Mutex::new(Vec::new()), decompressors: Mutex::new(Vec::new()) });
        self.dicts.write().unwrap_or_else(PoisonError::into_inner).insert(id, dict);
        Ok(())
    }

    /// Makes dictionary `id` the one new small values are compressed with.
    pub(crate) fn set_current_dict(&self, id: u32) {
        self.current.store(id, Ordering::Release);
    }

    pub(crate) fn current_dict(&self) -> u32 {
        self.current.load(Ordering::Acquire)
    }

    fn dict(&self, id: u32) -> Option<Arc<Dict>> {
        self.dicts.read().unwrap_or_else(PoisonError::into_inner).get(&id).cloned()
    }

    /// Trains a dictionary from sample values; `None` when zstd cannot (too few or too
    /// uniform samples).
    pub(crate) fn train(samples: &[Vec<u8>]) -> Option<Vec<u8>> {
        zstd::dict::from_samples(samples, DICT_SIZE).ok().filter(|d| !d.is_empty())
    }

    /// Builds the frame of `pickle`: for a numpy array of at least [`ALIGNED_MIN`] data
    /// bytes an aligned frame (raw, its data aligned for a memory map); otherwise
    /// compressed when that pays, raw when not.
    pub(crate) fn encode(&self, pickle: &[u8]) -> Vec<u8> {
        if let Some(frame) = aligned(pickle) {
            return frame;
        }
        let len = pickle.len();
        if len > RAW_MAX {
            let dict_id = self.current_dict();
            let dict = if dict_id != 0 && len <= DICT_MAX_VALUE { self.dict(dict_id) } else { None };
            let codec = if dict.is_some() { CODEC_ZSTD_DICT } else { CODEC_ZSTD };
            let mut header = Vec::with_capacity(24);
            header.extend_from_slice(&[FRAME_VERSION, codec]);
            put_leb(&mut header, len as u64);
            if dict.is_some() {
                put_leb(&mut header, u64::from(dict_id));
            }
            // zstd writes straight after the header: one buffer for the frame, never a
            // copy of the compressed bytes. The buffer is zeroed by the allocator (pages
            // of a large one are only touched where zstd writes).
            let mut out = vec![0u8; header.len() + zstd::zstd_safe::compress_bound(len)];
            out[..header.len()].copy_from_slice(&header);
            let written = match &dict {
                Some(d) => compress_with(&d.compressors, self.level, Some(&d.bytes), pickle, &mut out[header.len()..]),
                None => compress_with(&self.plain, self.level, None, pickle, &mut out[header.len()..]),
            };
            // Compressed only when it pays: codec, lengths and payload smaller than the
            // pickle itself.
            if let Some(n) = written
                && header.len() - 1 + n < len
            {
                out.truncate(header.len() + n);
                out.shrink_to_fit();
                return out;
            }
        }
        let mut out = Vec::with_capacity(2 + leb_len(len as u64) + len);
        out.extend_from_slice(&[FRAME_VERSION, CODEC_RAW]);
        put_leb(&mut out, len as u64);
        out.extend_from_slice(pickle);
        out
    }

    /// Reads a frame back to the pickle bytes and checks them against `digest`.
    pub(crate) fn decode(&self, frame: &[u8], digest: &Digest) -> Result<Vec<u8>, &'static str> {
        self.decode_borrowed(frame, digest).map(std::borrow::Cow::into_owned)
    }

    /// [`Codec::decode`] of a frame the caller owns: a raw or aligned frame becomes the
    /// pickle in place (its header moved out), with no second buffer of the value's size.
    pub(crate) fn decode_owned(&self, mut frame: Vec<u8>, digest: &Digest) -> Result<Vec<u8>, &'static str> {
        let start = match self.decode_borrowed(&frame, digest)? {
            std::borrow::Cow::Owned(v) => return Ok(v),
            std::borrow::Cow::Borrowed(b) => b.as_ptr() as usize - frame.as_ptr() as usize,
        };
        frame.drain(..start);
        Ok(frame)
    }

    /// [`Codec::decode`], borrowing the pickle bytes from a raw frame instead of copying them.
    pub(crate) fn decode_borrowed<'a>(
        &self,
        frame: &'a [u8],
        digest: &Digest,
    ) -> Result<std::borrow::Cow<'a, [u8]>, &'static str> {
        use std::borrow::Cow;
        let (&version, rest) = frame.split_first().ok_or("empty frame")?;
        if version != FRAME_VERSION {
            return Err("unknown frame version");
        }
        let (&codec, rest) = rest.split_first().ok_or("truncated frame header")?;
        let (len, mut rest) = get_leb(rest).ok_or("bad length in frame header")?;
        if len > MAX_LEN {
            return Err("frame declares an impossible length");
        }
        let len = len as usize;
        let bytes = match codec {
            CODEC_RAW => {
                if rest.len() != len {
                    return Err("raw frame length does not match its header");
                }
                Cow::Borrowed(rest)
            }
            CODEC_ZSTD | CODEC_ZSTD_DICT => {
                let dict = if codec == CODEC_ZSTD_DICT {
                    let (id, r) = get_leb(rest).ok_or("bad dictionary id in frame header")?;
                    rest = r;
                    let id = u32::try_from(id).map_err(|_| "bad dictionary id in frame header")?;
                    Some(self.dict(id).ok_or("frame names a dictionary the store does not have")?)
                } else {
                    None
                };
                // The zstd frame records its own content size; both must agree before
                // the output buffer is allocated.
                match zstd::zstd_safe::get_frame_content_size(rest) {
                    Ok(Some(n)) if n == len as u64 => {}
                    _ => return Err("compressed payload does not match its header"),
                }
                let pool = match &dict {
                    Some(d) => &d.decompressors,
                    None => &self.plain_d,
                };
                Cow::Owned(decompress_with(pool, dict.as_ref().map(|d| d.bytes.as_slice()), rest, len)?)
            }
            CODEC_ALIGNED => {
                let (pad, r) = get_leb(rest).ok_or("bad padding in frame header")?;
                let pad = usize::try_from(pad).ok().filter(|&p| p < ALIGN && p <= r.len());
                let pad = pad.ok_or("bad padding length in frame header")?;
                if r[..pad].iter().any(|&b| b != 0) {
                    return Err("frame padding is not zero");
                }
                let r = &r[pad..];
                if r.len() != len {
                    return Err("aligned frame length does not match its header");
                }
                Cow::Borrowed(r)
            }
            CODEC_DELTA => return Err("delta frame read without its base"),
            _ => return Err("unknown codec in frame header"),
        };
        if self.hasher.digest(&bytes) != *digest {
            return Err("content does not hash to its address");
        }
        Ok(bytes)
    }
}

/// How a stored value's payload is compressed, as its frame header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// Stored raw (small values, or values compression does not shrink).
    None,
    /// zstd.
    Zstd,
    /// zstd with the store's trained dictionary of this id.
    ZstdDict(u32),
    /// A zstd delta against another stored object, its base.
    Delta,
    /// Stored raw with its numpy array data aligned, for memory maps.
    Aligned,
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Compression::None => f.write_str("raw"),
            Compression::Zstd => f.write_str("zstd"),
            Compression::ZstdDict(id) => write!(f, "zstd+dict{id}"),
            Compression::Delta => f.write_str("delta"),
            Compression::Aligned => f.write_str("raw-aligned"),
        }
    }
}

/// Reads a frame's header only: its compression and the length of the pickle it holds
/// (`None` when the header is malformed). Nothing is decompressed or verified.
pub(crate) fn header(frame: &[u8]) -> Option<(Compression, u64)> {
    let (&version, rest) = frame.split_first()?;
    if version != FRAME_VERSION {
        return None;
    }
    let (&codec, rest) = rest.split_first()?;
    let (len, rest) = get_leb(rest)?;
    let compression = match codec {
        CODEC_RAW => Compression::None,
        CODEC_ZSTD => Compression::Zstd,
        CODEC_ZSTD_DICT => Compression::ZstdDict(u32::try_from(get_leb(rest)?.0).ok()?),
        CODEC_DELTA if rest.len() >= 32 => Compression::Delta,
        CODEC_ALIGNED => Compression::Aligned,
        _ => return None,
    };
    Some((compression, len))
}

/// Whether `pickle` is a numpy array of at least [`ALIGNED_MIN`] data bytes held in one
/// piece, and if so where its data starts. Only pickles that name numpy in their first
/// bytes are parsed, and only their header is read.
pub(crate) fn array_data_offset(pickle: &[u8]) -> Option<usize> {
    if pickle.len() < ALIGNED_MIN || !pickle.get(..64)?.windows(5).any(|w| w == b"numpy") {
        return None;
    }
    let a = pickleshelf_pickle::numpy::parse(pickle).ok()?;
    if a.data.len() < ALIGNED_MIN {
        return None;
    }
    a.data_offset
}

/// The aligned frame of a numpy array pickle (see [`array_data_offset`]):
/// `[version][codec 4][length LEB128][padding length LEB128][padding][pickle]`, the
/// padding (zeros, under [`ALIGN`] bytes) putting the array data at a multiple of
/// [`ALIGN`] from the frame's start.
fn aligned(pickle: &[u8]) -> Option<Vec<u8>> {
    let at = array_data_offset(pickle)?;
    let head = 2 + leb_len(pickle.len() as u64) + 1;
    let pad = (ALIGN - (head + at) % ALIGN) % ALIGN;
    let mut out = Vec::with_capacity(head + pad + pickle.len());
    out.extend_from_slice(&[FRAME_VERSION, CODEC_ALIGNED]);
    put_leb(&mut out, pickle.len() as u64);
    put_leb(&mut out, pad as u64);
    out.resize(head + pad, 0);
    out.extend_from_slice(pickle);
    Some(out)
}

/// Where the pickle starts in an aligned frame and its length; `None` for any other
/// frame or a malformed header.
pub(crate) fn aligned_payload(frame: &[u8]) -> Option<(usize, usize)> {
    let rest = frame.get(1..)?;
    if frame.first() != Some(&FRAME_VERSION) || rest.first() != Some(&CODEC_ALIGNED) {
        return None;
    }
    let (len, r) = get_leb(rest.get(1..)?)?;
    let (pad, r) = get_leb(r)?;
    let pad = usize::try_from(pad).ok().filter(|&p| p < ALIGN)?;
    if r.get(..pad)?.iter().any(|&b| b != 0) {
        return None;
    }
    let start = frame.len() - r.len() + pad;
    let len = usize::try_from(len).ok()?;
    (start.checked_add(len)? == frame.len()).then_some((start, len))
}

/// Compresses `data` into `out` with a compressor from `pool`; the compressed length, or
/// `None` when zstd fails or `out` is too small.
fn compress_with(
    pool: &Mutex<Vec<zstd::bulk::Compressor<'static>>>,
    level: i32,
    dict: Option<&[u8]>,
    data: &[u8],
    out: &mut [u8],
) -> Option<usize> {
    let popped = pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
    let mut c = match popped {
        Some(c) => c,
        None => match dict {
            Some(d) => zstd::bulk::Compressor::with_dictionary(level, d).ok()?,
            None => zstd::bulk::Compressor::new(level).ok()?,
        },
    };
    let n = c.compress_to_buffer(data, out).ok();
    pool.lock().unwrap_or_else(PoisonError::into_inner).push(c);
    n
}

fn decompress_with(
    pool: &Mutex<Vec<zstd::bulk::Decompressor<'static>>>,
    dict: Option<&[u8]>,
    data: &[u8],
    len: usize,
) -> Result<Vec<u8>, &'static str> {
    let popped = pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
    let mut d = match popped {
        Some(d) => d,
        None => match dict {
            Some(bytes) => zstd::bulk::Decompressor::with_dictionary(bytes),
            None => zstd::bulk::Decompressor::new(),
        }
        .map_err(|_| "zstd could not start")?,
    };
    let mut out = Vec::new();
    out.try_reserve_exact(len).map_err(|_| "frame too large to allocate")?;
    let r = d.decompress_to_buffer(data, &mut out);
    pool.lock().unwrap_or_else(PoisonError::into_inner).push(d);
    match r {
        Ok(n) if n == len => Ok(out),
        _ => Err("compressed payload is corrupted"),
    }
}

fn leb_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

pub(crate) fn put_leb(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an unsigned LEB128 of at most 10 bytes; returns the value and the rest.
pub(crate) fn get_leb(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        let part = u64::from(b & 0x7f);
        if i == 9 && part > 1 {
            return None;
        }
        v |= part << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, &bytes[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: usize) -> Vec<u8> {
        format!("{{'id': {i}, 'name': 'user{i}', 'scores': [1.5, 2.5, {i}.25], 'tags': ['red', 'blue']}}").into_bytes()
    }

    #[test]
    fn header_reads_compression_and_length() {
        let c = Codec::new(3, Hasher::Plain);
        assert_eq!(header(&c.encode(b"x")), Some((Compression::None, 1)));
        assert_eq!(header(&c.encode(&[7u8; 100_000])), Some((Compression::Zstd, 100_000)));
        assert_eq!(header(&[]), None);
        assert_eq!(header(&[FRAME_VERSION, 9, 1, 0]), None);
    }

    #[test]
    fn small_values_are_framed_raw() {
        let c = Codec::new(3, Hasher::Plain);
        let small = vec![7u8; RAW_MAX];
        let f = c.encode(&small);
        assert_eq!(header(&f), Some((Compression::None, RAW_MAX as u64)));
        assert!(f.len() <= RAW_MAX + 4);
        assert_eq!(header(&c.encode(&vec![7u8; RAW_MAX + 1])).map(|h| h.0), Some(Compression::Zstd));
    }

    #[test]
    fn raw_and_zstd_round_trip() {
        let c = Codec::new(3, Hasher::Plain);
        for data in [b"x".to_vec(), vec![7u8; 100_000], sample(3)] {
            let d = c.digest(&data);
            let f = c.encode(&data);
            assert_eq!(c.decode(&f, &d).as_deref(), Ok(data.as_slice()));
        }
        let big = vec![7u8; 100_000];
        assert!(c.encode(&big).len() < 1000, "zeros must compress");
    }

    #[test]
    fn dictionary_frames_name_their_dictionary() {
        let samples: Vec<Vec<u8>> = (0..TRAIN_SAMPLES).map(sample).collect();
        let dict = Codec::train(&samples).unwrap_or_default();
        assert!(!dict.is_empty());
        let c = Codec::new(3, Hasher::Plain);
        // Values above RAW_MAX are compressed, with the dictionary up to DICT_MAX_VALUE.
        let v: Vec<u8> = (5000..5060).flat_map(sample).collect();
        assert!(v.len() > RAW_MAX);
        let plain = c.encode(&v).len();
        assert!(c.add_dict(1, dict).is_ok());
        c.set_current_dict(1);
        let f = c.encode(&v);
        // A value this large is its own context: the dictionary gains little on it, so
        // only the naming of the dictionary is checked here.
        match header(&f) {
            Some((Compression::ZstdDict(1), n)) => assert_eq!(n, v.len() as u64),
            other => panic!("expected a frame with dictionary 1, got {other:?} (plain {plain} bytes)"),
        }
        assert_eq!(c.decode(&f, &c.digest(&v)).as_deref(), Ok(v.as_slice()));
        // A store without that dictionary reports it.
        let other = Codec::new(3, Hasher::Plain);
        assert!(other.decode(&f, &c.digest(&v)).is_err());
    }

    #[test]
    fn every_corruption_is_caught() {
        let c = Codec::new(3, Hasher::Plain);
        for data in [sample(1), vec![1u8; 5000]] {
            let d = c.digest(&data);
            let f = c.encode(&data);
            for i in 0..f.len() {
                for bit in 0..8 {
                    let mut g = f.clone();
                    g[i] ^= 1 << bit;
                    // A flip either fails verification or changes nothing the reader gets
                    // (zstd's frame header has a bit decoders must ignore): decode must
                    // never return other bytes than the ones hashed.
                    if let Ok(got) = c.decode(&g, &d) {
                        assert_eq!(got, data, "flip at {i}.{bit} returned other bytes");
                    }
                }
                assert!(c.decode(&f[..i], &d).is_err());
            }
        }
    }

    #[test]
    fn owned_decoding_equals_borrowed() {
        let c = Codec::new(3, Hasher::Plain);
        for data in [b"x".to_vec(), vec![7u8; 100_000], sample(3)] {
            let d = c.digest(&data);
            assert_eq!(c.decode_owned(c.encode(&data), &d).as_deref(), Ok(data.as_slice()));
            assert!(c.decode_owned(c.encode(&data), &c.digest(b"other")).is_err());
        }
    }

    #[test]
    fn keyed_hasher_rejects_other_key() {
        let a = Codec::new(3, Hasher::Keyed([1; 32]));
        let b = Codec::new(3, Hasher::Keyed([2; 32]));
        let data = sample(1);
        let f = a.encode(&data);
        assert!(a.decode(&f, &a.digest(&data)).is_ok());
        assert!(b.decode(&f, &a.digest(&data)).is_err());
    }

    #[test]
    fn leb_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut b = Vec::new();
            put_leb(&mut b, v);
            assert_eq!(b.len(), leb_len(v));
            assert_eq!(get_leb(&b), Some((v, &[][..])));
        }
        assert_eq!(get_leb(&[0x80; 11]), None);
    }
}
