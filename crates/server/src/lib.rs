//! # pickleshelf-server
//!
//! `pickleshelf serve`: one [`pickleshelf`] store served over the Redis protocol (RESP2
//! and RESP3), so that many processes use it at once with clients they already have —
//! `redis-cli`, `redis-py`, `redis-rs`, `redis-benchmark` — and [`RemoteShelf`], a
//! client with the store's own mapping API ([`Mapping`]).
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use pickleshelf::Shelf;
//! use pickleshelf_server::{Config, RemoteShelf, Server};
//! let shelf = Shelf::open(dir.path().join("state.db"))?;
//! let listener = std::net::TcpListener::bind("127.0.0.1:0")?; // loopback, any port
//! let url = format!("redis://{}", listener.local_addr()?);
//! let running = Server::new(shelf, Config::new()).listen(listener).spawn()?;
//!
//! let remote = RemoteShelf::connect(&url)?;      // another process, typically
//! remote.insert("user:1", &("Kim", 42))?;
//! assert_eq!(remote.get::<(String, i64)>("user:1")?, Some(("Kim".into(), 42)));
//! running.stop()?;                                // closes connections, syncs the store
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! - Values: `GET` returns byte for byte what `SET` stored. A value that is a valid
//!   pickle is stored as that pickle (Python and Rust see the object); other bytes are
//!   stored wrapped as a Python `bytes` object ([`values`]). Keys are UTF-8.
//! - Durability: [`AppendFsync`] — `always` replies after the (group) sync that includes
//!   a write; `everysec` (default) syncs every second; `no` leaves it to the store.
//! - Security: loopback only unless a password is set (from a file); constant-time
//!   comparison; refused connections are logged.
//! - Limits: Redis's request limits ([`parse::Limits`]), a connection cap, idle and
//!   request timeouts ([`Config`]).
//!
//! Not here yet: per-key expiry (`EXPIRE`, `SET EX`, ...: refused with a clear error),
//! other Redis data types, pub/sub, scripting, replication. `docs/SERVER.md` has the
//! whole picture.
#![deny(unsafe_code, missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod auth;
pub mod cli;
mod commands;
mod config;
mod conn;
mod db;
mod durability;
mod error;
pub mod glob;
mod info;
pub mod parse;
mod remote;
mod reply;
mod scans;
mod server;
pub mod values;

pub use auth::Password;
pub use config::{AppendFsync, Config};
pub use error::{Result, ServerError};
pub use remote::{Mapping, RemoteShelf, Resp};
pub use server::{Listener, Running, Server, Stopper, serve};

/// The Redis version the server reports (`HELLO`, `INFO`): the command set it follows.
pub const REDIS_VERSION: &str = "7.2.0";
