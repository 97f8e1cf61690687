//! The `pickleshelf` command-line tool: thin, all logic lives in the library.
//!
//! This file parses the command line and holds the error policy; every subcommand group
//! lives in its own file and returns `anyhow::Result`, and an error becomes one line on
//! stderr and an exit status ([`exit_status`]): 0 on success (and when stdout closes
//! early, as with `| head`); 1 when the answer is "not clean": the store is damaged
//! (`verify`, `gc`, or a read that meets a damaged value) or `diff --exit-code` found
//! differences; 2 when the command could not do its job (bad arguments — clap's own
//! status —, a missing or locked store, a malformed or unreadable input, an i/o error);
//! 3 when the key, checkpoint or memo namespace named is not there.

use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use pickleshelf::Shelf;

mod bar;
mod checkpoint;
mod memo;
mod pickle;
mod remote;
mod served;
mod store;
mod transfer;

const TOP_EXAMPLES: &str = "  \
    pickleshelf import state.db --shelve ~/app/state   # adopt a Python shelve
  pickleshelf ls state.db --long
  pickleshelf get state.db user:1
  pickleshelf checkpoint create state.db before-upgrade
  pickleshelf export state.db --shelve state-py    # Python: shelve.open('state-py')
  pickleshelf pickle decode examples/data/sample.pkl

Run `pickleshelf help COMMAND` for a command's manual.";

/// The end of a `-h`: examples.
fn examples(examples: &str) -> String {
    format!("Examples:\n{examples}")
}

/// The end of a `--help`: examples, then the exit status.
fn manual(examples: &str) -> String {
    format!("Examples:\n{examples}\n\n{EXIT_STATUS}")
}

const EXIT_STATUS: &str = "Exit status:
  0  success (also when stdout closes early, as with | head)
  1  the store is damaged (verify, gc, or a value that fails its check when read),
     or diff --exit-code found differences
  2  the command failed: bad arguments, a missing or locked store, a wrong auth key,
     an input that is malformed or cannot be read, an i/o error
  3  the key, checkpoint or memo namespace named does not exist
  One line on stderr says what and where (none for diff --exit-code).";

/// Exit status: the store is damaged, or `diff --exit-code` found differences.
pub const EXIT_DAMAGED_OR_DIFFERENT: i32 = 1;
/// Exit status: the command could not do its job (clap's status for usage errors too).
pub const EXIT_FAILED: i32 = 2;
/// Exit status: the key, checkpoint or memo namespace named does not exist.
pub const EXIT_ABSENT: i32 = 3;

