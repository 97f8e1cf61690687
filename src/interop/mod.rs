//! Moving pickles between a [`Shelf`] and files Python reads and writes: a `shelve` in
//! the `dbm.dumb` format ([`dumb`]), a `shelve` in Python 3.13's `dbm.sqlite3` format
//! (`sqlite`, with the crate's `sqlite` feature), and a directory of one `.pkl` file per
//! key plus a manifest ([`dir`]).
//!
//! Without the `sqlite` feature a `dbm.sqlite3` shelve is still recognized, and reading
//! or writing one is an [`Error::Interop`] saying that the feature is needed.
//!
//! Invariants:
//! - Pickles move byte-exact, both ways: what Python stored under a key is what the store
//!   returns, and what the store holds is what Python reads back.
//! - Import changes nothing until every record of the source has been read and checked
//!   (key is UTF-8 text of at most [`MAX_KEY_LEN`] bytes, appearing once; value is a
//!   pickle the codec decodes): a damaged or foreign file is an error naming what is
//!   wrong, and the store is left as it was. Sources of up to [`IMPORT_BATCH_BYTES`] are
//!   then written in one atomic batch; larger ones in batches of that size, each atomic.
//! - Export writes under temporary names and puts the result in place only when it is
//!   complete and synced; a failed export leaves the target as it was.
//!
//! ```
//! use pickleshelf::interop::{self, Target, ShelveFormat};
//! # let dir = tempfile::tempdir().unwrap();
//! let shelf = pickleshelf::Shelf::open(dir.path().join("state.db"))?;
//! shelf.insert("answer", &42)?;
//!
//! // What Python opens with `shelve.open(path)`.
//! let target = Target::Shelve { path: dir.path().join("state"), format: ShelveFormat::Dumb };
//! interop::export(&shelf, "", target.create(false)?, &mut ())?;
//!
//! // ...and back, into another store.
//! let other = pickleshelf::Shelf::open(dir.path().join("other.db"))?;
//! let source = interop::open_shelve(&dir.path().join("state"), None)?;
//! let report = interop::check(source, &mut ())?.write_to(&other, &mut ())?;
//! assert_eq!(report.keys, 1);
//! assert_eq!(other.get::<i64>("answer")?, Some(42));
//! # Ok::<(), pickleshelf::Error>(())
//! ```

pub mod dir;
pub mod dumb;
pub mod python;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::index::MAX_KEY_LEN;
use crate::pickle;
use crate::progress::Progress;
use crate::shelf::{Batch, Shelf};

/// The first 16 bytes of every SQLite database file (how a `dbm.sqlite3` shelve is
/// recognized).
pub const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Imports whose pickles add up to at most this many bytes are written in one atomic
/// batch (larger ones in batches of about this size).
pub const IMPORT_BATCH_BYTES: u64 = 64 << 20;

/// Records read from a Python `shelve` or an export directory, by position.
pub trait Source {
    /// What the source is, for messages: e.g. `state (dbm.dumb shelve)`.
    fn describe(&self) -> String;
    /// The file errors about the source name.
    fn path(&self) -> &Path;
    /// Number of records.
    fn len(&self) -> usize;
    /// True when there is no record.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The key of record `i`, as the file stores it (a `shelve` stores UTF-8).
    fn key(&self, i: usize) -> &[u8];
    /// The value of record `i`: pickle bytes.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Interop`] when it cannot be read.
    fn value(&mut self, i: usize) -> Result<Vec<u8>>;
}

/// Somewhere to write records; nothing appears at the target until [`Sink::finish`].
pub trait Sink {
    /// Adds one key and its pickle bytes (keys come in the order given, each once).
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Interop`] when it cannot be written.
    fn put(&mut self, key: &str, pickle: &[u8]) -> Result<()>;
    /// Completes the output, syncs it and puts it in place. Dropping a sink without
    /// calling this removes what it wrote.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Interop`]; the target is then as it was.
    fn finish(self: Box<Self>) -> Result<()>;
}

