//! The server's password (`requirepass`), read from a file and compared in constant time.
//!
//! Invariant: the password itself is not kept: only its blake3 hash, and a candidate is
//! compared by hashing it and comparing the hashes with `blake3::Hash`'s constant-time
//! equality, so neither the content nor the length of the password leaks through timing.

use std::path::Path;

use crate::error::ServerError;

/// A password clients must give (`AUTH`, `HELLO ... AUTH`) before any other command.
#[derive(Clone)]
pub struct Password {
    hash: blake3::Hash,
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

impl Password {
    /// A password from its bytes.
    ///
    /// # Errors
    /// [`ServerError::Config`] for an empty password.
    pub fn new(password: impl AsRef<[u8]>) -> Result<Password, ServerError> {
        let p = password.as_ref();
        if p.is_empty() {
            return Err(ServerError::Config("the password is empty".into()));
        }
        Ok(Password { hash: blake3::hash(p) })
    }

    /// The password in file `path`: its whole content, less one trailing newline (`\n` or
    /// `\r\n`). Passwords are never taken from the command line, where other users of the
    /// machine can read them.
    ///
    /// # Errors
    /// [`ServerError::Io`] when the file cannot be read, [`ServerError::Config`] when it
    /// holds no password.
    pub fn from_file(path: &Path) -> Result<Password, ServerError> {
        let bytes =
            std::fs::read(path).map_err(|source| ServerError::Io { what: path.display().to_string(), source })?;
        let trimmed = bytes.strip_suffix(b"\n").map(|b| b.strip_suffix(b"\r").unwrap_or(b)).unwrap_or(&bytes);
        Password::new(trimmed)
            .map_err(|_| ServerError::Config(format!("password file {} holds no password", path.display())))
    }

    /// True when `candidate` is the password (constant time).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        blake3::hash(candidate) == self.hash
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn file_and_compare() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\n").unwrap();
        let p = Password::from_file(&f).unwrap();
        assert!(p.matches(b"s3cret"));
        assert!(!p.matches(b"s3cret\n"));
        assert!(!p.matches(b""));
        std::fs::write(&f, "\n").unwrap();
        assert!(Password::from_file(&f).unwrap_err().to_string().contains("holds no password"));
        assert!(Password::from_file(&dir.path().join("missing")).is_err());
    }
}
