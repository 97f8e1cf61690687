//! An export directory: one `.pkl` file per key, holding the key's pickle bytes
//! exactly, plus `manifest.json` saying which file is which key.
//!
//! ```text
//! state-export/
//!   manifest.json
//!   000000-user_1.pkl
//!   000001-user_2.pkl
//! ```
//!
//! ```json
//! {
//!   "format": "pickleshelf-dir/1",
//!   "keys": 2,
//!   "entries": [
//!     {"key":"user:1","file":"000000-user_1.pkl","size":37,"blake3":"9a1f..."},
//!     {"key":"user:2","file":"000001-user_2.pkl","size":41,"blake3":"0c3e..."}
//!   ]
//! }
//! ```
//!
//! File names are made from the entry's position and the key's letters, digits, `.`,
//! `_` and `-` (others become `_`, at most 60 of them), so they are unique and safe on
//! any file system; the manifest is what maps keys to files. To import a directory made
//! by hand (e.g. in Python: `pickle.dump` each value, `json.dump` the manifest), each
//! entry needs only `key` and `file`; `size` (bytes) and `blake3` (plain blake3 of the
//! file's bytes, lowercase hex) are checked when present, and `keys` must equal the
//! number of entries when present.
//!
//! Invariant: [`DirReader::open`] refuses a manifest that is not this format, names a
//! key twice, or names a file outside the directory, before any file is read.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use super::{Sink, Source, interop, io, show_key, sync_parent, with_suffix};
use crate::error::{Error, Result};

/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";
/// The manifest's `format` field.
pub const FORMAT: &str = "pickleshelf-dir/1";

/// True when `dir` exists and is not an empty directory.
pub(crate) fn is_occupied(dir: &Path) -> bool {
    match fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_some(),
        Err(_) => fs::symlink_metadata(dir).is_ok(),
    }
}

/// True when `dir` holds a manifest of this format (so it may be replaced).
fn is_export(dir: &Path) -> bool {
    let Ok(text) = fs::read(dir.join(MANIFEST)) else { return false };
    serde_json::from_slice::<Json>(&text).is_ok_and(|j| j.get("format").and_then(Json::as_str) == Some(FORMAT))
}

/// A file name the manifest may name: one plain component.
fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name != MANIFEST
        && !name.contains(['/', '\\', '\0'])
        && Path::new(name).components().count() == 1
}

/// The file name of entry `i` with key `key`.
pub fn file_name(i: usize, key: &str) -> String {
    let tail: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .take(60)
        .collect();
    if tail.is_empty() { format!("{i:06}.pkl") } else { format!("{i:06}-{tail}.pkl") }
}

struct Entry {
    key: String,
    file: String,
    size: Option<u64>,
    blake3: Option<blake3::Hash>,
}

/// Reads an export directory.
pub struct DirReader {
    dir: PathBuf,
    manifest: PathBuf,
    entries: Vec<Entry>,
}

impl DirReader {
    /// Reads and checks `dir/manifest.json`.
    ///
    /// # Errors
    /// [`Error::Interop`] naming the manifest and the entry when it is missing, not JSON,
    /// not this format, names a key twice or a file outside `dir`; [`Error::Io`].
    pub fn open(dir: &Path) -> Result<DirReader> {
        let manifest = dir.join(MANIFEST);
        let text = match fs::read(&manifest) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let why = if dir.is_dir() { "missing (an export directory has one)" } else { "no such directory" };
                let at = if dir.is_dir() { manifest.as_path() } else { dir };
                return Err(interop(at, why));
            }
            Err(e) => return Err(Error::Io { path: manifest, source: e }),
        };
        let json: Json = serde_json::from_slice(&text).map_err(|e| interop(&manifest, format!("not JSON: {e}")))?;
        let bad = |reason: String| interop(&manifest, reason);
        match json.get("format").and_then(Json::as_str) {
            Some(FORMAT) => {}
            Some(other) => return Err(bad(format!("format {other:?} is not {FORMAT:?}"))),
            None => return Err(bad(format!("no \"format\": {FORMAT:?} field"))),
        }
        let Some(items) = json.get("entries").and_then(Json::as_array) else {
            return Err(bad("no \"entries\" list".into()));
        };
        if let Some(n) = json.get("keys")
            && n.as_u64() != Some(items.len() as u64)
        {
            return Err(bad(format!("\"keys\" is {n} but there are {} entries", items.len())));
        }
        let mut entries = Vec::with_capacity(items.len());
        let mut keys = HashSet::new();
        let mut files = HashSet::new();
        for (i, item) in items.iter().enumerate() {
            let field = |name: &str| item.get(name).and_then(Json::as_str);
            let (Some(key), Some(file)) = (field("key"), field("file")) else {
                return Err(bad(format!("entry {i}: needs a \"key\" and a \"file\", both strings")));
            };
            if !safe_name(file) {
                return Err(bad(format!("entry {i}: file {file:?} is not a plain file name in this directory")));
            }
            if !keys.insert(key.to_owned()) {
                return Err(bad(format!("entry {i}: key {} appears twice", show_key(key.as_bytes()))));
            }
            if !files.insert(file.to_owned()) {
                return Err(bad(format!("entry {i}: file {file:?} appears twice")));
            }
            let size = match item.get("size") {
                None => None,
                Some(s) => {
                    Some(s.as_u64().ok_or_else(|| bad(format!("entry {i}: \"size\" is not a number of bytes")))?)
                }
            };
            let blake3 = match item.get("blake3") {
                None => None,
                Some(h) => Some(
                    h.as_str()
                        .and_then(|h| blake3::Hash::from_hex(h).ok())
                        .ok_or_else(|| bad(format!("entry {i}: \"blake3\" is not 64 hex digits")))?,
                ),
            };
            entries.push(Entry { key: key.to_owned(), file: file.to_owned(), size, blake3 });
        }
        Ok(DirReader { dir: dir.to_path_buf(), manifest, entries })
    }
}

