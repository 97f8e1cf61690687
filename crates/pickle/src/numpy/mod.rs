//! numpy `ndarray` pickles, read and written without Python: [`parse`] recognises the
//! pickle of an array and finds its data; [`write`] writes the pickle numpy writes.
//!
//! Invariant: [`parse`] returns an [`NdArray`] only for a pickle that numpy would load as
//! a plain `numpy.ndarray` of a supported [`Dtype`] (bool, int8–64, uint8–64, float16/32/
//! 64, complex64/128; either byte order; C or Fortran order; 0 to 64 dimensions), whose
//! data holds exactly `shape.product() × item size` bytes in the array's memory order.
//! Anything else is an [`ArrayError`] naming what it found — never a panic. [`write`]
//! returns byte for byte what numpy 2's `pickle.dumps(a, protocol=5)` returns for a
//! contiguous array.
//!
//! What numpy writes, and so what [`parse`] reads:
//!
//! - protocol 5, contiguous arrays: `numpy._core.numeric._frombuffer(bytearray, dtype,
//!   shape, order)`, the data in-band as one `BYTEARRAY8`;
//! - protocols 2–4 (and 5 for arrays that are not contiguous):
//!   `numpy._core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')` then `BUILD` with
//!   the state `(1, shape, dtype, is_fortran, data)`, the data as `bytes` — at protocol 2
//!   through `_codecs.encode(text, 'latin1')`;
//! - the dtype as `numpy.dtype(code, False, True)` then `BUILD` with `(3, byte order,
//!   None, None, None, -1, -1, 0)`.
//!
//! numpy 1 names the modules `numpy.core.…`, numpy 2 `numpy._core.…`: both are read.
//! Out-of-band buffers (`NEXT_BUFFER`), object arrays, structured, string and datetime
//! dtypes and subclasses (`numpy.matrix`, masked arrays) are [`ArrayError::Unsupported`].

mod element;
#[cfg(feature = "ndarray")]
mod nd;
mod read;
mod write;

use std::borrow::Cow;
use std::fmt;

pub use element::{Element, to_le_bytes};
#[cfg(feature = "ndarray")]
pub use nd::{from_ndarray, write_ndarray};
pub use read::parse;
pub use write::write;

/// Most dimensions numpy allows (`NPY_MAXDIMS`).
pub const MAX_DIMS: usize = 64;

/// The element type of an array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dtype {
    /// `bool` (`b1`): one byte, 0 or 1.
    Bool,
    /// `int8` (`i1`).
    Int8,
    /// `int16` (`i2`).
    Int16,
    /// `int32` (`i4`).
    Int32,
    /// `int64` (`i8`).
    Int64,
    /// `uint8` (`u1`).
    UInt8,
    /// `uint16` (`u2`).
    UInt16,
    /// `uint32` (`u4`).
    UInt32,
    /// `uint64` (`u8`).
    UInt64,
    /// `float16` (`f2`).
    Float16,
    /// `float32` (`f4`).
    Float32,
    /// `float64` (`f8`).
    Float64,
    /// `complex64` (`c8`): two float32.
    Complex64,
    /// `complex128` (`c16`): two float64.
    Complex128,
}

impl Dtype {
    /// Every supported dtype.
    pub const ALL: [Dtype; 14] = [
        Dtype::Bool,
        Dtype::Int8,
        Dtype::Int16,
        Dtype::Int32,
        Dtype::Int64,
        Dtype::UInt8,
        Dtype::UInt16,
        Dtype::UInt32,
        Dtype::UInt64,
        Dtype::Float16,
        Dtype::Float32,
        Dtype::Float64,
        Dtype::Complex64,
        Dtype::Complex128,
    ];

    /// The code numpy's pickles name it by (`'f8'`, `'b1'`, ...).
    pub fn code(self) -> &'static str {
        match self {
            Dtype::Bool => "b1",
            Dtype::Int8 => "i1",
            Dtype::Int16 => "i2",
            Dtype::Int32 => "i4",
            Dtype::Int64 => "i8",
            Dtype::UInt8 => "u1",
            Dtype::UInt16 => "u2",
            Dtype::UInt32 => "u4",
            Dtype::UInt64 => "u8",
            Dtype::Float16 => "f2",
            Dtype::Float32 => "f4",
            Dtype::Float64 => "f8",
            Dtype::Complex64 => "c8",
            Dtype::Complex128 => "c16",
        }
    }

    /// The dtype of a code, `None` for codes this module does not support.
    pub fn from_code(code: &str) -> Option<Dtype> {
        Dtype::ALL.into_iter().find(|d| d.code() == code)
    }

    /// Bytes per element.
    pub fn item_size(self) -> usize {
        match self {
            Dtype::Bool | Dtype::Int8 | Dtype::UInt8 => 1,
            Dtype::Int16 | Dtype::UInt16 | Dtype::Float16 => 2,
            Dtype::Int32 | Dtype::UInt32 | Dtype::Float32 => 4,
            Dtype::Int64 | Dtype::UInt64 | Dtype::Float64 | Dtype::Complex64 => 8,
            Dtype::Complex128 => 16,
        }
    }

    /// The size of the scalars byte order applies to (a complex number is two floats).
    pub(crate) fn scalar_size(self) -> usize {
        match self {
            Dtype::Complex64 => 4,
            Dtype::Complex128 => 8,
            d => d.item_size(),
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dtype::Bool => "bool",
            Dtype::Int8 => "int8",
            Dtype::Int16 => "int16",
            Dtype::Int32 => "int32",
            Dtype::Int64 => "int64",
            Dtype::UInt8 => "uint8",
            Dtype::UInt16 => "uint16",
            Dtype::UInt32 => "uint32",
            Dtype::UInt64 => "uint64",
            Dtype::Float16 => "float16",
            Dtype::Float32 => "float32",
            Dtype::Float64 => "float64",
            Dtype::Complex64 => "complex64",
            Dtype::Complex128 => "complex128",
        })
    }
}

