//! The FUSE file system: a passthrough to a backing directory that logs every change.
//!
//! Invariant: every request is applied to the backing directory first and logged after it
//! succeeded, under one lock, so the log is the order in which changes took effect; once
//! the power is cut, every request fails with `EIO` and nothing more is logged or changed.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::image::ROOT;
use crate::log::{Entry, Ino, Kind, Op};

/// How long the kernel may cache names and attributes: every change goes through this
/// file system, so the kernel's own view stays right.
const TTL: Duration = Duration::from_secs(1);

/// An open file or directory.
enum Handle {
    File { file: Arc<File>, ino: Ino },
    Dir { entries: Vec<(Ino, FileType, std::ffi::OsString)> },
}

/// Everything the server and the harness share.
pub(crate) struct State {
    /// The backing directory.
    root: PathBuf,
    paths: HashMap<Ino, PathBuf>,
    inos: HashMap<PathBuf, Ino>,
    next_ino: Ino,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    pub(crate) log: Vec<Entry>,
    /// False once the power is cut.
    pub(crate) powered: bool,
}

impl State {
    /// The state of a mount of `root`, whose paths (relative) have the inodes given.
    pub(crate) fn new(root: PathBuf, known: Vec<(PathBuf, Ino)>) -> State {
        let next_ino = known.iter().map(|(_, i)| *i).max().unwrap_or(ROOT) + 1;
        let mut paths = HashMap::new();
        let mut inos = HashMap::new();
        for (p, i) in known {
            paths.insert(i, p.clone());
            inos.insert(p, i);
        }
        paths.insert(ROOT, PathBuf::new());
        inos.insert(PathBuf::new(), ROOT);
        State { root, paths, inos, next_ino, handles: HashMap::new(), next_fh: 1, log: Vec::new(), powered: true }
    }

    fn rel(&self, ino: Ino) -> Result<&PathBuf, Errno> {
        self.paths.get(&ino).ok_or(Errno::ENOENT)
    }

    fn abs(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() { self.root.clone() } else { self.root.join(rel) }
    }

    /// The inode of `rel`, numbering it if it is new.
    fn ino_of(&mut self, rel: &Path) -> Ino {
        if let Some(i) = self.inos.get(rel) {
            return *i;
        }
        let i = self.next_ino;
        self.next_ino += 1;
        self.inos.insert(rel.to_path_buf(), i);
        self.paths.insert(i, rel.to_path_buf());
        i
    }

    fn forget_path(&mut self, rel: &Path) {
        if let Some(i) = self.inos.remove(rel) {
            self.paths.remove(&i);
        }
    }

    fn push(&mut self, op: Op, path: PathBuf, to: Option<PathBuf>) {
        self.log.push(Entry { op, path, to });
    }

    fn add_handle(&mut self, h: Handle) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, h);
        fh
    }

    fn file(&self, fh: FileHandle) -> Result<(Arc<File>, Ino), Errno> {
        match self.handles.get(&fh.0) {
            Some(Handle::File { file, ino }) => Ok((file.clone(), *ino)),
            _ => Err(Errno::EBADF),
        }
    }
}

fn errno(e: std::io::Error) -> Errno {
    Errno::from(e)
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 { UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32) } else { UNIX_EPOCH }
}

