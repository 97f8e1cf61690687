//! [`Progress`]: how long-running operations (import, export, verify, gc) report how far
//! they are, without the library drawing anything itself.
//!
//! An operation announces each phase with [`Progress::start`], reports finished steps
//! with [`Progress::advance`] and closes the phase with [`Progress::finish`]. The unit
//! `()` is the observer that ignores everything.

/// Receives progress reports from a long-running operation.
///
/// Every method has an empty default, so an implementation overrides only what it shows.
///
/// ```
/// use pickleshelf::Progress;
///
/// #[derive(Default)]
/// struct Count(u64);
/// impl Progress for Count {
///     fn advance(&mut self, n: u64) {
///         self.0 += n;
///     }
/// }
///
/// # let dir = tempfile::tempdir().unwrap();
/// let shelf = pickleshelf::Shelf::open(dir.path().join("s"))?;
/// shelf.insert("a", &1)?;
/// shelf.insert("b", &2)?;
/// let mut seen = Count::default();
/// assert!(shelf.verify_with_progress(&mut seen)?.is_ok());
/// assert_eq!(seen.0, 2); // one step per key
/// # Ok::<(), pickleshelf::Error>(())
/// ```
pub trait Progress {
    /// A phase begins: `what` names it (`"checking"`, `"importing"`, `"verifying"`, ...)
    /// and `total` is its number of steps, when known.
    fn start(&mut self, what: &'static str, total: Option<u64>) {
        let _ = (what, total);
    }

    /// `n` more steps of the current phase are done.
    fn advance(&mut self, n: u64) {
        let _ = n;
    }

    /// The current phase is over.
    fn finish(&mut self) {}
}

/// Ignores every report.
impl Progress for () {}
