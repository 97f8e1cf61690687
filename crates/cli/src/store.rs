//! The store subcommands: `ls`, `get`, `put`, `rm`, `stats`, `verify`, `gc`, `salvage`,
//! `repair`.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use clap::{ArgGroup, Args, ValueEnum};
use pickleshelf::pickle::{self, PyStr};
use pickleshelf::{Batch, Shelf};

use super::bar::Bar;
use super::{
    Absent, Access, Damaged, Input, JsonArray, StoreArgs, checkpoint_error, examples, human_bytes, manual,
    stdout_is_terminal, write_stdout,
};

const LS: &str = "  pickleshelf ls state.db
  pickleshelf ls state.db --prefix user: --long
  pickleshelf ls state.db --json | jq -r '.[]'
  pickleshelf ls state.db --json --long | jq '[.[] | .size] | add'
  pickleshelf ls state.db -0 | xargs -0 -n1 pickleshelf get state.db --json";

/// List the keys of a store.
///
/// Prints every key (or every key starting with --prefix), in key order (the
/// order of their UTF-8 bytes), one per line. On a terminal, a key holding
/// control characters is shown as a Python string literal ('a\nb') so that each
/// line is one key; otherwise keys are printed as they are (use -0 for keys that
/// hold newlines).
///
/// With --long each line is: the pickle's size in bytes, its stored (framed and
/// compressed) size, its compression (raw, zstd, zstd+dictN, delta), how many
/// references the value has — keys, checkpoints and deltas stored against it (- for
/// a small value kept inline with its key) — its digest (blake3 of the pickle, keyed
/// in an authenticated store), then the key. Sizes come from frame headers: values
/// are not decompressed or verified (use verify for that).
///
/// With --json the output is one JSON array, one item per line: the keys as
/// strings, or with --long objects with the fields key, size, stored,
/// compression, refs and digest (see docs/CLI.md).
#[derive(Args)]
#[command(verbatim_doc_comment, override_usage = "pickleshelf ls STORE [--prefix P] [--long] [-0 | --json] [OPTIONS]")]
#[command(after_help = examples(LS), after_long_help = manual(LS))]
pub struct Ls {
    #[command(flatten)]
    store: StoreArgs,
    /// Only keys starting with P.
    #[arg(long, short, value_name = "P", default_value = "", hide_default_value = true)]
    prefix: String,
    /// Show size, stored size, compression, sharing and digest before each key.
    #[arg(long, short)]
    long: bool,
    /// End each key with a NUL byte instead of a newline (for xargs -0).
    #[arg(long = "null", short = '0')]
    null: bool,
    /// Print one JSON array.
    #[arg(long, conflicts_with = "null")]
    json: bool,
}

/// How a key is printed: a repr on a terminal when it holds control characters.
pub(super) fn shown_key(key: &str, terminal: bool) -> String {
    if terminal && key.chars().any(char::is_control) { pickle::str_repr(&PyStr::from(key)) } else { key.to_owned() }
}

impl Ls {
    pub fn run(self) -> anyhow::Result<()> {
        if let Some(remote) = self.store.served(Access::Read)? {
            if self.long {
                bail!("{}: --long needs the store's directory (sizes and digests are not served)", self.store.shown());
            }
            let keys = remote.keys_with_prefix(&self.prefix)?;
            return self.print_keys(keys.into_iter().map(Ok));
        }
        let shelf = self.store.open(Access::Read)?;
        if !self.long {
            return self.print_keys(shelf.keys_with_prefix(&self.prefix).map(|k| k.map_err(anyhow::Error::from)));
        }
        let terminal = stdout_is_terminal() && !self.null;
        let end: &[u8] = if self.null { b"\0" } else { b"\n" };
        let mut out = BufWriter::new(io::stdout().lock());
        if self.json {
            let mut array = JsonArray::new(&mut out)?;
            if self.long {
                for info in shelf.key_info(&self.prefix) {
                    let info = info?;
                    array.item(&serde_json::json!({
                        "key": info.key,
                        "size": info.size,
                        "stored": info.stored,
                        "compression": info.compression.map(|c| c.to_string()),
                        "refs": info.shared_by,
                        "digest": info.digest.to_string(),
                    }))?;
                }
            }
            array.finish()?;
        } else {
            for info in shelf.key_info(&self.prefix) {
                let info = info?;
                let size = info.size.map_or("?".into(), |n| n.to_string());
                let compression = info.compression.map_or("?".into(), |c| c.to_string());
                let shared = info.shared_by.map_or("-".into(), |n| n.to_string());
                let key = shown_key(&info.key, terminal);
                write!(out, "{size:>10} {:>10} {compression:<11} {shared:>3} {} {key}", info.stored, info.digest)?;
                out.write_all(end)?;
            }
        }
        out.flush()?;
        Ok(())
    }

