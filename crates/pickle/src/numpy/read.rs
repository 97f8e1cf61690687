//! Recognises a numpy array pickle: a small stack machine that knows only the opcodes
//! and calls numpy's pickles use, and keeps the array's data as a range of the input.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::{ArrayError, ArrayHeader, ByteOrder, Dtype, MAX_DIMS, NdArray, Order};
use crate::opcodes as op;

/// The globals numpy's array pickles call.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Global {
    Reconstruct,
    FromBuffer,
    NdArrayType,
    DtypeType,
    CodecsEncode,
    BytesType,
    Other(Rc<str>),
}

fn global(module: &str, name: &str) -> Global {
    let numpy_core = |sub: &str| module == format!("numpy._core.{sub}") || module == format!("numpy.core.{sub}");
    match name {
        "_reconstruct" if numpy_core("multiarray") => Global::Reconstruct,
        "_frombuffer" if numpy_core("numeric") => Global::FromBuffer,
        "ndarray" if module == "numpy" => Global::NdArrayType,
        "dtype" if module == "numpy" => Global::DtypeType,
        "encode" if module == "_codecs" => Global::CodecsEncode,
        "bytes" if module == "__builtin__" || module == "builtins" => Global::BytesType,
        _ => Global::Other(format!("{module}.{name}").into()),
    }
}

/// Bytes: a range of the input, or decoded (protocol 2's latin-1 text).
#[derive(Clone, Debug)]
enum Bytes {
    At(usize, usize),
    Owned(Rc<Vec<u8>>),
}

#[derive(Debug)]
struct ArrayObj {
    header: Option<ArrayHeader>,
    data: Option<Bytes>,
}

#[derive(Clone, Debug)]
enum Item {
    Mark,
    None,
    Bool(bool),
    Int(i64),
    Str(Rc<str>),
    Bytes(Bytes),
    Tuple(Rc<[Item]>),
    Global(Global),
    /// A dtype: its code's dtype, and its byte order once its state was applied.
    Dtype(Rc<RefCell<(Dtype, Option<ByteOrder>)>>),
    Array(Rc<RefCell<ArrayObj>>),
}

impl Item {
    fn kind(&self) -> &'static str {
        match self {
            Item::Mark => "a MARK",
            Item::None => "None",
            Item::Bool(_) => "a bool",
            Item::Int(_) => "an int",
            Item::Str(_) => "a str",
            Item::Bytes(_) => "bytes",
            Item::Tuple(_) => "a tuple",
            Item::Global(_) => "a global",
            Item::Dtype(_) => "a dtype",
            Item::Array(_) => "an array",
        }
    }
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    /// Offset of the opcode being run, for errors.
    at: usize,
    stack: Vec<Item>,
    memo: HashMap<u32, Item>,
}

/// Reads the pickle of a numpy array (see the [module docs](super)).
///
/// # Errors
/// [`ArrayError::NotAnArray`] for a pickle of something else, [`ArrayError::Unsupported`]
/// for arrays of a kind not read here, [`ArrayError::Malformed`] for damaged bytes.
///
/// ```
/// use pickleshelf_pickle::numpy::{self, ArrayHeader, Dtype, Order};
/// // Python: pickle.dumps(numpy.arange(3, dtype='int16'), protocol=5)
/// let header = ArrayHeader::new(Dtype::Int16, [3], Order::C);
/// let bytes = numpy::write(&header, &[0, 0, 1, 0, 2, 0])?;
/// let a = numpy::parse(&bytes)?;
/// assert_eq!(a.header, header);
/// assert_eq!(a.to_vec::<i16>()?, [0, 1, 2]);
/// # Ok::<(), numpy::ArrayError>(())
/// ```
pub fn parse(input: &[u8]) -> Result<NdArray<'_>, ArrayError> {
    let mut p = Parser { input, pos: 0, at: 0, stack: Vec::new(), memo: HashMap::new() };
    let root = p.run()?;
    let Item::Array(obj) = root else {
        return Err(ArrayError::NotAnArray(format!("the pickle holds {}", root.kind())));
    };
    let obj = obj.borrow();
    let (Some(header), Some(data)) = (obj.header.clone(), obj.data.clone()) else {
        return Err(ArrayError::Malformed {
            offset: p.at,
            detail: "the array's state was never set (no BUILD)".into(),
        });
    };
    let (data, data_offset) = match data {
        Bytes::At(start, end) => (Cow::Borrowed(input.get(start..end).unwrap_or_default()), Some(start)),
        Bytes::Owned(v) => (Cow::Owned(Rc::unwrap_or_clone(v)), None),
    };
    Ok(NdArray { header, data, data_offset })
}

