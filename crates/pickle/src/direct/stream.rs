//! The stream: a cursor on the opcodes with the decoder's framing rules, the plan's
//! hints, the decoder's limits and the memo.
//!
//! Invariant: the cursor never reads past the current protocol-4 frame or the input,
//! and every limit the decoder and `from_value` apply (marks, nesting, the serde depth,
//! the node budget) is counted here; any breach is a [`Bail`].

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de;

use super::plan::{H_MARK_FROZENSET, H_MARK_TUPLE, PlanBuffers, cleared, hint_kind, hint_start, le_len};
use crate::de::{DEFAULT_MAX_DEPTH, MIN_NODE_BUDGET};
use crate::decode::DEFAULT_LIMITS;
use crate::int::{BigInt, Int, Int128, big_to_128, big_to_float_exact};
use crate::opcodes as op;
use crate::pyhash::{
    Num, Scalar, big_num, float_real, frozenset_hash, identity_hash, int_real, scalar_hash, tuple_hash,
};
use crate::value::PyStr;

// A memo entry is the offset of the memoized scalar's opcode, read again at each `GET`
// (for a short opcode, cheaper than keeping the value); or `CACHED | i`, the value kept
// in `Stream::cache` (a long str or int, whose reading again would take time); or
// `MEMO_CONTAINER` (the plan sends pickles that fetch one to the `Value` path, and the
// stream refuses to fetch one).
pub(super) const MEMO_CONTAINER: u32 = u32::MAX;
pub(super) const CACHED: u32 = 1 << 31;

/// Size hints count at most this many items.
pub(super) const SCAN_ITEMS: usize = 1024;

/// Opcodes (with their argument) up to this long are read again at each `GET`.
pub(super) const SHORT_OP: usize = 72;

/// An int outside `i64`, as the deserializer uses it.
pub(super) struct Wide {
    pub(super) int: Option<Int128>,
    pub(super) f64: Option<f64>,
    pub(super) f32: Option<f32>,
}

impl Wide {
    pub(super) fn of(b: &BigInt) -> Wide {
        Wide {
            int: big_to_128(b),
            f64: big_to_float_exact(b, 53, 1024),
            f32: big_to_float_exact(b, 24, 128).map(|x| x as f32),
        }
    }
}