/// The `dbm` flavour of a Python `shelve`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShelveFormat {
    /// `dbm.dumb`: `PATH.dat` and `PATH.dir`; every CPython has it (see [`dumb`]).
    Dumb,
    /// `dbm.sqlite3`: one SQLite file at `PATH`; `shelve`'s default from Python 3.13
    /// (the `sqlite` module, with the crate's `sqlite` feature).
    Sqlite3,
    /// `dbm.gnu`: one gdbm file at `PATH`; what `shelve` writes where Python has gdbm
    /// (most Linux machines). Read through Python ([`python`]); not written.
    Gnu,
    /// `dbm.ndbm`: `PATH.db` (Berkeley DB) or `PATH.pag` and `PATH.dir` (ndbm, or gdbm's
    /// emulation of it), as the Python was built. Read through Python ([`python`]); not
    /// written.
    Ndbm,
}

impl ShelveFormat {
    /// Python's module name: `dbm.dumb` or `dbm.sqlite3`.
    pub fn module(self) -> &'static str {
        match self {
            ShelveFormat::Dumb => "dbm.dumb",
            ShelveFormat::Sqlite3 => "dbm.sqlite3",
            ShelveFormat::Gnu => "dbm.gnu",
            ShelveFormat::Ndbm => "dbm.ndbm",
        }
    }
}

/// The error for reading (`writing` false) or writing a `dbm.sqlite3` shelve in a build
/// without the `sqlite` feature.
#[cfg(not(feature = "sqlite"))]
fn no_sqlite(path: &Path, writing: bool) -> Error {
    let reason = if writing {
        "writing a dbm.sqlite3 shelve needs pickleshelf's `sqlite` feature, which this build \
         lacks (the pickleshelf command has it; a dbm.dumb shelve needs nothing)"
    } else {
        "this is a dbm.sqlite3 shelve, which this build of pickleshelf reads only with its \
         `sqlite` feature (the pickleshelf command has it)"
    };
    interop(path, reason)
}

