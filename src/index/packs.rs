//! Pack files: append-only files of page images and commit records, `pages/<8 hex>.pack`.
//!
//! Invariant: bytes of a pack are written once, at its end, and never changed; a page
//! image is named by a directory record only after the bytes are written (and, for a
//! durable commit, fsynced). A pack is deleted only when no durable directory record
//! names it. Readers hold an open handle, so a pack deleted while one reads it stays
//! readable until the handle is dropped. After a crash a pack may end in a torn image
//! that no record names; appends go after it. A pack's header says whether the store has
//! an auth key and carries its check, so that a store can be rebuilt from its packs.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use crate::error::{Error, Result};

/// The magic text every pack file starts with.
const MAGIC: &[u8; 16] = b"pickleshelf pack";
/// Pack version of format 3 stores, and of format 2 ones (a 24-byte header).
const VERSION: u8 = 2;
const VERSION_2: u8 = 1;
/// Length of a pack's header (format 3).
pub(crate) const HEADER_LEN: usize = 64;
/// A pack at least this long is not appended to; the next write starts a new one.
pub(crate) const ROLL_BYTES: u64 = 64 << 20;

/// What a pack's header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PackHeader {
    /// True for a pack of a format 2 store (24-byte header, format 2 images).
    pub(crate) format2: bool,
    /// The store's auth check (see `docs/FORMAT.md`), for a store with an auth key.
    pub(crate) auth: Option<[u8; 32]>,
}

