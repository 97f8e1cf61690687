//! [`RemoteShelf`]: a served store, through the Redis protocol, with the mapping API of
//! [`Shelf`]; and [`Mapping`], the API both share, so a program can be written once for
//! a store it owns or one it talks to.
//!
//! Invariant: values travel as the store's pickles, byte-exact (`SHELF.GETPICKLE`,
//! `SHELF.SETPICKLE`); batches are one `MULTI`/`EXEC` (all-or-nothing on the server);
//! `update` is optimistic (`WATCH`, retried until no other write came between). Nothing
//! a server sends can make the client panic or allocate more than the bytes it sent.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Mutex, PoisonError};

use pickleshelf::pickle::{self, Value};
use pickleshelf::{Batch, Shelf};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Result, ServerError};

/// A reply from the server.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Resp {
    /// `+text`
    Simple(String),
    /// `-text`
    Error(String),
    /// `:n`
    Int(i64),
    /// `$n` (or RESP3 `=n`, `,x`, `(n`)
    Bulk(Vec<u8>),
    /// `*n`, and RESP3 maps (flattened), sets and pushes
    Array(Vec<Resp>),
    /// `$-1`, `*-1`, `_`
    Null,
}

/// Deepest reply nesting the client reads.
const MAX_DEPTH: usize = 32;

enum Stream {
    Tcp(BufReader<TcpStream>),
    #[cfg(unix)]
    Unix(BufReader<std::os::unix::net::UnixStream>),
}

impl Stream {
    fn reader(&mut self) -> &mut dyn BufRead {
        match self {
            Stream::Tcp(s) => s,
            #[cfg(unix)]
            Stream::Unix(s) => s,
        }
    }
    fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.get_mut().write_all(b),
            #[cfg(unix)]
            Stream::Unix(s) => s.get_mut().write_all(b),
        }
    }
}

/// One connection, speaking RESP2.
struct Conn {
    stream: Stream,
    what: String,
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
    move |source| ServerError::Io { what: what.to_owned(), source }
}

impl Conn {
    fn send(&mut self, cmds: &[Vec<&[u8]>]) -> Result<()> {
        let mut out = Vec::new();
        for args in cmds {
            out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
            for a in args {
                out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                out.extend_from_slice(a);
                out.extend_from_slice(b"\r\n");
            }
        }
        self.stream.write_all(&out).map_err(io(&self.what))
    }

    fn line(&mut self) -> Result<Vec<u8>> {
        let mut line = Vec::new();
        let n = self.stream.reader().take(64 << 10).read_until(b'\n', &mut line).map_err(io(&self.what))?;
        if n == 0 || !line.ends_with(b"\r\n") {
            return Err(ServerError::Protocol(format!(
                "connection to {} closed or a reply line was cut short",
                self.what
            )));
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }

    fn read(&mut self, depth: usize) -> Result<Resp> {
        if depth > MAX_DEPTH {
            return Err(ServerError::Protocol("reply nested too deep".into()));
        }
        let line = self.line()?;
        let Some((&kind, rest)) = line.split_first() else {
            return Err(ServerError::Protocol("empty reply line".into()));
        };
        let text = || String::from_utf8_lossy(rest).into_owned();
        let num = || -> Result<i64> {
            std::str::from_utf8(rest)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| ServerError::Protocol(format!("bad length or integer {:?}", text())))
        };
        Ok(match kind {
            b'+' => Resp::Simple(text()),
            b'-' => Resp::Error(text()),
            b':' => Resp::Int(num()?),
            b'_' => Resp::Null,
            b'#' => Resp::Int(i64::from(rest == b"t")),
            b',' | b'(' => Resp::Bulk(rest.to_vec()),
            b'$' | b'=' | b'!' => {
                let n = num()?;
                if n < 0 {
                    return Ok(Resp::Null);
                }
                let mut buf = Vec::new();
                let got = self.stream.reader().take(n as u64 + 2).read_to_end(&mut buf).map_err(io(&self.what))?;
                if got as u64 != n as u64 + 2 {
                    return Err(ServerError::Protocol("a bulk reply was cut short".into()));
                }
                buf.truncate(n as usize);
                if kind == b'=' && buf.len() >= 4 {
                    buf.drain(..4);
                }
                if kind == b'!' {
                    return Ok(Resp::Error(String::from_utf8_lossy(&buf).into_owned()));
                }
                Resp::Bulk(buf)
            }
            b'*' | b'%' | b'~' | b'>' => {
                let n = num()?;
                if n < 0 {
                    return Ok(Resp::Null);
                }
                let n = if kind == b'%' { n.saturating_mul(2) } else { n };
                let mut items = Vec::new();
                for _ in 0..n {
                    items.push(self.read(depth + 1)?);
                }
                Resp::Array(items)
            }
            other => return Err(ServerError::Protocol(format!("unknown reply type {:?}", char::from(other)))),
        })
    }

