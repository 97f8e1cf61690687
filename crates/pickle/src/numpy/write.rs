//! Writes an array's pickle exactly as numpy 2's `pickle.dumps(a, protocol=5)` does for
//! a contiguous array: `_frombuffer(bytearray, dtype, shape, order)`, framed like CPython.

use super::{ArrayError, ArrayHeader, ByteOrder, Order};
use crate::emit::Emitter;
use crate::opcodes as op;

/// The pickle of an array (protocol 5), byte for byte what numpy 2's
/// `pickle.dumps(a, protocol=5)` writes for a C- or Fortran-contiguous array `a` of this
/// header and data; numpy 1.26 and 2 load it (numpy 2's module names, `numpy._core`).
///
/// `data` holds the elements in `header.order`'s memory order and `header.byte_order`.
/// An array with at most one dimension longer than 1 is written as order `'C'`, as
/// numpy writes it.
///
/// # Errors
/// [`ArrayError::Invalid`] when `data` is not `header.data_len()` bytes long or the shape
/// has more than [`super::MAX_DIMS`] dimensions.
///
/// ```
/// use pickleshelf_pickle::numpy::{self, ArrayHeader, Dtype, Order};
/// let bytes = numpy::write(&ArrayHeader::new(Dtype::Float64, [2], Order::C), &[0; 16])?;
/// assert!(bytes.starts_with(b"\x80\x05\x95"));
/// # Ok::<(), numpy::ArrayError>(())
/// ```
pub fn write(header: &ArrayHeader, data: &[u8]) -> Result<Vec<u8>, ArrayError> {
    if header.shape.len() > super::MAX_DIMS {
        return Err(ArrayError::Invalid(format!(
            "{} dimensions (numpy allows {})",
            header.shape.len(),
            super::MAX_DIMS
        )));
    }
    match header.data_len() {
        Some(n) if n == data.len() => {}
        n => {
            return Err(ArrayError::Invalid(format!(
                "shape {:?} of {} needs {} data bytes, got {}",
                header.shape,
                header.dtype,
                n.map_or("more than usize::MAX".into(), |n| n.to_string()),
                data.len()
            )));
        }
    }
    emit(header, data).map_err(|e| ArrayError::Invalid(e.to_string()))
}

fn emit(header: &ArrayHeader, data: &[u8]) -> crate::Result<Vec<u8>> {
    let mut em = Emitter::with_capacity(5, data.len() + 256)?;
    // _frombuffer(buffer, dtype, shape, order): save_reduce(callable, args)
    em.save_global("numpy._core.numeric", "_frombuffer")?;
    em.begin_save(); // the argument tuple, of 4: MARK ... TUPLE
    em.op(op::MARK);
    em.save_bytearray(data)?;
    // the dtype: dtype(code, False, True), then BUILD with its state
    em.begin_save();
    em.save_global("numpy", "dtype")?;
    em.begin_save();
    em.save_str(header.dtype.code().as_bytes())?;
    em.save_bool(false);
    em.save_bool(true);
    em.op(op::TUPLE3);
    em.memoize()?;
    em.op(op::REDUCE);
    em.memoize()?;
    em.begin_save(); // the state: (3, endian, None, None, None, -1, -1, 0)
    em.op(op::MARK);
    em.save_i64(3);
    let endian: &[u8] = match (header.dtype.item_size(), header.byte_order) {
        (1, _) => b"|",
        (_, ByteOrder::Little) => b"<",
        (_, ByteOrder::Big) => b">",
    };
    em.save_str(endian)?;
    em.save_none();
    em.save_none();
    em.save_none();
    em.save_i64(-1);
    em.save_i64(-1);
    em.save_i64(0);
    em.op(op::TUPLE);
    em.memoize()?;
    em.op(op::BUILD);
    // the shape
    em.begin_save();
    let dims = &header.shape;
    if dims.is_empty() {
        em.op(op::EMPTY_TUPLE);
    } else {
        if dims.len() > 3 {
            em.op(op::MARK);
        }
        for &d in dims {
            em.save_i128(d as i128);
        }
        match dims.len() {
            1 => em.op(op::TUPLE1),
            2 => em.op(op::TUPLE2),
            3 => em.op(op::TUPLE3),
            _ => em.op(op::TUPLE),
        }
        em.memoize()?;
    }
    em.save_str(match header.effective_order() {
        Order::C => b"C",
        Order::Fortran => b"F",
    })?;
    em.op(op::TUPLE);
    em.memoize()?;
    em.op(op::REDUCE);
    em.memoize()?;
    Ok(em.finish())
}
