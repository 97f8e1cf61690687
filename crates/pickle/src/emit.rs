//! The opcode writer shared by the encoder ([`super::encode`]) and the serde serializer
//! ([`super::ser`]): output buffer, protocol-4 framing, memo numbering, and the objects
//! CPython's pickler treats as one object (singletons, synthetic globals).
//!
//! Invariant: the bytes written are what CPython 3.11's C pickler (`_pickle.c`) writes
//! for the same sequence of `save()` calls. In particular every `save()` of a value —
//! an atom, a memo fetch, a container, or an object the pickler makes up itself (the
//! arguments of a `REDUCE`) — starts with [`Emitter::begin_save`], which is where the
//! C pickler closes a frame of 64 KiB or more (`_Pickler_OpcodeBoundary`, the first
//! statement of its `save()`), and every payload of 64 KiB or more goes outside any
//! frame (`_Pickler_write_bytes`). The methods named `save_*` begin their own save.
//!
//! Object identity follows what CPython's `pickle.loads` produces, so that
//! `pickle.dumps(pickle.loads(ours)) == ours`: the empty `str` and the 256 one-character
//! `str`s below U+0100 are singletons, the empty `bytes` is a singleton, and so is every
//! one-byte `bytes` at protocol 2 (where it is loaded through `_codecs.encode`). A global
//! is one object per module and name.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::compat;
use super::int::i64_to_le_twos_complement;
use super::opcodes as op;
use crate::{Error, Result};

/// A frame is committed at the first opcode boundary where its payload reaches this
/// size, and payloads of at least this size are written outside frames.
const FRAME_TARGET: usize = 64 * 1024;
/// A frame with a smaller payload gets no `FRAME` header.
const FRAME_MIN: usize = 4;
/// `FRAME` opcode and its 8-byte length.
const FRAME_HEADER: usize = 9;
/// Items per `APPENDS` / `SETITEMS` / `ADDITEMS` batch.
pub(crate) const BATCH: usize = 1000;
/// Memo indices stay below this, so that callers can use the top bit of a `u32`.
pub(crate) const MEMO_LIMIT: u32 = 0x7fff_ffff;
const NOT_MEMOIZED: u32 = u32::MAX;

/// Globals the pickler itself refers to (CPython's own objects, one of each).
#[derive(Clone, Copy)]
pub(crate) enum Builtin {
    /// `_codecs.encode`, for `bytes` at protocol 2.
    CodecsEncode = 0,
    /// `builtins.bytes`, for empty `bytes` at protocol 2.
    Bytes = 1,
    /// `builtins.bytearray`, before protocol 5.
    ByteArray = 2,
    /// `builtins.set`, before protocol 4.
    Set = 3,
    /// `builtins.frozenset`, before protocol 4.
    FrozenSet = 4,
    /// `builtins.getattr`, for nested class names before protocol 4.
    Getattr = 5,
}

const BUILTINS: [(&str, &str); 6] = [
    ("_codecs", "encode"),
    ("builtins", "bytes"),
    ("builtins", "bytearray"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "getattr"),
];

/// Memo indices of CPython's singletons, allocated on first use.
struct Singletons {
    /// `''` at 0, then the one-character strs U+0000..U+00FF at 1 + code point.
    strs: [u32; 257],
    /// `b''`.
    empty_bytes: u32,
    /// One-byte bytes, protocol 2 only.
    byte: [u32; 256],
}

/// Memo indices of objects shared by identity other than singletons, allocated on
/// first use (plain data needs none of them).
struct Shared {
    builtins: [u32; 6],
    /// The `'latin1'` str of protocol-2 bytes.
    latin1: u32,
    /// Other globals, keyed `module\nname`.
    globals: HashMap<Box<str>, u32>,
    /// The module names of globals (protocol 4+).
    modules: HashMap<Box<str>, u32>,
}

