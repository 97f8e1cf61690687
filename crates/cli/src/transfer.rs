//! `import` and `export`: a store to and from Python's `shelve` files and export
//! directories (the formats live in the library's `interop` module).

use std::path::PathBuf;

use anyhow::bail;
use clap::{ArgGroup, Args, ValueEnum};
use pickleshelf::interop::{self, ShelveFormat, Target};

use super::bar::Bar;
use super::{Access, StoreArgs, examples, human_bytes, manual, write_stdout};

/// A `dbm` flavour, as the command line names it.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Dbm {
    /// dbm.dumb: PATH.dat + PATH.dir; every Python opens it.
    Dumb,
    /// dbm.sqlite3: one SQLite file PATH; shelve's default from Python 3.13.
    Sqlite3,
    /// dbm.gnu: one gdbm file PATH; shelve's choice where Python has gdbm (import only).
    Gnu,
    /// dbm.ndbm: PATH.db or PATH.pag + PATH.dir (import only).
    Ndbm,
}

impl From<Dbm> for ShelveFormat {
    fn from(d: Dbm) -> Self {
        match d {
            Dbm::Dumb => ShelveFormat::Dumb,
            Dbm::Sqlite3 => ShelveFormat::Sqlite3,
            Dbm::Gnu => ShelveFormat::Gnu,
            Dbm::Ndbm => ShelveFormat::Ndbm,
        }
    }
}

const IMPORT: &str = "  pickleshelf import state.db --shelve ~/app/state          # any shelve.open made
  pickleshelf import state.db --shelve app.sqlite --dbm sqlite3
  pickleshelf import state.db --shelve app-gdbm --python /usr/bin/python3
  pickleshelf import state.db --dir state-export

  # A shelve written by Python:
  python3 -c 'import shelve; s = shelve.open(\"py-shelve\"); s[\"user:1\"] = {\"name\": \"Ada\"}; s.close()'
  pickleshelf import state.db --shelve py-shelve && pickleshelf get state.db user:1";

