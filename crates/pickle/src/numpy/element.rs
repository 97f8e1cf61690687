//! Rust element types of numpy dtypes, and the conversion of data bytes to them.

use super::{ArrayError, ArrayHeader, ByteOrder, Dtype};

/// A Rust type that holds the elements of one numpy [`Dtype`].
///
/// Implemented for `bool`, the integer types `i8`–`i64` and `u8`–`u64`, `f32` and `f64`;
/// with the `ndarray` feature also for `half::f16` and `num_complex::Complex<f32>` /
/// `Complex<f64>`.
pub trait Element: Copy + Sized + 'static {
    /// The dtype whose elements this type holds.
    const DTYPE: Dtype;
    /// Reads one element from its [`Dtype::item_size`] bytes in the given byte order
    /// (missing bytes, in a slice too short, read as zero).
    fn read(bytes: &[u8], order: ByteOrder) -> Self;
    /// Appends this element's bytes in little-endian order.
    fn write_le(&self, out: &mut Vec<u8>);
}

macro_rules! number {
    ($($t:ty => $d:ident),*) => {$(
        impl Element for $t {
            const DTYPE: Dtype = Dtype::$d;
            #[inline]
            fn read(bytes: &[u8], order: ByteOrder) -> Self {
                const N: usize = std::mem::size_of::<$t>();
                let mut b = [0u8; N];
                if let Some(src) = bytes.get(..N) {
                    b.copy_from_slice(src);
                }
                match order {
                    ByteOrder::Little => <$t>::from_le_bytes(b),
                    ByteOrder::Big => <$t>::from_be_bytes(b),
                }
            }
            #[inline]
            fn write_le(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}

number!(i8 => Int8, i16 => Int16, i32 => Int32, i64 => Int64, u8 => UInt8, u16 => UInt16, u32 => UInt32,
        u64 => UInt64, f32 => Float32, f64 => Float64);

impl Element for bool {
    const DTYPE: Dtype = Dtype::Bool;
    #[inline]
    fn read(bytes: &[u8], _: ByteOrder) -> Self {
        bytes.first().is_some_and(|&b| b != 0)
    }
    #[inline]
    fn write_le(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

#[cfg(feature = "ndarray")]
impl Element for half::f16 {
    const DTYPE: Dtype = Dtype::Float16;
    #[inline]
    fn read(bytes: &[u8], order: ByteOrder) -> Self {
        half::f16::from_bits(u16::read(bytes, order))
    }
    #[inline]
    fn write_le(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bits().to_le_bytes());
    }
}

#[cfg(feature = "ndarray")]
macro_rules! complex {
    ($($t:ty => $d:ident),*) => {$(
        impl Element for num_complex::Complex<$t> {
            const DTYPE: Dtype = Dtype::$d;
            #[inline]
            fn read(bytes: &[u8], order: ByteOrder) -> Self {
                let n = std::mem::size_of::<$t>();
                num_complex::Complex::new(<$t>::read(bytes, order), <$t>::read(bytes.get(n..).unwrap_or_default(), order))
            }
            #[inline]
            fn write_le(&self, out: &mut Vec<u8>) {
                self.re.write_le(out);
                self.im.write_le(out);
            }
        }
    )*};
}

#[cfg(feature = "ndarray")]
complex!(f32 => Complex64, f64 => Complex128);

/// The elements of `data` (laid out as `header` says) in memory order.
pub(super) fn to_vec<T: Element>(header: &ArrayHeader, data: &[u8]) -> Result<Vec<T>, ArrayError> {
    if T::DTYPE != header.dtype {
        return Err(ArrayError::TypeMismatch { expected: T::DTYPE, found: header.dtype });
    }
    let size = header.dtype.item_size();
    if Some(data.len()) != header.data_len() {
        return Err(ArrayError::Invalid(format!(
            "{} data bytes for shape {:?} of {}",
            data.len(),
            header.shape,
            header.dtype
        )));
    }
    let order = header.byte_order;
    Ok(data.chunks_exact(size).map(|c| T::read(c, order)).collect())
}

/// The little-endian data bytes of `items`, for [`super::write`] with
/// [`super::ByteOrder::Little`].
///
/// ```
/// use pickleshelf_pickle::numpy;
/// assert_eq!(numpy::to_le_bytes([1u16, 2]), [1, 0, 2, 0]);
/// ```
pub fn to_le_bytes<T: Element>(items: impl IntoIterator<Item = T>) -> Vec<u8> {
    let items = items.into_iter();
    let mut out = Vec::with_capacity(items.size_hint().0 * T::DTYPE.item_size());
    for x in items {
        x.write_le(&mut out);
    }
    out
}
