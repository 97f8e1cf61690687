//! Server settings: a by-value builder, validated when the server starts.
//!
//! Invariant: a [`Config`] that [`Config::validate`] accepted never lets a socket that
//! is not on loopback serve without a password.

use std::net::SocketAddr;
use std::time::Duration;

use crate::auth::Password;
use crate::error::ServerError;
use crate::parse::Limits;

/// When writes are made durable, and so what a write's reply promises (Redis's
/// `appendfsync`). See `docs/SERVER.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AppendFsync {
    /// A write is replied to once a sync of the store that includes it has finished
    /// (survives power loss). Concurrent and pipelined writes share syncs (group commit).
    Always,
    /// The store is synced every second: a reply comes at once; a power loss or crash of
    /// the machine loses at most the last second or so, a killed server process at most
    /// what the store had not yet committed (written within 200 ms). The default.
    #[default]
    Everysec,
    /// No syncs but the store's own commits (within 200 ms of a write) and the one at
    /// shutdown: a killed server process loses at most 200 ms of writes; a power loss
    /// what was written since the last sync.
    No,
}

impl std::str::FromStr for AppendFsync {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "always" => Ok(AppendFsync::Always),
            "everysec" => Ok(AppendFsync::Everysec),
            "no" => Ok(AppendFsync::No),
            _ => Err(format!("{s:?} is not one of always, everysec, no")),
        }
    }
}

impl std::fmt::Display for AppendFsync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AppendFsync::Always => "always",
            AppendFsync::Everysec => "everysec",
            AppendFsync::No => "no",
        })
    }
}

/// How a server behaves: password, durability, limits and timeouts.
///
/// ```
/// use std::time::Duration;
/// use pickleshelf_server::{AppendFsync, Config};
/// let config = Config::new().appendfsync(AppendFsync::Always).maxclients(100).timeout(Some(Duration::from_secs(300)));
/// assert_eq!(config.get_maxclients(), 100);
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct Config {
    pub(crate) password: Option<Password>,
    pub(crate) appendfsync: AppendFsync,
    pub(crate) maxclients: usize,
    pub(crate) timeout: Option<Duration>,
    pub(crate) request_timeout: Duration,
    pub(crate) limits: Limits,
    pub(crate) query_buffer_limit: usize,
    pub(crate) threads: usize,
    pub(crate) signals: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            password: None,
            appendfsync: AppendFsync::default(),
            maxclients: 10_000,
            timeout: None,
            request_timeout: Duration::from_secs(30),
            limits: Limits::default(),
            query_buffer_limit: 1 << 30,
            // Half the cores: the store's commit and sync threads, and often the clients,
            // run on the same machine (on 2 cores one worker measured faster than two).
            threads: (std::thread::available_parallelism().map_or(2, usize::from) / 2).max(1),
            signals: false,
        }
    }
}

impl Config {
    /// The defaults: no password (loopback only), `everysec`, 10,000 clients, no idle
    /// timeout, 30 s to send a request, Redis's request limits.
    pub fn new() -> Config {
        Config::default()
    }

    /// The password clients must give (`AUTH`); without one the server refuses to listen
    /// on anything but loopback.
    pub fn password(mut self, password: Option<Password>) -> Self {
        self.password = password;
        self
    }

    /// When writes are made durable (default [`AppendFsync::Everysec`]).
    pub fn appendfsync(mut self, mode: AppendFsync) -> Self {
        self.appendfsync = mode;
        self
    }

    /// Most connections served at once (default 10,000); more are told
    /// `ERR max number of clients reached` and closed.
    pub fn maxclients(mut self, n: usize) -> Self {
        self.maxclients = n;
        self
    }

    /// The most connections served at once.
    pub fn get_maxclients(&self) -> usize {
        self.maxclients
    }

    /// Closes a connection idle (between requests) for this long (default: never, as
    /// Redis's `timeout 0`).
    pub fn timeout(mut self, idle: Option<Duration>) -> Self {
        self.timeout = idle;
        self
    }

    /// The most time a request may take to arrive, from its first byte — and a new
    /// connection to send its first request — and a reply to be taken by the client
    /// (default 30 s). Slow senders (one byte a second) are closed when it runs out.
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.request_timeout = t;
        self
    }

    /// Request size limits (default: Redis's).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Most bytes a connection may have buffered of requests not yet run (default 1 GiB,
    /// Redis's `client-query-buffer-limit`; 1 MiB before authentication).
    pub fn query_buffer_limit(mut self, bytes: usize) -> Self {
        self.query_buffer_limit = bytes;
        self
    }

    /// Worker threads serving connections (default: half the cores, at least one).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }

    /// Stop cleanly on SIGTERM and SIGINT (default false: an application that serves its
    /// store handles its own signals).
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.signals = on;
        self
    }

    /// Checks the settings against the addresses to listen on.
    ///
    /// # Errors
    /// [`ServerError::Config`] for a TCP address that is not loopback without a
    /// password, or a zero limit.
    pub fn validate(&self, addrs: &[SocketAddr]) -> Result<(), ServerError> {
        if self.password.is_none()
            && let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback())
        {
            return Err(ServerError::Config(format!(
                "refusing to listen on {a}, which is not a loopback address, without a password \
                 (give one with --requirepass-file)"
            )));
        }
        if self.maxclients == 0 || self.threads == 0 {
            return Err(ServerError::Config("maxclients and threads must be at least 1".into()));
        }
        if self.limits.max_inline < 16 || self.limits.max_bulk == 0 {
            return Err(ServerError::Config("request limits are too small".into()));
        }
        Ok(())
    }
}