/// The start of a value: a scalar whole, or a container whose items follow.
#[derive(Clone, Copy)]
pub(super) enum Head<'a> {
    None,
    Bool(bool),
    Int(i64),
    /// Index into [`Stream::bigs`].
    Big(u32),
    Float(f64),
    Str(&'a str),
    Surrogates,
    /// `bytes` or `bytearray` (`de.rs` treats them alike).
    Bytes(&'a [u8]),
    /// A list, tuple, set or frozenset opened (a `Kind::Tuple`'s length).
    Seq(Kind, u8),
    /// A dict opened.
    Map(Kind),
}

/// The deserializer: a cursor on the opcodes, with the plan's hints and the memo.
pub(super) struct Stream<'a> {
    pub(super) input: &'a [u8],
    pub(super) pos: usize,
    /// The end of the current protocol-4 frame, while reading inside one.
    pub(super) frame_end: Option<usize>,
    /// The input up to `frame_end`, else all of it: where reading may go without
    /// leaving a frame.
    pub(super) window: &'a [u8],
    pub(super) hints: Vec<u64>,
    /// The next hint not yet met.
    pub(super) cursor: usize,
    pub(super) memo: Vec<u32>,
    /// Memoized values that are long to read again, and where their opcode is.
    pub(super) cache: Vec<(Head<'a>, usize)>,
    pub(super) bigs: Vec<Wide>,
    pub(super) skip_stack: Vec<Body>,
    /// A value's head read but not used yet: `Option`, bytes and enums look first. It
    /// never outlives the `deserialize_*` call that put it back (that call fails if its
    /// visitor left it), so a container's next item never finds one.
    pub(super) pending: Option<Head<'a>>,
    /// Containers entered by serde (the `DEFAULT_MAX_DEPTH` limit).
    pub(super) depth: usize,
    /// Containers open in the pickle, skipped ones included (the decoder's `max_depth`).
    pub(super) nesting: usize,
    /// MARKs open (the decoder's `max_marks`).
    pub(super) marks: usize,
    /// Nodes `de.rs` would visit.
    pub(super) visits: usize,
    /// Nodes the decoder would make, at least (its interned atoms are not counted).
    pub(super) created: usize,
    /// The hashes of the keys (or set elements) read so far of the dicts and sets being
    /// read, one segment per container (see [`KeyLog`]).
    pub(super) keys: Vec<u64>,
}

impl<'a> Stream<'a> {
    pub(super) fn new(input: &'a [u8], s: &mut Scratch) -> Stream<'a> {
        Stream {
            input,
            pos: 0,
            frame_end: None,
            window: input,
            hints: std::mem::take(&mut s.plan.hints),
            cursor: 0,
            memo: std::mem::take(&mut s.memo),
            cache: Vec::new(),
            bigs: Vec::new(),
            skip_stack: std::mem::take(&mut s.skip),
            pending: None,
            depth: 0,
            nesting: 0,
            marks: 0,
            visits: 0,
            created: 0,
            keys: std::mem::take(&mut s.keys),
        }
    }

    pub(super) fn give_back(self, s: &mut Scratch) {
        s.plan.hints = self.hints;
        s.memo = self.memo;
        s.skip = self.skip_stack;
        s.keys = self.keys;
    }

    /// After `T` was read: it took the whole value, `STOP` follows, and the visits fit
    /// the node budget `from_value` would have had.
    pub(super) fn finish(&mut self) -> R<()> {
        if self.pending.is_some() || self.peek_op()? != op::STOP {
            return Err(Bail);
        }
        let budget = self.created.saturating_mul(16).max(MIN_NODE_BUDGET);
        if self.visits > budget {
            return Err(Bail);
        }
        Ok(())
    }

    // ----- input, with the decoder's framing rules -----

    /// Reads `n` bytes (`n` at most the input's length); inside a frame they must lie in
    /// it, and at a frame's exact end reading continues outside.
    #[inline(always)]
    pub(super) fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self.pos + n;
        match self.window.get(self.pos..end) {
            Some(s) => {
                self.pos = end;
                Ok(s)
            }
            None => self.take_outside(n),
        }
    }

    /// [`Stream::take`] past the window: at a frame's exact end, reading continues
    /// outside it; otherwise the read runs past the frame or the input.
    #[cold]
    #[inline(never)]
    pub(super) fn take_outside(&mut self, n: usize) -> R<&'a [u8]> {
        self.leave_frame_for(n)?;
        let end = self.pos + n;
        let s = self.input.get(self.pos..end).ok_or(Bail)?;
        self.pos = end;
        Ok(s)
    }

    #[cold]
    pub(super) fn leave_frame_for(&mut self, n: usize) -> R<()> {
        if let Some(end) = self.frame_end {
            if self.pos == end && n > 0 {
                self.frame_end = None;
                self.window = self.input;
            } else {
                return Err(Bail);
            }
        }
        if n > self.input.len() - self.pos {
            return Err(Bail);
        }
        Ok(())
    }

    #[inline(always)]
    pub(super) fn byte(&mut self) -> R<u8> {
        if let Some(&b) = self.window.get(self.pos) {
            self.pos += 1;
            return Ok(b);
        }
        Ok(self.take_outside(1)?[0])
    }

    #[inline(always)]
    pub(super) fn u32_le(&mut self) -> R<u32> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes(s.try_into().map_err(|_| Bail)?))
    }

    #[inline(always)]
    pub(super) fn u64_le(&mut self) -> R<u64> {
        let s = self.take(8)?;
        Ok(u64::from_le_bytes(s.try_into().map_err(|_| Bail)?))
    }

    /// A declared length, checked against the input left before anything is read.
    #[inline(always)]
    pub(super) fn len_arg(&self, declared: u64) -> R<usize> {
        if declared > (self.input.len() - self.pos) as u64 {
            return Err(Bail);
        }
        Ok(declared as usize)
    }

    /// The next opcode, not consumed; `FRAME` and `PROTO` before it are executed.
    #[inline(always)]
    pub(super) fn peek_op(&mut self) -> R<u8> {
        match self.peek_plain() {
            Some(code) => Ok(code),
            None => self.peek_op_slow(),
        }
    }

    /// The next opcode when it lies in the window and is neither `FRAME` nor `PROTO`.
    #[inline(always)]
    pub(super) fn peek_plain(&self) -> Option<u8> {
        match self.window.get(self.pos) {
            Some(&code) if code != op::FRAME && code != op::PROTO => Some(code),
            _ => None,
        }
    }

    #[inline(never)]
    pub(super) fn peek_op_slow(&mut self) -> R<u8> {
        loop {
            if self.pos >= self.window.len() {
                self.leave_frame_for(1)?;
            }
            let code = *self.input.get(self.pos).ok_or(Bail)?;
            match code {
                op::FRAME => self.frame()?,
                op::PROTO => {
                    self.pos += 1;
                    if self.byte()? > op::HIGHEST_PROTOCOL {
                        return Err(Bail);
                    }
                }
                _ => return Ok(code),
            }
        }
    }

    pub(super) fn frame(&mut self) -> R<()> {
        self.pos += 1;
        let n = self.u64_le()?;
        if let Some(end) = self.frame_end
            && self.pos != end
        {
            return Err(Bail);
        }
        if n > (self.input.len() - self.pos) as u64 {
            return Err(Bail);
        }
        let end = self.pos + n as usize;
        self.frame_end = Some(end);
        self.window = self.input.get(..end).ok_or(Bail)?;
        Ok(())
    }

    /// Consumes the opcode [`Stream::peek_op`] returned.
    #[inline(always)]
    pub(super) fn bump(&mut self) {
        self.pos += 1;
    }

    /// Consumes `code`, which must come next.
    #[inline]
    pub(super) fn expect(&mut self, code: u8) -> R<()> {
        if self.peek_op()? != code {
            return Err(Bail);
        }
        self.bump();
        Ok(())
    }

    // ----- the plan's hints -----

    /// The kind of the next hint when it is for `pos`. A hint left behind means the plan
    /// and the opcodes disagree.
    #[inline(always)]
    pub(super) fn hint_at(&self, pos: usize) -> R<Option<u64>> {
        match self.hints.get(self.cursor) {
            Some(&h) if hint_start(h) == pos => Ok(Some(hint_kind(h))),
            Some(&h) if hint_start(h) < pos => Err(Bail),
            _ => Ok(None),
        }
    }

    /// Takes the next hint when it is `kind` for `pos`.
    #[inline(always)]
    pub(super) fn take_hint(&mut self, pos: usize, kind: u64) -> R<bool> {
        if self.hint_at(pos)? == Some(kind) {
            self.cursor += 1;
            return Ok(true);
        }
        Ok(false)
    }

    /// Whether the `MARK` at `pos` begins a container (else it begins a batch of items
    /// for the container below it).
    pub(super) fn mark_begins_container(&self, pos: usize) -> bool {
        self.hints
            .get(self.cursor..)
            .unwrap_or_default()
            .iter()
            .take_while(|&&h| hint_start(h) == pos)
            .any(|&h| (H_MARK_TUPLE..=H_MARK_FROZENSET).contains(&hint_kind(h)))
    }

    // ----- limits -----

    /// A container opens in the pickle: the decoder's nesting limit, with a margin.
    #[inline(always)]
    pub(super) fn open(&mut self) -> R<()> {
        self.nesting += 1;
        if self.nesting + 2 > DEFAULT_LIMITS.max_depth {
            return Err(Bail);
        }
        Ok(())
    }

    /// A MARK opens: the decoder's `max_marks`. (Implied by the nesting check while
    /// `max_marks` is no smaller than `max_depth`: each open MARK belongs to an open
    /// container.)
    #[inline(always)]
    pub(super) fn open_mark(&mut self) -> R<()> {
        self.marks += 1;
        if self.marks + 1 >= DEFAULT_LIMITS.max_marks {
            return Err(Bail);
        }
        Ok(())
    }

    /// serde enters a container: `from_value`'s nesting limit.
    #[inline(always)]
    pub(super) fn enter(&mut self) -> R<()> {
        if self.depth >= DEFAULT_MAX_DEPTH {
            return Err(Bail);
        }
        self.depth += 1;
        Ok(())
    }

    // ----- the memo -----

    #[inline]
    pub(super) fn memo_put(&mut self, code: u8, val: u32) -> R<()> {
        self.bump();
        let idx = match code {
            op::MEMOIZE => self.memo.len() as u64,
            op::BINPUT => u64::from(self.byte()?),
            _ => u64::from(self.u32_le()?),
        };
        match idx.cmp(&(self.memo.len() as u64)) {
            std::cmp::Ordering::Equal => self.memo.push(val),
            std::cmp::Ordering::Less => self.memo[idx as usize] = val,
            std::cmp::Ordering::Greater => return Err(Bail),
        }
        Ok(())
    }

    /// A memo opcode while a container is on top of the stack.
    #[inline]
    pub(super) fn memo_container(&mut self, code: u8) -> R<()> {
        self.memo_put(code, MEMO_CONTAINER)
    }

    /// Memo opcodes after a container closed.
    pub(super) fn after_container(&mut self) -> R<()> {
        loop {
            let code = self.peek_op()?;
            if !is_memo(code) {
                return Ok(());
            }
            self.memo_container(code)?;
        }
    }

    /// Memo opcodes after the scalar `h`, whose opcode began at `start` (and ends here).
    #[inline(always)]
    pub(super) fn after_scalar(&mut self, start: usize, h: &Head<'a>) -> R<()> {
        let len = self.pos - start;
        let short = len <= SHORT_OP && !matches!(h, Head::Surrogates | Head::Big(_));
        loop {
            match self.peek_plain() {
                Some(code) if !is_memo(code) => return Ok(()),
                // Protocol 4 memoizes every str: the common case, inline.
                Some(op::MEMOIZE) if short => {
                    self.bump();
                    self.memo.push(start as u32);
                }
                _ => return self.memoize_scalar(start, len, h),
            }
        }
    }

    #[inline(never)]
    pub(super) fn memoize_scalar(&mut self, start: usize, len: usize, h: &Head<'a>) -> R<()> {
        if !is_memo(self.peek_op()?) {
            return Ok(());
        }
        let long = len > SHORT_OP || matches!(h, Head::Surrogates | Head::Big(_));
        let entry = if long && self.input.get(start) == Some(&op::BYTEARRAY8) {
            // A cached head does not say bytes from bytearray, which a dict key must
            // (only bytes are hashable): fetching it again gives up instead.
            MEMO_CONTAINER
        } else if long {
            self.cache.push((*h, start));
            CACHED | (self.cache.len() - 1) as u32
        } else {
            start as u32
        };
        self.memoize_entry(entry)
    }

    /// Memo opcodes after a scalar whose memo entry is `entry`.
    pub(super) fn memoize_entry(&mut self, entry: u32) -> R<()> {
        loop {
            let code = self.peek_op()?;
            if !is_memo(code) {
                return Ok(());
            }
            self.memo_put(code, entry)?;
        }
    }

    pub(super) fn get(&mut self, idx: u64) -> R<Head<'a>> {
        let entry = *self.memo.get(idx as usize).ok_or(Bail)?;
        let h = match entry {
            MEMO_CONTAINER => return Err(Bail),
            e if e & CACHED != 0 => self.cache.get((e & !CACHED) as usize).ok_or(Bail)?.0,
            e => scalar_at(self.input, e as usize).ok_or(Bail)?,
        };
        self.memoize_entry(entry)?;
        Ok(h)
    }

    // ----- dict keys and set elements -----

    /// Where the memo entry `idx` was read from: the offset of its opcode; `Bail` for a
    /// container.
    fn memo_origin(&self, idx: usize) -> R<usize> {
        match *self.memo.get(idx).ok_or(Bail)? {
            MEMO_CONTAINER => Err(Bail),
            e if e & CACHED != 0 => Ok(self.cache.get((e & !CACHED) as usize).ok_or(Bail)?.1),
            e => Ok(e as usize),
        }
    }

    /// The hash of the scalar whose opcode is at `q`, as [`crate::pyhash`] compares it
    /// (`1 == 1.0 == True`; a NaN is equal only to the same object, which is the same
    /// opcode), and the offset after it; `Bail` for a bytearray (unhashable) or anything
    /// but a scalar.
    fn scalar_key(&self, q: usize) -> R<(u64, usize)> {
        let b = self.input;
        let code = *b.get(q).ok_or(Bail)?;
        let arg = |k: usize| b.get(q + 1..q + 1 + k).ok_or(Bail);
        let sized = |k: usize| -> R<(&[u8], usize)> {
            let mut at = q + 1;
            let n = match k {
                1 => le_len::<1>(b, &mut at),
                4 => le_len::<4>(b, &mut at),
                _ => le_len::<8>(b, &mut at),
            }
            .ok_or(Bail)?;
            let end = at.checked_add(usize::try_from(n).map_err(|_| Bail)?).ok_or(Bail)?;
            Ok((b.get(at..end).ok_or(Bail)?, end))
        };
        let num = |i: i64| Scalar::Num(Num::Real(int_real(i)));
        let (scalar, end) = match code {
            op::NONE => (Scalar::None, q + 1),
            op::NEWTRUE | op::NEWFALSE => (num(i64::from(code == op::NEWTRUE)), q + 1),
            op::BININT1 => (num(i64::from(arg(1)?[0])), q + 2),
            op::BININT2 => {
                let a = arg(2)?;
                (num(i64::from(u16::from_le_bytes([a[0], a[1]]))), q + 3)
            }
            op::BININT => {
                let a = arg(4)?;
                (num(i64::from(i32::from_le_bytes([a[0], a[1], a[2], a[3]]))), q + 5)
            }
            op::BINFLOAT => {
                let a = arg(8)?;
                let x = f64::from_be_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]);
                match float_real(x) {
                    Some(r) => (Scalar::Num(Num::Real(r)), q + 9),
                    // A NaN: this object only, named by its opcode's offset.
                    None => return Ok((identity_hash(0, q as u64), q + 9)),
                }
            }
            op::LONG1 | op::LONG4 => {
                let (data, end) = sized(if code == op::LONG1 { 1 } else { 4 })?;
                let h = match BigInt::from_le_twos_complement(data) {
                    Int::Small(i) => scalar_hash(0, &num(i)),
                    Int::Big(big) => scalar_hash(0, &Scalar::Num(big_num(&big))),
                };
                return Ok((h, end));
            }
            op::SHORT_BINUNICODE | op::SHORT_BINSTRING => {
                let (t, end) = sized(1)?;
                (Scalar::Str(t), end)
            }
            op::BINUNICODE | op::BINSTRING => {
                let (t, end) = sized(4)?;
                (Scalar::Str(t), end)
            }
            op::BINUNICODE8 => {
                let (t, end) = sized(8)?;
                (Scalar::Str(t), end)
            }
            op::SHORT_BINBYTES => {
                let (t, end) = sized(1)?;
                (Scalar::Bytes(t), end)
            }
            op::BINBYTES => {
                let (t, end) = sized(4)?;
                (Scalar::Bytes(t), end)
            }
            op::BINBYTES8 => {
                let (t, end) = sized(8)?;
                (Scalar::Bytes(t), end)
            }
            _ => return Err(Bail),
        };
        Ok((scalar_hash(0, &scalar), end))
    }

    /// The hash of the dict key or set element made by the opcodes `input[at..end]`
    /// (read already): a scalar, a memo fetch of one, or tuples and frozensets of those,
    /// hashed so that keys CPython finds equal (`1 == 1.0 == True`, `(1, 2) == (1.0,
    /// 2)`, frozensets as sets) hash alike. Anything else gives up: an unhashable key
    /// (a list, a bytearray), which the `Value` path refuses, or a container fetched
    /// from the memo.
    #[inline]
    pub(super) fn key_hash(&self, at: usize, end: usize) -> R<u64> {
        // The common case: one scalar, perhaps memoized.
        let b = self.input;
        if let Some(&code) = b.get(at)
            && !matches!(code, op::BINGET | op::LONG_BINGET | op::MARK | op::EMPTY_TUPLE | op::FRAME)
        {
            let (h, mut p) = self.scalar_key(at)?;
            loop {
                match b.get(p) {
                    _ if p >= end => return if p == end { Ok(h) } else { Err(Bail) },
                    Some(&op::MEMOIZE) => p += 1,
                    Some(&op::BINPUT) => p += 2,
                    Some(&op::LONG_BINPUT) => p += 5,
                    _ => return self.key_hash_general(at, end),
                }
            }
        }
        self.key_hash_general(at, end)
    }

    /// [`Stream::key_hash`] for memo fetches, tuples and frozensets.
    #[inline(never)]
    fn key_hash_general(&self, at: usize, end: usize) -> R<u64> {
        let b = self.input;
        let mut p = at;
        let mut stack: Vec<u64> = Vec::new();
        let mut marks: Vec<usize> = Vec::new();
        while p < end {
            let code = *b.get(p).ok_or(Bail)?;
            match code {
                op::BINPUT => p += 2,
                op::LONG_BINPUT => p += 5,
                op::MEMOIZE => p += 1,
                op::FRAME => p += 9,
                op::BINGET | op::LONG_BINGET => {
                    let idx = if code == op::BINGET {
                        usize::from(*b.get(p + 1).ok_or(Bail)?)
                    } else {
                        let a = b.get(p + 1..p + 5).ok_or(Bail)?;
                        u32::from_le_bytes([a[0], a[1], a[2], a[3]]) as usize
                    };
                    stack.push(self.scalar_key(self.memo_origin(idx)?)?.0);
                    p += if code == op::BINGET { 2 } else { 5 };
                }
                op::EMPTY_TUPLE => {
                    stack.push(tuple_hash(0, &[]));
                    p += 1;
                }
                op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                    let n = usize::from(code - op::TUPLE1 + 1);
                    let from =
                        stack.len().checked_sub(n).filter(|&f| f >= marks.last().copied().unwrap_or(0)).ok_or(Bail)?;
                    let h = tuple_hash(0, &stack[from..]);
                    stack.truncate(from);
                    stack.push(h);
                    p += 1;
                }
                op::MARK => {
                    marks.push(stack.len());
                    p += 1;
                }
                op::TUPLE | op::FROZENSET => {
                    let from = marks.pop().ok_or(Bail)?;
                    let h = if code == op::TUPLE {
                        tuple_hash(0, &stack[from..])
                    } else {
                        frozenset_hash(0, &mut stack.split_off(from))
                    };
                    stack.truncate(from);
                    stack.push(h);
                    p += 1;
                }
                _ => {
                    let (h, next) = self.scalar_key(p)?;
                    stack.push(h);
                    p = next;
                }
            }
        }
        match (stack.as_slice(), marks.is_empty(), p == end) {
            (&[h], true, true) => Ok(h),
            _ => Err(Bail),
        }
    }
}

