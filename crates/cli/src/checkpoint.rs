//! `pickleshelf checkpoint ...`: a store's named checkpoints (the library's `checkpoint`
//! module) taken, listed, compared, restored and deleted.
//!
//! Commands that only read (`ls`, `diff`) open the store read-only; the others write it
//! and sync before they print. A failing command changes nothing: every name is checked
//! before anything is written.

use std::collections::BTreeSet;
use std::io::{self, BufWriter, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use pickleshelf::{Change, ChangeKind};

use super::store::shown_key;
use super::{
    Absent, Access, Differs, JsonArray, StoreArgs, checkpoint_error, examples, human_bytes, manual, stdout_is_terminal,
    write_stdout,
};

/// The examples of `pickleshelf checkpoint --help`.
pub const EXAMPLES: &str = "  pickleshelf checkpoint create state.db before-upgrade
  pickleshelf checkpoint ls state.db
  pickleshelf checkpoint diff state.db before-upgrade     # what changed since
  pickleshelf checkpoint restore state.db before-upgrade
  pickleshelf checkpoint rm state.db before-upgrade";

/// The `checkpoint` subcommands.
#[derive(Subcommand)]
pub enum CheckpointCommand {
    Create(Create),
    Ls(Ls),
    Diff(Diff),
    Restore(Restore),
    Rm(Rm),
}

/// Runs one `checkpoint` subcommand.
pub fn run(cmd: CheckpointCommand) -> anyhow::Result<()> {
    match cmd {
        CheckpointCommand::Create(c) => c.run(),
        CheckpointCommand::Ls(c) => c.run(),
        CheckpointCommand::Diff(c) => c.run(),
        CheckpointCommand::Restore(c) => c.run(),
        CheckpointCommand::Rm(c) => c.run(),
    }
}

const CREATE: &str = "  pickleshelf checkpoint create state.db before-upgrade
  pickleshelf checkpoint create state.db \"run-$(date +%Y%m%d-%H%M%S)\"";

/// Take a checkpoint: record every key of the store and its value under a name.
///
/// Records the store's keys and the digests of their values as checkpoint NAME
/// (1 to 255 bytes of UTF-8) in one atomic write, then syncs. A checkpoint costs
/// an entry per key, not a copy of the values; the values it names stay stored
/// until it is deleted (checkpoint rm). Memoized results are not part of it. A
/// name in use is an error: delete that checkpoint first. Prints one line:
///   created checkpoint NAME: KEYS keys (SIZE)
/// SIZE being the stored size of the values it names, shared or not with the
/// store's keys and other checkpoints.
#[derive(Args)]
#[command(verbatim_doc_comment, override_usage = "pickleshelf checkpoint create STORE NAME [OPTIONS]")]
#[command(after_help = examples(CREATE), after_long_help = manual(CREATE))]
pub struct Create {
    #[command(flatten)]
    store: StoreArgs,
    /// The checkpoint's name.
    #[arg(value_name = "NAME")]
    name: String,
}

impl Create {
    pub fn run(self) -> anyhow::Result<()> {
        let shelf = self.store.open(Access::Write)?;
        let info = shelf.checkpoint(&self.name).map_err(checkpoint_error(&self.store.store))?;
        shelf.close()?;
        let name = shown_key(&info.name, stdout_is_terminal());
        let line = format!("created checkpoint {name}: {} keys ({})\n", info.keys, human_bytes(info.bytes));
        write_stdout(line.as_bytes())
    }
}

const LS: &str = "  pickleshelf checkpoint ls state.db
  pickleshelf checkpoint ls state.db --json | jq -r 'max_by(.created_ms).name'   # the latest";

/// List a store's checkpoints.
///
/// Prints one line per checkpoint, in name order (the order of their UTF-8
/// bytes): when it was taken (UTC, to the second), the number of keys it holds,
/// the stored size of the values it names (each value once, shared or not with
/// the store's keys and other checkpoints), then its name:
///   2025-03-01T09:30:00Z        468   25.8 KiB before-upgrade
/// On a terminal, a name holding control characters is shown as a Python string
/// literal ('a\nb'), as ls shows keys. With --json the output is one JSON array,
/// one object per line and checkpoint, with the fields name, created (the time as
/// above), created_ms (milliseconds since 1970-01-01 UTC), keys and bytes.
#[derive(Args)]
#[command(verbatim_doc_comment, override_usage = "pickleshelf checkpoint ls STORE [--json] [OPTIONS]")]
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
        let terminal = stdout_is_terminal();
        let mut out = BufWriter::new(io::stdout().lock());
        let checkpoints = shelf.checkpoints()?;
        if self.json {
            let mut array = JsonArray::new(&mut out)?;
            for info in checkpoints {
                let ms = info.created.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
                array.item(&serde_json::json!({
                    "name": info.name,
                    "created": utc_iso8601(info.created),
                    "created_ms": ms,
                    "keys": info.keys,
                    "bytes": info.bytes,
                }))?;
            }
            array.finish()?;
            return Ok(());
        }
        for info in checkpoints {
            let (when, size) = (utc_iso8601(info.created), human_bytes(info.bytes));
            writeln!(out, "{when} {:>10} {size:>10} {}", info.keys, shown_key(&info.name, terminal))?;
        }
        out.flush()?;
        Ok(())
    }
}

