//! Canonical pickles written straight from serde, without building a [`Value`].
//!
//! [`canonical_pickle_of`] gives the bytes of
//! `canonical_pickle(&to_value_with_sets(x)?)` ([`super::canon`]): the fast-mode,
//! protocol-4 pickle of the canonical form of `x`. Its direct path, [`direct`], is a
//! serde `Serializer` that writes those bytes as the data arrives, into one buffer:
//!
//! - atoms are written with the opcodes CPython chooses (as [`super::emit`] writes them
//!   in fast mode: nothing memoized, nothing fetched);
//! - each dict key and set element is written, where it arrives, as its own complete
//!   canonical pickle (`PROTO 4`, `FRAME` header, body, `STOP`): that is the sort key of
//!   [`super::canon`]. A dict's values follow their keys. When the container ends, its
//!   entries are sorted (stably, as `canon` sorts) by those pickles, and the container
//!   is rewritten in place from their bodies: `EMPTY_DICT`, `SETITEM` or batches of
//!   `SETITEMS`, or the tuple `("__pickleshelf.set__", *elements)`;
//! - lists and tuples are written in order (`APPEND` for one item, else `APPENDS`
//!   batches of 1,000; `TUPLE1`–`TUPLE3` or `MARK … TUPLE`).
//!
//! Framing is the part a buffer-splicing writer cannot follow in general: CPython
//! commits a frame at the first `save()` after it reaches 64 KiB and writes payloads of
//! 64 KiB or more outside frames. While the whole body stays under 64 KiB neither can
//! happen, and the pickle is `PROTO 4`, one `FRAME` header (none when body and `STOP`
//! are under 4 bytes), the body, `STOP` — the same holds for each key's own pickle,
//! which is part of the body. So the direct path gives up once the body reaches 64 KiB.
//!
//! Invariant: [`direct`] returns `Some(bytes)` only when `bytes` equal the [`Value`]
//! path's output; on anything else — a body of 64 KiB or more, an error of any kind
//! (too deep, a list or dict as a dict key, a wrong announced length, a map key without
//! a value or two keys in a row, a custom error), even one a `Serialize` impl swallowed
//! — it returns `None`, and [`canonical_pickle_of`] runs the [`Value`] path, which gives
//! the result (or the error) that callers always got. Nesting is bounded by
//! [`MAX_DEPTH`] exactly where the [`Value`] path bounds it, so the direct path never
//! recurses deeper than that path would.
//!
//! [`Value`]: super::value::Value

use serde::ser::{self, Serialize};

use super::canon::{SET_TAG, canonical_pickle};
use super::compound::{forward_compound, forward_serializer};
use super::emit::BATCH;
use super::opcodes as op;
use super::ser::{MAX_DEPTH, is_set_type, to_value_with_sets};
use crate::error::{Error, Result};

/// Serializes a nested value into `$c` (a `&mut Canon`), noting its failure. A macro,
/// not a method, so that unoptimized builds spend no extra stack frame per level.
macro_rules! sub {
    ($c:expr, $value:expr) => {{
        let c: &mut Canon = $c;
        let r = $value.serialize(&mut *c);
        if r.is_err() {
            c.failed = true;
        }
        r
    }};
}

/// Bodies at least this long go through the [`super::value::Value`] path (see the
/// module docs).
const FRAME_TARGET: usize = 64 * 1024;
/// `PROTO 4` and a `FRAME` header with its 8-byte length.
const HEADER: usize = 11;
/// A frame with a smaller payload (body and `STOP`) gets no `FRAME` header.
const FRAME_MIN: usize = 4;

/// The canonical pickle of any `T: Serialize`: the bytes of
/// [`canonical_pickle`]`(&value as a Value)`, with Rust `HashSet`, `BTreeSet` and
/// `IndexSet` taken as Python sets (other set types serialize as lists). Written
/// straight from serde when it can be, else through a [`crate::Value`], with identical
/// bytes either way.
///
/// ```
/// use std::collections::HashMap;
/// use pickleshelf_pickle::canonical_pickle_of;
///
/// let a: HashMap<&str, u8> = [("x", 1), ("y", 2)].into();
/// let b: HashMap<&str, u8> = [("y", 2), ("x", 1)].into();
/// // Python: fast_dumps(canonical({'x': 1, 'y': 2})), whatever the dict's order
/// let want = b"\x80\x04\x95\x0e\x00\x00\x00\x00\x00\x00\x00}(\x8c\x01xK\x01\x8c\x01yK\x02u.";
/// assert_eq!(canonical_pickle_of(&a)?, want);
/// assert_eq!(canonical_pickle_of(&b)?, want);
/// # Ok::<(), pickleshelf_pickle::Error>(())
/// ```
///
/// # Errors
/// As `canonical_pickle(&to_value_with_sets(value)?)`: [`Error::Serde`] when `T` cannot
/// be represented, [`Error::Encode`] when its form holds no plain data.
pub fn canonical_pickle_of<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    match direct(value) {
        Some(bytes) => Ok(bytes),
        None => via_value(value),
    }
}

