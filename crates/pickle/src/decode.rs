//! Decoder: pickle bytes → [`Value`], a stack machine over all 68 opcodes.
//!
//! Invariants: the decoder never imports or executes anything; it allocates at most a
//! constant amount per input byte (declared lengths are checked against the remaining
//! input before anything is allocated; `DUP` and `GET` push an id, never a copy); and it
//! never recurses. Semantics follow CPython's C unpickler (`_pickle.c`), with the
//! framing rules of the pure-Python `pickle.py` (an opcode may not straddle a frame's
//! end). Globals in protocol 0–2 pickles get their Python 3 names, as CPython's
//! `fix_imports` gives them. The built-in types CPython writes through `REDUCE` before
//! protocols 3–5 (`bytes`, `bytearray`, `set`, `frozenset`) come back as native nodes.

use std::cell::Cell;
use std::collections::HashMap;

use super::compat;
use super::int::{BigInt, Int};
use super::native::{self, How, Made};
use super::opcodes as op;
use super::pyhash::{self, Hashable};
use super::value::{Construct, Global, INLINE_STR, Node, NodeId, Object, ObjectOp, PyStr, Value, push_code_point};
use crate::error::{DecodeErrorKind as Kind, Error, Result};

/// Limits on what a pickle may make the decoder do. Every limit fails with
/// [`crate::DecodeErrorKind::Limit`] naming it; none is needed for memory safety
/// (memory is linear in the input whatever they are), they bound the constant.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Most MARKs open at once (default 100,000; CPython's own pickler cannot nest
    /// deeper than its recursion limit, 1,000 by default).
    pub max_marks: usize,
    /// Most nesting of containers and objects in the decoded value (default 100,000).
    /// Checked after decoding when the value holds that many containers, so that code
    /// which walks values recursively can rely on it.
    pub max_depth: usize,
    /// Most digits of an int written as decimal text (protocol 0): 4,300, CPython's
    /// default `sys.get_int_max_str_digits()`.
    pub max_int_digits: usize,
}

/// The default [`Limits`].
pub const DEFAULT_LIMITS: Limits = Limits { max_marks: 100_000, max_depth: 100_000, max_int_digits: 4300 };

impl Default for Limits {
    fn default() -> Self {
        DEFAULT_LIMITS
    }
}

impl Limits {
    /// Sets [`Limits::max_marks`].
    pub fn max_marks(mut self, n: usize) -> Self {
        self.max_marks = n;
        self
    }
    /// Sets [`Limits::max_depth`].
    pub fn max_depth(mut self, n: usize) -> Self {
        self.max_depth = n;
        self
    }
    /// Sets [`Limits::max_int_digits`].
    pub fn max_int_digits(mut self, n: usize) -> Self {
        self.max_int_digits = n;
        self
    }
}

/// Decodes pickle bytes (any protocol 0–5) with the default [`Limits`].
///
/// Bytes after the `STOP` opcode are ignored, as CPython's `pickle.loads` ignores them.
///
/// ```
/// // pickle.dumps([1, "a", b"\x00"], protocol=2)
/// let v = pickleshelf_pickle::decode(b"\x80\x02]q\x00(K\x01X\x01\x00\x00\x00aq\x01c_codecs\nencode\nq\x02X\x01\x00\x00\x00\x00q\x03X\x06\x00\x00\x00latin1q\x04\x86q\x05Rq\x06e.")?;
/// assert_eq!(v.to_string(), "[1, 'a', b'\\x00']");
/// # Ok::<(), pickleshelf_pickle::Error>(())
/// ```
///
/// # Errors
/// [`Error::Decode`] with the byte offset and what was wrong.
pub fn decode(bytes: &[u8]) -> Result<Value> {
    decode_with(bytes, &DEFAULT_LIMITS)
}

/// Decodes pickle bytes with the given [`Limits`].
///
/// # Errors
/// [`Error::Decode`] with the byte offset and what was wrong.
pub fn decode_with(bytes: &[u8], limits: &Limits) -> Result<Value> {
    run::<false>(bytes, limits)
}

/// Checks that `bytes` decode, without keeping what they hold: the same errors as
/// [`decode`] (same offsets and kinds), in memory proportional to the number of
/// containers and items rather than to the numbers (a list of a million floats holds a
/// million 4-byte ids, not a million 32-byte nodes).
///
/// ```
/// use pickleshelf_pickle as pickle;
///
/// let bytes = pickle::to_vec(&vec![0.5f64; 1000])?;
/// pickle::check(&bytes)?;
/// assert!(pickle::check(&bytes[..bytes.len() - 1]).is_err());
/// # Ok::<(), pickleshelf_pickle::Error>(())
/// ```
///
/// # Errors
/// [`Error::Decode`] with the byte offset and what was wrong.
pub fn check(bytes: &[u8]) -> Result<()> {
    check_with(bytes, &DEFAULT_LIMITS)
}

/// [`check`] with the given [`Limits`].
///
/// # Errors
/// [`Error::Decode`] with the byte offset and what was wrong.
pub fn check_with(bytes: &[u8], limits: &Limits) -> Result<()> {
    run::<true>(bytes, limits).map(drop)
}

/// Decodes (or, with `CHECK`, only checks; see [`Decoder`]) `bytes`.
fn run<const CHECK: bool>(bytes: &[u8], limits: &Limits) -> Result<Value> {
    let mut d = Decoder::<CHECK>::new(bytes, limits, Scratch::take());
    let root = d.run();
    let Decoder { mut nodes, stack, marks, memo, op_start, pos, containers, mut keyed, .. } = d;
    let out = (|| {
        let root = root.map_err(|kind| Error::Decode { offset: op_start, kind })?;
        trim(&mut nodes);
        let mut value = Value::from_parts_unchecked(nodes, root);
        if containers >= limits.max_depth && depth_exceeds(&value, limits.max_depth) {
            return Err(Error::Decode {
                offset: pos,
                kind: Kind::Limit { limit: "max_depth", value: limits.max_depth as u64 },
            });
        }
        if !CHECK && !keyed.is_empty() {
            keyed.sort_unstable();
            keyed.dedup();
            remove_repeated_keys(&mut value, &keyed);
        }
        Ok(value)
    })();
    Scratch { stack, marks, memo: memo.dense, keyed }.keep();
    out
}

/// Gives the dicts and sets that received two or more keys CPython's content: a key
/// set again (or one equal to it, `1 == 1.0 == True`) keeps its first key object and
/// place and takes the value set last; a repeated set element is dropped. This is done
/// once all nodes exist, which gives what doing it at each opcode would: nothing during
/// decoding depends on a dict's or set's size, and equality of the keys (tuples,
/// frozensets, numbers, strs) cannot change after they are made.
pub(crate) fn remove_repeated_keys(value: &mut Value, keyed: &[u32]) {
    for &id in keyed {
        let id = NodeId(id);
        // Most dicts and sets repeat nothing: that is seen from the nodes as they are.
        let repeats = match value.get(id) {
            Some(Node::Dict(pairs)) => pyhash::may_repeat(value.nodes(), pairs.iter().map(|p| p.0)),
            Some(Node::Set(items) | Node::FrozenSet(items)) => pyhash::may_repeat(value.nodes(), items.iter().copied()),
            _ => false,
        };
        if !repeats {
            continue;
        }
        let mut node = std::mem::replace(value.node_mut(id), Node::None);
        match &mut node {
            Node::Dict(pairs) => {
                pyhash::dedup_pairs(value.nodes(), pairs);
            }
            Node::Set(items) | Node::FrozenSet(items) => {
                pyhash::dedup_items(value.nodes(), items);
            }
            _ => {}
        }
        *value.node_mut(id) = node;
    }
}

/// The decoder's working buffers (stack, MARKs, memo), kept per thread from one
/// decode to the next: decoding many small pickles then allocates only what the
/// values keep (three allocations fewer for a W1 record).
#[derive(Default)]
struct Scratch {
    stack: Vec<NodeId>,
    marks: Vec<usize>,
    memo: Vec<u32>,
    keyed: Vec<u32>,
}

thread_local! {
    static SCRATCH: Cell<Option<Scratch>> = const { Cell::new(None) };
}

/// Buffers of more entries than this are freed, not kept.
const SCRATCH_KEEP: usize = 1 << 12;

impl Scratch {
    /// This thread's buffers (empty), or new ones.
    fn take() -> Scratch {
        SCRATCH.try_with(Cell::take).ok().flatten().unwrap_or_default()
    }

