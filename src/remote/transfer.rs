//! Push, pull and listing of checkpoints: what moves between a store and a remote, in
//! which order. Push uploads objects before the manifest that names them; pull builds
//! the new store in a hidden sibling directory and renames it into place only once
//! every value was verified and written, so a failed pull leaves nothing behind.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{StreamExt, TryStreamExt, stream};

use super::manifest::{self, Entry, Header, Manifest, Problem};
use super::{Remote, RemoteError, RemoteStats, bump, decode_name, since_epoch};
use crate::blob::{Codec, Digest};
use crate::error::{CheckpointProblem, Error, Result};
use crate::index::{Stored, check_checkpoint_name};
use crate::progress::Progress;
use crate::shelf::Shelf;

/// What [`Shelf::push`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PushReport {
    /// Keys the checkpoint holds.
    pub keys: u64,
    /// Distinct objects the checkpoint names on the remote.
    pub objects: u64,
    /// Objects this push uploaded.
    pub uploaded: u64,
    /// Objects that were already on the remote (from an earlier push, another
    /// checkpoint, or another store sharing the prefix) and were not uploaded.
    pub skipped: u64,
    /// Bytes this push uploaded, manifest included.
    pub bytes_uploaded: u64,
    /// The manifest's size in bytes.
    pub manifest_bytes: u64,
    /// True when the remote already had this checkpoint, with the same contents (a
    /// push run again): nothing was uploaded.
    pub already_there: bool,
}

/// A checkpoint on a remote, as [`Remote::checkpoints`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteCheckpoint {
    /// Its name.
    pub name: String,
    /// When it was taken, in the store that pushed it (millisecond precision).
    pub created: SystemTime,
    /// When its manifest was written to the remote, as the storage reports it.
    pub pushed: SystemTime,
    /// Keys it holds.
    pub keys: u64,
    /// Bytes of the values it names on the remote (each distinct object once, plus the
    /// small values kept in the manifest).
    pub bytes: u64,
    /// The manifest's size in bytes.
    pub manifest_bytes: u64,
}