/// The reference path: `canonical_pickle(&to_value_with_sets(value)?)`.
///
/// # Errors
/// As [`canonical_pickle_of`].
pub(crate) fn via_value<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    canonical_pickle(&to_value_with_sets(value)?)
}

/// The direct path alone: `None` when it cannot guarantee the reference path's bytes
/// (see the module docs).
pub(crate) fn direct<T: Serialize + ?Sized>(value: &T) -> Option<Vec<u8>> {
    let mut c =
        Canon { out: Vec::with_capacity(256), entries: Vec::new(), depth: 0, in_key: 0, spare: 0, failed: false };
    let start = c.open_pickle();
    let done = sub!(&mut c, value);
    if done.is_err() || c.failed {
        return None;
    }
    let body = c.close_pickle(start);
    let body_len = c.out.len().saturating_sub(body + 1);
    (body_len < FRAME_TARGET).then_some(c.out)
}

/// Hooks for the integration tests (`tests/canonical_props.rs`); not part of the API.
#[doc(hidden)]
pub mod testing {
    use serde::Serialize;

    use crate::error::Result;

    /// The direct path alone; `None` when it leaves the value to the reference path.
    pub fn direct<T: Serialize + ?Sized>(value: &T) -> Option<Vec<u8>> {
        super::direct(value)
    }

    /// The reference path: `canonical_pickle(&to_value_with_sets(value)?)`.
    ///
    /// # Errors
    /// When the value has no canonical pickle.
    pub fn via_value<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
        super::via_value(value)
    }

    /// What memo keys use: the direct path, else the reference path.
    ///
    /// # Errors
    /// When the value has no canonical pickle.
    pub fn canonical<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
        super::canonical_pickle_of(value)
    }
}

/// A dict entry or set element waiting to be sorted: the key's (element's) complete
/// canonical pickle is `out[pickle..end]`, its body `out[body..end - 1]`, and a dict
/// value follows as `out[end..value_end]` (`value_end == end` for a set element).
#[derive(Clone, Copy)]
struct Entry {
    pickle: usize,
    body: usize,
    end: usize,
    value_end: usize,
}

impl Entry {
    /// Bytes of this entry that its container's rewrite drops (header and `STOP`).
    fn spare(&self) -> usize {
        self.body.saturating_sub(self.pickle) + 1
    }
}

/// The direct canonical serializer (see the module docs).
impl Canon {
    /// A Python object of [`crate::serde_types`]: left to the `Value` path.
    fn serialize_pytype<T: Serialize + ?Sized>(&mut self, _kind: crate::serde_types::Kind, _content: &T) -> Result<()> {
        self.failed = true;
        Err(Error::Serde("a Python object goes through the value path".into()))
    }
}

struct Canon {
    /// The output, with the containers being written at its end.
    out: Vec<u8>,
    /// The entries of every open dict and set, innermost last (each container owns the
    /// tail from where it started).
    entries: Vec<Entry>,
    depth: usize,
    /// Above zero while a dict key is being written.
    in_key: u32,
    /// Bytes of `out` that the rewrite of open containers will drop: `out.len() - spare`
    /// is a lower bound of the final body's length.
    spare: usize,
    /// Set by any error met (even one a `Serialize` impl ignored): the output is then
    /// not trusted.
    failed: bool,
}

fn range_error() -> Error {
    Error::Serde(String::new())
}

impl Canon {
    /// Marks the output as untrusted and returns an error for the caller to pass on
    /// (its text is never shown: the reference path reports the real error).
    #[cold]
    fn fail(&mut self) -> Error {
        self.failed = true;
        Error::Serde(String::new())
    }

