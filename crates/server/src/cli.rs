//! `pickleshelf serve`: its arguments and entry point, kept here so that the command-line
//! tool wires it in one line (`Command::Serve(args) => pickleshelf_server::cli::run(args)`).
//!
//! Invariant: the password only ever comes from a file; the store is opened here, served
//! until `SHUTDOWN`, SIGTERM or SIGINT, and closed (synced) before `run` returns.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use pickleshelf::Shelf;

use crate::auth::Password;
use crate::config::{AppendFsync, Config};
use crate::parse::Limits;
use crate::server::{Listener, Server};

/// Serve a store over the Redis protocol (RESP2 and RESP3), so that redis-cli, redis-py,
/// redis-rs and other processes use it at once.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The store's directory (created if missing).
    pub store: PathBuf,
    /// TCP address to listen on; only loopback unless a password is set. Give
    /// `--bind none` to listen on the Unix socket alone.
    #[arg(long, default_value = "127.0.0.1:6379")]
    pub bind: String,
    /// Also (or only, with `--bind none`) listen on this Unix domain socket.
    #[arg(long, value_name = "PATH")]
    pub unix: Option<PathBuf>,
    /// File holding the password clients must give (AUTH); never on the command line.
    #[arg(long, value_name = "FILE")]
    pub requirepass_file: Option<PathBuf>,
    /// When writes are made durable: `always` (reply after the sync that includes
    /// them), `everysec` (sync every second), `no` (the store's own commits).
    #[arg(long, default_value = "everysec")]
    pub appendfsync: AppendFsync,
    /// Most connections at once.
    #[arg(long, default_value_t = 10_000)]
    pub maxclients: usize,
    /// Close connections idle this many seconds (0: never).
    #[arg(long, default_value_t = 0, value_name = "SECS")]
    pub timeout: u64,
    /// Seconds a request may take to arrive from its first byte (and a reply to be read).
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub request_timeout: u64,
    /// Longest bulk string, in bytes (Redis's proto-max-bulk-len).
    #[arg(long, default_value_t = 512 << 20, value_name = "BYTES")]
    pub proto_max_bulk_len: u64,
    /// Most bytes of requests a connection may have buffered.
    #[arg(long, default_value_t = 1 << 30, value_name = "BYTES")]
    pub client_query_buffer_limit: usize,
    /// Threads serving connections (default: half the cores, at least one).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Log only warnings and errors.
    #[arg(long, short)]
    pub quiet: bool,
}

/// A logger writing `LEVEL message` lines to standard error.
struct StderrLog {
    level: log::LevelFilter,
}

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.level && m.target().starts_with("pickleshelf")
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            let secs =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
            eprintln!("{secs:.3} {} {}", r.level(), r.args());
        }
    }
    fn flush(&self) {}
}

/// Runs `pickleshelf serve`: opens the store, serves it until `SHUTDOWN`, SIGTERM or
/// SIGINT, and closes it.
///
/// # Errors
/// Options that cannot be used (a non-loopback address without a password, a password
/// file that cannot be read), a store that cannot be opened, a socket that cannot be
/// bound, or a final sync that fails.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let level = if args.quiet { log::LevelFilter::Warn } else { log::LevelFilter::Info };
    if log::set_boxed_logger(Box::new(StderrLog { level })).is_ok() {
        log::set_max_level(level);
    }
    let password = match &args.requirepass_file {
        Some(f) => Some(Password::from_file(f)?),
        None => None,
    };
    let mut config = Config::new()
        .password(password)
        .appendfsync(args.appendfsync)
        .maxclients(args.maxclients)
        .timeout((args.timeout > 0).then(|| Duration::from_secs(args.timeout)))
        .request_timeout(Duration::from_secs(args.request_timeout.max(1)))
        .limits(Limits { max_bulk: args.proto_max_bulk_len, ..Limits::default() })
        .query_buffer_limit(args.client_query_buffer_limit)
        .handle_signals(true);
    if let Some(t) = args.threads {
        config = config.threads(t);
    }
    let mut listeners = Vec::new();
    if args.bind != "none" {
        let addr: SocketAddr = args
            .bind
            .parse()
            .with_context(|| format!("--bind {:?} is not an address like 127.0.0.1:6379", args.bind))?;
        // Checked before binding, so a refused address is never listened on.
        config.validate(&[addr])?;
        let l = std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
        listeners.push(Listener::from(l));
    }
    if let Some(path) = &args.unix {
        #[cfg(unix)]
        {
            if path.exists() {
                // A socket left by a server that did not stop cleanly; anything else is kept.
                use std::os::unix::fs::FileTypeExt;
                if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                    std::fs::remove_file(path)
                        .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
                }
            }
            let l = std::os::unix::net::UnixListener::bind(path)
                .with_context(|| format!("cannot listen on unix socket {}", path.display()))?;
            listeners.push(Listener::Unix(l, Some(path.clone())));
        }
        #[cfg(not(unix))]
        anyhow::bail!("--unix {}: unix sockets are not supported on this system", path.display());
    }
    if listeners.is_empty() {
        anyhow::bail!("nothing to listen on: give --bind ADDRESS or --unix PATH");
    }
    let shelf = Shelf::open(&args.store).with_context(|| format!("cannot open store {}", args.store.display()))?;
    let mut server = Server::new(shelf, config);
    for l in listeners {
        server = server.listen(l);
    }
    server.run()?;
    Ok(())
}