    fn call(&mut self, args: &[&[u8]]) -> Result<Resp> {
        self.send(&[args.to_vec()])?;
        match self.read(0)? {
            Resp::Error(e) => Err(ServerError::Reply(e)),
            r => Ok(r),
        }
    }
}

/// A store served by `pickleshelf serve` (or [`crate::serve`]), with [`Shelf`]'s
/// mapping API over one connection.
///
/// ```no_run
/// use pickleshelf_server::RemoteShelf;
/// let shelf = RemoteShelf::connect("redis://127.0.0.1:6379")?;
/// shelf.insert("user:1", &("Kim", 42))?;
/// let back: Option<(String, i64)> = shelf.get("user:1")?;
/// # Ok::<(), pickleshelf_server::ServerError>(())
/// ```
pub struct RemoteShelf {
    conn: Mutex<Conn>,
}

impl std::fmt::Debug for RemoteShelf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = self.conn.lock().map(|c| c.what.clone()).unwrap_or_default();
        f.debug_struct("RemoteShelf").field("server", &what).finish()
    }
}

fn unexpected(r: &Resp) -> ServerError {
    ServerError::Protocol(format!("{r:?}"))
}

impl RemoteShelf {
    /// Connects to `url`: `redis://[[default]:PASSWORD@]HOST:PORT` or `unix:///PATH`
    /// (with `?password=...` if needed), authenticating when a password is given.
    ///
    /// # Errors
    /// [`ServerError::Config`] for a URL it cannot read; [`ServerError::Io`] when the
    /// server cannot be reached; [`ServerError::Reply`] when it refuses the password.
    pub fn connect(url: &str) -> Result<RemoteShelf> {
        let (stream, what, password) = if let Some(rest) = url.strip_prefix("redis://") {
            let (auth, host) = match rest.rsplit_once('@') {
                Some((a, h)) => (Some(a), h),
                None => (None, rest),
            };
            let host = host.trim_end_matches('/');
            let password = auth.map(|a| a.rsplit_once(':').map_or(a, |(_, p)| p).to_owned());
            let s = TcpStream::connect(host).map_err(io(host))?;
            let _ = s.set_nodelay(true);
            (Stream::Tcp(BufReader::new(s)), host.to_owned(), password)
        } else if let Some(rest) = url.strip_prefix("unix://") {
            #[cfg(unix)]
            {
                let (path, password) = match rest.split_once("?password=") {
                    Some((p, pw)) => (p, Some(pw.to_owned())),
                    None => (rest, None),
                };
                let s = std::os::unix::net::UnixStream::connect(path).map_err(io(path))?;
                (Stream::Unix(BufReader::new(s)), path.to_owned(), password)
            }
            #[cfg(not(unix))]
            return Err(ServerError::Config(format!("unix sockets are not supported here: {rest}")));
        } else {
            return Err(ServerError::Config(format!("{url:?} is not a redis://HOST:PORT or unix:///PATH address")));
        };
        let mut conn = Conn { stream, what };
        if let Some(pw) = password.filter(|p| !p.is_empty()) {
            conn.call(&[b"AUTH", pw.as_bytes()])?;
        }
        Ok(RemoteShelf { conn: Mutex::new(conn) })
    }