/// Writes opcodes for one pickle. See the module docs for the invariant.
pub(crate) struct Emitter {
    out: Vec<u8>,
    proto: u8,
    /// True at protocol 4+ when no frame is open: the next write opens one.
    frame_pending: bool,
    /// Position of the open frame's 9 reserved header bytes.
    frame_start: usize,
    /// Output length at which the open frame is committed at the next boundary;
    /// `usize::MAX` when no frame is open.
    commit_at: usize,
    memo_len: u32,
    /// CPython's "fast mode" (`Pickler.fast = True`): nothing is memoized, so nothing is
    /// fetched from the memo either; every object reached again is written again.
    fast: bool,
    singletons: Option<Box<Singletons>>,
    shared: Option<Box<Shared>>,
    /// serde's field and variant names (names that are singletons are in
    /// `singletons` as well, with the same index).
    names: Names,
}

/// Memo indices of serde's field and variant names: a short list (most values have
/// few distinct names, and each pickle starts with none), then a map. The names are
/// program constants, so the map's fast hash is safe.
#[derive(Default)]
struct Names {
    few: Vec<(&'static str, u32)>,
    many: HashMap<&'static str, u32, BuildHasherDefault<FxHasher>>,
}

impl Names {
    const FEW: usize = 16;

    #[inline]
    fn get(&self, name: &str) -> Option<u32> {
        if !self.many.is_empty() {
            return self.many.get(name).copied();
        }
        // The same constant is usually the same pointer; compare text otherwise.
        self.few
            .iter()
            .find(|(n, _)| (n.as_ptr() == name.as_ptr() && n.len() == name.len()) || *n == name)
            .map(|&(_, idx)| idx)
    }

    fn insert(&mut self, name: &'static str, idx: u32) {
        if idx == NOT_MEMOIZED {
            return;
        }
        if self.many.is_empty() && self.few.len() < Self::FEW {
            self.few.push((name, idx));
        } else {
            self.many.extend(self.few.drain(..));
            self.many.insert(name, idx);
        }
    }
}

impl Emitter {
    /// Starts a pickle: writes the `PROTO` header.
    ///
    /// # Errors
    /// [`Error::Encode`] for a protocol other than 2–5.
    pub(crate) fn new(proto: u8) -> Result<Emitter> {
        Self::with_capacity(proto, 256)
    }

    /// [`Emitter::new`] with an output buffer of `capacity` bytes.
    ///
    /// # Errors
    /// [`Error::Encode`] for a protocol other than 2–5.
    pub(crate) fn with_capacity(proto: u8, capacity: usize) -> Result<Emitter> {
        if !(2..=op::HIGHEST_PROTOCOL).contains(&proto) {
            return Err(Error::Encode(format!("protocol {proto} is not supported (2 to 5 are)")));
        }
        let mut out = Vec::with_capacity(capacity.max(16));
        out.extend_from_slice(&[op::PROTO, proto]);
        Ok(Emitter {
            out,
            proto,
            frame_pending: proto >= 4,
            frame_start: 0,
            commit_at: usize::MAX,
            memo_len: 0,
            fast: false,
            singletons: None,
            shared: None,
            names: Names::default(),
        })
    }

    /// Switches to CPython's fast mode (see [`Emitter::fast`]); only for values without
    /// cycles.
    pub(crate) fn set_fast(&mut self) {
        self.fast = true;
    }

    /// The protocol being written.
    #[inline]
    pub(crate) fn proto(&self) -> u8 {
        self.proto
    }

    /// Writes `STOP`, commits the last frame and returns the pickle.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.op(op::STOP);
        self.commit_frame();
        self.out
    }

    // ----- raw output and framing -----

    #[inline]
    fn open_frame_if_needed(&mut self) {
        if self.frame_pending {
            self.frame_pending = false;
            self.frame_start = self.out.len();
            self.out.extend_from_slice(&[0u8; FRAME_HEADER]);
            self.commit_at = self.frame_start + FRAME_HEADER + FRAME_TARGET;
        }
    }

