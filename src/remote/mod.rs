//! Checkpoints on S3-compatible object storage (cargo feature `s3`).
//!
//! A [`Remote`] is a bucket and a prefix (`s3://bucket/prefix`) reached through the
//! `object_store` crate, configured from the standard environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT`,
//! `AWS_ALLOW_HTTP`, …, as `AmazonS3Builder::from_env` reads them). Its API is blocking:
//! the handle owns a small current-thread runtime that drives the requests, a bounded
//! number of them in flight at once ([`RemoteBuilder::concurrency`]).
//!
//! [`Shelf::push`](crate::Shelf::push) uploads a checkpoint: each value the remote lacks as
//! the object `objects/<digest>` (content-addressed, created at most once), then the
//! checkpoint's manifest `checkpoints/<name>`, last, with a create-only put.
//! [`Shelf::pull`](crate::Shelf::pull) creates a new store from a checkpoint, verifying
//! every byte it downloads against its digest. The invariant this module keeps: **a
//! remote never names a checkpoint whose objects are missing, and no downloaded byte
//! reaches a store unverified.** Layout and consistency argument: `docs/REMOTE.md`.
//!
//! ```no_run
//! # let dir = tempfile::tempdir().unwrap();
//! use pickleshelf::{Remote, Shelf};
//! let shelf = Shelf::open(dir.path().join("state.db"))?;
//! shelf.insert("weights", &vec![0.5; 10_000])?;
//! shelf.checkpoint("epoch-1")?;
//! let remote = Remote::open("s3://my-bucket/runs/42")?; // credentials from the environment
//! shelf.push(&remote, "epoch-1")?;
//! // On another machine:
//! let copy = Shelf::pull(&remote, "epoch-1", dir.path().join("copy.db"))?;
//! assert_eq!(copy.get::<Vec<f64>>("weights")?.map(|w| w.len()), Some(10_000));
//! # Ok::<(), pickleshelf::Error>(())
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::{Path as ObjectPath, PathPart};
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, RetryConfig};

use crate::blob::{Digest, Hasher};

use crate::remote_error as error;
mod manifest;
mod transfer;

pub use error::RemoteError;
pub use transfer::{PushReport, RemoteCheckpoint};

use error::{Chain, scrub};
use manifest::Sealer;

/// Requests a remote handle lets in flight at once, unless told otherwise.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// Environment variables whose values are credentials: removed from every message.
const SECRET_VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
];

/// Options for a [`Remote`]: the URL, an auth key, storage options beyond the
/// environment, and limits. Validated by [`RemoteBuilder::build`].
pub struct RemoteBuilder {
    url: String,
    auth_key: Option<Vec<u8>>,
    options: Vec<(String, String)>,
    concurrency: usize,
    max_retries: Option<usize>,
    fail_after: Option<u64>,
}