fn interop(path: &Path, reason: impl Into<String>) -> Error {
    Error::Interop { path: path.to_path_buf(), reason: reason.into() }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// `path` with `suffix` appended to its file name (`state` + `.dat` = `state.dat`).
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// fsyncs the directory holding `path` (so a rename into it is durable).
fn sync_parent(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::File::open(parent).and_then(|f| f.sync_all()).map_err(io(parent))
}

/// A key for messages: quoted text, or Python's `b'...'` when it is not UTF-8; long
/// keys are cut short.
pub(crate) fn show_key(key: &[u8]) -> String {
    const MAX: usize = 60;
    match std::str::from_utf8(key) {
        Ok(s) if s.chars().count() > MAX => format!("{:?}...", s.chars().take(MAX).collect::<String>()),
        Ok(s) => format!("{s:?}"),
        Err(_) if key.len() > MAX => format!("{}...", pickle::bytes_repr(&key[..MAX])),
        Err(_) => pickle::bytes_repr(key),
    }
}

/// Says which `dbm` flavour the shelve at `path` is, as Python's `dbm.whichdb` does:
/// `PATH.dat` with `PATH.dir` is `dbm.dumb`; a file `PATH` starting with SQLite's magic
/// is `dbm.sqlite3`.
///
/// `PATH.pag` with `PATH.dir`, or `PATH.db`, is `dbm.ndbm`; a file `PATH` starting with
/// gdbm's magic number is `dbm.gnu`.
///
/// # Errors
/// [`Error::Interop`] when nothing there is a shelve.
pub fn detect_shelve(path: &Path) -> Result<ShelveFormat> {
    let dat = with_suffix(path, ".dat");
    let dir = with_suffix(path, ".dir");
    let pag = with_suffix(path, ".pag");
    if dat.exists() && dir.exists() && !pag.exists() {
        return Ok(ShelveFormat::Dumb);
    }
    if pag.exists() && dir.exists() || with_suffix(path, ".db").is_file() {
        return Ok(ShelveFormat::Ndbm);
    }
    if let Some(ext @ ("dat" | "dir" | "bak")) = path.extension().and_then(|e| e.to_str()) {
        let base = path.with_extension("");
        if with_suffix(&base, ".dat").exists() && with_suffix(&base, ".dir").exists() {
            let reason = format!(
                "this is the .{ext} file of the dbm.dumb shelve {}; name the shelve without its \
                 .dat/.dir suffix, as shelve.open does",
                base.display()
            );
            return Err(interop(path, reason));
        }
    }
    let mut head = Vec::new();
    match fs::File::open(path) {
        Ok(f) => {
            f.take(16).read_to_end(&mut head).map_err(io(path))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let hint = match (dat.exists(), dir.exists()) {
                (true, false) => format!("{} is missing (dbm.dumb keeps its index there)", dir.display()),
                (false, true) => format!("{} is missing (dbm.dumb keeps its values there)", dat.display()),
                _ => match path.extension().and_then(|e| e.to_str()) {
                    Some("dat" | "dir" | "bak") => "no shelve here; name a dbm.dumb shelve without its \
                                                    .dat/.dir suffix, as shelve.open does"
                        .into(),
                    _ => "no shelve here (neither PATH.dat and PATH.dir nor an SQLite file PATH)".into(),
                },
            };
            return Err(interop(path, hint));
        }
        Err(e) => return Err(Error::Io { path: path.to_path_buf(), source: e }),
    }
    if head == SQLITE_MAGIC {
        return Ok(ShelveFormat::Sqlite3);
    }
    if head.len() >= 4 {
        // GDBM_OMAGIC, GDBM_MAGIC32 and 64, and their "numsync" forms (gdbm 1.21), in
        // either byte order (dbm.whichdb checks the first three, native order only).
        let magic = |m: u32| matches!(m, 0x13579acd..=0x13579ad1);
        let b = [head[0], head[1], head[2], head[3]];
        if magic(u32::from_le_bytes(b)) || magic(u32::from_be_bytes(b)) {
            return Ok(ShelveFormat::Gnu);
        }
    }
    Err(interop(
        path,
        "not a shelve pickleshelf reads: neither dbm.dumb (PATH.dat + PATH.dir), dbm.sqlite3, dbm.gnu nor dbm.ndbm",
    ))
}

/// Opens the Python `shelve` at `path` for reading: `format`, or the one
/// [`detect_shelve`] finds. A `dbm.gnu` or `dbm.ndbm` shelve is read through the first
/// of [`python::DEFAULT_PYTHONS`] that has the module ([`open_shelve_with`] names
/// others).
///
/// # Errors
/// [`Error::Interop`] when it is not a readable shelve of that format (the message says
/// what is wrong and where); [`Error::Io`].
pub fn open_shelve(path: &Path, format: Option<ShelveFormat>) -> Result<Box<dyn Source>> {
    let pythons: Vec<PathBuf> = python::DEFAULT_PYTHONS.iter().map(PathBuf::from).collect();
    open_shelve_with(path, format, &pythons)
}

/// [`open_shelve`], reading a `dbm.gnu` or `dbm.ndbm` shelve through the first of
/// `pythons` (programs on `PATH`, or paths) that has the module; see [`python`].
///
/// # Errors
/// As for [`open_shelve`]; for `dbm.gnu` and `dbm.ndbm`, [`Error::Interop`] also when
/// no interpreter can read it (the message lists what each said).
pub fn open_shelve_with(path: &Path, format: Option<ShelveFormat>, pythons: &[PathBuf]) -> Result<Box<dyn Source>> {
    let format = match format {
        Some(f) => f,
        None => detect_shelve(path)?,
    };
    Ok(match format {
        ShelveFormat::Dumb => Box::new(dumb::DumbReader::open(path)?),
        #[cfg(feature = "sqlite")]
        ShelveFormat::Sqlite3 => Box::new(sqlite::SqliteReader::open(path)?),
        #[cfg(not(feature = "sqlite"))]
        ShelveFormat::Sqlite3 => return Err(no_sqlite(path, false)),
        ShelveFormat::Gnu | ShelveFormat::Ndbm => Box::new(python::PythonReader::open(path, format, pythons)?),
    })
}

/// Opens an export directory (see [`dir`]) for reading.
///
/// # Errors
/// [`Error::Interop`] when its manifest is missing or wrong; [`Error::Io`].
pub fn open_dir(path: &Path) -> Result<Box<dyn Source>> {
    Ok(Box::new(dir::DirReader::open(path)?))
}

/// Where an export goes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// A Python `shelve` that `shelve.open(path)` opens.
    Shelve {
        /// The name given to `shelve.open` (for `dbm.dumb`, without `.dat`/`.dir`).
        path: PathBuf,
        /// Its `dbm` flavour.
        format: ShelveFormat,
    },
    /// A directory of `.pkl` files and a manifest (see [`dir`]).
    Dir(PathBuf),
}

