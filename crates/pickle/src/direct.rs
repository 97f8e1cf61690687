//! pickle bytes → serde: [`from_slice`], which reads `T` straight from the opcodes,
//! without building a [`crate::Value`], and takes `decode` + [`from_value`] when it cannot.
//!
//! Invariant: when the direct path returns a `T`, decoding the same bytes and calling
//! [`from_value`] would have returned an equal `T` (the same visitor calls, in the
//! same order, with the same arguments); whenever it cannot be sure of that it returns
//! `None` and the caller takes the `Value` path from the start, which then decides
//! everything, errors included. Memory is the input plus what `T` keeps plus a few words
//! per memoized object, per tuple and per open container; time is linear in the input
//! (the plan, when it runs, also sorts its hints: `h log h` for `h` postfix constructs);
//! stack depth is bounded by [`crate::de::DEFAULT_MAX_DEPTH`] nested containers, as on
//! the `Value` path.
//!
//! # Why a pickle can be streamed
//!
//! A pickle is a program for a stack machine, written mostly in prefix order: a list is
//! `EMPTY_LIST`, then its items in `MARK … APPENDS` batches; a dict `EMPTY_DICT`, then
//! `MARK k v … SETITEMS`. Serde wants exactly that order (the container, then its items).
//! Three constructs are postfix, and only there does a reader going forward need to know
//! what comes later: `a b TUPLE2` (a tuple is known only after its items), `x APPEND` and
//! `k v SETITEM` (a single item, known to belong to the container below it only at the
//! opcode after it), and `MARK … TUPLE|LIST|DICT|FROZENSET` (a container whose kind is
//! known only at its end).
//!
//! # The stream, and the plan
//!
//! [`Stream`] is a serde `Deserializer` that reads the opcodes in order and checks
//! everything the decoder checks (lengths against the input, frames, UTF-8, `PROTO`, the
//! stack discipline, the decoder's mark and depth limits) and everything
//! [`from_value`] checks (types, ranges, lengths, the nesting limit, the node
//! budget). It accepts a postfix construct only where a *hint* says one begins, and then
//! only when the opcodes confirm it: told that a `TUPLE2` starts at this byte, it reads
//! two values and demands the `TUPLE2` opcode; told nothing, it ends a list where no
//! batch follows, and a stray `APPEND` later fails. So hints never change a result, only
//! whether there is one: a wrong hint (only a hostile pickle can make one) costs a
//! fallback, never a wrong value.
//!
//! The hints come from the **plan** ([`plan`]): one pass over the opcodes that keeps
//! only the start offset of each item on the pickle's stack (it never builds a value)
//! and writes down where each postfix construct begins: "a `TUPLE2` starts at byte 40",
//! "the item at byte 61 is `APPEND`ed", "the `MARK` at byte 12 ends in `DICT`". It also
//! decides whether the pickle is streamable at all: any opcode outside the plain-data
//! subset (`REDUCE` and the other object opcodes, globals, persistent ids, out-of-band
//! buffers, `DUP`/`POP`, protocol-0 text opcodes), a memo reference (`GET`) to a container
//! (which is how shared and cyclic values look), a memo index out of order, or a stack
//! left in an odd shape at `STOP` means the `Value` path.
//!
//! [`from_slice`] runs in up to three tries:
//!
//! 1. The stream with no hints. Most pickles have no postfix construct (W1's records,
//!    W4's lists: `MARK … APPENDS`/`SETITEMS` batches of scalars and strs), and for them
//!    this is the whole cost. A pickle with one fails here, usually at once.
//! 2. After a failure: the plan; when it accepts the pickle and has hints, the stream
//!    again, with them.
//! 3. After a failure, or a refusal: `None`, and the `Value` path from the start.
//!
//! # Fallback: rerun on any error
//!
//! Every failure on the direct path — a serde error, a decode error, a construct the
//! hints did not announce, a limit — is the private [`Bail`], which carries nothing (the
//! messages serde passes it are dropped unread, so they are never even formatted).
//! [`from_slice`] then runs `decode` + `from_value`, which report exactly the
//! errors they always reported: the same `Error::Decode` offsets and `Error::Serde`
//! messages and paths, and the same choice between a type error early in the value and
//! bad bytes after it. The direct path never has to reproduce any of that. The price is
//! paid on errors only: a failing `from_slice` does the direct work up to the failure,
//! then the old work. Values of `T` built halfway are dropped, so a fallback is invisible
//! to the caller except in time — and to a `Deserialize` impl with side effects, which
//! may run up to three times.
//!
//! A pre-scan that decides everything first and never falls back was rejected: it would
//! have to reproduce every error message, path and precedence of the `Value` path for no
//! gain on the success path, and a pre-scan of every pickle cost as much as the stream
//! itself on W1's records (it is now paid only by pickles that need it).
//!
//! # Keeping the results equal
//!
//! - Every visitor call is the one [`crate::de`] makes for the same node (`visit_u64` for
//!   a non-negative int in `deserialize_any`, `visit_f64` for a float read as `f32`,
//!   `visit_borrowed_str` borrowed from the input, …); `Option`, bytes and enums look at
//!   the value first, as `de.rs` does, by putting the value's head back (`pending`).
//! - A value nothing read (a `Deserialize` impl that ignores its deserializer, a visitor
//!   that stops early) is an error at the next item or at the end, so positions cannot
//!   drift.
//! - Visits are counted as `de.rs` counts them, and the total must stay within the node
//!   budget `from_value` would compute, from a lower bound of the decoded node count.
//! - Nesting deeper than the decoder's `max_depth` (less a margin), or more open MARKs
//!   than its `max_marks`, bails, so a deeply nested value that only `IgnoredAny` skips
//!   is still refused exactly where the decoder refuses it.
//! - A memo `GET` reads a short scalar's opcode again (at most [`SHORT_OP`] bytes) and
//!   takes a long str or a big int from a cache, so each fetch costs a constant.
//! - Size hints count a container's first batch when it is a run of one fixed-size
//!   scalar opcode (at most [`SCAN_ITEMS`] of them), and are none otherwise; they only
//!   change the room a visitor reserves.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Visitor};

use crate::Result;
use crate::de::{DEFAULT_MAX_DEPTH, MIN_NODE_BUDGET, from_value};
use crate::decode::{DEFAULT_LIMITS, decode};
use crate::int::{BigInt, Int, Int128, big_to_128, big_to_float_exact};
use crate::opcodes as op;
use crate::value::PyStr;