/// An embedded, persistent object store for Python pickles.
///
/// pickleshelf keeps Python pickles under string keys in a store directory
/// (content-addressed, compressed, verified on every read). This tool looks inside
/// a store, checks and repairs it, and moves data both ways between a store and
/// Python's shelve files, without writing code. Nothing in a pickle is ever
/// imported or executed.
///
/// Store subcommands take the store's path first. Commands that only read (ls,
/// get, stats, verify, export, checkpoint ls and diff, memo ls) open the store
/// read-only and never create one.
#[derive(Parser)]
#[command(verbatim_doc_comment)]
#[command(name = "pickleshelf", version, about, propagate_version = true)]
#[command(after_help = examples(TOP_EXAMPLES), after_long_help = manual(TOP_EXAMPLES))]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Ls(store::Ls),
    Get(store::Get),
    Put(store::Put),
    Rm(store::Rm),
    Stats(store::Stats),
    Verify(store::Verify),
    Gc(store::Gc),
    Salvage(store::Salvage),
    Repair(store::Repair),
    Import(transfer::Import),
    Export(transfer::Export),
    /// Take, list, compare, restore and delete a store's named checkpoints.
    ///
    /// A checkpoint records every key of a store and its value under a name, for
    /// little (an entry per key, not a copy of the values): compare it with another
    /// checkpoint or with the store now, and put the store back as it was, in one
    /// atomic write. Memoized results are not part of checkpoints.
    #[command(subcommand, verbatim_doc_comment)]
    #[command(after_help = examples(checkpoint::EXAMPLES), after_long_help = manual(checkpoint::EXAMPLES))]
    Checkpoint(checkpoint::CheckpointCommand),
    /// List and clear a store's memo namespaces.
    ///
    /// A memo namespace holds the stored results of one memoized function
    /// (Shelf::memo in Rust, pickleshelf.memoize in Python), keyed by the pickled
    /// arguments. List them with their size, or forget their results.
    #[command(subcommand, verbatim_doc_comment)]
    #[command(after_help = examples(memo::EXAMPLES), after_long_help = manual(memo::EXAMPLES))]
    Memo(memo::MemoCommand),
    /// Decode, encode and re-encode pickle files (no store needed).
    #[command(subcommand)]
    #[command(after_help = "Examples:\n  \
        pickleshelf pickle decode examples/data/sample.pkl\n  \
        pickleshelf pickle decode examples/data/sample.pkl > sample.json\n  \
        pickleshelf pickle encode --protocol 5 sample.json > sample.p5.pkl\n  \
        pickleshelf pickle roundtrip --protocol 2 examples/data/sample.pkl > sample.p2.pkl")]
    Pickle(pickle::PickleCommand),
    /// Serve a store over the Redis protocol (RESP2 and RESP3), so that redis-cli,
    /// redis-py, redis-rs and other processes use it at once (see docs/SERVER.md).
    #[command(after_help = "Examples:\n  \
        pickleshelf serve state.db                          # 127.0.0.1:6379\n  \
        pickleshelf serve state.db --bind 127.0.0.1:7000 --appendfsync always\n  \
        pickleshelf serve state.db --bind 0.0.0.0:6379 --requirepass-file secret.txt")]
    Serve(pickleshelf_server::cli::ServeArgs),
    Push(remote::Push),
    Pull(remote::Pull),
    /// Look at checkpoints on S3-compatible object storage (s3://bucket/prefix).
    #[command(subcommand)]
    #[command(after_help = examples(remote::REMOTE_EXAMPLES), after_long_help = manual(remote::REMOTE_EXAMPLES))]
    Remote(remote::RemoteCommand),
    Completions(Completions),
}

const COMPLETIONS: &str = "  pickleshelf completions bash > ~/.local/share/bash-completion/completions/pickleshelf
  pickleshelf completions zsh > ~/.zfunc/_pickleshelf     # with fpath+=~/.zfunc before compinit
  pickleshelf completions fish > ~/.config/fish/completions/pickleshelf.fish";

/// Print a shell completion script.
///
/// Writes the completion script of SHELL (bash, zsh, fish, elvish or powershell)
/// to stdout: subcommands, options and their values. Put it where the shell
/// looks for completions (see the examples), or source it from the shell's
/// start-up file: `source <(pickleshelf completions bash)`.
#[derive(Args)]
#[command(verbatim_doc_comment)]
#[command(after_help = examples(COMPLETIONS), after_long_help = manual(COMPLETIONS))]
pub struct Completions {
    /// The shell.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

impl Completions {
    fn run(self) -> anyhow::Result<()> {
        use clap::CommandFactory;
        let mut script = Vec::new();
        clap_complete::generate(self.shell, &mut Cli::command(), "pickleshelf", &mut script);
        write_stdout(&script)
    }
}

fn main() {
    std::process::exit(run());
}

/// Runs the tool; returns the process exit status.
fn run() -> i32 {
    // Usage errors exit with clap's status 2; `--help` and `--version` with 0.
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ls(c) => c.run(),
        Command::Get(c) => c.run(),
        Command::Put(c) => c.run(),
        Command::Rm(c) => c.run(),
        Command::Stats(c) => c.run(),
        Command::Verify(c) => c.run(),
        Command::Gc(c) => c.run(),
        Command::Salvage(c) => c.run(),
        Command::Repair(c) => c.run(),
        Command::Import(c) => c.run(),
        Command::Export(c) => c.run(),
        Command::Checkpoint(cmd) => checkpoint::run(cmd),
        Command::Memo(cmd) => memo::run(cmd),
        Command::Pickle(cmd) => pickle::run(cmd),
        Command::Serve(args) => pickleshelf_server::cli::run(args),
        Command::Push(c) => c.run(),
        Command::Pull(c) => c.run(),
        Command::Remote(cmd) => remote::run(cmd),
        Command::Completions(c) => c.run(),
    };
    match result {
        Ok(()) => 0,
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            if e.downcast_ref::<Differs>().is_none() {
                // One line, whatever the messages hold.
                let line = error_line(&e);
                let _ = writeln!(io::stderr().lock(), "pickleshelf: {line}");
            }
            exit_status(&e)
        }
    }
}