/// Copy a Python shelve or an export directory into a store.
///
/// --shelve PATH reads the shelve Python opens with shelve.open(PATH), in any of
/// its formats, detected as dbm.whichdb does unless --dbm names it:
///   dumb     PATH.dat and PATH.dir, what shelve writes without gdbm
///   sqlite3  one SQLite file PATH, shelve's default from Python 3.13; read
///            read-only and immutable: nothing is written beside it
///   gnu      one gdbm file PATH, what shelve writes on most Linux machines
///   ndbm     PATH.db, or PATH.pag and PATH.dir
/// gnu and ndbm files belong to C libraries, so a Python reads them: the first
/// of python3 and /usr/bin/python3 that has the module (dbm.gnu comes with
/// python3-gdbm on Debian and Ubuntu), or the one --python or PICKLESHELF_PYTHON
/// names; it opens the file read-only and streams the items to pickleshelf.
/// --dir DIR reads a directory written by export --dir (or by hand: .pkl files
/// and a manifest.json, see docs/CLI.md).
///
/// Every pickle is stored byte for byte. Nothing is written until every record
/// has been read and checked (UTF-8 key of at most 1024 bytes; a pickle that
/// decodes), so a damaged or foreign file stops the import with the store
/// unchanged. Up to 64 MiB of pickles go in as one atomic batch. Existing keys
/// are replaced. The store is created when it does not exist. A progress bar
/// shows on stderr when it is a terminal.
#[derive(Args)]
#[command(
    verbatim_doc_comment,
    override_usage = "pickleshelf import STORE (--shelve PATH [--dbm dumb|sqlite3|gnu|ndbm] [--python P] | --dir DIR) [OPTIONS]"
)]
#[command(after_help = examples(IMPORT), after_long_help = manual(IMPORT))]
#[command(group(ArgGroup::new("from").required(true).args(["shelve", "dir"])))]
pub struct Import {
    #[command(flatten)]
    store: StoreArgs,
    /// Read the Python shelve PATH (the name given to shelve.open).
    #[arg(long, value_name = "PATH")]
    shelve: Option<PathBuf>,
    /// The shelve's dbm format (default: detected).
    #[arg(long, value_enum, requires = "shelve", conflicts_with = "dir")]
    dbm: Option<Dbm>,
    /// The Python that reads a dbm.gnu or dbm.ndbm shelve [default: python3, then
    /// /usr/bin/python3].
    #[arg(long, value_name = "P", env = "PICKLESHELF_PYTHON", requires = "shelve")]
    python: Option<PathBuf>,
    /// Read the export directory DIR.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

impl Import {
    pub fn run(self) -> anyhow::Result<()> {
        let source = match (&self.shelve, &self.dir) {
            (Some(path), _) => {
                let pythons = match &self.python {
                    Some(p) => vec![p.clone()],
                    None => interop::python::DEFAULT_PYTHONS.iter().map(PathBuf::from).collect(),
                };
                interop::open_shelve_with(path, self.dbm.map(ShelveFormat::from), &pythons)?
            }
            (None, Some(dir)) => interop::open_dir(dir)?,
            (None, None) => bail!("give --shelve PATH or --dir DIR"),
        };
        // An existing store is opened first, so that a locked or wrong store fails at
        // once; a new one is created only once the source has been checked.
        let existing = if self.store.store.exists() { Some(self.store.open(Access::Write)?) } else { None };
        let mut bar = Bar::stderr();
        let checked = interop::check(source, &mut bar)?;
        let shelf = match existing {
            Some(s) => s,
            None => self.store.open(Access::Create)?,
        };
        let from = checked.describe();
        let report = checked.write_to(&shelf, &mut bar)?;
        drop(bar);
        shelf.close()?;
        let line = format!(
            "imported {} keys ({}) from {from} into {}; {} replaced\n",
            report.keys,
            human_bytes(report.bytes),
            self.store.store.display(),
            report.replaced
        );
        write_stdout(line.as_bytes())
    }
}

const EXPORT: &str = "  pickleshelf export state.db --shelve state-py        # state-py.dat + state-py.dir
  python3 -c 'import shelve; print(dict(shelve.open(\"state-py\", \"r\")))'
  pickleshelf export state.db --shelve state-py.sqlite --dbm sqlite3
  pickleshelf export state.db --dir state-export --prefix user: --force";

/// Copy a store's keys into a Python shelve or an export directory.
///
/// --shelve PATH writes a shelve that Python opens with shelve.open(PATH): by
/// default in the dbm.dumb format (PATH.dat and PATH.dir), which every CPython
/// reads, with or without gdbm; with --dbm sqlite3, one SQLite file PATH in the
/// dbm.sqlite3 format of Python 3.13 and later. --dir DIR writes one .pkl file
/// per key and a manifest.json mapping keys to files (see docs/CLI.md);
/// pickle.load reads each file.
///
/// Pickles are written byte for byte, each checked against its digest as it is
/// read. The output is written under a temporary name and put in place only when
/// complete; an existing target is replaced only with --force (and a directory
/// only when it is itself an export). A progress bar shows on stderr when it is a
/// terminal.
#[derive(Args)]
#[command(
    verbatim_doc_comment,
    override_usage = "pickleshelf export STORE (--shelve PATH [--dbm dumb|sqlite3] | --dir DIR) [--prefix P] [--force] [OPTIONS]"
)]
#[command(after_help = examples(EXPORT), after_long_help = manual(EXPORT))]
#[command(group(ArgGroup::new("to").required(true).args(["shelve", "dir"])))]
pub struct Export {
    #[command(flatten)]
    store: StoreArgs,
    /// Write a Python shelve that shelve.open(PATH) opens.
    #[arg(long, value_name = "PATH")]
    shelve: Option<PathBuf>,
    /// The shelve's dbm format [default: dumb].
    #[arg(long, value_enum, requires = "shelve", conflicts_with = "dir")]
    dbm: Option<Dbm>,
    /// Write an export directory DIR.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Only keys starting with P.
    #[arg(long, short, value_name = "P", default_value = "", hide_default_value = true)]
    prefix: String,
    /// Replace the target if it exists.
    #[arg(long, short)]
    force: bool,
}

impl Export {
    pub fn run(self) -> anyhow::Result<()> {
        let (target, to) = match (&self.shelve, &self.dir) {
            (Some(path), _) => {
                let format = self.dbm.map_or(ShelveFormat::Dumb, ShelveFormat::from);
                if matches!(format, ShelveFormat::Gnu | ShelveFormat::Ndbm) {
                    bail!(
                        "export writes dbm.dumb (--dbm dumb, which every Python's shelve.open reads) or \
                         dbm.sqlite3 shelves, not {}",
                        format.module()
                    );
                }
                let to = format!("{} ({} shelve)", path.display(), format.module());
                (Target::Shelve { path: path.clone(), format }, to)
            }
            (None, Some(dir)) => (Target::Dir(dir.clone()), format!("{} (export directory)", dir.display())),
            (None, None) => bail!("give --shelve PATH or --dir DIR"),
        };
        if !self.force
            && let Some(p) = target.existing()
        {
            bail!("{}: already exists; use --force to replace it", p.display());
        }
        let shelf = self.store.open(Access::Read)?;
        let sink = target.create(self.force)?;
        let report = {
            let mut bar = Bar::stderr();
            interop::export(&shelf, &self.prefix, sink, &mut bar)?
        };
        let line = format!(
            "exported {} keys ({}) from {} to {to}\n",
            report.keys,
            human_bytes(report.bytes),
            self.store.store.display()
        );
        write_stdout(line.as_bytes())
    }
}
