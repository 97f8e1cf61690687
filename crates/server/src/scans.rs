//! Commands whose work grows with the store: `DBSIZE`, `KEYS`, `SCAN`, and the store's
//! own `SHELF.*` commands (checkpoints, verify, stats). Outside a transaction they run
//! off the connection's thread ([`Flow::Blocking`]), so they never hold up other clients.
//!
//! Invariant: a `SCAN` cursor names the key after which the next call resumes (kept in
//! a bounded table: a cursor evicted from it is an `ERR invalid cursor`); every key
//! present from a full iteration's start to its end is returned at least once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, PoisonError};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use pickleshelf::{ChangeKind, Shelf};

use crate::commands::Flow;
use crate::db::Db;
use crate::glob;
use crate::reply::Reply;
use crate::server::Shared;

/// Most `SCAN` cursors kept at once; the oldest go first.
const MAX_CURSORS: usize = 10_000;

/// Where live `SCAN` iterations resume.
#[derive(Default)]
pub(crate) struct Cursors {
    next: u64,
    resume: HashMap<u64, String>,
    order: VecDeque<u64>,
}

impl Cursors {
    fn add(&mut self, from: String) -> u64 {
        self.next += 1;
        let id = self.next;
        self.resume.insert(id, from);
        self.order.push_back(id);
        while self.order.len() > MAX_CURSORS {
            if let Some(old) = self.order.pop_front() {
                self.resume.remove(&old);
            }
        }
        id
    }
}

fn store_error(e: &pickleshelf::Error) -> String {
    format!("ERR {e}")
}

