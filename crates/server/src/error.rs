//! The crate's error type.
//!
//! Invariant: messages are lowercase and name what failed (an address, a path, a key, a
//! server reply).

/// What can go wrong starting or running a server, or talking to one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A setting that cannot be used (e.g. a non-loopback address without a password).
    #[error("invalid server configuration: {0}")]
    Config(String),
    /// A socket, file or thread operation failed.
    #[error("i/o error on {what}: {source}")]
    Io {
        /// What was being done (an address, a path).
        what: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] pickleshelf::Error),
    /// The server replied with an error (client side).
    #[error("server replied with an error: {0}")]
    Reply(String),
    /// The server's reply was not what the protocol allows here (client side).
    #[error("unexpected reply from the server: {0}")]
    Protocol(String),
}

impl From<pickleshelf::pickle::Error> for ServerError {
    /// A value that could not be pickled or unpickled (client side), as the store reports it.
    fn from(e: pickleshelf::pickle::Error) -> Self {
        ServerError::Store(e.into())
    }
}

/// A `Result` with [`ServerError`].
pub type Result<T, E = ServerError> = std::result::Result<T, E>;
