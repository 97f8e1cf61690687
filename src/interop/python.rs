//! `dbm.gnu` and `dbm.ndbm` shelves, read through a Python interpreter: their file
//! formats belong to C libraries (gdbm; Berkeley DB or gdbm's ndbm emulation, as the
//! Python was built), so a child `python3` opens the file with Python's own module,
//! read-only, and streams its items to this process over a pipe.
//!
//! The stream (the child's stdout; integers big-endian):
//!
//! ```text
//! header  "PSDBM1\n"
//! record  'R'  u32 key length  key bytes  u64 value length  value bytes
//! end     'E'  u64 number of records sent
//! error   'X'  u32 length  UTF-8 message             (the child then exits 1)
//! missing 'M'  u32 length  UTF-8 message             (this Python lacks the module)
//! ```
//!
//! Invariant: a [`PythonReader`] exists only for a stream that ended with `E`, whose
//! count matches the records read, with nothing after it, from a child that exited 0.
//! A crash, a cut or malformed stream, or an error the child reports is an
//! [`Error::Interop`] naming the shelve (and the child's last line on stderr), so the
//! import stops before anything is written. The interpreters are tried in order; one
//! that cannot be started or lacks the module (`M`) passes to the next, and when none
//! can read the shelve the error lists what each said. Values wait in memory up to
//! [`IMPORT_BATCH_BYTES`], then in an unnamed temporary file.

use std::fs;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{IMPORT_BATCH_BYTES, ShelveFormat, Source, interop};
use crate::error::{Error, Result};

/// The interpreters tried when none is named: `python3` on `PATH`, then the system's
/// (on Debian and Ubuntu the one `python3-gdbm` extends; a `python3` from pyenv or a
/// virtual environment built without gdbm comes first on `PATH` but lacks the module).
pub const DEFAULT_PYTHONS: [&str; 2] = ["python3", "/usr/bin/python3"];

/// The stream's first bytes.
const HEADER: &[u8] = b"PSDBM1\n";

/// A key longer than this in the stream is a protocol error, not a key (a shelve's keys
/// are far shorter; [`super::check`] refuses more than `MAX_KEY_LEN` anyway).
const MAX_STREAM_KEY: u32 = 1 << 20;

/// The child: opens the shelve read-only with Python's own module and streams it.
const SCRIPT: &str = r#"
import sys
out = sys.stdout.buffer
def send(tag, msg):
    b = msg.encode("utf-8", "replace")
    out.write(tag + len(b).to_bytes(4, "big") + b)
    out.flush()
    sys.exit(1)
out.write(b"PSDBM1\n")
module, path = sys.argv[1], sys.argv[2]
try:
    if module == "dbm.gnu":
        import dbm.gnu as m
    else:
        import dbm.ndbm as m
except ImportError as e:
    send(b"M", "Python %s at %s has no %s module (%s)" % (sys.version.split()[0], sys.executable, module, e))
try:
    db = m.open(path, "r")
except Exception as e:
    send(b"X", "%s cannot open it: %s: %s" % (module, type(e).__name__, e))
def gnu_keys(db):
    k = db.firstkey()
    while k is not None:
        yield k
        k = db.nextkey(k)
n = 0
try:
    for k in (gnu_keys(db) if module == "dbm.gnu" else db.keys()):
        v = db[k]
        out.write(b"R" + len(k).to_bytes(4, "big") + k + len(v).to_bytes(8, "big"))
        out.write(v)
        n += 1
    db.close()
except Exception as e:
    send(b"X", "%s failed after %d records: %s: %s" % (module, n, type(e).__name__, e))
out.write(b"E" + n.to_bytes(8, "big"))
out.flush()
"#;

/// Where the values wait between the stream and the import.
enum Spool {
    Memory(Vec<u8>),
    /// An unnamed temporary file (unlinked at once on Unix; removed on drop elsewhere).
    File {
        file: fs::File,
        path: Option<PathBuf>,
    },
}

