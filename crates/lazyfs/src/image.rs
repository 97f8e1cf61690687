//! A whole file system tree held in memory: what a directory holds, or what a power cut
//! leaves of it.
//!
//! Invariant: inode 1 is the root directory; an inode is a file or a directory, never both;
//! a directory names inodes, which may be absent (then the name is skipped when written
//! out) or named by no directory (then the inode is lost, as an unreachable inode is after
//! a crash).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::log::{Ino, Kind, Op};

/// The unit in which a page cache writes file data back: a power cut keeps or loses each
/// page of unsynced data whole.
pub const PAGE: u64 = 4096;

/// The root directory's inode.
pub const ROOT: Ino = 1;

/// A file system tree in memory (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct Image {
    files: HashMap<Ino, Vec<u8>>,
    dirs: HashMap<Ino, BTreeMap<OsString, Ino>>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

impl Image {
    /// Reads the tree under `dir`, numbering inodes from 2 in the order met; returns the
    /// image and the inode of every path (relative to `dir`).
    ///
    /// # Errors
    /// [`Error::Io`] when the tree cannot be read; [`Error::Unsupported`] for a symbolic
    /// link or special file.
    pub fn load(dir: &Path) -> Result<(Image, Vec<(PathBuf, Ino)>), Error> {
        let mut image = Image::default();
        let mut paths = vec![(PathBuf::new(), ROOT)];
        let mut next = ROOT + 1;
        let mut todo = vec![(PathBuf::new(), ROOT)];
        while let Some((rel, ino)) = todo.pop() {
            let abs = dir.join(&rel);
            let mut names = BTreeMap::new();
            let mut entries: Vec<_> =
                fs::read_dir(&abs).map_err(io(&abs))?.collect::<Result<_, _>>().map_err(io(&abs))?;
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let (name, path) = (e.file_name(), e.path());
                let ty = e.file_type().map_err(io(&path))?;
                let child = next;
                next += 1;
                let child_rel = rel.join(&name);
                if ty.is_dir() {
                    todo.push((child_rel.clone(), child));
                } else if ty.is_file() {
                    image.files.insert(child, fs::read(&path).map_err(io(&path))?);
                } else {
                    return Err(Error::Unsupported { path, what: "not a regular file or directory" });
                }
                names.insert(name, child);
                paths.push((child_rel, child));
            }
            image.dirs.insert(ino, names);
        }
        Ok((image, paths))
    }

    /// The bytes of file `ino`.
    pub fn file_of(&self, ino: Ino) -> Option<&[u8]> {
        self.files.get(&ino).map(Vec::as_slice)
    }

    /// The bytes of the file at `path` (relative to the root), if there is one.
    pub fn file(&self, path: &Path) -> Option<&[u8]> {
        let mut ino = ROOT;
        for part in path.iter() {
            ino = *self.dirs.get(&ino)?.get(part)?;
        }
        self.file_of(ino)
    }

    fn file_mut(&mut self, ino: Ino) -> &mut Vec<u8> {
        self.files.entry(ino).or_default()
    }

    fn dir_mut(&mut self, ino: Ino) -> &mut BTreeMap<OsString, Ino> {
        self.dirs.entry(ino).or_default()
    }

    /// Applies one op (marks and fsyncs change nothing). Name changes apply to the inodes
    /// the op names, so that any subset of a log applies cleanly: a removal or rename
    /// whose name now names another inode leaves that name alone.
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Write { ino, offset, data } => {
                let bytes = self.file_mut(*ino);
                let (at, end) = (*offset as usize, *offset as usize + data.len());
                if bytes.len() < end {
                    bytes.resize(end, 0);
                }
                bytes[at..end].copy_from_slice(data);
            }
            Op::SetLen { ino, len } => self.file_mut(*ino).resize(*len as usize, 0),
            Op::Create { dir, name, ino, kind } => {
                match kind {
                    Kind::File => {
                        self.file_mut(*ino);
                    }
                    Kind::Dir => {
                        self.dir_mut(*ino);
                    }
                }
                self.dir_mut(*dir).insert(name.clone(), *ino);
            }
            Op::Remove { dir, name, ino } => {
                let names = self.dir_mut(*dir);
                if names.get(name) == Some(ino) {
                    names.remove(name);
                }
            }
            Op::Rename { from_dir, from, to_dir, to, ino } => {
                let names = self.dir_mut(*from_dir);
                if names.get(from) == Some(ino) {
                    names.remove(from);
                }
                self.dir_mut(*to_dir).insert(to.clone(), *ino);
            }
            Op::Fsync { .. } | Op::Mark(_) => {}
        }
    }

    /// Copies page `page` of file `ino` from `live` (the page written back as it is now).
    pub fn copy_page(&mut self, live: &Image, ino: Ino, page: u64) {
        let Some(src) = live.files.get(&ino) else { return };
        let start = (page * PAGE) as usize;
        let end = (((page + 1) * PAGE) as usize).min(src.len());
        if start >= end {
            return;
        }
        let dst = self.file_mut(ino);
        if dst.len() < end {
            dst.resize(end, 0);
        }
        dst[start..end].copy_from_slice(&src[start..end]);
    }

    /// Writes the tree under `target` (which must not exist yet or be empty).
    ///
    /// # Errors
    /// [`Error::Io`] when a file or directory cannot be written.
    pub fn write_to(&self, target: &Path) -> Result<(), Error> {
        fs::create_dir_all(target).map_err(io(target))?;
        let mut seen = HashSet::new();
        let mut todo = vec![(target.to_path_buf(), ROOT)];
        while let Some((path, ino)) = todo.pop() {
            if !seen.insert(ino) {
                continue;
            }
            let Some(names) = self.dirs.get(&ino) else { continue };
            for (name, child) in names {
                let p = path.join(name);
                if self.dirs.contains_key(child) {
                    fs::create_dir(&p).map_err(io(&p))?;
                    todo.push((p, *child));
                } else if let Some(bytes) = self.files.get(child) {
                    fs::write(&p, bytes).map_err(io(&p))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn load_apply_write_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        fs::write(dir.path().join("d/f"), b"hello").unwrap();
        let (mut image, paths) = Image::load(dir.path()).unwrap();
        let f = paths.iter().find(|(p, _)| p == Path::new("d/f")).unwrap().1;
        let d = paths.iter().find(|(p, _)| p == Path::new("d")).unwrap().1;
        image.apply(&Op::Write { ino: f, offset: 3, data: Arc::from(&b"p!"[..]) });
        image.apply(&Op::Rename { from_dir: d, from: "f".into(), to_dir: ROOT, to: "g".into(), ino: f });
        image.apply(&Op::Remove { dir: d, name: "f".into(), ino: f });
        assert_eq!(image.file(Path::new("g")), Some(&b"help!"[..]));
        assert_eq!(image.file(Path::new("d/f")), None);
        let out = tempfile::tempdir().unwrap();
        image.write_to(&out.path().join("x")).unwrap();
        assert_eq!(fs::read(out.path().join("x/g")).unwrap(), b"help!");
        assert!(out.path().join("x/d").is_dir());
    }

    #[test]
    fn a_copied_page_extends_the_file_with_zeros_before_it() {
        let mut live = Image::default();
        live.apply(&Op::Write { ino: 5, offset: 0, data: Arc::from(vec![7u8; 3 * PAGE as usize]) });
        let mut crash = Image::default();
        crash.copy_page(&live, 5, 2);
        let b = crash.file_of(5).unwrap();
        assert_eq!(b.len(), 3 * PAGE as usize);
        assert!(b[..2 * PAGE as usize].iter().all(|&x| x == 0));
        assert!(b[2 * PAGE as usize..].iter().all(|&x| x == 7));
    }
}