    /// Prints the keys as --json, -0 or lines (shown as reprs on a terminal) say.
    fn print_keys(&self, keys: impl Iterator<Item = anyhow::Result<String>>) -> anyhow::Result<()> {
        let mut out = BufWriter::new(io::stdout().lock());
        if self.json {
            let mut array = JsonArray::new(&mut out)?;
            for key in keys {
                array.item(&serde_json::Value::String(key?))?;
            }
            array.finish()?;
        } else {
            let terminal = stdout_is_terminal() && !self.null;
            let end: &[u8] = if self.null { b"\0" } else { b"\n" };
            for key in keys {
                out.write_all(shown_key(&key?, terminal).as_bytes())?;
                out.write_all(end)?;
            }
        }
        out.flush()?;
        Ok(())
    }
}

const GET: &str = "  pickleshelf get state.db user:1                   # Python-like, on a terminal
  pickleshelf get state.db user:1 --json | jq .name   # plain JSON
  pickleshelf get state.db user:1 --tagged > u1.json  # lossless: put --tagged reads it back
  pickleshelf get state.db user:1 --raw > user1.pkl   # Python: pickle.load(open('user1.pkl', 'rb'))
  pickleshelf get state.db user:1 --at v1             # its value in checkpoint v1";

/// How a value is printed or read: `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A Python-like repr, for people (get only).
    Repr,
    /// Plain JSON, as Python's json.dumps writes it: what scripts and jq expect; lossy
    /// (a tuple is an array) and refused for values JSON cannot hold (bytes, objects).
    Json,
    /// Tagged JSON: every Python type and shared reference kept (docs/PICKLE.md).
    Tagged,
    /// The pickle bytes exactly.
    #[value(alias = "raw")]
    Pickle,
}

/// Print the value of a key.
///
/// The value is read, checked against its digest, and printed as --format says:
///   repr    a Python-like repr for people (the default when stdout is a terminal)
///   json    plain JSON, as Python's json.dumps writes it: {"name": "Ada"} is
///           {"name":"Ada"}; tuples and sets become arrays; datetimes are ISO
///           text, Decimal, UUID, Fraction and paths their str(); a value JSON
///           cannot hold (bytes, NaN, an object of another class) is an error
///   tagged  tagged JSON, lossless: every Python type, shared and cyclic values
///           (the default when stdout is not a terminal; see docs/PICKLE.md)
///   pickle  the pickle bytes exactly as stored
/// --json, --tagged, --repr and --raw are short for them. Objects of other classes
/// (datetime, your own classes) are shown as data: nothing is imported or
/// executed. With --at NAME, the value is the one the key had when checkpoint NAME
/// was taken. A key that is not there exits with status 3.
#[derive(Args)]
#[command(
    verbatim_doc_comment,
    override_usage = "pickleshelf get STORE KEY [--at NAME] [--format F | --json | --tagged | --repr | --raw] [OPTIONS]"
)]
#[command(after_help = examples(GET), after_long_help = manual(GET))]
#[command(group(ArgGroup::new("form").args(["format", "json", "tagged", "repr", "raw"])))]
pub struct Get {
    #[command(flatten)]
    store: StoreArgs,
    /// The key.
    key: String,
    /// How to print the value [default: repr on a terminal, tagged otherwise].
    #[arg(long, short = 'f', value_enum, value_name = "F")]
    format: Option<Format>,
    /// Print plain JSON (--format json).
    #[arg(long)]
    json: bool,
    /// Print tagged JSON (--format tagged).
    #[arg(long)]
    tagged: bool,
    /// Print a Python-like repr (--format repr).
    #[arg(long)]
    repr: bool,
    /// Print the pickle bytes (--format pickle).
    #[arg(long)]
    raw: bool,
    /// Read the value from checkpoint NAME instead of the store now.
    #[arg(long, value_name = "NAME")]
    at: Option<String>,
}

impl Get {
    fn format(&self) -> Format {
        match (self.format, self.json, self.tagged, self.repr, self.raw) {
            (Some(f), ..) => f,
            (_, true, ..) => Format::Json,
            (_, _, true, ..) => Format::Tagged,
            (_, _, _, true, _) => Format::Repr,
            (_, _, _, _, true) => Format::Pickle,
            _ if stdout_is_terminal() => Format::Repr,
            _ => Format::Tagged,
        }
    }

