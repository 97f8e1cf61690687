//! Delta frames (codec 3): a value compressed by zstd with the pickle bytes of an earlier
//! object, its *base*, as reference prefix (what `zstd --patch-from` does). A new version of
//! a value then costs about what changed: on W5's snapshots, ~660 bytes instead of ~98 KB.
//!
//! Frame: `[version 0x01][codec 3][pickle length, LEB128][base digest: 32][one zstd frame]`.
//! Decoding needs the base's pickle bytes (themselves verified against the base's digest);
//! the result is verified against the object's own digest like any other frame.
//!
//! Invariant: a delta frame's zstd window covers base + value, and that is at most
//! [`DELTA_WINDOW_MAX`] (2^27 bytes: zstd's default decoder window limit), so any zstd
//! decoder given the base as prefix can decode it.

use zstd::zstd_safe::{self, CCtx, CParameter, DCtx};

use super::digest::Digest;
use super::frame::{CODEC_DELTA, Codec, FRAME_VERSION, MAX_LEN, get_leb, put_leb};

/// Largest base + value length a delta may span (zstd's default decoder window limit).
pub(crate) const DELTA_WINDOW_MAX: usize = 1 << 27;

/// Smallest window log zstd accepts.
const WINDOW_LOG_MIN: u32 = 10;
/// Above this window log, long-distance matching is on: the match finders of the fast
/// levels keep too few positions to find a base 2 MiB back (measured: a 2.25 MB value with
/// 100 scattered one-bit changes, 1.19 MB of delta without it, 2.9 KB with it).
const LDM_FROM_WINDOW_LOG: u32 = 22;

/// The window log that covers `span` bytes (at least zstd's minimum).
fn window_log(span: usize) -> u32 {
    let bits = usize::BITS - span.saturating_sub(1).leading_zeros();
    bits.max(WINDOW_LOG_MIN)
}

/// What a frame header says about the frame's base.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameKind {
    /// Codecs 0–2: the frame decodes on its own.
    Whole,
    /// Codec 3: the frame decodes against the pickle bytes of this object.
    Delta(Digest),
}

/// Reads a frame's header: whether it is a delta and of which base. Nothing is decompressed
/// or verified.
pub(crate) fn frame_kind(frame: &[u8]) -> Result<FrameKind, &'static str> {
    let (&version, rest) = frame.split_first().ok_or("empty frame")?;
    if version != FRAME_VERSION {
        return Err("unknown frame version");
    }
    let (&codec, rest) = rest.split_first().ok_or("truncated frame header")?;
    match codec {
        0..=2 | super::frame::CODEC_ALIGNED => Ok(FrameKind::Whole),
        CODEC_DELTA => {
            let (_, rest) = get_leb(rest).ok_or("bad length in frame header")?;
            let base = rest.get(..32).and_then(Digest::from_slice).ok_or("truncated delta frame header")?;
            Ok(FrameKind::Delta(base))
        }
        _ => Err("unknown codec in frame header"),
    }
}

impl Codec {
    /// The delta frame of `pickle` against `base` (whose pickle bytes are `base_bytes`), or
    /// `None` when it would be larger than `max_len` bytes, or base and value together exceed
    /// [`DELTA_WINDOW_MAX`], or zstd fails.
    pub(crate) fn encode_delta(
        &self,
        pickle: &[u8],
        base: &Digest,
        base_bytes: &[u8],
        max_len: usize,
    ) -> Option<Vec<u8>> {
        let span = base_bytes.len().checked_add(pickle.len())?;
        if span > DELTA_WINDOW_MAX || pickle.is_empty() {
            return None;
        }
        let mut cctx = CCtx::try_create()?;
        cctx.set_parameter(CParameter::CompressionLevel(self.level())).ok()?;
        let wlog = window_log(span);
        cctx.set_parameter(CParameter::WindowLog(wlog)).ok()?;
        if wlog >= LDM_FROM_WINDOW_LOG {
            cctx.set_parameter(CParameter::EnableLongDistanceMatching(true)).ok()?;
        }
        cctx.set_parameter(CParameter::ContentSizeFlag(true)).ok()?;
        cctx.set_parameter(CParameter::ChecksumFlag(false)).ok()?;
        cctx.ref_prefix(base_bytes).ok()?;
        // The output buffer is the most the caller accepts: a delta that does not fit is
        // not worth storing, and zstd stops early with an error.
        let header = 2 + leb_len(pickle.len() as u64) + 32;
        let mut payload = Vec::new();
        payload.try_reserve_exact(max_len.checked_sub(header)?).ok()?;
        cctx.compress2(&mut payload, pickle).ok()?;
        let mut out = Vec::with_capacity(header + payload.len());
        out.push(FRAME_VERSION);
        out.push(CODEC_DELTA);
        put_leb(&mut out, pickle.len() as u64);
        out.extend_from_slice(base.as_bytes());
        out.extend_from_slice(&payload);
        Some(out)
    }

