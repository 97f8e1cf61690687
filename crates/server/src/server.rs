//! The server: listeners, the connection cap, the runtime, and a clean stop.
//!
//! Invariant: at most `maxclients` connections are served at once (others are told so
//! and closed); a stop (`SHUTDOWN`, [`Stopper::stop`], SIGTERM) stops accepting, ends
//! every connection after the reply it is sending, stops the sync thread and syncs the
//! store once more before [`Server::run`] returns.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pickleshelf::Shelf;
use tokio::sync::watch;

use crate::config::Config;
use crate::conn;
use crate::durability::Syncer;
use crate::error::{Result, ServerError};
use crate::scans::Cursors;

/// A socket to serve: TCP or (on Unix) a Unix domain socket.
#[derive(Debug)]
#[non_exhaustive]
pub enum Listener {
    /// A TCP listener (`--bind`).
    Tcp(std::net::TcpListener),
    /// A Unix domain socket listener (`--unix`) and the path to remove at the end.
    #[cfg(unix)]
    Unix(std::os::unix::net::UnixListener, Option<PathBuf>),
}

impl From<std::net::TcpListener> for Listener {
    fn from(l: std::net::TcpListener) -> Listener {
        Listener::Tcp(l)
    }
}

#[cfg(unix)]
impl From<std::os::unix::net::UnixListener> for Listener {
    fn from(l: std::os::unix::net::UnixListener) -> Listener {
        Listener::Unix(l, None)
    }
}

/// Counters reported by `INFO stats`.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) connections: AtomicU64,
    pub(crate) commands: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) auth_failures: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
    pub(crate) timeouts: AtomicU64,
}

impl Stats {
    pub(crate) fn reset(&self) {
        for c in [
            &self.connections,
            &self.commands,
            &self.rejected,
            &self.hits,
            &self.misses,
            &self.auth_failures,
            &self.protocol_errors,
            &self.timeouts,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) shelf: Shelf,
    pub(crate) config: Config,
    /// Held by every client write, and by `EXEC` throughout.
    pub(crate) write_lock: Mutex<()>,
    pub(crate) syncer: Arc<Syncer>,
    pub(crate) stats: Stats,
    pub(crate) clients: AtomicUsize,
    pub(crate) next_id: AtomicU64,
    pub(crate) started: Instant,
    pub(crate) cursors: Mutex<Cursors>,
    pub(crate) stop: Arc<watch::Sender<bool>>,
    pub(crate) port: u16,
    /// The last second a refused connection was logged, and how many were not.
    pub(crate) refusal_log: Mutex<(u64, u64)>,
}

impl Shared {
    /// Logs a refused connection, at most one line a second (with how many were not
    /// logged).
    pub(crate) fn log_refusal(&self, what: std::fmt::Arguments<'_>) {
        let now = self.started.elapsed().as_secs() + 1;
        let mut g = self.refusal_log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if g.0 == now {
            g.1 += 1;
            return;
        }
        let skipped = std::mem::take(&mut g.1);
        g.0 = now;
        drop(g);
        if skipped > 0 {
            log::warn!("{what} ({skipped} more refused in the last second, not logged)");
        } else {
            log::warn!("{what}");
        }
    }
}

/// Stops a running server from anywhere (another thread, a signal handler).
#[derive(Clone, Debug)]
pub struct Stopper(Arc<watch::Sender<bool>>);

impl Stopper {
    /// Asks the server to stop; [`Server::run`] returns once it has.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

/// A server of one store on one or more sockets.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use pickleshelf::Shelf;
/// use pickleshelf_server::{Config, Server};
/// let shelf = Shelf::open(dir.path().join("state.db"))?;
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let addr = listener.local_addr()?;
/// let running = Server::new(shelf, Config::new()).listen(listener).spawn()?;
/// let remote = pickleshelf_server::RemoteShelf::connect(&format!("redis://{addr}"))?;
/// remote.insert("answer", &42)?;
/// assert_eq!(remote.get::<i64>("answer")?, Some(42));
/// running.stop()?; // syncs the store
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use]
pub struct Server {
    shelf: Shelf,
    config: Config,
    listeners: Vec<Listener>,
    stop: Arc<watch::Sender<bool>>,
}

/// A server running on a thread of its own (from [`Server::spawn`]).
#[derive(Debug)]
pub struct Running {
    thread: std::thread::JoinHandle<Result<()>>,
    stopper: Stopper,
}

impl Running {
    /// A handle that stops the server.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Stops the server and waits until it has (store synced).
    ///
    /// # Errors
    /// What [`Server::run`] returned.
    pub fn stop(self) -> Result<()> {
        self.stopper.stop();
        self.join()
    }