impl fmt::Debug for RemoteBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Option values may be credentials: only their names are shown.
        let names: Vec<&str> = self.options.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("RemoteBuilder")
            .field("url", &self.url)
            .field("auth_key", &self.auth_key.as_ref().map(|_| ".."))
            .field("options", &names)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl RemoteBuilder {
    /// The auth key of the stores this remote serves (at least 16 bytes; the same key
    /// the stores were created with, [`crate::ShelfBuilder::auth_key`]). Objects are then
    /// named by keyed digests and manifests carry a keyed checksum, so that a writer to
    /// the bucket who lacks the key cannot make a store load anything it did not write.
    pub fn auth_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.auth_key = Some(key.into());
        self
    }

    /// Sets a storage option, overriding the environment: any key `AmazonS3ConfigKey`
    /// parses (`aws_endpoint`, `aws_region`, `aws_allow_http`, `aws_access_key_id`,
    /// `aws_secret_access_key`, …). Values are never shown in errors or `Debug` output.
    pub fn option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.push((key.into(), value.into()));
        self
    }

    /// The number of requests in flight at once during a transfer (at least 1; default
    /// [`DEFAULT_CONCURRENCY`]).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// How many times a failed request (a server error, a dropped connection) is retried
    /// with backoff before the operation fails (the storage client's default: 10, within
    /// 3 minutes).
    pub fn max_retries(mut self, n: usize) -> Self {
        self.max_retries = Some(n);
        self
    }

    /// For tests of interrupted transfers: the handle lets `n` requests through and fails
    /// every later one with [`RemoteError::Injected`], as a network cut at that point
    /// would.
    pub fn fail_after_requests(mut self, n: u64) -> Self {
        self.fail_after = Some(n);
        self
    }

    /// Parses the URL, reads the environment and builds the handle. No request is made.
    ///
    /// # Errors
    /// [`RemoteError::Url`] for a URL that is not `s3://bucket[/prefix]`;
    /// [`RemoteError::Config`] for an unknown option, an auth key under 16 bytes, or a
    /// configuration the storage client refuses; [`RemoteError::Runtime`].
    pub fn build(self) -> crate::Result<Remote> {
        let RemoteBuilder { url, auth_key, options, concurrency, max_retries, fail_after } = self;
        let (bucket, root) = parse_url(&url)?;
        let config_err = |reason: String| RemoteError::Config { url: url.clone(), reason };
        let mut secrets: Vec<String> = SECRET_VARS.iter().filter_map(|v| std::env::var(v).ok()).collect();
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&bucket);
        for (key, value) in options {
            let parsed: AmazonS3ConfigKey =
                key.parse().map_err(|_| config_err(format!("unknown storage option {key:?}")))?;
            let lower = key.to_ascii_lowercase();
            if ["key", "secret", "token"].iter().any(|s| lower.contains(s)) {
                secrets.push(value.clone());
            }
            builder = builder.with_config(parsed, value);
        }
        if let Some(n) = max_retries {
            builder = builder.with_retry(RetryConfig { max_retries: n, ..RetryConfig::default() });
        }
        let store = builder.build().map_err(|e| config_err(scrub(&Chain(&e).to_string(), &secrets)))?;
        if let Some(k) = &auth_key
            && k.len() < 16
        {
            return Err(config_err(format!("auth key has {} bytes; at least 16 are needed", k.len())).into());
        }
        // The stores' own derivation of the digest key (`ShelfBuilder::auth_key`).
        let hasher = Hasher::for_auth_key(auth_key.as_deref());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| RemoteError::Runtime { url: url.clone(), source })?;
        Ok(Remote {
            sealer: Sealer::new(auth_key.as_deref()),
            url,
            bucket,
            root,
            store: Box::new(store),
            runtime,
            hasher,
            auth_key,
            concurrency,
            secrets,
            counters: Counters::default(),
            fail_after,
        })
    }
}

/// A bucket and prefix on S3-compatible object storage holding checkpoints (see the
/// [module docs](crate::remote)). `Send + Sync`; its methods block.
pub struct Remote {
    url: String,
    bucket: String,
    root: ObjectPath,
    store: Box<dyn ObjectStore>,
    runtime: tokio::runtime::Runtime,
    hasher: Hasher,
    auth_key: Option<Vec<u8>>,
    sealer: Sealer,
    concurrency: usize,
    secrets: Vec<String>,
    counters: Counters,
    fail_after: Option<u64>,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url)
            .field("keyed", &self.auth_key.is_some())
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

/// What a remote handle has done so far, as [`Remote::stats`] reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteStats {
    /// Requests made (each of the kinds below; a listing counts once however many pages
    /// it takes, a retry of the client's does not count).
    pub requests: u64,
    /// `HEAD` requests (does an object exist).
    pub heads: u64,
    /// `GET` requests, whole or ranged.
    pub gets: u64,
    /// `PUT` requests.
    pub puts: u64,
    /// Listings.
    pub lists: u64,
    /// Objects uploaded (created by this handle).
    pub objects_uploaded: u64,
    /// Objects a push found already there and did not upload.
    pub objects_skipped: u64,
    /// Bytes sent in `PUT` bodies (objects and manifests).
    pub bytes_uploaded: u64,
    /// Bytes received in `GET` bodies.
    pub bytes_downloaded: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    heads: AtomicU64,
    gets: AtomicU64,
    puts: AtomicU64,
    lists: AtomicU64,
    objects_uploaded: AtomicU64,
    objects_skipped: AtomicU64,
    bytes_uploaded: AtomicU64,
    bytes_downloaded: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Parses `s3://bucket[/prefix]` into the bucket and the prefix as an object path.
fn parse_url(url: &str) -> Result<(String, ObjectPath), RemoteError> {
    let bad = |reason: &str| RemoteError::Url { url: url.to_owned(), reason: reason.to_owned() };
    let rest = url.strip_prefix("s3://").ok_or_else(|| bad("it must start with s3:// (s3://bucket/prefix)"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad("no bucket name"));
    }
    let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    if bucket.len() < 3 || bucket.len() > 63 || !bucket.chars().all(valid) {
        return Err(bad("a bucket name is 3 to 63 characters: lowercase letters, digits, '-' and '.'"));
    }
    if prefix.contains("//") || prefix.starts_with('/') {
        return Err(bad("empty segment in the prefix"));
    }
    if prefix.contains(['?', '#']) {
        return Err(bad("the prefix holds '?' or '#'"));
    }
    let root = ObjectPath::parse(prefix.trim_end_matches('/')).map_err(|e| bad(&e.to_string()))?;
    Ok((bucket.to_owned(), root))
}