/// A `dbm.gnu` or `dbm.ndbm` shelve, read whole through Python (see the module docs).
pub struct PythonReader {
    path: PathBuf,
    describe: String,
    keys: Vec<Vec<u8>>,
    /// (offset, length) of each value in the spool.
    spans: Vec<(u64, u64)>,
    spool: Spool,
}

impl PythonReader {
    /// Reads the shelve at `path` (the name given to `shelve.open`) in `format`
    /// ([`ShelveFormat::Gnu`] or [`ShelveFormat::Ndbm`]) with the first of `pythons`
    /// that can: each is a program name looked up on `PATH` or a path.
    ///
    /// # Errors
    /// [`Error::Interop`] naming the shelve: no interpreter could be started or had the
    /// module (the message lists each and suggests installing `python3-gdbm`), the
    /// module cannot open the file, the stream is cut or malformed; [`Error::Io`] when
    /// the temporary file cannot be written.
    pub fn open(path: &Path, format: ShelveFormat, pythons: &[PathBuf]) -> Result<PythonReader> {
        let module = format.module();
        if !matches!(format, ShelveFormat::Gnu | ShelveFormat::Ndbm) {
            return Err(interop(path, format!("{module} is not read through Python")));
        }
        if format == ShelveFormat::Gnu {
            check_gdbm_length(path)?;
        }
        let mut tried = Vec::new();
        for python in pythons {
            match read_with(python, module, path)? {
                Attempt::Read(reader) => return Ok(reader),
                Attempt::Unusable(why) => tried.push(why),
            }
        }
        let hint = if format == ShelveFormat::Gnu {
            " (on Debian or Ubuntu: apt-get install python3-gdbm, for /usr/bin/python3)"
        } else {
            ""
        };
        Err(interop(
            path,
            format!(
                "this is a {module} shelve, which pickleshelf reads through a Python that has {module}, \
                 and none was found: {}; name one with --python PATH or PICKLESHELF_PYTHON{hint}",
                if tried.is_empty() { "no interpreter given".to_owned() } else { tried.join("; ") }
            ),
        ))
    }
}

/// Refuses a gdbm file shorter than its header says: gdbm reads such a file as one with
/// fewer records (or none), so the import would silently lose the rest. The header
/// (gdbm's `gdbm_file_header`) starts with the magic number, the block size, the
/// directory's offset, four `int`s, then `next_block`, the offset where the file ends:
/// at byte 32 with 64-bit offsets (magic `0x13579acf`, or `0x13579ad1` for the numsync
/// format), at byte 28 with 32-bit ones (`0x13579acd`, `0x13579ad0`), in the writer's
/// byte order. Other files are left to gdbm.
fn check_gdbm_length(path: &Path) -> Result<()> {
    let mut head = [0u8; 40];
    let mut f = fs::File::open(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
    let len = f.metadata().map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?.len();
    if f.read_exact(&mut head).is_err() {
        return Err(interop(path, format!("a dbm.gnu file of {len} bytes is cut short: its header is incomplete")));
    }
    let word = |at: usize, le: bool| {
        let b = [head[at], head[at + 1], head[at + 2], head[at + 3]];
        if le { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) }
    };
    for le in [true, false] {
        let end = match word(0, le) {
            0x13579acf | 0x13579ad1 => {
                let (lo, hi) = (u64::from(word(32, le)), u64::from(word(36, le)));
                if le { lo | hi << 32 } else { hi | lo << 32 }
            }
            0x13579acd | 0x13579ad0 => u64::from(word(28, le)),
            _ => continue,
        };
        if len < end {
            return Err(interop(
                path,
                format!("the dbm.gnu file is cut short: its header says it ends at byte {end}, it has {len} bytes"),
            ));
        }
        return Ok(());
    }
    Ok(())
}

