//! Python 3.13's `dbm.sqlite3` format, `shelve`'s default backend from Python 3.13 on.
//!
//! A database is one SQLite file holding one table (CPython's `Lib/dbm/sqlite3.py`):
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS Dict (
//!     key BLOB UNIQUE NOT NULL,
//!     value BLOB NOT NULL
//! )
//! ```
//!
//! Python binds keys and values with `CAST(? AS BLOB)`, so both are BLOBs (a `str` key
//! becomes its UTF-8 bytes); it opens the file in WAL mode. `shelve` stores keys as
//! UTF-8 and values as pickles.
//!
//! Invariant: [`SqliteReader::open`] refuses a file that is not SQLite, or is SQLite
//! without a `Dict(key, value)` table, before reading any record, and never writes to
//! the file nor creates one beside it (it opens the database `immutable`: no lock,
//! journal, `-wal` or `-shm` file); [`SqliteWriter`] builds a new file under a temporary name with Python's own
//! table definition and renames it into place when complete.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::{Sink, Source, interop, io, sync_parent, with_suffix};
use crate::error::{Error, Result};

/// The first 16 bytes of every SQLite database file.
pub const MAGIC: &[u8; 16] = super::SQLITE_MAGIC;

/// Python's table definition (`BUILD_TABLE` in `dbm/sqlite3.py`), verbatim.
pub const BUILD_TABLE: &str = "
  CREATE TABLE IF NOT EXISTS Dict (
    key BLOB UNIQUE NOT NULL,
    value BLOB NOT NULL
  )
";

/// How long to wait for a writer (e.g. Python holding the database) to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The URI that opens `path` read-only and immutable: `file:/a%20b.sqlite?mode=ro&immutable=1`
/// (every byte but unreserved ones and `/` percent-encoded).
fn immutable_uri(path: &Path) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut uri = String::from("file:");
    for &b in abs.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_' | b'~') {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?mode=ro&immutable=1");
    uri
}

fn sql_err(path: &Path) -> impl FnOnce(rusqlite::Error) -> Error + '_ {
    move |e| interop(path, format!("SQLite: {e}"))
}

/// A BLOB (or TEXT, as UTF-8) column as bytes; `None` for other types.
fn as_bytes(v: ValueRef<'_>) -> Option<Vec<u8>> {
    match v {
        ValueRef::Blob(b) | ValueRef::Text(b) => Some(b.to_vec()),
        _ => None,
    }
}