impl Parser<'_> {
    fn malformed(&self, detail: impl Into<String>) -> ArrayError {
        ArrayError::Malformed { offset: self.at, detail: detail.into() }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<(usize, usize), ArrayError> {
        let start = self.pos;
        let end = start.checked_add(n).filter(|&e| e <= self.input.len());
        let Some(end) = end else {
            return Err(self.malformed(format!("input ends inside {what}")));
        };
        self.pos = end;
        Ok((start, end))
    }

    fn bytes(&mut self, n: usize, what: &str) -> Result<&[u8], ArrayError> {
        let (s, e) = self.take(n, what)?;
        Ok(self.input.get(s..e).unwrap_or_default())
    }

    fn u8(&mut self) -> Result<u8, ArrayError> {
        Ok(self.bytes(1, "an argument")?.first().copied().unwrap_or(0))
    }

    fn le(&mut self, n: usize) -> Result<u64, ArrayError> {
        let b = self.bytes(n, "an argument")?;
        Ok(b.iter().rev().fold(0u64, |v, &x| (v << 8) | u64::from(x)))
    }

    fn len(&mut self, n: usize) -> Result<usize, ArrayError> {
        let v = self.le(n)?;
        usize::try_from(v).map_err(|_| self.malformed(format!("length {v} is too large")))
    }

    fn pop(&mut self) -> Result<Item, ArrayError> {
        match self.stack.pop() {
            Some(Item::Mark) | None => Err(self.malformed("an opcode needs more values than the stack holds")),
            Some(item) => Ok(item),
        }
    }

    fn pop_n(&mut self, n: usize) -> Result<Vec<Item>, ArrayError> {
        let start = self.stack.len().checked_sub(n).ok_or_else(|| self.malformed("tuple of missing values"))?;
        if self.stack[start..].iter().any(|i| matches!(i, Item::Mark)) {
            return Err(self.malformed("tuple across a MARK"));
        }
        Ok(self.stack.split_off(start))
    }

    fn pop_mark(&mut self) -> Result<Vec<Item>, ArrayError> {
        let mark = self
            .stack
            .iter()
            .rposition(|i| matches!(i, Item::Mark))
            .ok_or_else(|| self.malformed("TUPLE without MARK"))?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items)
    }

    fn text(&self, s: usize, e: usize) -> Result<Rc<str>, ArrayError> {
        let b = self.input.get(s..e).unwrap_or_default();
        std::str::from_utf8(b).map(Rc::from).map_err(|_| self.malformed("str is not valid UTF-8"))
    }

    fn push_str(&mut self, n: usize) -> Result<(), ArrayError> {
        let (s, e) = self.take(n, "a str")?;
        let t = self.text(s, e)?;
        self.stack.push(Item::Str(t));
        Ok(())
    }

    fn push_bytes(&mut self, n: usize) -> Result<(), ArrayError> {
        let (s, e) = self.take(n, "bytes")?;
        self.stack.push(Item::Bytes(Bytes::At(s, e)));
        Ok(())
    }

    fn memo_put(&mut self, idx: u32) -> Result<(), ArrayError> {
        let top = self.stack.last().filter(|i| !matches!(i, Item::Mark)).cloned();
        let top = top.ok_or_else(|| self.malformed("memoizing an empty stack"))?;
        self.memo.insert(idx, top);
        Ok(())
    }

    fn memo_get(&mut self, idx: u32) -> Result<(), ArrayError> {
        let item =
            self.memo.get(&idx).cloned().ok_or_else(|| self.malformed(format!("memo index {idx} was never stored")))?;
        self.stack.push(item);
        Ok(())
    }

    fn run(&mut self) -> Result<Item, ArrayError> {
        loop {
            self.at = self.pos;
            let code = self.u8()?;
            match code {
                op::PROTO => {
                    let p = self.u8()?;
                    if !(2..=5).contains(&p) {
                        return Err(ArrayError::NotAnArray(format!(
                            "protocol {p} (numpy arrays are read from protocols 2 to 5)"
                        )));
                    }
                }
                op::FRAME => {
                    let n = self.le(8)?;
                    if n > (self.input.len() - self.pos) as u64 {
                        return Err(self.malformed(format!("frame of {n} bytes runs past the end")));
                    }
                }
                op::STOP => {
                    let root = self.pop()?;
                    if self.pos != self.input.len() {
                        return Err(self.malformed(format!("{} bytes after STOP", self.input.len() - self.pos)));
                    }
                    return Ok(root);
                }
                op::MARK => self.stack.push(Item::Mark),
                op::NONE => self.stack.push(Item::None),
                op::NEWTRUE => self.stack.push(Item::Bool(true)),
                op::NEWFALSE => self.stack.push(Item::Bool(false)),
                op::BININT1 => {
                    let v = self.le(1)?;
                    self.stack.push(Item::Int(v as i64));
                }
                op::BININT2 => {
                    let v = self.le(2)?;
                    self.stack.push(Item::Int(v as i64));
                }
                op::BININT => {
                    let v = self.le(4)? as u32 as i32;
                    self.stack.push(Item::Int(i64::from(v)));
                }
                op::LONG1 => {
                    let n = usize::from(self.u8()?);
                    if n > 8 {
                        return Err(self.malformed("int too large for an array dimension"));
                    }
                    let b = self.bytes(n, "a LONG1")?;
                    let mut full = [if b.last().is_some_and(|&x| x & 0x80 != 0) { 0xff } else { 0 }; 8];
                    full[..n].copy_from_slice(b);
                    self.stack.push(Item::Int(i64::from_le_bytes(full)));
                }
                op::SHORT_BINUNICODE => {
                    let n = self.len(1)?;
                    self.push_str(n)?;
                }
                op::BINUNICODE => {
                    let n = self.len(4)?;
                    self.push_str(n)?;
                }
                op::BINUNICODE8 => {
                    let n = self.len(8)?;
                    self.push_str(n)?;
                }
                op::SHORT_BINBYTES | op::SHORT_BINSTRING => {
                    let n = self.len(1)?;
                    self.push_bytes(n)?;
                }
                op::BINBYTES | op::BINSTRING => {
                    let n = self.len(4)?;
                    self.push_bytes(n)?;
                }
                op::BINBYTES8 | op::BYTEARRAY8 => {
                    let n = self.len(8)?;
                    self.push_bytes(n)?;
                }
                op::NEXT_BUFFER | op::READONLY_BUFFER => {
                    return Err(ArrayError::Unsupported(
                        "data in an out-of-band buffer (protocol 5 buffer_callback)".into(),
                    ));
                }
                op::EMPTY_TUPLE => self.stack.push(Item::Tuple(Rc::from(Vec::new()))),
                op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                    let items = self.pop_n(usize::from(code - op::TUPLE1 + 1))?;
                    self.stack.push(Item::Tuple(items.into()));
                }
                op::TUPLE => {
                    let items = self.pop_mark()?;
                    self.stack.push(Item::Tuple(items.into()));
                }
                op::GLOBAL => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Item::Global(global(&module, &name)));
                }
                op::STACK_GLOBAL => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Item::Str(module), Item::Str(name)) = (module, name) else {
                        return Err(self.malformed("STACK_GLOBAL needs two str"));
                    };
                    self.stack.push(Item::Global(global(&module, &name)));
                }
                op::MEMOIZE => {
                    let idx = self.memo.len() as u32;
                    self.memo_put(idx)?;
                }
                op::BINPUT => {
                    let idx = self.le(1)? as u32;
                    self.memo_put(idx)?;
                }
                op::LONG_BINPUT => {
                    let idx = self.le(4)? as u32;
                    self.memo_put(idx)?;
                }
                op::BINGET => {
                    let idx = self.le(1)? as u32;
                    self.memo_get(idx)?;
                }
                op::LONG_BINGET => {
                    let idx = self.le(4)? as u32;
                    self.memo_get(idx)?;
                }
                op::REDUCE => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let made = self.reduce(callable, args)?;
                    self.stack.push(made);
                }
                op::BUILD => {
                    let state = self.pop()?;
                    let target = self.pop()?;
                    self.build(&target, state)?;
                    self.stack.push(target);
                }
                other => {
                    return Err(ArrayError::NotAnArray(format!(
                        "opcode 0x{other:02x} at byte {} is not part of a numpy array pickle",
                        self.at
                    )));
                }
            }
        }
    }

    /// A protocol 0–2 `GLOBAL` argument line.
    fn line(&mut self) -> Result<String, ArrayError> {
        let rest = self.input.get(self.pos..).unwrap_or_default();
        let n = rest.iter().position(|&b| b == b'\n').ok_or_else(|| self.malformed("GLOBAL name without newline"))?;
        let (s, e) = self.take(n, "a GLOBAL")?;
        self.pos += 1;
        Ok(self.text(s, e)?.to_string())
    }

    fn reduce(&self, callable: Item, args: Item) -> Result<Item, ArrayError> {
        let Item::Global(g) = callable else {
            return Err(self.malformed(format!("REDUCE calls {}", callable.kind())));
        };
        let Item::Tuple(args) = args else {
            return Err(self.malformed(format!("REDUCE arguments are {}, not a tuple", args.kind())));
        };
        match (g, &args[..]) {
            (Global::DtypeType, [Item::Str(code), Item::Bool(_), Item::Bool(_)]) => match Dtype::from_code(code) {
                Some(d) => Ok(Item::Dtype(Rc::new(RefCell::new((d, None))))),
                None => Err(ArrayError::Unsupported(format!("dtype {code:?}{}", dtype_hint(code)))),
            },
            (Global::CodecsEncode, [Item::Str(text), Item::Str(enc)]) if &**enc == "latin1" => {
                let mut out = Vec::new();
                out.try_reserve_exact(text.len()).map_err(|_| self.malformed("data too large to allocate"))?;
                for c in text.chars() {
                    let b = u8::try_from(u32::from(c))
                        .map_err(|_| self.malformed("latin-1 data holds a character above U+00FF"))?;
                    out.push(b);
                }
                Ok(Item::Bytes(Bytes::Owned(Rc::new(out))))
            }
            // protocol 2's empty bytes: bytes()
            (Global::BytesType, []) => Ok(Item::Bytes(Bytes::Owned(Rc::new(Vec::new())))),
            (Global::Reconstruct, [Item::Global(cls), Item::Tuple(_), Item::Bytes(_)]) => match cls {
                Global::NdArrayType => Ok(Item::Array(Rc::new(RefCell::new(ArrayObj { header: None, data: None })))),
                Global::Other(name) => Err(ArrayError::Unsupported(format!("ndarray subclass {name}"))),
                _ => Err(self.malformed("_reconstruct of something other than an array type")),
            },
            (Global::FromBuffer, [data, dtype, shape, Item::Str(order)]) => {
                let data = self.data(data)?;
                let (dtype, byte_order) = self.dtype(dtype)?;
                let shape = self.shape(shape)?;
                let order = match &**order {
                    "C" => Order::C,
                    "F" => Order::Fortran,
                    o => return Err(self.malformed(format!("order {o:?} (expected 'C' or 'F')"))),
                };
                let header = ArrayHeader { dtype, byte_order, shape, order };
                self.check_len(&header, &data)?;
                Ok(Item::Array(Rc::new(RefCell::new(ArrayObj { header: Some(header), data: Some(data) }))))
            }
            (Global::Other(name), _) => Err(ArrayError::NotAnArray(format!("the pickle calls {name}"))),
            (g, args) => Err(self.malformed(format!("unexpected arguments to {g:?} ({} values)", args.len()))),
        }
    }

    fn build(&self, target: &Item, state: Item) -> Result<(), ArrayError> {
        let Item::Tuple(state) = state else {
            return Err(self.malformed(format!("BUILD state is {}, not a tuple", state.kind())));
        };
        match target {
            Item::Dtype(d) => {
                let (endian, rest) = match &state[..] {
                    [Item::Int(3), Item::Str(e), rest @ ..] if rest.len() == 6 => (e, rest),
                    [Item::Int(4), Item::Str(e), rest @ ..] if rest.len() == 7 => (e, rest),
                    _ => {
                        return Err(ArrayError::Unsupported(
                            "a dtype state numpy does not write for plain dtypes".into(),
                        ));
                    }
                };
                if !rest[..3].iter().all(|i| matches!(i, Item::None)) {
                    return Err(ArrayError::Unsupported("structured or subarray dtype".into()));
                }
                let mut d = d.borrow_mut();
                let size = d.0.scalar_size();
                let order = match (&**endian, size) {
                    ("<", _) => ByteOrder::Little,
                    (">", _) => ByteOrder::Big,
                    ("|", 1) => ByteOrder::Little,
                    _ => return Err(self.malformed(format!("byte order {endian:?} for dtype {}", d.0))),
                };
                d.1 = Some(order);
                Ok(())
            }
            Item::Array(a) => {
                let fields = match &state[..] {
                    [Item::Int(1), rest @ ..] if rest.len() == 4 => rest,
                    rest if rest.len() == 4 => rest,
                    _ => return Err(self.malformed(format!("array state of {} values", state.len()))),
                };
                let shape = self.shape(&fields[0])?;
                let (dtype, byte_order) = self.dtype(&fields[1])?;
                let Item::Bool(fortran) = fields[2] else {
                    return Err(self.malformed("array state's fortran flag is not a bool"));
                };
                let data = self.data(&fields[3])?;
                let order = if fortran { Order::Fortran } else { Order::C };
                let header = ArrayHeader { dtype, byte_order, shape, order };
                self.check_len(&header, &data)?;
                let mut a = a.borrow_mut();
                a.header = Some(header);
                a.data = Some(data);
                Ok(())
            }
            other => Err(self.malformed(format!("BUILD on {}", other.kind()))),
        }
    }

    fn data(&self, item: &Item) -> Result<Bytes, ArrayError> {
        match item {
            Item::Bytes(b) => Ok(b.clone()),
            Item::Str(_) => Err(ArrayError::Unsupported("data as a str (Python 2 pickle)".into())),
            other => Err(self.malformed(format!("array data is {}, not bytes", other.kind()))),
        }
    }

    fn dtype(&self, item: &Item) -> Result<(Dtype, ByteOrder), ArrayError> {
        let Item::Dtype(d) = item else {
            return Err(self.malformed(format!("array dtype is {}", item.kind())));
        };
        let d = d.borrow();
        match d.1 {
            Some(order) => Ok((d.0, order)),
            None => Err(self.malformed("dtype without its state (no BUILD)")),
        }
    }

    fn shape(&self, item: &Item) -> Result<Vec<usize>, ArrayError> {
        let Item::Tuple(dims) = item else {
            return Err(self.malformed(format!("array shape is {}, not a tuple", item.kind())));
        };
        if dims.len() > MAX_DIMS {
            return Err(self.malformed(format!("{} dimensions (numpy allows {MAX_DIMS})", dims.len())));
        }
        dims.iter()
            .map(|d| match d {
                Item::Int(n) => usize::try_from(*n).map_err(|_| self.malformed(format!("dimension {n}"))),
                other => Err(self.malformed(format!("dimension is {}", other.kind()))),
            })
            .collect()
    }

    fn check_len(&self, header: &ArrayHeader, data: &Bytes) -> Result<(), ArrayError> {
        let have = match data {
            Bytes::At(s, e) => e - s,
            Bytes::Owned(v) => v.len(),
        };
        match header.data_len() {
            Some(n) if n == have => Ok(()),
            Some(n) => Err(self.malformed(format!(
                "shape {:?} of {} needs {n} data bytes, the pickle holds {have}",
                header.shape, header.dtype
            ))),
            None => Err(self.malformed(format!("shape {:?} overflows", header.shape))),
        }
    }
}

