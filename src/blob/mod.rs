//! Content addressing and framing of stored objects. No I/O.
//!
//! Invariant: an object's [`Digest`] is the blake3 hash (keyed blake3 when the store
//! has an auth key) of its **uncompressed pickle bytes**, and [`Codec::decode`] returns
//! bytes only after re-hashing them and finding that digest — so a corrupted, truncated,
//! tampered or swapped frame is rejected before anything is decoded.
//!
//! A frame is `[version u8][codec u8][uncompressed length, LEB128][dictionary id, LEB128
//! — only for codec 2][payload]`; codec 0 is raw bytes, 1 zstd, 2 zstd with a
//! dictionary trained from the store's own values; codec 4 is raw with the data of a numpy
//! array aligned to 64 bytes (for memory maps); codec 3 is a delta: zstd with the pickle
//! bytes of another object (its base, named in the header) as reference prefix
//! ([`delta`]). `docs/FORMAT.md` draws it byte by byte. [`sketch`] estimates which earlier
//! object a new value resembles.

mod delta;
mod digest;
mod frame;
mod sketch;

pub(crate) use delta::{FrameKind, frame_kind};
pub use digest::{Digest, Hasher};
pub use frame::Compression;
pub(crate) use frame::{
    Codec, DICT_MAX_VALUE, RAW_MAX, TRAIN_BYTES, TRAIN_SAMPLES, aligned_payload, array_data_offset, header,
};
#[cfg(feature = "s3")]
pub(crate) use frame::{get_leb, put_leb};
pub(crate) use sketch::Sketch;
