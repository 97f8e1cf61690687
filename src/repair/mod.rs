//! Checking and repairing a store: [`verify`] (`Shelf::verify`, `Shelf::gc`),
//! [`directory`] (`ShelfBuilder::repair`: the page directory rebuilt from the packs) and
//! [`salvage`] (`ShelfBuilder::salvage`: what can be read copied into a new store).
//!
//! Invariant: nothing here removes or rewrites a record, object file or pack unless the
//! whole directory of the store was read; a store that cannot be read in full is reported,
//! never trimmed to what could be read.

pub(crate) mod directory;
pub(crate) mod salvage;
pub(crate) mod verify;

pub use directory::RepairReport;
pub use salvage::{PARTIAL_SUFFIX, RECOVERED_PREFIX, SalvageReport};
pub use verify::VerifyReport;