    /// Keeps the buffers for this thread's next decode, unless they are large.
    fn keep(self) {
        fn cleared<T>(mut v: Vec<T>) -> Vec<T> {
            if v.capacity() > SCRATCH_KEEP {
                return Vec::new();
            }
            v.clear();
            v
        }
        let kept = Scratch {
            stack: cleared(self.stack),
            marks: cleared(self.marks),
            memo: cleared(self.memo),
            keyed: cleared(self.keyed),
        };
        let _ = SCRATCH.try_with(|c| c.set(Some(kept)));
    }
}

type R<T> = std::result::Result<T, Kind>;

/// The arena's first capacity for an input of `len` bytes: one node per two bytes (a
/// list of small ints, the densest common pickle, takes two bytes per node), at most
/// 2^18 nodes (8 MiB); beyond that it grows. Growing a big arena means copying it,
/// which took a sixth of the time of decoding a list of 100,000 small ints. A larger
/// first request (32 MiB) was above glibc's largest mmap threshold, so every decode
/// of a big pickle got fresh pages from the kernel: W4's floats took 3 times longer.
fn node_capacity(len: usize) -> usize {
    (len / 2).clamp(4, 1 << 18)
}

/// The arena's capacity is trimmed to its length when more than a fifth of it (and
/// more than 16 nodes) is unused: values are kept (in caches, by callers), and
/// encoding 20,000 decoded W1 records ran twice as fast on trimmed arenas, which take
/// a quarter of the memory.
fn trim(nodes: &mut Vec<Node>) {
    let (cap, len) = (nodes.capacity(), nodes.len());
    if cap - len > 16 && cap - len > cap / 5 {
        nodes.shrink_to_fit();
    }
}

const NO_ENTRY: u32 = u32::MAX;

/// The memo: dense while indices come in order (as every pickler writes them), a map
/// for the rest, so a huge index costs one entry, not an array that long.
struct Memo {
    dense: Vec<u32>,
    sparse: HashMap<u64, NodeId>,
    count: u64,
    /// Capacity `dense` gets on first use (from the input's length), so that it does
    /// not grow step by step.
    first_capacity: usize,
}

impl Memo {
    /// A memo that uses `dense` (empty) for its first entries.
    fn new(input_len: usize, dense: Vec<u32>) -> Memo {
        Memo { dense, sparse: HashMap::new(), count: 0, first_capacity: (input_len / 8).clamp(8, 1 << 14) }
    }

    #[inline]
    fn put(&mut self, idx: u64, id: NodeId) {
        let i = idx as usize;
        if idx < self.dense.len() as u64 {
            if self.dense[i] == NO_ENTRY {
                self.count += 1;
            }
            self.dense[i] = id.0;
        } else if idx == self.dense.len() as u64 && self.sparse.is_empty() {
            if self.dense.capacity() == 0 {
                self.dense.reserve_exact(self.first_capacity);
            }
            self.dense.push(id.0);
            self.count += 1;
        } else if self.sparse.insert(idx, id).is_none() {
            self.count += 1;
        }
    }

    #[inline]
    fn get(&self, idx: u64) -> Option<NodeId> {
        match self.dense.get(idx as usize) {
            Some(&v) if v != NO_ENTRY => Some(NodeId(v)),
            _ => self.sparse.get(&idx).copied(),
        }
    }
}

/// With `CHECK`, the decoder only checks: every `i64` int and every float is the one
/// shared placeholder node of its kind, so checking a list of a million floats keeps a
/// million ids, not a million nodes. Nothing else changes — no opcode looks inside an int
/// or a float, while `bytes` are kept because REDUCE's copy budget counts their lengths —
/// so it accepts and refuses exactly what decoding does, with the same errors.
struct Decoder<'a, const CHECK: bool = false> {
    input: &'a [u8],
    pos: usize,
    /// Offset of the opcode being executed (for errors).
    op_start: usize,
    /// End of the current protocol-4 frame, while reading inside one.
    frame_end: Option<usize>,
    /// The input up to where reading must stop for now: `frame_end`, else the end.
    /// `pos <= window.len()` always holds.
    window: &'a [u8],
    nodes: Vec<Node>,
    stack: Vec<NodeId>,
    marks: Vec<usize>,
    memo: Memo,
    proto: u8,
    limits: &'a Limits,
    /// Containers and objects made so far (bounds the nesting depth).
    containers: usize,
    /// Out-of-band buffers referenced so far.
    buffers: u32,
    interned: [Option<NodeId>; 6],
    /// Items and bytes that calls of built-in types copied out of their arguments so
    /// far (at most twice the input's length; see [`Decoder::reduce`]).
    copied: usize,
    /// Tuples and frozensets known to be hashable.
    hashable: Hashable,
    /// Dicts, sets and frozensets that may repeat a key (see [`Decoder::keyed`]): the
    /// ones [`remove_repeated_keys`] looks at, perhaps more than once each.
    keyed: Vec<u32>,
    /// The keys of the last small dict found to repeat none (the first `.1` of them).
    distinct_keys: ([NodeId; DISTINCT_KEYS], u8),
}

/// Dicts of up to this many keys have their keys remembered (see
/// [`Decoder::distinct_keys`]).
const DISTINCT_KEYS: usize = 8;

const NONE_SLOT: usize = 0;
const TRUE_SLOT: usize = 1;
const FALSE_SLOT: usize = 2;
const EMPTY_TUPLE_SLOT: usize = 3;
/// Placeholders of a checking decoder (see [`Decoder`]).
const INT_SLOT: usize = 4;
const FLOAT_SLOT: usize = 5;

fn bad(opcode: u8, detail: impl Into<String>) -> Kind {
    Kind::BadOperand { opcode: op::name(opcode), detail: detail.into() }
}

fn bad_text(opcode: u8, detail: impl Into<String>) -> Kind {
    Kind::BadText { opcode: op::name(opcode), detail: detail.into() }
}

impl<'a, const CHECK: bool> Decoder<'a, CHECK> {
    fn new(input: &'a [u8], limits: &'a Limits, scratch: Scratch) -> Self {
        let mut stack = scratch.stack;
        stack.reserve((input.len() / 8).clamp(16, 1024));
        Decoder {
            input,
            pos: 0,
            op_start: 0,
            frame_end: None,
            window: input,
            nodes: Vec::with_capacity(if CHECK { 16 } else { node_capacity(input.len()) }),
            stack,
            marks: scratch.marks,
            memo: Memo::new(input.len(), scratch.memo),
            proto: 0,
            limits,
            containers: 0,
            buffers: 0,
            interned: [None; 6],
            copied: 0,
            hashable: Hashable::default(),
            keyed: scratch.keyed,
            distinct_keys: ([NodeId(0); DISTINCT_KEYS], 0),
        }
    }

    // ----- input -----