impl PackHeader {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..16].copy_from_slice(MAGIC);
        h[16] = VERSION;
        if let Some(a) = &self.auth {
            h[17] = 1;
            h[32..].copy_from_slice(a);
        }
        h
    }

    /// Parses the first bytes of a pack (at least [`HEADER_LEN`] of them, or all there are).
    pub(crate) fn parse(bytes: &[u8]) -> Option<PackHeader> {
        if bytes.get(..16)? != MAGIC {
            return None;
        }
        match *bytes.get(16)? {
            VERSION_2 if bytes.get(17..24)? == [0; 7] => Some(PackHeader { format2: true, auth: None }),
            VERSION if bytes.get(18..32)? == [0; 14] => {
                let auth: [u8; 32] = bytes.get(32..64)?.try_into().ok()?;
                match bytes[17] {
                    0 if auth == [0; 32] => Some(PackHeader { format2: false, auth: None }),
                    1 => Some(PackHeader { format2: false, auth: Some(auth) }),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// The pack files of a directory (id and length, in id order) and the other files in it.
pub(crate) type Listing = (Vec<(u32, u64)>, Vec<PathBuf>);

/// The pack being appended to.
struct Current {
    id: u32,
    file: Arc<File>,
    len: u64,
}

/// The pack files of a store.
pub(crate) struct Packs {
    dir: PathBuf,
    read_only: bool,
    /// The header of the packs this store writes.
    header: PackHeader,
    /// Read handles, opened on first use.
    handles: RwLock<HashMap<u32, Arc<File>>>,
    current: Mutex<Option<Current>>,
    /// Packs written since the last [`Packs::sync`], and whether one was created.
    unsynced: Mutex<(Vec<u32>, bool)>,
}

/// The file name of pack `id`.
pub(crate) fn file_name(id: u32) -> String {
    format!("{id:08x}.pack")
}

fn parse_name(name: &str) -> Option<u32> {
    let hex = name.strip_suffix(".pack")?;
    if hex.len() != 8 {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

impl Packs {
    /// Opens the pack directory `dir` (created unless read-only); new packs carry `auth`,
    /// the store's auth check.
    pub(crate) fn open(dir: &Path, read_only: bool, auth: Option<[u8; 32]>) -> Result<Packs> {
        if !read_only && !dir.exists() {
            // Durable at once: records naming a pack may reach disk before the next sync.
            super::files::create_dir_durable(dir)?;
        }
        Ok(Packs {
            dir: dir.to_path_buf(),
            read_only,
            header: PackHeader { format2: false, auth },
            handles: RwLock::new(HashMap::new()),
            current: Mutex::new(None),
            unsynced: Mutex::new((Vec::new(), false)),
        })
    }

    pub(crate) fn path_of(&self, id: u32) -> PathBuf {
        self.dir.join(file_name(id))
    }

    /// Every pack file: its id and length. Other names are returned as paths.
    pub(crate) fn list(&self) -> Result<Listing> {
        let mut packs = Vec::new();
        let mut strays = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((packs, strays)),
            Err(e) => return Err(io(&self.dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io(&self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            match parse_name(&name) {
                Some(id) => {
                    let len = entry.metadata().map_err(io(&entry.path()))?.len();
                    packs.push((id, len));
                }
                None => strays.push(entry.path()),
            }
        }
        packs.sort_unstable();
        Ok((packs, strays))
    }

    fn handle(&self, id: u32) -> Result<Arc<File>> {
        if let Some(f) = self.handles.read().unwrap_or_else(PoisonError::into_inner).get(&id) {
            return Ok(f.clone());
        }
        let path = self.path_of(id);
        let file = File::open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Corrupted {
                    what: format!("pack {}", file_name(id)),
                    reason: format!("{} is missing", path.display()),
                }
            } else {
                Error::Io { path: path.clone(), source: e }
            }
        })?;
        let mut head = [0u8; HEADER_LEN];
        let n = file.read_at(&mut head, 0).unwrap_or(0);
        if PackHeader::parse(&head[..n]).is_none() {
            return Err(Error::Corrupted {
                what: format!("pack {}", file_name(id)),
                reason: "not a pickleshelf pack file (bad header)".into(),
            });
        }
        let file = Arc::new(file);
        self.handles.write().unwrap_or_else(PoisonError::into_inner).insert(id, file.clone());
        Ok(file)
    }

    /// Reads `len` bytes of pack `id` at `offset`.
    pub(crate) fn read(&self, id: u32, offset: u64, len: u32) -> Result<Vec<u8>> {
        let file = self.handle(id)?;
        let mut buf = vec![0u8; len as usize];
        match file.read_exact_at(&mut buf, offset) {
            Ok(()) => Ok(buf),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(Error::Corrupted {
                what: format!("pack {}", file_name(id)),
                reason: format!("it ends before byte {} (truncated)", offset + u64::from(len)),
            }),
            Err(e) => Err(Error::Io { path: self.path_of(id), source: e }),
        }
    }

    /// The bytes of pack `id` from `from` to its end.
    pub(crate) fn read_from(&self, id: u32, from: u64) -> Result<Vec<u8>> {
        let file = self.handle(id)?;
        let path = self.path_of(id);
        let len = file.metadata().map_err(io(&path))?.len();
        let mut buf = vec![0u8; len.saturating_sub(from) as usize];
        file.read_exact_at(&mut buf, from).map_err(io(&path))?;
        Ok(buf)
    }

    /// Appends `images` to the current pack (starting a new one when there is none, it is
    /// full, or `fresh`); returns the pack id and the offset of each image.
    pub(crate) fn append(&self, images: &[Vec<u8>], fresh: bool) -> Result<(u32, Vec<u64>)> {
        self.append_with(images, fresh, |_, _| Vec::new())
    }

    /// [`Packs::append`], with the bytes `tail` makes from the pack id and the offsets of
    /// the images (a commit record) appended after them, in the same write.
    pub(crate) fn append_with(
        &self,
        images: &[Vec<u8>],
        fresh: bool,
        tail: impl FnOnce(u32, &[u64]) -> Vec<u8>,
    ) -> Result<(u32, Vec<u64>)> {
        if self.read_only {
            return Err(Error::Io {
                path: self.dir.clone(),
                source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, "store opened read-only"),
            });
        }
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if fresh || current.as_ref().is_none_or(|c| c.len >= ROLL_BYTES) {
            *current = Some(self.create()?);
        }
        let Some(cur) = current.as_mut() else {
            return Err(Error::Io { path: self.dir.clone(), source: std::io::Error::other("no pack to append to") });
        };
        let total: usize = images.iter().map(Vec::len).sum();
        let mut buf = Vec::with_capacity(total);
        let mut offsets = Vec::with_capacity(images.len());
        for img in images {
            offsets.push(cur.len + buf.len() as u64);
            buf.extend_from_slice(img);
        }
        buf.extend_from_slice(&tail(cur.id, &offsets));
        let path = self.path_of(cur.id);
        cur.file.write_all_at(&buf, cur.len).map_err(io(&path))?;
        cur.len += buf.len() as u64;
        let mut unsynced = self.unsynced.lock().unwrap_or_else(PoisonError::into_inner);
        if !unsynced.0.contains(&cur.id) {
            unsynced.0.push(cur.id);
        }
        Ok((cur.id, offsets))
    }

    /// The current pack and its length.
    pub(crate) fn current_len(&self) -> Option<(u32, u64)> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(|c| (c.id, c.len))
    }

    /// Resumes appending to pack `id` (of length `len`) when it is not full and has this
    /// store's header (a pack of a format 2 store is never appended to). A pack that cannot
    /// be opened for writing is not resumed: the next commit starts a new one.
    pub(crate) fn resume(&self, id: u32, len: u64) -> Result<()> {
        if self.read_only || len >= ROLL_BYTES || len < HEADER_LEN as u64 {
            return Ok(());
        }
        let path = self.path_of(id);
        let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else { return Ok(()) };
        let mut head = [0u8; HEADER_LEN];
        if file.read_exact_at(&mut head, 0).is_err() || PackHeader::parse(&head) != Some(self.header) {
            return Ok(());
        }
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(Current { id, file: Arc::new(file), len });
        Ok(())
    }

    /// The id of the pack being appended to.
    pub(crate) fn current(&self) -> Option<u32> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(|c| c.id)
    }

    fn create(&self) -> Result<Current> {
        let (packs, _) = self.list()?;
        let id = packs
            .last()
            .map_or(Some(1), |&(id, _)| id.checked_add(1))
            .ok_or_else(|| Error::Io { path: self.dir.clone(), source: std::io::Error::other("pack ids exhausted") })?;
        let path = self.path_of(id);
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path).map_err(io(&path))?;
        file.write_all_at(&self.header.encode(), 0).map_err(io(&path))?;
        self.unsynced.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
        let file = Arc::new(file);
        self.handles.write().unwrap_or_else(PoisonError::into_inner).insert(id, file.clone());
        Ok(Current { id, file, len: HEADER_LEN as u64 })
    }

    /// fsyncs the packs written since the last call (and the directory when a pack was
    /// created).
    pub(crate) fn sync(&self) -> Result<()> {
        let (ids, created) = std::mem::take(&mut *self.unsynced.lock().unwrap_or_else(PoisonError::into_inner));
        for id in ids {
            let file = self.handle(id)?;
            file.sync_data().map_err(io(&self.path_of(id)))?;
        }
        if created {
            super::files::fsync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Deletes pack `id` (absent is fine). Readers holding its handle finish their reads.
    pub(crate) fn remove(&self, id: u32) -> Result<()> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|c| c.id == id) {
            *current = None;
        }
        drop(current);
        self.handles.write().unwrap_or_else(PoisonError::into_inner).remove(&id);
        let path = self.path_of(id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Io { path, source: e }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn append_read_roll_remove() {
        let dir = tempfile::tempdir().unwrap();
        let packs = Packs::open(&dir.path().join("pages"), false, Some([9; 32])).unwrap();
        let (id, offs) = packs.append(&[b"abc".to_vec(), b"de".to_vec()], false).unwrap();
        assert_eq!(id, 1);
        assert_eq!(offs, vec![64, 67]);
        assert_eq!(packs.read(1, 67, 2).unwrap(), b"de");
        let head = packs.read(1, 0, HEADER_LEN as u32).unwrap();
        assert_eq!(PackHeader::parse(&head), Some(PackHeader { format2: false, auth: Some([9; 32]) }));
        assert_eq!(packs.read_from(1, 66).unwrap(), b"cde");
        let (id2, offs2) = packs.append(&[b"f".to_vec()], true).unwrap();
        assert_eq!((id2, offs2), (2, vec![64]));
        packs.sync().unwrap();
        assert!(matches!(packs.read(1, 67, 3), Err(Error::Corrupted { .. })));
        assert_eq!(packs.list().unwrap().0, vec![(1, 69), (2, 65)]);
        packs.remove(1).unwrap();
        assert!(matches!(packs.read(1, 64, 1), Err(Error::Corrupted { .. })));
        let v2 = b"pickleshelf pack\x01\0\0\0\0\0\0\0";
        assert_eq!(PackHeader::parse(v2), Some(PackHeader { format2: true, auth: None }));
        std::fs::write(packs.path_of(7), b"not a pack at all, no no no").unwrap();
        assert!(matches!(packs.read(7, 24, 1), Err(Error::Corrupted { .. })));
    }
}
