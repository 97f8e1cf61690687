//! The plan: one pass over the opcodes that keeps only the start offset of each item on
//! the pickle's stack, writes down where each postfix construct begins (the hints the
//! stream needs) and refuses what cannot be streamed (see the [parent module](super)).
//!
//! Invariant: the plan never builds a value and never fails loudly: a pickle it cannot
//! read, or one outside the plain-data subset, is a `false` (the `Value` path then
//! decides). Its hints are sorted by start offset, outermost construct first.

use crate::opcodes as op;

/// The plan's working buffers, kept from one call to the next with the stream's.
pub(super) struct PlanBuffers {
    /// The pickle's stack, one entry per item: the offset of its first opcode, with
    /// [`CONTAINER`] set for containers.
    slots: Vec<u32>,
    /// Open MARKs, as (stack length, offset of the MARK).
    marks: Vec<(u32, u32)>,
    /// Per memo index, whether it holds a container.
    memo_containers: Vec<bool>,
    /// Postfix constructs by start offset (see [`H_TUPLE1`]); the stream takes them.
    pub(super) hints: Vec<u64>,
}

impl PlanBuffers {
    pub(super) const fn new() -> PlanBuffers {
        PlanBuffers { slots: Vec::new(), marks: Vec::new(), memo_containers: Vec::new(), hints: Vec::new() }
    }

    /// Empties the buffers; those with room for more than `keep` entries are freed.
    pub(super) fn clear(&mut self, keep: usize) {
        cleared(&mut self.slots, keep);
        cleared(&mut self.marks, keep);
        cleared(&mut self.memo_containers, keep);
        cleared(&mut self.hints, keep);
    }
}

/// Set in a plan's stack entry for a container.
pub(super) const CONTAINER: u32 = 1 << 31;

/// Inputs this long or longer take the `Value` path (offsets are 31 bits here).
pub(super) const MAX_INPUT: usize = 1 << 31;

// A hint is `start << 32 | order << 4 | kind`: `start` is the offset where the construct
// begins, `order` puts constructs beginning at the same offset outermost first (the plan
// meets them innermost first), `kind` is one of these.
pub(super) const H_TUPLE1: u64 = 1;
pub(super) const H_TUPLE3: u64 = 3;
pub(super) const H_MARK_TUPLE: u64 = 4;
pub(super) const H_MARK_LIST: u64 = 5;
pub(super) const H_MARK_DICT: u64 = 6;
pub(super) const H_MARK_FROZENSET: u64 = 7;
pub(super) const H_APPEND: u64 = 8;
pub(super) const H_SETITEM: u64 = 9;
pub(super) const HINT_ORDER_MAX: u64 = (1 << 28) - 1;

pub(super) fn hint_start(h: u64) -> usize {
    (h >> 32) as usize
}

pub(super) fn hint_kind(h: u64) -> u64 {
    h & 0xF
}

/// Empties `v`, freeing it when it has room for more than `keep` entries.
pub(super) fn cleared<T>(v: &mut Vec<T>, keep: usize) {
    if v.capacity() > keep {
        *v = Vec::new();
    }
    v.clear();
}

/// The plan (see the [module docs](self)): fills `s.hints`, sorted; false when the
/// pickle is not streamable.
pub(super) fn plan(input: &[u8], s: &mut PlanBuffers) -> bool {
    let ok = plan_inner(input, s).is_some();
    if ok && !s.hints.is_sorted() {
        s.hints.sort_unstable();
    }
    ok
}

/// The argument length of the opcodes that push a scalar with a fixed-size argument;
/// [`NOT_FIXED`] for the others.
pub(super) const FIXED_ARG: [u8; 256] = {
    let mut t = [NOT_FIXED; 256];
    t[op::NONE as usize] = 0;
    t[op::NEWTRUE as usize] = 0;
    t[op::NEWFALSE as usize] = 0;
    t[op::BININT1 as usize] = 1;
    t[op::BININT2 as usize] = 2;
    t[op::BININT as usize] = 4;
    t[op::BINFLOAT as usize] = 8;
    t
};
pub(super) const NOT_FIXED: u8 = u8::MAX;