enum Attempt {
    Read(PythonReader),
    /// This interpreter cannot be used (not found, or without the module): why.
    Unusable(String),
}

/// Runs one interpreter over the shelve.
fn read_with(python: &Path, module: &str, path: &Path) -> Result<Attempt> {
    let shown = python.display().to_string();
    let child = Command::new(python)
        .args(["-I", "-c", SCRIPT, module])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return Ok(Attempt::Unusable(format!("{shown}: cannot run it: {e}"))),
    };
    let stderr = child.stderr.take().map(|mut err| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = err.read_to_end(&mut buf);
            buf
        })
    });
    let stdout = child.stdout.take();
    let streamed = match stdout {
        Some(out) => read_stream(BufReader::new(out), path),
        None => Err(Stream::Broken("no stdout".into())),
    };
    if streamed.is_err() {
        // It may still be writing to a pipe nobody reads.
        let _ = child.kill();
    }
    let status = child.wait();
    let err_text = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    let last_line = String::from_utf8_lossy(&err_text).lines().rev().find(|l| !l.trim().is_empty()).map(str::to_owned);
    let stopped = |what: String| {
        let said = last_line.as_deref().map(|l| format!(" ({shown} said: {l})")).unwrap_or_default();
        interop(path, format!("reading it through {shown} failed: {what}{said}"))
    };
    match (streamed, status) {
        (Ok((keys, spans, spool)), Ok(s)) if s.success() => {
            let describe = format!("{} ({module} shelve, read by {shown})", path.display());
            Ok(Attempt::Read(PythonReader { path: path.to_path_buf(), describe, keys, spans, spool }))
        }
        (Ok(_), Ok(s)) => Err(stopped(format!("it exited with {s} after a complete stream"))),
        (Ok(_), Err(e)) | (Err(Stream::Io(e)), _) => Err(stopped(e.to_string())),
        (Err(Stream::Missing(why)), _) => Ok(Attempt::Unusable(why)),
        (Err(Stream::Reported(why)), _) => Err(interop(path, why)),
        (Err(Stream::Broken(why)), _) => Err(stopped(why)),
        (Err(Stream::Spool(e)), _) => Err(e),
    }
}

/// How reading the stream failed.
enum Stream {
    /// The interpreter lacks the module (`M`).
    Missing(String),
    /// The child reported an error (`X`).
    Reported(String),
    /// The stream is cut or malformed.
    Broken(String),
    /// Reading the pipe failed.
    Io(std::io::Error),
    /// The spool could not be written.
    Spool(Error),
}

impl From<std::io::Error> for Stream {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Stream::Broken("the stream ends before its end marker (the child stopped early)".into())
        } else {
            Stream::Io(e)
        }
    }
}

type Streamed = (Vec<Vec<u8>>, Vec<(u64, u64)>, Spool);