impl Target {
    /// The first file or directory an export would replace, if any (an empty directory
    /// counts as absent for [`Target::Dir`]).
    pub fn existing(&self) -> Option<PathBuf> {
        match self {
            Target::Shelve { path, format: ShelveFormat::Dumb } => {
                dumb::files(path).into_iter().find(|p| fs::symlink_metadata(p).is_ok())
            }
            Target::Shelve { path, format: ShelveFormat::Sqlite3 | ShelveFormat::Gnu } => {
                fs::symlink_metadata(path).is_ok().then(|| path.clone())
            }
            Target::Shelve { path, format: ShelveFormat::Ndbm } => {
                [".db", ".pag", ".dir"].iter().map(|s| with_suffix(path, s)).find(|p| fs::symlink_metadata(p).is_ok())
            }
            Target::Dir(path) => dir::is_occupied(path).then(|| path.clone()),
        }
    }

    /// Starts writing the export. With `overwrite`, an existing target is replaced when
    /// [`Sink::finish`] succeeds (a directory only when it is itself an export).
    ///
    /// # Errors
    /// [`Error::Interop`] when the target exists and `overwrite` is false, or cannot be
    /// replaced; [`Error::Io`].
    pub fn create(&self, overwrite: bool) -> Result<Box<dyn Sink>> {
        if !overwrite && let Some(p) = self.existing() {
            return Err(interop(&p, "already exists; not replacing it"));
        }
        Ok(match self {
            Target::Shelve { path, format: ShelveFormat::Dumb } => Box::new(dumb::DumbWriter::create(path)?),
            #[cfg(feature = "sqlite")]
            Target::Shelve { path, format: ShelveFormat::Sqlite3 } => Box::new(sqlite::SqliteWriter::create(path)?),
            #[cfg(not(feature = "sqlite"))]
            Target::Shelve { path, format: ShelveFormat::Sqlite3 } => return Err(no_sqlite(path, true)),
            Target::Shelve { path, format: f @ (ShelveFormat::Gnu | ShelveFormat::Ndbm) } => {
                let reason = format!(
                    "pickleshelf reads {} shelves but does not write them; export to dbm.dumb, which every \
                     Python's shelve.open reads, or dbm.sqlite3",
                    f.module()
                );
                return Err(interop(path, reason));
            }
            Target::Dir(path) => Box::new(dir::DirWriter::create(path)?),
        })
    }
}

/// A source whose every record was read and found importable, from [`check`].
pub struct CheckedImport {
    source: Box<dyn Source>,
    keys: Vec<String>,
    /// blake3 of each value, to notice a source that changes before it is written.
    digests: Vec<blake3::Hash>,
    /// The values, when they add up to at most [`IMPORT_BATCH_BYTES`].
    values: Option<Vec<Vec<u8>>>,
    bytes: u64,
}

/// What an import wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ImportReport {
    /// Keys written.
    pub keys: u64,
    /// Of those, keys that held a value before (now replaced).
    pub replaced: u64,
    /// Total length of the pickles written.
    pub bytes: u64,
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ExportReport {
    /// Keys written.
    pub keys: u64,
    /// Total length of the pickles written.
    pub bytes: u64,
}

