//! `push`, `pull` and `remote ls`: checkpoints on S3-compatible object storage. Built
//! with the `s3` feature; without it each says so and exits 2.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::StoreArgs;

pub const PUSH_EXAMPLES: &str = "  \
    pickleshelf checkpoint create state.db epoch-12
  AWS_REGION=eu-west-1 pickleshelf push state.db s3://my-bucket/runs/42 --checkpoint epoch-12";

pub const PULL_EXAMPLES: &str = "  \
    pickleshelf pull s3://my-bucket/runs/42 epoch-12 restored.db
  pickleshelf ls restored.db";

pub const REMOTE_EXAMPLES: &str = "  \
    pickleshelf remote ls s3://my-bucket/runs/42";

/// Upload a checkpoint to S3-compatible object storage.
///
/// Uploads the values of checkpoint NAME that the remote lacks (each stored once
/// under its digest, shared by every checkpoint and store on the prefix), then the
/// checkpoint's manifest, last: the remote never names a checkpoint whose values
/// are missing. An interrupted push run again skips what is already there. The
/// bucket must exist. Credentials, region and endpoint come from the environment
/// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION,
/// AWS_ENDPOINT, AWS_ALLOW_HTTP). A store with an auth key pushes to a remote
/// with that key (--auth-key-file): its manifests are then authenticated.
/// Prints: pushed NAME: KEYS keys, OBJECTS objects (UPLOADED uploaded, SKIPPED
/// already there), SIZE uploaded.
#[derive(Args)]
#[command(verbatim_doc_comment)]
#[command(after_help = crate::examples(PUSH_EXAMPLES), after_long_help = crate::manual(PUSH_EXAMPLES))]
pub struct Push {
    #[command(flatten)]
    store: StoreArgs,
    /// The remote: s3://bucket/prefix.
    #[arg(value_name = "URL")]
    url: String,
    /// The checkpoint to push.
    #[arg(long, value_name = "NAME")]
    checkpoint: String,
    /// Requests in flight at once.
    #[arg(long, value_name = "N", default_value_t = 16)]
    jobs: usize,
}

/// Create a store from a checkpoint on S3-compatible object storage.
///
/// Creates STORE (which must not exist) holding the keys and values of checkpoint
/// NAME, and the checkpoint. Every downloaded byte is verified against its digest
/// (and, with an auth key, the manifest against the key) before anything is
/// written; the store is built beside STORE and renamed into place when complete,
/// so when anything fails verification the command exits non-zero and leaves no
/// store behind. Configuration from the environment, as for push.
#[derive(Args)]
#[command(verbatim_doc_comment)]
#[command(after_help = crate::examples(PULL_EXAMPLES), after_long_help = crate::manual(PULL_EXAMPLES))]
pub struct Pull {
    /// The remote: s3://bucket/prefix.
    #[arg(value_name = "URL")]
    url: String,
    /// The checkpoint to pull.
    #[arg(value_name = "NAME")]
    name: String,
    /// The store to create.
    #[arg(value_name = "STORE")]
    store: PathBuf,
    /// The remote's auth key, read from FILE (as for other commands); the new store
    /// gets it.
    #[arg(long, value_name = "FILE")]
    auth_key_file: Option<PathBuf>,
    /// Requests in flight at once.
    #[arg(long, value_name = "N", default_value_t = 16)]
    jobs: usize,
}

/// Look at checkpoints on S3-compatible object storage.
#[derive(Subcommand)]
pub enum RemoteCommand {
    /// List a remote's checkpoints: when each was taken (UTC), its keys, the bytes
    /// of the values it names on the remote, and its name.
    Ls {
        /// The remote: s3://bucket/prefix.
        #[arg(value_name = "URL")]
        url: String,
    },
}

#[cfg(not(feature = "s3"))]
fn no_s3() -> anyhow::Error {
    anyhow::anyhow!(
        "this pickleshelf was built without s3 support (rebuild with `cargo build --release --bin pickleshelf --features s3`)"
    )
}

#[cfg(not(feature = "s3"))]
impl Push {
    pub fn run(self) -> anyhow::Result<()> {
        let _ = (self.store, self.url, self.checkpoint, self.jobs);
        Err(no_s3())
    }
}

#[cfg(not(feature = "s3"))]
impl Pull {
    pub fn run(self) -> anyhow::Result<()> {
        let _ = (self.url, self.name, self.store, self.auth_key_file, self.jobs);
        Err(no_s3())
    }
}

#[cfg(not(feature = "s3"))]
pub fn run(cmd: RemoteCommand) -> anyhow::Result<()> {
    let RemoteCommand::Ls { url: _ } = cmd;
    Err(no_s3())
}

#[cfg(feature = "s3")]
mod enabled {
    use std::io::{self, BufWriter, Write};

    use anyhow::Context;
    use pickleshelf::{Remote, Shelf};

    use super::{Pull, Push, RemoteCommand};
    use crate::checkpoint::utc_iso8601;
    use crate::{Access, human_bytes, write_stdout};

    fn remote(url: &str, key: Option<Vec<u8>>, jobs: usize) -> anyhow::Result<Remote> {
        let mut builder = Remote::builder(url).concurrency(jobs);
        if let Some(k) = key {
            builder = builder.auth_key(k);
        }
        Ok(builder.build()?)
    }

    impl Push {
        pub fn run(self) -> anyhow::Result<()> {
            let shelf = self.store.open(Access::Read)?;
            let remote = remote(&self.url, self.store.auth_key()?, self.jobs)?;
            let mut bar = crate::bar::Bar::stderr();
            let report = shelf
                .push_with_progress(&remote, &self.checkpoint, &mut bar)
                .map_err(crate::checkpoint_error(&self.store.store))?;
            let line = if report.already_there {
                format!("{} already has checkpoint {}: nothing uploaded\n", self.url, self.checkpoint)
            } else {
                format!(
                    "pushed {}: {} keys, {} objects ({} uploaded, {} already there), {} uploaded\n",
                    self.checkpoint,
                    report.keys,
                    report.objects,
                    report.uploaded,
                    report.skipped,
                    human_bytes(report.bytes_uploaded)
                )
            };
            write_stdout(line.as_bytes())
        }
    }

    impl Pull {
        pub fn run(self) -> anyhow::Result<()> {
            let key = crate::read_auth_key(self.auth_key_file.as_deref())?;
            let remote = remote(&self.url, key, self.jobs)?;
            let shelf = Shelf::pull_with_progress(&remote, &self.name, &self.store, &mut crate::bar::Bar::stderr())?;
            let keys = shelf.len().context("cannot count the keys of the new store")?;
            shelf.close()?;
            let stats = remote.stats();
            let line = format!(
                "pulled {} into {}: {keys} keys, {} downloaded in {} requests\n",
                self.name,
                self.store.display(),
                human_bytes(stats.bytes_downloaded),
                stats.requests
            );
            write_stdout(line.as_bytes())
        }
    }

    pub fn run(cmd: RemoteCommand) -> anyhow::Result<()> {
        let RemoteCommand::Ls { url } = cmd;
        let remote = remote(&url, None, pickleshelf::remote::DEFAULT_CONCURRENCY)?;
        let mut out = BufWriter::new(io::stdout().lock());
        for c in remote.checkpoints()? {
            let (when, size) = (utc_iso8601(c.created), human_bytes(c.bytes));
            writeln!(out, "{when} {:>10} {size:>10} {}", c.keys, c.name)?;
        }
        out.flush()?;
        Ok(())
    }
}

#[cfg(feature = "s3")]
pub use enabled::run;