/// Reads the whole stream (see the module docs).
fn read_stream(mut r: impl Read, path: &Path) -> std::result::Result<Streamed, Stream> {
    let mut head = [0u8; HEADER.len()];
    r.read_exact(&mut head)
        .map_err(|_| Stream::Broken("no stream header: the program is not a Python that ran the reader".into()))?;
    if head != HEADER {
        return Err(Stream::Broken("no stream header: the program is not a Python that ran the reader".into()));
    }
    let (mut keys, mut spans) = (Vec::new(), Vec::new());
    let mut spool = Spool::Memory(Vec::new());
    let mut spooled = 0u64;
    loop {
        let mut tag = [0u8; 1];
        r.read_exact(&mut tag)?;
        match tag[0] {
            b'R' => {
                let klen = read_u32(&mut r)?;
                if klen > MAX_STREAM_KEY {
                    return Err(Stream::Broken(format!("record {}: a key of {klen} bytes", keys.len())));
                }
                let mut key = vec![0u8; klen as usize];
                r.read_exact(&mut key)?;
                let vlen = read_u64(&mut r)?;
                let copied = spool.append(&mut r, vlen, spooled, path)?;
                if copied != vlen {
                    return Err(Stream::Broken(format!("record {}: the value is cut short", keys.len())));
                }
                spans.push((spooled, vlen));
                spooled += vlen;
                keys.push(key);
            }
            b'E' => {
                let n = read_u64(&mut r)?;
                if n != keys.len() as u64 {
                    return Err(Stream::Broken(format!("the end marker counts {n} records, {} came", keys.len())));
                }
                let mut rest = [0u8; 1];
                if r.read(&mut rest)? != 0 {
                    return Err(Stream::Broken("bytes after the end marker".into()));
                }
                return Ok((keys, spans, spool));
            }
            t @ (b'X' | b'M') => {
                let len = read_u32(&mut r)?.min(1 << 16);
                let mut msg = vec![0u8; len as usize];
                r.read_exact(&mut msg)?;
                let msg = String::from_utf8_lossy(&msg).into_owned();
                return Err(if t == b'M' { Stream::Missing(msg) } else { Stream::Reported(msg) });
            }
            t => return Err(Stream::Broken(format!("unknown record tag 0x{t:02x} after {} records", keys.len()))),
        }
    }
}

