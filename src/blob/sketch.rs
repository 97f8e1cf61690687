//! Similarity sketches: a few dozen bytes that say whether two values share most of their
//! content, so that a delta is only tried against a base that will pay.
//!
//! A sketch is a bottom-k min-hash of content-defined anchors: a gear rolling hash (which
//! depends on the last 64 bytes only) runs over the value, every position where its low
//! [`ANCHOR_BITS`] bits are zero is an anchor, and the sketch keeps the [`SKETCH_LEN`]
//! smallest (mixed) anchor hashes. Two values that differ in scattered places keep almost
//! all anchors, so their sketches agree; unrelated values share none.
//!
//! At most [`SCAN_MAX`] bytes are scanned: larger values are sampled in [`STRIPES`] stripes
//! spread evenly over the value (a cost of ~0.1 ms whatever the size). Sketches are
//! heuristics only: they choose what to try, never what is stored.

/// Hashes kept per sketch.
pub(crate) const SKETCH_LEN: usize = 16;
/// An anchor every 2^ANCHOR_BITS bytes on average.
const ANCHOR_BITS: u32 = 7;
/// Most bytes scanned per value.
const SCAN_MAX: usize = 64 * 1024;
/// Stripes a larger value is sampled in.
const STRIPES: usize = 16;
/// Bytes the gear hash needs before it depends on content alone.
const WARMUP: usize = 64;

const fn gear_table() -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut s: u64 = 0x7069_636b_6c65_7368; // "pickleshelf"'s first bytes
    let mut i = 0;
    while i < 256 {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        t[i] = z ^ (z >> 31);
        i += 1;
    }
    t
}

static GEAR: [u64; 256] = gear_table();

/// The sketch of a value: its smallest anchor hashes, ascending and distinct.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sketch {
    hashes: Vec<u32>,
}

impl Sketch {
    /// Sketches `bytes` (see the module docs).
    pub(crate) fn of(bytes: &[u8]) -> Sketch {
        let mut sketch = Sketch { hashes: Vec::with_capacity(SKETCH_LEN + 1) };
        if bytes.len() <= SCAN_MAX {
            sketch.scan(bytes);
        } else {
            let stripe = SCAN_MAX / STRIPES;
            let step = (bytes.len() - stripe) / (STRIPES - 1);
            for i in 0..STRIPES {
                let at = i * step;
                if let Some(part) = bytes.get(at..at + stripe) {
                    sketch.scan(part);
                }
            }
        }
        sketch
    }

    fn scan(&mut self, part: &[u8]) {
        let mask = (1u64 << ANCHOR_BITS) - 1;
        let mut h = 0u64;
        for (i, &b) in part.iter().enumerate() {
            h = (h << 1).wrapping_add(GEAR[usize::from(b)]);
            if h & mask == 0 && i >= WARMUP {
                self.offer((h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32);
            }
        }
    }

    fn offer(&mut self, x: u32) {
        if self.hashes.len() == SKETCH_LEN && self.hashes.last().is_some_and(|&m| x >= m) {
            return;
        }
        if let Err(at) = self.hashes.binary_search(&x) {
            self.hashes.insert(at, x);
            self.hashes.truncate(SKETCH_LEN);
        }
    }

    /// Estimated share of content two values have in common, 0.0 to 1.0: of the
    /// [`SKETCH_LEN`] smallest hashes of both sketches together, the fraction in both.
    /// Values too small to have a few anchors are never similar.
    pub(crate) fn similarity(&self, other: &Sketch) -> f32 {
        if self.hashes.len() < 4 || other.hashes.len() < 4 {
            return 0.0;
        }
        let (mut i, mut j, mut seen, mut both) = (0, 0, 0u32, 0u32);
        while seen < SKETCH_LEN as u32 && (i < self.hashes.len() || j < other.hashes.len()) {
            let (a, b) = (self.hashes.get(i), other.hashes.get(j));
            match (a, b) {
                (Some(x), Some(y)) if x == y => {
                    both += 1;
                    i += 1;
                    j += 1;
                }
                (Some(x), Some(y)) if x < y => i += 1,
                (Some(_), None) => i += 1,
                _ => j += 1,
            }
            seen += 1;
        }
        both as f32 / seen as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                (s >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn similar_values_agree_and_unrelated_ones_do_not() {
        for len in [10_000, 300_000, 3_000_000] {
            let a = noise(len, 1);
            let mut b = a.clone();
            for i in (0..len).step_by(len / 20) {
                b[i] ^= 0x55;
            }
            let (sa, sb) = (Sketch::of(&a), Sketch::of(&b));
            assert_eq!(sa.hashes.len(), SKETCH_LEN);
            assert!(sa.similarity(&sb) >= 0.6, "len {len}: {}", sa.similarity(&sb));
            assert_eq!(sa.similarity(&sa), 1.0);
            let c = Sketch::of(&noise(len, 2));
            assert!(sa.similarity(&c) < 0.2, "len {len}: {}", sa.similarity(&c));
        }
        // An insertion near the start of a small value shifts everything: still similar.
        let a = noise(20_000, 3);
        let mut b = a.clone();
        b.splice(100..100, noise(300, 4));
        assert!(Sketch::of(&a).similarity(&Sketch::of(&b)) >= 0.75);
        // Tiny values have no say.
        assert_eq!(Sketch::of(b"abc").similarity(&Sketch::of(b"abc")), 0.0);
    }
}
