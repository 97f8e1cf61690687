//! The witness file, `WITNESS`: the generation (and the newest commit's sequence number)
//! of the store at its last sync, kept outside sled so that a store whose sled files come
//! back older than that sync is detected at open, and a directory rebuilt from the packs
//! can be checked against it.
//!
//! Invariant: the file is replaced atomically (written under another name, fsynced,
//! renamed, the directory fsynced), after the state it describes is durable.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use crate::error::{Error, Result};

const WITNESS: &str = "WITNESS";

/// What `WITNESS` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Witness {
    /// The store's generation at its last sync.
    pub(crate) generation: u64,
    /// The sequence number of the directory's newest page then (absent in the witness
    /// files of format 2 stores).
    pub(crate) seq: Option<u64>,
}

/// Reads the witness of the store in `dir`: `None` when there is none.
///
/// # Errors
/// [`Error::Corrupted`] for a file that cannot be parsed, [`Error::Io`].
pub(crate) fn read(dir: &Path) -> Result<Option<Witness>> {
    let path = dir.join(WITNESS);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Io { path, source: e }),
    };
    let text = String::from_utf8_lossy(&bytes);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .map(|v| v.trim().parse::<u64>())
    };
    let generation = match field("generation") {
        Some(Ok(g)) if text.starts_with("pickleshelf witness\n") => g,
        _ => return Err(damaged(dir)),
    };
    let seq = match field("seq") {
        Some(Ok(s)) => Some(s),
        Some(Err(_)) => return Err(damaged(dir)),
        None => None,
    };
    Ok(Some(Witness { generation, seq }))
}

fn damaged(dir: &Path) -> Error {
    Error::Corrupted {
        what: format!("witness file {}", dir.join(WITNESS).display()),
        reason: format!(
            "unreadable (run `pickleshelf repair {}` to check the store and rewrite it, or open with \
             `allow_rollback(true)` — `--allow-rollback` on the command line — to reset it)",
            dir.display()
        ),
    }
}

/// Replaces the witness of the store in `dir` (fsyncing with `fsync`).
///
/// # Errors
/// [`Error::Io`].
pub(crate) fn write(dir: &Path, w: Witness, fsync: bool) -> Result<()> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| Error::Io { path: p, source }
    };
    let tmp = dir.join("WITNESS.tmp");
    let path = dir.join(WITNESS);
    let mut text = format!("pickleshelf witness\ngeneration {}\n", w.generation);
    if let Some(s) = w.seq {
        text.push_str(&format!("seq {s}\n"));
    }
    let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(text.as_bytes()).map_err(io(&tmp))?;
    if fsync {
        f.sync_all().map_err(io(&tmp))?;
    }
    drop(f);
    fs::rename(&tmp, &path).map_err(io(&path))?;
    if fsync {
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn witness_round_trips_and_damage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let w = Witness { generation: 7, seq: Some(42) };
        write(dir.path(), w, false).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(w));
        fs::write(dir.path().join(WITNESS), "pickleshelf witness\ngeneration 3\n").unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(Witness { generation: 3, seq: None }));
        for bad in ["pickleshelf witness\ngeneration \u{ff}3\n", "pickleshelf witnesz\ngeneration 3\n", ""] {
            fs::write(dir.path().join(WITNESS), bad).unwrap();
            let e = read(dir.path()).unwrap_err().to_string();
            assert!(e.contains("--allow-rollback") && e.contains("pickleshelf repair"), "{e}");
        }
    }
}