impl Source for DirReader {
    fn describe(&self) -> String {
        format!("{} (export directory)", self.dir.display())
    }

    fn path(&self) -> &Path {
        &self.manifest
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn key(&self, i: usize) -> &[u8] {
        self.entries[i].key.as_bytes()
    }

    fn value(&mut self, i: usize) -> Result<Vec<u8>> {
        let e = &self.entries[i];
        let path = self.dir.join(&e.file);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(interop(
                    &path,
                    format!("missing (the manifest lists it for key {})", show_key(e.key.as_bytes())),
                ));
            }
            Err(err) => return Err(Error::Io { path, source: err }),
        };
        if let Some(size) = e.size
            && size != bytes.len() as u64
        {
            return Err(interop(&path, format!("{} bytes, but the manifest says {size}", bytes.len())));
        }
        if let Some(h) = e.blake3
            && blake3::hash(&bytes) != h
        {
            return Err(interop(&path, "its blake3 is not the one the manifest records"));
        }
        Ok(bytes)
    }
}

/// Writes a new export directory under a temporary name; [`Sink::finish`] makes it
/// durable, then renames it into place.
///
/// Files are written without a sync each; [`Sink::finish`] makes them all durable at
/// once (on Linux one `syncfs` of the file system that holds them; elsewhere one
/// `fsync` per file, after the last is written), so that an export of many small
/// values costs one flush, not one per key (100,000 keys: minutes, each fsync a
/// journal commit).
pub struct DirWriter {
    dir: PathBuf,
    tmp: PathBuf,
    /// Manifest entries, one JSON object per line.
    lines: Vec<String>,
    /// The files written, in order (synced one by one where there is no `syncfs`).
    #[cfg_attr(target_os = "linux", allow(dead_code))]
    files: Vec<String>,
    done: bool,
}

impl DirWriter {
    /// Starts writing `dir` (as `DIR.pickleshelf-tmp-<pid>`, beside it).
    ///
    /// # Errors
    /// [`Error::Io`] when the temporary directory cannot be created.
    pub fn create(dir: &Path) -> Result<DirWriter> {
        let tmp = with_suffix(dir, &format!(".pickleshelf-tmp-{}", std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        fs::create_dir(&tmp).map_err(io(&tmp))?;
        Ok(DirWriter { dir: dir.to_path_buf(), tmp, lines: Vec::new(), files: Vec::new(), done: false })
    }

    /// Makes every file written, and the temporary directory, durable.
    #[cfg(target_os = "linux")]
    fn sync_all(&self) -> Result<()> {
        let d = fs::File::open(&self.tmp).map_err(io(&self.tmp))?;
        rustix::fs::syncfs(&d).map_err(|e| Error::Io { path: self.tmp.clone(), source: e.into() })?;
        // syncfs covers the directory too; its own fsync is cheap once nothing is dirty.
        d.sync_all().map_err(io(&self.tmp))
    }

    /// Makes every file written, and the temporary directory, durable.
    #[cfg(not(target_os = "linux"))]
    fn sync_all(&self) -> Result<()> {
        for name in self.files.iter().map(String::as_str).chain([MANIFEST]) {
            let path = self.tmp.join(name);
            fs::OpenOptions::new().write(true).open(&path).and_then(|f| f.sync_all()).map_err(io(&path))?;
        }
        fs::File::open(&self.tmp).and_then(|d| d.sync_all()).map_err(io(&self.tmp))
    }
}

/// Writes a file (not synced: see [`DirWriter`]).
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = fs::File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))
}