    /// Decodes a delta frame against its base's pickle bytes and checks the result against
    /// `digest`. The caller verified `base_bytes` against the base digest the frame names.
    pub(crate) fn decode_delta(
        &self,
        frame: &[u8],
        digest: &Digest,
        base_bytes: &[u8],
    ) -> Result<Vec<u8>, &'static str> {
        let (&version, rest) = frame.split_first().ok_or("empty frame")?;
        if version != FRAME_VERSION {
            return Err("unknown frame version");
        }
        let (&codec, rest) = rest.split_first().ok_or("truncated frame header")?;
        if codec != CODEC_DELTA {
            return Err("not a delta frame");
        }
        let (len, rest) = get_leb(rest).ok_or("bad length in frame header")?;
        if len > MAX_LEN {
            return Err("frame declares an impossible length");
        }
        let len = usize::try_from(len).map_err(|_| "frame declares an impossible length")?;
        let payload = rest.get(32..).ok_or("truncated delta frame header")?;
        match zstd_safe::get_frame_content_size(payload) {
            Ok(Some(n)) if n == len as u64 => {}
            _ => return Err("compressed payload does not match its header"),
        }
        let mut dctx = DCtx::try_create().ok_or("zstd could not start")?;
        dctx.ref_prefix(base_bytes).map_err(|_| "zstd rejected the base")?;
        let mut out = Vec::new();
        out.try_reserve_exact(len).map_err(|_| "frame too large to allocate")?;
        match dctx.decompress(&mut out, payload) {
            Ok(n) if n == len => {}
            _ => return Err("compressed payload is corrupted"),
        }
        if self.digest(&out) != *digest {
            return Err("content does not hash to its address");
        }
        Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::Hasher;

    /// A pickle-like value: `n` records, record `i` carrying `vals[i]`.
    fn state(vals: &[u32]) -> Vec<u8> {
        let mut out = vec![0x80, 4];
        for (i, v) in vals.iter().enumerate() {
            out.extend_from_slice(format!("item:{i} rev={} value={v:08x};", v % 7).as_bytes());
        }
        out.push(b'.');
        out
    }

    fn versions() -> (Vec<u8>, Vec<u8>) {
        let mut vals: Vec<u32> = (0..5000u32).map(|i| i.wrapping_mul(2_654_435_761)).collect();
        let a = state(&vals);
        for i in (0..5000).step_by(97) {
            vals[i] ^= 0xdead_beef;
        }
        (a, state(&vals))
    }

    #[test]
    fn delta_round_trip_and_size() {
        let c = Codec::new(3, Hasher::Plain);
        let (a, b) = versions();
        let (da, db) = (c.digest(&a), c.digest(&b));
        let plain = c.encode(&b);
        let delta = c.encode_delta(&b, &da, &a, b.len()).unwrap_or_default();
        assert!(!delta.is_empty());
        assert!(delta.len() * 10 < plain.len(), "delta {} vs plain {}", delta.len(), plain.len());
        assert_eq!(frame_kind(&delta), Ok(FrameKind::Delta(da)));
        assert_eq!(frame_kind(&plain), Ok(FrameKind::Whole));
        assert_eq!(c.decode_delta(&delta, &db, &a).as_deref(), Ok(b.as_slice()));
        // Without its base, or against another base, it is refused.
        assert!(c.decode(&delta, &db).is_err());
        assert!(c.decode_delta(&delta, &db, &state(&[1, 2, 3])).is_err());
        // Too small a budget: no delta.
        assert_eq!(c.encode_delta(&b, &da, &a, 40), None);
    }

    #[test]
    fn every_corruption_of_a_delta_is_caught() {
        let c = Codec::new(3, Hasher::Plain);
        let (a, b) = versions();
        let (da, db) = (c.digest(&a), c.digest(&b));
        let f = c.encode_delta(&b, &da, &a, b.len()).unwrap_or_default();
        for i in 0..f.len() {
            for bit in 0..8 {
                let mut g = f.clone();
                g[i] ^= 1 << bit;
                if let Ok(got) = c.decode_delta(&g, &db, &a) {
                    assert_eq!(got, b, "flip at {i}.{bit} returned other bytes");
                }
            }
            assert!(c.decode_delta(&f[..i], &db, &a).is_err());
        }
    }

    #[test]
    fn window_covers_the_span() {
        assert_eq!(window_log(1), WINDOW_LOG_MIN);
        assert_eq!(window_log(1 << 20), 20);
        assert_eq!(window_log((1 << 20) + 1), 21);
        let c = Codec::new(3, Hasher::Plain);
        // A value whose matches lie 1.5 MB back, past what level 3 finds without
        // long-distance matching: the delta still finds them.
        let mut base = Vec::new();
        let mut s = 1u64;
        while base.len() < 1_500_000 {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            base.extend_from_slice(&s.to_le_bytes());
        }
        let mut v = base.clone();
        for i in (0..v.len()).step_by(15_000) {
            v[i] ^= 1;
        }
        let f = c.encode_delta(&v, &c.digest(&base), &base, v.len()).unwrap_or_default();
        assert!(!f.is_empty() && f.len() < 10_000, "{}", f.len());
        assert_eq!(c.decode_delta(&f, &c.digest(&v), &base).as_deref(), Ok(v.as_slice()));
    }
}