    pub fn run(self) -> anyhow::Result<()> {
        let key = &self.key;
        let store = self.store.shown();
        let bytes = if let Some(remote) = self.store.served(Access::Read)? {
            if self.at.is_some() {
                bail!("{store}: --at needs the store's directory (checkpoints' values are not served)");
            }
            remote.get_pickle(key)?.ok_or_else(|| Absent(format!("{store}: no key {key:?}")))?
        } else {
            self.read_local(key)?
        };
        let format = self.format();
        if format == Format::Pickle {
            return write_stdout(&bytes);
        }
        let value = pickle::decode(&bytes).with_context(|| format!("{store}: key {key:?}"))?;
        let mut text = match format {
            Format::Json => pickle::to_plain_json(&value).with_context(|| format!("{store}: key {key:?}"))?,
            Format::Tagged => pickle::to_tagged_json(&value),
            _ => value.to_string(),
        };
        text.push('\n');
        write_stdout(text.as_bytes())
    }

    /// The pickle of `key` in the store's directory (now, or in checkpoint --at).
    fn read_local(&self, key: &str) -> anyhow::Result<Vec<u8>> {
        let shelf = self.store.open(Access::Read)?;
        let store = self.store.store.display();
        Ok(match &self.at {
            None => shelf.get_pickle(key)?.ok_or_else(|| Absent(format!("{store}: no key {key:?}")))?,
            Some(name) => shelf
                .get_pickle_at(name, key)
                .map_err(checkpoint_error(&self.store.store))?
                .ok_or_else(|| Absent(format!("{store}: no key {key:?} in checkpoint {name:?}")))?,
        })
    }
}

const PUT: &str = "  echo '{\"name\": \"Ada\", \"langs\": [\"en\", \"fr\"]}' | pickleshelf put state.db user:1 -
  pickleshelf put state.db user:1 user1.json                # plain JSON, from a file
  pickleshelf put state.db user:1 --pickle user1.pkl        # a pickle, byte for byte
  pickleshelf put state.db user:1 --tagged u1.json          # what get --tagged printed
  pickleshelf put state.db cfg - < cfg.pkl";

/// How a value to store is written: `put --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// Plain JSON, read as Python's json.loads reads it.
    Json,
    /// Tagged JSON (what get --tagged prints).
    Tagged,
    /// A pickle, stored byte for byte.
    #[value(alias = "raw")]
    Pickle,
}

/// Store a value under a key.
///
/// The value comes from INPUT, a file or - for stdin, read as --format says:
///   json    plain JSON, read as Python's json.loads reads it (an object is a dict,
///           an array a list, a number without '.' or exponent an int), then
///           encoded as a pickle of --protocol
///   tagged  tagged JSON (what get --tagged prints), encoded likewise
///   pickle  a pickle, stored byte for byte after checking that it decodes
/// Without --format, INPUT is plain JSON when its first non-blank character is
/// one a JSON text starts with ({ [ " - 0-9 t f n), which no pickle starts with;
/// otherwise a pickle. --json FILE, --tagged FILE and --pickle FILE are short for
/// FILE --format F. Nothing is stored when the input is not valid. An existing
/// value is replaced. The store is created when it does not exist.
#[derive(Args)]
#[command(
    verbatim_doc_comment,
    override_usage = "pickleshelf put STORE KEY (INPUT [--format json|tagged|pickle] | --json FILE | --tagged FILE | --pickle FILE) [--protocol N] [OPTIONS]"
)]
#[command(after_help = examples(PUT), after_long_help = manual(PUT))]
#[command(group(ArgGroup::new("source").required(true).args(["input", "json", "tagged", "pickle"])))]
pub struct Put {
    #[command(flatten)]
    store: StoreArgs,
    /// The key (UTF-8, at most 1024 bytes).
    key: String,
    /// The file holding the value, or - for stdin.
    #[arg(value_name = "INPUT")]
    input: Option<PathBuf>,
    /// How INPUT is written: json, tagged or pickle [default: detected].
    #[arg(long, short = 'f', value_enum, value_name = "F", requires = "input")]
    format: Option<InputFormat>,
    /// Read the value as plain JSON from FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Read the value as tagged JSON from FILE.
    #[arg(long, value_name = "FILE")]
    tagged: Option<PathBuf>,
    /// Read the value as pickle bytes from FILE.
    #[arg(long, value_name = "FILE")]
    pickle: Option<PathBuf>,
    /// The pickle protocol JSON is encoded with (2-5).
    #[arg(long, short = 'p', value_name = "N", default_value_t = pickle::DEFAULT_PROTOCOL,
          value_parser = clap::value_parser!(u8).range(2..=5))]
    protocol: u8,
}