    fn call(&self, args: &[&[u8]]) -> Result<Resp> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner).call(args)
    }

    fn int(&self, args: &[&[u8]]) -> Result<i64> {
        match self.call(args)? {
            Resp::Int(n) => Ok(n),
            r => Err(unexpected(&r)),
        }
    }

    /// Sends one command and returns its reply (errors as [`ServerError::Reply`]).
    ///
    /// # Errors
    /// [`ServerError::Io`], [`ServerError::Protocol`], [`ServerError::Reply`].
    pub fn command(&self, args: &[&[u8]]) -> Result<Resp> {
        self.call(args)
    }

    /// Stores `value` under `key`, pickled (protocol 4).
    ///
    /// # Errors
    /// [`ServerError::Store`] when it cannot be pickled; the server's refusal otherwise.
    pub fn insert<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        self.insert_pickle(key, &pickle::to_vec(value)?)
    }

    /// Stores a decoded pickle value under `key`.
    ///
    /// # Errors
    /// As [`RemoteShelf::insert`].
    pub fn insert_value(&self, key: &str, value: &Value) -> Result<()> {
        self.insert_pickle(key, &pickle::encode(value, pickle::DEFAULT_PROTOCOL)?)
    }

    /// Stores pickle bytes under `key` byte-exact (the server checks that they decode).
    ///
    /// # Errors
    /// [`ServerError::Reply`] when the server refuses them (not a pickle, say).
    pub fn insert_pickle(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.call(&[b"SHELF.SETPICKLE", key.as_bytes(), bytes]).map(drop)
    }

    /// The pickle bytes stored under `key`.
    ///
    /// # Errors
    /// [`ServerError::Io`], [`ServerError::Protocol`], [`ServerError::Reply`].
    pub fn get_pickle(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match self.call(&[b"SHELF.GETPICKLE", key.as_bytes()])? {
            Resp::Bulk(b) => Ok(Some(b)),
            Resp::Null => Ok(None),
            r => Err(unexpected(&r)),
        }
    }

    /// The value under `key`, deserialized into `T`.
    ///
    /// # Errors
    /// [`ServerError::Store`] when the value does not fit `T`; as
    /// [`RemoteShelf::get_pickle`].
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.get_pickle(key)? {
            Some(b) => Ok(Some(pickle::from_slice(&b)?)),
            None => Ok(None),
        }
    }

    /// The value under `key` as a decoded pickle graph.
    ///
    /// # Errors
    /// As [`RemoteShelf::get`].
    pub fn get_value(&self, key: &str) -> Result<Option<Value>> {
        match self.get_pickle(key)? {
            Some(b) => Ok(Some(pickle::decode(&b)?)),
            None => Ok(None),
        }
    }

    /// Removes `key`; returns whether it was there.
    ///
    /// # Errors
    /// As [`RemoteShelf::get_pickle`].
    pub fn remove(&self, key: &str) -> Result<bool> {
        Ok(self.int(&[b"DEL", key.as_bytes()])? > 0)
    }

    /// True when `key` holds a value.
    ///
    /// # Errors
    /// As [`RemoteShelf::get_pickle`].
    pub fn contains_key(&self, key: &str) -> Result<bool> {
        Ok(self.int(&[b"EXISTS", key.as_bytes()])? > 0)
    }

    /// The number of keys.
    ///
    /// # Errors
    /// As [`RemoteShelf::get_pickle`].
    pub fn len(&self) -> Result<usize> {
        Ok(self.int(&[b"DBSIZE"])? as usize)
    }

    /// True when the store holds no key.
    ///
    /// # Errors
    /// As [`RemoteShelf::get_pickle`].
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The keys starting with `prefix`, in byte order (`SCAN` with a `MATCH` pattern).
    ///
    /// # Errors
    /// As [`RemoteShelf::get_pickle`].
    pub fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        let mut pattern = Vec::new();
        for b in prefix.bytes() {
            if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
                pattern.push(b'\\');
            }
            pattern.push(b);
        }
        pattern.push(b'*');
        let mut cursor = b"0".to_vec();
        let mut keys = Vec::new();
        loop {
            let reply = self.call(&[b"SCAN", &cursor, b"MATCH", &pattern, b"COUNT", b"1000"])?;
            let Resp::Array(parts) = reply else { return Err(unexpected(&reply)) };
            let [Resp::Bulk(next), Resp::Array(found)] = &parts[..] else {
                return Err(unexpected(&Resp::Array(parts)));
            };
            for k in found {
                match k {
                    Resp::Bulk(k) => {
                        keys.push(String::from_utf8(k.clone()).map_err(|_| unexpected(&Resp::Bulk(k.clone())))?)
                    }
                    other => return Err(unexpected(other)),
                }
            }
            if next.as_slice() == b"0" {
                break;
            }
            cursor = next.clone();
        }
        Ok(keys)
    }

    /// All keys, in byte order.
    ///
    /// # Errors
    /// As [`RemoteShelf::get_pickle`].
    pub fn keys(&self) -> Result<Vec<String>> {
        self.keys_with_prefix("")
    }

    /// Applies a [`Batch`] atomically (one `MULTI`/`EXEC`): all of it or none.
    ///
    /// # Errors
    /// [`ServerError::Reply`] when the server refuses it (nothing is applied then).
    pub fn apply(&self, batch: Batch) -> Result<()> {
        let mut cmds: Vec<Vec<&[u8]>> = vec![vec![b"MULTI"]];
        for (k, v) in batch.iter() {
            cmds.push(match v {
                Some(v) => vec![b"SHELF.SETPICKLE", k.as_bytes(), v],
                None => vec![b"DEL", k.as_bytes()],
            });
        }
        cmds.push(vec![b"EXEC"]);
        let mut c = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        c.send(&cmds)?;
        let mut first_error = None;
        for _ in 0..cmds.len() - 1 {
            if let Resp::Error(e) = c.read(0)? {
                first_error.get_or_insert(e);
            }
        }
        match (c.read(0)?, first_error) {
            (Resp::Error(e), _) | (_, Some(e)) => Err(ServerError::Reply(e)),
            (Resp::Array(replies), None) => match replies.into_iter().find_map(|r| match r {
                Resp::Error(e) => Some(e),
                _ => None,
            }) {
                Some(e) => Err(ServerError::Reply(e)),
                None => Ok(()),
            },
            (r, None) => Err(unexpected(&r)),
        }
    }

    /// Atomically reads, transforms and writes `key` (as [`Shelf::update`]): optimistic,
    /// retried while another client changes the key in between. Returns the new value.
    ///
    /// # Errors
    /// As [`RemoteShelf::get`] and [`RemoteShelf::insert`].
    pub fn update<T, F>(&self, key: &str, mut f: F) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> Option<T>,
    {
        let mut c = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            c.call(&[b"WATCH", key.as_bytes()])?;
            // Until MULTI, a failure must not leave the key watched for a later EXEC.
            let prepared = (|| {
                let current = match c.call(&[b"SHELF.GETPICKLE", key.as_bytes()])? {
                    Resp::Bulk(b) => Some(pickle::from_slice::<T>(&b)?),
                    Resp::Null => None,
                    r => return Err(unexpected(&r)),
                };
                let new = f(current);
                let bytes = new.as_ref().map(pickle::to_vec).transpose()?;
                Ok((new, bytes))
            })();
            let (new, bytes) = match prepared {
                Ok(p) => p,
                Err(e) => {
                    c.call(&[b"UNWATCH"])?;
                    return Err(e);
                }
            };
            let op: Vec<&[u8]> = match &bytes {
                Some(b) => vec![b"SHELF.SETPICKLE", key.as_bytes(), b],
                None => vec![b"DEL", key.as_bytes()],
            };
            c.send(&[vec![b"MULTI"], op, vec![b"EXEC"]])?;
            for _ in 0..2 {
                if let Resp::Error(e) = c.read(0)? {
                    return Err(ServerError::Reply(e));
                }
            }
            match c.read(0)? {
                Resp::Null => continue,
                Resp::Array(r) => {
                    if let Some(Resp::Error(e)) = r.first() {
                        return Err(ServerError::Reply(e.clone()));
                    }
                    return Ok(new);
                }
                Resp::Error(e) => return Err(ServerError::Reply(e)),
                r => return Err(unexpected(&r)),
            }
        }
    }

    /// Makes every write acknowledged so far durable (`SHELF.SYNC`).
    ///
    /// # Errors
    /// As [`RemoteShelf::get_pickle`].
    pub fn sync(&self) -> Result<()> {
        self.call(&[b"SHELF.SYNC"]).map(drop)
    }

    /// Records checkpoint `name` of every key's value; returns the keys it holds.
    ///
    /// # Errors
    /// [`ServerError::Reply`] when the name is taken or invalid.
    pub fn checkpoint(&self, name: &str) -> Result<u64> {
        match self.call(&[b"SHELF.CHECKPOINT", b"CREATE", name.as_bytes()])? {
            Resp::Array(m) => match m.get(1) {
                Some(Resp::Int(n)) => Ok(*n as u64),
                _ => Err(unexpected(&Resp::Array(m))),
            },
            r => Err(unexpected(&r)),
        }
    }

    /// Puts every key back as checkpoint `name` has it (atomically); returns how many
    /// keys changed.
    ///
    /// # Errors
    /// [`ServerError::Reply`] when there is no such checkpoint.
    pub fn restore(&self, name: &str) -> Result<u64> {
        Ok(self.int(&[b"SHELF.CHECKPOINT", b"RESTORE", name.as_bytes()])? as u64)
    }

    /// The keys changed since checkpoint `name`, as (`+`, `-` or `~`, key).
    ///
    /// # Errors
    /// [`ServerError::Reply`] when there is no such checkpoint.
    pub fn changes_since(&self, name: &str) -> Result<Vec<(char, String)>> {
        let reply = self.call(&[b"SHELF.CHECKPOINT", b"DIFF", name.as_bytes()])?;
        let Resp::Array(items) = reply else { return Err(unexpected(&reply)) };
        items
            .into_iter()
            .map(|it| match it {
                Resp::Array(p) => match &p[..] {
                    [Resp::Bulk(kind), Resp::Bulk(key)] if kind.len() == 1 => {
                        Ok((char::from(kind[0]), String::from_utf8_lossy(key).into_owned()))
                    }
                    _ => Err(unexpected(&Resp::Array(p))),
                },
                other => Err(unexpected(&other)),
            })
            .collect()
    }

    /// Checks the whole store on the server; returns the problems found (none: all is
    /// well).
    ///
    /// # Errors
    /// As [`RemoteShelf::get_pickle`].
    pub fn verify(&self) -> Result<Vec<String>> {
        let reply = self.call(&[b"SHELF.VERIFY"])?;
        let Resp::Array(m) = &reply else { return Err(unexpected(&reply)) };
        match m.last() {
            Some(Resp::Array(p)) => Ok(p
                .iter()
                .map(|x| if let Resp::Bulk(b) = x { String::from_utf8_lossy(b).into_owned() } else { String::new() })
                .collect()),
            _ => Err(unexpected(&reply)),
        }
    }
}

