//! One connection: read requests, run them, send the replies.
//!
//! Invariants:
//! - Replies are sent only when no further complete request is buffered (so a
//!   pipeline's replies go out together), or when they pass [`OUT_HIGH_WATER`] bytes.
//! - With `appendfsync always`, replies to writes are sent only after a sync that
//!   includes them.
//! - A connection holds no input buffer while idle; what it buffers is bytes that
//!   arrived, at most the query buffer limit (1 MiB before authentication).
//! - A request must arrive whole within the request timeout of its first byte (a new
//!   connection's first request within that of the connection), replies must be taken
//!   within it, and an idle connection lasts at most the idle timeout: a slow or silent
//!   peer costs a task and a socket, never a worker.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::commands::{self, Flow, Session};
use crate::parse::Parser;
use crate::reply::Reply;
use crate::server::Shared;

/// Replies buffered past this many bytes are sent before the next request is run.
pub(crate) const OUT_HIGH_WATER: usize = 1 << 20;
/// Bytes read at a time.
const READ_CHUNK: usize = 16 << 10;
/// How long, and how many bytes, a refused connection's input is drained before close.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 8 << 20;
/// Most bytes buffered before authentication (Redis's figure).
const UNAUTH_QUERY_LIMIT: usize = 1 << 20;

/// A stream socket the server reads and writes (TCP or Unix).
pub(crate) trait Socket: AsyncWrite + Unpin + Send + 'static {
    fn readable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send;
    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize>;
    fn try_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R>;

    /// Reads what is there. A read that does not fill the room offered drained the
    /// socket: its readiness is cleared at once (race-free: the runtime keeps it when an
    /// event came meanwhile), which saves the read that would only say `WouldBlock`.
    fn read_some(&self, buf: &mut BytesMut) -> io::Result<usize> {
        let room = buf.capacity() - buf.len();
        let mut got = 0;
        match self.try_io(|| match self.try_read_buf(buf) {
            Ok(n) if n > 0 && n < room => {
                got = n;
                Err(io::ErrorKind::WouldBlock.into())
            }
            other => other,
        }) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
            other => other,
        }
    }
}

impl Socket for tokio::net::TcpStream {
    fn readable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send {
        tokio::net::TcpStream::readable(self)
    }
    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        tokio::net::TcpStream::try_read_buf(self, buf)
    }
    fn try_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        tokio::net::TcpStream::try_io(self, tokio::io::Interest::READABLE, f)
    }
}

#[cfg(unix)]
impl Socket for tokio::net::UnixStream {
    fn readable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send {
        tokio::net::UnixStream::readable(self)
    }
    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        tokio::net::UnixStream::try_read_buf(self, buf)
    }
    fn try_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        tokio::net::UnixStream::try_io(self, tokio::io::Interest::READABLE, f)
    }
}

/// Counts a connection while it lives.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Takes a connection slot, or refuses the connection when all are taken.
fn admit(sh: &Arc<Shared>, peer: &str, refuse: impl FnOnce(&[u8])) -> Option<Slot> {
    sh.stats.connections.fetch_add(1, Ordering::Relaxed);
    let max = sh.config.maxclients;
    if sh.clients.fetch_add(1, Ordering::AcqRel) >= max {
        sh.clients.fetch_sub(1, Ordering::AcqRel);
        sh.stats.rejected.fetch_add(1, Ordering::Relaxed);
        refuse(b"-ERR max number of clients reached\r\n");
        sh.log_refusal(format_args!("refused connection from {peer}: max number of clients ({max}) reached"));
        return None;
    }
    Some(Slot(Arc::clone(sh)))
}

pub(crate) async fn accept_tcp(sh: Arc<Shared>, listener: tokio::net::TcpListener) {
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors, say: wait a little rather than spin.
                log::error!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let peer = peer.to_string();
        let Some(slot) = admit(&sh, &peer, |msg| {
            let _ = sock.try_write(msg);
        }) else {
            continue;
        };
        let _ = sock.set_nodelay(true);
        tokio::spawn(serve(Arc::clone(&sh), sock, peer, slot));
    }
}

#[cfg(unix)]
pub(crate) async fn accept_unix(sh: Arc<Shared>, listener: tokio::net::UnixListener) {
    loop {
        let sock = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                log::error!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = admit(&sh, "unix socket", |msg| {
            let _ = sock.try_write(msg);
        }) else {
            continue;
        };
        tokio::spawn(serve(Arc::clone(&sh), sock, "unix socket".to_owned(), slot));
    }
}

/// Sends `out` (after the sync its writes need), then clears it. False when the
/// connection is to close.
async fn flush<S: Socket>(sh: &Shared, sess: &mut Session, sock: &mut S, out: &mut Vec<u8>) -> bool {
    if sess.wrote && sh.config.appendfsync == crate::AppendFsync::Always {
        sess.wrote = false;
        if !sh.syncer.wait_durable().await {
            log::error!("client {}: closing: its writes could not be made durable (sync failed)", sess.addr);
            return false;
        }
    }
    sess.wrote = false;
    let t = sh.config.request_timeout;
    match tokio::time::timeout(t, sock.write_all(out)).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return false,
        Err(_) => {
            sh.stats.timeouts.fetch_add(1, Ordering::Relaxed);
            log::warn!("client {}: closing: did not take its replies within {t:?}", sess.addr);
            return false;
        }
    }
    out.clear();
    if out.capacity() > OUT_HIGH_WATER {
        *out = Vec::new();
    }
    true
}