/// A checkpoint name as one path segment: ASCII letters, digits, `_`, `-` and a `.` that
/// does not start the name are kept, every other byte is `%XX`.
fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The inverse of [`encode_name`]; `None` for a segment it does not produce.
fn decode_name(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let name = String::from_utf8(out).ok()?;
    (encode_name(&name) == segment).then_some(name)
}

impl Remote {
    /// A handle on `url` (`s3://bucket/prefix`), configured from the environment.
    ///
    /// # Errors
    /// As for [`RemoteBuilder::build`].
    pub fn open(url: &str) -> crate::Result<Remote> {
        Remote::builder(url).build()
    }

    /// Options for a handle on `url`.
    pub fn builder(url: &str) -> RemoteBuilder {
        RemoteBuilder {
            url: url.to_owned(),
            auth_key: None,
            options: Vec::new(),
            concurrency: DEFAULT_CONCURRENCY,
            max_retries: None,
            fail_after: None,
        }
    }

    /// The URL it was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What this handle has done so far.
    pub fn stats(&self) -> RemoteStats {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RemoteStats {
            requests: g(&c.requests),
            heads: g(&c.heads),
            gets: g(&c.gets),
            puts: g(&c.puts),
            lists: g(&c.lists),
            objects_uploaded: g(&c.objects_uploaded),
            objects_skipped: g(&c.objects_skipped),
            bytes_uploaded: g(&c.bytes_uploaded),
            bytes_downloaded: g(&c.bytes_downloaded),
        }
    }

    fn object_path(&self, digest: &Digest) -> ObjectPath {
        self.root.clone().join("objects").join(digest.to_hex())
    }

    fn checkpoints_dir(&self) -> ObjectPath {
        self.root.clone().join("checkpoints")
    }

    fn manifest_path(&self, name: &str) -> ObjectPath {
        // `encode_name` yields only characters a path segment takes as they are (`parse`
        // keeps them; `from` would encode the `%` once more).
        let segment = encode_name(name);
        match PathPart::parse(&segment) {
            Ok(part) => self.checkpoints_dir().join(part),
            Err(_) => self.checkpoints_dir().join(segment.as_str()),
        }
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// Counts a request of kind `counter`; fails it when the injected failure is due.
    fn begin(&self, counter: &AtomicU64) -> Result<(), RemoteError> {
        let n = self.counters.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(after) = self.fail_after
            && n >= after
        {
            return Err(RemoteError::Injected { url: self.url.clone(), after });
        }
        bump(counter, 1);
        Ok(())
    }

    fn error(&self, op: &'static str, path: &ObjectPath, e: &object_store::Error) -> RemoteError {
        let full = Chain(e).to_string();
        let detail = scrub(&summarize(&full), &self.secrets);
        let (url, path) = (self.url.clone(), path.to_string());
        let denied = ["403 Forbidden", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"];
        match e {
            object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
                RemoteError::Denied { url, op, path, detail }
            }
            _ if full.contains("NoSuchBucket") => RemoteError::NoBucket { url, bucket: self.bucket.clone() },
            _ if denied.iter().any(|d| full.contains(d)) => RemoteError::Denied { url, op, path, detail },
            _ => RemoteError::Request { url, op, path, detail },
        }
    }

    /// The size of the object at `path`, or `None` when there is none.
    async fn head(&self, path: &ObjectPath) -> Result<Option<u64>, RemoteError> {
        self.begin(&self.counters.heads)?;
        match self.store.head(path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("head", path, &e)),
        }
    }

