//! `repair`: rebuilds a store's page directory (sled's files) from its pack files when
//! sled cannot be read or came back older than the witness, upgrades a format 2 store, and
//! rewrites a damaged witness; then opens the store and verifies it.
//!
//! Invariant: a directory rebuilt from the packs replaces sled's only when it is exact (it
//! equals the directory of the newest commit the packs record, every page of it verified)
//! and not older than the witness; otherwise nothing is changed and the report names the
//! key ranges that cannot be rebuilt. A readable, current sled directory is never replaced.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::index::{self, describe_range};
use crate::repair::VerifyReport;
use crate::store::{Config, FORMAT_READ_AS_IS, FORMAT_VERSION, Store};
use crate::witness::{self, Witness};

/// What [`ShelfBuilder::repair`](crate::ShelfBuilder::repair) found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepairReport {
    /// Why the page directory had to be rebuilt (sled's files cannot be read, or came
    /// back older than the last sync), or `None` when it was readable and current.
    pub damaged: Option<String>,
    /// True when a directory rebuilt from the packs replaced sled's (the old files are
    /// kept in `sled.damaged/`).
    pub rebuilt: bool,
    /// What else was found or done, one line each: damaged stretches of pack files, a
    /// witness rewritten, a format 2 store upgraded, ...
    pub notes: Vec<String>,
    /// Key ranges whose newest records are not in the packs (nothing was installed then).
    pub lost: Vec<String>,
    /// `verify` of the store afterwards, when it could be opened.
    pub verify: Option<VerifyReport>,
    /// Why the store still cannot be opened, when it cannot.
    pub unopened: Option<String>,
}

impl RepairReport {
    /// True when the store opens and verifies clean.
    pub fn is_ok(&self) -> bool {
        self.unopened.is_none() && self.verify.as_ref().is_some_and(VerifyReport::is_ok)
    }
}

/// Repairs the store `b` names (see the module docs and
/// [`ShelfBuilder::repair`](crate::ShelfBuilder::repair)). With `force`, the directory is
/// rebuilt from the packs (and installed when exact) even when sled's can be read and is
/// current.
pub(crate) fn run(mut b: Config, force: bool) -> Result<RepairReport> {
    b.validate()?;
    let path: PathBuf = b.path.clone();
    if !path.join("pages").is_dir() && !path.join("sled").is_dir() {
        return Err(Error::Io {
            path,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no store at this path"),
        });
    }
    let mut report = RepairReport::default();
    {
        let _lock = crate::lock::take(&path, false, "a repair")?;
        if index::install_pending(&path) {
            index::finish_install(&path)?;
            report.notes.push("finished a repair that was interrupted".into());
        }
        let sled = index::read_directory(&path);
        let (witness, witness_damaged) = match witness::read(&path) {
            Ok(w) => (w, false),
            Err(e @ Error::Corrupted { .. }) => {
                report.notes.push(format!("{e}: rewritten"));
                (None, true)
            }
            Err(e) => return Err(e),
        };
        let hasher = b.hasher();
        match &sled {
            Ok(d) if d.format == Some(2) => {
                // A format 2 store: the open below upgrades it (its packs cannot be used
                // to rebuild a directory: they carry no sequence numbers).
                report.notes.push(format!("format 2 store: upgraded to format {FORMAT_VERSION}"));
            }
            Ok(d)
                if !force && current_format(d.format) && witness.is_none_or(|w| d.generation >= Some(w.generation)) =>
            {
                let rebuilt = index::rebuild(&path, &hasher)?;
                report.notes.extend(rebuilt.damage.iter().cloned());
                let newest_named = d.pages.values().map(|l| l.seq).max().unwrap_or(0);
                if rebuilt.exact && rebuilt.newest.is_some_and(|n| n.0 > newest_named) {
                    report.notes.push(
                        "the packs hold commits the directory does not name (cut short before they were \
                         installed): voided at the next open"
                            .into(),
                    );
                }
                if witness_damaged {
                    let seq = d.pages.values().map(|l| l.seq).max().unwrap_or(0);
                    witness::write(&path, Witness { generation: d.generation.unwrap_or(0), seq: Some(seq) }, true)?;
                }
            }
            _ => {
                let current = matches!(&sled, Ok(d) if current_format(d.format)
                    && witness.is_none_or(|w| d.generation >= Some(w.generation)));
                let why = match &sled {
                    _ if current => "asked to rebuild it".to_owned(),
                    Err(e) => e.to_string(),
                    Ok(d) if !current_format(d.format) => format!(
                        "sled/ holds no usable format record ({})",
                        d.format.map_or("none".to_owned(), |f| f.to_string())
                    ),
                    Ok(d) => format!(
                        "sled/ is at generation {} but the last sync recorded generation {}",
                        d.generation.unwrap_or(0),
                        witness.map_or(0, |w| w.generation)
                    ),
                };
                if !current {
                    report.damaged = Some(why);
                }
                let rebuilt = index::rebuild(&path, &hasher)?;
                report.notes.extend(rebuilt.damage.iter().cloned());
                if rebuilt.format2 {
                    report.lost.push("the packs are of format 2, which cannot be rebuilt from".into());
                } else if !rebuilt.exact {
                    for l in &rebuilt.lost {
                        report.lost.push(format!("the records {}: {}", describe_range(&l.lo, l.hi.as_deref()), l.why));
                    }
                    if report.lost.is_empty() {
                        report.lost.push(
                            "the pages rebuilt from the packs are not those of the newest commit (a commit \
                             record is damaged)"
                                .into(),
                        );
                    }
                } else if let (Some(w), Some((newest, _, _))) =
                    (witness.and_then(|w| w.seq.map(|s| (w, s))), rebuilt.newest)
                    && w.1 > newest
                {
                    report.lost.push(format!(
                        "the packs hold commits up to {newest}, but the last sync recorded commit {}: packs are \
                         missing or cut short",
                        w.1
                    ));
                }
                if !report.lost.is_empty() {
                    report.unopened =
                        Some("the directory cannot be rebuilt from the packs: nothing was changed".into());
                    return Ok(report);
                }
                let sled_generation = sled.as_ref().ok().and_then(|d| d.generation).unwrap_or(0);
                let generation = witness.map_or(0, |w| w.generation).max(rebuilt.generation).max(sled_generation);
                index::install(&path, &rebuilt, FORMAT_VERSION, generation)?;
                let seq = rebuilt.newest.map_or(0, |n| n.0);
                witness::write(&path, Witness { generation, seq: Some(seq) }, true)?;
                report.rebuilt = true;
                report.notes.push(format!(
                    "rebuilt the directory from {} pack files: {} pages (the old one is in sled.damaged/)",
                    rebuilt.packs,
                    rebuilt.pages.len()
                ));
            }
        }
    }
    b.read_only = false;
    match Store::open(b) {
        Ok(store) => {
            report.verify = Some(super::verify::run(&store, false, &mut ())?);
            Store::close(store)?;
        }
        Err(e) => report.unopened = Some(e.to_string()),
    }
    Ok(report)
}

/// Whether a store of this format needs no rebuild to be read (the current format, or the
/// older one it reads as it is).
fn current_format(format: Option<u32>) -> bool {
    format == Some(FORMAT_VERSION) || format == Some(FORMAT_READ_AS_IS)
}
