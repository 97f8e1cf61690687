//! Reading values: the fast paths for the common scalar opcodes, the head of any value
//! (a scalar whole, or a container whose items follow), skipping a value, and size hints.
//!
//! Invariant: a value's opcodes are consumed whole (a container through its closing
//! opcode), so positions cannot drift, and a memoized value is recorded where the
//! decoder would record it.

use super::plan::{
    FIXED_ARG, H_MARK_DICT, H_MARK_FROZENSET, H_MARK_LIST, H_MARK_TUPLE, H_TUPLE1, H_TUPLE3, NOT_FIXED, hint_start,
};
use super::stream::{
    Bail, Body, CACHED, Head, Kind, NO_ITEM, R, SCAN_ITEMS, SHORT_OP, Step, Stream, Wide, is_memo, scalar_at,
    surrogates, utf8,
};
use crate::int::{BigInt, Int};
use crate::opcodes as op;

impl<'a> Stream<'a> {
    // The fast paths read the common scalar opcodes without building a [`Head`], with
    // the cursor in a local: one load of `pos` and one store per value, not one per
    // byte read (each store then load of `pos` through memory costs a store-forwarding
    // round trip, and they were the critical path). Anything unusual — something
    // pending, a hint at this offset, a frame's end, a memo opcode other than
    // `MEMOIZE` — takes the general path ([`Stream::head`]), which decides.

    /// The window and the cursor, when the next value may take a fast path.
    #[inline(always)]
    pub(super) fn fast_start(&self) -> Option<(&'a [u8], usize)> {
        let p = self.pos;
        if self.pending.is_some() || self.hints.get(self.cursor).is_some_and(|&h| hint_start(h) <= p) {
            return None;
        }
        Some((self.window, p))
    }

    /// After a scalar read on a fast path from `start` to `end` of window `w`: its
    /// `MEMOIZE`s, and the cursor stored.
    #[inline(always)]
    pub(super) fn fast_end(&mut self, w: &'a [u8], start: usize, end: usize, h: &Head<'a>) -> R<()> {
        // The decoder shares one node for all `True`s (and `False`s).
        self.created += usize::from(!matches!(h, Head::Bool(_)));
        self.visits += 1;
        self.scalar_end(w, start, end, h)
    }

    /// The `MEMOIZE`s after a scalar read from `start` to `end` of window `w`, and the
    /// cursor stored.
    #[inline(always)]
    pub(super) fn scalar_end(&mut self, w: &'a [u8], start: usize, mut end: usize, h: &Head<'a>) -> R<()> {
        let short = end - start <= SHORT_OP && !matches!(h, Head::Surrogates | Head::Big(_));
        loop {
            match w.get(end) {
                Some(&op::MEMOIZE) if short => {
                    self.memo.push(start as u32);
                    end += 1;
                }
                Some(&code) if !is_memo(code) && code != op::FRAME && code != op::PROTO => {
                    self.pos = end;
                    return Ok(());
                }
                _ => {
                    let len = end - start;
                    self.pos = end;
                    return self.memoize_scalar(start, len, h);
                }
            }
        }
    }

    /// A float, on the fast path.
    #[inline(always)]
    pub(super) fn fast_float(&mut self) -> R<Option<f64>> {
        let Some((w, p)) = self.fast_start() else { return Ok(None) };
        let Some((&[op::BINFLOAT, a, b, c, d, e, f, g, h], _)) = w.get(p..).and_then(<[u8]>::split_first_chunk::<9>)
        else {
            return Ok(None);
        };
        let x = f64::from_be_bytes([a, b, c, d, e, f, g, h]);
        self.fast_end(w, p, p + 9, &Head::Float(x))?;
        Ok(Some(x))
    }

    /// A `BININT*` int, on the fast path.
    #[inline(always)]
    pub(super) fn fast_int(&mut self) -> R<Option<i64>> {
        let Some((w, p)) = self.fast_start() else { return Ok(None) };
        let (i, end) = match w.get(p) {
            Some(&op::BININT1) => match w.get(p + 1) {
                Some(&b) => (i64::from(b), p + 2),
                None => return Ok(None),
            },
            Some(&op::BININT2) => match w.get(p + 1..p + 3) {
                Some(&[a, b]) => (i64::from(u16::from_le_bytes([a, b])), p + 3),
                _ => return Ok(None),
            },
            Some(&op::BININT) => match w.get(p + 1..p + 5).map(<[u8; 4]>::try_from) {
                Some(Ok(b)) => (i64::from(i32::from_le_bytes(b)), p + 5),
                _ => return Ok(None),
            },
            _ => return Ok(None),
        };
        self.fast_end(w, p, end, &Head::Int(i))?;
        Ok(Some(i))
    }