    /// Reads `n` bytes, honouring frames: inside a frame the bytes must lie in it; at a
    /// frame's exact end reading continues outside.
    #[inline(always)]
    fn take(&mut self, n: usize, what: &'static str) -> R<&'a [u8]> {
        // `n` is at most the input's length (a declared length went through
        // `len_arg`), so this does not overflow.
        let end = self.pos + n;
        if let Some(s) = self.window.get(self.pos..end) {
            self.pos = end;
            return Ok(s);
        }
        self.leave_frame_for(n, what)?;
        let s = &self.input[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// [`Decoder::take`] past the limit: at a frame's exact end, reading continues
    /// outside it; otherwise the read runs past the frame or the input.
    #[cold]
    #[inline(never)]
    fn leave_frame_for(&mut self, n: usize, what: &'static str) -> R<()> {
        if let Some(end) = self.frame_end {
            if self.pos == end && n > 0 {
                self.set_frame(None);
            } else {
                return Err(Kind::Frame("an opcode or its argument runs past the end of its frame"));
            }
        }
        if n > self.input.len() - self.pos {
            return Err(Kind::Truncated { what });
        }
        Ok(())
    }

    fn set_frame(&mut self, end: Option<usize>) {
        self.frame_end = end;
        self.window = &self.input[..end.unwrap_or(self.input.len())];
    }

    #[inline(always)]
    fn byte(&mut self, what: &'static str) -> R<u8> {
        if let Some(&b) = self.window.get(self.pos) {
            self.pos += 1;
            return Ok(b);
        }
        Ok(self.take(1, what)?[0])
    }

    // Fixed-size arguments are read as integers, straight from the input: building a
    // `[u8; N]` in a `Result` first made the compiler assemble it from pieces on the
    // stack and load it back whole, a store-forwarding stall (a third of the time of
    // decoding W1's floats).

    #[inline(always)]
    fn u16_le(&mut self, what: &'static str) -> R<u16> {
        let s = self.take(2, what)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }

    #[inline(always)]
    fn u32_le(&mut self, what: &'static str) -> R<u32> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes(s.try_into().unwrap_or_default()))
    }

    #[inline(always)]
    fn u64_le(&mut self, what: &'static str) -> R<u64> {
        let s = self.take(8, what)?;
        Ok(u64::from_le_bytes(s.try_into().unwrap_or_default()))
    }

    #[inline(always)]
    fn i32_le(&mut self, what: &'static str) -> R<i32> {
        Ok(self.u32_le(what)? as i32)
    }

    /// BINFLOAT's argument: big-endian.
    #[inline(always)]
    fn f64_be(&mut self, what: &'static str) -> R<f64> {
        let s = self.take(8, what)?;
        Ok(f64::from_be_bytes(s.try_into().unwrap_or_default()))
    }

    /// Reads a text line for protocol 0 opcodes; returns it without the newline.
    fn line(&mut self, what: &'static str) -> R<&'a [u8]> {
        if let Some(end) = self.frame_end
            && self.pos == end
        {
            self.set_frame(None);
        }
        let rest = &self.window[self.pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.pos += i + 1;
                Ok(&rest[..i])
            }
            None if self.frame_end.is_some() => Err(Kind::Frame("a text line runs past the end of its frame")),
            None => Err(Kind::Truncated { what }),
        }
    }

    /// Checks a declared length against the input left, before anything is allocated
    /// ([`Decoder::take`] then checks it against the frame).
    fn len_arg(&self, declared: u64, what: &'static str) -> R<usize> {
        if declared > (self.input.len() - self.pos) as u64 {
            return Err(Kind::Truncated { what });
        }
        Ok(declared as usize)
    }

    // ----- nodes and stack -----

    /// Adds the node `make` makes.
    ///
    /// The node is made once the arena has room for it, so that it is written in
    /// place. Made before (`nodes.push(node)`), it lived on the stack across the
    /// arena's possible growth and was then copied with 16-byte loads overlapping the
    /// narrower stores that had just written it: a store-forwarding stall, which the
    /// compiler put in one copy shared by all opcodes, and which took three quarters
    /// of the time of decoding a list of small ints.
    #[inline(always)]
    fn add(&mut self, make: impl FnOnce() -> Node) -> NodeId {
        let id = NodeId(self.nodes.len() as u32);
        self.nodes.extend(std::iter::once_with(make));
        id
    }

    #[inline(always)]
    fn add_container(&mut self, make: impl FnOnce() -> Node) -> NodeId {
        self.containers += 1;
        self.add(make)
    }

    /// Adds the node `make` makes and pushes it.
    #[inline(always)]
    fn push_new(&mut self, make: impl FnOnce() -> Node) {
        let id = self.add(make);
        self.push(id);
    }

    #[inline(always)]
    fn push_int(&mut self, v: i64) {
        if CHECK {
            let id = self.interned(INT_SLOT);
            return self.push(id);
        }
        self.push_new(|| Node::Int(v));
    }

    #[inline(always)]
    fn push_float(&mut self, v: f64) {
        if CHECK {
            let id = self.interned(FLOAT_SLOT);
            return self.push(id);
        }
        self.push_new(|| Node::Float(v));
    }

    fn interned(&mut self, slot: usize) -> NodeId {
        if let Some(id) = self.interned[slot] {
            return id;
        }
        let node = match slot {
            NONE_SLOT => Node::None,
            TRUE_SLOT => Node::Bool(true),
            FALSE_SLOT => Node::Bool(false),
            INT_SLOT => Node::Int(0),
            FLOAT_SLOT => Node::Float(0.0),
            _ => Node::Tuple(Vec::new()),
        };
        let id = self.add(|| node);
        self.interned[slot] = Some(id);
        id
    }

    #[inline]
    fn push(&mut self, id: NodeId) {
        self.stack.push(id);
    }

    #[inline]
    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    #[inline]
    fn pop(&mut self, opcode: u8) -> R<NodeId> {
        if self.stack.len() <= self.fence() {
            return Err(Kind::StackUnderflow { opcode: op::name(opcode) });
        }
        self.stack.pop().ok_or(Kind::StackUnderflow { opcode: op::name(opcode) })
    }

    #[inline]
    fn top(&self, opcode: u8) -> R<NodeId> {
        if self.stack.len() <= self.fence() {
            return Err(Kind::StackUnderflow { opcode: op::name(opcode) });
        }
        self.stack.last().copied().ok_or(Kind::StackUnderflow { opcode: op::name(opcode) })
    }

    /// Pops everything above the last MARK, and the MARK.
    fn pop_mark(&mut self, opcode: u8) -> R<Vec<NodeId>> {
        let m = self.marks.pop().ok_or(Kind::MarkNotFound { opcode: op::name(opcode) })?;
        Ok(self.stack.split_off(m))
    }

    /// The node an APPEND/SETITEM/ADDITEMS/BUILD applies to: the top of the stack
    /// (after the values were taken off), which may sit below a just-popped MARK.
    fn target(&self, opcode: u8) -> R<NodeId> {
        if self.stack.len() <= self.fence() {
            return Err(Kind::StackUnderflow { opcode: op::name(opcode) });
        }
        self.stack.last().copied().ok_or(Kind::StackUnderflow { opcode: op::name(opcode) })
    }

    fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    fn str_of(&self, id: NodeId) -> Option<&str> {
        match self.node(id) {
            Node::Str(s) => s.as_str(),
            _ => None,
        }
    }

    fn global(&mut self, module: &str, name: &str) -> NodeId {
        let (m, n) = if self.proto < 3 { compat::to_python3(module, name) } else { (module, name) };
        self.add(|| Node::Global(Box::new(Global { module: m.to_owned(), name: n.to_owned() })))
    }

    /// Adds a str node for `bytes`, the argument just read, and pushes it.
    #[inline]
    fn push_str(&mut self, opcode: u8, bytes: &'a [u8]) -> R<()> {
        // Short text is copied as a whole window of the input around it (from the
        // text on, or the input's last bytes), a fixed-size copy from the input
        // straight into the arena. Any copy through the stack (of the text alone, or of
        // the window) stalled on store forwarding: a fifth of the time of decoding W1.
        let (n, start) = (bytes.len(), self.pos - bytes.len());
        let input: &'a [u8] = self.input;
        let from = start.min(input.len().saturating_sub(INLINE_STR));
        if n <= INLINE_STR
            && let Some(window) = input.get(from..from + INLINE_STR)
            && let Ok(window) = <&[u8; INLINE_STR]>::try_from(window)
            && (bytes.is_ascii() || std::str::from_utf8(bytes).is_ok())
        {
            self.push_new(|| Node::Str(PyStr::empty_inline()));
            if let Some(Node::Str(s)) = self.nodes.last_mut() {
                s.set_utf8_window(window, start - from, n);
            }
            return Ok(());
        }
        let id = self.new_str(opcode, bytes)?;
        self.push(id);
        Ok(())
    }

    fn new_str(&mut self, opcode: u8, bytes: &[u8]) -> R<NodeId> {
        let s = PyStr::from_surrogatepass(bytes).ok_or_else(|| bad(opcode, "string is not valid UTF-8"))?;
        Ok(self.add(|| Node::Str(s)))
    }

    /// A Python 2 `str` (STRING opcodes): decoded as ASCII, like CPython's default
    /// `encoding="ASCII"`.
    fn py2_str(&mut self, opcode: u8, bytes: &[u8]) -> R<NodeId> {
        if !bytes.is_ascii() {
            return Err(bad(
                opcode,
                "Python 2 str holds non-ASCII bytes (CPython's default encoding='ASCII' rejects them too)",
            ));
        }
        let s = String::from_utf8_lossy(bytes).into_owned();
        Ok(self.add(|| Node::Str(PyStr::from(s))))
    }

    fn int_node(&mut self, v: Int) -> NodeId {
        match v {
            Int::Small(_) if CHECK => self.interned(INT_SLOT),
            Int::Small(i) => self.add(|| Node::Int(i)),
            Int::Big(b) => self.add(|| Node::BigInt(Box::new(b))),
        }
    }

    // ----- the machine -----

    fn run(&mut self) -> R<NodeId> {
        loop {
            self.op_start = self.pos;
            let code = self.byte("an opcode")?;
            match code {
                op::STOP => return self.pop(code),
                op::MARK => {
                    if self.marks.len() >= self.limits.max_marks {
                        return Err(Kind::Limit { limit: "max_marks", value: self.limits.max_marks as u64 });
                    }
                    self.marks.push(self.stack.len());
                }
                op::POP => {
                    if self.stack.len() > self.fence() {
                        self.stack.pop();
                    } else if self.marks.last() == Some(&self.stack.len()) {
                        self.marks.pop();
                    } else {
                        return Err(Kind::StackUnderflow { opcode: "POP" });
                    }
                }
                op::POP_MARK => {
                    self.pop_mark(code)?;
                }
                op::DUP => {
                    let t = self.top(code)?;
                    self.push(t);
                }
                op::NONE => {
                    let id = self.interned(NONE_SLOT);
                    self.push(id);
                }
                op::NEWTRUE => {
                    let id = self.interned(TRUE_SLOT);
                    self.push(id);
                }
                op::NEWFALSE => {
                    let id = self.interned(FALSE_SLOT);
                    self.push(id);
                }
                op::BININT => {
                    let v = self.i32_le("BININT")?;
                    self.push_int(i64::from(v));
                }
                op::BININT1 => {
                    let v = self.byte("BININT1")?;
                    self.push_int(i64::from(v));
                }
                op::BININT2 => {
                    let v = self.u16_le("BININT2")?;
                    self.push_int(i64::from(v));
                }
                op::LONG1 => {
                    let n = usize::from(self.byte("LONG1")?);
                    let b = self.take(n, "LONG1")?;
                    let v = BigInt::from_le_twos_complement(b);
                    let id = self.int_node(v);
                    self.push(id);
                }
                op::LONG4 => {
                    let n = self.i32_le("LONG4")?;
                    if n < 0 {
                        return Err(bad(code, "negative byte count"));
                    }
                    let n = self.len_arg(n as u64, "LONG4")?;
                    let b = self.take(n, "LONG4")?;
                    let v = BigInt::from_le_twos_complement(b);
                    let id = self.int_node(v);
                    self.push(id);
                }
                op::INT => {
                    let line = self.line("INT")?;
                    let text = std::str::from_utf8(line).map_err(|_| bad_text(code, "not ASCII"))?;
                    let v = parse_c_int(text, self.limits.max_int_digits).map_err(|e| bad_text(code, e))?;
                    let id = match v {
                        Int::Small(x @ (0 | 1)) if line.len() == 2 => {
                            self.interned(if x == 1 { TRUE_SLOT } else { FALSE_SLOT })
                        }
                        v => self.int_node(v),
                    };
                    self.push(id);
                }
                op::LONG => {
                    let line = self.line("LONG")?;
                    let mut text = std::str::from_utf8(line).map_err(|_| bad_text(code, "not ASCII"))?;
                    if text.len() > 1 && text.ends_with('L') {
                        text = &text[..text.len() - 1];
                    }
                    let v = parse_py_int(text, self.limits.max_int_digits).map_err(|e| bad_text(code, e))?;
                    let id = self.int_node(v);
                    self.push(id);
                }
                op::BINFLOAT => {
                    let v = self.f64_be("BINFLOAT")?;
                    self.push_float(v);
                }
                op::FLOAT => {
                    let line = self.line("FLOAT")?;
                    let v = parse_float(line).map_err(|e| bad_text(code, e))?;
                    self.push_float(v);
                }
                op::SHORT_BINUNICODE => {
                    let n = usize::from(self.byte("SHORT_BINUNICODE")?);
                    let b = self.take(n, "SHORT_BINUNICODE")?;
                    self.push_str(code, b)?;
                }
                op::BINUNICODE => {
                    let n = self.u32_le("BINUNICODE")?;
                    let n = self.len_arg(u64::from(n), "BINUNICODE")?;
                    let b = self.take(n, "BINUNICODE")?;
                    self.push_str(code, b)?;
                }
                op::BINUNICODE8 => {
                    let n = self.u64_le("BINUNICODE8")?;
                    let n = self.len_arg(n, "BINUNICODE8")?;
                    let b = self.take(n, "BINUNICODE8")?;
                    self.push_str(code, b)?;
                }
                op::UNICODE => {
                    let line = self.line("UNICODE")?;
                    let s = decode_raw_unicode_escape(line).map_err(|e| bad_text(code, e))?;
                    let id = self.add(|| Node::Str(s));
                    self.push(id);
                }
                op::STRING => {
                    let line = self.line("STRING")?;
                    let n = line.len();
                    if n < 2 || line[0] != line[n - 1] || (line[0] != b'\'' && line[0] != b'"') {
                        return Err(bad_text(code, "the argument must be quoted"));
                    }
                    let raw = decode_bytes_escape(&line[1..n - 1]).map_err(|e| bad_text(code, e))?;
                    let id = self.py2_str(code, &raw)?;
                    self.push(id);
                }
                op::BINSTRING => {
                    let n = self.i32_le("BINSTRING")?;
                    if n < 0 {
                        return Err(bad(code, "negative byte count"));
                    }
                    let n = self.len_arg(n as u64, "BINSTRING")?;
                    let b = self.take(n, "BINSTRING")?;
                    let id = self.py2_str(code, b)?;
                    self.push(id);
                }
                op::SHORT_BINSTRING => {
                    let n = usize::from(self.byte("SHORT_BINSTRING")?);
                    let b = self.take(n, "SHORT_BINSTRING")?;
                    let id = self.py2_str(code, b)?;
                    self.push(id);
                }
                op::SHORT_BINBYTES => {
                    let n = usize::from(self.byte("SHORT_BINBYTES")?);
                    let b = self.take(n, "SHORT_BINBYTES")?;
                    let id = self.add(|| Node::Bytes(b.to_vec()));
                    self.push(id);
                }
                op::BINBYTES => {
                    let n = self.u32_le("BINBYTES")?;
                    let n = self.len_arg(u64::from(n), "BINBYTES")?;
                    let b = self.take(n, "BINBYTES")?;
                    let id = self.add(|| Node::Bytes(b.to_vec()));
                    self.push(id);
                }
                op::BINBYTES8 => {
                    let n = self.u64_le("BINBYTES8")?;
                    let n = self.len_arg(n, "BINBYTES8")?;
                    let b = self.take(n, "BINBYTES8")?;
                    let id = self.add(|| Node::Bytes(b.to_vec()));
                    self.push(id);
                }
                op::BYTEARRAY8 => {
                    let n = self.u64_le("BYTEARRAY8")?;
                    let n = self.len_arg(n, "BYTEARRAY8")?;
                    let b = self.take(n, "BYTEARRAY8")?;
                    let id = self.add_container(|| Node::ByteArray(b.to_vec()));
                    self.push(id);
                }
                op::EMPTY_TUPLE => {
                    let id = self.interned(EMPTY_TUPLE_SLOT);
                    self.push(id);
                }
                op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                    let n = usize::from(code - op::TUPLE1 + 1);
                    if self.stack.len() < self.fence() + n {
                        return Err(Kind::StackUnderflow { opcode: op::name(code) });
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    let id = self.add_container(|| Node::Tuple(items));
                    self.push(id);
                }
                op::TUPLE => {
                    let items = self.pop_mark(code)?;
                    let id = if items.is_empty() {
                        self.interned(EMPTY_TUPLE_SLOT)
                    } else {
                        self.add_container(|| Node::Tuple(items))
                    };
                    self.push(id);
                }
                op::EMPTY_LIST => {
                    let id = self.add_container(|| Node::List(Vec::new()));
                    self.push(id);
                }
                op::LIST => {
                    let items = self.pop_mark(code)?;
                    let id = self.add_container(|| Node::List(items));
                    self.push(id);
                }
                op::EMPTY_DICT => {
                    let id = self.add_container(|| Node::Dict(Vec::new()));
                    self.push(id);
                }
                op::DICT => {
                    let items = self.pop_mark(code)?;
                    if items.len() % 2 != 0 {
                        return Err(bad(code, "odd number of items"));
                    }
                    let pairs: Vec<(NodeId, NodeId)> = items.chunks_exact(2).map(|p| (p[0], p[1])).collect();
                    let len = pairs.len();
                    let id = self.add_container(|| Node::Dict(pairs));
                    self.keys_added(code, id, len)?;
                    self.push(id);
                }
                op::EMPTY_SET => {
                    let id = self.add_container(|| Node::Set(Vec::new()));
                    self.push(id);
                }
                op::FROZENSET => {
                    let items = self.pop_mark(code)?;
                    let len = items.len();
                    let id = self.add_container(|| Node::FrozenSet(items));
                    self.keys_added(code, id, len)?;
                    self.push(id);
                }
                op::APPEND => {
                    let item = self.pop(code)?;
                    let target = self.target(code)?;
                    append(code, &mut self.nodes[target.index()], std::slice::from_ref(&item))?;
                }
                // The ops that apply a MARK's items to the object below the MARK read the
                // items where they are on the stack, then drop them.
                op::APPENDS => {
                    let (m, target) = self.mark_and_target(code, false)?;
                    append(code, &mut self.nodes[target.index()], &self.stack[m..])?;
                    self.stack.truncate(m);
                }
                op::SETITEM => {
                    let v = self.pop(code)?;
                    let k = self.pop(code)?;
                    let target = self.target(code)?;
                    set_items(code, &mut self.nodes[target.index()], &[k, v])?;
                    self.keys_added(code, target, 1)?;
                }
                op::SETITEMS => {
                    let (m, target) = self.mark_and_target(code, true)?;
                    let added = (self.stack.len() - m) / 2;
                    set_items(code, &mut self.nodes[target.index()], &self.stack[m..])?;
                    self.keys_added(code, target, added)?;
                    self.stack.truncate(m);
                }
                op::ADDITEMS => {
                    let (m, target) = self.mark_and_target(code, false)?;
                    let items = &self.stack[m..];
                    let added = items.len();
                    match &mut self.nodes[target.index()] {
                        Node::Set(v) => v.extend_from_slice(items),
                        Node::Object(o) => o.ops.extend(items.iter().map(|&x| ObjectOp::AddItem(x))),
                        other => return Err(bad(code, format!("cannot add items to a {}", other.type_name()))),
                    }
                    self.keys_added(code, target, added)?;
                    self.stack.truncate(m);
                }
                op::BUILD => {
                    let state = self.pop(code)?;
                    let target = self.target(code)?;
                    match &mut self.nodes[target.index()] {
                        Node::Object(o) => o.ops.push(ObjectOp::Build(state)),
                        other => return Err(bad(code, format!("cannot set the state of a {}", other.type_name()))),
                    }
                }
                op::PUT => {
                    let line = self.line("PUT")?;
                    let idx = parse_memo_index(line).map_err(|e| bad_text(code, e))?;
                    let t = self.top(code)?;
                    self.memo.put(idx, t);
                }
                op::BINPUT => {
                    let idx = self.byte("BINPUT")?;
                    let t = self.top(code)?;
                    self.memo.put(u64::from(idx), t);
                }
                op::LONG_BINPUT => {
                    let idx = self.u32_le("LONG_BINPUT")?;
                    let t = self.top(code)?;
                    self.memo.put(u64::from(idx), t);
                }
                op::MEMOIZE => {
                    let t = self.top(code)?;
                    let idx = self.memo.count;
                    self.memo.put(idx, t);
                }
                op::GET => {
                    let line = self.line("GET")?;
                    let idx = parse_memo_index(line).map_err(|e| bad_text(code, e))?;
                    let id = self.memo.get(idx).ok_or(Kind::MemoMissing(idx))?;
                    self.push(id);
                }
                op::BINGET => {
                    let idx = u64::from(self.byte("BINGET")?);
                    let id = self.memo.get(idx).ok_or(Kind::MemoMissing(idx))?;
                    self.push(id);
                }
                op::LONG_BINGET => {
                    let idx = u64::from(self.u32_le("LONG_BINGET")?);
                    let id = self.memo.get(idx).ok_or(Kind::MemoMissing(idx))?;
                    self.push(id);
                }
                op::GLOBAL => {
                    let module = self.line("GLOBAL")?;
                    let name = self.line("GLOBAL")?;
                    let module = std::str::from_utf8(module).map_err(|_| bad_text(code, "module name is not UTF-8"))?;
                    let name = std::str::from_utf8(name).map_err(|_| bad_text(code, "global name is not UTF-8"))?;
                    let id = self.global(module, name);
                    self.push(id);
                }
                op::STACK_GLOBAL => {
                    let name = self.pop(code)?;
                    let module = self.pop(code)?;
                    let (Some(m), Some(n)) = (self.str_of(module), self.str_of(name)) else {
                        return Err(bad(code, "module and name must be str"));
                    };
                    let (m, n) = (m.to_owned(), n.to_owned());
                    let id = self.global(&m, &n);
                    self.push(id);
                }
                op::REDUCE => {
                    let args = self.pop(code)?;
                    let callable = self.pop(code)?;
                    if !matches!(self.node(args), Node::Tuple(_)) {
                        return Err(bad(
                            code,
                            format!("arguments must be a tuple, not a {}", self.node(args).type_name()),
                        ));
                    }
                    if let Some(what) = not_callable(self.node(callable)) {
                        return Err(bad(code, format!("'{what}' object is not callable")));
                    }
                    let id = self.reduce(code, callable, args)?;
                    self.push(id);
                }
                op::NEWOBJ => {
                    let args = self.pop(code)?;
                    let cls = self.pop(code)?;
                    if !matches!(self.node(args), Node::Tuple(_)) {
                        return Err(bad(code, "expected an argument tuple"));
                    }
                    if let Some(what) = not_callable(self.node(cls)) {
                        return Err(bad(code, format!("class argument must be a type, not {what}")));
                    }
                    let id = match self.native(code, cls, Some(args), &[], How::New)? {
                        Some(id) => id,
                        None => self.object(Construct::NewObj { cls, args }),
                    };
                    self.push(id);
                }
                op::NEWOBJ_EX => {
                    let kwargs = self.pop(code)?;
                    let args = self.pop(code)?;
                    let cls = self.pop(code)?;
                    if let Some(what) = not_callable(self.node(cls)) {
                        return Err(bad(code, format!("class argument must be a type, not {what}")));
                    }
                    if !matches!(self.node(args), Node::Tuple(_)) {
                        return Err(bad(code, "expected an argument tuple"));
                    }
                    if !matches!(self.node(kwargs), Node::Dict(_)) {
                        return Err(bad(code, "expected a keyword-argument dict"));
                    }
                    let id = self.object(Construct::NewObjEx { cls, args, kwargs });
                    self.push(id);
                }
                op::INST => {
                    let module = self.line("INST")?;
                    let name = self.line("INST")?;
                    let module = std::str::from_utf8(module).map_err(|_| bad_text(code, "module name is not UTF-8"))?;
                    let name = std::str::from_utf8(name).map_err(|_| bad_text(code, "class name is not UTF-8"))?;
                    let args = self.pop_mark(code)?;
                    let cls = self.global(module, name);
                    let id = match self.native(code, cls, None, &args, How::Call)? {
                        Some(id) => id,
                        None => self.object(Construct::Instantiate { cls, args }),
                    };
                    self.push(id);
                }
                op::OBJ => {
                    let mut items = self.pop_mark(code)?;
                    if items.is_empty() {
                        return Err(Kind::StackUnderflow { opcode: "OBJ" });
                    }
                    let cls = items.remove(0);
                    if let Some(what) = not_callable(self.node(cls)) {
                        return Err(bad(code, format!("'{what}' object is not callable")));
                    }
                    let id = match self.native(code, cls, None, &items, How::Call)? {
                        Some(id) => id,
                        None => self.object(Construct::Instantiate { cls, args: items }),
                    };
                    self.push(id);
                }
                op::PERSID => {
                    let line = self.line("PERSID")?;
                    if !line.is_ascii() {
                        return Err(bad_text(code, "persistent id is not ASCII"));
                    }
                    let pid = self.new_str(code, line)?;
                    let id = self.add(|| Node::PersistentId(pid));
                    self.push(id);
                }
                op::BINPERSID => {
                    let pid = self.pop(code)?;
                    let id = self.add(|| Node::PersistentId(pid));
                    self.push(id);
                }
                op::EXT1 | op::EXT2 | op::EXT4 => {
                    let ext = match code {
                        op::EXT1 => i32::from(self.byte("EXT1")?),
                        op::EXT2 => i32::from(self.u16_le("EXT2")?),
                        _ => self.i32_le("EXT4")?,
                    };
                    if ext <= 0 {
                        return Err(bad(code, "extension code must be positive"));
                    }
                    let id = self.add(|| Node::Extension(ext));
                    self.push(id);
                }
                op::NEXT_BUFFER => {
                    let index = self.buffers;
                    self.buffers = self.buffers.saturating_add(1);
                    let id = self.add(|| Node::Buffer { index, readonly: false });
                    self.push(id);
                }
                op::READONLY_BUFFER => {
                    let t = self.top(code)?;
                    match &mut self.nodes[t.index()] {
                        Node::Buffer { readonly, .. } => *readonly = true,
                        Node::Bytes(_) => {}
                        other => {
                            return Err(bad(
                                code,
                                format!("a read-only view of a {} is not supported", other.type_name()),
                            ));
                        }
                    }
                }
                op::PROTO => {
                    let p = self.byte("PROTO")?;
                    if p > op::HIGHEST_PROTOCOL {
                        return Err(Kind::UnsupportedProtocol(p));
                    }
                    self.proto = p;
                }
                op::FRAME => {
                    let n = self.u64_le("FRAME")?;
                    if let Some(end) = self.frame_end
                        && self.pos != end
                    {
                        return Err(Kind::Frame("a new frame begins before the end of the current one"));
                    }
                    if n > (self.input.len() - self.pos) as u64 {
                        return Err(Kind::Truncated { what: "a frame" });
                    }
                    self.set_frame(Some(self.pos + n as usize));
                }
                other => return Err(Kind::UnknownOpcode(other)),
            }
        }
    }

    /// For the ops that apply a MARK's items to the object below it: pops the MARK and
    /// returns where its items start on the stack (they stay there) and the target, the
    /// stack entry below them. With `pairs`, the items must come in pairs.
    #[inline]
    fn mark_and_target(&mut self, opcode: u8, pairs: bool) -> R<(usize, NodeId)> {
        let m = self.marks.pop().ok_or(Kind::MarkNotFound { opcode: op::name(opcode) })?;
        if pairs && !(self.stack.len() - m).is_multiple_of(2) {
            return Err(bad(opcode, "odd number of items"));
        }
        if m <= self.fence() {
            return Err(Kind::StackUnderflow { opcode: op::name(opcode) });
        }
        Ok((m, self.stack[m - 1]))
    }

    fn object(&mut self, construct: Construct) -> NodeId {
        self.add_container(|| Node::Object(Box::new(Object { construct, ops: Vec::new() })))
    }

    /// REDUCE: calls of built-in types become native nodes (the types CPython writes
    /// as calls before protocols 3–5 among them); every other call is kept as an object.
    fn reduce(&mut self, code: u8, callable: NodeId, args: NodeId) -> R<NodeId> {
        match self.native(code, callable, Some(args), &[], How::Call)? {
            Some(id) => Ok(id),
            None => Ok(self.object(Construct::Reduce { callable, args })),
        }
    }

    /// The native node for a call (or `__new__`) of a built-in type, when
    /// [`native::call`] models it; `None` to keep an object. The arguments are the tuple
    /// node `args_tuple`, or `args_list`.
    ///
    /// Making a native node copies the argument (a list's items, a str's or bytes'
    /// bytes). The copies together may not exceed twice the input's length, which a
    /// pickler never reaches: each call gets a fresh argument, written in at least as
    /// many bytes as it has items, and CPython nests such calls at most two deep
    /// (`bytearray(_codecs.encode(s, "latin1"))` before protocol 3). Past the limit a
    /// call is kept as an object. Without it, calling `set` on one memoized list over
    /// and over would take memory quadratic in the input.
    ///
    /// A set, frozenset or dict made from an iterable checks that its elements or keys
    /// are hashable, as CPython does.
    fn native(
        &mut self,
        code: u8,
        cls: NodeId,
        args_tuple: Option<NodeId>,
        args_list: &[NodeId],
        how: How,
    ) -> R<Option<NodeId>> {
        let budget = self.input.len().saturating_mul(2).saturating_sub(self.copied);
        let made = {
            let nodes = &self.nodes;
            let Some(Node::Global(g)) = nodes.get(cls.index()) else { return Ok(None) };
            let args: &[NodeId] = match args_tuple {
                Some(t) => match nodes.get(t.index()) {
                    Some(Node::Tuple(a)) => a,
                    _ => return Ok(None),
                },
                None => args_list,
            };
            native::call(nodes, g, args, how, budget)
        };
        Ok(match made {
            None => None,
            Some(Made::Same(id)) => Some(id),
            Some(Made::Bool(b)) => Some(self.interned(if b { TRUE_SLOT } else { FALSE_SLOT })),
            Some(made) => {
                self.copied += made.copied();
                let node = match made {
                    Made::New(node) => node,
                    Made::DictKeys(mut node) => {
                        // Not when checking, whose numbers are placeholders: only the
                        // kind of node matters there, and it is the same.
                        if let (false, Node::List(items) | Node::Tuple(items)) = (CHECK, &mut node) {
                            pyhash::dedup_items(&self.nodes, items);
                        }
                        node
                    }
                    Made::Same(_) | Made::Bool(_) => return Ok(None),
                };
                let keys = match &node {
                    Node::Set(items) | Node::FrozenSet(items) => items.len(),
                    Node::Dict(pairs) => pairs.len(),
                    _ => 0,
                };
                let container = matches!(
                    node,
                    Node::List(_)
                        | Node::Tuple(_)
                        | Node::Dict(_)
                        | Node::Set(_)
                        | Node::FrozenSet(_)
                        | Node::ByteArray(_)
                );
                let id = if container { self.add_container(|| node) } else { self.add(|| node) };
                self.keys_added(code, id, keys)?;
                Some(id)
            }
        })
    }

    /// After `added` keys (or elements) went into the dict, set or frozenset `id` at
    /// opcode `code`: checks that CPython could hash them (`TypeError: unhashable type`,
    /// raised as it inserts one), and notes the container if it may now repeat a key.
    ///
    /// A container that got all its keys at once (the one `SETITEMS`, `ADDITEMS` or
    /// `FROZENSET` of everything CPython writes below 1,000 items) is compared here, and
    /// noted only if two keys may be equal; one that got keys before is noted for
    /// [`remove_repeated_keys`] (perhaps more than once). Anything else is no container
    /// of keys (an object's `SETITEM`s are kept as data).
    #[inline]
    fn keys_added(&mut self, code: u8, id: NodeId, added: usize) -> R<()> {
        let nodes = &self.nodes;
        let simple = |k: &NodeId| pyhash::is_atom(nodes, *k);
        let (len, all_simple) = match nodes.get(id.index()) {
            Some(Node::Dict(p)) => (p.len(), p[p.len().saturating_sub(added)..].iter().all(|(k, _)| simple(k))),
            Some(Node::Set(v) | Node::FrozenSet(v)) => (v.len(), v[v.len().saturating_sub(added)..].iter().all(simple)),
            _ => return Ok(()),
        };
        if !all_simple {
            self.check_new_keys(code, id, added)?;
        }
        if CHECK || len < 2 {
            return Ok(());
        }
        if len == added && !self.may_repeat(id) {
            return Ok(());
        }
        self.keyed.push(id.0);
        Ok(())
    }

    /// [`Decoder::keys_added`] for keys other than atoms: each must be hashable.
    #[cold]
    #[inline(never)]
    fn check_new_keys(&mut self, code: u8, id: NodeId, added: usize) -> R<()> {
        let (keys, role): (Vec<NodeId>, &'static str) = match self.nodes.get(id.index()) {
            Some(Node::Dict(p)) => (p[p.len().saturating_sub(added)..].iter().map(|p| p.0).collect(), "dict key"),
            Some(Node::Set(v) | Node::FrozenSet(v)) => (v[v.len().saturating_sub(added)..].to_vec(), "set element"),
            _ => return Ok(()),
        };
        for k in keys {
            if let Err(type_name) = self.hashable.check(&self.nodes, k) {
                return Err(Kind::Unhashable { opcode: op::name(code), type_name, role });
            }
        }
        Ok(())
    }

    /// Whether two keys of the container `id`, which got all its keys at once, may be
    /// equal ([`pyhash::may_repeat`]).
    fn may_repeat(&mut self, id: NodeId) -> bool {
        match self.nodes.get(id.index()) {
            Some(Node::Dict(pairs)) => {
                // Dicts of one shape share their key objects (the memo's strs): the keys
                // of the last one found distinct need no look again.
                let (known, n) = &self.distinct_keys;
                if pairs.len() == usize::from(*n) && pairs.iter().zip(known).all(|(p, k)| p.0 == *k) {
                    return false;
                }
                let repeats = pyhash::may_repeat(&self.nodes, pairs.iter().map(|p| p.0));
                if !repeats && pairs.len() <= DISTINCT_KEYS {
                    let (known, n) = &mut self.distinct_keys;
                    for (slot, p) in known.iter_mut().zip(pairs) {
                        *slot = p.0;
                    }
                    *n = pairs.len() as u8;
                }
                repeats
            }
            Some(Node::Set(items) | Node::FrozenSet(items)) => pyhash::may_repeat(&self.nodes, items.iter().copied()),
            _ => false,
        }
    }
}

/// The Python type of a node that cannot be called nor be a class (the native data
/// kinds), for CPython's `'int' object is not callable`; `None` for globals, objects
/// and the rest, which may be.
fn not_callable(node: &Node) -> Option<&'static str> {
    match node {
        Node::Global(_) | Node::Object(_) | Node::PersistentId(_) | Node::Buffer { .. } | Node::Extension(_) => None,
        other => Some(other.type_name()),
    }
}

/// APPEND/APPENDS: a list's items, or an object's `append` calls.
#[inline]
fn append(code: u8, target: &mut Node, items: &[NodeId]) -> R<()> {
    match target {
        Node::List(v) => v.extend_from_slice(items),
        Node::Object(o) => o.ops.extend(items.iter().map(|&x| ObjectOp::Append(x))),
        other => return Err(bad(code, format!("cannot append to a {}", other.type_name()))),
    }
    Ok(())
}

/// SETITEM/SETITEMS: a dict's items (`items` holds pairs), or an object's `obj[k] = v`.
#[inline]
fn set_items(code: u8, target: &mut Node, items: &[NodeId]) -> R<()> {
    match target {
        Node::Dict(v) => v.extend(items.chunks_exact(2).map(|p| (p[0], p[1]))),
        Node::Object(o) => o.ops.extend(items.chunks_exact(2).map(|p| ObjectOp::SetItem(p[0], p[1]))),
        other => return Err(bad(code, format!("cannot set items of a {}", other.type_name()))),
    }
    Ok(())
}

/// True when the value nests deeper than `max` (counted along a depth-first walk that
/// visits each node once; that is the depth every walker of the graph needs).
///
/// Linear time: each node's children are listed once, into one stack shared by the
/// nodes on the current path (`open` holds where each one's children start).
fn depth_exceeds(value: &Value, max: usize) -> bool {
    fn push_children(value: &Value, id: NodeId, pending: &mut Vec<NodeId>) {
        let from = pending.len();
        value[id].for_each_child(|c| pending.push(c));
        // Reversed, so that they are popped in document order.
        pending[from..].reverse();
    }
    let mut seen = vec![false; value.len()];
    let mut pending: Vec<NodeId> = Vec::new();
    let mut open: Vec<usize> = vec![0];
    seen[value.root().index()] = true;
    push_children(value, value.root(), &mut pending);
    while let Some(&start) = open.last() {
        if open.len() > max {
            return true;
        }
        if pending.len() > start {
            if let Some(c) = pending.pop()
                && !seen[c.index()]
            {
                open.push(pending.len());
                let before = pending.len();
                push_children(value, c, &mut pending);
                // Only nodes with children are visited once: a shared atom (None, or an
                // int of a checking decoder) counts wherever it appears.
                if pending.len() > before {
                    seen[c.index()] = true;
                }
            }
        } else {
            open.pop();
        }
    }
    false
}

// ----- protocol 0 text arguments -----

/// INT's argument, as CPython's C unpickler reads it: C `strtol(s, 0)` (decimal, `0x`
/// hex, leading-`0` octal) when that fits in 64 bits, else Python's `int(s, 0)`.
fn parse_c_int(text: &str, max_digits: usize) -> std::result::Result<Int, String> {
    if let Some(v) = strtol_base0(text) {
        return Ok(Int::Small(v));
    }
    parse_py_int(text, max_digits)
}

fn strtol_base0(text: &str) -> Option<i64> {
    let t = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (radix, digits) = if (t.starts_with("0x") || t.starts_with("0X")) && t.len() > 2 {
        (16, &t[2..])
    } else if t.starts_with('0') && t.len() > 1 {
        (8, &t[1..])
    } else {
        (10, t)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let mag = u64::from_str_radix(digits, radix).ok()?;
    if neg { if mag <= 1 << 63 { Some((mag as i64).wrapping_neg()) } else { None } } else { i64::try_from(mag).ok() }
}

/// Python's `int(text, 0)`: optional sign, `0x`/`0o`/`0b` prefixes, `_` between digits,
/// surrounding whitespace; decimal text limited to `max_digits` digits like CPython.
fn parse_py_int(text: &str, max_digits: usize) -> std::result::Result<Int, String> {
    let t = text.trim_matches(|c: char| c.is_ascii_whitespace());
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let lower = body.get(..2).map(|p| p.to_ascii_lowercase());
    let bits = match lower.as_deref() {
        Some("0x") => 4,
        Some("0o") => 3,
        Some("0b") => 1,
        _ => 0,
    };
    if bits == 0 {
        let digits = body.bytes().filter(u8::is_ascii_digit).count();
        if digits > max_digits {
            return Err(format!("int has {digits} decimal digits, over the limit of {max_digits} (max_int_digits)"));
        }
        // Python forbids leading zeros in a non-zero base-0 decimal literal.
        let stripped: String = body.chars().filter(|&c| c != '_').collect();
        if stripped.len() > 1 && stripped.starts_with('0') && stripped.bytes().any(|b| b != b'0') {
            return Err(format!("invalid int literal {text:?}"));
        }
        return BigInt::parse_decimal(t, max_digits).ok_or_else(|| format!("invalid int literal {text:?}"));
    }
    // Power-of-two radix: pack the bits directly (linear time).
    let mut digits: Vec<u32> = Vec::new();
    let mut prev_underscore = true; // an underscore may follow the prefix
    for c in body[2..].chars() {
        if c == '_' {
            if prev_underscore && !digits.is_empty() {
                return Err(format!("invalid int literal {text:?}"));
            }
            prev_underscore = true;
            continue;
        }
        let d = c.to_digit(1 << bits).ok_or_else(|| format!("invalid int literal {text:?}"))?;
        digits.push(d);
        prev_underscore = false;
    }
    if digits.is_empty() || prev_underscore {
        return Err(format!("invalid int literal {text:?}"));
    }
    let mut mag = vec![0u32; (digits.len() * bits).div_ceil(32)];
    for (i, &d) in digits.iter().rev().enumerate() {
        let bit = i * bits;
        mag[bit / 32] |= d << (bit % 32);
        if bit % 32 + bits > 32 {
            mag[bit / 32 + 1] |= d >> (32 - bit % 32);
        }
    }
    Ok(BigInt::from_sign_magnitude(neg, mag))
}

/// PUT/GET's argument: a non-negative decimal int.
fn parse_memo_index(line: &[u8]) -> std::result::Result<u64, String> {
    let text = std::str::from_utf8(line).map_err(|_| "memo index is not ASCII".to_string())?;
    match BigInt::parse_decimal(text, 20) {
        Some(Int::Small(v)) if v >= 0 => Ok(v as u64),
        Some(Int::Small(_)) => Err("negative memo index".into()),
        _ => Err(format!("invalid memo index {text:?}")),
    }
}

/// FLOAT's argument, as CPython's `PyOS_string_to_double`: decimal or `inf`/`nan`
/// spellings; an out-of-range number is an error, not infinity.
fn parse_float(line: &[u8]) -> std::result::Result<f64, String> {
    let text = std::str::from_utf8(line).map_err(|_| "not ASCII".to_string())?;
    let ok_chars = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    let lower = text.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    let special = matches!(unsigned, "inf" | "infinity" | "nan");
    if !special && (!ok_chars(text) || text.is_empty()) {
        return Err(format!("could not convert {text:?} to float"));
    }
    let v: f64 = text.parse().map_err(|_| format!("could not convert {text:?} to float"))?;
    if v.is_infinite() && !special {
        return Err(format!("float {text:?} is out of range"));
    }
    Ok(v)
}

/// UNICODE's argument: CPython's `raw-unicode-escape` codec.
fn decode_raw_unicode_escape(line: &[u8]) -> std::result::Result<PyStr, String> {
    let mut out: Vec<u8> = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let c = line[i];
        if c != b'\\' {
            push_code_point(&mut out, u32::from(c));
            i += 1;
            continue;
        }
        // A \u or \U escape only counts after an odd number of backslashes.
        let start = i;
        while i < line.len() && line[i] == b'\\' {
            i += 1;
        }
        let run = i - start;
        let escape = run % 2 == 1 && i < line.len() && (line[i] == b'u' || line[i] == b'U');
        let literal = if escape { run - 1 } else { run };
        out.extend(std::iter::repeat_n(b'\\', literal));
        if !escape {
            continue;
        }
        let count = if line[i] == b'u' { 4 } else { 8 };
        i += 1;
        let hex = line
            .get(i..i + count)
            .ok_or_else(|| format!("truncated \\{} escape", if count == 4 { 'u' } else { 'U' }))?;
        let text = std::str::from_utf8(hex).map_err(|_| "bad escape".to_string())?;
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("truncated \\{} escape", if count == 4 { 'u' } else { 'U' }));
        }
        let cp = u32::from_str_radix(text, 16).map_err(|_| "bad escape".to_string())?;
        if cp > 0x10FFFF {
            return Err("\\Uxxxxxxxx out of range".into());
        }
        push_code_point(&mut out, cp);
        i += count;
    }
    PyStr::from_surrogatepass_vec(out).ok_or_else(|| "invalid text".to_string())
}