/// The keys of one dict (or elements of one set) being read: their hashes, in a segment
/// of [`Stream::keys`] while there are few, then in a set. A hash seen before gives up
/// (a repeated key, which the `Value` path merges; or a collision, which costs only the
/// fallback).
pub(super) struct KeyLog {
    start: usize,
    /// Boxed: a `KeyLog` lives in every map and set being read, most never need it.
    #[allow(clippy::box_collection)]
    many: Option<Box<HashSet<u64>>>,
}

/// Keys kept in the linear segment before a set takes over.
const FEW_KEYS: usize = 32;

impl KeyLog {
    #[inline(always)]
    pub(super) fn new(st: &Stream<'_>) -> KeyLog {
        KeyLog { start: st.keys.len(), many: None }
    }

    /// Notes the key made by the opcodes `at..end`.
    #[inline]
    pub(super) fn add(&mut self, st: &mut Stream<'_>, at: usize, end: usize) -> R<()> {
        let h = st.key_hash(at, end)?;
        if let Some(set) = &mut self.many {
            return if set.insert(h) { Ok(()) } else { Err(Bail) };
        }
        let seen = st.keys.get(self.start..).unwrap_or_default();
        if seen.contains(&h) {
            return Err(Bail);
        }
        if seen.len() >= FEW_KEYS {
            let mut set: HashSet<u64> = seen.iter().copied().collect();
            set.insert(h);
            st.keys.truncate(self.start);
            self.many = Some(Box::new(set));
        } else {
            st.keys.push(h);
        }
        Ok(())
    }