fn dtype_hint(code: &str) -> &'static str {
    match code.as_bytes().first() {
        Some(b'O') => " (object arrays)",
        Some(b'V') => " (structured or void dtype)",
        Some(b'U' | b'S') => " (string dtype)",
        Some(b'M' | b'm') => " (datetime dtype)",
        _ => "",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // Python: pickle.dumps(numpy.arange(6, dtype='<i4').reshape(2, 3), protocol=2)
    const P2: &[u8] = b"\x80\x02cnumpy._core.multiarray\n_reconstruct\nq\x00cnumpy\nndarray\nq\x01K\x00\x85q\x02c_codecs\nencode\nq\x03X\x01\x00\x00\x00bq\x04X\x06\x00\x00\x00latin1q\x05\x86q\x06Rq\x07\x87q\x08Rq\t(K\x01K\x02K\x03\x86q\ncnumpy\ndtype\nq\x0bX\x02\x00\x00\x00i4q\x0c\x89\x88\x87q\rRq\x0e(K\x03X\x01\x00\x00\x00<q\x0fNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x10b\x89h\x03X\x18\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x03\x00\x00\x00\x04\x00\x00\x00\x05\x00\x00\x00q\x11h\x05\x86q\x12Rq\x13tq\x14b.";

    #[test]
    fn protocol_2_latin1_data() {
        let a = parse(P2).unwrap();
        assert_eq!(a.header, ArrayHeader::new(Dtype::Int32, [2, 3], Order::C));
        assert_eq!(a.data_offset, None);
        assert_eq!(a.to_vec::<i32>().unwrap(), [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn every_truncation_and_flip_is_an_error_or_an_array() {
        for i in 0..P2.len() {
            assert!(parse(&P2[..i]).is_err(), "prefix of {i} bytes");
            for bit in 0..8 {
                let mut b = P2.to_vec();
                b[i] ^= 1 << bit;
                if let Ok(a) = parse(&b) {
                    assert_eq!(a.data.len(), a.header.data_len().unwrap());
                }
            }
        }
    }

    #[test]
    fn other_pickles_are_not_arrays() {
        let e = parse(b"\x80\x04K\x01.").unwrap_err();
        assert!(matches!(e, ArrayError::NotAnArray(_)), "{e}");
        let e = parse(b"\x80\x04]\x94.").unwrap_err();
        assert!(e.to_string().contains("opcode 0x5d at byte 2"), "{e}");
    }
}
