//! Python's `dbm.dumb` format, which `shelve.open(PATH)` uses when no other `dbm`
//! module is installed (and which every CPython has).
//!
//! A database `PATH` is two files (CPython's `Lib/dbm/dumb.py`):
//!
//! - `PATH.dat`: the values, each starting at an offset that is a multiple of 512; the
//!   gaps are NUL bytes. Space of deleted or grown values is never reused.
//! - `PATH.dir`: the index, a Latin-1 text file of one line per key,
//!   `repr(key.decode('latin-1')) + ", " + repr((offset, size)) + "\n"`, for example
//!   `'user:1', (512, 37)`. Python reads each line back with `ast.literal_eval`; a key
//!   listed twice takes its last line.
//! - `PATH.bak`: a copy of an older `.dir` Python may leave; never read.
//!
//! `shelve` stores keys encoded as UTF-8 (`keyencoding='utf-8'`) and values as pickles.
//!
//! Invariant: [`DumbReader::open`] parses the whole index and checks every value lies
//! inside `.dat` before anything is read, so a truncated `.dir` or a `.dat` cut short is
//! an error at open naming the line; [`DumbWriter`] writes exactly what CPython's
//! `dbm.dumb` would write for the same keys inserted in the same order.

use std::collections::HashMap;
use std::fs;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{Sink, Source, interop, io, show_key, sync_parent, with_suffix};
use crate::error::{Error, Result};
use crate::pickle::{self, PyStr};

/// Values start at multiples of this in `.dat`.
pub const BLOCK: u64 = 512;

/// The files of the `dbm.dumb` database `path`: `.dat`, `.dir`, `.bak`.
pub fn files(path: &Path) -> [PathBuf; 3] {
    [with_suffix(path, ".dat"), with_suffix(path, ".dir"), with_suffix(path, ".bak")]
}

/// One entry of `.dir`.
struct Entry {
    key: Vec<u8>,
    pos: u64,
    size: u64,
}

/// Reads a `dbm.dumb` database.
pub struct DumbReader {
    path: PathBuf,
    dat_path: PathBuf,
    dat: fs::File,
    entries: Vec<Entry>,
}

impl DumbReader {
    /// Opens `path` (the name given to `dbm.dumb.open`, without `.dat`/`.dir`): reads and
    /// parses all of `PATH.dir` and checks that every value lies inside `PATH.dat`.
    ///
    /// # Errors
    /// [`Error::Interop`] naming the file and line for an index line that is not
    /// `'key', (offset, size)` (e.g. a `.dir` cut short), a key with a character beyond
    /// Latin-1, or a value past the end of `.dat`; [`Error::Io`] when a file cannot be
    /// read.
    pub fn open(path: &Path) -> Result<DumbReader> {
        let [dat_path, dir_path, _] = files(path);
        let dir_text = match fs::read(&dir_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(interop(&dir_path, "missing (a dbm.dumb shelve keeps its index there)"));
            }
            Err(e) => return Err(Error::Io { path: dir_path, source: e }),
        };
        let dat = match fs::File::open(&dat_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(interop(&dat_path, "missing (a dbm.dumb shelve keeps its values there)"));
            }
            Err(e) => return Err(Error::Io { path: dat_path, source: e }),
        };
        let dat_len = dat.metadata().map_err(io(&dat_path))?.len();
        let mut entries: Vec<Entry> = Vec::new();
        let mut position: HashMap<Vec<u8>, usize> = HashMap::new();
        let lines = split_lines(&dir_text);
        let n_lines = lines.len();
        for (i, (line, terminated)) in lines.into_iter().enumerate() {
            let line_no = i + 1;
            let text = trim(line);
            if text.is_empty() {
                continue;
            }
            let (key, pos, size) = parse_entry(text).map_err(|reason| {
                let cut = if !terminated && line_no == n_lines { " (the file seems cut short)" } else { "" };
                interop(&dir_path, format!("line {line_no}: {reason}{cut}"))
            })?;
            match pos.checked_add(size) {
                Some(end) if end <= dat_len => {}
                _ => {
                    let reason = format!(
                        "line {line_no}: key {} has its value at bytes {pos}..{}, past the end of {} ({dat_len} bytes)",
                        show_key(&key),
                        u128::from(pos) + u128::from(size),
                        dat_path.display()
                    );
                    return Err(interop(&dir_path, reason));
                }
            }
            // As a Python dict: a key listed again keeps its place and takes the new value.
            match position.get(&key) {
                Some(&at) => entries[at] = Entry { key, pos, size },
                None => {
                    position.insert(key.clone(), entries.len());
                    entries.push(Entry { key, pos, size });
                }
            }
        }
        Ok(DumbReader { path: path.to_path_buf(), dat_path, dat, entries })
    }
}