/// The mapping API shared by [`Shelf`] (a store this process owns) and [`RemoteShelf`]
/// (a served one): write a function against `impl Mapping` and it works with either.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use pickleshelf_server::Mapping;
/// fn bump(m: &impl Mapping) -> Result<u64, pickleshelf_server::ServerError> {
///     Ok(m.update("hits", |n: Option<u64>| Some(n.unwrap_or(0) + 1))?.unwrap_or(0))
/// }
/// let shelf = pickleshelf::Shelf::open(dir.path().join("s"))?;
/// assert_eq!(bump(&shelf)?, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Mapping {
    /// See [`Shelf::insert`].
    ///
    /// # Errors
    /// The store's or the server's error.
    fn insert<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()>;
    /// See [`Shelf::insert_pickle`].
    ///
    /// # Errors
    /// The store's or the server's error.
    fn insert_pickle(&self, key: &str, bytes: &[u8]) -> Result<()>;
    /// See [`Shelf::get`].
    ///
    /// # Errors
    /// The store's or the server's error.
    fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>>;
    /// See [`Shelf::get_pickle`].
    ///
    /// # Errors
    /// The store's or the server's error.
    fn get_pickle(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// See [`Shelf::remove`].
    ///
    /// # Errors
    /// The store's or the server's error.
    fn remove(&self, key: &str) -> Result<bool>;
    /// See [`Shelf::contains_key`].
    ///
    /// # Errors
    /// The store's or the server's error.
    fn contains_key(&self, key: &str) -> Result<bool>;
    /// See [`Shelf::len`].
    ///
    /// # Errors
    /// The store's or the server's error.
    fn len(&self) -> Result<usize>;
    /// True when there is no key.
    ///
    /// # Errors
    /// The store's or the server's error.
    fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
    /// The keys starting with `prefix`, in byte order.
    ///
    /// # Errors
    /// The store's or the server's error.
    fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>>;
    /// See [`Shelf::apply`].
    ///
    /// # Errors
    /// The store's or the server's error; nothing is applied then.
    fn apply(&self, batch: Batch) -> Result<()>;
    /// See [`Shelf::update`].
    ///
    /// # Errors
    /// The store's or the server's error.
    fn update<T, F>(&self, key: &str, f: F) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> Option<T>;
    /// See [`Shelf::sync`].
    ///
    /// # Errors
    /// The store's or the server's error.
    fn sync(&self) -> Result<()>;
}