    /// The container ended: its segment goes.
    #[inline(always)]
    pub(super) fn end(self, st: &mut Stream<'_>) {
        st.keys.truncate(self.start);
    }
}

// ----- containers: the state of one (its stepping is in `body.rs`) -----

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `EMPTY_LIST`, or a `MARK … LIST` after its `LIST`: `MARK … APPENDS` batches and
    /// single `x APPEND`s follow.
    List,
    /// `EMPTY_DICT`, or a `MARK … DICT` after its `DICT`.
    Dict,
    /// `EMPTY_SET`: `MARK … ADDITEMS` batches follow.
    Set,
    /// `a b TUPLE2`: `n` items, then the opcode.
    Tuple,
    EmptyTuple,
    /// `MARK` items up to `TUPLE`, `LIST`, `DICT` (pairs) or `FROZENSET`.
    MarkTuple,
    MarkList,
    MarkDict,
    MarkFrozenSet,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Step {
    /// An item (for a dict: a key or a value) starts here.
    Item,
    /// The container ended (its closing opcodes were read).
    End,
}

pub(super) const NO_ITEM: usize = usize::MAX;

/// Where reading a container's items is (shared by serde's accessors and the skipper).
#[derive(Clone, Copy)]
pub(super) struct Body {
    pub(super) kind: Kind,
    /// Inside a `MARK … APPENDS/SETITEMS/ADDITEMS` batch.
    pub(super) batch: bool,
    /// A dict's key was read: its value is next.
    pub(super) value_next: bool,
    /// The pending dict entry is a single `k v SETITEM`.
    pub(super) single: bool,
    pub(super) done: bool,
    /// The opcode that must follow the item being read (`APPEND`, `SETITEM`), or 0.
    pub(super) after: u8,
    /// A `Kind::Tuple`'s length.
    pub(super) n: u8,
    /// Items read (a dict's entries).
    pub(super) count: u32,
    /// Where the item being read started, or [`NO_ITEM`].
    pub(super) item_at: usize,
    /// When skipping: where this container started, when it is a dict key or set
    /// element (checked once it ends), else [`NO_ITEM`].
    pub(super) key_at: usize,
    /// The state the inline [`Body::step`] handles, one of the `FAST_` values: inside a
    /// batch, nothing owed. Derived from the fields above.
    pub(super) fast: u8,
}