/// Reads a little-endian length of `K` bytes at `pos`.
#[inline(always)]
pub(super) fn le_len<const K: usize>(input: &[u8], pos: &mut usize) -> Option<u64> {
    let b: [u8; K] = input.get(*pos..*pos + K)?.try_into().ok()?;
    *pos += K;
    let mut w = [0u8; 8];
    w[..K].copy_from_slice(&b);
    Some(u64::from_le_bytes(w))
}

fn plan_inner(input: &[u8], s: &mut PlanBuffers) -> Option<()> {
    let PlanBuffers { slots, marks, memo_containers: memo, hints } = s;
    if input.len() >= MAX_INPUT {
        return None;
    }
    let n = input.len();
    let mut pos = 0usize;
    // Stack entries below this one are outside the last open MARK.
    let mut fence = 0usize;
    let mut emitted: u64 = 0;
    let mut hint = |start: u32, kind: u64| -> Option<()> {
        if emitted > HINT_ORDER_MAX {
            return None;
        }
        hints.push((u64::from(start) << 32) | ((HINT_ORDER_MAX - emitted) << 4) | kind);
        emitted += 1;
        Some(())
    };
    loop {
        let start = pos;
        let code = *input.get(pos)?;
        let k = FIXED_ARG[usize::from(code)];
        if k != NOT_FIXED {
            pos += 1 + usize::from(k);
            if pos > n {
                return None;
            }
            slots.push(start as u32);
            continue;
        }
        pos += 1;
        match code {
            op::SHORT_BINUNICODE | op::SHORT_BINBYTES | op::SHORT_BINSTRING | op::LONG1 => {
                pos += 1 + usize::from(*input.get(pos)?);
                if pos > n {
                    return None;
                }
                slots.push(start as u32);
            }
            op::MEMOIZE | op::BINPUT | op::LONG_BINPUT => {
                let idx = match code {
                    op::MEMOIZE => memo.len() as u64,
                    op::BINPUT => le_len::<1>(input, &mut pos)?,
                    _ => le_len::<4>(input, &mut pos)?,
                };
                if slots.len() <= fence {
                    return None;
                }
                let container = slots.last()? & CONTAINER != 0;
                match idx.cmp(&(memo.len() as u64)) {
                    std::cmp::Ordering::Equal => memo.push(container),
                    std::cmp::Ordering::Less => memo[idx as usize] = container,
                    std::cmp::Ordering::Greater => return None,
                }
            }
            op::BINGET | op::LONG_BINGET => {
                let idx =
                    if code == op::BINGET { le_len::<1>(input, &mut pos)? } else { le_len::<4>(input, &mut pos)? };
                if *memo.get(idx as usize)? {
                    return None; // shared (maybe cyclic): the Value path
                }
                slots.push(start as u32);
            }
            op::MARK => {
                marks.push((slots.len() as u32, start as u32));
                fence = slots.len();
            }
            op::APPENDS | op::SETITEMS | op::ADDITEMS => {
                let (m, _) = marks.pop()?;
                fence = marks.last().map_or(0, |m| m.0 as usize);
                let m = m as usize;
                if m <= fence || (code == op::SETITEMS && !(slots.len() - m).is_multiple_of(2)) {
                    return None;
                }
                slots.truncate(m);
            }
            op::EMPTY_LIST | op::EMPTY_DICT | op::EMPTY_SET | op::EMPTY_TUPLE => {
                slots.push(start as u32 | CONTAINER);
            }
            op::FRAME | op::PROTO => {
                pos += if code == op::FRAME { 8 } else { 1 };
                if pos > n {
                    return None;
                }
            }
            op::STOP => return (slots.len() == 1 && marks.is_empty()).then_some(()),
            op::BINUNICODE | op::BINBYTES | op::LONG4 | op::BINSTRING => {
                let l = le_len::<4>(input, &mut pos)?;
                if matches!(code, op::LONG4 | op::BINSTRING) && l >= 1 << 31 {
                    return None; // negative: the decoder's error
                }
                if l > (n - pos) as u64 {
                    return None;
                }
                pos += l as usize;
                slots.push(start as u32);
            }
            op::BINUNICODE8 | op::BINBYTES8 | op::BYTEARRAY8 => {
                let l = le_len::<8>(input, &mut pos)?;
                if l > (n - pos) as u64 {
                    return None;
                }
                pos += l as usize;
                slots.push(start as u32);
            }
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let k = usize::from(code - op::TUPLE1) + 1;
                if slots.len() < fence + k {
                    return None;
                }
                let first = slots[slots.len() - k] & !CONTAINER;
                slots.truncate(slots.len() - k);
                slots.push(first | CONTAINER);
                hint(first, H_TUPLE1 + u64::from(code - op::TUPLE1))?;
            }
            op::TUPLE | op::LIST | op::DICT | op::FROZENSET => {
                let (m, at) = marks.pop()?;
                fence = marks.last().map_or(0, |m| m.0 as usize);
                slots.truncate(m as usize);
                slots.push(at | CONTAINER);
                let kind = match code {
                    op::TUPLE => H_MARK_TUPLE,
                    op::LIST => H_MARK_LIST,
                    op::DICT => H_MARK_DICT,
                    _ => H_MARK_FROZENSET,
                };
                hint(at, kind)?;
            }
            op::APPEND | op::SETITEM => {
                let k = if code == op::APPEND { 1 } else { 2 };
                if slots.len() < fence + k + 1 {
                    return None;
                }
                let first = slots[slots.len() - k] & !CONTAINER;
                slots.truncate(slots.len() - k);
                hint(first, if code == op::APPEND { H_APPEND } else { H_SETITEM })?;
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hints(bytes: &[u8]) -> Option<Vec<(usize, u64)>> {
        let mut s = PlanBuffers::new();
        plan(bytes, &mut s).then(|| s.hints.iter().map(|&h| (hint_start(h), hint_kind(h))).collect())
    }

    #[test]
    fn the_plan_names_postfix_constructs_outermost_first() {
        // ((1, 2),) appended to a list: at byte 3 an APPEND, a TUPLE1, a TUPLE2.
        assert_eq!(
            hints(b"\x80\x02]K\x01K\x02\x86\x85a."),
            Some(vec![(3, H_APPEND), (3, H_TUPLE1), (3, H_TUPLE1 + 1)])
        );
        // {'a': (4,)} with SETITEM; a MARK tuple.
        assert_eq!(hints(b"}X\x01\x00\x00\x00aK\x04\x85s."), Some(vec![(1, H_SETITEM), (7, H_TUPLE1)]));
        assert_eq!(hints(b"(K\x01K\x02t."), Some(vec![(0, H_MARK_TUPLE)]));
        // A batch MARK has no hint.
        assert_eq!(hints(b"](K\x01K\x02e."), Some(vec![]));
    }

    #[test]
    fn the_plan_refuses_what_it_cannot_stream() {
        // a = [1]; [a, a]: a memo reference to a container.
        assert_eq!(hints(b"\x80\x02]q\x00(]q\x01K\x01ah\x01e."), None);
        // A reference to a memoized str is fine.
        assert!(hints(b"\x80\x02](X\x01\x00\x00\x00aq\x00h\x00e.").is_some());
        // REDUCE, DUP, POP, text opcodes, truncation, two values at STOP.
        for bad in [&b"cbuiltins\nset\n)R."[..], b"N2\x86.", b"NN0.", b"I1\n.", b"K", b"K\x01K\x02."] {
            assert_eq!(hints(bad), None, "{bad:?}");
        }
    }
}