/// The error and its causes on one line, `outer: cause: cause`, leaving out a cause whose
/// text the line already ends with (the library's messages often include their source:
/// `i/o error on PATH: No space left on device`).
fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace(['\n', '\r'], " ")
}

/// The exit status an error means (see [`EXIT_STATUS`]).
fn exit_status(e: &anyhow::Error) -> i32 {
    use pickleshelf::{CheckpointProblem, Error};
    for cause in e.chain() {
        if cause.is::<Absent>() {
            return EXIT_ABSENT;
        }
        if cause.is::<Damaged>() || cause.is::<Differs>() {
            return EXIT_DAMAGED_OR_DIFFERENT;
        }
        match cause.downcast_ref::<Error>() {
            Some(Error::Checkpoint { problem: CheckpointProblem::NotFound, .. }) => return EXIT_ABSENT,
            #[cfg(feature = "s3")]
            Some(Error::Remote(r)) => match **r {
                pickleshelf::RemoteError::NoCheckpoint { .. } => return EXIT_ABSENT,
                pickleshelf::RemoteError::CorruptedObject { .. } | pickleshelf::RemoteError::BadManifest { .. } => {
                    return EXIT_DAMAGED_OR_DIFFERENT;
                }
                _ => {}
            },
            Some(
                Error::Corrupted { .. }
                | Error::CorruptedObject { .. }
                | Error::RolledBack { .. }
                // sled could not read its files (an i/o error is `Error::Io`).
                | Error::Engine { .. },
            ) => {
                return EXIT_DAMAGED_OR_DIFFERENT;
            }
            _ => {}
        }
    }
    EXIT_FAILED
}

/// The error of a key, checkpoint or memo namespace that is not there (exit status 3):
/// `state.db: no key "user:3"`.
#[derive(Debug)]
pub struct Absent(pub String);

/// The error of a command that found the store damaged (exit status 1):
/// `state.db: verify found 2 problems`.
#[derive(Debug)]
pub struct Damaged(pub String);

/// `diff --exit-code` found differences (exit status 1, nothing on stderr).
#[derive(Debug)]
pub struct Differs;

impl std::fmt::Display for Absent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for Damaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for Differs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("differences found")
    }
}

impl std::error::Error for Absent {}
impl std::error::Error for Damaged {}
impl std::error::Error for Differs {}

/// An auth key file's bytes, less one trailing newline; `None` without a file.
fn read_auth_key(path: Option<&Path>) -> anyhow::Result<Option<Vec<u8>>> {
    let Some(path) = path else { return Ok(None) };
    let mut key = std::fs::read(path).with_context(|| format!("cannot read auth key file {}", path.display()))?;
    if key.ends_with(b"\n") {
        key.pop();
        if key.ends_with(b"\r") {
            key.pop();
        }
    }
    if key.is_empty() {
        bail!("auth key file {} is empty", path.display());
    }
    Ok(Some(key))
}

/// True when the error is stdout closing early (`pickleshelf ... | head`).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe))
}