/// The format of a value given without --format: plain JSON when it starts (after
/// blanks) with a character a JSON text starts with — none of which is a pickle opcode
/// that can start a pickle — otherwise a pickle.
fn detect_format(bytes: &[u8]) -> InputFormat {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => InputFormat::Json,
        _ => InputFormat::Pickle,
    }
}

impl Put {
    pub fn run(self) -> anyhow::Result<()> {
        let (input, format) = match (&self.input, &self.json, &self.tagged, &self.pickle) {
            (Some(f), ..) => (Input::from(f.clone()), self.format),
            (_, Some(f), ..) => (Input::from(f.clone()), Some(InputFormat::Json)),
            (_, _, Some(f), _) => (Input::from(f.clone()), Some(InputFormat::Tagged)),
            (_, _, _, Some(f)) => (Input::from(f.clone()), Some(InputFormat::Pickle)),
            _ => (Input::from(PathBuf::from("-")), None),
        };
        let bytes = input.read()?;
        let name = input.name();
        let pickled = match format.unwrap_or_else(|| detect_format(&bytes)) {
            InputFormat::Pickle => {
                pickle::check(&bytes).with_context(|| name.clone())?;
                bytes
            }
            f => {
                let text = std::str::from_utf8(&bytes).map_err(|e| {
                    anyhow!("{name}: the text is not UTF-8 (invalid byte at offset {})", e.valid_up_to())
                })?;
                let value = match f {
                    InputFormat::Json => pickle::from_plain_json(text),
                    _ => pickle::from_tagged_json(text),
                };
                let value = value.with_context(|| name.clone())?;
                pickle::encode(&value, self.protocol).with_context(|| name.clone())?
            }
        };
        if let Some(remote) = self.store.served(Access::Create)? {
            return Ok(remote.insert_pickle(&self.key, &pickled)?);
        }
        let shelf = self.store.open(Access::Create)?;
        shelf.insert_pickle(&self.key, &pickled)?;
        shelf.close()?;
        Ok(())
    }
}

const RM: &str = "  pickleshelf rm state.db user:1 user:2
  pickleshelf ls state.db --prefix tmp: -0 | xargs -0 pickleshelf rm state.db";

/// Remove keys.
///
/// Removes every key given, all at once: when one of them is not in the store
/// nothing is removed and the command fails, unless --force is given (missing
/// keys are then ignored). Space of values no key uses any more is freed at once.
#[derive(Args)]
#[command(verbatim_doc_comment, override_usage = "pickleshelf rm STORE KEY... [--force] [OPTIONS]")]
#[command(after_help = examples(RM), after_long_help = manual(RM))]
pub struct Rm {
    #[command(flatten)]
    store: StoreArgs,
    /// The keys to remove.
    #[arg(required = true, value_name = "KEY")]
    keys: Vec<String>,
    /// Ignore keys that are not in the store.
    #[arg(long, short)]
    force: bool,
}

impl Rm {
    pub fn run(self) -> anyhow::Result<()> {
        if let Some(remote) = self.store.served(Access::Write)? {
            // Checked, then removed in one MULTI/EXEC: a key another client removes in
            // between is gone either way.
            let batch = self.batch(|k| Ok(remote.contains_key(k)?))?;
            return Ok(remote.apply(batch)?);
        }
        let shelf = self.store.open(Access::Write)?;
        let batch = self.batch(|k| Ok(shelf.contains_key(k)?))?;
        shelf.apply(batch)?;
        shelf.close()?;
        Ok(())
    }

    /// The removal of every key given; a missing key is an error unless --force.
    fn batch(&self, contains: impl Fn(&str) -> anyhow::Result<bool>) -> anyhow::Result<Batch> {
        let mut batch = Batch::new();
        for key in &self.keys {
            if contains(key)? {
                batch.remove(key);
            } else if !self.force {
                let store = self.store.shown();
                return Err(Absent(format!("{store}: no key {key:?} (nothing removed)")).into());
            }
        }
        Ok(batch)
    }
}