    /// Gives up once the body would reach 64 KiB with `more` bytes.
    #[inline]
    fn room(&mut self, more: usize) -> Result<()> {
        if self.out.len().saturating_sub(self.spare).saturating_add(more) >= FRAME_TARGET {
            return Err(self.fail());
        }
        Ok(())
    }

    /// One nesting level, as the reference path counts them.
    #[inline]
    fn enter(&mut self) -> Result<()> {
        if self.depth >= MAX_DEPTH {
            return Err(self.fail());
        }
        self.depth += 1;
        Ok(())
    }

    #[inline]
    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Fails where the reference path refuses a dict or list: inside a dict key.
    #[inline]
    fn not_in_key(&mut self) -> Result<()> {
        if self.in_key > 0 {
            return Err(self.fail());
        }
        Ok(())
    }

    /// Starts a complete pickle (the whole value, a dict key or a set element): reserves
    /// its header. Returns where it starts.
    #[inline]
    fn open_pickle(&mut self) -> usize {
        let start = self.out.len();
        self.out.extend_from_slice(&[0u8; HEADER]);
        self.spare += HEADER;
        start
    }

    /// Ends the pickle begun at `start`: writes `STOP` and its header, or drops the
    /// `FRAME` header when body and `STOP` are under 4 bytes. Returns where its body
    /// starts.
    #[inline]
    fn close_pickle(&mut self, start: usize) -> usize {
        self.out.push(op::STOP);
        let framed = start + HEADER;
        let n = self.out.len().saturating_sub(framed);
        if n >= FRAME_MIN {
            if let Some(h) = self.out.get_mut(start..framed) {
                h[0] = op::PROTO;
                h[1] = 4;
                h[2] = op::FRAME;
                h[3..].copy_from_slice(&(n as u64).to_le_bytes());
            }
            self.spare += 1;
            framed
        } else {
            self.out.copy_within(framed.., start + 2);
            self.out.truncate(start + 2 + n);
            if let Some(h) = self.out.get_mut(start..start + 2) {
                h.copy_from_slice(&[op::PROTO, 4]);
            }
            self.spare = self.spare.saturating_sub(HEADER) + 3;
            start + 2
        }
    }

    // ----- atoms, with CPython's opcodes (see `emit.rs`) -----

    #[inline]
    fn write_i64(&mut self, v: i64) {
        if let Ok(small) = i32::try_from(v) {
            let b = small.to_le_bytes();
            if b[2] != 0 || b[3] != 0 {
                self.out.extend_from_slice(&[op::BININT, b[0], b[1], b[2], b[3]]);
            } else if b[1] != 0 {
                self.out.extend_from_slice(&[op::BININT2, b[0], b[1]]);
            } else {
                self.out.extend_from_slice(&[op::BININT1, b[0]]);
            }
        } else {
            self.write_long(i128::from(v));
        }
    }

    fn write_i128(&mut self, v: i128) {
        match i64::try_from(v) {
            Ok(small) => self.write_i64(small),
            Err(_) => self.write_long(v),
        }
    }

    /// `LONG1` with the minimal little-endian two's complement of `v` (not zero).
    fn write_long(&mut self, v: i128) {
        let magnitude_bits = if v < 0 { 128 - (!v).leading_zeros() } else { 128 - v.leading_zeros() };
        let n = (magnitude_bits / 8 + 1) as usize;
        let b = v.to_le_bytes();
        self.out.extend_from_slice(&[op::LONG1, n as u8]);
        self.out.extend_from_slice(b.get(..n).unwrap_or(&b));
    }

    fn write_u128(&mut self, v: u128) {
        match i128::try_from(v) {
            Ok(signed) => self.write_i128(signed),
            Err(_) => {
                // Above i128::MAX: 16 bytes and a zero sign byte.
                self.out.extend_from_slice(&[op::LONG1, 17]);
                self.out.extend_from_slice(&v.to_le_bytes());
                self.out.push(0);
            }
        }
    }