/// The byte order of an array's elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ByteOrder {
    /// Little-endian (`'<'`; numpy's native order on x86 and ARM).
    Little,
    /// Big-endian (`'>'`).
    Big,
}

/// The memory order of an array's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Order {
    /// Row-major: the last index varies fastest.
    C,
    /// Column-major: the first index varies fastest.
    Fortran,
}

/// What an array is, without its data: dtype, byte order, shape and memory order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ArrayHeader {
    /// The element type.
    pub dtype: Dtype,
    /// The elements' byte order; [`ByteOrder::Little`] for one-byte dtypes (which numpy
    /// writes as `'|'`, not applicable).
    pub byte_order: ByteOrder,
    /// The length of each dimension (empty for a 0-d array, which holds one element).
    pub shape: Vec<usize>,
    /// The memory order of the data.
    pub order: Order,
}

impl ArrayHeader {
    /// A little-endian array header.
    pub fn new(dtype: Dtype, shape: impl Into<Vec<usize>>, order: Order) -> ArrayHeader {
        ArrayHeader { dtype, byte_order: ByteOrder::Little, shape: shape.into(), order }
    }

    /// The number of elements (the product of the shape; 1 for a 0-d array), `None` when
    /// it overflows.
    pub fn len(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
    }

    /// Whether the array holds no element.
    pub fn is_empty(&self) -> bool {
        self.shape.contains(&0)
    }

    /// The number of data bytes (`len × item size`), `None` when it overflows.
    pub fn data_len(&self) -> Option<usize> {
        self.len()?.checked_mul(self.dtype.item_size())
    }

    /// The order numpy reports for this layout: an array with at most one dimension
    /// longer than 1 (or no element) is C-contiguous whatever order it was made in, and
    /// numpy names it `'C'`.
    pub fn effective_order(&self) -> Order {
        if self.is_empty() || self.shape.iter().filter(|&&d| d > 1).count() <= 1 { Order::C } else { self.order }
    }
}

/// A numpy array found in a pickle: its header and its data bytes, in the array's memory
/// order and byte order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NdArray<'a> {
    /// Dtype, byte order, shape, order.
    pub header: ArrayHeader,
    /// The data: borrowed from the pickle when it is stored there in one piece (protocols
    /// 3–5), owned when it had to be decoded (protocol 2's latin-1 text).
    pub data: Cow<'a, [u8]>,
    /// Where the data starts in the pickle bytes, when it is stored there in one piece.
    pub data_offset: Option<usize>,
}

impl NdArray<'_> {
    /// The same array, owning its data.
    pub fn into_owned(self) -> NdArray<'static> {
        NdArray { header: self.header, data: Cow::Owned(self.data.into_owned()), data_offset: self.data_offset }
    }

    /// The elements as a `Vec<T>` in memory order, converted from the array's byte order.
    ///
    /// # Errors
    /// [`ArrayError::TypeMismatch`] when `T` is not the array's dtype.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>, ArrayError> {
        element::to_vec(&self.header, &self.data)
    }
}

/// Why a pickle is not an array this module reads, or why an array cannot be written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArrayError {
    /// The pickle holds something other than a numpy array.
    #[error("not a numpy array pickle: {0}")]
    NotAnArray(String),
    /// A numpy array of a kind this module does not read (object arrays, structured
    /// dtypes, subclasses, out-of-band buffers, ...).
    #[error("unsupported numpy array: {0}")]
    Unsupported(String),
    /// The pickle names a numpy array but its bytes are damaged or inconsistent.
    #[error("malformed numpy array pickle at byte {offset}: {detail}")]
    Malformed {
        /// Offset in the pickle of the opcode that was wrong.
        offset: usize,
        /// What was wrong.
        detail: String,
    },
    /// The array's dtype is not the one asked for.
    #[error("array has dtype {found}, not {expected}")]
    TypeMismatch {
        /// The dtype asked for.
        expected: Dtype,
        /// The array's dtype.
        found: Dtype,
    },
    /// An array that cannot be written: its data does not match its header.
    #[error("cannot write array: {0}")]
    Invalid(String),
}