const STATS: &str = "  pickleshelf stats state.db
  pickleshelf stats state.db --json | jq .dedup_ratio";

/// Show what a store holds and what it costs.
///
/// Counts keys (and memoized results, if any) and objects, and adds up bytes from
/// the records and frame headers (nothing is decompressed):
///   logical bytes   the pickles of all keys, as reading every key returns them
///   unique bytes    the pickle bytes kept: a large value shared by keys once, small
///                   (inline) values once per key, and values only checkpoints keep
///   stored bytes    what those take compressed
///   dedup ratio     logical / unique
///   compression     unique / stored
///   on disk         every file of the store, storage engine included: what the
///                   file system allocates (what du says), then the files' lengths
/// With --json the same numbers are one JSON object (names as in pickleshelf::Stats).
#[derive(Args)]
#[command(verbatim_doc_comment, override_usage = "pickleshelf stats STORE [--json] [OPTIONS]")]
#[command(after_help = examples(STATS), after_long_help = manual(STATS))]
pub struct Stats {
    #[command(flatten)]
    store: StoreArgs,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// `1234567` as `1,234,567`.
fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Stats {
    pub fn run(self) -> anyhow::Result<()> {
        let shelf = self.store.open(Access::Read)?;
        let s = shelf.stats()?;
        let text = if self.json {
            let json = serde_json::json!({
                "store": self.store.store.display().to_string(),
                "format_version": s.format_version,
                "generation": s.generation,
                "keys": s.keys,
                "memo_entries": s.memo_entries,
                "inline_values": s.inline_values,
                "objects": s.objects,
                "object_refs": s.object_refs,
                "checkpoints": s.checkpoints,
                "logical_bytes": s.logical_bytes,
                "unique_bytes": s.unique_bytes,
                "stored_bytes": s.stored_bytes,
                "pages": s.pages,
                "page_bytes": s.page_bytes,
                "pack_bytes": s.pack_bytes,
                "disk_bytes": s.disk_bytes,
                "allocated_bytes": s.allocated_bytes,
                "dedup_ratio": s.dedup_ratio(),
                "compression_ratio": s.compression_ratio(),
                "dictionary": s.dictionary,
                "unreadable": s.unreadable,
            });
            format!("{json}\n")
        } else {
            let bytes = |n: u64| format!("{} ({} bytes)", human_bytes(n), grouped(n));
            let mut t = String::new();
            let mut line = |name: &str, value: String| t.push_str(&format!("{name:<18} {value}\n"));
            line("store", self.store.store.display().to_string());
            line("format version", s.format_version.to_string());
            line("generation", s.generation.to_string());
            line("keys", grouped(s.keys));
            if s.memo_entries > 0 {
                line("memo results", grouped(s.memo_entries));
            }
            line("inline values", grouped(s.inline_values));
            line("values in objects", format!("{} ({} objects)", grouped(s.object_refs), grouped(s.objects)));
            if s.checkpoints > 0 {
                line("checkpoints", grouped(s.checkpoints));
            }
            line("logical bytes", bytes(s.logical_bytes));
            line("unique bytes", bytes(s.unique_bytes));
            line("stored bytes", bytes(s.stored_bytes));
            line("dedup ratio", format!("{:.2}", s.dedup_ratio()));
            line("compression ratio", format!("{:.2}", s.compression_ratio()));
            line(
                "record pages",
                format!(
                    "{} ({} in packs of {})",
                    grouped(s.pages),
                    human_bytes(s.page_bytes),
                    human_bytes(s.pack_bytes)
                ),
            );
            line(
                "on disk",
                format!("{} allocated (du); {} apparent", bytes(s.allocated_bytes), human_bytes(s.disk_bytes)),
            );
            line("dictionary", s.dictionary.map_or("none".into(), |d| format!("#{d}")));
            if s.unreadable > 0 {
                line("unreadable values", format!("{} (run verify)", grouped(s.unreadable)));
            }
            t
        };
        write_stdout(text.as_bytes())
    }
}

const VERIFY: &str = "  pickleshelf verify state.db && echo intact
  pickleshelf verify state.db --json | jq -r '.problems[]'";

/// Check a whole store.
///
/// Reads every page of records and every value and checks it against its digest,
/// checks every reference count against the keys that point at the object, and
/// every object file against its record. Changes nothing (gc repairs what can be
/// repaired). Files that a write cut short by a crash or a full disk left behind
/// are listed as `leftover: ...` lines (the next writing command deletes them); they
/// are not problems. Prints `ok: ...` and exits 0 when nothing is wrong; otherwise
/// prints one `problem: ...` line each and exits 1. A progress bar shows on stderr
/// when it is a terminal.
///
/// With --json the report is one JSON object instead: "ok", "complete", the counts
/// ("keys", "objects", "files", "checkpoints", "pages", "unreadable") and the lists
/// "problems" and "leftovers" (strings). The exit status is the same.
#[derive(Args)]
#[command(verbatim_doc_comment, override_usage = "pickleshelf verify STORE [--json] [OPTIONS]")]
#[command(after_help = examples(VERIFY), after_long_help = manual(VERIFY))]
pub struct Verify {
    #[command(flatten)]
    store: StoreArgs,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

/// A verify or gc report as the JSON object `verify --json` and `gc --json` print.
fn report_json(store: &std::path::Path, report: &pickleshelf::VerifyReport) -> serde_json::Value {
    serde_json::json!({
        "store": store.display().to_string(),
        "ok": report.is_ok(),
        "complete": report.is_complete(),
        "keys": report.keys,
        "objects": report.objects,
        "files": report.files,
        "checkpoints": report.checkpoints,
        "pages": report.pages,
        "unreadable": report.unreadable,
        "problems": report.problems,
        "repaired": report.repaired,
        "leftovers": report.leftovers,
    })
}

impl Verify {
    pub fn run(self) -> anyhow::Result<()> {
        if let Some(remote) = self.store.served(Access::Read)? {
            return self.run_served(&remote);
        }
        let shelf = self.store.open(Access::Read)?;
        let report = {
            let mut bar = Bar::stderr();
            shelf.verify_with_progress(&mut bar)?
        };
        let text = if self.json {
            format!("{}\n", report_json(&self.store.store, &report))
        } else {
            let mut text = String::new();
            for p in &report.problems {
                text.push_str(&format!("problem: {p}\n"));
            }
            for l in &report.leftovers {
                text.push_str(&format!("leftover: {l}\n"));
            }
            if report.is_ok() {
                text.push_str(&format!(
                    "ok: {} keys, {} objects, {} object files checked\n",
                    report.keys, report.objects, report.files
                ));
            }
            text
        };
        write_stdout(text.as_bytes())?;
        if !report.is_ok() {
            let n = report.problems.len();
            let st = self.store.store.display();
            if !report.is_complete() {
                return Err(Damaged(format!(
                    "{st}: verify found {n} problem{}, {} of them pages or records that cannot be read (run \
                     `pickleshelf salvage {st} --into NEW` to copy out what is readable)",
                    plural(n),
                    report.unreadable
                ))
                .into());
            }
            return Err(Damaged(format!("{st}: verify found {n} problem{}", plural(n))).into());
        }
        Ok(())
    }
}

impl Verify {
    /// verify on a served store: the server checks it (`SHELF.VERIFY`) and reports the
    /// counts and problems (leftovers are the server's: it deletes them).
    fn run_served(&self, remote: &pickleshelf_server::RemoteShelf) -> anyhow::Result<()> {
        use pickleshelf_server::Resp;
        let st = self.store.shown();
        let reply = remote.command(&[b"SHELF.VERIFY"])?;
        let Resp::Array(items) = reply else { bail!("{st}: unexpected reply to SHELF.VERIFY: {reply:?}") };
        let mut counts = serde_json::Map::new();
        let mut problems = Vec::new();
        for pair in items.chunks(2) {
            match pair {
                [Resp::Bulk(k), Resp::Int(n)] => {
                    let name = String::from_utf8_lossy(k).into_owned();
                    let v = if name == "ok" { serde_json::json!(*n != 0) } else { serde_json::json!(n) };
                    counts.insert(name, v);
                }
                [Resp::Bulk(k), Resp::Array(list)] if k == b"problems" => {
                    for p in list {
                        let Resp::Bulk(p) = p else { bail!("{st}: unexpected reply to SHELF.VERIFY: {p:?}") };
                        problems.push(String::from_utf8_lossy(p).into_owned());
                    }
                }
                other => bail!("{st}: unexpected reply to SHELF.VERIFY: {other:?}"),
            }
        }
        let count = |name: &str| counts.get(name).and_then(serde_json::Value::as_u64).unwrap_or(0);
        let text = if self.json {
            let mut json = counts.clone();
            json.insert("store".into(), st.clone().into());
            json.insert("problems".into(), problems.clone().into());
            format!("{}\n", serde_json::Value::Object(json))
        } else if problems.is_empty() {
            format!(
                "ok: {} keys, {} objects, {} object files checked\n",
                count("keys"),
                count("objects"),
                count("files")
            )
        } else {
            problems.iter().map(|p| format!("problem: {p}\n")).collect()
        };
        write_stdout(text.as_bytes())?;
        if !problems.is_empty() {
            let n = problems.len();
            return Err(Damaged(format!("{st}: verify found {n} problem{}", plural(n))).into());
        }
        Ok(())
    }
}

const GC: &str = "  pickleshelf gc state.db
  pickleshelf gc state.db --json | jq '.repaired | length'";

/// Repair what can be repaired and free unused space.
///
/// Runs the checks of verify and repairs reference counts, object records that
/// are missing or that no key uses, object files no record names, and temporary
/// files left by a crash; then syncs. Prints one `repaired: ...` line per repair
/// and one `problem: ...` line per problem it cannot repair (a damaged value is
/// reported, never removed), then a summary. Exits 1 when problems remain.
///
/// While any page or record of the store cannot be read, gc changes nothing: a
/// record it cannot read may name any value, so every object file, record and
/// pack is kept. It prints what cannot be read (pages, their key ranges, keys that
/// checkpoints still name there) and exits 1; `pickleshelf salvage` copies out
/// everything readable into a new store.
///
/// With --json the report is one JSON object, as verify --json prints it, with
/// "repaired" listing the repairs made. The exit status is the same.
#[derive(Args)]
#[command(verbatim_doc_comment, override_usage = "pickleshelf gc STORE [--json] [OPTIONS]")]
#[command(after_help = examples(GC), after_long_help = manual(GC))]
pub struct Gc {
    #[command(flatten)]
    store: StoreArgs,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

impl Gc {
    pub fn run(self) -> anyhow::Result<()> {
        let shelf: Shelf = self.store.open(Access::Write)?;
        let report = {
            let mut bar = Bar::stderr();
            shelf.gc_with_progress(&mut bar)?
        };
        shelf.close()?;
        let text = if self.json {
            format!("{}\n", report_json(&self.store.store, &report))
        } else {
            let mut text = String::new();
            for r in &report.repaired {
                text.push_str(&format!("repaired: {r}\n"));
            }
            for p in &report.problems {
                text.push_str(&format!("problem: {p}\n"));
            }
            if report.is_complete() {
                text.push_str(&format!(
                    "gc: {} keys checked, {} repaired, {} problems left\n",
                    report.keys,
                    report.repaired.len(),
                    report.problems.len()
                ));
            } else {
                text.push_str(&format!(
                    "gc: {} keys checked, nothing changed: {} pages or records cannot be read\n",
                    report.keys, report.unreadable
                ));
            }
            text
        };
        let st = self.store.store.display();
        write_stdout(text.as_bytes())?;
        if !report.is_complete() {
            return Err(Damaged(format!(
                "{st}: {} pages or records cannot be read, so gc changed nothing (run `pickleshelf salvage {st} \
                 --into NEW` to copy out everything readable)",
                report.unreadable
            ))
            .into());
        }
        if !report.is_ok() {
            let n = report.problems.len();
            return Err(Damaged(format!("{st}: {n} problem{} gc cannot repair", plural(n))).into());
        }
        Ok(())
    }
}

const SALVAGE: &str = "  pickleshelf salvage state.db --into rescued.db";

/// Copy what can be read out of a damaged store into a new one.
///
/// Copies every key and memoized result whose value verifies, every checkpoint
/// whose entries all verify, and the compression dictionaries into a new store
/// NEW (which must not exist, or be empty), with the same auth key. A value whose
/// object verifies but whose key record cannot be read is copied under the key
/// recovered/<digest in hex>. The damaged store is never changed: it is opened
/// read-only (a store whose page directory cannot be read is read through one
/// rebuilt from its pack files in a temporary directory). Prints what was copied
/// and one `lost: ...` line per thing that could not be; exits 0 when everything
/// was copied, 1 otherwise.
#[derive(Args)]
#[command(verbatim_doc_comment, override_usage = "pickleshelf salvage STORE --into NEW [OPTIONS]")]
#[command(after_help = examples(SALVAGE), after_long_help = manual(SALVAGE))]
pub struct Salvage {
    #[command(flatten)]
    store: StoreArgs,
    /// The new store to write.
    #[arg(long, value_name = "NEW")]
    into: std::path::PathBuf,
}

impl Salvage {
    pub fn run(self) -> anyhow::Result<()> {
        let st = self.store.store.display();
        if !self.store.store.join("pages").is_dir() && !self.store.store.join("sled").is_dir() {
            return Err(anyhow!("{st}: no such store"));
        }
        let report = self.store.builder()?.salvage(&self.into)?;
        let mut text = String::new();
        for n in &report.notes {
            text.push_str(&format!("note: {n}\n"));
        }
        for l in &report.lost {
            text.push_str(&format!("lost: {l}\n"));
        }
        for p in &report.verify.problems {
            text.push_str(&format!("problem in the new store: {p}\n"));
        }
        text.push_str(&format!(
            "salvaged into {}: {} keys, {} memo results, {} checkpoints, {} recovered values ({} objects)\n",
            self.into.display(),
            report.keys,
            report.memo,
            report.checkpoints,
            report.recovered,
            report.objects
        ));
        write_stdout(text.as_bytes())?;
        if !report.is_complete() {
            let n = report.lost.len();
            return Err(Damaged(format!("{st}: {n} thing{} could not be salvaged (listed above)", plural(n))).into());
        }
        Ok(())
    }
}

const REPAIR: &str = "  pickleshelf repair state.db && pickleshelf verify state.db";

/// Rebuild a store's page directory from its pack files.
///
/// When the store's page directory (the sled database in sled/) cannot be read, or
/// came back older than the last sync, rebuilds it from the pack files in pages/,
/// which record every commit: the newest image of each page wins. The rebuilt
/// directory is installed only when it is exactly that of the newest commit, every
/// page verified; the old sled/ is kept as sled.damaged/. A readable, current
/// directory is kept. Also upgrades a store of format 2, rewrites a damaged WITNESS
/// file and recreates a missing LOCK. Then verifies the store. Prints what it found
/// and did; exits 0 when the store now opens and verifies clean, 1 otherwise (run
/// `pickleshelf salvage` then to copy out what can be read).
#[derive(Args)]
#[command(verbatim_doc_comment, override_usage = "pickleshelf repair STORE [OPTIONS]")]
#[command(after_help = examples(REPAIR), after_long_help = manual(REPAIR))]
pub struct Repair {
    #[command(flatten)]
    store: StoreArgs,
    /// Rebuild the directory from the pack files even when sled's can be read (after
    /// restoring pages/ from a backup newer than sled/, say); installed only when it is
    /// exactly that of the newest commit.
    #[arg(long)]
    rebuild: bool,
}

impl Repair {
    pub fn run(self) -> anyhow::Result<()> {
        let st = self.store.store.display();
        if self.store.read_only {
            return Err(pickleshelf::Error::ReadOnly { path: self.store.store.clone() }.into());
        }
        if !self.store.store.join("pages").is_dir() && !self.store.store.join("sled").is_dir() {
            return Err(anyhow!("{st}: no such store"));
        }
        let builder = self.store.builder()?;
        let report = if self.rebuild { builder.rebuild()? } else { builder.repair()? };
        let mut text = String::new();
        if let Some(d) = &report.damaged {
            text.push_str(&format!("damaged: {d}\n"));
        }
        for n in &report.notes {
            text.push_str(&format!("note: {n}\n"));
        }
        for l in &report.lost {
            text.push_str(&format!("lost: {l}\n"));
        }
        if let Some(v) = &report.verify {
            for p in &v.problems {
                text.push_str(&format!("problem: {p}\n"));
            }
            text.push_str(&format!(
                "repair: {}; verify: {} keys, {} problems\n",
                if report.rebuilt { "directory rebuilt from the packs" } else { "directory kept" },
                v.keys,
                v.problems.len()
            ));
        }
        write_stdout(text.as_bytes())?;
        if let Some(why) = &report.unopened {
            return Err(Damaged(format!(
                "{st}: {why} (run `pickleshelf salvage {st} --into NEW` to copy out what can be read)"
            ))
            .into());
        }
        if !report.is_ok() {
            return Err(Damaged(format!(
                "{st}: problems remain (run `pickleshelf salvage {st} --into NEW` to copy out what can be read)"
            ))
            .into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1234567), "1,234,567");
    }

    #[test]
    fn control_characters_are_escaped_on_a_terminal_only() {
        assert_eq!(shown_key("a\nb", true), "'a\\nb'");
        assert_eq!(shown_key("a\nb", false), "a\nb");
        assert_eq!(shown_key("user:1", true), "user:1");
    }
}