/// Reads every record of `source` and checks that it can be imported: the key is UTF-8
/// of at most [`MAX_KEY_LEN`] bytes and appears once, the value is a pickle the codec
/// decodes. Reports one `"checking"` step per record. Nothing is written anywhere.
///
/// # Errors
/// [`Error::Interop`] naming the source, the key and the problem, for the first record
/// that fails; [`Error::Io`] when the source cannot be read.
pub fn check(mut source: Box<dyn Source>, progress: &mut dyn Progress) -> Result<CheckedImport> {
    let n = source.len();
    progress.start("checking", Some(n as u64));
    let mut keys = Vec::with_capacity(n);
    let mut seen = HashSet::with_capacity(n);
    let mut digests = Vec::with_capacity(n);
    let mut values = Some(Vec::new());
    let mut bytes = 0u64;
    for i in 0..n {
        let raw = source.key(i).to_vec();
        let raw = raw.as_slice();
        let key = match std::str::from_utf8(raw) {
            Ok(k) => k.to_owned(),
            Err(_) => {
                let shown = show_key(raw);
                return Err(interop(source.path(), format!("key {shown} is not UTF-8 (shelve keys are UTF-8 text)")));
            }
        };
        if key.len() > MAX_KEY_LEN {
            let reason =
                format!("key {} is {} bytes long; at most {MAX_KEY_LEN} are allowed", show_key(raw), key.len());
            return Err(interop(source.path(), reason));
        }
        if !seen.insert(key.clone()) {
            return Err(interop(source.path(), format!("key {} appears twice", show_key(raw))));
        }
        let value = source.value(i)?;
        if let Err(e) = pickle::check(&value) {
            return Err(interop(source.path(), format!("key {}: {e}", show_key(raw))));
        }
        bytes += value.len() as u64;
        digests.push(blake3::hash(&value));
        values = match values {
            Some(mut v) if bytes <= IMPORT_BATCH_BYTES => {
                v.push(value);
                Some(v)
            }
            _ => None,
        };
        keys.push(key);
        progress.advance(1);
    }
    progress.finish();
    Ok(CheckedImport { source, keys, digests, values, bytes })
}

impl CheckedImport {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when the source has no record.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Total length of the pickles.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// What the source is (see [`Source::describe`]).
    pub fn describe(&self) -> String {
        self.source.describe()
    }

    /// Writes every record into `shelf` (replacing keys it already has) and syncs it.
    /// Reports one `"importing"` step per record queued, then a `"writing"` phase of
    /// unknown length while the last batch is compressed, written and synced.
    ///
    /// # Errors
    /// Store errors as for [`Shelf::apply`] and [`Shelf::sync`]; [`Error::Interop`] when
    /// a large source changed since it was checked. A source of at most
    /// [`IMPORT_BATCH_BYTES`] is written in one atomic batch, so after any error the
    /// store is as it was; a larger one may be written in part.
    pub fn write_to(mut self, shelf: &Shelf, progress: &mut dyn Progress) -> Result<ImportReport> {
        let n = self.keys.len();
        progress.start("importing", Some(n as u64));
        let mut report = ImportReport::default();
        let mut batch = Batch::new();
        let mut batch_bytes = 0u64;
        let mut cached = self.values.take().map(Vec::into_iter);
        for i in 0..n {
            let value = match cached.as_mut().and_then(Iterator::next) {
                Some(v) => v,
                None => {
                    let v = self.source.value(i)?;
                    if blake3::hash(&v) != self.digests[i] {
                        let reason = format!("key {} changed while it was imported", show_key(self.source.key(i)));
                        return Err(interop(self.source.path(), reason));
                    }
                    v
                }
            };
            let key = &self.keys[i];
            if shelf.contains_key(key)? {
                report.replaced += 1;
            }
            batch_bytes += value.len() as u64;
            report.bytes += value.len() as u64;
            batch.insert_pickle(key, &value)?;
            if batch_bytes >= IMPORT_BATCH_BYTES {
                shelf.apply(std::mem::take(&mut batch))?;
                batch_bytes = 0;
            }
            report.keys += 1;
            progress.advance(1);
        }
        progress.finish();
        // The last batch (for most sources, all of it) is compressed and written here.
        progress.start("writing", None);
        if !batch.is_empty() {
            shelf.apply(batch)?;
        }
        shelf.sync()?;
        progress.finish();
        Ok(report)
    }
}