impl Sink for DirWriter {
    fn put(&mut self, key: &str, pickle: &[u8]) -> Result<()> {
        let file = file_name(self.lines.len(), key);
        write_file(&self.tmp.join(&file), pickle)?;
        let entry = serde_json::json!({
            "key": key,
            "file": file,
            "size": pickle.len(),
            "blake3": blake3::hash(pickle).to_hex().as_str(),
        });
        self.lines.push(entry.to_string());
        self.files.push(file);
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        let mut manifest =
            format!("{{\n  \"format\": \"{FORMAT}\",\n  \"keys\": {},\n  \"entries\": [", self.lines.len());
        for (i, line) in self.lines.iter().enumerate() {
            manifest.push_str(if i == 0 { "\n    " } else { ",\n    " });
            manifest.push_str(line);
        }
        manifest.push_str(if self.lines.is_empty() { "]\n}\n" } else { "\n  ]\n}\n" });
        write_file(&self.tmp.join(MANIFEST), manifest.as_bytes())?;
        self.sync_all()?;
        // An existing export is moved aside, replaced, then deleted; an empty directory
        // is replaced by the rename itself. Anything else is left alone.
        let old = if is_occupied(&self.dir) {
            if !is_export(&self.dir) {
                return Err(interop(&self.dir, "exists and is not an export directory; not replacing it"));
            }
            let old = with_suffix(&self.dir, &format!(".pickleshelf-old-{}", std::process::id()));
            fs::rename(&self.dir, &old).map_err(io(&self.dir))?;
            Some(old)
        } else {
            None
        };
        fs::rename(&self.tmp, &self.dir).map_err(io(&self.dir))?;
        self.done = true;
        sync_parent(&self.dir)?;
        if let Some(old) = old {
            fs::remove_dir_all(&old).map_err(io(&old))?;
        }
        Ok(())
    }
}

