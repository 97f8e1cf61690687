//! Command-line parsing and the error policy of the `pickleshelf` binary.
//!
//! Every subcommand group lives in its own file and returns `anyhow::Result`; this file
//! turns an error into one line on stderr and an exit status.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};

mod pickle;

/// An embedded, persistent object store for Python pickles.
#[derive(Parser)]
#[command(name = "pickleshelf", version, about, long_about = None, propagate_version = true)]
#[command(after_help = "Examples:\n  \
    pickleshelf pickle decode examples/data/sample.pkl\n  \
    python3 -c 'import pickle,sys; sys.stdout.buffer.write(pickle.dumps([1, 2.5]))' | pickleshelf pickle decode -")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode, encode and re-encode pickle files (no store needed).
    #[command(subcommand)]
    #[command(after_help = "Examples:\n  \
        pickleshelf pickle decode examples/data/sample.pkl\n  \
        pickleshelf pickle decode examples/data/sample.pkl > sample.json\n  \
        pickleshelf pickle encode --protocol 5 sample.json > sample.p5.pkl\n  \
        pickleshelf pickle roundtrip --protocol 2 examples/data/sample.pkl > sample.p2.pkl")]
    Pickle(pickle::PickleCommand),
}

/// Runs the tool; returns the process exit status.
pub fn run() -> i32 {
    // Usage errors exit with clap's status 2; `--help` and `--version` with 0.
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Pickle(cmd) => pickle::run(cmd),
    };
    match result {
        Ok(()) => 0,
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            // One line, whatever the messages hold.
            let line = format!("{e:#}").replace(['\n', '\r'], " ");
            let _ = writeln!(io::stderr().lock(), "pickleshelf: {line}");
            1
        }
    }
}

/// True when the error is stdout closing early (`pickleshelf ... | head`).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe))
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

/// Writes bytes to stdout and flushes (a broken pipe comes back as an error that
/// [`run`] treats as success).
fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes).context("cannot write to stdout")?;
    out.flush().context("cannot write to stdout")?;
    Ok(())
}
