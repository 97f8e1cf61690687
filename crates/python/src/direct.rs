//! Safe loading's fast path for plain data: pickle opcodes straight to Python objects,
//! without the decoded value in between.
//!
//! Invariant: this path only ever makes `None`, bools, ints, floats, strs, bytes,
//! bytearrays, lists, tuples, dicts, sets and frozensets, and gives up (`None`) on
//! anything else — a global, an opcode outside that set, malformed input, a frame rule
//! broken, more containers than the depth limit could allow, a Python error — after
//! which the caller runs the complete path ([`crate::objects`]), which then gives the
//! codec's exact result or error. So this path changes how fast a load is, never what
//! it returns or raises.

use pickleshelf::pickle::{Limits, opcodes as op};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyFloat, PyFrozenSet, PyList, PySet, PyString, PyTuple};

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    /// End of the current protocol-4 frame, while inside one.
    frame_end: Option<usize>,
}

impl<'a> Reader<'a> {
    /// The next `n` bytes; `None` at the end of input or when they would cross the end
    /// of the current frame.
    #[inline(always)]
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        if let Some(fe) = self.frame_end {
            if self.pos == fe {
                self.frame_end = None;
            } else if end > fe {
                return None;
            }
        }
        let s = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    #[inline(always)]
    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    #[inline(always)]
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    #[inline(always)]
    fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        Some(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }

    fn len8(&mut self) -> Option<usize> {
        usize::try_from(self.u64()?).ok()
    }
}