    /// Waits until the server stops by itself (`SHUTDOWN`).
    ///
    /// # Errors
    /// What [`Server::run`] returned.
    pub fn join(self) -> Result<()> {
        self.thread.join().map_err(|_| ServerError::Config("the server thread panicked".into()))?
    }
}

/// Serves `shelf` on `listener` until a client sends `SHUTDOWN` (or SIGTERM when
/// [`Config::handle_signals`] is on): the library entry point for an application that
/// serves the store it has open. Blocks; runs its own tokio runtime.
///
/// # Errors
/// As [`Server::run`].
pub fn serve(shelf: Shelf, listener: impl Into<Listener>, config: Config) -> Result<()> {
    Server::new(shelf, config).listen(listener).run()
}

impl Server {
    /// A server of `shelf` (its clones share the store: the application can go on using
    /// its own handle).
    pub fn new(shelf: Shelf, config: Config) -> Server {
        Server { shelf, config, listeners: Vec::new(), stop: Arc::new(watch::channel(false).0) }
    }

    /// Adds a socket to serve.
    pub fn listen(mut self, listener: impl Into<Listener>) -> Server {
        self.listeners.push(listener.into());
        self
    }

    /// A handle that stops the server once it runs.
    pub fn stopper(&self) -> Stopper {
        Stopper(Arc::clone(&self.stop))
    }

    /// Runs the server on a thread of its own.
    ///
    /// # Errors
    /// [`ServerError::Config`] as for [`Server::run`] (checked before the thread starts);
    /// [`ServerError::Io`] when the thread cannot start.
    pub fn spawn(self) -> Result<Running> {
        self.config.validate(&self.tcp_addrs()?)?;
        let stopper = self.stopper();
        let thread = std::thread::Builder::new()
            .name("pickleshelf-server".into())
            .spawn(move || self.run())
            .map_err(|source| ServerError::Io { what: "the server thread".into(), source })?;
        Ok(Running { thread, stopper })
    }

    fn tcp_addrs(&self) -> Result<Vec<SocketAddr>> {
        let mut out = Vec::new();
        for l in &self.listeners {
            if let Listener::Tcp(t) = l {
                out.push(t.local_addr().map_err(|source| ServerError::Io { what: "a listener".into(), source })?);
            }
        }
        Ok(out)
    }