fn read_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn read_u64(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

impl Spool {
    /// Copies `len` bytes of `r` to the end of the spool (at `at`), moving to a
    /// temporary file once the values pass [`IMPORT_BATCH_BYTES`]; returns how many
    /// bytes came.
    fn append(&mut self, r: &mut impl Read, len: u64, at: u64, path: &Path) -> std::result::Result<u64, Stream> {
        if let Spool::Memory(buf) = self
            && at + len > IMPORT_BATCH_BYTES
        {
            let (mut file, tmp_path) = temp_file().map_err(Stream::Spool)?;
            file.write_all(buf).map_err(|e| Stream::Spool(Error::Io { path: path.to_path_buf(), source: e }))?;
            *self = Spool::File { file, path: tmp_path };
        }
        match self {
            Spool::Memory(buf) => Ok(r.take(len).read_to_end(buf)? as u64),
            Spool::File { file, .. } => {
                let copied = std::io::copy(&mut r.take(len), file);
                copied.map_err(|e| Stream::Spool(Error::Io { path: std::env::temp_dir(), source: e }))
            }
        }
    }

    fn read(&mut self, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
        match self {
            Spool::Memory(buf) => {
                let range = usize::try_from(offset).ok().zip(usize::try_from(offset + len).ok());
                Ok(range.and_then(|(a, b)| buf.get(a..b)).map(<[u8]>::to_vec).unwrap_or_default())
            }
            Spool::File { file, .. } => {
                let mut out = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
                file.seek(SeekFrom::Start(offset))?;
                file.read_exact(&mut out)?;
                Ok(out)
            }
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Spool::File { path: Some(p), .. } = self {
            let _ = fs::remove_file(p);
        }
    }
}

/// A new temporary file in the system's temporary directory, unlinked at once where the
/// system allows (then its path is `None`).
fn temp_file() -> Result<(fs::File, Option<PathBuf>)> {
    let dir = std::env::temp_dir();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let path = dir.join(format!("pickleshelf-import-{}-{nanos}", std::process::id()));
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Error::Io { path: path.clone(), source: e })?;
    if cfg!(unix) && fs::remove_file(&path).is_ok() {
        return Ok((file, None));
    }
    Ok((file, Some(path)))
}

impl Source for PythonReader {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn key(&self, i: usize) -> &[u8] {
        &self.keys[i]
    }

    fn value(&mut self, i: usize) -> Result<Vec<u8>> {
        let (offset, len) = self.spans[i];
        self.spool.read(offset, len).map_err(|e| Error::Io { path: std::env::temp_dir(), source: e })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(records: &[(&[u8], &[u8])], end: Option<u64>) -> Vec<u8> {
        let mut s = HEADER.to_vec();
        for (k, v) in records {
            s.push(b'R');
            s.extend_from_slice(&(k.len() as u32).to_be_bytes());
            s.extend_from_slice(k);
            s.extend_from_slice(&(v.len() as u64).to_be_bytes());
            s.extend_from_slice(v);
        }
        if let Some(n) = end {
            s.push(b'E');
            s.extend_from_slice(&n.to_be_bytes());
        }
        s
    }

    fn broken(bytes: &[u8]) -> String {
        match read_stream(bytes, Path::new("s")) {
            Ok(_) => "no error".into(),
            Err(Stream::Broken(m) | Stream::Reported(m) | Stream::Missing(m)) => m,
            Err(Stream::Io(e)) => e.to_string(),
            Err(Stream::Spool(e)) => e.to_string(),
        }
    }

    #[test]
    fn a_complete_stream_reads_back() {
        let s = stream(&[(b"a", b"\x80\x04K\x01."), (b"", b"")], Some(2));
        let Ok((keys, spans, mut spool)) = read_stream(&s[..], Path::new("s")) else { panic!("not read") };
        assert_eq!(keys, [b"a".to_vec(), Vec::new()]);
        assert_eq!(spans, [(0, 5), (5, 0)]);
        assert_eq!(spool.read(0, 5).unwrap_or_default(), b"\x80\x04K\x01.");
    }

    #[test]
    fn a_cut_or_malformed_stream_is_an_error() {
        let full = stream(&[(b"a", b"12345"), (b"b", b"x")], Some(2));
        // Cut anywhere before the end marker is complete.
        for cut in 0..full.len() {
            let msg = broken(&full[..cut]);
            assert!(msg != "no error", "cut at {cut}");
        }
        assert!(broken(&full[..3]).contains("no stream header"));
        assert!(broken(&full[..full.len() - 9]).contains("ends before its end marker"));
        assert_eq!(broken(&stream(&[(b"a", b"1")], Some(2))), "the end marker counts 2 records, 1 came");
        let mut trailing = full.clone();
        trailing.push(b'R');
        assert_eq!(broken(&trailing), "bytes after the end marker");
        let mut odd = stream(&[(b"a", b"1")], None);
        odd.push(b'Z');
        assert_eq!(broken(&odd), "unknown record tag 0x5a after 1 records");
        let mut huge = HEADER.to_vec();
        huge.push(b'R');
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(broken(&huge), "record 0: a key of 4294967295 bytes");
        let mut long = HEADER.to_vec();
        long.push(b'R');
        long.extend_from_slice(&1u32.to_be_bytes());
        long.push(b'k');
        long.extend_from_slice(&u64::MAX.to_be_bytes());
        long.extend_from_slice(b"abc");
        assert!(broken(&long).contains("ends before its end marker") || broken(&long).contains("cut short"));
        let mut reported = HEADER.to_vec();
        reported.push(b'X');
        reported.extend_from_slice(&5u32.to_be_bytes());
        reported.extend_from_slice(b"oops!");
        assert_eq!(broken(&reported), "oops!");
    }

    #[test]
    fn values_past_the_batch_size_wait_in_a_temporary_file() -> Result<()> {
        let mut spool = Spool::Memory(Vec::new());
        let big = vec![7u8; 1 << 20];
        let mut at = 0;
        while at <= IMPORT_BATCH_BYTES {
            let n = spool
                .append(&mut &big[..], big.len() as u64, at, Path::new("s"))
                .map_err(|_| Error::Config("append failed".into()))?;
            assert_eq!(n, big.len() as u64);
            at += n;
        }
        assert!(matches!(spool, Spool::File { .. }));
        let tail = spool.read(at - 3, 3).map_err(|e| Error::Io { path: PathBuf::new(), source: e })?;
        assert_eq!(tail, [7, 7, 7]);
        Ok(())
    }
}
