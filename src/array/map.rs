//! Read-only memory maps of stored arrays (joblib's `mmap_mode='r'`): the data of an
//! array kept in an aligned frame (format 4, codec 4) is mapped from its object file,
//! neither read nor copied.
//!
//! Invariant: a [`MappedArray`] maps only an object file in place — written once, renamed
//! into place, never changed (see `docs/FORMAT.md`) — and checks nothing of the data at map
//! time: [`MappedArray::verify`], [`Shelf::verify`] and every full read hash the whole
//! pickle. An array stored any other way (small, compressed, inline, a delta) is read in
//! full and verified instead.
// Mapping a file is `unsafe` in Rust because another program could change the file under
// the mapping; the store never changes an object file once it is in place (module docs).
#![allow(unsafe_code)]

use std::fs::File;
use std::ops::Range;

use super::StoredArray;
use crate::blob::{Digest, Hasher, aligned_payload};
use crate::index::Stored;
use crate::pickle::numpy::{self, ArrayError, ArrayHeader, ByteOrder, Element, Order};
use crate::{Error, Result, Shelf};

/// Element types whose every bit pattern is a valid value, so that array data can be
/// viewed as them in place ([`MappedArray::as_slice`]): the integer and float types (and
/// with the `ndarray` feature `half::f16` and `num_complex::Complex<f32 / f64>`), not
/// `bool`.
pub trait Plain: Element + sealed::Sealed {}

mod sealed {
    pub trait Sealed {}
}

macro_rules! plain {
    ($($t:ty),*) => {$(impl sealed::Sealed for $t {} impl Plain for $t {})*};
}
plain!(i8, i16, i32, i64, u8, u16, u32, u64, f32, f64);
#[cfg(feature = "ndarray")]
plain!(half::f16, num_complex::Complex<f32>, num_complex::Complex<f64>);

enum Source {
    Map { map: memmap2::Mmap, pickle: Range<usize>, data: Range<usize>, digest: Digest, hasher: Hasher },
    Loaded(StoredArray),
}

/// A stored array opened for reading in place: a read-only memory map of its object file
/// when the array is stored in an aligned frame ([`MappedArray::is_mapped`]), else the
/// array read in full.
pub struct MappedArray {
    header: ArrayHeader,
    source: Source,
}

impl std::fmt::Debug for MappedArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedArray").field("header", &self.header).field("mapped", &self.is_mapped()).finish()
    }
}

impl MappedArray {
    /// Dtype, byte order, shape and memory order.
    pub fn header(&self) -> &ArrayHeader {
        &self.header
    }

    /// Whether the data is a memory map of the object file (else it was read in full).
    pub fn is_mapped(&self) -> bool {
        matches!(self.source, Source::Map { .. })
    }

    /// The data bytes, in the array's memory order and byte order. For a mapped array,
    /// pages are read from the file as they are touched.
    pub fn data(&self) -> &[u8] {
        match &self.source {
            Source::Map { map, data, .. } => map.get(data.clone()).unwrap_or_default(),
            Source::Loaded(a) => a.data(),
        }
    }

    /// The data as a slice of `T`, in place (no copy): the elements in memory order.
    ///
    /// # Errors
    /// [`ArrayError::TypeMismatch`] when `T` is not the array's dtype;
    /// [`ArrayError::Unsupported`] when the data is big-endian (read it with
    /// [`crate::StoredArray::to_vec`]) or, for an array read in full, not aligned for `T`.
    pub fn as_slice<T: Plain>(&self) -> std::result::Result<&[T], ArrayError> {
        if T::DTYPE != self.header.dtype {
            return Err(ArrayError::TypeMismatch { expected: T::DTYPE, found: self.header.dtype });
        }
        if self.header.byte_order != ByteOrder::Little && self.header.dtype.item_size() > 1
            || cfg!(target_endian = "big")
        {
            return Err(ArrayError::Unsupported("a view of data not in the machine's byte order".into()));
        }
        // SAFETY: `T: Plain` is an integer, float or complex of floats (sealed), for which
        // every bit pattern is a value; `align_to` only returns a middle part that is
        // aligned for `T`, and the data's length is a multiple of the item size (checked
        // when the array was parsed).
        let (head, items, tail) = unsafe { self.data().align_to::<T>() };
        if !head.is_empty() || !tail.is_empty() {
            return Err(ArrayError::Unsupported("array data not aligned for its type".into()));
        }
        Ok(items)
    }