    /// Serves until stopped, then syncs the store.
    ///
    /// # Errors
    /// [`ServerError::Config`] for no listener, a non-loopback TCP address without a
    /// password, or bad limits; [`ServerError::Io`] when the runtime or a socket fails;
    /// [`ServerError::Store`] when the final sync fails.
    pub fn run(self) -> Result<()> {
        let addrs = self.tcp_addrs()?;
        self.config.validate(&addrs)?;
        if self.listeners.is_empty() {
            return Err(ServerError::Config("no socket to listen on".into()));
        }
        let maxclients = fit_open_files(self.config.maxclients, self.listeners.len());
        let mut config = self.config;
        config.maxclients = maxclients;
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| ServerError::Io { what, source }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.threads)
            .thread_name("pickleshelf-conn")
            .enable_all()
            .build()
            .map_err(io("the runtime"))?;
        let (syncer, sync_thread) =
            Syncer::start(self.shelf.clone(), config.appendfsync).map_err(io("the sync thread"))?;
        let shared = Arc::new(Shared {
            shelf: self.shelf,
            config,
            write_lock: Mutex::new(()),
            syncer,
            stats: Stats::default(),
            clients: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            started: Instant::now(),
            cursors: Mutex::new(Cursors::default()),
            stop: Arc::clone(&self.stop),
            port: addrs.first().map_or(0, SocketAddr::port),
            refusal_log: Mutex::new((0, 0)),
        });
        let mut cleanup = Vec::new();
        let result = runtime.block_on(async {
            let mut tasks = Vec::new();
            for l in self.listeners {
                match l {
                    Listener::Tcp(t) => {
                        t.set_nonblocking(true).map_err(io("a TCP listener"))?;
                        let addr = t.local_addr().map_err(io("a TCP listener"))?;
                        let t = tokio::net::TcpListener::from_std(t).map_err(io("a TCP listener"))?;
                        log::info!("serving {} on {addr}", shared.shelf.path().display());
                        tasks.push(tokio::spawn(conn::accept_tcp(Arc::clone(&shared), t)));
                    }
                    #[cfg(unix)]
                    Listener::Unix(u, path) => {
                        u.set_nonblocking(true).map_err(io("a Unix socket"))?;
                        let u = tokio::net::UnixListener::from_std(u).map_err(io("a Unix socket"))?;
                        if let Some(p) = path {
                            log::info!("serving {} on unix socket {}", shared.shelf.path().display(), p.display());
                            cleanup.push(p);
                        }
                        tasks.push(tokio::spawn(conn::accept_unix(Arc::clone(&shared), u)));
                    }
                }
            }
            if shared.config.signals {
                tokio::spawn(signals(Arc::clone(&shared.stop)));
            }
            let mut stop = shared.stop.subscribe();
            let _ = stop.wait_for(|s| *s).await;
            log::info!("stopping: closing {} connections", shared.clients.load(Ordering::Relaxed));
            for t in &tasks {
                t.abort();
            }
            // Connections end after the reply they are sending.
            let deadline = Instant::now() + Duration::from_secs(5);
            while shared.clients.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok::<(), ServerError>(())
        });
        shared.syncer.stop();
        if let Some(t) = sync_thread {
            let _ = t.join();
        }
        runtime.shutdown_timeout(Duration::from_secs(1));
        for p in cleanup {
            let _ = std::fs::remove_file(p);
        }
        result?;
        shared.shelf.sync()?;
        log::info!("stopped; store synced");
        Ok(())
    }
}

#[cfg(unix)]
async fn signals(stop: Arc<watch::Sender<bool>>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        log::error!("cannot listen for SIGTERM and SIGINT");
        return;
    };
    tokio::select! {
        _ = term.recv() => log::info!("SIGTERM received"),
        _ = int.recv() => log::info!("SIGINT received"),
    }
    stop.send_replace(true);
}

#[cfg(not(unix))]
async fn signals(stop: Arc<watch::Sender<bool>>) {
    if tokio::signal::ctrl_c().await.is_ok() {
        stop.send_replace(true);
    }
}

/// Raises the open-files limit to fit `maxclients` connections (as Redis does), or
/// lowers `maxclients` to what the limit allows.
fn fit_open_files(maxclients: usize, listeners: usize) -> usize {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let reserved = 32 + listeners;
        let want = (maxclients + reserved) as u64;
        let lim = getrlimit(Resource::Nofile);
        let current = lim.current.unwrap_or(u64::MAX);
        if current >= want {
            return maxclients;
        }
        let max = lim.maximum.unwrap_or(u64::MAX);
        let target = want.min(max);
        if setrlimit(Resource::Nofile, Rlimit { current: Some(target), maximum: lim.maximum }).is_ok() && target >= want
        {
            return maxclients;
        }
        let got = getrlimit(Resource::Nofile).current.unwrap_or(current);
        let fit = (got as usize).saturating_sub(reserved).max(1);
        log::warn!("open-files limit {got} fits {fit} clients, not maxclients {maxclients}: serving at most {fit}");
        fit
    }
    #[cfg(not(unix))]
    {
        let _ = listeners;
        maxclients
    }
}