fn attr(ino: Ino, m: &fs::Metadata) -> FileAttr {
    let kind = if m.is_dir() { FileType::Directory } else { FileType::RegularFile };
    FileAttr {
        ino: INodeNo(ino),
        size: m.len(),
        blocks: m.blocks(),
        atime: time(m.atime(), m.atime_nsec()),
        mtime: time(m.mtime(), m.mtime_nsec()),
        ctime: time(m.ctime(), m.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind,
        perm: (m.mode() & 0o7777) as u16,
        nlink: m.nlink() as u32,
        uid: m.uid(),
        gid: m.gid(),
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// The file system served on the mount.
pub(crate) struct LazyFs {
    pub(crate) state: Arc<Mutex<State>>,
}

impl LazyFs {
    /// The shared state, or `EIO` once the power is cut.
    fn on(&self) -> Result<MutexGuard<'_, State>, Errno> {
        let s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.powered { Ok(s) } else { Err(Errno::EIO) }
    }

    fn entry_of(&self, parent: INodeNo, name: &OsStr) -> Result<(Ino, FileAttr), Errno> {
        let mut s = self.on()?;
        let rel = s.rel(parent.0)?.join(name);
        let m = fs::symlink_metadata(s.abs(&rel)).map_err(errno)?;
        let ino = s.ino_of(&rel);
        Ok((ino, attr(ino, &m)))
    }

    fn getattr_of(&self, ino: INodeNo, fh: Option<FileHandle>) -> Result<FileAttr, Errno> {
        let s = self.on()?;
        if let Some(fh) = fh
            && let Ok((file, i)) = s.file(fh)
        {
            return Ok(attr(i, &file.metadata().map_err(errno)?));
        }
        let rel = s.rel(ino.0)?;
        Ok(attr(ino.0, &fs::symlink_metadata(s.abs(rel)).map_err(errno)?))
    }

    fn setattr_of(
        &self,
        ino: INodeNo,
        mode: Option<u32>,
        size: Option<u64>,
        fh: Option<FileHandle>,
    ) -> Result<FileAttr, Errno> {
        let mut s = self.on()?;
        let rel = s.rel(ino.0).cloned();
        let by_handle = fh.and_then(|fh| s.file(fh).ok());
        if let Some(len) = size {
            match (&by_handle, &rel) {
                (Some((file, _)), _) => file.set_len(len).map_err(errno)?,
                (None, Ok(rel)) => {
                    OpenOptions::new().write(true).open(s.abs(rel)).and_then(|f| f.set_len(len)).map_err(errno)?
                }
                (None, Err(e)) => return Err(*e),
            }
            let path = rel.clone().unwrap_or_default();
            s.push(Op::SetLen { ino: ino.0, len }, path, None);
        }
        if let (Some(mode), Ok(rel)) = (mode, &rel) {
            fs::set_permissions(s.abs(rel), fs::Permissions::from_mode(mode & 0o7777)).map_err(errno)?;
        }
        let m = match (&by_handle, &rel) {
            (Some((file, _)), _) => file.metadata().map_err(errno)?,
            (None, Ok(rel)) => fs::symlink_metadata(s.abs(rel)).map_err(errno)?,
            (None, Err(e)) => return Err(*e),
        };
        Ok(attr(ino.0, &m))
    }

    fn mkdir_of(&self, parent: INodeNo, name: &OsStr, mode: u32) -> Result<FileAttr, Errno> {
        let mut s = self.on()?;
        let rel = s.rel(parent.0)?.join(name);
        let abs = s.abs(&rel);
        fs::DirBuilder::new().mode(mode & 0o7777).create(&abs).map_err(errno)?;
        s.forget_path(&rel);
        let ino = s.ino_of(&rel);
        s.push(Op::Create { dir: parent.0, name: name.to_owned(), ino, kind: Kind::Dir }, rel, None);
        Ok(attr(ino, &fs::symlink_metadata(&abs).map_err(errno)?))
    }

    fn remove_of(&self, parent: INodeNo, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let mut s = self.on()?;
        let rel = s.rel(parent.0)?.join(name);
        let abs = s.abs(&rel);
        if dir { fs::remove_dir(&abs) } else { fs::remove_file(&abs) }.map_err(errno)?;
        let ino = s.ino_of(&rel);
        s.forget_path(&rel);
        s.push(Op::Remove { dir: parent.0, name: name.to_owned(), ino }, rel, None);
        Ok(())
    }

    fn rename_of(
        &self,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        if !flags.is_empty() {
            return Err(Errno::EINVAL);
        }
        let mut s = self.on()?;
        let from = s.rel(parent.0)?.join(name);
        let to = s.rel(newparent.0)?.join(newname);
        fs::rename(s.abs(&from), s.abs(&to)).map_err(errno)?;
        let ino = s.ino_of(&from);
        s.forget_path(&to);
        // Move the inode, and for a directory every path below it.
        let moved: Vec<(PathBuf, Ino)> =
            s.inos.iter().filter(|(p, _)| p.starts_with(&from)).map(|(p, i)| (p.clone(), *i)).collect();
        for (p, i) in moved {
            s.inos.remove(&p);
            let rest = p.strip_prefix(&from).map(Path::to_path_buf).unwrap_or_default();
            let np = if rest.as_os_str().is_empty() { to.clone() } else { to.join(rest) };
            s.inos.insert(np.clone(), i);
            s.paths.insert(i, np);
        }
        let op =
            Op::Rename { from_dir: parent.0, from: name.to_owned(), to_dir: newparent.0, to: newname.to_owned(), ino };
        s.push(op, from, Some(to));
        Ok(())
    }

    fn open_of(&self, ino: INodeNo, flags: OpenFlags) -> Result<u64, Errno> {
        let mut s = self.on()?;
        let rel = s.rel(ino.0)?.clone();
        let acc = flags.0 & O_ACCMODE;
        let file = OpenOptions::new().read(true).write(acc != 0).open(s.abs(&rel)).map_err(errno)?;
        Ok(s.add_handle(Handle::File { file: Arc::new(file), ino: ino.0 }))
    }

    fn create_of(&self, parent: INodeNo, name: &OsStr, mode: u32, umask: u32) -> Result<(FileAttr, u64), Errno> {
        let mut s = self.on()?;
        let rel = s.rel(parent.0)?.join(name);
        let abs = s.abs(&rel);
        let existed = abs.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(mode & !umask & 0o7777)
            .open(&abs)
            .map_err(errno)?;
        let ino = if existed {
            s.ino_of(&rel)
        } else {
            s.forget_path(&rel);
            let ino = s.ino_of(&rel);
            s.push(Op::Create { dir: parent.0, name: name.to_owned(), ino, kind: Kind::File }, rel, None);
            ino
        };
        let a = attr(ino, &file.metadata().map_err(errno)?);
        Ok((a, s.add_handle(Handle::File { file: Arc::new(file), ino })))
    }

    fn read_of(&self, fh: FileHandle, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let (file, _) = self.on()?.file(fh)?;
        let mut buf = vec![0u8; size as usize];
        let mut n = 0;
        while n < buf.len() {
            match file.read_at(&mut buf[n..], offset + n as u64) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(errno(e)),
            }
        }
        buf.truncate(n);
        Ok(buf)
    }

    fn write_of(&self, fh: FileHandle, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        let mut s = self.on()?;
        let (file, ino) = s.file(fh)?;
        file.write_all_at(data, offset).map_err(errno)?;
        let path = s.paths.get(&ino).cloned().unwrap_or_default();
        s.push(Op::Write { ino, offset, data: Arc::from(data) }, path, None);
        Ok(data.len() as u32)
    }

    fn fsync_of(&self, ino: Ino, kind: Kind) -> Result<(), Errno> {
        let mut s = self.on()?;
        let path = s.paths.get(&ino).cloned().unwrap_or_default();
        s.push(Op::Fsync { ino, kind }, path, None);
        Ok(())
    }

    fn opendir_of(&self, ino: INodeNo) -> Result<u64, Errno> {
        let mut s = self.on()?;
        let rel = s.rel(ino.0)?.clone();
        let mut entries = vec![(ino.0, FileType::Directory, ".".into()), (ino.0, FileType::Directory, "..".into())];
        let mut found = Vec::new();
        for e in fs::read_dir(s.abs(&rel)).map_err(errno)? {
            let e = e.map_err(errno)?;
            let kind = if e.file_type().map_err(errno)?.is_dir() { FileType::Directory } else { FileType::RegularFile };
            found.push((rel.join(e.file_name()), kind, e.file_name()));
        }
        for (p, kind, name) in found {
            let i = s.ino_of(&p);
            entries.push((i, kind, name));
        }
        Ok(s.add_handle(Handle::Dir { entries }))
    }
}

/// `O_ACCMODE`: the access-mode bits of open flags (0 read, 1 write, 2 both).
const O_ACCMODE: i32 = 3;

macro_rules! reply {
    ($reply:expr, $result:expr, |$v:pat_param| $ok:expr) => {
        match $result {
            Ok($v) => $ok,
            Err(e) => $reply.error(e),
        }
    };
}

impl Filesystem for LazyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply!(reply, self.entry_of(parent, name), |(_, a)| reply.entry(&TTL, &a, Generation(0)));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        reply!(reply, self.getattr_of(ino, fh), |a| reply.attr(&TTL, &a));
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply!(reply, self.setattr_of(ino, mode, size, fh), |a| reply.attr(&TTL, &a));
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        reply!(reply, self.mkdir_of(parent, name, mode & !umask), |a| reply.entry(&TTL, &a, Generation(0)));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply!(reply, self.remove_of(parent, name, false), |()| reply.ok());
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply!(reply, self.remove_of(parent, name, true), |()| reply.ok());
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply!(reply, self.rename_of(parent, name, newparent, newname, flags), |()| reply.ok());
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        reply!(reply, self.open_of(ino, flags), |fh| reply.opened(FileHandle(fh), FopenFlags::empty()));
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        reply!(reply, self.read_of(fh, offset, size), |d| reply.data(&d));
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply!(reply, self.write_of(fh, offset, data), |n| reply.written(n));
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply!(reply, self.on().map(drop), |()| reply.ok());
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // Also after a power cut: the kernel's handles must go.
        self.state.lock().unwrap_or_else(PoisonError::into_inner).handles.remove(&fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply!(reply, self.fsync_of(ino.0, Kind::File), |()| reply.ok());
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply!(reply, self.opendir_of(ino), |fh| reply.opened(FileHandle(fh), FopenFlags::empty()));
    }

    fn readdir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let s = match self.on() {
            Ok(s) => s,
            Err(e) => return reply.error(e),
        };
        let Some(Handle::Dir { entries }) = s.handles.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).handles.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply!(reply, self.fsync_of(ino.0, Kind::Dir), |()| reply.ok());
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(1 << 24, 1 << 23, 1 << 23, 1 << 20, 1 << 19, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply!(reply, self.create_of(parent, name, mode, umask), |(a, fh)| reply.created(
            &TTL,
            &a,
            Generation(0),
            FileHandle(fh),
            FopenFlags::empty()
        ));
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        // Not modelled: callers (hole punching) treat it as unsupported, as on many file systems.
        reply.error(Errno::EOPNOTSUPP);
    }
}