pub(super) const FAST_NONE: u8 = 0;
pub(super) const FAST_LIST: u8 = 1;
pub(super) const FAST_SET: u8 = 2;
pub(super) const FAST_DICT_KEY: u8 = 3;
pub(super) const FAST_DICT_VALUE: u8 = 4;

// ----- scalars -----

/// The scalar whose opcode is at `off`, read again for a `GET` (the opcode was read and
/// checked once already; only short ones are read again, see [`SHORT_OP`]).
pub(super) fn scalar_at<'a>(b: &'a [u8], off: usize) -> Option<Head<'a>> {
    let code = *b.get(off)?;
    let arg = |k: usize| b.get(off + 1..off + 1 + k);
    let sized = |k: usize| -> Option<&'a [u8]> {
        let mut q = off + 1;
        let n = match k {
            1 => le_len::<1>(b, &mut q)?,
            4 => le_len::<4>(b, &mut q)?,
            _ => le_len::<8>(b, &mut q)?,
        };
        b.get(q..q.checked_add(usize::try_from(n).ok()?)?)
    };
    let text = |t: &'a [u8]| utf8(t).map(Head::Str);
    Some(match code {
        op::NONE => Head::None,
        op::NEWTRUE => Head::Bool(true),
        op::NEWFALSE => Head::Bool(false),
        op::BININT1 => Head::Int(i64::from(*arg(1)?.first()?)),
        op::BININT2 => Head::Int(i64::from(u16::from_le_bytes(arg(2)?.try_into().ok()?))),
        op::BININT => Head::Int(i64::from(i32::from_le_bytes(arg(4)?.try_into().ok()?))),
        op::BINFLOAT => Head::Float(f64::from_be_bytes(arg(8)?.try_into().ok()?)),
        op::LONG1 | op::LONG4 => match BigInt::from_le_twos_complement(sized(if code == op::LONG1 { 1 } else { 4 })?) {
            Int::Small(i) => Head::Int(i),
            Int::Big(_) => return None, // kept in the cache instead
        },
        op::SHORT_BINUNICODE | op::SHORT_BINSTRING => text(sized(1)?)?,
        op::BINUNICODE | op::BINSTRING => text(sized(4)?)?,
        op::BINUNICODE8 => text(sized(8)?)?,
        op::SHORT_BINBYTES => Head::Bytes(sized(1)?),
        op::BINBYTES => Head::Bytes(sized(4)?),
        op::BINBYTES8 | op::BYTEARRAY8 => Head::Bytes(sized(8)?),
        _ => return None,
    })
}