fn type_name(v: ValueRef<'_>) -> &'static str {
    match v {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "an INTEGER",
        ValueRef::Real(_) => "a REAL",
        ValueRef::Text(_) => "TEXT",
        ValueRef::Blob(_) => "a BLOB",
    }
}

/// Reads a `dbm.sqlite3` database (opened read-only).
pub struct SqliteReader {
    path: PathBuf,
    conn: Connection,
    /// (rowid, key) of every row, in rowid order.
    rows: Vec<(i64, Vec<u8>)>,
}

impl SqliteReader {
    /// Opens the SQLite file `path` read-only and immutable (so that nothing is written
    /// or created beside it), checks it holds a `Dict(key, value)` table and reads every
    /// key.
    ///
    /// # Errors
    /// [`Error::Interop`] when the file is not SQLite, is SQLite without the table (it
    /// names the tables there), a key is not a BLOB or TEXT, or changes wait in its
    /// `-wal` file (a program has it open, or did not close it: an immutable read would
    /// miss them); [`Error::Io`].
    pub fn open(path: &Path) -> Result<SqliteReader> {
        let mut head = Vec::new();
        fs::File::open(path).and_then(|f| f.take(16).read_to_end(&mut head)).map_err(io(path))?;
        if head != MAGIC {
            return Err(interop(path, "not an SQLite database (a dbm.sqlite3 shelve is one)"));
        }
        let wal = with_suffix(path, "-wal");
        if fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
            return Err(interop(
                path,
                format!(
                    "{} holds changes not yet in the database: a program has the shelve open, or did not \
                     close it; close it (in Python: shelve.open(...).close()) and import again",
                    wal.display()
                ),
            ));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(immutable_uri(path), flags).map_err(sql_err(path))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql_err(path))?;
        let table: Option<String> = conn
            .query_row(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'Dict' COLLATE NOCASE",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql_err(path))?;
        if table.is_none() {
            let mut stmt = conn
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .map_err(sql_err(path))?;
            let names = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
                .map_err(sql_err(path))?;
            let there = if names.is_empty() {
                "it has no tables".to_owned()
            } else {
                format!("its tables are {}", names.join(", "))
            };
            return Err(interop(
                path,
                format!("an SQLite database but not a dbm.sqlite3 shelve: no table Dict ({there})"),
            ));
        }
        let mut columns = Vec::new();
        {
            let mut stmt = conn.prepare("PRAGMA table_info(Dict)").map_err(sql_err(path))?;
            let mut rows = stmt.query([]).map_err(sql_err(path))?;
            while let Some(row) = rows.next().map_err(sql_err(path))? {
                columns.push(row.get::<_, String>(1).map_err(sql_err(path))?.to_ascii_lowercase());
            }
        }
        for col in ["key", "value"] {
            if !columns.iter().any(|c| c == col) {
                let reason = format!(
                    "an SQLite database but not a dbm.sqlite3 shelve: table Dict has no column {col} (its columns are {})",
                    columns.join(", ")
                );
                return Err(interop(path, reason));
            }
        }
        let mut rows = Vec::new();
        {
            let mut stmt = conn.prepare("SELECT rowid, key FROM Dict ORDER BY rowid").map_err(sql_err(path))?;
            let mut q = stmt.query([]).map_err(sql_err(path))?;
            while let Some(row) = q.next().map_err(sql_err(path))? {
                let rowid: i64 = row.get(0).map_err(sql_err(path))?;
                let v = row.get_ref(1).map_err(sql_err(path))?;
                let key = as_bytes(v).ok_or_else(|| {
                    interop(path, format!("row {rowid} of table Dict: the key is {}, not bytes", type_name(v)))
                })?;
                rows.push((rowid, key));
            }
        }
        Ok(SqliteReader { path: path.to_path_buf(), conn, rows })
    }
}

impl Source for SqliteReader {
    fn describe(&self) -> String {
        format!("{} (dbm.sqlite3 shelve)", self.path.display())
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    fn key(&self, i: usize) -> &[u8] {
        &self.rows[i].1
    }

    fn value(&mut self, i: usize) -> Result<Vec<u8>> {
        let rowid = self.rows[i].0;
        let path = &self.path;
        let mut stmt = self.conn.prepare_cached("SELECT value FROM Dict WHERE rowid = ?1").map_err(sql_err(path))?;
        let value = stmt
            .query_row([rowid], |r| {
                let v = r.get_ref(0)?;
                Ok(as_bytes(v).ok_or(type_name(v)))
            })
            .optional()
            .map_err(sql_err(path))?;
        match value {
            Some(Ok(v)) => Ok(v),
            Some(Err(kind)) => Err(interop(path, format!("row {rowid} of table Dict: the value is {kind}, not bytes"))),
            None => Err(interop(path, format!("row {rowid} of table Dict disappeared while it was read"))),
        }
    }
}

/// Writes a new `dbm.sqlite3` database under a temporary name; [`Sink::finish`] renames
/// it into place (replacing an existing one).
pub struct SqliteWriter {
    path: PathBuf,
    tmp: PathBuf,
    conn: Option<Connection>,
}

impl SqliteWriter {
    /// Starts writing `path` (as `PATH.pickleshelf-tmp`), with Python's table and one
    /// transaction for all records.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Interop`] when the temporary file cannot be created.
    pub fn create(path: &Path) -> Result<SqliteWriter> {
        let tmp = with_suffix(path, ".pickleshelf-tmp");
        for stale in [tmp.clone(), with_suffix(&tmp, "-journal")] {
            match fs::remove_file(&stale) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::Io { path: stale, source: e }),
            }
        }
        let conn = Connection::open(&tmp).map_err(sql_err(&tmp))?;
        conn.execute_batch(BUILD_TABLE).map_err(sql_err(&tmp))?;
        conn.execute_batch("BEGIN").map_err(sql_err(&tmp))?;
        Ok(SqliteWriter { path: path.to_path_buf(), tmp, conn: Some(conn) })
    }
}

