//! Encoder: [`Value`] → pickle bytes (protocols 2–5).
//!
//! Invariant: for plain data (None, bool, int, float, str, bytes, bytearray, list,
//! tuple, dict, set, frozenset) the output is byte-identical to CPython 3.11's
//! `pickle.dumps(v, protocol=N)` for the Python value `pickle.loads` makes of it: same
//! opcodes, memo numbering, batches and protocol-4 frames. Sharing and cycles are kept
//! through the memo (a node reached again is fetched with `BINGET`), dict and set order
//! is kept, and the output is deterministic. Objects kept as data are written back
//! from their construction and operations so that CPython loads an equal object.
//!
//! The walk uses an explicit stack of frames, never recursion, so nesting depth is
//! bounded by memory only. Like CPython, a tuple (or frozenset, or object under
//! construction) that is reached again while its items are being written — possible
//! only through a list, dict, set or built object, which is memoized first — is written
//! again inside itself, and the outer copy is then popped and fetched from the memo. A
//! cycle that passes through no memoized object cannot be pickled and is an error.

use super::emit::{BATCH, Builtin, Emitter, MEMO_LIMIT};
use super::opcodes as op;
use super::value::{Construct, Node, NodeId, ObjectOp, Value};
use crate::{Error, Result};

/// The protocol [`encode`] writes by default, as CPython 3.8+.
pub const DEFAULT_PROTOCOL: u8 = 4;

/// Encodes a value with the given protocol (2–5).
///
/// ```
/// use pickleshelf_pickle::{self as pickle, Node, Value};
///
/// let mut v = Value::new(Node::List(Vec::new()));
/// let one = v.push(Node::Int(1));
/// let text = v.push(Node::Str("a".into()));
/// let root = v.root();
/// if let Node::List(items) = v.node_mut(root) {
///     items.extend([one, text]);
/// }
/// // pickle.dumps([1, 'a'], protocol=4)
/// let bytes = pickle::encode(&v, 4)?;
/// assert_eq!(bytes, b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01\x8c\x01a\x94e.");
/// assert_eq!(pickle::decode(&bytes)?, v);
/// # Ok::<(), pickleshelf_pickle::Error>(())
/// ```
///
/// # Errors
/// [`Error::Encode`] for an unsupported protocol, an id outside the value, a node the
/// protocol cannot express (an out-of-band buffer before protocol 5, `NEWOBJ_EX`
/// before protocol 4, a non-ASCII global at protocol 2), or a cycle through no
/// memoizable object (a tuple that contains itself directly).
pub fn encode(value: &Value, protocol: u8) -> Result<Vec<u8>> {
    let mut em = Emitter::with_capacity(protocol, value.len().saturating_mul(8).saturating_add(32))?;
    let mut enc = Encoder::new(&mut em, value.nodes());
    enc.run(value.root())?;
    Ok(em.finish())
}

/// Encodes like CPython's pickler in fast mode (`pickler.fast = True`): no memo at all,
/// so a node reached twice is written twice. For canonical forms (memoization keys),
/// where the bytes must not depend on which equal objects happen to be shared. The value
/// must have no cycle (the canonical form is a tree).
pub(crate) fn encode_fast_acyclic(value: &Value, protocol: u8) -> Result<Vec<u8>> {
    let mut em = Emitter::with_capacity(protocol, value.len().saturating_mul(8).saturating_add(32))?;
    em.set_fast();
    let mut enc = Encoder::new(&mut em, value.nodes());
    enc.run(value.root())?;
    Ok(em.finish())
}

/// Marks a node in [`Encoder::state`] that was never written.
const UNSEEN: u32 = u32::MAX;
/// Set on a node whose items are being written (tuple-like nodes, memoized only after
/// their items); the low bits hold [`Encoder::memo_frames`] at that moment.
const OPEN: u32 = 0x8000_0000;
const _: () = assert!(MEMO_LIMIT < OPEN);

/// One node whose items are being written.
#[derive(Clone, Copy)]
enum Frame {
    /// A list: `EMPTY_LIST`, memoized, then items in batches.
    List { id: u32, next: u32 },
    /// A dict: `EMPTY_DICT`, memoized, then key/value pairs in batches.
    Dict { id: u32, next: u32, in_value: bool },
    /// A set at protocol 4+: `EMPTY_SET`, memoized, then `ADDITEMS` batches.
    Set { id: u32, next: u32 },
    /// A tuple: items, then `TUPLE1-3`/`TUPLE` (or, if it was memoized meanwhile,
    /// `POP`s and a `GET`).
    Tuple { id: u32, next: u32 },
    /// A frozenset at protocol 4+: `MARK`, items, `FROZENSET`.
    FrozenSet { id: u32, next: u32 },
    /// A list of [`Step`]s in [`Encoder::script`]`[start..end]`, `pos` the next.
    Script { pos: u32, end: u32, start: u32 },
}

