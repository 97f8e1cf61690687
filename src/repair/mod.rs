//! Checking and repairing a store: [`verify`] (`Shelf::verify`, `Shelf::gc`).
//!
//! Invariant: nothing here removes or rewrites a record, object file or pack unless the
//! whole directory of the store was read; a store that cannot be read in full is reported,
//! never trimmed to what could be read.

pub(crate) mod verify;

pub use verify::VerifyReport;