    /// Writes one opcode byte.
    #[inline]
    pub(crate) fn op(&mut self, code: u8) {
        self.open_frame_if_needed();
        self.out.push(code);
    }

    /// Writes bytes (opcodes and short arguments).
    #[inline]
    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.open_frame_if_needed();
        self.out.extend_from_slice(bytes);
    }

    /// Writes a header and its payload; a payload of 64 KiB or more goes outside any
    /// frame, after committing the current one.
    #[inline]
    fn payload(&mut self, header: &[u8], data: &[u8]) {
        if data.len() >= FRAME_TARGET {
            self.commit_frame();
        } else {
            self.open_frame_if_needed();
        }
        self.out.reserve(header.len() + data.len());
        // Headers and short strings are the common case; a byte loop beats a call to
        // memcpy.
        self.out.extend(header.iter().copied());
        if data.len() <= 16 {
            self.out.extend(data.iter().copied());
        } else {
            self.out.extend_from_slice(data);
        }
    }

    /// The start of a `save()`: commits the open frame once it holds 64 KiB or more.
    #[inline]
    pub(crate) fn begin_save(&mut self) {
        if self.out.len() >= self.commit_at {
            self.commit_frame();
        }
    }

    /// Closes the open frame: fills in its header, or removes the header when the
    /// payload is under 4 bytes.
    fn commit_frame(&mut self) {
        if self.proto < 4 || self.frame_pending {
            return;
        }
        let start = self.frame_start;
        let len = self.out.len().saturating_sub(start + FRAME_HEADER);
        if len >= FRAME_MIN {
            if let Some(h) = self.out.get_mut(start..start + FRAME_HEADER) {
                h[0] = op::FRAME;
                h[1..].copy_from_slice(&(len as u64).to_le_bytes());
            }
        } else {
            self.out.copy_within(start + FRAME_HEADER.., start);
            self.out.truncate(start + len);
        }
        self.frame_pending = true;
        self.commit_at = usize::MAX;
    }

    // ----- memo -----

    /// Memoizes the object on top of the stack: `MEMOIZE` (protocol 4+) or
    /// `BINPUT`/`LONG_BINPUT`. Returns its memo index.
    ///
    /// # Errors
    /// [`Error::Encode`] past 2^31 − 1 memoized objects.
    #[inline]
    pub(crate) fn memoize(&mut self) -> Result<u32> {
        if self.fast {
            return Ok(NOT_MEMOIZED);
        }
        let idx = self.memo_len;
        if idx >= MEMO_LIMIT {
            return Err(Error::Encode(format!("more than {MEMO_LIMIT} objects to memoize")));
        }
        self.memo_len += 1;
        if self.proto >= 4 {
            self.op(op::MEMOIZE);
        } else if idx < 256 {
            self.raw(&[op::BINPUT, idx as u8]);
        } else {
            let b = idx.to_le_bytes();
            self.raw(&[op::LONG_BINPUT, b[0], b[1], b[2], b[3]]);
        }
        Ok(idx)
    }

    /// Fetches a memoized object: `BINGET` or `LONG_BINGET`.
    #[inline]
    pub(crate) fn get(&mut self, idx: u32) {
        if idx < 256 {
            self.raw(&[op::BINGET, idx as u8]);
        } else {
            let b = idx.to_le_bytes();
            self.raw(&[op::LONG_BINGET, b[0], b[1], b[2], b[3]]);
        }
    }

    /// Fetches a memoized object as a complete `save()`.
    #[inline]
    pub(crate) fn save_get(&mut self, idx: u32) {
        self.begin_save();
        self.get(idx);
    }

    fn shared(&mut self) -> &mut Shared {
        self.shared.get_or_insert_with(|| {
            Box::new(Shared {
                builtins: [NOT_MEMOIZED; 6],
                latin1: NOT_MEMOIZED,
                globals: HashMap::new(),
                modules: HashMap::new(),
            })
        })
    }

    fn singletons(&mut self) -> &mut Singletons {
        self.singletons.get_or_insert_with(|| {
            Box::new(Singletons { strs: [NOT_MEMOIZED; 257], empty_bytes: NOT_MEMOIZED, byte: [NOT_MEMOIZED; 256] })
        })
    }

    // ----- atoms (never memoized) -----

    /// `None`.
    #[inline]
    pub(crate) fn save_none(&mut self) {
        self.begin_save();
        self.op(op::NONE);
    }

    /// `True` / `False`.
    #[inline]
    pub(crate) fn save_bool(&mut self, v: bool) {
        self.begin_save();
        self.op(if v { op::NEWTRUE } else { op::NEWFALSE });
    }

    /// An int: `BININT1`, `BININT2`, `BININT` or `LONG1`, as CPython chooses.
    #[inline]
    pub(crate) fn save_i64(&mut self, v: i64) {
        self.begin_save();
        if let Ok(small) = i32::try_from(v) {
            let b = small.to_le_bytes();
            if b[2] != 0 || b[3] != 0 {
                self.raw(&[op::BININT, b[0], b[1], b[2], b[3]]);
            } else if b[1] != 0 {
                self.raw(&[op::BININT2, b[0], b[1]]);
            } else {
                self.raw(&[op::BININT1, b[0]]);
            }
        } else {
            // The bytes of `i64_to_le_twos_complement`, without allocating.
            let n = twos_complement_len(i128::from(v));
            let b = v.to_le_bytes();
            let bytes = b.get(..n).unwrap_or(&b);
            debug_assert_eq!(bytes, i64_to_le_twos_complement(v).as_slice());
            self.raw(&[op::LONG1, n as u8]);
            self.raw(bytes);
        }
    }

    /// An int from a 128-bit value.
    pub(crate) fn save_i128(&mut self, v: i128) {
        if let Ok(small) = i64::try_from(v) {
            return self.save_i64(small);
        }
        let n = twos_complement_len(v);
        let b = v.to_le_bytes();
        self.begin_save();
        self.raw(&[op::LONG1, n as u8]);
        self.raw(b.get(..n).unwrap_or(&b));
    }

    /// An int from an unsigned 128-bit value.
    pub(crate) fn save_u128(&mut self, v: u128) {
        if let Ok(signed) = i128::try_from(v) {
            return self.save_i128(signed);
        }
        // Above i128::MAX: 16 bytes and a zero sign byte.
        self.begin_save();
        self.raw(&[op::LONG1, 17]);
        self.raw(&v.to_le_bytes());
        self.raw(&[0]);
    }

    /// An int given as CPython's `encode_long` bytes (little-endian two's complement,
    /// minimal length): `LONG1` or `LONG4`.
    pub(crate) fn save_long_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.begin_save();
        if let Ok(n) = u8::try_from(bytes.len()) {
            self.raw(&[op::LONG1, n]);
        } else {
            let n = i32::try_from(bytes.len()).map_err(|_| Error::Encode("int is too large to pickle".into()))?;
            self.op(op::LONG4);
            self.raw(&n.to_le_bytes());
        }
        self.raw(bytes);
        Ok(())
    }

    /// A float: `BINFLOAT`, big-endian, bits kept (NaN payloads, `-0.0`).
    #[inline]
    pub(crate) fn save_f64(&mut self, v: f64) {
        self.begin_save();
        let b = v.to_be_bytes();
        self.raw(&[op::BINFLOAT, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    }

    // ----- str -----

    /// Writes a str's opcode and payload (`utf-8`/`surrogatepass` bytes), unmemoized.
    fn write_str(&mut self, data: &[u8]) -> Result<()> {
        let n = data.len();
        if n <= 0xff && self.proto >= 4 {
            self.payload(&[op::SHORT_BINUNICODE, n as u8], data);
        } else if let Ok(n32) = u32::try_from(n) {
            let b = n32.to_le_bytes();
            self.payload(&[op::BINUNICODE, b[0], b[1], b[2], b[3]], data);
        } else if self.proto >= 4 {
            let mut h = [op::BINUNICODE8; 9];
            h[1..].copy_from_slice(&(n as u64).to_le_bytes());
            self.payload(&h, data);
        } else {
            return Err(Error::Encode("a str of 4 GiB or more needs protocol 4 or higher".into()));
        }
        Ok(())
    }

    /// Saves a str object met for the first time (or a singleton), memoizes it and
    /// returns its memo index. `data` is its `utf-8`/`surrogatepass` encoding.
    ///
    /// # Errors
    /// [`Error::Encode`] for a str too long for the protocol, or memo exhaustion.
    #[inline]
    pub(crate) fn save_str(&mut self, data: &[u8]) -> Result<u32> {
        self.begin_save();
        match str_singleton(data) {
            None => {
                self.write_str(data)?;
                self.memoize()
            }
            Some(slot) => self.save_singleton_str(slot, data),
        }
    }

    #[cold]
    fn save_singleton_str(&mut self, slot: usize, data: &[u8]) -> Result<u32> {
        let known = self.singletons().strs.get(slot).copied().unwrap_or(NOT_MEMOIZED);
        if known != NOT_MEMOIZED {
            self.get(known);
            return Ok(known);
        }
        self.write_str(data)?;
        let idx = self.memoize()?;
        if let Some(s) = self.singletons().strs.get_mut(slot) {
            *s = idx;
        }
        Ok(idx)
    }

    /// Saves the module name of a global: one str object per module within the
    /// pickle, as for Python classes (whose `__module__` is one object). Returns its
    /// memo index.
    fn save_module_str(&mut self, s: &str) -> Result<u32> {
        if str_singleton(s.as_bytes()).is_none() {
            if let Some(&idx) = self.shared.as_ref().and_then(|sh| sh.modules.get(s)) {
                self.save_get(idx);
                return Ok(idx);
            }
            let idx = self.save_str(s.as_bytes())?;
            if idx != NOT_MEMOIZED {
                self.shared().modules.insert(s.into(), idx);
            }
            Ok(idx)
        } else {
            self.save_str(s.as_bytes())
        }
    }

    /// Saves a serde field or variant name: one str object per name within the pickle.
    /// Returns its memo index.
    ///
    /// # Errors
    /// As [`Emitter::save_str`].
    #[inline]
    pub(crate) fn save_name(&mut self, name: &'static str) -> Result<u32> {
        if let Some(idx) = self.names.get(name) {
            self.save_get(idx);
            return Ok(idx);
        }
        let idx = self.save_str(name.as_bytes())?;
        self.names.insert(name, idx);
        Ok(idx)
    }

    /// The memo index of a serde field or variant name, if it was written.
    pub(crate) fn name_index(&self, name: &str) -> Option<u32> {
        self.names.get(name)
    }

    /// Records that a serde field or variant name was written with this memo index.
    pub(crate) fn set_name_index(&mut self, name: &'static str, idx: u32) {
        if self.names.get(name).is_none() {
            self.names.insert(name, idx);
        }
    }

    // ----- bytes and bytearray -----

    /// Saves a bytes object met for the first time (or a singleton) and returns its
    /// memo index. Protocol 3+: `SHORT_BINBYTES`/`BINBYTES`/`BINBYTES8`; protocol 2:
    /// `_codecs.encode(text, 'latin1')` (`bytes()` when empty), as CPython writes it.
    ///
    /// # Errors
    /// [`Error::Encode`] for bytes too long for the protocol, or memo exhaustion.
    pub(crate) fn save_bytes(&mut self, data: &[u8]) -> Result<u32> {
        self.begin_save();
        let singleton = data.is_empty() || (data.len() == 1 && self.proto < 3);
        if !singleton {
            return self.write_bytes_object(data);
        }
        let known = self.bytes_singleton(data);
        if known != NOT_MEMOIZED {
            self.get(known);
            return Ok(known);
        }
        let idx = self.write_bytes_object(data)?;
        let s = self.singletons();
        match data.first() {
            None => s.empty_bytes = idx,
            Some(&b) => s.byte[usize::from(b)] = idx,
        }
        Ok(idx)
    }

    fn bytes_singleton(&mut self, data: &[u8]) -> u32 {
        let s = self.singletons();
        match data.first() {
            None => s.empty_bytes,
            Some(&b) => s.byte[usize::from(b)],
        }
    }

    /// Writes and memoizes a new bytes object, not a singleton (also the argument
    /// CPython builds for a non-empty bytearray before protocol 5); the caller began
    /// its save.
    fn write_bytes_object(&mut self, data: &[u8]) -> Result<u32> {
        if self.proto >= 3 {
            let n = data.len();
            if n <= 0xff {
                self.payload(&[op::SHORT_BINBYTES, n as u8], data);
            } else if let Ok(n32) = u32::try_from(n) {
                let b = n32.to_le_bytes();
                self.payload(&[op::BINBYTES, b[0], b[1], b[2], b[3]], data);
            } else if self.proto >= 4 {
                let mut h = [op::BINBYTES8; 9];
                h[1..].copy_from_slice(&(n as u64).to_le_bytes());
                self.payload(&h, data);
            } else {
                return Err(Error::Encode("bytes of 4 GiB or more need protocol 4 or higher".into()));
            }
        } else if data.is_empty() {
            // bytes()
            self.save_builtin(Builtin::Bytes)?;
            self.begin_save();
            self.op(op::EMPTY_TUPLE);
            self.op(op::REDUCE);
        } else {
            // _codecs.encode(data.decode('latin1'), 'latin1')
            self.save_builtin(Builtin::CodecsEncode)?;
            self.begin_save(); // the argument tuple
            let mut text = Vec::with_capacity(data.len() + data.len() / 2);
            for &b in data {
                super::value::push_code_point(&mut text, u32::from(b));
            }
            self.save_str(&text)?;
            let latin1 = self.shared().latin1;
            if latin1 == NOT_MEMOIZED {
                self.shared().latin1 = self.save_str(b"latin1")?;
            } else {
                self.save_get(latin1);
            }
            self.op(op::TUPLE2);
            self.memoize()?;
            self.op(op::REDUCE);
        }
        self.memoize()
    }

    /// Saves a bytearray and returns its memo index: `BYTEARRAY8` at protocol 5, else
    /// `bytearray()` / `bytearray(bytes)` through `REDUCE`.
    ///
    /// # Errors
    /// As [`Emitter::save_bytes`].
    pub(crate) fn save_bytearray(&mut self, data: &[u8]) -> Result<u32> {
        self.begin_save();
        if self.proto >= 5 {
            let mut h = [op::BYTEARRAY8; 9];
            h[1..].copy_from_slice(&(data.len() as u64).to_le_bytes());
            self.payload(&h, data);
        } else {
            self.save_builtin(Builtin::ByteArray)?;
            self.begin_save(); // the argument tuple
            if data.is_empty() {
                self.op(op::EMPTY_TUPLE);
            } else {
                self.begin_save(); // the bytes in it
                self.write_bytes_object(data)?;
                self.op(op::TUPLE1);
                self.memoize()?;
            }
            self.op(op::REDUCE);
        }
        self.memoize()
    }

    // ----- globals -----

    /// Saves one of the pickler's own globals.
    ///
    /// # Errors
    /// Memo exhaustion.
    pub(crate) fn save_builtin(&mut self, which: Builtin) -> Result<u32> {
        let known = self.shared().builtins[which as usize];
        if known != NOT_MEMOIZED {
            self.save_get(known);
            return Ok(known);
        }
        let (module, name) = BUILTINS[which as usize];
        let idx = self.save_global(module, name)?;
        self.shared().builtins[which as usize] = idx;
        Ok(idx)
    }

    fn global_index(&self, module: &str, name: &str) -> Option<u32> {
        let shared = self.shared.as_ref()?;
        if let Some(i) = BUILTINS.iter().position(|&(m, n)| m == module && n == name) {
            let idx = shared.builtins.get(i).copied().unwrap_or(NOT_MEMOIZED);
            return (idx != NOT_MEMOIZED).then_some(idx);
        }
        if shared.globals.is_empty() {
            return None;
        }
        shared.globals.get(format!("{module}\n{name}").as_str()).copied()
    }

    fn set_global_index(&mut self, module: &str, name: &str, idx: u32) {
        let shared = self.shared();
        if let Some(i) = BUILTINS.iter().position(|&(m, n)| m == module && n == name) {
            if let Some(slot) = shared.builtins.get_mut(i) {
                *slot = idx;
            }
        } else {
            if idx != NOT_MEMOIZED {
                shared.globals.insert(format!("{module}\n{name}").into(), idx);
            }
        }
    }

    /// Saves a reference to a global (Python 3 module and qualified name) and returns
    /// its memo index. Protocol 4+: `STACK_GLOBAL`; 3: `GLOBAL` (UTF-8); 2: `GLOBAL`
    /// with Python 2 names (ASCII). A dotted name before protocol 4 becomes
    /// `getattr(parent, 'last')`, as CPython writes nested classes.
    ///
    /// # Errors
    /// [`Error::Encode`] for a name that cannot be written with the protocol.
    pub(crate) fn save_global(&mut self, module: &str, name: &str) -> Result<u32> {
        self.begin_save();
        if let Some(idx) = self.global_index(module, name) {
            self.get(idx);
            return Ok(idx);
        }
        if self.proto >= 4 {
            self.save_module_str(module)?;
            self.save_str(name.as_bytes())?;
            self.op(op::STACK_GLOBAL);
        } else if name.contains('.') {
            self.write_dotted_global(module, name)?;
        } else {
            self.write_global_opcode(module, name)?;
        }
        let idx = self.memoize()?;
        self.set_global_index(module, name, idx);
        Ok(idx)
    }

    /// `GLOBAL module\nname\n` (protocols 2 and 3).
    fn write_global_opcode(&mut self, module: &str, name: &str) -> Result<()> {
        let (m, n) = if self.proto < 3 { compat::to_python2(module, name) } else { (module, name) };
        if self.proto < 3 && !(m.is_ascii() && n.is_ascii()) {
            return Err(Error::Encode(format!(
                "global {module}.{name} is not ASCII, which protocol 2 requires (use protocol 3 or higher)"
            )));
        }
        if m.contains('\n') || n.contains('\n') || m.is_empty() || n.is_empty() {
            return Err(Error::Encode(format!("global {module:?}.{name:?} cannot be written as a GLOBAL opcode")));
        }
        self.op(op::GLOBAL);
        self.raw(m.as_bytes());
        self.op(b'\n');
        self.raw(n.as_bytes());
        self.op(b'\n');
        Ok(())
    }

    /// Writes `module.A.B.C` before protocol 4 as `getattr(getattr(A, 'B'), 'C')`,
    /// memoizing each prefix, without recursion; the caller memoizes the whole.
    fn write_dotted_global(&mut self, module: &str, name: &str) -> Result<()> {
        let parts: Vec<&str> = name.split('.').collect();
        let k = parts.len() - 1;
        let prefix = |j: usize| -> &str {
            let end = parts.iter().take(j + 1).map(|p| p.len()).sum::<usize>() + j;
            name.get(..end).unwrap_or(name)
        };
        // The longest proper prefix already written, if any.
        let known = (0..k).rev().find_map(|j| self.global_index(module, prefix(j)).map(|idx| (j, idx)));
        let first = known.map_or(1, |(j, _)| j + 1);
        // (Frames do not exist before protocol 4, so `begin_save` is not needed here.)
        for _ in first..=k {
            self.save_builtin(Builtin::Getattr)?;
        }
        match known {
            Some((_, idx)) => self.get(idx),
            None => {
                let top = parts.first().copied().unwrap_or(name);
                self.write_global_opcode(module, top)?;
                let idx = self.memoize()?;
                self.set_global_index(module, top, idx);
            }
        }
        for (j, part) in parts.iter().enumerate().skip(first) {
            self.save_str(part.as_bytes())?;
            self.op(op::TUPLE2);
            self.memoize()?;
            self.op(op::REDUCE);
            if j < k {
                let idx = self.memoize()?;
                self.set_global_index(module, prefix(j), idx);
            }
        }
        Ok(())
    }
}

/// The hash of rustc's `FxHasher`: fast for the short, program-chosen keys it is used
/// for (serde's field names), not resistant to chosen collisions.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let mut w = [0u8; 8];
        let rest = chunks.remainder();
        if !rest.is_empty() {
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The singleton slot of a str (see [`Singletons::strs`]), from its UTF-8 bytes:
/// `Some` for `''` and the one-character strs below U+0100.
#[inline]
pub(crate) fn str_singleton(data: &[u8]) -> Option<usize> {
    match *data {
        [] => Some(0),
        [b] if b < 0x80 => Some(1 + usize::from(b)),
        [b0 @ 0xC2..=0xC3, b1] => Some(1 + ((usize::from(b0 & 0x1F) << 6) | usize::from(b1 & 0x3F))),
        _ => None,
    }
}

/// Length of CPython's `encode_long` bytes for a non-zero value: the minimal
/// little-endian two's complement.
#[inline]
fn twos_complement_len(v: i128) -> usize {
    let magnitude_bits = if v < 0 { 128 - (!v).leading_zeros() } else { 128 - v.leading_zeros() };
    (magnitude_bits / 8 + 1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_bytes_match_encode_long() {
        let mut samples = vec![i64::MIN, i64::MAX, -1, 1, 127, 128, -128, -129, 255, 256, -256, -32768, -32769];
        for shift in 0..63 {
            let p = 1i64 << shift;
            samples.extend([p, p - 1, p + 1, -p, -p - 1, -p + 1]);
        }
        for v in samples.into_iter().filter(|&v| v != 0) {
            let n = twos_complement_len(i128::from(v));
            let want = i64_to_le_twos_complement(v);
            let mut got = v.to_le_bytes().to_vec();
            got.resize(n, if v < 0 { 0xff } else { 0 });
            assert_eq!(got, want, "{v}");
        }
    }

    #[test]
    fn str_singletons() {
        assert_eq!(str_singleton(b""), Some(0));
        assert_eq!(str_singleton(b"a"), Some(1 + 97));
        assert_eq!(str_singleton("é".as_bytes()), Some(1 + 0xE9));
        assert_eq!(str_singleton("\u{80}".as_bytes()), Some(1 + 0x80));
        assert_eq!(str_singleton("\u{100}".as_bytes()), None);
        assert_eq!(str_singleton(b"ab"), None);
    }

    #[test]
    fn small_frames_lose_their_header() {
        let mut e = Emitter::new(4).unwrap_or_else(|e| panic!("{e}"));
        e.save_none();
        assert_eq!(e.finish(), b"\x80\x04N.");
    }

    #[test]
    fn unsupported_protocols() {
        for p in [0, 1, 6] {
            assert!(matches!(Emitter::new(p), Err(Error::Encode(_))));
        }
    }
}