impl Drop for DirWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.tmp);
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
        match DirReader::open(path) {
            Ok(_) => "no error".into(),
            Err(e) => e.to_string(),
        }
    }

    fn manifest(dir: &Path, text: &str) -> Result<()> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        fs::write(dir.join(MANIFEST), text).map_err(io(dir))
    }

    #[test]
    fn file_names_are_safe_and_unique() {
        assert_eq!(file_name(0, "user:1"), "000000-user_1.pkl");
        assert_eq!(file_name(7, "../../etc/passwd"), "000007-.._.._etc_passwd.pkl");
        assert_eq!(file_name(1_234_567, ""), "1234567.pkl");
        assert_eq!(file_name(2, &"é".repeat(100)).len(), "000002-.pkl".len() + 60);
    }

    #[test]
    fn writes_and_reads_back() -> Result<()> {
        let root = tmp()?;
        let d = root.path().join("out");
        let mut w = Box::new(DirWriter::create(&d)?);
        w.put("user:1", b"\x80\x04K\x01.")?;
        w.put("", b"x")?;
        w.finish()?;
        let text = fs::read_to_string(d.join(MANIFEST)).map_err(io(&d))?;
        assert!(
            text.starts_with("{\n  \"format\": \"pickleshelf-dir/1\",\n  \"keys\": 2,\n  \"entries\": [\n    {"),
            "{text}"
        );
        assert_eq!(fs::read(d.join("000000-user_1.pkl")).map_err(io(&d))?, b"\x80\x04K\x01.");
        let mut r = DirReader::open(&d)?;
        assert_eq!(r.len(), 2);
        assert_eq!((r.key(0).to_vec(), r.value(0)?), (b"user:1".to_vec(), b"\x80\x04K\x01.".to_vec()));
        assert_eq!((r.key(1).to_vec(), r.value(1)?), (b"".to_vec(), b"x".to_vec()));
        // Replacing an export; the old one is gone afterwards.
        let mut w = Box::new(DirWriter::create(&d)?);
        w.put("b", b"y")?;
        w.finish()?;
        assert_eq!(DirReader::open(&d)?.len(), 1);
        assert_eq!(fs::read_dir(root.path()).map_err(io(root.path()))?.count(), 1);
        Ok(())
    }

    #[test]
    fn an_empty_export_is_valid_json() -> Result<()> {
        let root = tmp()?;
        let d = root.path().join("out");
        Box::new(DirWriter::create(&d)?).finish()?;
        assert_eq!(DirReader::open(&d)?.len(), 0);
        Ok(())
    }

    #[test]
    fn a_foreign_directory_is_never_replaced() -> Result<()> {
        let root = tmp()?;
        let d = root.path().join("home");
        fs::create_dir(&d).map_err(io(&d))?;
        fs::write(d.join("precious.txt"), b"keep me").map_err(io(&d))?;
        let mut w = Box::new(DirWriter::create(&d)?);
        w.put("a", b"1")?;
        let msg = w.finish().map_or_else(|e| e.to_string(), |()| "no error".into());
        assert!(msg.ends_with("home: exists and is not an export directory; not replacing it"), "{msg}");
        assert_eq!(fs::read(d.join("precious.txt")).map_err(io(&d))?, b"keep me");
        assert_eq!(fs::read_dir(root.path()).map_err(io(root.path()))?.count(), 1, "the temporary directory is gone");
        Ok(())
    }

    #[test]
    fn bad_manifests_say_what_is_wrong() -> Result<()> {
        let root = tmp()?;
        let d = root.path().join("d");
        assert!(open_err(&d).ends_with("d: no such directory"), "{}", open_err(&d));
        fs::create_dir(&d).map_err(io(&d))?;
        assert!(open_err(&d).ends_with("manifest.json: missing (an export directory has one)"));
        let cases = [
            (
                "{\"format\": \"pickleshelf-dir/1\", \"entries\": [",
                "not JSON: EOF while parsing a list at line 1 column 44",
            ),
            ("{\"entries\": []}", "no \"format\": \"pickleshelf-dir/1\" field"),
            ("{\"format\": \"x/2\", \"entries\": []}", "format \"x/2\" is not \"pickleshelf-dir/1\""),
            ("{\"format\": \"pickleshelf-dir/1\"}", "no \"entries\" list"),
            (
                "{\"format\": \"pickleshelf-dir/1\", \"keys\": 3, \"entries\": []}",
                "\"keys\" is 3 but there are 0 entries",
            ),
            (
                "{\"format\": \"pickleshelf-dir/1\", \"entries\": [{\"key\": \"a\"}]}",
                "entry 0: needs a \"key\" and a \"file\"",
            ),
            (
                "{\"format\": \"pickleshelf-dir/1\", \"entries\": [{\"key\": \"a\", \"file\": \"../x.pkl\"}]}",
                "entry 0: file \"../x.pkl\" is not a plain file name in this directory",
            ),
            (
                "{\"format\": \"pickleshelf-dir/1\", \"entries\": [{\"key\": \"a\", \"file\": \"1\"}, {\"key\": \"a\", \"file\": \"2\"}]}",
                "entry 1: key \"a\" appears twice",
            ),
            (
                "{\"format\": \"pickleshelf-dir/1\", \"entries\": [{\"key\": \"a\", \"file\": \"1\", \"blake3\": \"zz\"}]}",
                "entry 0: \"blake3\" is not 64 hex digits",
            ),
        ];
        for (text, want) in cases {
            manifest(&d, text)?;
            let msg = open_err(&d);
            assert!(msg.contains(want), "{text}: {msg}");
        }
        Ok(())
    }

    #[test]
    fn files_are_checked_against_the_manifest() -> Result<()> {
        let root = tmp()?;
        let d = root.path().join("d");
        let h = blake3::hash(b"abc").to_hex();
        manifest(
            &d,
            &format!(
                "{{\"format\": \"pickleshelf-dir/1\", \"entries\": [{{\"key\": \"a\", \"file\": \"a.pkl\", \"size\": 3, \"blake3\": \"{h}\"}}, {{\"key\": \"b\", \"file\": \"b.pkl\"}}]}}"
            ),
        )?;
        let mut r = DirReader::open(&d)?;
        let err = |r: Result<Vec<u8>>| r.map_or_else(|e| e.to_string(), |_| "no error".into());
        assert!(err(r.value(0)).ends_with("a.pkl: missing (the manifest lists it for key \"a\")"));
        fs::write(d.join("a.pkl"), b"abcd").map_err(io(&d))?;
        assert!(err(r.value(0)).ends_with("a.pkl: 4 bytes, but the manifest says 3"));
        fs::write(d.join("a.pkl"), b"abd").map_err(io(&d))?;
        assert!(err(r.value(0)).ends_with("a.pkl: its blake3 is not the one the manifest records"));
        fs::write(d.join("a.pkl"), b"abc").map_err(io(&d))?;
        assert_eq!(r.value(0)?, b"abc");
        Ok(())
    }
}