/// One step of a [`Frame::Script`], for the rarer nodes.
#[derive(Clone, Copy)]
enum Step {
    /// Save a node.
    Save(NodeId),
    /// Write one opcode.
    Op(u8),
    /// After an object's construction opcode: fetch it from the memo if it was written
    /// meanwhile (and end the script), else memoize it.
    Constructed(NodeId),
    /// The end of an object's operations.
    ObjectDone,
    /// The end of a persistent id; restores the node's earlier state.
    PersDone(NodeId, u32),
    /// The end of the item list of a set/frozenset written as `REDUCE` before
    /// protocol 4: close the list, the argument tuple and the call.
    ReducedSetDone(NodeId),
    /// Save the global [`Encoder::globals`]`[i]`, one the encoder writes itself.
    Global(u32),
    /// Close a tuple of this many items that the encoder writes itself (no node), and
    /// memoize it.
    Tuple(u32),
    /// Memoize the object on top of the stack (one the encoder makes itself).
    Memoize,
}

/// The state of one `encode` walk; see the module docs.
pub(crate) struct Encoder<'e, 'v> {
    em: &'e mut Emitter,
    nodes: &'v [Node],
    /// Per node: [`UNSEEN`], its memo index, or [`OPEN`] | memo_frames.
    state: Vec<u32>,
    stack: Vec<Frame>,
    script: Vec<Step>,
    /// Frames on the stack whose node is memoized (list, dict, set, built object):
    /// a tuple reached again with no such frame above its first visit is a cycle that
    /// CPython could not pickle either.
    memo_frames: u32,
    /// Globals the encoder writes that are not nodes of the value (module, name).
    globals: Vec<(String, String)>,
}

fn bad_id(id: NodeId, n: usize) -> Error {
    Error::Encode(format!("node id {} is outside the {n} nodes of the value", id.index()))
}

impl<'e, 'v> Encoder<'e, 'v> {
    /// A walk over `nodes` that writes to `em`.
    pub(crate) fn new(em: &'e mut Emitter, nodes: &'v [Node]) -> Self {
        Encoder {
            em,
            nodes,
            state: vec![UNSEEN; nodes.len()],
            stack: Vec::new(),
            script: Vec::new(),
            memo_frames: 0,
            globals: Vec::new(),
        }
    }

    /// Declares a node as already written with this memo index.
    pub(crate) fn preset(&mut self, id: NodeId, memo_index: u32) {
        if let Some(s) = self.state.get_mut(id.index()) {
            *s = memo_index;
        }
    }

    /// The memo index a node was written with, if it was.
    pub(crate) fn memo_index(&self, id: NodeId) -> Option<u32> {
        self.state.get(id.index()).copied().filter(|&s| s < OPEN)
    }

    /// Saves the node `root` and everything it reaches.
    pub(crate) fn run(&mut self, root: NodeId) -> Result<()> {
        if let Some(f) = self.save(root)? {
            self.stack.push(f);
        }
        while let Some(frame) = self.stack.pop() {
            match frame {
                Frame::List { id, next } => self.resume_list(id, next)?,
                Frame::Dict { id, next, in_value } => self.resume_dict(id, next, in_value)?,
                Frame::Set { id, next } => self.resume_set(id, next)?,
                Frame::Tuple { id, next } => self.resume_tuple(id, next, false)?,
                Frame::FrozenSet { id, next } => self.resume_tuple(id, next, true)?,
                Frame::Script { pos, end, start } => self.resume_script(pos, end, start)?,
            }
        }
        Ok(())
    }