impl Sink for SqliteWriter {
    fn put(&mut self, key: &str, pickle: &[u8]) -> Result<()> {
        let conn = self.conn.as_ref().ok_or_else(|| interop(&self.tmp, "already finished"))?;
        let mut stmt =
            conn.prepare_cached("INSERT INTO Dict (key, value) VALUES (?1, ?2)").map_err(sql_err(&self.tmp))?;
        stmt.execute((key.as_bytes(), pickle)).map_err(sql_err(&self.tmp))?;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        let conn = self.conn.take().ok_or_else(|| interop(&self.tmp, "already finished"))?;
        conn.execute_batch("COMMIT").map_err(sql_err(&self.tmp))?;
        conn.close().map_err(|(_, e)| sql_err(&self.tmp)(e))?;
        fs::File::open(&self.tmp).and_then(|f| f.sync_all()).map_err(io(&self.tmp))?;
        // A WAL or journal left beside an older database would be applied to this one.
        for stale in ["-wal", "-shm", "-journal"].map(|s| with_suffix(&self.path, s)) {
            match fs::remove_file(&stale) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::Io { path: stale, source: e }),
            }
        }
        fs::rename(&self.tmp, &self.path).map_err(io(&self.path))?;
        sync_parent(&self.path)
    }
}

impl Drop for SqliteWriter {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(conn);
            let _ = fs::remove_file(&self.tmp);
            let _ = fs::remove_file(with_suffix(&self.tmp, "-journal"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> Result<tempfile::TempDir> {
        tempfile::tempdir().map_err(|e| Error::Config(e.to_string()))
    }

    fn open_err(path: &Path) -> String {
        match SqliteReader::open(path) {
            Ok(_) => "no error".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn writes_and_reads_back() -> Result<()> {
        let dir = tmp()?;
        let p = dir.path().join("s.sqlite");
        let mut w = Box::new(SqliteWriter::create(&p)?);
        w.put("a", b"one")?;
        w.put("é", &[0u8, 1, 2])?;
        w.finish()?;
        assert!(!with_suffix(&p, ".pickleshelf-tmp").exists());
        let mut r = SqliteReader::open(&p)?;
        assert_eq!(r.len(), 2);
        assert_eq!((r.key(0).to_vec(), r.value(0)?), (b"a".to_vec(), b"one".to_vec()));
        assert_eq!((r.key(1).to_vec(), r.value(1)?), ("é".as_bytes().to_vec(), vec![0, 1, 2]));
        // Python's own schema, stored as written.
        let conn = Connection::open(&p).map_err(sql_err(&p))?;
        let sql: String = conn
            .query_row("SELECT sql FROM sqlite_master WHERE name = 'Dict'", [], |r| r.get(0))
            .map_err(sql_err(&p))?;
        assert_eq!(sql, BUILD_TABLE.trim().replace("IF NOT EXISTS ", ""));
        Ok(())
    }

    /// A WAL-mode database (as dbm.sqlite3 writes) with an odd name is read without a
    /// journal, `-wal` or `-shm` file appearing beside it, and without changing it; one
    /// whose `-wal` holds changes is refused.
    #[test]
    fn reading_leaves_nothing_beside_the_file() -> Result<()> {
        let dir = tmp()?;
        let p = dir.path().join("a b?c#%d.sqlite");
        let conn = Connection::open(&p).map_err(sql_err(&p))?;
        conn.execute_batch(&format!("PRAGMA journal_mode = wal; {BUILD_TABLE}")).map_err(sql_err(&p))?;
        conn.execute(
            "INSERT INTO Dict (key, value) VALUES (CAST(? AS BLOB), CAST(? AS BLOB))",
            (b"k".to_vec(), b"v".to_vec()),
        )
        .map_err(sql_err(&p))?;
        drop(conn);
        let listing = || -> Result<Vec<String>> {
            let mut names: Vec<String> = fs::read_dir(dir.path())
                .map_err(io(dir.path()))?
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<std::io::Result<_>>()
                .map_err(io(dir.path()))?;
            names.sort();
            Ok(names)
        };
        assert_eq!(listing()?, ["a b?c#%d.sqlite"]);
        let before = fs::read(&p).map_err(io(&p))?;
        let mut r = SqliteReader::open(&p)?;
        assert_eq!((r.len(), r.value(0)?), (1, b"v".to_vec()));
        assert_eq!(listing()?, ["a b?c#%d.sqlite"], "while open");
        drop(r);
        assert_eq!(listing()?, ["a b?c#%d.sqlite"]);
        assert_eq!(fs::read(&p).map_err(io(&p))?, before);
        // Changes waiting in the -wal file: refused, not read stale.
        let writer = Connection::open(&p).map_err(sql_err(&p))?;
        writer
            .execute_batch("PRAGMA wal_autocheckpoint = 0; INSERT INTO Dict VALUES (x'6b32', x'7632')")
            .map_err(sql_err(&p))?;
        let msg = open_err(&p);
        assert!(msg.contains("-wal holds changes not yet in the database"), "{msg}");
        drop(writer);
        assert_eq!(SqliteReader::open(&p)?.len(), 2, "once closed, the changes are read");
        Ok(())
    }

    #[test]
    fn a_dropped_writer_leaves_nothing() -> Result<()> {
        let dir = tmp()?;
        let mut w = SqliteWriter::create(&dir.path().join("s"))?;
        w.put("a", b"1")?;
        drop(w);
        assert_eq!(fs::read_dir(dir.path()).map_err(io(dir.path()))?.count(), 0);
        Ok(())
    }

    #[test]
    fn a_non_shelve_sqlite_file_is_refused_naming_its_tables() -> Result<()> {
        let dir = tmp()?;
        let p = dir.path().join("other.sqlite");
        let conn = Connection::open(&p).map_err(sql_err(&p))?;
        conn.execute_batch("CREATE TABLE users (id INTEGER, name TEXT); CREATE TABLE logs (line TEXT);")
            .map_err(sql_err(&p))?;
        drop(conn);
        let msg = open_err(&p);
        assert!(
            msg.ends_with(
                "other.sqlite: an SQLite database but not a dbm.sqlite3 shelve: no table Dict (its tables are logs, users)"
            ),
            "{msg}"
        );
        let q = dir.path().join("wrong.sqlite");
        let conn = Connection::open(&q).map_err(sql_err(&q))?;
        conn.execute_batch("CREATE TABLE Dict (k BLOB, v BLOB)").map_err(sql_err(&q))?;
        drop(conn);
        assert!(open_err(&q).ends_with("table Dict has no column key (its columns are k, v)"), "{}", open_err(&q));
        Ok(())
    }

    #[test]
    fn other_files_are_refused() -> Result<()> {
        let dir = tmp()?;
        let p = dir.path().join("x");
        fs::write(&p, b"not a database at all").map_err(io(&p))?;
        assert!(open_err(&p).ends_with("x: not an SQLite database (a dbm.sqlite3 shelve is one)"));
        fs::write(&p, b"").map_err(io(&p))?;
        assert!(open_err(&p).ends_with("x: not an SQLite database (a dbm.sqlite3 shelve is one)"));
        // The magic, then garbage: SQLite's own message.
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[0xAB; 4000]);
        fs::write(&p, &bytes).map_err(io(&p))?;
        assert!(open_err(&p).contains("x: SQLite: "), "{}", open_err(&p));
        Ok(())
    }

    #[test]
    fn keys_of_other_types_are_named() -> Result<()> {
        let dir = tmp()?;
        let p = dir.path().join("s");
        let conn = Connection::open(&p).map_err(sql_err(&p))?;
        conn.execute_batch(BUILD_TABLE).map_err(sql_err(&p))?;
        conn.execute("INSERT INTO Dict VALUES (42, x'00')", []).map_err(sql_err(&p))?;
        drop(conn);
        assert!(open_err(&p).ends_with("row 1 of table Dict: the key is an INTEGER, not bytes"), "{}", open_err(&p));
        Ok(())
    }
}