    #[inline]
    fn write_f64(&mut self, v: f64) {
        let b = v.to_be_bytes();
        self.out.extend_from_slice(&[op::BINFLOAT, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    }

    /// A str from its UTF-8 bytes: `SHORT_BINUNICODE` or `BINUNICODE` (longer ones
    /// exceed the direct path's 64 KiB).
    #[inline]
    fn write_str(&mut self, data: &[u8]) -> Result<()> {
        self.room(data.len() + 5)?;
        let n = data.len();
        if let Ok(short) = u8::try_from(n) {
            self.out.extend_from_slice(&[op::SHORT_BINUNICODE, short]);
        } else {
            let b = (n as u32).to_le_bytes();
            self.out.extend_from_slice(&[op::BINUNICODE, b[0], b[1], b[2], b[3]]);
        }
        self.out.extend_from_slice(data);
        Ok(())
    }

    /// Bytes: `SHORT_BINBYTES` or `BINBYTES`.
    fn write_bytes(&mut self, data: &[u8]) -> Result<()> {
        self.room(data.len() + 5)?;
        let n = data.len();
        if let Ok(short) = u8::try_from(n) {
            self.out.extend_from_slice(&[op::SHORT_BINBYTES, short]);
        } else {
            let b = (n as u32).to_le_bytes();
            self.out.extend_from_slice(&[op::BINBYTES, b[0], b[1], b[2], b[3]]);
        }
        self.out.extend_from_slice(data);
        Ok(())
    }

    /// `EMPTY_DICT` and the key of a one-entry `{variant: ...}` dict.
    fn open_variant(&mut self, variant: &'static str) -> Result<()> {
        self.out.push(op::EMPTY_DICT);
        self.write_str(variant.as_bytes())
    }

    /// Records a finished dict entry or set element.
    #[inline]
    fn push_entry(&mut self, pickle: usize, body: usize, end: usize) {
        self.entries.push(Entry { pickle, body, end, value_end: self.out.len() });
    }

    /// Appends `out[from..to]` to `out`.
    #[inline]
    fn copy_out(out: &mut Vec<u8>, from: usize, to: usize) -> Result<()> {
        if from > to || to > out.len() {
            return Err(range_error());
        }
        out.extend_from_within(from..to);
        Ok(())
    }

    /// Ends a dict (or, with `set`, a set) whose output started at `base` and whose
    /// entries are `entries[first..]`: sorts them by their keys' canonical pickles and
    /// rewrites the container from `base` in that order.
    fn close_sorted(&mut self, base: usize, first: usize, set: bool) -> Result<()> {
        let Canon { out, entries, spare, failed, .. } = self;
        let Some(es) = entries.get_mut(first..) else {
            *failed = true;
            return Err(range_error());
        };
        if es.len() > 1 {
            let key = |e: &Entry| out.get(e.pickle..e.end).unwrap_or(&[]);
            // Stable, like `canon`'s sort: entries with equal keys keep their order.
            es.sort_by(|a, b| key(a).cmp(key(b)));
        }
        let n = es.len();
        let tail = out.len();
        if set {
            if n + 1 > 3 {
                out.push(op::MARK);
            }
            out.extend_from_slice(&[op::SHORT_BINUNICODE, SET_TAG.len() as u8]);
            out.extend_from_slice(SET_TAG.as_bytes());
        } else {
            out.push(op::EMPTY_DICT);
            if n > 1 {
                out.push(op::MARK);
            }
        }
        let mut ok = true;
        for (i, e) in es.iter().enumerate() {
            if !set && i > 0 && i.is_multiple_of(BATCH) {
                out.extend_from_slice(&[op::SETITEMS, op::MARK]);
            }
            ok &= Self::copy_out(out, e.body, e.end.saturating_sub(1)).is_ok();
            ok &= Self::copy_out(out, e.end, e.value_end).is_ok();
            *spare = spare.saturating_sub(e.spare());
        }
        if set {
            out.push(match n + 1 {
                1 => op::TUPLE1,
                2 => op::TUPLE2,
                3 => op::TUPLE3,
                _ => op::TUPLE,
            });
        } else {
            match n {
                0 => {}
                1 => out.push(op::SETITEM),
                _ => {
                    out.push(op::SETITEMS);
                    if n.is_multiple_of(BATCH) {
                        // CPython's loop writes an empty batch after a full last one.
                        out.extend_from_slice(&[op::MARK, op::SETITEMS]);
                    }
                }
            }
        }
        entries.truncate(first);
        if !ok || base > tail {
            *failed = true;
            return Err(range_error());
        }
        let len = out.len() - tail;
        out.copy_within(tail.., base);
        out.truncate(base + len);
        Ok(())
    }
}

impl Canon {
    /// A set: each element as its own canonical pickle, then the tagged tuple of the
    /// sorted elements.
    fn collect_set<I>(&mut self, iter: I) -> Result<()>
    where
        I: IntoIterator,
        <I as IntoIterator>::Item: Serialize,
    {
        self.enter()?;
        let base = self.out.len();
        let first = self.entries.len();
        for x in iter {
            self.room(0)?;
            let start = self.open_pickle();
            sub!(self, &x)?;
            let body = self.close_pickle(start);
            let end = self.out.len();
            self.push_entry(start, body, end);
        }
        self.close_sorted(base, first, true)?;
        self.leave();
        Ok(())
    }
}

/// A list being written.
struct SeqW<'a> {
    c: &'a mut Canon,
    /// Where the `MARK` after `EMPTY_LIST` is (dropped again for fewer than 2 items).
    mark: usize,
    len: Option<usize>,
    count: usize,
}

/// A tuple (or tuple variant, when `variant`) being written.
struct TupleW<'a> {
    c: &'a mut Canon,
    len: usize,
    count: usize,
    variant: bool,
}