const DIFF: &str = "  pickleshelf checkpoint diff state.db before-upgrade                # what changed since
  pickleshelf checkpoint diff state.db v1 v2
  pickleshelf checkpoint diff state.db v1 --quiet --exit-code || echo changed
  pickleshelf checkpoint diff state.db v1 v2 | grep '^~ ' | cut -c3-  # keys whose value changed";

/// Show the keys that differ between two checkpoints, or a checkpoint and now.
///
/// Compares checkpoint FROM with checkpoint TO or, without TO, with the store as
/// it is now, and prints one line per key whose value differs, in key order:
///   + KEY   only in TO: added since FROM
///   - KEY   only in FROM: removed since
///   ~ KEY   in both, with another value
/// Values are compared by digest: none is read or decoded. Keys are printed as ls
/// prints them; with -0 each line ends with a NUL byte instead of a newline.
/// Exits 0 whether or not anything differs (no output means no difference) unless
/// --exit-code is given: then 0 means no difference and 1 that some key differs,
/// as with git diff --exit-code (and 3 that a checkpoint is not there, 2 that the
/// command failed). --quiet prints nothing (and implies --exit-code).
// The long help, shown verbatim: its `+ KEY` lines are not Markdown lists.
#[allow(clippy::doc_lazy_continuation)]
#[derive(Args)]
#[command(
    verbatim_doc_comment,
    override_usage = "pickleshelf checkpoint diff STORE FROM [TO] [-0] [--exit-code] [--quiet] [OPTIONS]"
)]
#[command(after_help = examples(DIFF), after_long_help = manual(DIFF))]
pub struct Diff {
    #[command(flatten)]
    store: StoreArgs,
    /// The earlier checkpoint.
    #[arg(value_name = "FROM")]
    from: String,
    /// The later checkpoint [default: the store now].
    #[arg(value_name = "TO")]
    to: Option<String>,
    /// End each line with a NUL byte instead of a newline (for keys that hold newlines).
    #[arg(long = "null", short = '0')]
    null: bool,
    /// Exit with status 1 when some key differs, 0 when none does.
    #[arg(long)]
    exit_code: bool,
    /// Print nothing; implies --exit-code.
    #[arg(long, short)]
    quiet: bool,
}

impl Diff {
    pub fn run(self) -> anyhow::Result<()> {
        let shelf = self.store.open(Access::Read)?;
        let changes = match &self.to {
            Some(to) => shelf.diff(&self.from, to),
            None => shelf.changes_since(&self.from),
        }
        .map_err(checkpoint_error(&self.store.store))?;
        if !self.quiet {
            let terminal = stdout_is_terminal() && !self.null;
            let end: &[u8] = if self.null { b"\0" } else { b"\n" };
            let mut out = BufWriter::new(io::stdout().lock());
            for c in &changes {
                write_change(&mut out, c, terminal, end)?;
            }
            out.flush()?;
        }
        if (self.exit_code || self.quiet) && !changes.is_empty() {
            return Err(Differs.into());
        }
        Ok(())
    }
}

const RESTORE: &str = "  pickleshelf checkpoint restore state.db before-upgrade --dry-run
  pickleshelf checkpoint restore state.db before-upgrade
  pickleshelf checkpoint rm state.db before-upgrade";

/// Put the store's keys back as a checkpoint recorded them.
///
/// Makes the store's keys exactly those of checkpoint NAME, each with its value
/// then: keys added since are removed, removed ones come back, changed ones get
/// their old value, all in one atomic write; then syncs. The checkpoint stays;
/// memoized results are not touched. Prints one line per key it changed, as diff
/// prints them, in the direction of the restore:
///   + KEY   brought back (it was removed since the checkpoint)
///   - KEY   removed (it was added since)
///   ~ KEY   its value then put back
/// then one line:
///   restored checkpoint NAME: A added, R removed, C changed
/// With --dry-run the store is only read (and may be read-only): the same lines
/// say what a restore would change, the last one starting "would restore".
// The long help, shown verbatim: its `+ KEY` lines are not Markdown lists.
#[allow(clippy::doc_lazy_continuation)]
#[derive(Args)]
#[command(verbatim_doc_comment, override_usage = "pickleshelf checkpoint restore STORE NAME [--dry-run] [OPTIONS]")]
#[command(after_help = examples(RESTORE), after_long_help = manual(RESTORE))]
pub struct Restore {
    #[command(flatten)]
    store: StoreArgs,
    /// The checkpoint to restore.
    #[arg(value_name = "NAME")]
    name: String,
    /// Print what would change; change nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
}