impl Source for DumbReader {
    fn describe(&self) -> String {
        format!("{} (dbm.dumb shelve)", self.path.display())
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn key(&self, i: usize) -> &[u8] {
        &self.entries[i].key
    }

    fn value(&mut self, i: usize) -> Result<Vec<u8>> {
        let e = &self.entries[i];
        let size = usize::try_from(e.size).map_err(|_| interop(&self.dat_path, "value too large for memory"))?;
        let mut buf = Vec::new();
        buf.try_reserve_exact(size).map_err(|_| interop(&self.dat_path, "value too large for memory"))?;
        self.dat.seek(SeekFrom::Start(e.pos)).map_err(io(&self.dat_path))?;
        (&mut self.dat).take(e.size).read_to_end(&mut buf).map_err(io(&self.dat_path))?;
        if buf.len() != size {
            let reason = format!("the value of key {} was cut short (the file shrank?)", show_key(&e.key));
            return Err(interop(&self.dat_path, reason));
        }
        Ok(buf)
    }
}

/// Splits text into lines as Python's universal newlines do (`\n`, `\r\n`, `\r`);
/// each line comes with whether a line break ended it.
fn split_lines(text: &[u8]) -> Vec<(&[u8], bool)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'\n' => {
                out.push((&text[start..i], true));
                start = i + 1;
            }
            b'\r' => {
                out.push((&text[start..i], true));
                if text.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < text.len() {
        out.push((&text[start..], false));
    }
    out
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b'\x0b' | b'\x0c', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b'\x0b' | b'\x0c'] = s {
        s = rest;
    }
    s
}

/// A cursor over one index line.
struct Line<'a> {
    s: &'a [u8],
    at: usize,
}

impl Line<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    /// What stands at the cursor, for messages.
    fn found(&self) -> String {
        match self.peek() {
            None => "the end of the line".into(),
            Some(_) => {
                let rest = &self.s[self.at..];
                let shown: String = rest.iter().take(12).map(|&b| char::from(b)).collect();
                format!("{shown:?}")
            }
        }
    }

    fn expect(&mut self, c: u8, what: &str) -> Result<(), String> {
        self.skip_space();
        if self.peek() == Some(c) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected {what} at column {}, found {}", self.at + 1, self.found()))
        }
    }

    fn number(&mut self, what: &str) -> Result<u64, String> {
        self.skip_space();
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        if start == self.at {
            return Err(format!("expected the {what} (a number) at column {}, found {}", start + 1, self.found()));
        }
        let digits = std::str::from_utf8(&self.s[start..self.at]).unwrap_or("");
        digits.parse::<u64>().map_err(|_| format!("the {what} {digits} is too large"))
    }

    fn hex_escape(&mut self, digits: usize) -> Result<u32, String> {
        let start = self.at;
        let text = self.s.get(start..start + digits).filter(|t| t.iter().all(u8::is_ascii_hexdigit));
        let Some(text) = text else {
            return Err(format!("bad \\x, \\u or \\U escape at column {}", start));
        };
        self.at += digits;
        u32::from_str_radix(std::str::from_utf8(text).unwrap_or("0"), 16).map_err(|e| e.to_string())
    }

    /// A Python string literal (as `repr` writes it); returns its code points as bytes.
    fn key(&mut self) -> Result<Vec<u8>, String> {
        self.skip_space();
        if matches!(self.peek(), Some(b'u' | b'U')) {
            self.at += 1;
        }
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a quoted key at column {}, found {}", self.at + 1, self.found())),
        };
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return Err("the key's closing quote is missing".into());
            };
            self.at += 1;
            let cp: u32 = match c {
                c if c == quote => break,
                b'\\' => {
                    let Some(e) = self.peek() else {
                        return Err("the key's closing quote is missing".into());
                    };
                    self.at += 1;
                    match e {
                        b'\\' | b'\'' | b'"' => u32::from(e),
                        b'a' => 7,
                        b'b' => 8,
                        b't' => 9,
                        b'n' => 10,
                        b'v' => 11,
                        b'f' => 12,
                        b'r' => 13,
                        b'x' => self.hex_escape(2)?,
                        b'u' => self.hex_escape(4)?,
                        b'U' => self.hex_escape(8)?,
                        b'0'..=b'7' => {
                            let mut v = u32::from(e - b'0');
                            for _ in 0..2 {
                                match self.peek() {
                                    Some(d @ b'0'..=b'7') => {
                                        v = v * 8 + u32::from(d - b'0');
                                        self.at += 1;
                                    }
                                    _ => break,
                                }
                            }
                            v
                        }
                        // Python keeps an unknown escape as it is.
                        other => {
                            out.push(b'\\');
                            u32::from(other)
                        }
                    }
                }
                c => u32::from(c),
            };
            let byte = u8::try_from(cp).map_err(|_| {
                format!("the key has the character U+{cp:04X}, beyond Latin-1 (dbm.dumb keys are bytes)")
            })?;
            out.push(byte);
        }
        Ok(out)
    }
}