    /// A `SHORT_BINUNICODE`/`BINUNICODE` str, on the fast path (not UTF-8: an error).
    #[inline(always)]
    pub(super) fn fast_str(&mut self) -> R<Option<&'a str>> {
        let Some((w, p)) = self.fast_start() else { return Ok(None) };
        let (from, n) = match w.get(p) {
            Some(&op::SHORT_BINUNICODE) => match w.get(p + 1) {
                Some(&n) => (p + 2, usize::from(n)),
                None => return Ok(None),
            },
            Some(&op::BINUNICODE) => match w.get(p + 1..p + 5).map(<[u8; 4]>::try_from) {
                Some(Ok(n)) => (p + 5, u32::from_le_bytes(n) as usize),
                _ => return Ok(None),
            },
            // A str fetched from the memo (W1's repeated tags), when no memo opcode
            // follows: it makes no node.
            Some(&op::BINGET) => {
                if let Some(&idx) = w.get(p + 1)
                    && let Some(&entry) = self.memo.get(usize::from(idx))
                    && entry & CACHED == 0
                    && let Some(Head::Str(s)) = scalar_at(self.input, entry as usize)
                    && let Some(&next) = w.get(p + 2)
                    && !is_memo(next)
                    && next != op::FRAME
                    && next != op::PROTO
                {
                    self.visits += 1;
                    self.pos = p + 2;
                    return Ok(Some(s));
                }
                return Ok(None);
            }
            _ => return Ok(None),
        };
        let Some(b) = from.checked_add(n).and_then(|end| w.get(from..end)) else { return Ok(None) };
        let s = utf8(b).ok_or(Bail)?;
        self.fast_end(w, p, from + n, &Head::Str(s))?;
        Ok(Some(s))
    }

    /// Reads the head of the next value: a whole scalar (with the memo opcodes after
    /// it), or a container's opening (its items follow).
    #[inline]
    pub(super) fn head(&mut self) -> R<Head<'a>> {
        if let Some(h) = self.pending.take() {
            return Ok(h);
        }
        // The common opcodes with the cursor in a local (see `fast_start`).
        if let Some((w, p)) = self.fast_start()
            && let Some(&code) = w.get(p)
        {
            let scalar = match code {
                op::EMPTY_LIST | op::EMPTY_DICT => {
                    self.pos = p + 1;
                    self.created += 1;
                    self.open()?;
                    return Ok(if code == op::EMPTY_LIST { Head::Seq(Kind::List, 0) } else { Head::Map(Kind::Dict) });
                }
                op::BINFLOAT => match w.get(p + 1..p + 9).map(<[u8; 8]>::try_from) {
                    Some(Ok(b)) => Some((Head::Float(f64::from_be_bytes(b)), p + 9)),
                    _ => None,
                },
                op::BININT1 => w.get(p + 1).map(|&b| (Head::Int(i64::from(b)), p + 2)),
                op::NONE => Some((Head::None, p + 1)),
                op::NEWTRUE | op::NEWFALSE => Some((Head::Bool(code == op::NEWTRUE), p + 1)),
                op::SHORT_BINUNICODE => match w.get(p + 1) {
                    Some(&n) => match w.get(p + 2..p + 2 + usize::from(n)) {
                        Some(b) => utf8(b).map(|t| (Head::Str(t), p + 2 + usize::from(n))),
                        None => None,
                    },
                    None => None,
                },
                _ => None,
            };
            if let Some((h, end)) = scalar {
                // The decoder shares one node for all `None`s (and `True`s, `False`s).
                self.created += usize::from(!matches!(h, Head::None | Head::Bool(_)));
                self.scalar_end(w, p, end, &h)?;
                return Ok(h);
            }
        }
        self.head_slow()
    }

    #[inline(never)]
    pub(super) fn head_slow(&mut self) -> R<Head<'a>> {
        let code = self.peek_op()?;
        let pos = self.pos;
        if let Some(kind) = self.hint_at(pos)? {
            return self.hinted_head(code, kind);
        }
        self.bump();
        let h = match code {
            op::BINFLOAT => {
                let b = self.u64_le()?;
                Head::Float(f64::from_bits(b.swap_bytes()))
            }
            op::BININT1 => Head::Int(i64::from(self.byte()?)),
            op::BININT2 => {
                let s = self.take(2)?;
                Head::Int(i64::from(u16::from_le_bytes([s[0], s[1]])))
            }
            op::BININT => Head::Int(i64::from(self.u32_le()? as i32)),
            op::SHORT_BINUNICODE => {
                let n = usize::from(self.byte()?);
                let b = self.take(n)?;
                self.text(b)?
            }
            op::BINUNICODE => {
                let n = self.u32_le()?;
                let n = self.len_arg(u64::from(n))?;
                let b = self.take(n)?;
                self.text(b)?
            }
            op::BINUNICODE8 => {
                let n = self.u64_le()?;
                let n = self.len_arg(n)?;
                let b = self.take(n)?;
                self.text(b)?
            }
            op::NONE | op::NEWTRUE | op::NEWFALSE => {
                let h = match code {
                    op::NONE => Head::None,
                    b => Head::Bool(b == op::NEWTRUE),
                };
                self.after_scalar(pos, &h)?;
                return Ok(h);
            }
            op::EMPTY_LIST | op::EMPTY_DICT | op::EMPTY_SET => {
                self.created += 1;
                self.open()?;
                return Ok(match code {
                    op::EMPTY_LIST => Head::Seq(Kind::List, 0),
                    op::EMPTY_DICT => Head::Map(Kind::Dict),
                    _ => Head::Seq(Kind::Set, 0),
                });
            }
            op::EMPTY_TUPLE => {
                self.open()?;
                return Ok(Head::Seq(Kind::EmptyTuple, 0));
            }
            op::BINGET => {
                let idx = self.byte()?;
                return self.get(u64::from(idx));
            }
            op::LONG_BINGET => {
                let idx = self.u32_le()?;
                return self.get(u64::from(idx));
            }
            op::LONG1 => {
                let n = usize::from(self.byte()?);
                let b = self.take(n)?;
                self.long(b)
            }
            op::LONG4 => {
                let n = self.u32_le()? as i32;
                let n = self.len_arg(u64::try_from(n).map_err(|_| Bail)?)?;
                let b = self.take(n)?;
                self.long(b)
            }
            op::SHORT_BINSTRING => {
                let n = usize::from(self.byte()?);
                let b = self.take(n)?;
                self.py2_str(b)?
            }
            op::BINSTRING => {
                let n = self.u32_le()? as i32;
                let n = self.len_arg(u64::try_from(n).map_err(|_| Bail)?)?;
                let b = self.take(n)?;
                self.py2_str(b)?
            }
            op::SHORT_BINBYTES => {
                let n = usize::from(self.byte()?);
                self.bytes(n)?
            }
            op::BINBYTES => {
                let n = self.u32_le()?;
                let n = self.len_arg(u64::from(n))?;
                self.bytes(n)?
            }
            op::BINBYTES8 | op::BYTEARRAY8 => {
                let n = self.u64_le()?;
                let n = self.len_arg(n)?;
                self.bytes(n)?
            }
            _ => return Err(Bail),
        };
        self.created += 1;
        self.after_scalar(pos, &h)?;
        Ok(h)
    }

    /// A value whose start the plan names: a postfix tuple, or a MARK container.
    #[cold]
    pub(super) fn hinted_head(&mut self, code: u8, kind: u64) -> R<Head<'a>> {
        let head = match kind {
            H_TUPLE1..=H_TUPLE3 => Head::Seq(Kind::Tuple, kind as u8),
            H_MARK_TUPLE..=H_MARK_FROZENSET if code == op::MARK => {
                self.bump();
                self.open_mark()?;
                match kind {
                    H_MARK_TUPLE => Head::Seq(Kind::MarkTuple, 0),
                    H_MARK_LIST => Head::Seq(Kind::MarkList, 0),
                    H_MARK_DICT => Head::Map(Kind::MarkDict),
                    _ => Head::Seq(Kind::MarkFrozenSet, 0),
                }
            }
            _ => return Err(Bail),
        };
        self.cursor += 1;
        self.open()?;
        Ok(head)
    }

    #[inline(always)]
    pub(super) fn text(&mut self, b: &'a [u8]) -> R<Head<'a>> {
        match utf8(b) {
            Some(s) => Ok(Head::Str(s)),
            None => surrogates(b),
        }
    }

    /// A Python 2 `str`: ASCII only, as the decoder reads it.
    pub(super) fn py2_str(&mut self, b: &'a [u8]) -> R<Head<'a>> {
        if !b.is_ascii() {
            return Err(Bail);
        }
        utf8(b).map(Head::Str).ok_or(Bail)
    }

    pub(super) fn bytes(&mut self, n: usize) -> R<Head<'a>> {
        Ok(Head::Bytes(self.take(n)?))
    }

    pub(super) fn long(&mut self, b: &[u8]) -> Head<'a> {
        match BigInt::from_le_twos_complement(b) {
            Int::Small(i) => Head::Int(i),
            Int::Big(big) => {
                self.bigs.push(Wide::of(&big));
                Head::Big((self.bigs.len() - 1) as u32)
            }
        }
    }

    pub(super) fn big(&self, i: u32) -> R<&Wide> {
        self.bigs.get(i as usize).ok_or(Bail)
    }

    /// Skips one value, whatever it holds, without recursion.
    pub(super) fn skip(&mut self) -> R<()> {
        let body = match self.head()? {
            Head::Seq(kind, n) => Body::new(kind, n),
            Head::Map(kind) => Body::new(kind, 0),
            _ => return Ok(()),
        };
        let mut stack = std::mem::take(&mut self.skip_stack);
        stack.clear();
        stack.push(body);
        let out = self.skip_items(&mut stack);
        self.skip_stack = stack;
        out
    }

    pub(super) fn skip_items(&mut self, stack: &mut Vec<Body>) -> R<()> {
        while let Some(top) = stack.last_mut() {
            match top.step(self)? {
                Step::End => {
                    let key_at = top.key_at;
                    stack.pop();
                    if key_at != NO_ITEM {
                        self.key_hash(key_at, self.pos)?;
                    }
                }
                Step::Item => {
                    // A key or set element must be one CPython can hash (the `Value`
                    // path refuses the others, even in a part nothing reads).
                    let key = match top.kind {
                        Kind::Dict | Kind::MarkDict => top.value_next,
                        Kind::Set | Kind::MarkFrozenSet => true,
                        _ => false,
                    };
                    let at = top.item_at;
                    let mut body = match self.head()? {
                        Head::Seq(kind, n) => Body::new(kind, n),
                        Head::Map(kind) => Body::new(kind, 0),
                        _ => {
                            if key {
                                self.key_hash(at, self.pos)?;
                            }
                            continue;
                        }
                    };
                    if key {
                        body.key_at = at;
                    }
                    stack.push(body);
                }
            }
        }
        Ok(())
    }

    /// How many items the first batch of a list, set or dict just opened holds (for a
    /// dict, keys and values), when that is cheap to see: `MARK`, then a run of one
    /// fixed-size scalar opcode (floats, small ints), then `close`. A size hint, nothing
    /// relies on it; other batches get none.
    pub(super) fn scan_items(&self, close: u8) -> Option<usize> {
        let b = self.input;
        let mut p = self.pos;
        loop {
            p += match *b.get(p)? {
                op::MEMOIZE => 1,
                op::BINPUT => 2,
                op::LONG_BINPUT => 5,
                op::MARK => break,
                _ => return None,
            };
        }
        p += 1;
        let code = *b.get(p)?;
        let stride = 1 + usize::from(FIXED_ARG[usize::from(code)]);
        if FIXED_ARG[usize::from(code)] == NOT_FIXED {
            return None;
        }
        let mut items = 0;
        while items < SCAN_ITEMS && b.get(p) == Some(&code) {
            p += stride;
            items += 1;
        }
        (b.get(p) == Some(&close)).then_some(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::direct::stream::Scratch;

    #[test]
    fn size_hints_count_runs_of_fixed_size_scalars() {
        let hint = |bytes: &[u8], close: u8| {
            let mut s = Scratch::new();
            let mut st = Stream::new(bytes, &mut s);
            st.pos = 1;
            st.scan_items(close)
        };
        // [1.0, 2.0], memoized.
        let list = b"]\x94(G\x3f\xf0\x00\x00\x00\x00\x00\x00G\x40\x00\x00\x00\x00\x00\x00\x00eK\x01";
        assert_eq!(hint(list, op::APPENDS), Some(2));
        assert_eq!(hint(b"}(K\x01K\x02K\x03K\x04u.", op::SETITEMS), Some(4));
        // Mixed opcodes, strs, containers, no batch, a truncated batch: no hint.
        assert_eq!(hint(b"](K\x01M\x02\x00e.", op::APPENDS), None);
        assert_eq!(hint(b"](\x8c\x01a\x94e.", op::APPENDS), None);
        assert_eq!(hint(b"](]K\x01ae.", op::APPENDS), None);
        assert_eq!(hint(b"]K\x01a.", op::APPENDS), None);
        assert_eq!(hint(b"](K\x01K", op::APPENDS), None);
    }
}