fn not_found(name: &str) -> Error {
    Error::Checkpoint { name: name.to_owned(), problem: CheckpointProblem::NotFound }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Remote {
    /// The remote's checkpoints, in name order, with their sizes and dates. One listing
    /// and one ranged `GET` of each manifest's first bytes; the figures are read from the
    /// manifests as stored (a pull verifies them whole).
    ///
    /// # Errors
    /// [`RemoteError::NoBucket`], [`RemoteError::Denied`], [`RemoteError::Request`];
    /// [`RemoteError::BadManifest`] for a manifest whose header cannot be read.
    pub fn checkpoints(&self) -> Result<Vec<RemoteCheckpoint>> {
        self.block_on(async {
            let metas = self.list(&self.checkpoints_dir()).await?;
            let mut out: Vec<RemoteCheckpoint> = stream::iter(metas)
                .filter_map(|meta| async move {
                    // Objects not named as `encode_name` names them are not manifests.
                    let name = meta.location.filename().and_then(decode_name)?;
                    Some((name, meta))
                })
                .map(|(name, meta)| async move {
                    let head = self.get_prefix(&meta.location, meta.size, manifest::HEADER_MAX as u64).await?;
                    let h = Header::decode(&head).map_err(|p| self.bad_manifest(&name, p))?;
                    if h.name != name {
                        let p = Problem::Bad(format!("it names checkpoint {:?}", h.name));
                        return Err(self.bad_manifest(&name, p));
                    }
                    Ok::<_, RemoteError>(RemoteCheckpoint {
                        name,
                        created: UNIX_EPOCH + Duration::from_millis(h.created_ms),
                        pushed: UNIX_EPOCH + since_epoch(&meta),
                        keys: h.keys,
                        bytes: h.bytes,
                        manifest_bytes: meta.size,
                    })
                })
                .buffer_unordered(self.concurrency)
                .try_collect()
                .await?;
            out.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
            Ok(out)
        })
    }

    fn bad_manifest(&self, name: &str, problem: Problem) -> RemoteError {
        match problem {
            Problem::Bad(reason) => RemoteError::BadManifest { url: self.url.clone(), name: name.to_owned(), reason },
            Problem::Key(reason) => RemoteError::WrongKey { url: self.url.clone(), name: name.to_owned(), reason },
        }
    }

    /// The manifest of checkpoint `name`, verified, or `None` when there is none.
    async fn manifest(&self, name: &str) -> Result<Option<Manifest>, RemoteError> {
        let Some(bytes) = self.get(&self.manifest_path(name)).await? else {
            return Ok(None);
        };
        let m = Manifest::decode(&bytes, &self.sealer, &self.hasher).map_err(|p| self.bad_manifest(name, p))?;
        if m.header.name != name {
            return Err(self.bad_manifest(name, Problem::Bad(format!("it names checkpoint {:?}", m.header.name))));
        }
        Ok(Some(m))
    }

    /// Downloads object `digest` and returns its pickle bytes, verified against the
    /// digest.
    async fn fetch_object(&self, codec: &Codec, digest: &Digest) -> Result<Vec<u8>, RemoteError> {
        let corrupted =
            |reason: String| RemoteError::CorruptedObject { url: self.url.clone(), digest: digest.to_hex(), reason };
        let Some(frame) = self.get(&self.object_path(digest)).await? else {
            return Err(corrupted("it is missing".into()));
        };
        codec.decode_owned(frame, digest).map_err(|r| corrupted(r.to_owned()))
    }
}

impl Shelf {
    /// Uploads checkpoint `name` to `remote`: every value the remote lacks, as an object
    /// named by its digest (a `HEAD` tells whether it is there; it is created with a
    /// create-only put), at most [`RemoteBuilder::concurrency`](crate::RemoteBuilder::concurrency)
    /// requests at once; then the checkpoint's manifest, last, with a create-only put. A
    /// push cut short leaves objects no manifest names, which the next push of any
    /// checkpoint naming them skips; pushing a checkpoint the remote already has with the
    /// same contents does nothing.
    ///
    /// ```no_run
    /// # let shelf = pickleshelf::Shelf::temporary()?;
    /// shelf.insert("a", &1)?;
    /// shelf.checkpoint("v1")?;
    /// let remote = pickleshelf::Remote::open("s3://my-bucket/state")?;
    /// let report = shelf.push(&remote, "v1")?;
    /// println!("{} objects uploaded, {} already there", report.uploaded, report.skipped);
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Checkpoint`] when the store has no such checkpoint; [`Error::Remote`]:
    /// [`RemoteError::KeyMismatch`] when the store and the remote have different auth
    /// keys, [`RemoteError::CheckpointExists`] when the remote has a checkpoint of that
    /// name with other contents, a request's failure; [`Error::CorruptedObject`] for a
    /// local value that fails its check (nothing of it is uploaded).
    pub fn push(&self, remote: &Remote, name: &str) -> Result<PushReport> {
        self.push_with_progress(remote, name, &mut ())
    }

    /// [`Shelf::push`], reporting to `progress` one step per object checked or uploaded
    /// (phase `"uploading"`).
    ///
    /// # Errors
    /// As for [`Shelf::push`].
    pub fn push_with_progress(&self, remote: &Remote, name: &str, progress: &mut dyn Progress) -> Result<PushReport> {
        let store = self.store();
        if manifest::auth_check(store.codec().hasher()) != manifest::auth_check(&remote.hasher) {
            return Err(RemoteError::KeyMismatch { url: remote.url.clone() }.into());
        }
        let index = store.index();
        let header = index.checkpoint(name)?.ok_or_else(|| not_found(name))?;
        let entries: Vec<(String, Stored)> = index.checkpoint_entries(name).collect::<Result<_>>()?;
        let before = remote.stats();
        let codec = Codec::new(store.codec().level(), remote.hasher.clone());
        remote.block_on(async {
            if let Some(existing) = remote.manifest(name).await? {
                return finish_existing(remote, name, &existing, &entries, before);
            }
            // Small values go into the manifest; every other one is an object, once.
            let mut objects: HashMap<Digest, &str> = HashMap::new();
            let mut inline = HashMap::new();
            for (key, stored) in &entries {
                if let Stored::Inline { digest, frame } = stored {
                    let pickle = store.load(key, Stored::Inline { digest: *digest, frame: frame.clone() })?;
                    if pickle.len() <= manifest::INLINE_MAX {
                        inline.insert(key.as_str(), pickle);
                        continue;
                    }
                }
                objects.entry(stored.digest()).or_insert(key.as_str());
            }
            progress.start("uploading", Some(objects.len() as u64));
            let mut uploads = stream::iter(objects.iter().map(|(d, k)| (*d, *k)))
                .map(|(digest, key)| {
                    let codec = &codec;
                    async move {
                        let path = remote.object_path(&digest);
                        if let Some(size) = remote.head(&path).await? {
                            bump(&remote.counters.objects_skipped, 1);
                            return Ok::<_, Error>((digest, size));
                        }
                        let pickle = {
                            let _pin = index.pin_files();
                            if index.checkpoint(name)?.is_none() {
                                return Err(not_found(name));
                            }
                            let stored = index
                                .checkpoint_entry(name, key)?
                                .filter(|s| s.digest() == digest)
                                .ok_or_else(|| not_found(name))?;
                            store.load(key, stored)?
                        };
                        let frame = codec.encode(&pickle);
                        drop(pickle);
                        let size = frame.len() as u64;
                        let created = remote.put_create(&path, frame).await?;
                        bump(
                            if created { &remote.counters.objects_uploaded } else { &remote.counters.objects_skipped },
                            1,
                        );
                        Ok((digest, size))
                    }
                })
                .buffer_unordered(remote.concurrency);
            let mut sizes: HashMap<Digest, u64> = HashMap::with_capacity(objects.len());
            while let Some(done) = uploads.next().await {
                let (digest, size) = done?;
                sizes.insert(digest, size);
                progress.advance(1);
            }
            progress.finish();
            let mut total = 0u64;
            let mut m_entries = Vec::with_capacity(entries.len());
            for (key, stored) in &entries {
                let digest = stored.digest();
                let entry = match inline.remove(key.as_str()) {
                    Some(pickle) => {
                        total += pickle.len() as u64;
                        Entry::Inline { digest, pickle }
                    }
                    None => Entry::Object { digest, size: sizes.get(&digest).copied().unwrap_or(0) },
                };
                m_entries.push((key.clone(), entry));
            }
            total += sizes.values().sum::<u64>();
            let manifest = Manifest {
                header: Header {
                    keyed: remote.auth_key.is_some(),
                    auth_check: manifest::auth_check(&remote.hasher),
                    created_ms: header.created_ms,
                    keys: m_entries.len() as u64,
                    bytes: total,
                    name: name.to_owned(),
                },
                entries: m_entries,
            };
            let bytes = manifest.encode(&remote.sealer);
            let manifest_bytes = bytes.len() as u64;
            if !remote.put_create(&remote.manifest_path(name), bytes).await? {
                // Another push of this name won the race: fine if it is the same.
                let existing = remote
                    .manifest(name)
                    .await?
                    .ok_or_else(|| RemoteError::CheckpointExists { url: remote.url.clone(), name: name.to_owned() })?;
                return finish_existing(remote, name, &existing, &entries, before);
            }
            Ok(report(remote, before, manifest.header.keys, sizes.len() as u64, manifest_bytes, false))
        })
    }

    /// Creates a store at `path` holding checkpoint `name` of `remote`: its keys with
    /// their values, and the checkpoint itself. Every object is downloaded once (at most
    /// [`RemoteBuilder::concurrency`](crate::RemoteBuilder::concurrency) requests at once)
    /// and verified against its digest before it is written; the manifest is verified
    /// whole first (with an auth key: authenticated). The store is built in a hidden
    /// directory beside `path` and renamed to `path` once complete and synced, so on any
    /// failure nothing is left at `path`. The new store has the remote's auth key.
    ///
    /// ```no_run
    /// let remote = pickleshelf::Remote::open("s3://my-bucket/state")?;
    /// let shelf = pickleshelf::Shelf::pull(&remote, "v1", "restored.db")?;
    /// assert!(shelf.checkpoints()?.iter().any(|c| c.name == "v1"));
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Remote`]: [`RemoteError::TargetExists`] when `path` exists,
    /// [`RemoteError::NoCheckpoint`], [`RemoteError::NoBucket`],
    /// [`RemoteError::WrongKey`], [`RemoteError::BadManifest`],
    /// [`RemoteError::CorruptedObject`] when an object is missing or does not hash to its
    /// name, a request's failure; [`Error::Checkpoint`] for an invalid name;
    /// [`Error::Io`] and the store's errors while writing.
    pub fn pull(remote: &Remote, name: &str, path: impl AsRef<Path>) -> Result<Shelf> {
        Shelf::pull_with_progress(remote, name, path, &mut ())
    }

    /// [`Shelf::pull`], reporting to `progress` one step per object downloaded (phase
    /// `"downloading"`).
    ///
    /// # Errors
    /// As for [`Shelf::pull`].
    pub fn pull_with_progress(
        remote: &Remote,
        name: &str,
        path: impl AsRef<Path>,
        progress: &mut dyn Progress,
    ) -> Result<Shelf> {
        let path = path.as_ref();
        check_checkpoint_name(name)?;
        if path.symlink_metadata().is_ok() {
            return Err(RemoteError::TargetExists { path: path.display().to_string() }.into());
        }
        let manifest = remote.block_on(async {
            match remote.manifest(name).await? {
                Some(m) => Ok(m),
                None => {
                    remote.check_bucket().await?;
                    Err(RemoteError::NoCheckpoint { url: remote.url.clone(), name: name.to_owned() })
                }
            }
        })?;
        let staging = staging_path(path)?;
        let built = build(remote, name, &manifest, &staging, progress).and_then(|()| {
            std::fs::rename(&staging, path).map_err(|source| Error::Io { path: path.to_owned(), source })
        });
        if let Err(e) = built {
            // Nothing of a failed pull stays; the error that made it fail is what counts.
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        let mut builder = Shelf::builder(path);
        if let Some(k) = &remote.auth_key {
            builder = builder.auth_key(k.clone());
        }
        builder.open()
    }
}

/// The report of a push that found the checkpoint on the remote already: success when
/// its contents are the store's, else [`RemoteError::CheckpointExists`].
fn finish_existing(
    remote: &Remote,
    name: &str,
    existing: &Manifest,
    entries: &[(String, Stored)],
    before: RemoteStats,
) -> Result<PushReport> {
    let same = existing.entries.len() == entries.len()
        && existing.entries.iter().zip(entries).all(|((ka, ea), (kb, sb))| ka == kb && ea.digest() == sb.digest());
    if !same {
        return Err(RemoteError::CheckpointExists { url: remote.url.clone(), name: name.to_owned() }.into());
    }
    let objects = existing.entries.iter().filter(|(_, e)| matches!(e, Entry::Object { .. }));
    let distinct: std::collections::HashSet<Digest> = objects.map(|(_, e)| e.digest()).collect();
    Ok(report(remote, before, existing.header.keys, distinct.len() as u64, 0, true))
}

/// A push's report: its figures, and what the handle counted since `before`.
fn report(
    remote: &Remote,
    before: RemoteStats,
    keys: u64,
    objects: u64,
    manifest_bytes: u64,
    already: bool,
) -> PushReport {
    let after = remote.stats();
    PushReport {
        keys,
        objects,
        uploaded: after.objects_uploaded - before.objects_uploaded,
        skipped: after.objects_skipped - before.objects_skipped,
        bytes_uploaded: after.bytes_uploaded - before.bytes_uploaded,
        manifest_bytes,
        already_there: already,
    }
}

/// A hidden sibling of `path` to build a pulled store in.
fn staging_path(path: &Path) -> Result<PathBuf> {
    let file =
        path.file_name().ok_or_else(|| Error::Config(format!("cannot pull into {}: no file name", path.display())))?;
    let mut name = std::ffi::OsString::from(".");
    name.push(file);
    name.push(format!(".pull-{}-{}", std::process::id(), now_ms()));
    Ok(path.with_file_name(name))
}

/// Writes the store of checkpoint `name` at `dir`: every key of `manifest` with its
/// verified value, then the checkpoint; checks the result names exactly the manifest's
/// digests; syncs and closes it.
fn build(remote: &Remote, name: &str, manifest: &Manifest, dir: &Path, progress: &mut dyn Progress) -> Result<()> {
    let mut builder = Shelf::builder(dir);
    if let Some(k) = &remote.auth_key {
        builder = builder.auth_key(k.clone());
    }
    let shelf = builder.open()?;
    let codec = Codec::new(shelf.store().codec().level(), remote.hasher.clone());
    let mut objects: HashMap<Digest, Vec<&str>> = HashMap::new();
    for (key, entry) in &manifest.entries {
        match entry {
            Entry::Inline { digest, pickle } => {
                if remote.hasher.digest(pickle) != *digest {
                    let reason = format!("the value of key {key:?} in it does not hash to its digest");
                    return Err(remote.bad_manifest(name, Problem::Bad(reason)).into());
                }
                shelf.insert_pickle(key, pickle)?;
            }
            Entry::Object { digest, .. } => objects.entry(*digest).or_default().push(key),
        }
    }
    progress.start("downloading", Some(objects.len() as u64));
    remote.block_on(async {
        let mut downloads = stream::iter(objects.iter())
            .map(|(digest, keys)| {
                let codec = &codec;
                async move { remote.fetch_object(codec, digest).await.map(|pickle| (keys, pickle)) }
            })
            .buffer_unordered(remote.concurrency);
        while let Some(done) = downloads.next().await {
            let (keys, pickle) = done?;
            for key in keys {
                shelf.insert_pickle(key, &pickle)?;
            }
            progress.advance(1);
        }
        Ok::<_, Error>(())
    })?;
    progress.finish();
    shelf.checkpoint(name)?;
    let got = shelf.checkpoint_keys(name)?;
    let same = got.len() == manifest.entries.len()
        && got.iter().zip(&manifest.entries).all(|((ka, da), (kb, eb))| ka == kb && *da == eb.digest());
    if !same {
        let reason = "the store built from it does not hold its keys and digests (keys out of order?)".to_owned();
        return Err(remote.bad_manifest(name, Problem::Bad(reason)).into());
    }
    shelf.close()
}