impl Restore {
    pub fn run(self) -> anyhow::Result<()> {
        let named = checkpoint_error(&self.store.store);
        let (changes, done) = if self.dry_run {
            let shelf = self.store.open(Access::Read)?;
            let mut changes = shelf.changes_since(&self.name).map_err(&named)?;
            // From the checkpoint to now, turned around: what restoring it does.
            for c in &mut changes {
                c.kind = match c.kind {
                    ChangeKind::Added => ChangeKind::Removed,
                    ChangeKind::Removed => ChangeKind::Added,
                    ChangeKind::Changed => ChangeKind::Changed,
                };
                std::mem::swap(&mut c.before, &mut c.after);
            }
            (changes, "would restore")
        } else {
            let shelf = self.store.open(Access::Write)?;
            let changes = shelf.restore(&self.name).map_err(&named)?;
            shelf.close()?;
            (changes, "restored")
        };
        let terminal = stdout_is_terminal();
        let mut out = BufWriter::new(io::stdout().lock());
        let mut counts = [0u64; 3];
        for c in &changes {
            write_change(&mut out, c, terminal, b"\n")?;
            counts[match c.kind {
                ChangeKind::Added => 0,
                ChangeKind::Removed => 1,
                ChangeKind::Changed => 2,
            }] += 1;
        }
        let [added, removed, changed] = counts;
        let name = shown_key(&self.name, terminal);
        writeln!(out, "{done} checkpoint {name}: {added} added, {removed} removed, {changed} changed")?;
        out.flush()?;
        Ok(())
    }
}

const RM: &str = "  pickleshelf checkpoint rm state.db before-upgrade
  pickleshelf checkpoint rm state.db run-1 run-2 run-3 --force";

/// Delete checkpoints.
///
/// Deletes every checkpoint named, after checking them all: when one of them is
/// not a checkpoint nothing is deleted and the command fails, unless --force is
/// given (names that are not checkpoints are then ignored). They are all deleted
/// in one atomic write. Values that no key and no other checkpoint names any more
/// are removed, and their space is freed before the command returns (it syncs).
/// The store's keys are not touched.
#[derive(Args)]
#[command(verbatim_doc_comment, override_usage = "pickleshelf checkpoint rm STORE NAME... [--force] [OPTIONS]")]
#[command(after_help = examples(RM), after_long_help = manual(RM))]
pub struct Rm {
    #[command(flatten)]
    store: StoreArgs,
    /// The checkpoints to delete.
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
    /// Ignore names that are not checkpoints.
    #[arg(long, short)]
    force: bool,
}

impl Rm {
    pub fn run(self) -> anyhow::Result<()> {
        let shelf = self.store.open(Access::Write)?;
        let existing: BTreeSet<String> = shelf.checkpoints()?.into_iter().map(|c| c.name).collect();
        if !self.force
            && let Some(missing) = self.names.iter().find(|n| !existing.contains(*n))
        {
            let store = self.store.store.display();
            return Err(Absent(format!("{store}: no checkpoint {missing:?} (nothing deleted)")).into());
        }
        // All in one atomic write; a name given twice is deleted once.
        let names: Vec<&str> = self.names.iter().map(String::as_str).filter(|n| existing.contains(*n)).collect();
        shelf.delete_checkpoints(&names)?;
        shelf.close()?;
        Ok(())
    }
}

/// Writes `+ KEY`, `- KEY` or `~ KEY` and `end`.
fn write_change(out: &mut impl Write, c: &Change, terminal: bool, end: &[u8]) -> io::Result<()> {
    let sign = match c.kind {
        ChangeKind::Added => '+',
        ChangeKind::Removed => '-',
        ChangeKind::Changed => '~',
    };
    write!(out, "{sign} {}", shown_key(&c.key, terminal))?;
    out.write_all(end)
}

/// `t` in UTC, in ISO 8601 to the second: `2025-03-01T09:30:00Z` (a time before 1970 as
/// 1970-01-01T00:00:00Z; checkpoints are not taken then).
pub(super) fn utc_iso8601(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, s) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

/// The (year, month, day) of the proleptic Gregorian calendar `days` days after
/// 1970-01-01: Howard Hinnant's `civil_from_days`, on unsigned days. The calendar repeats
/// every 400 years (146,097 days, an "era"), counted from 0000-03-01 so that a leap day
/// ends its year.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let (era, doe) = (z / 146_097, z % 146_097); // day of the era: 0..=146_096
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // year of the era: 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the year from March 1: 0..=365
    let mp = (5 * doy + 2) / 153; // month from March: 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = era * 400 + yoe + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn times_are_utc_iso_8601() {
        let at = |secs: u64| utc_iso8601(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(68_169_600), "1972-02-29T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(at(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(at(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(utc_iso8601(UNIX_EPOCH + Duration::from_millis(1_700_000_000_999)), "2023-11-14T22:13:20Z");
        assert_eq!(utc_iso8601(UNIX_EPOCH - Duration::from_secs(1)), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn civil_from_days_counts_every_day() {
        // Day by day across 800 years (two eras, the leap rules of 1900 and 2000 and 2400).
        let (mut y, mut m, mut d) = (1970, 1, 1);
        for days in 0..292_194 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400));
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                (m, d) = (m + 1, 1);
                if m > 12 {
                    (y, m) = (y + 1, 1);
                }
            }
        }
    }
}
