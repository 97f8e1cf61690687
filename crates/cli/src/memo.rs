//! `pickleshelf memo ...`: a store's memo namespaces (the library's `memo` module)
//! listed and cleared.

use std::collections::BTreeSet;
use std::io::{self, BufWriter, Write};

use clap::{Args, Subcommand};

use super::checkpoint::utc_iso8601;
use super::store::shown_key;
use super::{Absent, Access, JsonArray, StoreArgs, examples, human_bytes, manual, stdout_is_terminal, write_stdout};

/// The examples of `pickleshelf memo --help`.
pub const EXAMPLES: &str = "  pickleshelf memo ls state.db
  pickleshelf memo clear state.db fib
  pickleshelf memo clear state.db --all";

/// The `memo` subcommands.
#[derive(Subcommand)]
pub enum MemoCommand {
    Ls(Ls),
    Clear(Clear),
}

/// Runs one `memo` subcommand.
pub fn run(cmd: MemoCommand) -> anyhow::Result<()> {
    match cmd {
        MemoCommand::Ls(c) => c.run(),
        MemoCommand::Clear(c) => c.run(),
    }
}

const LS: &str = "  pickleshelf memo ls state.db
  pickleshelf memo ls state.db --json | jq '.[] | select(.entries > 1000) | .name'";

/// List a store's memo namespaces.
///
/// Prints one line per memo namespace (the name given to Shelf::memo, or to
/// pickleshelf.memoize in Python), in name order: its stored results, their
/// stored size, when one was last stored or read (UTC, as last written to the
/// store; - without results), its version ("" shown as -), then its name:
///        468   25.8 KiB 2025-03-01T09:30:00Z v2 fib
/// With --json, one JSON array, one object per line and namespace, with the fields
/// name, version, entries, bytes and last_used (the time as above, or null).
#[derive(Args)]
#[command(verbatim_doc_comment, override_usage = "pickleshelf memo ls STORE [--json] [OPTIONS]")]
#[command(after_help = examples(LS), after_long_help = manual(LS))]
pub struct Ls {
    #[command(flatten)]
    store: StoreArgs,
    /// Print one JSON array.
    #[arg(long)]
    json: bool,
}

impl Ls {
    pub fn run(self) -> anyhow::Result<()> {
        let shelf = self.store.open(Access::Read)?;
        let spaces = shelf.memo_namespaces()?;
        let mut out = BufWriter::new(io::stdout().lock());
        if self.json {
            let mut array = JsonArray::new(&mut out)?;
            for ns in spaces {
                array.item(&serde_json::json!({
                    "name": ns.name,
                    "version": ns.version,
                    "entries": ns.entries,
                    "bytes": ns.bytes,
                    "last_used": ns.last_used.map(utc_iso8601),
                }))?;
            }
            array.finish()?;
            return Ok(());
        }
        let terminal = stdout_is_terminal();
        for ns in spaces {
            let when = ns.last_used.map_or_else(|| "-".into(), utc_iso8601);
            let version = if ns.version.is_empty() { "-".to_owned() } else { shown_key(&ns.version, terminal) };
            let size = human_bytes(ns.bytes);
            writeln!(out, "{:>10} {size:>10} {when:<20} {version} {}", ns.entries, shown_key(&ns.name, terminal))?;
        }
        out.flush()?;
        Ok(())
    }
}

const CLEAR: &str = "  pickleshelf memo clear state.db fib
  pickleshelf memo clear state.db fib render --force
  pickleshelf memo clear state.db --all";

/// Forget the stored results of memo namespaces.
///
/// Removes every stored result of each namespace named (or of every namespace
/// with --all), after checking the names: when one is not a namespace of the
/// store nothing is removed and the command exits with status 3, unless --force
/// is given (names that are not namespaces are then ignored). Each namespace is
/// cleared in one atomic write, then the store syncs; its version is kept, so it
/// is still listed, with no results. The store's keys and checkpoints are not
/// touched. Prints one line per namespace:
///   cleared memo NAME: N results (SIZE)
#[derive(Args)]
#[command(verbatim_doc_comment, override_usage = "pickleshelf memo clear STORE (NAME... | --all) [--force] [OPTIONS]")]
#[command(after_help = examples(CLEAR), after_long_help = manual(CLEAR))]
pub struct Clear {
    #[command(flatten)]
    store: StoreArgs,
    /// The namespaces to clear.
    #[arg(value_name = "NAME", required_unless_present = "all", conflicts_with = "all")]
    names: Vec<String>,
    /// Clear every namespace.
    #[arg(long)]
    all: bool,
    /// Ignore names that are not namespaces.
    #[arg(long, short)]
    force: bool,
}

impl Clear {
    pub fn run(self) -> anyhow::Result<()> {
        let shelf = self.store.open(Access::Write)?;
        let spaces = shelf.memo_namespaces()?;
        let known: BTreeSet<&str> = spaces.iter().map(|n| n.name.as_str()).collect();
        if !self.force
            && let Some(missing) = self.names.iter().find(|n| !known.contains(n.as_str()))
        {
            let store = self.store.store.display();
            return Err(Absent(format!("{store}: no memo namespace {missing:?} (nothing cleared)")).into());
        }
        let wanted: BTreeSet<&str> = self.names.iter().map(String::as_str).collect();
        let terminal = stdout_is_terminal();
        let mut text = String::new();
        for ns in spaces.iter().filter(|n| self.all || wanted.contains(n.name.as_str())) {
            let memo = shelf.memo_builder(&ns.name).version(ns.version.clone()).open()?;
            let removed = memo.clear()?;
            let name = shown_key(&ns.name, terminal);
            text.push_str(&format!("cleared memo {name}: {removed} results ({})\n", human_bytes(ns.bytes)));
        }
        shelf.close()?;
        write_stdout(text.as_bytes())
    }
}