/// The text, when `b` is UTF-8. `std::str::from_utf8` would do; this is about a third
/// faster on the short strs (dict keys, tags) most pickles are made of.
#[inline]
pub(super) fn utf8(b: &[u8]) -> Option<&str> {
    match b.utf8_chunks().next() {
        Some(chunk) if chunk.invalid().is_empty() && chunk.valid().len() == b.len() => Some(chunk.valid()),
        Some(_) => None,
        None => Some(""),
    }
}

pub(super) fn is_memo(code: u8) -> bool {
    matches!(code, op::BINPUT | op::LONG_BINPUT | op::MEMOIZE)
}

#[cold]
pub(super) fn surrogates<'a>(b: &[u8]) -> R<Head<'a>> {
    if PyStr::from_surrogatepass(b).is_some() { Ok(Head::Surrogates) } else { Err(Bail) }
}

// ----- the error -----

/// The direct path gave up; the `Value` path decides. Carries nothing: the messages
/// serde builds are dropped unread.
#[derive(Debug)]
pub(super) struct Bail;

impl fmt::Display for Bail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the direct deserializer gave up")
    }
}

impl std::error::Error for Bail {}

impl de::Error for Bail {
    #[cold]
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        Bail
    }
}

pub(super) type R<T> = std::result::Result<T, Bail>;