/// Deserializes any `T: DeserializeOwned` from pickle bytes: the same `T` (or error) as
/// [`decode`] then [`from_value`], with the mapping of [`crate::de`]. Plain data is read
/// straight from the opcodes, without building a [`crate::Value`]; objects, shared or
/// cyclic values, protocol-0 text opcodes and every error take `decode` + `from_value`.
///
/// ```
/// # use std::collections::HashMap;
/// // pickle.dumps({"a": [1, 2]}, protocol=2)
/// let m: HashMap<String, Vec<u8>> =
///     pickleshelf_pickle::from_slice(b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01]q\x02(K\x01K\x02es.")?;
/// assert_eq!(m["a"], [1, 2]);
/// # Ok::<(), pickleshelf_pickle::Error>(())
/// ```
///
/// # Errors
/// [`crate::Error::Decode`] for bad pickle bytes, [`crate::Error::Serde`] when the value
/// does not fit `T` — exactly those of `from_value(&decode(bytes)?)`. A failing call
/// costs a little more than it used to: the direct attempt, then the old path.
pub fn from_slice<T: de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    match try_direct(bytes) {
        Some(t) => Ok(t),
        None => from_value(&decode(bytes)?),
    }
}

/// Reads `T` from pickle bytes on the direct path; `None` when the `Value` path must
/// decide (see the [module docs](self)).
fn try_direct<'a, T: de::Deserialize<'a>>(input: &'a [u8]) -> Option<T> {
    if input.len() >= MAX_INPUT {
        return None;
    }
    with_scratch(|s| {
        if let Ok(t) = stream(input, s) {
            return Some(t);
        }
        s.clear();
        if !plan(input, s) || s.hints.is_empty() {
            return None; // refused, or the same stream again
        }
        stream(input, s).ok()
    })
    .flatten()
}

/// Test hooks: the two paths of [`from_slice`] apart.
pub mod testing {
    use serde::de::DeserializeOwned;

    use crate::Result;

    /// The direct path alone; `None` when [`crate::from_slice`] falls back.
    pub fn direct<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
        super::try_direct(bytes)
    }

    /// The `Value` path alone: `from_value(&decode(bytes)?)`.
    ///
    /// # Errors
    /// As [`crate::from_slice`].
    pub fn via_value<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
        super::from_value(&super::decode(bytes)?)
    }

    /// Whether the plan accepts the pickle (the second try runs at all).
    pub fn streamable(bytes: &[u8]) -> bool {
        super::streamable(bytes)
    }

    /// Whether the first try (no plan) reads `T`.
    pub fn without_plan<T: DeserializeOwned>(bytes: &[u8]) -> bool {
        super::with_scratch(|s| super::stream::<T>(bytes, s).is_ok()).unwrap_or(false)
    }
}

/// Whether the plan accepts `bytes`.
fn streamable(input: &[u8]) -> bool {
    input.len() < MAX_INPUT && with_scratch(|s| plan(input, s)).unwrap_or(false)
}