    #[inline]
    fn node(&self, id: NodeId) -> Result<&'v Node> {
        let nodes: &'v [Node] = self.nodes;
        nodes.get(id.index()).ok_or_else(|| bad_id(id, nodes.len()))
    }

    #[inline]
    fn items(&self, id: u32) -> &'v [NodeId] {
        let nodes: &'v [Node] = self.nodes;
        match nodes.get(id as usize) {
            Some(Node::List(v) | Node::Tuple(v) | Node::Set(v) | Node::FrozenSet(v)) => v,
            _ => &[],
        }
    }

    #[inline]
    fn pairs(&self, id: u32) -> &'v [(NodeId, NodeId)] {
        let nodes: &'v [Node] = self.nodes;
        match nodes.get(id as usize) {
            Some(Node::Dict(v)) => v,
            _ => &[],
        }
    }

    #[inline]
    fn set_state(&mut self, id: NodeId, s: u32) {
        if let Some(slot) = self.state.get_mut(id.index()) {
            *slot = s;
        }
    }

    /// Marks a node whose memoization waits for its items; fails on a cycle that
    /// passes through no memoized object.
    fn open(&mut self, id: NodeId, state: u32) -> Result<()> {
        if state != UNSEEN && state & !OPEN == self.memo_frames {
            return Err(Error::Encode(format!(
                "node {} contains itself through tuples, frozensets or object arguments only; \
                 such a cycle cannot be pickled",
                id.index()
            )));
        }
        self.set_state(id, OPEN | self.memo_frames);
        Ok(())
    }

    /// Begins CPython's `save(obj)`: writes a whole atom, string or memo fetch, or the
    /// opening of a container and returns the frame that writes the rest.
    #[inline(always)]
    fn save(&mut self, id: NodeId) -> Result<Option<Frame>> {
        // The common atoms inline; the rest out of line.
        match self.nodes.get(id.index()) {
            Some(Node::Float(v)) => self.em.save_f64(*v),
            Some(Node::Int(v)) => self.em.save_i64(*v),
            Some(Node::Bool(b)) => self.em.save_bool(*b),
            Some(Node::None) => self.em.save_none(),
            _ => return self.save_other(id),
        }
        Ok(None)
    }

    /// [`Encoder::save`] for the other nodes (and ids outside the value).
    #[inline(never)]
    fn save_other(&mut self, id: NodeId) -> Result<Option<Frame>> {
        let node = self.node(id)?;
        if let Node::BigInt(b) = node {
            self.em.save_long_bytes(&b.to_le_twos_complement())?;
            return Ok(None);
        }
        let state = self.state.get(id.index()).copied().unwrap_or(UNSEEN);
        if state < OPEN {
            self.em.save_get(state);
            return Ok(None);
        }
        self.save_object(id, node, state)
    }

    /// [`Encoder::save`] for nodes that are memoized (or may be): not yet in the memo.
    fn save_object(&mut self, id: NodeId, node: &'v Node, state: u32) -> Result<Option<Frame>> {
        let i = id.index() as u32;
        if !matches!(node, Node::Str(_) | Node::Bytes(_) | Node::ByteArray(_) | Node::Global(_)) {
            // The emitter begins the saves of those itself.
            self.em.begin_save();
        }
        match node {
            Node::Str(s) => {
                let idx = self.em.save_str(s.as_surrogatepass())?;
                self.set_state(id, idx);
            }
            Node::Bytes(b) => {
                let idx = self.em.save_bytes(b)?;
                self.set_state(id, idx);
            }
            Node::ByteArray(b) => {
                let idx = self.em.save_bytearray(b)?;
                self.set_state(id, idx);
            }
            Node::List(items) => {
                self.em.op(op::EMPTY_LIST);
                let idx = self.em.memoize()?;
                self.set_state(id, idx);
                if !items.is_empty() {
                    if items.len() > 1 {
                        self.em.op(op::MARK);
                    }
                    self.memo_frames += 1;
                    return Ok(Some(Frame::List { id: i, next: 0 }));
                }
            }
            Node::Dict(pairs) => {
                self.em.op(op::EMPTY_DICT);
                let idx = self.em.memoize()?;
                self.set_state(id, idx);
                if !pairs.is_empty() {
                    if pairs.len() > 1 {
                        self.em.op(op::MARK);
                    }
                    self.memo_frames += 1;
                    return Ok(Some(Frame::Dict { id: i, next: 0, in_value: false }));
                }
            }
            Node::Tuple(items) => {
                if items.is_empty() {
                    self.em.op(op::EMPTY_TUPLE);
                } else {
                    if items.len() > 3 {
                        self.em.op(op::MARK);
                    }
                    self.open(id, state)?;
                    return Ok(Some(Frame::Tuple { id: i, next: 0 }));
                }
            }
            Node::Set(items) if self.em.proto() >= 4 => {
                self.em.op(op::EMPTY_SET);
                let idx = self.em.memoize()?;
                self.set_state(id, idx);
                if !items.is_empty() {
                    self.em.op(op::MARK);
                    self.memo_frames += 1;
                    return Ok(Some(Frame::Set { id: i, next: 0 }));
                }
            }
            Node::FrozenSet(_) if self.em.proto() >= 4 => {
                self.em.op(op::MARK);
                self.open(id, state)?;
                return Ok(Some(Frame::FrozenSet { id: i, next: 0 }));
            }
            Node::Set(items) | Node::FrozenSet(items) => {
                // Before protocol 4: set(list) / frozenset(list) through REDUCE.
                self.open(id, state)?;
                let set = matches!(node, Node::Set(_));
                self.em.save_builtin(if set { Builtin::Set } else { Builtin::FrozenSet })?;
                self.em.begin_save(); // the argument tuple
                self.em.begin_save(); // the list in it
                self.em.op(op::EMPTY_LIST);
                self.em.memoize()?;
                let start = self.script.len() as u32;
                match items.len() {
                    0 => {}
                    1 => self.script.extend(items.iter().map(|&x| Step::Save(x)).chain([Step::Op(op::APPEND)])),
                    _ => {
                        self.em.op(op::MARK);
                        for (n, &x) in items.iter().enumerate() {
                            if n > 0 && n % BATCH == 0 {
                                self.script.extend([Step::Op(op::APPENDS), Step::Op(op::MARK)]);
                            }
                            self.script.push(Step::Save(x));
                        }
                        self.script.push(Step::Op(op::APPENDS));
                    }
                }
                self.script.push(Step::ReducedSetDone(id));
                return Ok(Some(self.script_frame(start)));
            }
            Node::Global(g) => {
                let idx = self.em.save_global(&g.module, &g.name)?;
                self.set_state(id, idx);
            }
            Node::Object(o) => {
                self.open(id, state)?;
                let start = self.script.len() as u32;
                let s = &mut self.script;
                match &o.construct {
                    Construct::Reduce { callable, args } => {
                        s.extend([Step::Save(*callable), Step::Save(*args), Step::Op(op::REDUCE)]);
                    }
                    Construct::NewObj { cls, args } => {
                        s.extend([Step::Save(*cls), Step::Save(*args), Step::Op(op::NEWOBJ)]);
                    }
                    Construct::NewObjEx { cls, args, kwargs } if self.em.proto() >= 4 => {
                        s.extend([Step::Save(*cls), Step::Save(*args), Step::Save(*kwargs), Step::Op(op::NEWOBJ_EX)]);
                    }
                    Construct::NewObjEx { cls, args, kwargs } => {
                        let (cls, args, kwargs) = (*cls, *args, *kwargs);
                        self.new_obj_ex_before_4(id, cls, args, kwargs)?;
                    }
                    Construct::Instantiate { cls, args } => {
                        s.extend([Step::Op(op::MARK), Step::Save(*cls)]);
                        s.extend(args.iter().map(|&a| Step::Save(a)));
                        s.push(Step::Op(op::OBJ));
                    }
                }
                let s = &mut self.script;
                s.push(Step::Constructed(id));
                push_ops(s, &o.ops);
                s.push(Step::ObjectDone);
                return Ok(Some(self.script_frame(start)));
            }
            Node::PersistentId(pid) => {
                self.open(id, state)?;
                let start = self.script.len() as u32;
                self.script.extend([Step::Save(*pid), Step::Op(op::BINPERSID), Step::PersDone(id, state)]);
                return Ok(Some(self.script_frame(start)));
            }
            Node::Buffer { readonly, .. } => {
                if self.em.proto() < 5 {
                    return Err(Error::Encode(format!(
                        "node {} is an out-of-band buffer, which needs protocol 5",
                        id.index()
                    )));
                }
                self.em.op(op::NEXT_BUFFER);
                if *readonly {
                    self.em.op(op::READONLY_BUFFER);
                }
            }
            Node::Extension(code) => match u32::try_from(*code) {
                Ok(c @ 1..=0xff) => self.em.raw(&[op::EXT1, c as u8]),
                Ok(c @ 0x100..=0xffff) => {
                    let b = (c as u16).to_le_bytes();
                    self.em.raw(&[op::EXT2, b[0], b[1]]);
                }
                Ok(c) if c > 0 => {
                    let b = c.to_le_bytes();
                    self.em.raw(&[op::EXT4, b[0], b[1], b[2], b[3]]);
                }
                _ => return Err(Error::Encode(format!("extension code {code} is not positive"))),
            },
            // Atoms are handled by `save` and `save_other`.
            Node::None | Node::Bool(_) | Node::Int(_) | Node::BigInt(_) | Node::Float(_) => {}
        }
        Ok(None)
    }

    /// `cls.__new__(cls, *args, **kwargs)` before protocol 4, which has no `NEWOBJ_EX`:
    /// as CPython's pickler writes `copyreg.__newobj_ex__` then, the call of
    /// `functools.partial(cls.__new__, cls, *args, **kwargs)` with no arguments (the
    /// partial object built by `REDUCE` and given its state by `BUILD`). `cls.__new__`
    /// is written as the global `cls.__new__`, which protocols 2 and 3 spell
    /// `getattr(cls, '__new__')`: CPython writes exactly that for a class that defines
    /// `__new__`, and `getattr(object, '__new__')`, the same function, for one that
    /// inherits it. Without keyword arguments it is `NEWOBJ`, as CPython writes it.
    fn new_obj_ex_before_4(&mut self, id: NodeId, cls: NodeId, args: NodeId, kwargs: NodeId) -> Result<()> {
        let positional = match self.node(args)? {
            Node::Tuple(items) => items,
            other => {
                return Err(Error::Encode(format!(
                    "node {}: NEWOBJ_EX arguments must be a tuple, not a {}",
                    id.index(),
                    other.type_name()
                )));
            }
        };
        if matches!(self.node(kwargs)?, Node::Dict(pairs) if pairs.is_empty()) {
            self.script.extend([Step::Save(cls), Step::Save(args), Step::Op(op::NEWOBJ)]);
            return Ok(());
        }
        let Node::Global(g) = self.node(cls)? else {
            return Err(Error::Encode(format!(
                "node {} is built with NEWOBJ_EX (keyword arguments to __new__) of a class that is not a \
                 global, which only protocol 4 or higher can write",
                id.index()
            )));
        };
        let partial = self.globals.len() as u32;
        self.globals.push(("functools".into(), "partial".into()));
        self.globals.push((g.module.clone(), format!("{}.__new__", g.name)));
        let new = partial + 1;
        let n = positional.len() as u32 + 1;
        let s = &mut self.script;
        // partial(cls.__new__), memoized, then its state:
        // (cls.__new__, (cls, *args), kwargs, None), then the call with no arguments.
        s.extend([Step::Global(partial), Step::Global(new), Step::Op(op::TUPLE1), Step::Memoize]);
        s.extend([Step::Op(op::REDUCE), Step::Memoize, Step::Op(op::MARK), Step::Global(new)]);
        if n > 3 {
            s.push(Step::Op(op::MARK));
        }
        s.push(Step::Save(cls));
        s.extend(positional.iter().map(|&a| Step::Save(a)));
        s.extend([Step::Tuple(n), Step::Save(kwargs), Step::Op(op::NONE), Step::Op(op::TUPLE), Step::Memoize]);
        s.extend([Step::Op(op::BUILD), Step::Op(op::EMPTY_TUPLE), Step::Op(op::REDUCE)]);
        Ok(())
    }

    fn script_frame(&self, start: u32) -> Frame {
        Frame::Script { pos: start, end: self.script.len() as u32, start }
    }

    fn resume_list(&mut self, id: u32, mut next: u32) -> Result<()> {
        let items = self.items(id);
        let len = items.len();
        while let Some(&child) = items.get(next as usize) {
            if next > 0 && (next as usize).is_multiple_of(BATCH) {
                self.em.raw(&[op::APPENDS, op::MARK]);
            }
            next += 1;
            if let Some(f) = self.save(child)? {
                self.stack.push(Frame::List { id, next });
                self.stack.push(f);
                return Ok(());
            }
        }
        self.em.op(if len == 1 { op::APPEND } else { op::APPENDS });
        self.memo_frames -= 1;
        Ok(())
    }

    fn resume_dict(&mut self, id: u32, mut next: u32, mut in_value: bool) -> Result<()> {
        let pairs = self.pairs(id);
        let len = pairs.len();
        while let Some(&(k, v)) = pairs.get(next as usize) {
            if !in_value {
                if next > 0 && (next as usize).is_multiple_of(BATCH) {
                    self.em.raw(&[op::SETITEMS, op::MARK]);
                }
                if let Some(f) = self.save(k)? {
                    self.stack.push(Frame::Dict { id, next, in_value: true });
                    self.stack.push(f);
                    return Ok(());
                }
            }
            in_value = false;
            next += 1;
            if let Some(f) = self.save(v)? {
                self.stack.push(Frame::Dict { id, next, in_value: false });
                self.stack.push(f);
                return Ok(());
            }
        }
        if len == 1 {
            self.em.op(op::SETITEM);
        } else {
            self.em.op(op::SETITEMS);
            if len.is_multiple_of(BATCH) {
                // CPython's loop writes an empty batch after a full last one.
                self.em.raw(&[op::MARK, op::SETITEMS]);
            }
        }
        self.memo_frames -= 1;
        Ok(())
    }

    fn resume_set(&mut self, id: u32, mut next: u32) -> Result<()> {
        let items = self.items(id);
        let len = items.len();
        while let Some(&child) = items.get(next as usize) {
            if next > 0 && (next as usize).is_multiple_of(BATCH) {
                self.em.raw(&[op::ADDITEMS, op::MARK]);
            }
            next += 1;
            if let Some(f) = self.save(child)? {
                self.stack.push(Frame::Set { id, next });
                self.stack.push(f);
                return Ok(());
            }
        }
        self.em.op(op::ADDITEMS);
        if len.is_multiple_of(BATCH) {
            self.em.raw(&[op::MARK, op::ADDITEMS]);
        }
        self.memo_frames -= 1;
        Ok(())
    }

    fn resume_tuple(&mut self, id: u32, mut next: u32, frozen: bool) -> Result<()> {
        let items = self.items(id);
        let len = items.len();
        while let Some(&child) = items.get(next as usize) {
            next += 1;
            if let Some(f) = self.save(child)? {
                let me = if frozen { Frame::FrozenSet { id, next } } else { Frame::Tuple { id, next } };
                self.stack.push(me);
                self.stack.push(f);
                return Ok(());
            }
        }
        let node = NodeId(id);
        let state = self.state.get(id as usize).copied().unwrap_or(UNSEEN);
        if state < OPEN {
            // Written again inside itself (a cycle): drop this copy, fetch that one.
            if frozen || len > 3 {
                self.em.op(op::POP_MARK);
            } else {
                for _ in 0..len {
                    self.em.op(op::POP);
                }
            }
            self.em.get(state);
            return Ok(());
        }
        self.em.op(match (frozen, len) {
            (true, _) => op::FROZENSET,
            (false, 1) => op::TUPLE1,
            (false, 2) => op::TUPLE2,
            (false, 3) => op::TUPLE3,
            _ => op::TUPLE,
        });
        let idx = self.em.memoize()?;
        self.set_state(node, idx);
        Ok(())
    }

    fn resume_script(&mut self, mut pos: u32, end: u32, start: u32) -> Result<()> {
        while pos < end {
            let Some(&step) = self.script.get(pos as usize) else { break };
            pos += 1;
            match step {
                Step::Save(child) => {
                    if let Some(f) = self.save(child)? {
                        self.stack.push(Frame::Script { pos, end, start });
                        self.stack.push(f);
                        return Ok(());
                    }
                }
                Step::Op(code) => self.em.op(code),
                Step::Constructed(id) => {
                    let state = self.state.get(id.index()).copied().unwrap_or(UNSEEN);
                    if state < OPEN {
                        self.em.op(op::POP);
                        self.em.get(state);
                        break;
                    }
                    let idx = self.em.memoize()?;
                    self.set_state(id, idx);
                    self.memo_frames += 1;
                }
                Step::ObjectDone => self.memo_frames -= 1,
                Step::Global(i) => {
                    let (module, name) = self.globals.get(i as usize).cloned().unwrap_or_default();
                    self.em.save_global(&module, &name)?;
                }
                Step::Tuple(n) => {
                    self.em.op(match n {
                        1 => op::TUPLE1,
                        2 => op::TUPLE2,
                        3 => op::TUPLE3,
                        _ => op::TUPLE,
                    });
                    self.em.memoize()?;
                }
                Step::Memoize => {
                    self.em.memoize()?;
                }
                Step::PersDone(id, earlier) => self.set_state(id, earlier),
                Step::ReducedSetDone(id) => {
                    self.em.op(op::TUPLE1);
                    self.em.memoize()?;
                    self.em.op(op::REDUCE);
                    let state = self.state.get(id.index()).copied().unwrap_or(UNSEEN);
                    if state < OPEN {
                        self.em.op(op::POP);
                        self.em.get(state);
                    } else {
                        let idx = self.em.memoize()?;
                        self.set_state(id, idx);
                    }
                }
            }
        }
        self.script.truncate(start as usize);
        Ok(())
    }
}