/// Loads plain data, or `None` when the complete path must run instead.
pub fn load<'py>(py: Python<'py>, data: &[u8], limits: &Limits) -> Option<Bound<'py, PyAny>> {
    let mut r = Reader { data, pos: 0, frame_end: None };
    let mut stack: Vec<Bound<'py, PyAny>> = Vec::with_capacity(32);
    let mut marks: Vec<usize> = Vec::new();
    let mut memo: Vec<Option<Bound<'py, PyAny>>> = Vec::with_capacity(16);
    let mut containers = 0usize;
    let max_containers = limits.max_depth;
    loop {
        let code = r.byte()?;
        match code {
            op::PROTO => {
                if r.byte()? > 5 {
                    return None;
                }
            }
            op::FRAME => {
                if r.frame_end.is_some_and(|fe| r.pos < fe) {
                    return None;
                }
                let n = r.len8()?;
                let end = r.pos.checked_add(n)?;
                if end > data.len() {
                    return None;
                }
                r.frame_end = Some(end);
            }
            op::STOP => {
                if stack.len() != 1 || !marks.is_empty() {
                    return None;
                }
                return stack.pop();
            }
            op::NONE => stack.push(py.None().into_bound(py)),
            op::NEWTRUE => stack.push(pyo3::types::PyBool::new(py, true).to_owned().into_any()),
            op::NEWFALSE => stack.push(pyo3::types::PyBool::new(py, false).to_owned().into_any()),
            op::BININT => {
                let v = r.u32()? as i32;
                stack.push(v.into_pyobject(py).ok()?.into_any());
            }
            op::BININT1 => {
                let v = r.byte()?;
                stack.push(v.into_pyobject(py).ok()?.into_any());
            }
            op::BININT2 => {
                let b = r.take(2)?;
                stack.push(u16::from_le_bytes([b[0], b[1]]).into_pyobject(py).ok()?.into_any());
            }
            op::LONG1 => {
                let n = usize::from(r.byte()?);
                if n > 8 {
                    return None;
                }
                let b = r.take(n)?;
                let v = if n == 0 {
                    0
                } else {
                    let fill = if b[n - 1] & 0x80 != 0 { 0xff } else { 0 };
                    let mut buf = [fill; 8];
                    buf[..n].copy_from_slice(b);
                    i64::from_le_bytes(buf)
                };
                stack.push(v.into_pyobject(py).ok()?.into_any());
            }
            op::BINFLOAT => {
                let b = r.take(8)?;
                let v = f64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                stack.push(PyFloat::new(py, v).into_any());
            }
            op::SHORT_BINUNICODE => {
                let n = usize::from(r.byte()?);
                stack.push(text(py, r.take(n)?)?);
            }
            op::BINUNICODE => {
                let n = r.u32()? as usize;
                stack.push(text(py, r.take(n)?)?);
            }
            op::BINUNICODE8 => {
                let n = r.len8()?;
                stack.push(text(py, r.take(n)?)?);
            }
            op::SHORT_BINBYTES => {
                let n = usize::from(r.byte()?);
                stack.push(PyBytes::new(py, r.take(n)?).into_any());
            }
            op::BINBYTES => {
                let n = r.u32()? as usize;
                stack.push(PyBytes::new(py, r.take(n)?).into_any());
            }
            op::BINBYTES8 => {
                let n = r.len8()?;
                stack.push(PyBytes::new(py, r.take(n)?).into_any());
            }
            op::BYTEARRAY8 => {
                let n = r.len8()?;
                stack.push(PyByteArray::new(py, r.take(n)?).into_any());
            }
            op::EMPTY_LIST | op::EMPTY_DICT | op::EMPTY_SET => {
                containers += 1;
                if containers >= max_containers {
                    return None;
                }
                stack.push(match code {
                    op::EMPTY_LIST => PyList::empty(py).into_any(),
                    op::EMPTY_DICT => PyDict::new(py).into_any(),
                    _ => PySet::empty(py).ok()?.into_any(),
                });
            }
            op::EMPTY_TUPLE => stack.push(PyTuple::empty(py).into_any()),
            op::MARK => {
                if marks.len() >= limits.max_marks {
                    return None;
                }
                marks.push(stack.len());
            }
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let n = usize::from(code - op::TUPLE1) + 1;
                let at = stack.len().checked_sub(n)?;
                if marks.last().is_some_and(|&m| m > at) {
                    return None;
                }
                containers += 1;
                let t = PyTuple::new(py, stack.drain(at..)).ok()?;
                stack.push(t.into_any());
            }
            op::TUPLE | op::LIST | op::FROZENSET | op::DICT => {
                let at = marks.pop()?;
                containers += 1;
                if containers >= max_containers {
                    return None;
                }
                let made = match code {
                    op::TUPLE => PyTuple::new(py, stack.drain(at..)).ok()?.into_any(),
                    op::LIST => PyList::new(py, stack.drain(at..)).ok()?.into_any(),
                    op::FROZENSET => PyFrozenSet::new(py, stack.drain(at..)).ok()?.into_any(),
                    _ => {
                        if !stack.len().checked_sub(at)?.is_multiple_of(2) {
                            return None;
                        }
                        let d = PyDict::new(py);
                        let mut items = stack.drain(at..);
                        while let (Some(k), Some(v)) = (items.next(), items.next()) {
                            d.set_item(k, v).ok()?;
                        }
                        drop(items);
                        d.into_any()
                    }
                };
                stack.push(made);
            }
            op::APPEND => {
                let item = stack.pop()?;
                if marks.last().is_some_and(|&m| m > stack.len()) {
                    return None;
                }
                stack.last()?.cast_exact::<PyList>().ok()?.append(item).ok()?;
            }
            op::APPENDS => {
                let at = marks.pop()?;
                let list = stack.get(at.checked_sub(1)?)?.cast_exact::<PyList>().ok()?.clone();
                for item in stack.drain(at..) {
                    list.append(item).ok()?;
                }
            }
            op::SETITEM => {
                let v = stack.pop()?;
                let k = stack.pop()?;
                if marks.last().is_some_and(|&m| m > stack.len()) {
                    return None;
                }
                stack.last()?.cast_exact::<PyDict>().ok()?.set_item(k, v).ok()?;
            }
            op::SETITEMS => {
                let at = marks.pop()?;
                if !stack.len().checked_sub(at)?.is_multiple_of(2) {
                    return None;
                }
                let dict = stack.get(at.checked_sub(1)?)?.cast_exact::<PyDict>().ok()?.clone();
                let mut items = stack.drain(at..);
                while let (Some(k), Some(v)) = (items.next(), items.next()) {
                    dict.set_item(k, v).ok()?;
                }
            }
            op::ADDITEMS => {
                let at = marks.pop()?;
                let set = stack.get(at.checked_sub(1)?)?.cast_exact::<PySet>().ok()?.clone();
                for item in stack.drain(at..) {
                    set.add(item).ok()?;
                }
            }
            op::MEMOIZE => {
                let top = stack.last()?.clone();
                memo.push(Some(top));
            }
            op::BINPUT | op::LONG_BINPUT => {
                let i = if code == op::BINPUT { usize::from(r.byte()?) } else { r.u32()? as usize };
                // A gap would make MEMOIZE's index (the number of entries) differ from
                // the end of this table: the complete path handles that.
                if i > memo.len() {
                    return None;
                }
                if i >= memo.len() {
                    memo.resize(i + 1, None);
                }
                memo[i] = Some(stack.last()?.clone());
            }
            op::BINGET | op::LONG_BINGET => {
                let i = if code == op::BINGET { usize::from(r.byte()?) } else { r.u32()? as usize };
                stack.push(memo.get(i)?.as_ref()?.clone());
            }
            _ => return None,
        }
    }
}

/// A `str` from UTF-8 bytes; `None` for text with surrogates (the complete path reads
/// those).
#[inline(always)]
fn text<'py>(py: Python<'py>, b: &[u8]) -> Option<Bound<'py, PyAny>> {
    Some(PyString::new(py, std::str::from_utf8(b).ok()?).into_any())
}