// ----- working buffers -----

/// The buffers of both passes, kept per thread from one call to the next (as the
/// decoder keeps its own), so reading a small pickle allocates only what `T` keeps.
pub(super) struct Scratch {
    /// The plan's buffers; its hints go to the stream.
    pub(super) plan: PlanBuffers,
    /// Stream: per memo index, where its value is (see [`MEMO_CONTAINER`]).
    pub(super) memo: Vec<u32>,
    /// Stream: the containers being skipped.
    pub(super) skip: Vec<Body>,
    /// Stream: the hashes of dict keys and set elements.
    pub(super) keys: Vec<u64>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const { RefCell::new(Scratch::new()) };
}

/// Buffers with more room than this many entries are freed, not kept.
const SCRATCH_KEEP: usize = 1 << 12;

/// Runs `f` with this thread's buffers (empty), or new ones when they are in use (a
/// `Deserialize` impl that calls `from_slice` itself) or gone (thread exit). `None`
/// cannot happen: `f` runs once, here or there.
pub(super) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> Option<R> {
    let mut f = Some(f);
    let out = SCRATCH
        .try_with(|cell| {
            let mut s = cell.try_borrow_mut().ok()?;
            let out = (f.take()?)(&mut s);
            s.clear();
            Some(out)
        })
        .ok()
        .flatten();
    out.or_else(|| f.map(|f| f(&mut Scratch::new())))
}

impl Scratch {
    pub(super) const fn new() -> Scratch {
        Scratch { plan: PlanBuffers::new(), memo: Vec::new(), skip: Vec::new(), keys: Vec::new() }
    }

    /// Empties the buffers for the next try; large ones are freed.
    pub(super) fn clear(&mut self) {
        self.plan.clear(SCRATCH_KEEP);
        cleared(&mut self.memo, SCRATCH_KEEP);
        cleared(&mut self.skip, SCRATCH_KEEP);
        cleared(&mut self.keys, SCRATCH_KEEP);
    }
}