/// A dict or struct (or struct variant, when `variant`) being written.
struct MapW<'a> {
    c: &'a mut Canon,
    /// Where its output starts (after a variant's `EMPTY_DICT` and name).
    base: usize,
    /// Its first entry in `Canon::entries`.
    first: usize,
    len: Option<usize>,
    count: usize,
    /// A key written, waiting for its value: (pickle, body, end).
    key: Option<(usize, usize, usize)>,
    variant: bool,
}

impl<'a> ser::Serializer for &'a mut Canon {
    forward_serializer!(ok: (), seq: SeqW<'a>, tuple: TupleW<'a>, map: MapW<'a>);

    fn serialize_bool(self, v: bool) -> Result<()> {
        self.out.push(if v { op::NEWTRUE } else { op::NEWFALSE });
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<()> {
        self.write_i64(v);
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<()> {
        self.write_i128(v);
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<()> {
        match i64::try_from(v) {
            Ok(small) => self.write_i64(small),
            Err(_) => self.write_long(i128::from(v)),
        }
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<()> {
        self.write_u128(v);
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<()> {
        self.write_f64(v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<()> {
        self.write_str(v.encode_utf8(&mut [0u8; 4]).as_bytes())
    }
    fn serialize_str(self, v: &str) -> Result<()> {
        self.write_str(v.as_bytes())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<()> {
        self.write_bytes(v)
    }
    fn serialize_none(self) -> Result<()> {
        self.out.push(op::NONE);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<()> {
        self.enter()?;
        sub!(self, value)?;
        self.leave();
        Ok(())
    }
    fn serialize_unit_variant(self, _name: &'static str, _index: u32, variant: &'static str) -> Result<()> {
        self.write_str(variant.as_bytes())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<()> {
        self.not_in_key()?;
        self.enter()?;
        self.open_variant(variant)?;
        sub!(self, value)?;
        self.out.push(op::SETITEM);
        self.leave();
        Ok(())
    }

    /// Sets (recognized as the reference path recognizes them) become the tagged tuple
    /// of their sorted elements; other sequences are lists.
    fn collect_seq<I>(self, iter: I) -> Result<()>
    where
        I: IntoIterator,
        <I as IntoIterator>::Item: Serialize,
    {
        if crate::bytes_seq::is_byte_seq::<I>() {
            return self.serialize_bytes(&crate::bytes_seq::collect_bytes(iter)?);
        }
        if is_set_type::<I>() {
            return self.collect_set(iter);
        }
        crate::bytes_seq::collect_as_seq(self, iter)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<SeqW<'a>> {
        self.not_in_key()?;
        self.enter()?;
        self.out.push(op::EMPTY_LIST);
        let mark = self.out.len();
        self.out.push(op::MARK);
        Ok(SeqW { c: self, mark, len, count: 0 })
    }

    fn serialize_tuple(self, len: usize) -> Result<TupleW<'a>> {
        self.enter()?;
        if len > 3 {
            self.out.push(op::MARK);
        }
        Ok(TupleW { c: self, len, count: 0, variant: false })
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<TupleW<'a>> {
        self.not_in_key()?;
        self.enter()?;
        self.open_variant(variant)?;
        if len > 3 {
            self.out.push(op::MARK);
        }
        Ok(TupleW { c: self, len, count: 0, variant: true })
    }

    fn serialize_map(self, len: Option<usize>) -> Result<MapW<'a>> {
        self.not_in_key()?;
        self.enter()?;
        let (base, first) = (self.out.len(), self.entries.len());
        Ok(MapW { c: self, base, first, len, count: 0, key: None, variant: false })
    }

    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<MapW<'a>> {
        self.serialize_map(Some(len))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<MapW<'a>> {
        self.not_in_key()?;
        self.enter()?;
        self.open_variant(variant)?;
        let (base, first) = (self.out.len(), self.entries.len());
        Ok(MapW { c: self, base, first, len: Some(len), count: 0, key: None, variant: true })
    }
}

impl SeqW<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        if self.len == Some(self.count) {
            return Err(self.c.fail());
        }
        if self.count > 0 && self.count.is_multiple_of(BATCH) {
            self.c.out.extend_from_slice(&[op::APPENDS, op::MARK]);
        }
        self.c.room(0)?;
        sub!(self.c, value)?;
        self.count += 1;
        Ok(())
    }

    fn finish(self) -> Result<()> {
        let SeqW { c, mark, len, count } = self;
        if len.is_some_and(|len| len != count) || mark >= c.out.len() {
            return Err(c.fail());
        }
        match count {
            0 => c.out.truncate(mark),
            1 => {
                c.out.remove(mark);
                c.out.push(op::APPEND);
            }
            _ => c.out.push(op::APPENDS),
        }
        c.leave();
        Ok(())
    }
}

impl TupleW<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        if self.count == self.len {
            return Err(self.c.fail());
        }
        self.c.room(0)?;
        sub!(self.c, value)?;
        self.count += 1;
        Ok(())
    }

    fn finish(self) -> Result<()> {
        let TupleW { c, len, count, variant } = self;
        if count != len {
            return Err(c.fail());
        }
        c.out.push(match len {
            0 => op::EMPTY_TUPLE,
            1 => op::TUPLE1,
            2 => op::TUPLE2,
            3 => op::TUPLE3,
            _ => op::TUPLE,
        });
        if variant {
            c.out.push(op::SETITEM);
        }
        c.leave();
        Ok(())
    }
}

forward_compound!(seq SeqW => (): SerializeSeq);
forward_compound!(seq TupleW => (): SerializeTuple, SerializeTupleStruct, SerializeTupleVariant);
forward_compound!(struct MapW => (): SerializeStruct, SerializeStructVariant);

impl MapW<'_> {
    /// A struct field: its name as the key, then the value.
    fn field<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) -> Result<()> {
        let k = self.name_key(name)?;
        self.value(k, value)
    }

    /// Fails when the announced number of entries is already written.
    fn check_room(&mut self) -> Result<()> {
        if self.len == Some(self.count) {
            return Err(self.c.fail());
        }
        self.c.room(0)
    }

    /// Writes a value after its key and records the entry.
    fn value<T: Serialize + ?Sized>(&mut self, (pickle, body, end): (usize, usize, usize), value: &T) -> Result<()> {
        sub!(self.c, value)?;
        self.c.push_entry(pickle, body, end);
        self.count += 1;
        Ok(())
    }

    /// A field name as a key.
    fn name_key(&mut self, name: &'static str) -> Result<(usize, usize, usize)> {
        self.check_room()?;
        let start = self.c.open_pickle();
        self.c.write_str(name.as_bytes())?;
        let body = self.c.close_pickle(start);
        Ok((start, body, self.c.out.len()))
    }

    fn finish(self) -> Result<()> {
        let MapW { c, base, first, len, count, key, variant } = self;
        if key.is_some() || len.is_some_and(|len| len != count) {
            return Err(c.fail());
        }
        c.close_sorted(base, first, false)?;
        if variant {
            c.out.push(op::SETITEM);
        }
        c.leave();
        Ok(())
    }
}

impl ser::SerializeMap for MapW<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        self.check_room()?;
        if self.key.is_some() {
            // The reference path keeps the later key; leave this to it.
            return Err(self.c.fail());
        }
        self.c.in_key += 1;
        let start = self.c.open_pickle();
        let r = sub!(self.c, key);
        self.c.in_key -= 1;
        r?;
        let body = self.c.close_pickle(start);
        self.key = Some((start, body, self.c.out.len()));
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let Some(k) = self.key.take() else {
            return Err(self.c.fail());
        };
        self.value(k, value)
    }