/// Appends the steps that replay an object's operations, batched as CPython's
/// `batch_list`/`batch_dict` write the list and dict items of a `__reduce__` value.
fn push_ops(s: &mut Vec<Step>, ops: &[ObjectOp]) {
    let mut i = 0;
    while let Some(first) = ops.get(i) {
        let run = ops[i..].iter().take_while(|o| std::mem::discriminant(*o) == std::mem::discriminant(first)).count();
        match first {
            ObjectOp::Build(state) => {
                s.extend([Step::Save(*state), Step::Op(op::BUILD)]);
                i += 1;
                continue;
            }
            ObjectOp::Append(_) | ObjectOp::SetItem(..) | ObjectOp::AddItem(_) => {}
        }
        for chunk in ops[i..i + run].chunks(BATCH) {
            let single = chunk.len() == 1 && !matches!(first, ObjectOp::AddItem(_));
            if !single {
                s.push(Step::Op(op::MARK));
            }
            for o in chunk {
                match *o {
                    ObjectOp::Append(x) | ObjectOp::AddItem(x) => s.push(Step::Save(x)),
                    ObjectOp::SetItem(k, v) => s.extend([Step::Save(k), Step::Save(v)]),
                    ObjectOp::Build(_) => {}
                }
            }
            s.push(Step::Op(match (first, single) {
                (ObjectOp::Append(_), true) => op::APPEND,
                (ObjectOp::Append(_), false) => op::APPENDS,
                (ObjectOp::SetItem(..), true) => op::SETITEM,
                (ObjectOp::SetItem(..), false) => op::SETITEMS,
                _ => op::ADDITEMS,
            }));
        }
        i += run;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{Global, Object};

    fn enc(v: &Value, p: u8) -> Result<Vec<u8>> {
        encode(v, p)
    }

    fn encode_error(v: &Value, p: u8) -> String {
        match enc(v, p) {
            Err(Error::Encode(m)) => m,
            other => panic!("expected an encode error, got {other:?}"),
        }
    }

    #[test]
    fn bad_ids_are_errors_not_panics() {
        for node in [
            Node::List(vec![NodeId(7)]),
            Node::Tuple(vec![NodeId(7)]),
            Node::Dict(vec![(NodeId(0), NodeId(9))]),
            Node::Set(vec![NodeId(7)]),
            Node::FrozenSet(vec![NodeId(7)]),
            Node::PersistentId(NodeId(7)),
            Node::Object(Box::new(Object {
                construct: Construct::Reduce { callable: NodeId(5), args: NodeId(6) },
                ops: vec![],
            })),
        ] {
            let v = Value::from_parts_unchecked(vec![node], NodeId(0));
            for p in 2..=5 {
                assert!(encode_error(&v, p).contains("outside"), "p{p}");
            }
        }
        let v = Value::from_parts_unchecked(vec![Node::None], NodeId(3));
        assert!(encode_error(&v, 4).contains("outside"));
    }

    #[test]
    fn unsupported_protocols_are_errors() {
        for p in [0, 1, 6, 255] {
            assert!(encode_error(&Value::new(Node::None), p).contains("protocol"));
        }
    }

    #[test]
    fn cycles_through_tuples_only_are_errors() {
        // t = (t,) and t = (u,), u = (t, 1)
        let v = Value::from_parts_unchecked(vec![Node::Tuple(vec![NodeId(0)])], NodeId(0));
        for p in 2..=5 {
            assert!(encode_error(&v, p).contains("cannot be pickled"));
        }
        let v = Value::from_parts_unchecked(
            vec![Node::Tuple(vec![NodeId(1)]), Node::FrozenSet(vec![NodeId(0), NodeId(2)]), Node::Int(1)],
            NodeId(0),
        );
        for p in 2..=5 {
            assert!(encode_error(&v, p).contains("cannot be pickled"));
        }
        let v = Value::from_parts_unchecked(vec![Node::PersistentId(NodeId(0))], NodeId(0));
        assert!(encode_error(&v, 4).contains("cannot be pickled"));
        // Through a list it is fine: t = ([t],)
        let v = Value::from_parts_unchecked(vec![Node::Tuple(vec![NodeId(1)]), Node::List(vec![NodeId(0)])], NodeId(0));
        let bytes = enc(&v, 2).unwrap_or_else(|e| panic!("{e}"));
        // CPython 3.11: t = ([],); t[0].append(t); pickle.dumps(t, 2)
        assert_eq!(bytes, b"\x80\x02]q\x00h\x00\x85q\x01a0h\x01.");
    }

    #[test]
    fn recursive_frozenset_pops_its_mark() {
        // f = frozenset({o}) where o is an object whose state is [f].
        let nodes = vec![
            Node::FrozenSet(vec![NodeId(1)]),
            Node::Object(Box::new(Object {
                construct: Construct::NewObj { cls: NodeId(2), args: NodeId(3) },
                ops: vec![ObjectOp::Build(NodeId(4))],
            })),
            Node::Global(Box::new(Global { module: "m".into(), name: "C".into() })),
            Node::Tuple(vec![]),
            Node::List(vec![NodeId(0)]),
        ];
        let v = Value::from_parts_unchecked(nodes, NodeId(0));
        let bytes = enc(&v, 4).unwrap_or_else(|e| panic!("{e}"));
        // MARK, the object (its state list holds the frozenset, written in full inside),
        // then POP_MARK and a GET of the inner frozenset.
        assert!(bytes.ends_with(b"(h\x03\x91\x94ab1h\x05."), "{bytes:?}");
        let back = crate::decode(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.to_string(), v.to_string());
    }

    #[test]
    fn protocol_limits_are_errors() {
        let obj = |construct| Node::Object(Box::new(Object { construct, ops: vec![] }));
        let nodes = vec![
            obj(Construct::NewObjEx { cls: NodeId(1), args: NodeId(2), kwargs: NodeId(3) }),
            Node::Global(Box::new(Global { module: "m".into(), name: "C".into() })),
            Node::Tuple(vec![]),
            Node::Dict(vec![]),
        ];
        let v = Value::from_parts_unchecked(nodes, NodeId(0));
        // No keyword arguments: NEWOBJ before protocol 4, as CPython writes it.
        assert_eq!(enc(&v, 3).unwrap_or_default(), b"\x80\x03cm\nC\nq\x00)\x81q\x01.");
        assert!(enc(&v, 4).is_ok());
        // Keyword arguments to a class that is not a global: only protocol 4 says it.
        let nodes = vec![
            obj(Construct::NewObjEx { cls: NodeId(1), args: NodeId(2), kwargs: NodeId(3) }),
            obj(Construct::Reduce { callable: NodeId(4), args: NodeId(2) }),
            Node::Tuple(vec![]),
            Node::Dict(vec![(NodeId(5), NodeId(5))]),
            Node::Global(Box::new(Global { module: "m".into(), name: "f".into() })),
            Node::Str("k".into()),
        ];
        let v = Value::from_parts_unchecked(nodes, NodeId(0));
        assert!(encode_error(&v, 3).contains("NEWOBJ_EX"));
        assert!(enc(&v, 4).is_ok());

        let g = |m: &str, n: &str| Node::Global(Box::new(Global { module: m.into(), name: n.into() }));
        let v = Value::new(g("módulo", "C"));
        assert!(encode_error(&v, 2).contains("ASCII"));
        assert!(enc(&v, 3).is_ok());
        let v = Value::new(g("m", "a\nb"));
        assert!(encode_error(&v, 3).contains("GLOBAL"));
        for code in [0, -5] {
            assert!(encode_error(&Value::new(Node::Extension(code)), 2).contains("not positive"));
        }
        assert_eq!(enc(&Value::new(Node::Extension(0x1234)), 2).unwrap_or_default(), b"\x80\x02\x83\x34\x12.");
    }

    #[test]
    fn object_operations_are_batched_like_cpython() {
        // An object with 1001 appends, 2 set items, one add item and a state.
        let mut nodes =
            vec![Node::Global(Box::new(Global { module: "m".into(), name: "C".into() })), Node::Tuple(vec![])];
        let mut ops: Vec<ObjectOp> = Vec::new();
        for i in 0..1001 {
            nodes.push(Node::Int(i));
            ops.push(ObjectOp::Append(NodeId(nodes.len() as u32 - 1)));
        }
        ops.push(ObjectOp::SetItem(NodeId(2), NodeId(3)));
        ops.push(ObjectOp::SetItem(NodeId(4), NodeId(5)));
        ops.push(ObjectOp::AddItem(NodeId(2)));
        ops.push(ObjectOp::Build(NodeId(1)));
        nodes.push(Node::Object(Box::new(Object {
            construct: Construct::Reduce { callable: NodeId(0), args: NodeId(1) },
            ops,
        })));
        let root = NodeId(nodes.len() as u32 - 1);
        let v = Value::from_parts_unchecked(nodes, root);
        let bytes = enc(&v, 2).unwrap_or_else(|e| panic!("{e}"));
        // ... 1000 items APPENDS, then the 1001st alone with APPEND, then the items.
        assert!(bytes.ends_with(b"eM\xe8\x03a(K\x00K\x01K\x02K\x03u(K\x00\x90)b."), "{:?}", &bytes[bytes.len() - 40..]);
        let back = crate::decode(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert!(back.same_as(&v) || back.to_string() == v.to_string());
    }
}