/// Writes every key of `shelf` starting with `prefix`, in key order, with its pickle
/// bytes (each verified against its address as it is read) into `sink`, then finishes
/// it. Reports one `"exporting"` step per key.
///
/// # Errors
/// Store errors as for [`Shelf::get_pickle`] (a damaged value stops the export); sink
/// errors. The target is left as it was after any error.
pub fn export(
    shelf: &Shelf,
    prefix: &str,
    mut sink: Box<dyn Sink>,
    progress: &mut dyn Progress,
) -> Result<ExportReport> {
    let total = shelf.keys_with_prefix(prefix).count() as u64;
    progress.start("exporting", Some(total));
    let mut report = ExportReport::default();
    for item in shelf.scan_prefix_pickle(prefix) {
        let (key, bytes) = item?;
        sink.put(&key, &bytes)?;
        report.keys += 1;
        report.bytes += bytes.len() as u64;
        progress.advance(1);
    }
    sink.finish()?;
    progress.finish();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source in memory.
    pub(crate) struct Mem(pub Vec<(Vec<u8>, Vec<u8>)>);

    impl Source for Mem {
        fn describe(&self) -> String {
            "memory".into()
        }
        fn path(&self) -> &Path {
            Path::new("mem")
        }
        fn len(&self) -> usize {
            self.0.len()
        }
        fn key(&self, i: usize) -> &[u8] {
            &self.0[i].0
        }
        fn value(&mut self, i: usize) -> Result<Vec<u8>> {
            Ok(self.0[i].1.clone())
        }
    }

    fn err_of(r: Result<CheckedImport>) -> String {
        match r {
            Ok(_) => "no error".into(),
            Err(e) => e.to_string(),
        }
    }

    const ONE: &[u8] = b"\x80\x04K\x01.";

    #[test]
    fn check_rejects_what_a_store_cannot_hold() {
        let bad_key = err_of(check(Box::new(Mem(vec![(b"\xff".to_vec(), ONE.to_vec())])), &mut ()));
        assert_eq!(bad_key, "mem: key b'\\xff' is not UTF-8 (shelve keys are UTF-8 text)");
        let long = err_of(check(Box::new(Mem(vec![(vec![b'k'; 1025], ONE.to_vec())])), &mut ()));
        assert!(long.contains("is 1025 bytes long; at most 1024"), "{long}");
        let twice =
            err_of(check(Box::new(Mem(vec![(b"a".to_vec(), ONE.to_vec()), (b"a".to_vec(), ONE.to_vec())])), &mut ()));
        assert_eq!(twice, "mem: key \"a\" appears twice");
        let not_pickle = err_of(check(Box::new(Mem(vec![(b"a".to_vec(), b"hello".to_vec())])), &mut ()));
        assert!(not_pickle.starts_with("mem: key \"a\": pickle decode failed at byte 0"), "{not_pickle}");
    }

    #[test]
    fn import_writes_byte_exact_and_counts_replacements() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Config(e.to_string()))?;
        let shelf = Shelf::open(dir.path().join("s"))?;
        shelf.insert("a", &"old")?;
        // Protocol 2 with a memo the encoder would not write: must come back unchanged.
        let odd = b"\x80\x02]q\x00(K\x01h\x00e.".to_vec();
        let source = Mem(vec![(b"a".to_vec(), ONE.to_vec()), (b"b".to_vec(), odd.clone())]);
        let checked = check(Box::new(source), &mut ())?;
        assert_eq!((checked.len(), checked.bytes()), (2, (ONE.len() + odd.len()) as u64));
        let report = checked.write_to(&shelf, &mut ())?;
        assert_eq!(report, ImportReport { keys: 2, replaced: 1, bytes: (ONE.len() + odd.len()) as u64 });
        assert_eq!(shelf.get_pickle("a")?.as_deref(), Some(ONE));
        assert_eq!(shelf.get_pickle("b")?, Some(odd));
        Ok(())
    }

    #[test]
    fn show_key_quotes_and_cuts() {
        assert_eq!(show_key(b"user:1"), "\"user:1\"");
        assert_eq!(show_key(b"a\xffb"), "b'a\\xffb'");
        assert_eq!(show_key(&[b'x'; 100]), format!("\"{}\"...", "x".repeat(60)));
    }

    #[test]
    fn detect_names_what_is_there() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Config(e.to_string()))?;
        let p = dir.path().join("s");
        let msg = |r: Result<ShelveFormat>| r.map_or_else(|e| e.to_string(), |f| f.module().to_owned());
        assert!(msg(detect_shelve(&p)).contains("no shelve here"), "{}", msg(detect_shelve(&p)));
        fs::write(with_suffix(&p, ".dat"), b"").map_err(io(&p))?;
        assert!(msg(detect_shelve(&p)).contains("s.dir is missing"), "{}", msg(detect_shelve(&p)));
        fs::write(with_suffix(&p, ".dir"), b"").map_err(io(&p))?;
        assert_eq!(msg(detect_shelve(&p)), "dbm.dumb");
        assert!(msg(detect_shelve(&with_suffix(&p, ".dir"))).contains("without its .dat/.dir suffix"));
        let g = dir.path().join("g");
        fs::write(&g, 0x13579aceu32.to_ne_bytes()).map_err(io(&g))?;
        assert!(msg(detect_shelve(&g)).contains("dbm.gnu"), "{}", msg(detect_shelve(&g)));
        let t = dir.path().join("t");
        fs::write(&t, b"just some text").map_err(io(&t))?;
        assert!(msg(detect_shelve(&t)).contains("not a shelve pickleshelf reads"));
        Ok(())
    }

    /// An SQLite file is recognized as a dbm.sqlite3 shelve in every build; without the
    /// `sqlite` feature, opening it or exporting to one is an error naming the feature,
    /// and nothing is written.
    #[test]
    fn a_dbm_sqlite3_shelve_is_recognized_with_or_without_the_feature() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Config(e.to_string()))?;
        let p = dir.path().join("s.sqlite");
        let mut bytes = SQLITE_MAGIC.to_vec();
        bytes.resize(4096, 0);
        fs::write(&p, &bytes).map_err(io(&p))?;
        assert_eq!(detect_shelve(&p)?, ShelveFormat::Sqlite3);
        let out = dir.path().join("out.sqlite");
        let target = Target::Shelve { path: out.clone(), format: ShelveFormat::Sqlite3 };
        let (read, write) = (open_shelve(&p, None).map(|_| ()), target.create(false).map(|_| ()));
        if cfg!(feature = "sqlite") {
            // The module itself is tested in `sqlite.rs`: a zeroed file is not a database.
            assert!(read.is_err());
            assert!(write.is_ok());
        } else {
            let (read, write) = (err_text(read), err_text(write));
            assert!(read.contains("this is a dbm.sqlite3 shelve") && read.contains("`sqlite` feature"), "{read}");
            assert!(
                write.contains("writing a dbm.sqlite3 shelve needs") && write.contains("`sqlite` feature"),
                "{write}"
            );
            assert!(!out.exists());
        }
        assert_eq!(fs::read(&p).map_err(io(&p))?, bytes, "the shelve is left as it was");
        Ok(())
    }

    fn err_text(r: Result<()>) -> String {
        r.map_or_else(|e| e.to_string(), |()| "no error".into())
    }
}