/// After a refused request: reads and drops what the peer still sends, for a moment, so
/// that closing with unread input (which resets the connection) does not destroy the
/// error reply before the peer reads it.
async fn linger<S: Socket>(sock: &S) {
    let mut scratch = BytesMut::new();
    let mut left = LINGER_BYTES;
    let _ = tokio::time::timeout(LINGER_TIME, async {
        while left > 0 {
            if sock.readable().await.is_err() {
                return;
            }
            scratch.clear();
            scratch.reserve(READ_CHUNK);
            match sock.try_read_buf(&mut scratch) {
                Ok(0) => return,
                Ok(n) => left = left.saturating_sub(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
}

async fn serve<S: Socket>(sh: Arc<Shared>, mut sock: S, addr: String, slot: Slot) {
    let _slot = slot;
    let mut stop = sh.stop.subscribe();
    let mut sess = Session {
        id: sh.next_id.fetch_add(1, Ordering::Relaxed),
        addr,
        resp3: false,
        authenticated: sh.config.password.is_none(),
        name: None,
        multi: None,
        multi_failed: false,
        queued_bytes: 0,
        watched: Vec::new(),
        wrote: false,
    };
    let mut parser = Parser::new(sh.config.limits.clone());
    let mut inbuf = BytesMut::new();
    let mut out = Vec::new();
    // When the request being waited for started (a new connection: when it came).
    let mut request_started = Some(Instant::now());
    loop {
        loop {
            match parser.next(&mut inbuf, sess.authenticated) {
                Ok(Some(args)) => {
                    request_started = None;
                    match commands::execute(&sh, &mut sess, args, &mut out) {
                        Flow::Continue => {}
                        Flow::Blocking(job) => {
                            let resp3 = sess.resp3;
                            match tokio::task::spawn_blocking(move || job(resp3)).await {
                                Ok(bytes) => out.extend_from_slice(&bytes),
                                Err(e) => {
                                    log::error!("client {}: a command failed: {e}", sess.addr);
                                    Reply { out: &mut out, resp3 }.error("ERR internal error (see the server's log)");
                                }
                            }
                            sess.wrote = true;
                        }
                        Flow::Close => {
                            flush(&sh, &mut sess, &mut sock, &mut out).await;
                            let _ = sock.shutdown().await;
                            return;
                        }
                        Flow::Shutdown => {
                            sh.stop.send_replace(true);
                            return;
                        }
                    }
                    if out.len() >= OUT_HIGH_WATER && !flush(&sh, &mut sess, &mut sock, &mut out).await {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    sh.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                    log::warn!("client {}: protocol error ({e}); closing the connection", sess.addr);
                    Reply { out: &mut out, resp3: sess.resp3 }.error(&format!("ERR {e}"));
                    flush(&sh, &mut sess, &mut sock, &mut out).await;
                    let _ = sock.shutdown().await;
                    linger(&sock).await;
                    return;
                }
            }
        }
        if !out.is_empty() && !flush(&sh, &mut sess, &mut sock, &mut out).await {
            return;
        }
        if inbuf.is_empty() {
            // Idle connections hold no buffer.
            if inbuf.capacity() > READ_CHUNK * 4 || parser.is_idle() {
                inbuf = BytesMut::new();
            }
        } else if request_started.is_none() {
            request_started = Some(Instant::now());
        }
        if request_started.is_none() && !parser.is_idle() {
            request_started = Some(Instant::now());
        }
        let deadline = match request_started {
            Some(t) => Some(t + sh.config.request_timeout),
            None => sh.config.timeout.map(|d| Instant::now() + d),
        };
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = sock.readable() => if r.is_err() { return },
            () = sleep => {
                sh.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                let why = match (request_started, sh.config.timeout) {
                    (Some(_), _) | (None, None) => {
                        format!("a request did not arrive whole within the request timeout ({:?})", sh.config.request_timeout)
                    }
                    (None, Some(t)) => format!("idle longer than the idle timeout ({t:?})"),
                };
                sh.log_refusal(format_args!("client {}: closing: {why}", sess.addr));
                return;
            }
            _ = stop.wait_for(|s| *s) => return,
        }
        if inbuf.capacity() - inbuf.len() < READ_CHUNK {
            inbuf.reserve(READ_CHUNK);
        }
        match sock.read_some(&mut inbuf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        }
        let queued = if sess.multi.is_some() { sess.queued_bytes } else { 0 };
        let held = inbuf.len() + parser.held_bytes() + queued;
        let limit = if sess.authenticated { sh.config.query_buffer_limit } else { UNAUTH_QUERY_LIMIT };
        if held > limit {
            log::warn!("client {}: closing: {held} bytes of requests buffered, over the limit of {limit}", sess.addr);
            return;
        }
    }
}