/// The store and how to open it: the first arguments of every store subcommand.
#[derive(Args, Debug)]
pub struct StoreArgs {
    /// The store: a directory such as state.db. get, put, rm, ls and verify also take
    /// the address of a served store (`pickleshelf serve`): redis://HOST:PORT or
    /// unix:///PATH, with the password in REDISCLI_AUTH when the server needs one.
    #[arg(value_name = "STORE")]
    pub store: PathBuf,
    /// Read the store's auth key from FILE: its bytes (at least 16), less one trailing
    /// newline. Needed for every command on a store created with a key.
    #[arg(long, value_name = "FILE")]
    pub auth_key_file: Option<PathBuf>,
    /// Never change the store. Reading commands (ls, get, stats, verify, export,
    /// checkpoint ls and diff, memo ls) always open it read-only; with this flag the
    /// writing ones (put, rm, gc, import, checkpoint create, restore and rm, memo clear)
    /// stop with an error before changing anything.
    #[arg(long)]
    pub read_only: bool,
    /// Open a store whose page directory (sled/) came back older than its last sync, or
    /// whose WITNESS file is damaged, accepting the older state (the library's
    /// `allow_rollback(true)`). Run `pickleshelf repair STORE` first: it rebuilds the
    /// directory from the pack files, which usually hold what sled lost.
    #[arg(long)]
    pub allow_rollback: bool,
}

/// How a subcommand uses its store.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads only: opened read-only; must exist.
    Read,
    /// Writes an existing store.
    Write,
    /// Writes, creating the store when it does not exist.
    Create,
}

impl StoreArgs {
    /// The served store STORE names, connected, when STORE is an address; `None` for a
    /// directory. An address with --auth-key-file or --allow-rollback is refused (they
    /// are the server's to choose); --read-only refuses writing commands, as on a
    /// directory.
    pub fn served(&self, access: Access) -> anyhow::Result<Option<pickleshelf_server::RemoteShelf>> {
        let Some(address) = served::address(&self.store) else { return Ok(None) };
        let shown = served::shown(address);
        let flag = [(self.auth_key_file.is_some(), "--auth-key-file"), (self.allow_rollback, "--allow-rollback")]
            .into_iter()
            .find_map(|(set, name)| set.then_some(name));
        if let Some(flag) = flag {
            bail!("{shown}: {flag} is for a store's directory; a served store is opened by its server");
        }
        if access != Access::Read && self.read_only {
            bail!("{shown}: --read-only given, and this command changes the store");
        }
        served::connect(address).map(Some)
    }

    /// How messages name the store: its path, or its address without a password.
    pub fn shown(&self) -> String {
        match served::address(&self.store) {
            Some(a) => served::shown(a),
            None => self.store.display().to_string(),
        }
    }

    /// The auth key from `--auth-key-file`.
    fn auth_key(&self) -> anyhow::Result<Option<Vec<u8>>> {
        read_auth_key(self.auth_key_file.as_deref())
    }

    /// Opens the store as `access` says.
    pub fn open(&self, access: Access) -> anyhow::Result<Shelf> {
        let path = &self.store;
        if let Some(address) = served::address(path) {
            bail!(
                "{}: a served store; this command needs the store's directory (on a served store: {})",
                served::shown(address),
                served::SERVED_COMMANDS
            );
        }
        // A store whose sled/ is lost still has its packs (the library says what to run).
        // Creating one in a path that holds something else is refused by the library
        // (`Error::NotAStore`), which writes nothing there.
        let is_store = path.join("sled").is_dir() || path.join("pages").is_dir();
        match access {
            Access::Read | Access::Write if !path.exists() => bail!("{}: no such store", path.display()),
            Access::Read | Access::Write if !is_store => {
                bail!("{}: not a pickleshelf store (it has no sled/ directory)", path.display())
            }
            _ => {}
        }
        if access != Access::Read && self.read_only {
            return Err(pickleshelf::Error::ReadOnly { path: path.clone() }.into());
        }
        let read_only = access == Access::Read;
        Ok(self.builder()?.read_only(read_only).create(access == Access::Create).open()?)
    }