    /// The bytes of the object at `path`, or `None` when there is none.
    async fn get(&self, path: &ObjectPath) -> Result<Option<Vec<u8>>, RemoteError> {
        self.begin(&self.counters.gets)?;
        let result = match self.store.get(path).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error("get", path, &e)),
        };
        let bytes = result.bytes().await.map_err(|e| self.error("get", path, &e))?;
        bump(&self.counters.bytes_downloaded, bytes.len() as u64);
        Ok(Some(bytes.to_vec()))
    }

    /// The first `n` bytes of the object at `path` (fewer when it is shorter).
    async fn get_prefix(&self, path: &ObjectPath, size: u64, n: u64) -> Result<Vec<u8>, RemoteError> {
        self.begin(&self.counters.gets)?;
        let bytes = self.store.get_range(path, 0..size.min(n)).await.map_err(|e| self.error("get", path, &e))?;
        bump(&self.counters.bytes_downloaded, bytes.len() as u64);
        Ok(bytes.to_vec())
    }

    /// Creates the object at `path` unless one is there (`PutMode::Create`, an
    /// `If-None-Match: *` put); returns whether this call created it.
    async fn put_create(&self, path: &ObjectPath, bytes: Vec<u8>) -> Result<bool, RemoteError> {
        self.begin(&self.counters.puts)?;
        let len = bytes.len() as u64;
        match self.store.put_opts(path, bytes.into(), PutOptions::from(PutMode::Create)).await {
            Ok(_) => {
                bump(&self.counters.bytes_uploaded, len);
                Ok(true)
            }
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                bump(&self.counters.bytes_uploaded, len);
                Ok(false)
            }
            Err(object_store::Error::NotFound { .. }) => {
                Err(RemoteError::NoBucket { url: self.url.clone(), bucket: self.bucket.clone() })
            }
            Err(e) => Err(self.error("put", path, &e)),
        }
    }

    /// Every object directly under `dir`.
    async fn list(&self, dir: &ObjectPath) -> Result<Vec<ObjectMeta>, RemoteError> {
        self.begin(&self.counters.lists)?;
        match self.store.list_with_delimiter(Some(dir)).await {
            Ok(r) => Ok(r.objects),
            Err(object_store::Error::NotFound { .. }) => {
                Err(RemoteError::NoBucket { url: self.url.clone(), bucket: self.bucket.clone() })
            }
            Err(e) => Err(self.error("list", dir, &e)),
        }
    }

    /// Whether the bucket can be listed: the reason a lookup found nothing, when it is
    /// not "there is nothing".
    async fn check_bucket(&self) -> Result<(), RemoteError> {
        self.list(&self.checkpoints_dir()).await.map(drop)
    }
}

/// The gist of a storage client's error text: the HTTP status and S3's `<Code>` and
/// `<Message>` when the answer has them, else the first line (at most 300 characters).
fn summarize(full: &str) -> String {
    let tag = |name: &str| {
        let (open, close) = (format!("<{name}>"), format!("</{name}>"));
        let start = full.find(&open)? + open.len();
        let len = full[start..].find(&close)?;
        Some(full[start..start + len].to_owned())
    };
    let status = full.find("status code: ").map(|i| {
        let rest = &full[i + "status code: ".len()..];
        rest[..rest.find(':').unwrap_or(rest.len())].trim().to_owned()
    });
    match (tag("Code"), tag("Message")) {
        (Some(code), message) => {
            let mut out = status.map(|s| format!("{s}: ")).unwrap_or_default();
            out.push_str(&code);
            if let Some(m) = message {
                out.push_str(": ");
                out.push_str(&m);
            }
            out
        }
        (None, _) => {
            let line = full.lines().next().unwrap_or("");
            line.chars().take(300).collect()
        }
    }
}

/// The time a listing reports, as a duration since the Unix epoch.
fn since_epoch(meta: &ObjectMeta) -> Duration {
    Duration::from_millis(u64::try_from(meta.last_modified.timestamp_millis()).unwrap_or(0))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let (b, p) = parse_url("s3://my-bucket/runs/42/").unwrap();
        assert_eq!((b.as_str(), p.as_ref()), ("my-bucket", "runs/42"));
        let (b, p) = parse_url("s3://my-bucket").unwrap();
        assert_eq!((b.as_str(), p.as_ref()), ("my-bucket", ""));
        for bad in [
            "",
            "http://b/x",
            "s3://",
            "s3:///x",
            "s3://B/x",
            "s3://ab",
            "s3://bkt//x",
            "s3://bkt/a?b",
            "s3://bkt/a/../b",
        ] {
            assert!(matches!(parse_url(bad), Err(RemoteError::Url { .. })), "{bad}");
        }
    }

    #[test]
    fn error_texts_are_summarized() {
        let full = "Generic S3 error: Error performing list request: Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?>\n<Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided does not exist in our records.</Message><RequestId>X</RequestId></Error>";
        assert_eq!(
            summarize(full),
            "403 Forbidden: InvalidAccessKeyId: The AWS Access Key Id you provided does not exist in our records."
        );
        assert_eq!(summarize("connection refused\nmore"), "connection refused");
    }

    #[test]
    fn names_round_trip() {
        for name in ["v1", "run/1", ".", "..", "a.b", "é ü", "%41", "x%", "-_."] {
            let e = encode_name(name);
            assert!(PathPart::parse(&e).is_ok(), "{name} -> {e}");
            assert!(!e.contains('/'));
            assert_eq!(decode_name(&e).as_deref(), Some(name));
        }
        assert_eq!(decode_name("%4"), None);
        assert_eq!(decode_name("%41"), None, "not what encode_name writes for 'A'");
    }
}