/// Parses `'key', (offset, size)`.
fn parse_entry(s: &[u8]) -> Result<(Vec<u8>, u64, u64), String> {
    let mut line = Line { s, at: 0 };
    let key = line.key()?;
    line.expect(b',', "',' after the key")?;
    line.expect(b'(', "'(' before the offset")?;
    let pos = line.number("offset")?;
    line.expect(b',', "',' after the offset")?;
    let size = line.number("size")?;
    line.skip_space();
    if line.peek() == Some(b',') {
        line.at += 1;
    }
    line.expect(b')', "')' after the size")?;
    line.skip_space();
    if line.peek().is_some() {
        return Err(format!("unexpected text at column {}: {}", line.at + 1, line.found()));
    }
    Ok((key, pos, size))
}

/// Python's `repr(key.decode('latin-1'))`, as Latin-1 bytes: the key of a `.dir` line.
pub fn key_repr(key: &[u8]) -> Vec<u8> {
    let text: String = key.iter().map(|&b| char::from(b)).collect();
    let repr = pickle::str_repr(&PyStr::from(text));
    // Every character of the repr is below 256: it came from Latin-1 text.
    repr.chars().map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')).collect()
}

/// Writes a new `dbm.dumb` database under temporary names; [`Sink::finish`] renames it
/// into place (replacing an existing one).
pub struct DumbWriter {
    path: PathBuf,
    dat_tmp: PathBuf,
    dir_tmp: PathBuf,
    dat: BufWriter<fs::File>,
    /// Bytes written to `.dat` so far.
    end: u64,
    dir: Vec<u8>,
    done: bool,
}

impl DumbWriter {
    /// Starts writing `PATH.dat` and `PATH.dir` (as `PATH.dat.pickleshelf-tmp`, ...).
    ///
    /// # Errors
    /// [`Error::Io`] when the temporary files cannot be created.
    pub fn create(path: &Path) -> Result<DumbWriter> {
        let [dat_path, dir_path, _] = files(path);
        let dat_tmp = with_suffix(&dat_path, ".pickleshelf-tmp");
        let dir_tmp = with_suffix(&dir_path, ".pickleshelf-tmp");
        let dat = fs::File::create(&dat_tmp).map_err(io(&dat_tmp))?;
        Ok(DumbWriter {
            path: path.to_path_buf(),
            dat_tmp,
            dir_tmp,
            dat: BufWriter::new(dat),
            end: 0,
            dir: Vec::new(),
            done: false,
        })
    }
}