    /// A builder for the store with the auth key and `--allow-rollback` given.
    pub fn builder(&self) -> anyhow::Result<pickleshelf::ShelfBuilder> {
        let mut builder = Shelf::builder(&self.store).allow_rollback(self.allow_rollback);
        if let Some(key) = self.auth_key()? {
            builder = builder.auth_key(key);
        }
        Ok(builder)
    }
}

/// Puts the store's path before a checkpoint error, as `get` does before a missing key:
/// `state.db: checkpoint "v1": no such checkpoint`. Other errors name what they need.
fn checkpoint_error(store: &Path) -> impl Fn(pickleshelf::Error) -> anyhow::Error + '_ {
    move |e| match e {
        pickleshelf::Error::Checkpoint { .. } => anyhow::Error::new(e).context(store.display().to_string()),
        e => e.into(),
    }
}

/// A command-line input: a file path, or `-` for stdin.
#[derive(Clone, Debug)]
pub struct Input(PathBuf);

impl Input {
    fn is_stdin(&self) -> bool {
        self.0 == Path::new("-")
    }

    /// How errors name it.
    fn name(&self) -> String {
        if self.is_stdin() { "<stdin>".into() } else { self.0.display().to_string() }
    }

    /// Reads the whole input.
    fn read(&self) -> anyhow::Result<Vec<u8>> {
        if self.is_stdin() {
            let mut buf = Vec::new();
            io::stdin().lock().read_to_end(&mut buf).context("cannot read <stdin>")?;
            Ok(buf)
        } else {
            std::fs::read(&self.0).with_context(|| format!("cannot read {}", self.0.display()))
        }
    }
}

impl From<PathBuf> for Input {
    fn from(p: PathBuf) -> Self {
        Input(p)
    }
}

/// Writes one JSON array as its items come, one item per line (`[`, the items separated
/// by `,`, `]`), so that a long listing streams and still parses as one document.
pub struct JsonArray<'w, W: Write> {
    out: &'w mut W,
    empty: bool,
}

impl<'w, W: Write> JsonArray<'w, W> {
    /// Starts the array.
    pub fn new(out: &'w mut W) -> io::Result<Self> {
        out.write_all(b"[")?;
        Ok(JsonArray { out, empty: true })
    }

    /// Writes one item.
    pub fn item(&mut self, v: &serde_json::Value) -> io::Result<()> {
        self.out.write_all(if self.empty { b"\n" } else { b",\n" })?;
        self.empty = false;
        serde_json::to_writer(&mut *self.out, v)?;
        Ok(())
    }

    /// Ends the array (and its line) and flushes.
    pub fn finish(self) -> io::Result<()> {
        self.out.write_all(if self.empty { b"]\n" } else { b"\n]\n" })?;
        self.out.flush()
    }
}

/// Writes bytes to stdout and flushes (a broken pipe comes back as an error that
/// [`run`] treats as success).
fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes).context("cannot write to stdout")?;
    out.flush().context("cannot write to stdout")?;
    Ok(())
}

/// True when stdout is a terminal (a person reads it).
fn stdout_is_terminal() -> bool {
    io::stdout().is_terminal()
}

/// A byte count for people: `512 B`, `12.3 KiB`, `4.0 MiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_say_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device (os error 28)");
        let e = anyhow::Error::new(pickleshelf::Error::Io { path: "s.db/objects/ab/cd".into(), source: io })
            .context("s.db: import failed");
        assert_eq!(
            error_line(&e),
            "s.db: import failed: i/o error on s.db/objects/ab/cd: No space left on device (os error 28)"
        );
        let e = anyhow::anyhow!("line one\nline two").context("outer");
        assert_eq!(error_line(&e), "outer: line one line two");
    }

    #[test]
    fn human_bytes_reads_well() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 20), "5.0 MiB");
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