/// The reply `f` makes, in the protocol the connection uses.
fn encoded(resp3: bool, f: impl FnOnce(&mut Reply<'_>)) -> Vec<u8> {
    let mut out = Vec::new();
    f(&mut Reply { out: &mut out, resp3 });
    out
}

/// The valid UTF-8 start of `pattern`'s literal prefix.
fn prefix_of(pattern: &[u8]) -> String {
    let lit = glob::literal_prefix(pattern);
    match std::str::from_utf8(lit) {
        Ok(s) => s.to_owned(),
        Err(e) => String::from_utf8_lossy(&lit[..e.valid_up_to()]).into_owned(),
    }
}

pub(crate) fn run(sh: &Arc<Shared>, name: &[u8], args: &[Bytes], db: &mut Db<'_>, r: &mut Reply<'_>) -> Flow {
    if let Some(txn) = db.txn.as_deref() {
        // Inside EXEC: the transaction's own writes count too, and nothing blocks.
        match name {
            b"DBSIZE" => {
                let mut n = match sh.shelf.len() {
                    Ok(n) => n as i64,
                    Err(e) => return reply_err(r, &e),
                };
                for (k, v) in txn.overlay() {
                    let before = match sh.shelf.contains_key(k) {
                        Ok(b) => b,
                        Err(e) => return reply_err(r, &e),
                    };
                    n += i64::from(v.is_some()) - i64::from(before);
                }
                r.int(n);
            }
            b"KEYS" => {
                let pattern = &args[1];
                let mut keys: std::collections::BTreeSet<String> = match keys(&sh.shelf, pattern) {
                    Ok(k) => k.into_iter().collect(),
                    Err(e) => return reply_err(r, &e),
                };
                for (k, v) in txn.overlay() {
                    if v.is_some() && glob::matches(pattern, k.as_bytes()) {
                        keys.insert(k.clone());
                    } else if v.is_none() {
                        keys.remove(k);
                    }
                }
                r.array_len(keys.len());
                for k in keys {
                    r.bulk(k.as_bytes());
                }
            }
            b"SHELF.CHECKPOINT" => r.error("ERR SHELF.CHECKPOINT cannot run inside MULTI"),
            _ => {
                if let Flow::Blocking(job) = blocking(sh, name, args, r) {
                    r.out.extend(job(r.resp3));
                }
            }
        }
        return Flow::Continue;
    }
    blocking(sh, name, args, r)
}

fn reply_err(r: &mut Reply<'_>, e: &pickleshelf::Error) -> Flow {
    r.error(&store_error(e));
    Flow::Continue
}

fn keys(shelf: &Shelf, pattern: &[u8]) -> pickleshelf::Result<Vec<String>> {
    let mut out = Vec::new();
    for k in shelf.keys_with_prefix(&prefix_of(pattern)) {
        let k = k?;
        if glob::matches(pattern, k.as_bytes()) {
            out.push(k);
        }
    }
    Ok(out)
}

fn blocking(sh: &Arc<Shared>, name: &[u8], args: &[Bytes], r: &mut Reply<'_>) -> Flow {
    let sh = Arc::clone(sh);
    let args = args.to_vec();
    match name {
        b"DBSIZE" => Flow::Blocking(Box::new(move |resp3| {
            encoded(resp3, |r| match sh.shelf.len() {
                Ok(n) => r.int(n as i64),
                Err(e) => r.error(&store_error(&e)),
            })
        })),
        b"KEYS" => Flow::Blocking(Box::new(move |resp3| {
            encoded(resp3, |r| match keys(&sh.shelf, &args[1]) {
                Ok(keys) => {
                    r.array_len(keys.len());
                    for k in keys {
                        r.bulk(k.as_bytes());
                    }
                }
                Err(e) => r.error(&store_error(&e)),
            })
        })),
        b"SCAN" => scan(sh, args, r),
        b"SHELF.VERIFY" => Flow::Blocking(Box::new(move |resp3| {
            encoded(resp3, |r| match sh.shelf.verify() {
                Ok(rep) => {
                    r.map_len(7);
                    r.bulk(b"ok");
                    r.int(i64::from(rep.is_ok()));
                    for (k, v) in [
                        ("keys", rep.keys),
                        ("objects", rep.objects),
                        ("files", rep.files),
                        ("checkpoints", rep.checkpoints),
                        ("pages", rep.pages),
                    ] {
                        r.bulk(k.as_bytes());
                        r.int(v as i64);
                    }
                    r.bulk(b"problems");
                    r.array_len(rep.problems.len());
                    for p in &rep.problems {
                        r.bulk(p.as_bytes());
                    }
                }
                Err(e) => r.error(&store_error(&e)),
            })
        })),
        b"SHELF.STATS" => Flow::Blocking(Box::new(move |resp3| {
            encoded(resp3, |r| match sh.shelf.stats() {
                Ok(s) => {
                    let fields = [
                        ("format_version", u64::from(s.format_version)),
                        ("generation", s.generation),
                        ("keys", s.keys),
                        ("memo_entries", s.memo_entries),
                        ("inline_values", s.inline_values),
                        ("objects", s.objects),
                        ("checkpoints", s.checkpoints),
                        ("logical_bytes", s.logical_bytes),
                        ("unique_bytes", s.unique_bytes),
                        ("stored_bytes", s.stored_bytes),
                        ("disk_bytes", s.disk_bytes),
                    ];
                    r.map_len(fields.len());
                    for (k, v) in fields {
                        r.bulk(k.as_bytes());
                        r.int(v as i64);
                    }
                }
                Err(e) => r.error(&store_error(&e)),
            })
        })),
        b"SHELF.CHECKPOINT" => checkpoint(sh, args, r),
        _ => {
            r.error("ERR unknown command");
            Flow::Continue
        }
    }
}

/// `SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]`.
fn scan(sh: Arc<Shared>, args: Vec<Bytes>, r: &mut Reply<'_>) -> Flow {
    let Some(cursor) = std::str::from_utf8(&args[1]).ok().and_then(|s| s.parse::<u64>().ok()) else {
        r.error("ERR invalid cursor");
        return Flow::Continue;
    };
    let (mut pattern, mut count, mut only_strings) = (None, 10usize, true);
    let mut i = 2;
    while i < args.len() {
        let opt = args[i].to_ascii_uppercase();
        let Some(val) = args.get(i + 1) else {
            r.error("ERR syntax error");
            return Flow::Continue;
        };
        match &opt[..] {
            b"MATCH" => pattern = Some(val.clone()),
            b"COUNT" => match std::str::from_utf8(val).ok().and_then(|s| s.parse::<i64>().ok()) {
                Some(n) if n >= 1 => count = n as usize,
                Some(_) => {
                    r.error("ERR syntax error");
                    return Flow::Continue;
                }
                None => {
                    r.error("ERR value is not an integer or out of range");
                    return Flow::Continue;
                }
            },
            b"TYPE" => only_strings = val.eq_ignore_ascii_case(b"string"),
            _ => {
                r.error("ERR syntax error");
                return Flow::Continue;
            }
        }
        i += 2;
    }
    let from = if cursor == 0 {
        String::new()
    } else {
        match sh.cursors.lock().unwrap_or_else(PoisonError::into_inner).resume.get(&cursor) {
            Some(f) => f.clone(),
            None => {
                r.error("ERR invalid cursor");
                return Flow::Continue;
            }
        }
    };
    Flow::Blocking(Box::new(move |resp3| {
        let prefix = pattern.as_deref().map(prefix_of).unwrap_or_default();
        let mut found = Vec::new();
        let mut last = None;
        let mut seen = 0;
        for k in sh.shelf.keys_with_prefix_from(&prefix, &from) {
            let k = match k {
                Ok(k) => k,
                Err(e) => return encoded(resp3, |r| r.error(&store_error(&e))),
            };
            seen += 1;
            if only_strings && pattern.as_deref().is_none_or(|p| glob::matches(p, k.as_bytes())) {
                found.push(k.clone());
            }
            if seen == count {
                last = Some(k);
                break;
            }
        }
        let next = match last {
            // Resume just after the last key examined.
            Some(mut k) => {
                k.push('\0');
                sh.cursors.lock().unwrap_or_else(PoisonError::into_inner).add(k)
            }
            None => 0,
        };
        encoded(resp3, |r| {
            r.array_len(2);
            r.bulk(next.to_string().as_bytes());
            r.array_len(found.len());
            for k in found {
                r.bulk(k.as_bytes());
            }
        })
    }))
}

/// Runs a store write under the server's write lock and counts it for the syncer.
fn locked<T>(sh: &Shared, write: impl FnOnce() -> pickleshelf::Result<T>) -> pickleshelf::Result<T> {
    let _w = sh.write_lock.lock().unwrap_or_else(PoisonError::into_inner);
    let result = write();
    sh.syncer.wrote();
    result
}

fn millis(t: std::time::SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// `SHELF.CHECKPOINT CREATE name | LIST | RESTORE name | DIFF from [to] | DELETE name`.
fn checkpoint(sh: Arc<Shared>, args: Vec<Bytes>, r: &mut Reply<'_>) -> Flow {
    let sub = args[1].to_ascii_uppercase();
    let arity_ok = match &sub[..] {
        b"LIST" => args.len() == 2,
        b"CREATE" | b"RESTORE" | b"DELETE" => args.len() == 3,
        b"DIFF" => args.len() == 3 || args.len() == 4,
        b"HELP" => {
            let lines = [
                "SHELF.CHECKPOINT CREATE <name>: record every key's value under <name>",
                "SHELF.CHECKPOINT LIST: the checkpoints, with their time (Unix ms), keys and bytes",
                "SHELF.CHECKPOINT DIFF <from> [<to>]: keys changed from <from> to <to> (default: now), as [+|-|~, key]",
                "SHELF.CHECKPOINT RESTORE <name>: put every key back as it was, atomically",
                "SHELF.CHECKPOINT DELETE <name>: delete a checkpoint",
            ];
            r.array_len(lines.len());
            for l in lines {
                r.simple(l);
            }
            return Flow::Continue;
        }
        _ => {
            r.error(&format!(
                "ERR unknown subcommand '{}'. Try SHELF.CHECKPOINT HELP.",
                String::from_utf8_lossy(&args[1]).chars().take(128).collect::<String>()
            ));
            return Flow::Continue;
        }
    };
    if !arity_ok {
        r.error(&format!(
            "ERR wrong number of arguments for 'shelf.checkpoint|{}' command",
            String::from_utf8_lossy(&args[1]).to_lowercase()
        ));
        return Flow::Continue;
    }
    let mut names = Vec::new();
    for a in &args[2..] {
        match std::str::from_utf8(a) {
            Ok(s) => names.push(s.to_owned()),
            Err(_) => {
                r.error("ERR checkpoint names are UTF-8 text");
                return Flow::Continue;
            }
        }
    }
    Flow::Blocking(Box::new(move |resp3| {
        let shelf = &sh.shelf;
        encoded(resp3, |r| {
            let result = match &sub[..] {
                b"LIST" => shelf.checkpoints().map(|list| {
                    r.array_len(list.len());
                    for c in list {
                        r.map_len(4);
                        r.bulk(b"name");
                        r.bulk(c.name.as_bytes());
                        r.bulk(b"created_ms");
                        r.int(millis(c.created));
                        r.bulk(b"keys");
                        r.int(c.keys as i64);
                        r.bulk(b"bytes");
                        r.int(c.bytes as i64);
                    }
                }),
                b"CREATE" => locked(&sh, || shelf.checkpoint(&names[0])).map(|c| {
                    r.map_len(2);
                    r.bulk(b"keys");
                    r.int(c.keys as i64);
                    r.bulk(b"bytes");
                    r.int(c.bytes as i64);
                }),
                b"RESTORE" => locked(&sh, || shelf.restore(&names[0])).map(|changes| r.int(changes.len() as i64)),
                b"DELETE" => {
                    locked(&sh, || shelf.delete_checkpoint(&names[0])).map(|existed| r.int(i64::from(existed)))
                }
                _ => {
                    let changes = if names.len() == 2 {
                        shelf.diff(&names[0], &names[1])
                    } else {
                        shelf.changes_since(&names[0])
                    };
                    changes.map(|changes| {
                        r.array_len(changes.len());
                        for c in changes {
                            r.array_len(2);
                            r.bulk(match c.kind {
                                ChangeKind::Added => b"+",
                                ChangeKind::Removed => b"-",
                                ChangeKind::Changed => b"~",
                            });
                            r.bulk(c.key.as_bytes());
                        }
                    })
                }
            };
            if let Err(e) = result {
                r.out.clear();
                r.error(&store_error(&e));
            }
        })
    }))
}