/// One try: the stream with the hints in `scratch` (none before the plan ran).
fn stream<'a, T: de::Deserialize<'a>>(input: &'a [u8], scratch: &mut Scratch) -> R<T> {
    let mut st = Stream::new(input, scratch);
    // `PROTO` and the first `FRAME` now, so that the root value starts on a fast path.
    let out = st.peek_op().and_then(|_| T::deserialize(&mut st)).and_then(|t| st.finish().map(|()| t));
    st.give_back(scratch);
    out
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

type R<T> = std::result::Result<T, Bail>;

// ----- working buffers -----

/// The buffers of both passes, kept per thread from one call to the next (as the
/// decoder keeps its own), so reading a small pickle allocates only what `T` keeps.
struct Scratch {
    /// Plan: the pickle's stack, one entry per item: the offset of its first opcode,
    /// with [`CONTAINER`] set for containers.
    slots: Vec<u32>,
    /// Plan: open MARKs, as (stack length, offset of the MARK).
    marks: Vec<(u32, u32)>,
    /// Plan: per memo index, whether it holds a container.
    memo_containers: Vec<bool>,
    /// Plan → stream: postfix constructs by start offset (see [`H_TUPLE1`]).
    hints: Vec<u64>,
    /// Stream: per memo index, where its value is (see [`MEMO_CONTAINER`]).
    memo: Vec<u32>,
    /// Stream: the containers being skipped.
    skip: Vec<Body>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const { RefCell::new(Scratch::new()) };
}

/// Buffers with more room than this many entries are freed, not kept.
const SCRATCH_KEEP: usize = 1 << 12;

/// Runs `f` with this thread's buffers (empty), or new ones when they are in use (a
/// `Deserialize` impl that calls `from_slice` itself) or gone (thread exit). `None`
/// cannot happen: `f` runs once, here or there.
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> Option<R> {
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
    const fn new() -> Scratch {
        Scratch {
            slots: Vec::new(),
            marks: Vec::new(),
            memo_containers: Vec::new(),
            hints: Vec::new(),
            memo: Vec::new(),
            skip: Vec::new(),
        }
    }

    /// Empties the buffers for the next try; large ones are freed.
    fn clear(&mut self) {
        fn cleared<T>(v: &mut Vec<T>) {
            if v.capacity() > SCRATCH_KEEP {
                *v = Vec::new();
            }
            v.clear();
        }
        cleared(&mut self.slots);
        cleared(&mut self.marks);
        cleared(&mut self.memo_containers);
        cleared(&mut self.hints);
        cleared(&mut self.memo);
        cleared(&mut self.skip);
    }
}

// ----- the plan -----

/// Set in a plan's stack entry for a container.
const CONTAINER: u32 = 1 << 31;

/// Inputs this long or longer take the `Value` path (offsets are 31 bits here).
const MAX_INPUT: usize = 1 << 31;

// A hint is `start << 32 | order << 4 | kind`: `start` is the offset where the construct
// begins, `order` puts constructs beginning at the same offset outermost first (the plan
// meets them innermost first), `kind` is one of these.
const H_TUPLE1: u64 = 1;
const H_TUPLE3: u64 = 3;
const H_MARK_TUPLE: u64 = 4;
const H_MARK_LIST: u64 = 5;
const H_MARK_DICT: u64 = 6;
const H_MARK_FROZENSET: u64 = 7;
const H_APPEND: u64 = 8;
const H_SETITEM: u64 = 9;
const HINT_ORDER_MAX: u64 = (1 << 28) - 1;

fn hint_start(h: u64) -> usize {
    (h >> 32) as usize
}

fn hint_kind(h: u64) -> u64 {
    h & 0xF
}

/// The plan (see the [module docs](self)): fills `s.hints`, sorted; false when the
/// pickle is not streamable.
fn plan(input: &[u8], s: &mut Scratch) -> bool {
    let ok = plan_inner(input, s).is_some();
    if ok && !s.hints.is_sorted() {
        s.hints.sort_unstable();
    }
    ok
}

/// The argument length of the opcodes that push a scalar with a fixed-size argument;
/// [`NOT_FIXED`] for the others.
const FIXED_ARG: [u8; 256] = {
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
const NOT_FIXED: u8 = u8::MAX;

/// Reads a little-endian length of `K` bytes at `pos`.
#[inline(always)]
fn le_len<const K: usize>(input: &[u8], pos: &mut usize) -> Option<u64> {
    let b: [u8; K] = input.get(*pos..*pos + K)?.try_into().ok()?;
    *pos += K;
    let mut w = [0u8; 8];
    w[..K].copy_from_slice(&b);
    Some(u64::from_le_bytes(w))
}

fn plan_inner(input: &[u8], s: &mut Scratch) -> Option<()> {
    let Scratch { slots, marks, memo_containers: memo, hints, .. } = s;
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

// ----- the stream -----

// A memo entry is the offset of the memoized scalar's opcode, read again at each `GET`
// (for a short opcode, cheaper than keeping the value); or `CACHED | i`, the value kept
// in `Stream::cache` (a long str or int, whose reading again would take time); or
// `MEMO_CONTAINER` (the plan sends pickles that fetch one to the `Value` path, and the
// stream refuses to fetch one).
const MEMO_CONTAINER: u32 = u32::MAX;
const CACHED: u32 = 1 << 31;

/// Size hints count at most this many items.
const SCAN_ITEMS: usize = 1024;

/// Opcodes (with their argument) up to this long are read again at each `GET`.
const SHORT_OP: usize = 72;

/// An int outside `i64`, as the deserializer uses it.
struct Wide {
    int: Option<Int128>,
    f64: Option<f64>,
    f32: Option<f32>,
}

impl Wide {
    fn of(b: &BigInt) -> Wide {
        Wide {
            int: big_to_128(b),
            f64: big_to_float_exact(b, 53, 1024),
            f32: big_to_float_exact(b, 24, 128).map(|x| x as f32),
        }
    }
}

/// The start of a value: a scalar whole, or a container whose items follow.
#[derive(Clone, Copy)]
enum Head<'a> {
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
    input: &'a [u8],
    pos: usize,
    /// The end of the current protocol-4 frame, while reading inside one.
    frame_end: Option<usize>,
    /// The input up to `frame_end`, else all of it: where reading may go without
    /// leaving a frame.
    window: &'a [u8],
    hints: Vec<u64>,
    /// The next hint not yet met.
    cursor: usize,
    memo: Vec<u32>,
    /// Memoized values that are long to read again.
    cache: Vec<Head<'a>>,
    bigs: Vec<Wide>,
    skip_stack: Vec<Body>,
    /// A value's head read but not used yet: `Option`, bytes and enums look first. It
    /// never outlives the `deserialize_*` call that put it back (that call fails if its
    /// visitor left it), so a container's next item never finds one.
    pending: Option<Head<'a>>,
    /// Containers entered by serde (the `DEFAULT_MAX_DEPTH` limit).
    depth: usize,
    /// Containers open in the pickle, skipped ones included (the decoder's `max_depth`).
    nesting: usize,
    /// MARKs open (the decoder's `max_marks`).
    marks: usize,
    /// Nodes `de.rs` would visit.
    visits: usize,
    /// Nodes the decoder would make, at least (its interned atoms are not counted).
    created: usize,
}

impl<'a> Stream<'a> {
    fn new(input: &'a [u8], s: &mut Scratch) -> Stream<'a> {
        Stream {
            input,
            pos: 0,
            frame_end: None,
            window: input,
            hints: std::mem::take(&mut s.hints),
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
        }
    }

    fn give_back(self, s: &mut Scratch) {
        s.hints = self.hints;
        s.memo = self.memo;
        s.skip = self.skip_stack;
    }

    /// After `T` was read: it took the whole value, `STOP` follows, and the visits fit
    /// the node budget `from_value` would have had.
    fn finish(&mut self) -> R<()> {
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
    fn take(&mut self, n: usize) -> R<&'a [u8]> {
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
    fn take_outside(&mut self, n: usize) -> R<&'a [u8]> {
        self.leave_frame_for(n)?;
        let end = self.pos + n;
        let s = self.input.get(self.pos..end).ok_or(Bail)?;
        self.pos = end;
        Ok(s)
    }

    #[cold]
    fn leave_frame_for(&mut self, n: usize) -> R<()> {
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
    fn byte(&mut self) -> R<u8> {
        if let Some(&b) = self.window.get(self.pos) {
            self.pos += 1;
            return Ok(b);
        }
        Ok(self.take_outside(1)?[0])
    }

    #[inline(always)]
    fn u32_le(&mut self) -> R<u32> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes(s.try_into().map_err(|_| Bail)?))
    }

    #[inline(always)]
    fn u64_le(&mut self) -> R<u64> {
        let s = self.take(8)?;
        Ok(u64::from_le_bytes(s.try_into().map_err(|_| Bail)?))
    }

    /// A declared length, checked against the input left before anything is read.
    #[inline(always)]
    fn len_arg(&self, declared: u64) -> R<usize> {
        if declared > (self.input.len() - self.pos) as u64 {
            return Err(Bail);
        }
        Ok(declared as usize)
    }

    /// The next opcode, not consumed; `FRAME` and `PROTO` before it are executed.
    #[inline(always)]
    fn peek_op(&mut self) -> R<u8> {
        match self.peek_plain() {
            Some(code) => Ok(code),
            None => self.peek_op_slow(),
        }
    }

    /// The next opcode when it lies in the window and is neither `FRAME` nor `PROTO`.
    #[inline(always)]
    fn peek_plain(&self) -> Option<u8> {
        match self.window.get(self.pos) {
            Some(&code) if code != op::FRAME && code != op::PROTO => Some(code),
            _ => None,
        }
    }

    #[inline(never)]
    fn peek_op_slow(&mut self) -> R<u8> {
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

    fn frame(&mut self) -> R<()> {
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
    fn bump(&mut self) {
        self.pos += 1;
    }

    /// Consumes `code`, which must come next.
    #[inline]
    fn expect(&mut self, code: u8) -> R<()> {
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
    fn hint_at(&self, pos: usize) -> R<Option<u64>> {
        match self.hints.get(self.cursor) {
            Some(&h) if hint_start(h) == pos => Ok(Some(hint_kind(h))),
            Some(&h) if hint_start(h) < pos => Err(Bail),
            _ => Ok(None),
        }
    }

    /// Takes the next hint when it is `kind` for `pos`.
    #[inline(always)]
    fn take_hint(&mut self, pos: usize, kind: u64) -> R<bool> {
        if self.hint_at(pos)? == Some(kind) {
            self.cursor += 1;
            return Ok(true);
        }
        Ok(false)
    }

    /// Whether the `MARK` at `pos` begins a container (else it begins a batch of items
    /// for the container below it).
    fn mark_begins_container(&self, pos: usize) -> bool {
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
    fn open(&mut self) -> R<()> {
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
    fn open_mark(&mut self) -> R<()> {
        self.marks += 1;
        if self.marks + 1 >= DEFAULT_LIMITS.max_marks {
            return Err(Bail);
        }
        Ok(())
    }

    /// serde enters a container: `from_value`'s nesting limit.
    #[inline(always)]
    fn enter(&mut self) -> R<()> {
        if self.depth >= DEFAULT_MAX_DEPTH {
            return Err(Bail);
        }
        self.depth += 1;
        Ok(())
    }

    // ----- the memo -----

    #[inline]
    fn memo_put(&mut self, code: u8, val: u32) -> R<()> {
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
    fn memo_container(&mut self, code: u8) -> R<()> {
        self.memo_put(code, MEMO_CONTAINER)
    }

    /// Memo opcodes after a container closed.
    fn after_container(&mut self) -> R<()> {
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
    fn after_scalar(&mut self, start: usize, h: &Head<'a>) -> R<()> {
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
    fn memoize_scalar(&mut self, start: usize, len: usize, h: &Head<'a>) -> R<()> {
        if !is_memo(self.peek_op()?) {
            return Ok(());
        }
        let long = len > SHORT_OP || matches!(h, Head::Surrogates | Head::Big(_));
        let entry = if long {
            self.cache.push(*h);
            CACHED | (self.cache.len() - 1) as u32
        } else {
            start as u32
        };
        self.memoize_entry(entry)
    }

    /// Memo opcodes after a scalar whose memo entry is `entry`.
    fn memoize_entry(&mut self, entry: u32) -> R<()> {
        loop {
            let code = self.peek_op()?;
            if !is_memo(code) {
                return Ok(());
            }
            self.memo_put(code, entry)?;
        }
    }

    fn get(&mut self, idx: u64) -> R<Head<'a>> {
        let entry = *self.memo.get(idx as usize).ok_or(Bail)?;
        let h = match entry {
            MEMO_CONTAINER => return Err(Bail),
            e if e & CACHED != 0 => *self.cache.get((e & !CACHED) as usize).ok_or(Bail)?,
            e => scalar_at(self.input, e as usize).ok_or(Bail)?,
        };
        self.memoize_entry(entry)?;
        Ok(h)
    }

    // ----- values -----

    // The fast paths read the common scalar opcodes without building a [`Head`], with
    // the cursor in a local: one load of `pos` and one store per value, not one per
    // byte read (each store then load of `pos` through memory costs a store-forwarding
    // round trip, and they were the critical path). Anything unusual — something
    // pending, a hint at this offset, a frame's end, a memo opcode other than
    // `MEMOIZE` — takes the general path ([`Stream::head`]), which decides.

    /// The window and the cursor, when the next value may take a fast path.
    #[inline(always)]
    fn fast_start(&self) -> Option<(&'a [u8], usize)> {
        let p = self.pos;
        if self.pending.is_some() || self.hints.get(self.cursor).is_some_and(|&h| hint_start(h) <= p) {
            return None;
        }
        Some((self.window, p))
    }

    /// After a scalar read on a fast path from `start` to `end` of window `w`: its
    /// `MEMOIZE`s, and the cursor stored.
    #[inline(always)]
    fn fast_end(&mut self, w: &'a [u8], start: usize, end: usize, h: &Head<'a>) -> R<()> {
        // The decoder shares one node for all `True`s (and `False`s).
        self.created += usize::from(!matches!(h, Head::Bool(_)));
        self.visits += 1;
        self.scalar_end(w, start, end, h)
    }

    /// The `MEMOIZE`s after a scalar read from `start` to `end` of window `w`, and the
    /// cursor stored.
    #[inline(always)]
    fn scalar_end(&mut self, w: &'a [u8], start: usize, mut end: usize, h: &Head<'a>) -> R<()> {
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
    fn fast_float(&mut self) -> R<Option<f64>> {
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
    fn fast_int(&mut self) -> R<Option<i64>> {
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
    fn fast_str(&mut self) -> R<Option<&'a str>> {
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
    fn head(&mut self) -> R<Head<'a>> {
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
    fn head_slow(&mut self) -> R<Head<'a>> {
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
    fn hinted_head(&mut self, code: u8, kind: u64) -> R<Head<'a>> {
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
    fn text(&mut self, b: &'a [u8]) -> R<Head<'a>> {
        match utf8(b) {
            Some(s) => Ok(Head::Str(s)),
            None => surrogates(b),
        }
    }

    /// A Python 2 `str`: ASCII only, as the decoder reads it.
    fn py2_str(&mut self, b: &'a [u8]) -> R<Head<'a>> {
        if !b.is_ascii() {
            return Err(Bail);
        }
        utf8(b).map(Head::Str).ok_or(Bail)
    }

    fn bytes(&mut self, n: usize) -> R<Head<'a>> {
        Ok(Head::Bytes(self.take(n)?))
    }

    fn long(&mut self, b: &[u8]) -> Head<'a> {
        match BigInt::from_le_twos_complement(b) {
            Int::Small(i) => Head::Int(i),
            Int::Big(big) => {
                self.bigs.push(Wide::of(&big));
                Head::Big((self.bigs.len() - 1) as u32)
            }
        }
    }

    fn big(&self, i: u32) -> R<&Wide> {
        self.bigs.get(i as usize).ok_or(Bail)
    }

    /// Skips one value, whatever it holds, without recursion.
    fn skip(&mut self) -> R<()> {
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

    fn skip_items(&mut self, stack: &mut Vec<Body>) -> R<()> {
        while let Some(top) = stack.last_mut() {
            match top.step(self)? {
                Step::End => {
                    stack.pop();
                }
                Step::Item => match self.head()? {
                    Head::Seq(kind, n) => stack.push(Body::new(kind, n)),
                    Head::Map(kind) => stack.push(Body::new(kind, 0)),
                    _ => {}
                },
            }
        }
        Ok(())
    }

    /// How many items the first batch of a list, set or dict just opened holds (for a
    /// dict, keys and values), when that is cheap to see: `MARK`, then a run of one
    /// fixed-size scalar opcode (floats, small ints), then `close`. A size hint, nothing
    /// relies on it; other batches get none.
    fn scan_items(&self, close: u8) -> Option<usize> {
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

    fn visit_seq<V: Visitor<'a>>(&mut self, body: Body, len: Option<usize>, visitor: V) -> R<V::Value> {
        self.enter()?;
        let mut seq = Seq { st: &mut *self, body, len, count: 0 };
        let out = visitor.visit_seq(&mut seq)?;
        seq.finish()?;
        self.depth -= 1;
        Ok(out)
    }

    fn visit_map<V: Visitor<'a>>(&mut self, body: Body, visitor: V) -> R<V::Value> {
        self.enter()?;
        let mut map = Map { st: &mut *self, body };
        let out = visitor.visit_map(&mut map)?;
        if map.body.step(map.st)? != Step::End {
            return Err(Bail);
        }
        self.depth -= 1;
        Ok(out)
    }
}

/// The scalar whose opcode is at `off`, read again for a `GET` (the opcode was read and
/// checked once already; only short ones are read again, see [`SHORT_OP`]).
fn scalar_at<'a>(b: &'a [u8], off: usize) -> Option<Head<'a>> {
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
fn utf8(b: &[u8]) -> Option<&str> {
    match b.utf8_chunks().next() {
        Some(chunk) if chunk.invalid().is_empty() && chunk.valid().len() == b.len() => Some(chunk.valid()),
        Some(_) => None,
        None => Some(""),
    }
}

fn is_memo(code: u8) -> bool {
    matches!(code, op::BINPUT | op::LONG_BINPUT | op::MEMOIZE)
}

#[cold]
fn surrogates<'a>(b: &[u8]) -> R<Head<'a>> {
    if PyStr::from_surrogatepass(b).is_some() { Ok(Head::Surrogates) } else { Err(Bail) }
}

// ----- containers -----

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
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
enum Step {
    /// An item (for a dict: a key or a value) starts here.
    Item,
    /// The container ended (its closing opcodes were read).
    End,
}

const NO_ITEM: usize = usize::MAX;

/// Where reading a container's items is (shared by serde's accessors and the skipper).
#[derive(Clone, Copy)]
struct Body {
    kind: Kind,
    /// Inside a `MARK … APPENDS/SETITEMS/ADDITEMS` batch.
    batch: bool,
    /// A dict's key was read: its value is next.
    value_next: bool,
    /// The pending dict entry is a single `k v SETITEM`.
    single: bool,
    done: bool,
    /// The opcode that must follow the item being read (`APPEND`, `SETITEM`), or 0.
    after: u8,
    /// A `Kind::Tuple`'s length.
    n: u8,
    /// Items read (a dict's entries).
    count: u32,
    /// Where the item being read started, or [`NO_ITEM`].
    item_at: usize,
    /// The state the inline [`Body::step`] handles, one of the `FAST_` values: inside a
    /// batch, nothing owed. Derived from the fields above.
    fast: u8,
}

const FAST_NONE: u8 = 0;
const FAST_LIST: u8 = 1;
const FAST_SET: u8 = 2;
const FAST_DICT_KEY: u8 = 3;
const FAST_DICT_VALUE: u8 = 4;

impl Body {
    /// A container just opened; `n` is a `Kind::Tuple`'s length.
    fn new(kind: Kind, n: u8) -> Body {
        Body {
            kind,
            batch: false,
            value_next: false,
            single: false,
            done: false,
            after: 0,
            n,
            count: 0,
            item_at: NO_ITEM,
            fast: FAST_NONE,
        }
    }

    /// What `fast` is for the other fields.
    fn fast_state(&self) -> u8 {
        if self.done || !self.batch || self.after != 0 {
            return FAST_NONE;
        }
        match self.kind {
            Kind::List => FAST_LIST,
            Kind::Set => FAST_SET,
            Kind::Dict if self.value_next => FAST_DICT_VALUE,
            Kind::Dict => FAST_DICT_KEY,
            _ => FAST_NONE,
        }
    }

    /// Read as a tuple (`deserialize_tuple` takes a list or a tuple, not a set).
    fn tuple_like(&self) -> bool {
        !matches!(self.kind, Kind::Set | Kind::MarkFrozenSet)
    }

    /// The length when the opcodes fixed it already.
    fn fixed_len(&self) -> Option<usize> {
        match self.kind {
            Kind::Tuple => Some(usize::from(self.n)),
            Kind::EmptyTuple => Some(0),
            _ => None,
        }
    }

    fn size_hint(&self, st: &Stream<'_>) -> Option<usize> {
        if self.done {
            return Some(0);
        }
        match self.kind {
            Kind::Tuple => Some(usize::from(self.n).saturating_sub(self.count as usize)),
            Kind::EmptyTuple => Some(0),
            _ if self.count > 0 || self.batch => None,
            Kind::List => st.scan_items(op::APPENDS),
            Kind::Set => st.scan_items(op::ADDITEMS),
            Kind::Dict => st.scan_items(op::SETITEMS).map(|n| n / 2),
            _ => None,
        }
    }

    #[inline(always)]
    fn item(&mut self, pos: usize) -> Step {
        self.item_at = pos;
        Step::Item
    }

    /// An item of a list, set or tuple (not a dict: its entries count at their keys).
    #[inline(always)]
    fn counted_item(&mut self, pos: usize) -> Step {
        self.count += 1;
        self.item(pos)
    }

    #[inline(always)]
    fn end(&mut self, st: &mut Stream<'_>) -> Step {
        self.done = true;
        st.nesting -= 1;
        Step::End
    }

    /// Advances to the next item or the end. The item before, if any, must have been
    /// read whole.
    #[inline(always)]
    fn step(&mut self, st: &mut Stream<'_>) -> R<Step> {
        if self.fast == FAST_NONE
            && !self.batch
            && self.item_at == NO_ITEM
            && !self.done
            && matches!(self.kind, Kind::List | Kind::Dict | Kind::Set)
            && st.hints.is_empty()
        {
            // A batch opening right after its container (and the container's `MEMOIZE`).
            let pos = st.pos;
            let w = st.window;
            let at = if w.get(pos) == Some(&op::MEMOIZE) { pos + 1 } else { pos };
            if w.get(at) == Some(&op::MARK) {
                if at > pos {
                    st.memo_container(op::MEMOIZE)?;
                }
                st.bump();
                st.open_mark()?;
                self.batch = true;
                self.fast = self.fast_state();
            }
        }
        // The common cases inline: the next item of a batch, and the end of a container
        // after its only batch.
        if self.fast != FAST_NONE {
            let pos = st.pos;
            if pos != self.item_at
                && let Some(&code) = st.window.get(pos)
                && code != op::FRAME
                && code != op::PROTO
            {
                let close = match self.fast {
                    FAST_LIST => op::APPENDS,
                    FAST_SET => op::ADDITEMS,
                    FAST_DICT_KEY => op::SETITEMS,
                    _ => {
                        // A dict's value.
                        self.fast = FAST_DICT_KEY;
                        self.value_next = false;
                        self.item_at = pos;
                        return Ok(Step::Item);
                    }
                };
                if code != close {
                    if self.fast == FAST_DICT_KEY {
                        self.fast = FAST_DICT_VALUE;
                        self.value_next = true;
                    }
                    self.count += 1;
                    self.item_at = pos;
                    return Ok(Step::Item);
                }
                // The batch closes; unless a memo opcode or another batch follows (or
                // the plan may have something to say), the container ends.
                if st.hints.is_empty()
                    && let Some(&next) = st.window.get(pos + 1)
                    && !is_memo(next)
                    && !matches!(next, op::MARK | op::FRAME | op::PROTO)
                {
                    st.pos = pos + 1;
                    st.marks -= 1;
                    self.batch = false;
                    self.fast = FAST_NONE;
                    return Ok(self.end(st));
                }
            }
        }
        let out = self.step_slow(st);
        self.fast = self.fast_state();
        out
    }

    #[inline(never)]
    fn step_slow(&mut self, st: &mut Stream<'_>) -> R<Step> {
        if self.done {
            return Ok(Step::End);
        }
        if self.item_at != NO_ITEM {
            if st.pos == self.item_at {
                return Err(Bail); // nothing read it: positions would drift
            }
            self.item_at = NO_ITEM;
            if self.after != 0 {
                st.expect(self.after)?;
                self.after = 0;
            }
        }
        loop {
            let code = st.peek_op()?;
            let pos = st.pos;
            match self.kind {
                Kind::List | Kind::Set => {
                    let close = if self.kind == Kind::List { op::APPENDS } else { op::ADDITEMS };
                    if self.batch {
                        if code == close {
                            st.bump();
                            st.marks -= 1;
                            self.batch = false;
                            continue;
                        }
                        return Ok(self.counted_item(pos));
                    }
                    if is_memo(code) {
                        st.memo_container(code)?;
                    } else if code == op::MARK && !st.mark_begins_container(pos) {
                        st.bump();
                        st.open_mark()?;
                        self.batch = true;
                    } else if self.kind == Kind::List && st.take_hint(pos, H_APPEND)? {
                        self.after = op::APPEND;
                        return Ok(self.counted_item(pos));
                    } else {
                        return Ok(self.end(st));
                    }
                }
                Kind::Dict => {
                    if self.value_next {
                        self.value_next = false;
                        if self.single {
                            self.single = false;
                            self.after = op::SETITEM;
                        }
                        return Ok(self.item(pos));
                    }
                    if self.batch {
                        if code == op::SETITEMS {
                            st.bump();
                            st.marks -= 1;
                            self.batch = false;
                            continue;
                        }
                        self.value_next = true;
                        return Ok(self.counted_item(pos));
                    }
                    if is_memo(code) {
                        st.memo_container(code)?;
                    } else if code == op::MARK && !st.mark_begins_container(pos) {
                        st.bump();
                        st.open_mark()?;
                        self.batch = true;
                    } else if st.take_hint(pos, H_SETITEM)? {
                        self.single = true;
                        self.value_next = true;
                        return Ok(self.counted_item(pos));
                    } else {
                        return Ok(self.end(st));
                    }
                }
                Kind::Tuple => {
                    if self.count < u32::from(self.n) {
                        return Ok(self.counted_item(pos));
                    }
                    st.expect(op::TUPLE1 + self.n - 1)?;
                    st.created += 1;
                    st.after_container()?;
                    return Ok(self.end(st));
                }
                Kind::EmptyTuple => {
                    st.after_container()?;
                    return Ok(self.end(st));
                }
                Kind::MarkTuple | Kind::MarkFrozenSet | Kind::MarkList => {
                    let close = match self.kind {
                        Kind::MarkTuple => op::TUPLE,
                        Kind::MarkList => op::LIST,
                        _ => op::FROZENSET,
                    };
                    if code != close {
                        return Ok(self.counted_item(pos));
                    }
                    st.bump();
                    st.marks -= 1;
                    // `MARK TUPLE` with no items is the decoder's shared empty tuple.
                    if self.kind != Kind::MarkTuple || self.count > 0 {
                        st.created += 1;
                    }
                    if self.kind == Kind::MarkList {
                        self.kind = Kind::List;
                        continue;
                    }
                    st.after_container()?;
                    return Ok(self.end(st));
                }
                Kind::MarkDict => {
                    if self.value_next {
                        self.value_next = false;
                        return Ok(self.item(pos));
                    }
                    if code != op::DICT {
                        self.value_next = true;
                        return Ok(self.counted_item(pos));
                    }
                    st.bump();
                    st.marks -= 1;
                    st.created += 1;
                    self.kind = Kind::Dict;
                }
            }
        }
    }
}

/// serde's view of a list, tuple, set or frozenset.
struct Seq<'s, 'a> {
    st: &'s mut Stream<'a>,
    body: Body,
    /// The length `deserialize_tuple` demands.
    len: Option<usize>,
    count: usize,
}

impl Seq<'_, '_> {
    /// After the visitor: every item was read, and there were `len` of them.
    fn finish(&mut self) -> R<()> {
        if self.body.step(self.st)? != Step::End || self.len.is_some_and(|n| n != self.count) {
            return Err(Bail);
        }
        Ok(())
    }
}

impl<'a> de::SeqAccess<'a> for Seq<'_, 'a> {
    type Error = Bail;

    #[inline(always)]
    fn next_element_seed<T: DeserializeSeed<'a>>(&mut self, seed: T) -> R<Option<T::Value>> {
        match self.body.step(self.st)? {
            Step::End => {
                if self.len.is_some_and(|n| n != self.count) {
                    return Err(Bail);
                }
                Ok(None)
            }
            Step::Item => {
                if let Some(n) = self.len {
                    if n == self.count {
                        return Err(Bail);
                    }
                    self.count += 1;
                }
                seed.deserialize(&mut *self.st).map(Some)
            }
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.body.size_hint(self.st)
    }
}

/// serde's view of a dict.
struct Map<'s, 'a> {
    st: &'s mut Stream<'a>,
    body: Body,
}

impl<'a> de::MapAccess<'a> for Map<'_, 'a> {
    type Error = Bail;

    #[inline(always)]
    fn next_key_seed<K: DeserializeSeed<'a>>(&mut self, seed: K) -> R<Option<K::Value>> {
        if self.body.value_next {
            return Err(Bail);
        }
        match self.body.step(self.st)? {
            Step::End => Ok(None),
            Step::Item => seed.deserialize(&mut *self.st).map(Some),
        }
    }

    #[inline(always)]
    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> R<V::Value> {
        if !self.body.value_next || self.body.step(self.st)? != Step::Item {
            return Err(Bail);
        }
        seed.deserialize(&mut *self.st)
    }

    fn size_hint(&self) -> Option<usize> {
        self.body.size_hint(self.st)
    }
}

/// An enum written as its variant's name.
struct NameEnum<'s, 'a> {
    st: &'s mut Stream<'a>,
}

impl<'s, 'a> de::EnumAccess<'a> for NameEnum<'s, 'a> {
    type Error = Bail;
    type Variant = NameVariant;

    fn variant_seed<T: DeserializeSeed<'a>>(self, seed: T) -> R<(T::Value, NameVariant)> {
        Ok((seed.deserialize(self.st)?, NameVariant))
    }
}

struct NameVariant;

impl<'a> de::VariantAccess<'a> for NameVariant {
    type Error = Bail;

    fn unit_variant(self) -> R<()> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'a>>(self, _seed: T) -> R<T::Value> {
        Err(Bail)
    }

    fn tuple_variant<V: Visitor<'a>>(self, _len: usize, _visitor: V) -> R<V::Value> {
        Err(Bail)
    }

    fn struct_variant<V: Visitor<'a>>(self, _fields: &'static [&'static str], _visitor: V) -> R<V::Value> {
        Err(Bail)
    }
}

/// An enum written as `{name: content}`.
struct DictEnum<'s, 'a> {
    st: &'s mut Stream<'a>,
    body: &'s mut Body,
}

impl<'s, 'a> de::EnumAccess<'a> for DictEnum<'s, 'a> {
    type Error = Bail;
    type Variant = &'s mut Stream<'a>;

    fn variant_seed<T: DeserializeSeed<'a>>(self, seed: T) -> R<(T::Value, &'s mut Stream<'a>)> {
        let name = seed.deserialize(&mut *self.st)?;
        if self.body.step(self.st)? != Step::Item {
            return Err(Bail);
        }
        Ok((name, self.st))
    }
}

/// The content of a `{name: content}` enum.
impl<'a> de::VariantAccess<'a> for &mut Stream<'a> {
    type Error = Bail;

    fn unit_variant(self) -> R<()> {
        de::Deserialize::deserialize(self)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'a>>(self, seed: T) -> R<T::Value> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'a>>(self, len: usize, visitor: V) -> R<V::Value> {
        de::Deserializer::deserialize_tuple(self, len, visitor)
    }

    fn struct_variant<V: Visitor<'a>>(self, fields: &'static [&'static str], visitor: V) -> R<V::Value> {
        de::Deserializer::deserialize_struct(self, "", fields, visitor)
    }
}

// ----- the serde Deserializer: the same visitor calls as `de.rs` -----

macro_rules! de_int {
    ($($method:ident $ty:ident $visit:ident;)*) => {$(
        #[inline]
        fn $method<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
            if let Some(i) = self.fast_int()? {
                return visitor.$visit($ty::try_from(i).map_err(|_| Bail)?);
            }
            let h = self.head()?;
            self.visits += 1;
            let v = match h {
                Head::Int(i) => $ty::try_from(i).ok(),
                Head::Big(i) => match self.big(i)?.int {
                    Some(Int128::Signed(x)) => $ty::try_from(x).ok(),
                    Some(Int128::Unsigned(x)) => $ty::try_from(x).ok(),
                    None => None,
                },
                _ => None,
            };
            visitor.$visit(v.ok_or(Bail)?)
        }
    )*};
}

impl<'a> de::Deserializer<'a> for &mut Stream<'a> {
    type Error = Bail;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        let h = self.head()?;
        self.visits += 1;
        match h {
            Head::None => visitor.visit_unit(),
            Head::Bool(b) => visitor.visit_bool(b),
            Head::Int(i) => match u64::try_from(i) {
                Ok(u) => visitor.visit_u64(u),
                Err(_) => visitor.visit_i64(i),
            },
            Head::Big(i) => match self.big(i)?.int {
                Some(Int128::Signed(x)) => match u64::try_from(x) {
                    Ok(u) => visitor.visit_u64(u),
                    Err(_) => visitor.visit_i128(x),
                },
                Some(Int128::Unsigned(x)) => visitor.visit_u128(x),
                None => Err(Bail),
            },
            Head::Float(x) => visitor.visit_f64(x),
            Head::Str(s) => {
                // `de.rs` reads the node again through `deserialize_str`.
                self.visits += 1;
                visitor.visit_borrowed_str(s)
            }
            Head::Surrogates => Err(Bail),
            Head::Bytes(b) => visitor.visit_borrowed_bytes(b),
            Head::Seq(kind, n) => self.visit_seq(Body::new(kind, n), None, visitor),
            Head::Map(kind) => self.visit_map(Body::new(kind, 0), visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        if let Some((w, p)) = self.fast_start()
            && let Some(&code @ (op::NEWTRUE | op::NEWFALSE)) = w.get(p)
        {
            let b = code == op::NEWTRUE;
            self.fast_end(w, p, p + 1, &Head::Bool(b))?;
            return visitor.visit_bool(b);
        }
        let h = self.head()?;
        self.visits += 1;
        match h {
            Head::Bool(b) => visitor.visit_bool(b),
            _ => Err(Bail),
        }
    }

    de_int! {
        deserialize_i8 i8 visit_i8;
        deserialize_i16 i16 visit_i16;
        deserialize_i32 i32 visit_i32;
        deserialize_i64 i64 visit_i64;
        deserialize_u8 u8 visit_u8;
        deserialize_u16 u16 visit_u16;
        deserialize_u32 u32 visit_u32;
        deserialize_u64 u64 visit_u64;
        deserialize_i128 i128 visit_i128;
        deserialize_u128 u128 visit_u128;
    }

    fn deserialize_f32<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        if let Some(x) = self.fast_float()? {
            return visitor.visit_f64(x);
        }
        let h = self.head()?;
        self.visits += 1;
        match h {
            Head::Float(x) => visitor.visit_f64(x),
            Head::Int(i) => {
                let f = i as f32;
                if f as i128 != i128::from(i) {
                    return Err(Bail);
                }
                visitor.visit_f32(f)
            }
            Head::Big(i) => visitor.visit_f32(self.big(i)?.f32.ok_or(Bail)?),
            _ => Err(Bail),
        }
    }

    #[inline(always)]
    fn deserialize_f64<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        if let Some(x) = self.fast_float()? {
            return visitor.visit_f64(x);
        }
        let h = self.head()?;
        self.visits += 1;
        match h {
            Head::Float(x) => visitor.visit_f64(x),
            Head::Int(i) => {
                let f = i as f64;
                if f as i128 != i128::from(i) {
                    return Err(Bail);
                }
                visitor.visit_f64(f)
            }
            Head::Big(i) => visitor.visit_f64(self.big(i)?.f64.ok_or(Bail)?),
            _ => Err(Bail),
        }
    }

    fn deserialize_char<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        self.deserialize_str(visitor)
    }

    #[inline(always)]
    fn deserialize_str<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        if let Some(s) = self.fast_str()? {
            return visitor.visit_borrowed_str(s);
        }
        let h = self.head()?;
        self.visits += 1;
        match h {
            Head::Str(s) => visitor.visit_borrowed_str(s),
            _ => Err(Bail),
        }
    }

    #[inline(always)]
    fn deserialize_string<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        match self.head()? {
            Head::Bytes(b) => {
                self.visits += 1;
                visitor.visit_borrowed_bytes(b)
            }
            // Byte-buffer visitors also take a sequence of ints or a str.
            h => {
                self.pending = Some(h);
                self.deserialize_any(visitor)
            }
        }
    }

    fn deserialize_byte_buf<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        match self.head()? {
            Head::None => {
                self.visits += 1;
                visitor.visit_none()
            }
            h => {
                self.pending = Some(h);
                let out = visitor.visit_some(&mut *self)?;
                // The content was read (a visitor may not read it at all).
                if self.pending.is_some() {
                    return Err(Bail);
                }
                Ok(out)
            }
        }
    }

    fn deserialize_unit<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        let h = self.head()?;
        self.visits += 1;
        match h {
            Head::None => visitor.visit_unit(),
            _ => Err(Bail),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(self, _name: &'static str, visitor: V) -> R<V::Value> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(self, _name: &'static str, visitor: V) -> R<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    #[inline(always)]
    fn deserialize_seq<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        let h = self.head()?;
        self.visits += 1;
        match h {
            Head::Seq(kind, n) => self.visit_seq(Body::new(kind, n), None, visitor),
            _ => Err(Bail),
        }
    }

    fn deserialize_tuple<V: Visitor<'a>>(self, len: usize, visitor: V) -> R<V::Value> {
        let h = self.head()?;
        self.visits += 1;
        let Head::Seq(kind, n) = h else {
            return Err(Bail);
        };
        let body = Body::new(kind, n);
        // A known length that differs fails at once (`Seq` would find it at the end).
        if !body.tuple_like() || body.fixed_len().is_some_and(|n| n != len) {
            return Err(Bail);
        }
        self.visit_seq(body, Some(len), visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(self, _name: &'static str, len: usize, visitor: V) -> R<V::Value> {
        self.deserialize_tuple(len, visitor)
    }

    #[inline(always)]
    fn deserialize_map<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        let h = self.head()?;
        self.visits += 1;
        match h {
            Head::Map(kind) => self.visit_map(Body::new(kind, 0), visitor),
            _ => Err(Bail),
        }
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> R<V::Value> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> R<V::Value> {
        match self.head()? {
            // The name is counted as a visit when it is read as the identifier.
            h @ (Head::Str(_) | Head::Surrogates) => {
                self.pending = Some(h);
                let out = visitor.visit_enum(NameEnum { st: &mut *self })?;
                if self.pending.is_some() {
                    return Err(Bail); // the name was not read
                }
                Ok(out)
            }
            Head::Map(kind) => {
                let mut body = Body::new(kind, 0);
                self.visits += 1;
                self.enter()?;
                if body.step(self)? != Step::Item {
                    return Err(Bail); // an empty dict
                }
                let out = visitor.visit_enum(DictEnum { st: &mut *self, body: &mut body })?;
                // Exactly one entry, read whole.
                if body.step(self)? != Step::End {
                    return Err(Bail);
                }
                self.depth -= 1;
                Ok(out)
            }
            _ => Err(Bail),
        }
    }

    #[inline(always)]
    fn deserialize_identifier<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, visitor: V) -> R<V::Value> {
        self.skip()?;
        self.visits += 1;
        visitor.visit_unit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hints(bytes: &[u8]) -> Option<Vec<(usize, u64)>> {
        let mut s = Scratch::new();
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