impl Mapping for Shelf {
    fn insert<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        Ok(Shelf::insert(self, key, value)?)
    }
    fn insert_pickle(&self, key: &str, bytes: &[u8]) -> Result<()> {
        Ok(Shelf::insert_pickle(self, key, bytes)?)
    }
    fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        Ok(Shelf::get(self, key)?)
    }
    fn get_pickle(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(Shelf::get_pickle(self, key)?)
    }
    fn remove(&self, key: &str) -> Result<bool> {
        Ok(Shelf::remove(self, key)?)
    }
    fn contains_key(&self, key: &str) -> Result<bool> {
        Ok(Shelf::contains_key(self, key)?)
    }
    fn len(&self) -> Result<usize> {
        Ok(Shelf::len(self)?)
    }
    fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(Shelf::keys_with_prefix(self, prefix).collect::<pickleshelf::Result<_>>()?)
    }
    fn apply(&self, batch: Batch) -> Result<()> {
        Ok(Shelf::apply(self, batch)?)
    }
    fn update<T, F>(&self, key: &str, f: F) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> Option<T>,
    {
        Ok(Shelf::update(self, key, f)?)
    }
    fn sync(&self) -> Result<()> {
        Ok(Shelf::sync(self)?)
    }
}

impl Mapping for RemoteShelf {
    fn insert<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        RemoteShelf::insert(self, key, value)
    }
    fn insert_pickle(&self, key: &str, bytes: &[u8]) -> Result<()> {
        RemoteShelf::insert_pickle(self, key, bytes)
    }
    fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        RemoteShelf::get(self, key)
    }
    fn get_pickle(&self, key: &str) -> Result<Option<Vec<u8>>> {
        RemoteShelf::get_pickle(self, key)
    }
    fn remove(&self, key: &str) -> Result<bool> {
        RemoteShelf::remove(self, key)
    }
    fn contains_key(&self, key: &str) -> Result<bool> {
        RemoteShelf::contains_key(self, key)
    }
    fn len(&self) -> Result<usize> {
        RemoteShelf::len(self)
    }
    fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        RemoteShelf::keys_with_prefix(self, prefix)
    }
    fn apply(&self, batch: Batch) -> Result<()> {
        RemoteShelf::apply(self, batch)
    }
    fn update<T, F>(&self, key: &str, f: F) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> Option<T>,
    {
        RemoteShelf::update(self, key, f)
    }
    fn sync(&self) -> Result<()> {
        RemoteShelf::sync(self)
    }
}
