//! numpy arrays in a shelf: stored as the pickle numpy writes (so Python reads them as
//! arrays), read back as typed arrays.
//!
//! Arrays of 64 KiB of data or more are stored in aligned frames (format 4), so that
//! [`Shelf::map_array`] can map their data from the object file ([`map`]).
//!
//! Invariant: an array is an ordinary value — the protocol-5 pickle of
//! [`pickle::numpy::write`], addressed and verified like any other — so every read here
//! goes through [`Shelf::get_pickle`]'s verification, and a value that is not an array of
//! a supported kind is left as it is and reported as [`Error::Array`].

mod map;

use std::ops::Range;

pub use map::{MappedArray, Plain};

use crate::pickle::numpy::{self, ArrayHeader, Element};
use crate::{Error, Result, Shelf};

/// An array read from a shelf: its header and the pickle bytes holding its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredArray {
    header: ArrayHeader,
    bytes: Vec<u8>,
    data: Range<usize>,
}

impl StoredArray {
    /// Dtype, byte order, shape and memory order.
    pub fn header(&self) -> &ArrayHeader {
        &self.header
    }

    /// The data bytes, in the array's memory order and byte order.
    pub fn data(&self) -> &[u8] {
        self.bytes.get(self.data.clone()).unwrap_or_default()
    }

    /// The elements in memory order, converted to native values.
    ///
    /// # Errors
    /// [`numpy::ArrayError::TypeMismatch`] when `T` is not the array's dtype.
    pub fn to_vec<T: Element>(&self) -> std::result::Result<Vec<T>, numpy::ArrayError> {
        self.as_ndarray().to_vec()
    }

    fn as_ndarray(&self) -> numpy::NdArray<'_> {
        numpy::NdArray {
            header: self.header.clone(),
            data: std::borrow::Cow::Borrowed(self.data()),
            data_offset: Some(self.data.start),
        }
    }
}

impl Shelf {
    /// Stores an array under `key` as the pickle numpy writes for it
    /// (`pickle.dumps(a, protocol=5)`, see [`numpy::write`]): Python's `shelve` or
    /// `pickle.loads` reads it as a numpy array.
    ///
    /// # Errors
    /// [`Error::Array`] when `data` does not match `header`; otherwise as
    /// [`Shelf::insert_pickle`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use pickleshelf::pickle::numpy::{ArrayHeader, Dtype, Order};
    /// let shelf = pickleshelf::Shelf::open(dir.path().join("state.db"))?;
    /// let header = ArrayHeader::new(Dtype::Int32, [2, 2], Order::C);
    /// shelf.insert_array_bytes("m", &header, &pickleshelf::pickle::numpy::to_le_bytes([1i32, 2, 3, 4]))?;
    /// let a = shelf.get_array_bytes("m")?.expect("stored");
    /// assert_eq!(a.header(), &header);
    /// assert_eq!(a.to_vec::<i32>().unwrap(), [1, 2, 3, 4]);
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    pub fn insert_array_bytes(&self, key: &str, header: &ArrayHeader, data: &[u8]) -> Result<()> {
        let bytes = numpy::write(header, data).map_err(|source| Error::Array { key: key.to_owned(), source })?;
        self.store().put(key, &bytes)
    }

    /// The numpy array stored under `key` (written by Python or by
    /// [`Shelf::insert_array_bytes`]): header and data bytes, verified like every read.
    ///
    /// # Errors
    /// [`Error::Array`] when the value is not a numpy array of a supported kind (it stays
    /// stored, readable with [`Shelf::get_pickle`]); otherwise as [`Shelf::get_pickle`].
    pub fn get_array_bytes(&self, key: &str) -> Result<Option<StoredArray>> {
        let Some(bytes) = self.get_pickle(key)? else {
            return Ok(None);
        };
        let parsed = numpy::parse(&bytes).map_err(|source| Error::Array { key: key.to_owned(), source })?;
        let header = parsed.header;
        match (parsed.data, parsed.data_offset) {
            (std::borrow::Cow::Borrowed(d), Some(at)) => {
                let data = at..at + d.len();
                Ok(Some(StoredArray { header, bytes, data }))
            }
            (d, _) => {
                let d = d.into_owned();
                let data = 0..d.len();
                Ok(Some(StoredArray { header, bytes: d, data }))
            }
        }
    }

    /// Stores an `ndarray` array under `key` as the pickle numpy writes for it (see
    /// [`Shelf::insert_array_bytes`]). Feature `ndarray`.
    ///
    /// # Errors
    /// As [`Shelf::insert_array_bytes`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let shelf = pickleshelf::Shelf::open(dir.path().join("state.db"))?;
    /// let a = ndarray::Array2::<f64>::from_shape_fn((3, 4), |(i, j)| (i * 4 + j) as f64);
    /// shelf.insert_array("a", &a)?;
    /// assert_eq!(shelf.get_array::<f64>("a")?, Some(a.into_dyn()));
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    #[cfg(feature = "ndarray")]
    pub fn insert_array<T, S, D>(&self, key: &str, array: &ndarray::ArrayBase<S, D>) -> Result<()>
    where
        T: Element,
        S: ndarray::Data<Elem = T>,
        D: ndarray::Dimension,
    {
        let (header, data) = numpy::from_ndarray(array);
        self.insert_array_bytes(key, &header, &data)
    }

    /// The numpy array stored under `key` as an `ndarray` array of `T` (same shape and
    /// memory order). Feature `ndarray`.
    ///
    /// # Errors
    /// [`Error::Array`] when the value is not a numpy array of a supported kind or its
    /// dtype is not `T`'s (the value stays stored); otherwise as [`Shelf::get_pickle`].
    #[cfg(feature = "ndarray")]
    pub fn get_array<T: Element>(&self, key: &str) -> Result<Option<ndarray::ArrayD<T>>> {
        let Some(a) = self.get_array_bytes(key)? else {
            return Ok(None);
        };
        a.as_ndarray().to_ndarray().map(Some).map_err(|source| Error::Array { key: key.to_owned(), source })
    }
}