impl Sink for DumbWriter {
    fn put(&mut self, key: &str, pickle: &[u8]) -> Result<()> {
        // As dbm.dumb's _addval: pad with NULs to the next block, then the value.
        let pos = self.end.div_ceil(BLOCK) * BLOCK;
        let pad = (pos - self.end) as usize;
        self.dat.write_all(&[0u8; BLOCK as usize][..pad]).map_err(io(&self.dat_tmp))?;
        self.dat.write_all(pickle).map_err(io(&self.dat_tmp))?;
        self.end = pos + pickle.len() as u64;
        self.dir.extend_from_slice(&key_repr(key.as_bytes()));
        self.dir.extend_from_slice(format!(", ({pos}, {})\n", pickle.len()).as_bytes());
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        let [dat_path, dir_path, bak_path] = files(&self.path);
        self.dat.flush().map_err(io(&self.dat_tmp))?;
        self.dat.get_ref().sync_all().map_err(io(&self.dat_tmp))?;
        let mut dir = fs::File::create(&self.dir_tmp).map_err(io(&self.dir_tmp))?;
        dir.write_all(&self.dir).map_err(io(&self.dir_tmp))?;
        dir.sync_all().map_err(io(&self.dir_tmp))?;
        // The old index goes first: a crash between the renames leaves no `.dir` (no
        // shelve) rather than an old index over new values.
        for old in [&dir_path, &bak_path] {
            match fs::remove_file(old) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::Io { path: old.clone(), source: e }),
            }
        }
        fs::rename(&self.dat_tmp, &dat_path).map_err(io(&dat_path))?;
        fs::rename(&self.dir_tmp, &dir_path).map_err(io(&dir_path))?;
        self.done = true;
        sync_parent(&self.path)
    }
}

