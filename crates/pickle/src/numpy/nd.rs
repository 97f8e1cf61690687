//! The `ndarray` crate's arrays to and from numpy pickles (feature `ndarray`).

use ndarray::{ArrayBase, ArrayD, Data, Dimension, IxDyn, ShapeBuilder};

use super::{ArrayError, ArrayHeader, Element, NdArray, Order};

impl NdArray<'_> {
    /// The array as an `ndarray::ArrayD<T>` of the same shape and memory order.
    ///
    /// # Errors
    /// [`ArrayError::TypeMismatch`] when `T` is not the array's dtype.
    pub fn to_ndarray<T: Element>(&self) -> Result<ArrayD<T>, ArrayError> {
        let items = self.to_vec::<T>()?;
        let shape = IxDyn(&self.header.shape);
        let made = match self.header.order {
            Order::C => ArrayD::from_shape_vec(shape, items),
            Order::Fortran => ArrayD::from_shape_vec(shape.f(), items),
        };
        made.map_err(|e| ArrayError::Invalid(format!("shape {:?}: {e}", self.header.shape)))
    }
}

/// The header and little-endian data bytes of an `ndarray` array: its own memory order
/// when it is C- or Fortran-contiguous, else C order (copied).
pub fn from_ndarray<T, S, D>(a: &ArrayBase<S, D>) -> (ArrayHeader, Vec<u8>)
where
    T: Element,
    S: Data<Elem = T>,
    D: Dimension,
{
    let shape = a.shape().to_vec();
    if a.is_standard_layout() {
        let bytes = super::to_le_bytes(a.iter().copied());
        (ArrayHeader::new(T::DTYPE, shape, Order::C), bytes)
    } else if a.t().is_standard_layout() {
        let bytes = super::to_le_bytes(a.t().iter().copied());
        (ArrayHeader::new(T::DTYPE, shape, Order::Fortran), bytes)
    } else {
        let bytes = super::to_le_bytes(a.iter().copied());
        (ArrayHeader::new(T::DTYPE, shape, Order::C), bytes)
    }
}

/// The pickle numpy writes for `a` (protocol 5; see [`super::write`]).
///
/// # Errors
/// [`ArrayError::Invalid`] for more than [`super::MAX_DIMS`] dimensions.
///
/// ```
/// use pickleshelf_pickle::numpy;
/// let a = ndarray::arr2(&[[1.0f32, 2.0], [3.0, 4.0]]);
/// let bytes = numpy::write_ndarray(&a)?;
/// assert_eq!(numpy::parse(&bytes)?.to_ndarray::<f32>()?, a.into_dyn());
/// # Ok::<(), numpy::ArrayError>(())
/// ```
pub fn write_ndarray<T, S, D>(a: &ArrayBase<S, D>) -> Result<Vec<u8>, ArrayError>
where
    T: Element,
    S: Data<Elem = T>,
    D: Dimension,
{
    let (header, bytes) = from_ndarray(a);
    super::write(&header, &bytes)
}