/// STRING's argument (inside the quotes): Python's bytes escapes.
fn decode_bytes_escape(s: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = s.get(i) else {
            return Err("trailing \\ in string".into());
        };
        i += 1;
        match e {
            b'\n' => {}
            b'\\' => out.push(b'\\'),
            b'\'' => out.push(b'\''),
            b'"' => out.push(b'"'),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b't' => out.push(b'\t'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b'v' => out.push(11),
            b'a' => out.push(7),
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match s.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            b'x' => {
                let hex = s.get(i..i + 2).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
                let Some(hex) = hex else {
                    return Err(format!("invalid \\x escape at position {}", i - 2));
                };
                let text = std::str::from_utf8(hex).map_err(|_| "bad escape".to_string())?;
                out.push(u8::from_str_radix(text, 16).map_err(|_| "bad escape".to_string())?);
                i += 2;
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(bytes: &[u8]) -> Value {
        decode(bytes).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(bytes: &[u8]) -> (usize, Kind) {
        match decode(bytes) {
            Err(Error::Decode { offset, kind }) => (offset, kind),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn protocol_0_text_forms() {
        assert_eq!(d(b"I01\n.").to_string(), "True");
        assert_eq!(d(b"I00\n.").to_string(), "False");
        assert_eq!(d(b"I1\n.").to_string(), "1");
        assert_eq!(d(b"I-17\n.").to_string(), "-17");
        assert_eq!(d(b"I0x1f\n.").to_string(), "31");
        assert_eq!(d(b"I017\n.").to_string(), "15");
        assert_eq!(d(b"L123456789012345678901234567890L\n.").to_string(), "123456789012345678901234567890");
        assert_eq!(d(b"L0x10000000000000000L\n.").to_string(), "18446744073709551616");
        assert_eq!(d(b"F1e+16\n.").to_string(), "1e+16");
        assert_eq!(d(b"Fnan\n.").to_string(), "nan");
        assert_eq!(d(b"Vcaf\xe9 \\u00e9\\\\u0041\n.").to_string(), "'café é\\\\\\\\u0041'");
        assert_eq!(d(b"S'a\\x41\\n\\101'\n.").to_string(), "'aA\\nA'");
        assert_eq!(d(b"(lp0\nI1\naI2\na.").to_string(), "[1, 2]");
        assert_eq!(d(b"(dp0\nVa\np1\nI1\ns.").to_string(), "{'a': 1}");
        assert_eq!(d(b"(lp0\ng0\na.").to_string(), "[[...]]");
    }

    #[test]
    fn text_errors_name_the_problem() {
        assert!(matches!(err(b"F1e999\n.").1, Kind::BadText { opcode: "FLOAT", .. }));
        assert!(matches!(err(b"S'abc\n.").1, Kind::BadText { opcode: "STRING", .. }));
        let digits = "9".repeat(4301);
        let bomb = format!("L{digits}L\n.");
        assert!(err(bomb.as_bytes()).1.to_string().contains("max_int_digits"));
        assert!(decode(format!("L{}L\n.", "9".repeat(4300)).as_bytes()).is_ok());
    }

    #[test]
    fn memo_sharing_and_cycles() {
        // a = [1]; [a, a] at protocol 2
        let v = d(b"\x80\x02]q\x00(]q\x01K\x01ah\x01e.");
        let items = v.as_seq(v.root()).unwrap_or_default();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0], items[1]);
        assert_eq!(v.to_string(), "[[1], [1]]");
    }

    #[test]
    fn errors_carry_offsets() {
        assert_eq!(err(b"\x80\x02K"), (2, Kind::Truncated { what: "BININT1" }));
        assert_eq!(err(b"\x80\x02\xff."), (2, Kind::UnknownOpcode(0xff)));
        assert_eq!(err(b"\x80\x02h\x05."), (2, Kind::MemoMissing(5)));
        assert_eq!(err(b"\x80\x02a."), (2, Kind::StackUnderflow { opcode: "APPEND" }));
        assert_eq!(
            err(b"\x80\x02K\x01(e."),
            (5, Kind::BadOperand { opcode: "APPENDS", detail: "cannot append to a int".into() })
        );
        assert_eq!(err(b"\x80\x06."), (0, Kind::UnsupportedProtocol(6)));
        assert_eq!(err(b"X\xff\xff\xff\xff"), (0, Kind::Truncated { what: "BINUNICODE" }));
        assert_eq!(err(b"\x8e\xff\xff\xff\xff\xff\xff\xff\x3f"), (0, Kind::Truncated { what: "BINBYTES8" }));
    }

    #[test]
    fn frames_are_enforced() {
        // FRAME of 3 bytes holding "K\x01." is fine.
        assert_eq!(d(b"\x80\x04\x95\x03\x00\x00\x00\x00\x00\x00\x00K\x01.").to_string(), "1");
        // BININT2's argument straddles the frame end.
        assert!(matches!(err(b"\x80\x04\x95\x02\x00\x00\x00\x00\x00\x00\x00M\x01\x00.").1, Kind::Frame(_)));
        // A frame announced longer than the input.
        assert!(matches!(err(b"\x80\x04\x95\x09\x00\x00\x00\x00\x00\x00\x00N.").1, Kind::Truncated { .. }));
        // A new frame before the current one ends.
        assert!(matches!(
            err(b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00\x95\x01\x00\x00\x00\x00\x00\x00\x00N.").1,
            Kind::Frame(_)
        ));
    }

    #[test]
    fn bombs_are_cheap() {
        // 2^60-fold sharing: each level is a list holding the previous one twice.
        let mut p = b"\x80\x02N".to_vec();
        for _ in 0..60 {
            p.extend_from_slice(b"2\x86"); // DUP, TUPLE2
        }
        p.push(b'.');
        assert_eq!(d(&p).len(), 61);
        // Unclosed MARKs beyond the limit.
        let marks = vec![b'('; 200_000];
        assert!(matches!(err(&marks).1, Kind::Limit { limit: "max_marks", .. }));
    }

    #[test]
    fn native_calls_copy_at_most_twice_the_input_length() {
        // set(L) called 1,000 times on one memoized list of 1,000 items: the copies stop
        // at twice the input's length and the later calls stay objects.
        let mut p = b"\x80\x02cbuiltins\nset\nq\x000]q\x01(".to_vec();
        p.extend(std::iter::repeat_n(b'N', 1000));
        p.extend_from_slice(b"e0");
        for _ in 0..1000 {
            p.extend_from_slice(b"h\x00h\x01\x85R0");
        }
        p.extend_from_slice(b"N.");
        let v = d(&p);
        let copied: usize = v.nodes().iter().map(|n| if let Node::Set(s) = n { s.len() } else { 0 }).sum();
        let sets = v.nodes().iter().filter(|n| matches!(n, Node::Set(_))).count();
        let objects = v.nodes().iter().filter(|n| matches!(n, Node::Object(_))).count();
        assert!(copied <= 2 * p.len(), "{copied} items copied from {} bytes", p.len());
        assert_eq!((sets, objects), (16, 984));
        // A fresh argument per call, as picklers write, is always converted.
        let v = d(b"\x80\x02]q\x00(cbuiltins\nset\nq\x01]q\x02(K\x01K\x02e\x85q\x03Rq\x04h\x01]q\x05K\x03a\x85Re.");
        assert_eq!(v.to_string(), "[{1, 2}, {3}]");
    }

    #[test]
    fn depth_check_is_linear_on_wide_values() {
        // A list of 300,000 empty lists: enough containers for the depth check, which
        // used to list the root's children again for each child (quadratic: minutes).
        let mut p = b"\x80\x02](".to_vec();
        p.extend(std::iter::repeat_n(b']', 300_000));
        p.extend_from_slice(b"e.");
        assert_eq!(d(&p).len(), 300_001);
    }

    #[test]
    fn deep_nesting_is_limited_then_allowed() {
        let depth = 200_000;
        let mut p = b"\x80\x02".to_vec();
        p.extend(std::iter::repeat_n(b']', depth));
        p.extend(std::iter::repeat_n(b'a', depth - 1));
        p.push(b'.');
        assert!(matches!(err(&p).1, Kind::Limit { limit: "max_depth", .. }));
        let v = decode_with(&p, &Limits::default().max_depth(1_000_000)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.len(), depth);
    }

    #[test]
    fn py_int_literals() {
        assert_eq!(parse_py_int("0b1_01", 10), Ok(Int::Small(5)));
        assert_eq!(parse_py_int("-0o17", 10), Ok(Int::Small(-15)));
        assert!(parse_py_int("017", 10).is_err());
        assert_eq!(parse_py_int("000", 10), Ok(Int::Small(0)));
        assert_eq!(
            parse_py_int("0xffffffffffffffffffff", 10).map(|v| v.to_decimal()),
            Ok("1208925819614629174706175".into())
        );
    }
}