    fn end(self) -> Result<()> {
        self.finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

    use super::*;

    fn same<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
        let want = via_value(v).unwrap_or_else(|e| panic!("{e}"));
        let got = direct(v).unwrap_or_else(|| panic!("fell back"));
        assert_eq!(got, want);
        got
    }

    #[derive(serde::Serialize)]
    struct Opts<'a> {
        mode: &'a str,
        limit: u64,
        exact: bool,
    }

    #[derive(serde::Serialize)]
    enum Tree {
        Leaf,
        Node(Vec<Tree>),
    }

    fn tree(depth: usize) -> Tree {
        let mut t = Tree::Leaf;
        for _ in 0..depth {
            t = Tree::Node(vec![t]);
        }
        t
    }

    #[test]
    fn w3_arguments() {
        let got = same(&(10000u64, "q10000", Opts { mode: "fast", limit: 0, exact: true }));
        // Fields sorted by their own pickles: 'mode' (shortest frame) first.
        let mode = got.windows(4).position(|w| w == b"mode");
        let exact = got.windows(5).position(|w| w == b"exact");
        let limit = got.windows(5).position(|w| w == b"limit");
        assert!(mode < exact && exact < limit, "{got:?}");
    }

    #[test]
    fn atoms_and_tiny_pickles() {
        assert_eq!(same(&()), b"\x80\x04N.");
        assert_eq!(same(&5u8), b"\x80\x04K\x05.");
        assert_eq!(same(&Vec::<u8>::new()), b"\x80\x04C\x00.");
        assert_eq!(same(&Vec::<u16>::new()), b"\x80\x04].");
        same(&(true, false, -1i64, i64::MIN, u64::MAX, i128::MIN, u128::MAX, -0.0f64, f64::NAN));
        same(&("", "é", 'x', "\u{1F600}", "a".repeat(300)));
    }

    #[test]
    fn containers() {
        same(&vec![vec![1]; 3]);
        same(&(vec![1u8], (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), ()));
        let m: HashMap<String, i32> = (0..50).map(|i| (format!("k{i}"), i)).collect();
        same(&m);
        let b: BTreeMap<i64, Option<String>> = (-5..5).map(|i| (i * 1000, Some(i.to_string()))).collect();
        same(&b);
        let s: HashSet<(i32, String)> = (0..20).map(|i| (i, "x".repeat(i as usize))).collect();
        same(&s);
        same(&BTreeSet::<u8>::new());
        let keyed: HashMap<(i32, BTreeSet<i32>), ()> = [((1, [3, 1].into()), ()), ((0, [2].into()), ())].into();
        same(&keyed);
    }

    #[test]
    fn batches() {
        for n in [999, 1000, 1001, 2000, 2001] {
            same(&(0..n).collect::<Vec<i32>>());
            same(&(0..n).map(|i| (i, i)).collect::<HashMap<i32, i32>>());
            same(&(0..n).collect::<HashSet<i32>>());
        }
    }

    #[test]
    fn large_bodies_fall_back() {
        let big = "x".repeat(70_000);
        assert!(direct(&big).is_none());
        assert_eq!(canonical_pickle_of(&big).ok(), via_value(&big).ok());
        let many: Vec<i64> = (0..30_000).collect();
        assert!(direct(&many).is_none());
        assert_eq!(canonical_pickle_of(&many).ok(), via_value(&many).ok());
        // Just under: still direct.
        same(&"y".repeat(FRAME_TARGET - 6));
    }

    #[test]
    fn errors_come_from_the_reference_path() {
        let listkey: BTreeMap<Vec<u16>, u8> = [(vec![1], 1)].into();
        assert!(direct(&listkey).is_none());
        assert!(canonical_pickle_of(&listkey).is_err());
        // A variant holding a list: two levels each, as in `tests/serde_ser.rs`; the
        // limit is reached on the default 2 MiB test-thread stack.
        let fits = tree(MAX_DEPTH / 2);
        same(&fits);
        let deep = tree(MAX_DEPTH / 2 + 1);
        assert!(direct(&deep).is_none());
        assert_eq!(canonical_pickle_of(&deep).map_err(|e| e.to_string()), via_value(&deep).map_err(|e| e.to_string()));
        for mut t in [fits, deep] {
            while let Tree::Node(mut v) = t {
                t = v.pop().unwrap_or(Tree::Leaf);
            }
        }
    }
}