    /// An `ndarray` view of the data, in place (no copy). Feature `ndarray`.
    ///
    /// # Errors
    /// As [`MappedArray::as_slice`].
    #[cfg(feature = "ndarray")]
    pub fn view<T: Plain>(&self) -> std::result::Result<ndarray::ArrayViewD<'_, T>, ArrayError> {
        use ndarray::ShapeBuilder;
        let items = self.as_slice::<T>()?;
        let shape = ndarray::IxDyn(&self.header.shape);
        let view = match self.header.order {
            Order::C => ndarray::ArrayViewD::from_shape(shape, items),
            Order::Fortran => ndarray::ArrayViewD::from_shape(shape.f(), items),
        };
        view.map_err(|e| ArrayError::Invalid(format!("shape {:?}: {e}", self.header.shape)))
    }

    /// Hashes the whole stored pickle (reading every page of the map) and checks it
    /// against the object's address, as a full read does. An array read in full was
    /// verified when it was read.
    ///
    /// # Errors
    /// [`Error::CorruptedObject`] when the bytes do not hash to their address.
    pub fn verify(&self) -> Result<()> {
        if let Source::Map { map, pickle, digest, hasher, .. } = &self.source
            && hasher.digest(map.get(pickle.clone()).unwrap_or_default()) != *digest
        {
            return Err(Error::CorruptedObject {
                key: String::new(),
                digest: *digest,
                reason: "content does not hash to its address",
            });
        }
        Ok(())
    }

    /// The memory order of the data.
    pub fn order(&self) -> Order {
        self.header.order
    }
}

impl Shelf {
    /// Opens the numpy array stored under `key` for reading in place: an array of 64 KiB
    /// of data or more stored by this format is memory-mapped read-only from its object
    /// file — nothing of its data is read or copied until it is used — and any other is
    /// read in full (and verified). A map is **not verified** when it is made: call
    /// [`MappedArray::verify`] (or [`Shelf::verify`]) to check it; full reads always
    /// check.
    ///
    /// # Errors
    /// [`Error::Array`] when the value is not a supported numpy array (or its header in
    /// the file is damaged); [`Error::Io`] when the file cannot be mapped; otherwise as
    /// [`Shelf::get_pickle`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use pickleshelf::pickle::numpy::{self, ArrayHeader, Dtype, Order};
    /// let shelf = pickleshelf::Shelf::open(dir.path().join("state.db"))?;
    /// let values: Vec<f64> = (0..100_000).map(f64::from).collect();
    /// let header = ArrayHeader::new(Dtype::Float64, [values.len()], Order::C);
    /// shelf.insert_array_bytes("a", &header, &numpy::to_le_bytes(values.iter().copied()))?;
    /// let a = shelf.map_array("a")?.expect("stored");
    /// assert!(a.is_mapped());
    /// assert_eq!(a.as_slice::<f64>().unwrap()[99_999], 99_999.0);
    /// a.verify()?;
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    pub fn map_array(&self, key: &str) -> Result<Option<MappedArray>> {
        let index = self.store().index();
        let mapped = {
            let _pin = index.pin_files();
            match index.get(key)? {
                None => return Ok(None),
                Some(Stored::Object { digest }) => match index.object(&digest)? {
                    Some(rec) if !rec.in_tree && rec.base.is_none() => {
                        self.map_object(key, &digest, index.objects().path_of(&digest))?
                    }
                    _ => None,
                },
                Some(Stored::Inline { .. }) => None,
            }
        };
        if let Some(m) = mapped {
            return Ok(Some(m));
        }
        Ok(self.get_array_bytes(key)?.map(|a| MappedArray { header: a.header().clone(), source: Source::Loaded(a) }))
    }

    /// Maps an object file; `None` when its frame is not an aligned frame.
    fn map_object(&self, key: &str, digest: &Digest, path: std::path::PathBuf) -> Result<Option<MappedArray>> {
        let io = |source| Error::Io { path: path.clone(), source };
        let file = File::open(&path).map_err(io)?;
        // SAFETY: object files are never modified once in place (module docs); the map is
        // read-only.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let Some((start, len)) = aligned_payload(&map) else {
            return Ok(None);
        };
        let pickle = map.get(start..start + len).unwrap_or_default();
        let array = numpy::parse(pickle).map_err(|source| Error::Array { key: key.to_owned(), source })?;
        let Some(at) = array.data_offset else {
            return Ok(None);
        };
        let data = start + at..start + at + array.data.len();
        let header = array.header;
        let hasher = self.store().codec().hasher().clone();
        Ok(Some(MappedArray {
            header,
            source: Source::Map { map, pickle: start..start + len, data, digest: *digest, hasher },
        }))
    }
}