impl Drop for DumbWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.dat_tmp);
            let _ = fs::remove_file(&self.dir_tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> Result<tempfile::TempDir> {
        tempfile::tempdir().map_err(|e| Error::Config(e.to_string()))
    }

    fn write(path: &Path, bytes: &[u8]) -> Result<()> {
        fs::write(path, bytes).map_err(io(path))
    }

    fn open_err(path: &Path) -> String {
        match DumbReader::open(path) {
            Ok(_) => "no error".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn key_repr_is_pythons() {
        let r = |k: &[u8]| String::from_utf8_lossy(&key_repr(k)).into_owned();
        assert_eq!(r(b"user:1"), "'user:1'");
        assert_eq!(r(b"it's"), "\"it's\"");
        assert_eq!(r(b"both'\""), "'both\\'\"'");
        assert_eq!(r(b"a\\b\n\t\r\x00\x7f"), "'a\\\\b\\n\\t\\r\\x00\\x7f'");
        // UTF-8 bytes of "é" are c3 a9, both printable Latin-1 characters: written raw.
        assert_eq!(key_repr("é".as_bytes()), b"'\xc3\xa9'");
        // 0x80-0xa0 and 0xad are not printable: escaped.
        assert_eq!(r(&[0x80, 0xa0, 0xad]), "'\\x80\\xa0\\xad'");
    }

    #[test]
    fn parses_what_repr_writes() -> Result<(), String> {
        for key in [&b"user:1"[..], b"it's", b"q\"'", b"a\\b\n\t\r\x00\x7f\x80\xa0\xad\xff", "é€".as_bytes(), b""] {
            let mut line = key_repr(key);
            line.extend_from_slice(b", (1024, 7)");
            assert_eq!(parse_entry(&line)?, (key.to_vec(), 1024, 7), "{}", String::from_utf8_lossy(&line));
        }
        assert_eq!(parse_entry(b"u'\\101\\u0042\\U00000043\\q', (0,0,)")?, (b"ABC\\q".to_vec(), 0, 0));
        Ok(())
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        let e = |s: &str| parse_entry(s.as_bytes()).err().unwrap_or_default();
        assert_eq!(e("'abc', (0, 1"), "expected ')' after the size at column 13, found the end of the line");
        assert_eq!(e("'abc"), "the key's closing quote is missing");
        assert_eq!(e("abc, (0, 1)"), "expected a quoted key at column 1, found \"abc, (0, 1)\"");
        assert_eq!(e("'a', (x, 1)"), "expected the offset (a number) at column 7, found \"x, 1)\"");
        assert_eq!(
            e("'\\u0100', (0, 1)"),
            "the key has the character U+0100, beyond Latin-1 (dbm.dumb keys are bytes)"
        );
        assert_eq!(e("'a', (0, 1) junk"), "unexpected text at column 13: \"junk\"");
        assert!(e("'a', (0, 99999999999999999999)").contains("too large"));
    }

    #[test]
    fn writes_what_dbm_dumb_writes() -> Result<()> {
        let dir = tmp()?;
        let p = dir.path().join("s");
        let mut w = Box::new(DumbWriter::create(&p)?);
        w.put("a", b"12345")?;
        w.put("b'", &[9u8; 600])?;
        w.put("é", b"")?;
        w.finish()?;
        let dat = fs::read(with_suffix(&p, ".dat")).map_err(io(&p))?;
        // The empty value starts a block, as dbm.dumb pads before every value.
        assert_eq!(dat.len(), 1536);
        assert_eq!(&dat[..5], b"12345");
        assert!(dat[5..512].iter().all(|&b| b == 0));
        let index = fs::read(with_suffix(&p, ".dir")).map_err(io(&p))?;
        assert_eq!(index, b"'a', (0, 5)\n\"b'\", (512, 600)\n'\xc3\xa9', (1536, 0)\n");
        assert!(!with_suffix(&p, ".dat.pickleshelf-tmp").exists());

        let mut r = DumbReader::open(&p)?;
        assert_eq!(r.len(), 3);
        assert_eq!((r.key(1).to_vec(), r.value(1)?), (b"b'".to_vec(), vec![9u8; 600]));
        assert_eq!((r.key(2).to_vec(), r.value(2)?), ("é".as_bytes().to_vec(), vec![]));
        Ok(())
    }

    #[test]
    fn a_dropped_writer_leaves_nothing() -> Result<()> {
        let dir = tmp()?;
        let p = dir.path().join("s");
        let mut w = DumbWriter::create(&p)?;
        w.put("a", b"1")?;
        drop(w);
        assert_eq!(fs::read_dir(dir.path()).map_err(io(dir.path()))?.count(), 0);
        Ok(())
    }

    #[test]
    fn a_key_listed_twice_takes_its_last_line() -> Result<()> {
        let dir = tmp()?;
        let p = dir.path().join("s");
        write(&with_suffix(&p, ".dat"), b"aaaabbbb")?;
        write(&with_suffix(&p, ".dir"), b"'x', (0, 4)\r\n\n'y', (0, 1)\r'x', (4, 4)\n")?;
        let mut r = DumbReader::open(&p)?;
        assert_eq!(r.len(), 2);
        assert_eq!((r.key(0).to_vec(), r.value(0)?), (b"x".to_vec(), b"bbbb".to_vec()));
        Ok(())
    }

    #[test]
    fn a_truncated_dir_is_an_error_naming_the_line() -> Result<()> {
        let dir = tmp()?;
        let p = dir.path().join("s");
        write(&with_suffix(&p, ".dat"), &[0u8; 2048])?;
        write(&with_suffix(&p, ".dir"), b"'a', (0, 5)\n'b', (512, 5)\n'c', (10")?;
        let msg = open_err(&p);
        assert!(msg.ends_with("s.dir: line 3: expected ',' after the offset at column 9, found the end of the line (the file seems cut short)"), "{msg}");
        Ok(())
    }

    #[test]
    fn an_offset_past_the_end_of_dat_is_an_error() -> Result<()> {
        let dir = tmp()?;
        let p = dir.path().join("s");
        write(&with_suffix(&p, ".dat"), &[0u8; 600])?;
        write(&with_suffix(&p, ".dir"), b"'a', (0, 5)\n'big', (512, 100)\n")?;
        let msg = open_err(&p);
        assert!(msg.contains("s.dir: line 2: key \"big\" has its value at bytes 512..612, past the end of"), "{msg}");
        assert!(msg.ends_with("s.dat (600 bytes)"), "{msg}");
        Ok(())
    }

    #[test]
    fn missing_files_are_named() -> Result<()> {
        let dir = tmp()?;
        let p = dir.path().join("s");
        assert!(open_err(&p).ends_with("s.dir: missing (a dbm.dumb shelve keeps its index there)"));
        write(&with_suffix(&p, ".dir"), b"")?;
        assert!(open_err(&p).ends_with("s.dat: missing (a dbm.dumb shelve keeps its values there)"));
        Ok(())
    }
}
