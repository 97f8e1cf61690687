//! What can go wrong talking to a remote. Every message names the remote object or
//! checkpoint concerned, and none carries a credential: texts that come from the object
//! storage client pass through [`scrub`] first.

use std::fmt;

/// A failure of a remote operation (the store's `Error::Remote` holds it).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The remote's URL is not of the form `s3://bucket/prefix`.
    #[error("bad remote url {url:?}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The object storage client could not be configured (from the environment or the
    /// options given).
    #[error("remote {url}: configuration: {reason}")]
    Config {
        /// The remote's URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The bucket does not exist, or cannot be seen with the credentials given.
    #[error("remote {url}: bucket {bucket:?} does not exist (or is not visible with these credentials)")]
    NoBucket {
        /// The remote's URL.
        url: String,
        /// The bucket's name.
        bucket: String,
    },
    /// The object storage refused a request: missing or wrong credentials, or no
    /// permission.
    #[error(
        "remote {url}: {op} of {path} refused: access denied (check the credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN): {detail}"
    )]
    Denied {
        /// The remote's URL.
        url: String,
        /// The request (`get`, `put`, `head`, `list`).
        op: &'static str,
        /// The object's path in the bucket.
        path: String,
        /// The storage's answer (credentials removed).
        detail: String,
    },
    /// A request failed (network, server error, unexpected answer), after the client's
    /// retries.
    #[error("remote {url}: {op} of {path} failed: {detail}")]
    Request {
        /// The remote's URL.
        url: String,
        /// The request (`get`, `put`, `head`, `list`).
        op: &'static str,
        /// The object's path in the bucket.
        path: String,
        /// What went wrong (credentials removed).
        detail: String,
    },
    /// The remote has no checkpoint of this name.
    #[error("remote {url}: no checkpoint {name:?}")]
    NoCheckpoint {
        /// The remote's URL.
        url: String,
        /// The checkpoint's name.
        name: String,
    },
    /// The remote already has a checkpoint of this name, with other contents.
    #[error(
        "remote {url}: checkpoint {name:?} already exists with other contents (checkpoint names on a remote are never reused)"
    )]
    CheckpointExists {
        /// The remote's URL.
        url: String,
        /// The checkpoint's name.
        name: String,
    },
    /// A downloaded object is not what its name says: its bytes do not decode, or do
    /// not hash to its digest. It is never returned.
    #[error("remote {url}: object {digest} is corrupted or substituted: {reason}")]
    CorruptedObject {
        /// The remote's URL.
        url: String,
        /// The digest the object is stored under (lowercase hex).
        digest: String,
        /// What check failed.
        reason: String,
    },
    /// A checkpoint manifest cannot be read: truncated, malformed, or its checksum fails.
    #[error("remote {url}: manifest of checkpoint {name:?} is not valid: {reason}")]
    BadManifest {
        /// The remote's URL.
        url: String,
        /// The checkpoint's name.
        name: String,
        /// What is wrong, with the byte offset where it applies.
        reason: String,
    },
    /// A manifest does not authenticate with the auth key given: a wrong key, a manifest
    /// written with no key (or with a key where none was given), or one a writer without
    /// the key made or changed.
    #[error("remote {url}: manifest of checkpoint {name:?} does not authenticate: {reason}")]
    WrongKey {
        /// The remote's URL.
        url: String,
        /// The checkpoint's name.
        name: String,
        /// Which side has which key.
        reason: &'static str,
    },
    /// The store and the remote handle were given different auth keys (or only one has
    /// one): their digests differ, so the store's objects cannot be named on this remote.
    #[error("remote {url}: the store and the remote use different auth keys (give the remote the store's key)")]
    KeyMismatch {
        /// The remote's URL.
        url: String,
    },
    /// `pull` was asked to create a store at a path that already exists.
    #[error("cannot pull into {path}: it already exists (pull creates a new store)")]
    TargetExists {
        /// The path given.
        path: String,
    },
    /// The failure injected by `RemoteBuilder::fail_after_requests`.
    #[error("remote {url}: injected failure after {after} requests")]
    Injected {
        /// The remote's URL.
        url: String,
        /// The number of requests let through.
        after: u64,
    },
    /// The remote handle's runtime could not be started.
    #[error("remote {url}: cannot start the i/o runtime: {source}")]
    Runtime {
        /// The remote's URL.
        url: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Removes every credential the environment holds from `text`, and the access key id
/// that S3 error bodies echo (`<AWSAccessKeyId>…</AWSAccessKeyId>`).
pub(crate) fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(s.as_str(), "<redacted>");
    }
    for tag in ["AWSAccessKeyId", "StringToSign", "CanonicalRequest", "SignatureProvided", "StringToSignBytes"] {
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        let mut from = 0;
        while let Some(i) = out[from..].find(&open).map(|i| i + from) {
            let start = i + open.len();
            match out[start..].find(&close) {
                Some(j) => {
                    out.replace_range(start..start + j, "<redacted>");
                    from = start + "<redacted>".len() + close.len();
                }
                None => {
                    out.truncate(start);
                    out.push_str("<redacted>");
                    break;
                }
            }
        }
    }
    out
}

/// A display wrapper for the error chain of an object storage error, scrubbed.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            let text = s.to_string();
            write!(f, ": {text}")?;
            source = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_secrets_and_echoed_key_ids() {
        let body = "denied <AWSAccessKeyId>AKIAEXAMPLE</AWSAccessKeyId> sig s3cr3tvalue <StringToSign>abc";
        let out = scrub(body, &["s3cr3tvalue".to_owned()]);
        assert!(!out.contains("AKIAEXAMPLE") && !out.contains("s3cr3tvalue") && !out.contains("abc"), "{out}");
        assert!(out.starts_with("denied <AWSAccessKeyId><redacted></AWSAccessKeyId>"), "{out}");
    }
}
