//! The commands: lookup, authentication and arity checks, `MULTI` queueing, and each
//! command's effect on the store and its reply.
//!
//! Invariant: a command either replies with exactly one RESP value or closes the
//! connection; every store write made by a client command holds the server's write lock
//! (so `EXEC`, which holds it throughout, is isolated from every other client's writes),
//! and a failed store write changes nothing and is reported as an `ERR` reply.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use pickleshelf::pickle::{self, Node};

use crate::db::{Db, Txn};
use crate::glob;
use crate::reply::Reply;
use crate::server::Shared;
use crate::values::{self, from_stored, to_stored};

/// A connection's state as commands see it.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: u64,
    pub(crate) addr: String,
    pub(crate) resp3: bool,
    pub(crate) authenticated: bool,
    pub(crate) name: Option<Bytes>,
    /// Commands queued since `MULTI`.
    pub(crate) multi: Option<Vec<Vec<Bytes>>>,
    /// A command refused while queueing: `EXEC` then discards the transaction.
    pub(crate) multi_failed: bool,
    /// Bytes of the arguments queued since `MULTI` (they count against the query buffer
    /// limit).
    pub(crate) queued_bytes: usize,
    /// Keys under `WATCH`, with their values' digests when watched.
    pub(crate) watched: Vec<(String, Option<pickleshelf::Digest>)>,
    /// A write was made since the replies were last sent (for `appendfsync always`).
    pub(crate) wrote: bool,
}

/// What the connection does after a command.
pub(crate) enum Flow {
    /// Go on reading requests.
    Continue,
    /// Send the replies, then close (`QUIT`, a refused request).
    Close,
    /// Stop the server (`SHUTDOWN`).
    Shutdown,
    /// A command whose work is linear in the store's size, run off the connection's
    /// thread: given `resp3`, it returns its encoded reply.
    Blocking(Box<dyn FnOnce(bool) -> Vec<u8> + Send>),
}

/// How a command is checked before it runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Reads only.
    Read,
    /// Writes the store: runs under the write lock.
    Write,
    /// Connection and server commands.
    Admin,
    /// Runs even before `AUTH` (`AUTH`, `HELLO`, `QUIT`).
    NoAuth,
    /// Transaction control, never queued (`MULTI`, `EXEC`, `DISCARD`, `WATCH`).
    Txn,
}

/// A command's name as Redis writes it in errors, its arity (exact when positive, at
/// least `-arity` when negative, counting the name) and kind.
fn spec(upper: &[u8]) -> Option<(&'static str, i32, Kind)> {
    use Kind::*;
    Some(match upper {
        b"GET" => ("get", 2, Read),
        b"SET" => ("set", -3, Write),
        b"SETNX" => ("setnx", 3, Write),
        b"SETEX" => ("setex", 4, Write),
        b"PSETEX" => ("psetex", 4, Write),
        b"MGET" => ("mget", -2, Read),
        b"MSET" => ("mset", -3, Write),
        b"MSETNX" => ("msetnx", -3, Write),
        b"DEL" => ("del", -2, Write),
        b"UNLINK" => ("unlink", -2, Write),
        b"EXISTS" => ("exists", -2, Read),
        b"TYPE" => ("type", 2, Read),
        b"STRLEN" => ("strlen", 2, Read),
        b"DBSIZE" => ("dbsize", 1, Read),
        b"KEYS" => ("keys", 2, Read),
        b"SCAN" => ("scan", -2, Read),
        b"INCR" => ("incr", 2, Write),
        b"DECR" => ("decr", 2, Write),
        b"INCRBY" => ("incrby", 3, Write),
        b"DECRBY" => ("decrby", 3, Write),
        b"EXPIRE" => ("expire", -3, Write),
        b"PEXPIRE" => ("pexpire", -3, Write),
        b"EXPIREAT" => ("expireat", -3, Write),
        b"PEXPIREAT" => ("pexpireat", -3, Write),
        b"TTL" => ("ttl", 2, Read),
        b"PTTL" => ("pttl", 2, Read),
        b"PERSIST" => ("persist", 2, Read),
        b"PING" => ("ping", -1, Admin),
        b"ECHO" => ("echo", 2, Admin),
        b"SELECT" => ("select", 2, Admin),
        b"CLIENT" => ("client", -2, Admin),
        b"COMMAND" => ("command", -1, Admin),
        b"CONFIG" => ("config", -2, Admin),
        b"INFO" => ("info", -1, Admin),
        b"SAVE" => ("save", 1, Admin),
        b"SHUTDOWN" => ("shutdown", -1, Admin),
        b"RESET" => ("reset", 1, Admin),
        b"AUTH" => ("auth", -2, NoAuth),
        b"HELLO" => ("hello", -1, NoAuth),
        b"QUIT" => ("quit", -1, NoAuth),
        b"MULTI" => ("multi", 1, Txn),
        b"EXEC" => ("exec", 1, Txn),
        b"DISCARD" => ("discard", 1, Txn),
        b"WATCH" => ("watch", -2, Txn),
        b"UNWATCH" => ("unwatch", 1, Admin),
        b"SHELF.CHECKPOINT" => ("shelf.checkpoint", -2, Write),
        b"SHELF.VERIFY" => ("shelf.verify", 1, Read),
        b"SHELF.STATS" => ("shelf.stats", 1, Read),
        b"SHELF.SYNC" => ("shelf.sync", 1, Admin),
        b"SHELF.GETPICKLE" => ("shelf.getpickle", 2, Read),
        b"SHELF.SETPICKLE" => ("shelf.setpickle", 3, Write),
        _ => return None,
    })
}

const EXPIRY: &str = "ERR per-key expiry is not supported by this server yet (SET EX/PX/EXAT/PXAT, SETEX, PSETEX, \
                      EXPIRE, PEXPIRE are refused; no key ever expires, so TTL answers -1): see docs/SERVER.md";
const NOT_INT: &str = "ERR value is not an integer or out of range";
const SYNTAX: &str = "ERR syntax error";

/// The uppercase form of a command name (at most 32 bytes; longer is no command).
fn upper(name: &[u8]) -> Option<([u8; 32], usize)> {
    let mut buf = [0u8; 32];
    if name.len() > buf.len() {
        return None;
    }
    for (b, n) in buf.iter_mut().zip(name) {
        *b = n.to_ascii_uppercase();
    }
    Some((buf, name.len()))
}

/// Redis's text for a command it does not know.
fn unknown_command(args: &[Bytes]) -> String {
    let lossy = |b: &[u8], max: usize| -> String { String::from_utf8_lossy(b).chars().take(max).collect() };
    let mut list = String::new();
    for a in &args[1..] {
        if list.len() >= 128 {
            break;
        }
        let room = 128 - list.len();
        list.push_str(&format!("'{}' ", lossy(a, room)));
    }
    format!("ERR unknown command '{}', with args beginning with: {list}", lossy(&args[0], 128))
}

fn unknown_subcommand(cmd: &str, sub: &[u8]) -> String {
    let sub: String = String::from_utf8_lossy(sub).chars().take(128).collect();
    format!("ERR unknown subcommand '{sub}'. Try {} HELP.", cmd.to_ascii_uppercase())
}

/// An integer argument, as Redis parses it.
fn int_arg(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok().and_then(|s| if s.starts_with('+') { None } else { s.parse().ok() })
}

fn store_error(e: &pickleshelf::Error) -> String {
    match e {
        pickleshelf::Error::ReadOnly { .. } => format!("READONLY {e}"),
        _ => format!("ERR {e}"),
    }
}

macro_rules! key {
    ($r:expr, $arg:expr) => {
        match values::key(&$arg) {
            Ok(k) => k,
            Err(msg) => {
                $r.error(&msg);
                return Flow::Continue;
            }
        }
    };
}

macro_rules! store {
    ($r:expr, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => {
                $r.error(&store_error(&e));
                return Flow::Continue;
            }
        }
    };
}

/// Runs one request. `out` receives the reply (or replies, for `EXEC`).
pub(crate) fn execute(sh: &Arc<Shared>, sess: &mut Session, args: Vec<Bytes>, out: &mut Vec<u8>) -> Flow {
    sh.stats.commands.fetch_add(1, Ordering::Relaxed);
    let mut r = Reply { out, resp3: sess.resp3 };
    let found = upper(&args[0]).and_then(|(buf, n)| spec(&buf[..n]).map(|s| (s, buf, n)));
    let Some(((name, arity, kind), buf, n)) = found else {
        if sess.multi.is_some() {
            sess.multi_failed = true;
        }
        if sh.config.password.is_some() && !sess.authenticated {
            r.error("NOAUTH Authentication required.");
        } else {
            r.error(&unknown_command(&args));
        }
        return Flow::Continue;
    };
    let upper_name = &buf[..n];
    if sh.config.password.is_some() && !sess.authenticated && kind != Kind::NoAuth {
        if sess.multi.is_some() {
            sess.multi_failed = true;
        }
        r.error("NOAUTH Authentication required.");
        return Flow::Continue;
    }
    let argc = args.len() as i32;
    if (arity > 0 && argc != arity) || argc < -arity {
        if sess.multi.is_some() {
            sess.multi_failed = true;
        }
        r.error(&format!("ERR wrong number of arguments for '{name}' command"));
        return Flow::Continue;
    }
    if sess.multi.is_some() && !matches!(upper_name, b"EXEC" | b"DISCARD" | b"MULTI" | b"WATCH" | b"QUIT" | b"RESET") {
        if let Some(q) = &mut sess.multi {
            sess.queued_bytes += args.iter().map(Bytes::len).sum::<usize>();
            q.push(args);
        }
        r.simple("QUEUED");
        return Flow::Continue;
    }
    match kind {
        Kind::Write => {
            let _w = sh.write_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut db = Db { shelf: &sh.shelf, txn: None };
            let flow = run(sh, sess, upper_name, &args, &mut db, &mut r);
            drop(_w);
            flow
        }
        Kind::Read => run(sh, sess, upper_name, &args, &mut Db { shelf: &sh.shelf, txn: None }, &mut r),
        _ => control(sh, sess, upper_name, &args, &mut r),
    }
}

/// Connection, server and transaction commands.
fn control(sh: &Arc<Shared>, sess: &mut Session, name: &[u8], args: &[Bytes], r: &mut Reply<'_>) -> Flow {
    match name {
        b"PING" => match args.get(1) {
            None => r.simple("PONG"),
            Some(m) if args.len() == 2 => r.bulk(m),
            Some(_) => r.error("ERR wrong number of arguments for 'ping' command"),
        },
        b"ECHO" => r.bulk(&args[1]),
        b"SELECT" => match int_arg(&args[1]) {
            Some(0) => r.ok(),
            Some(_) => r.error("ERR DB index is out of range"),
            None => r.error(NOT_INT),
        },
        b"QUIT" => {
            r.ok();
            return Flow::Close;
        }
        b"RESET" => {
            sess.multi = None;
            sess.multi_failed = false;
            sess.watched.clear();
            sess.resp3 = false;
            sess.name = None;
            sess.authenticated = sh.config.password.is_none();
            r.simple("RESET");
        }
        b"AUTH" => auth(sh, sess, args, r),
        b"HELLO" => hello(sh, sess, args, r),
        b"CLIENT" => client(sess, args, r),
        b"COMMAND" => match args.get(1).map(|a| a.to_ascii_uppercase()) {
            None => r.array_len(0),
            Some(s) if s == b"COUNT" => r.int(0),
            Some(s) if s == b"DOCS" => r.map_len(0),
            Some(s) if s == b"INFO" || s == b"LIST" => r.array_len(0),
            Some(_) => r.error(&unknown_subcommand("command", &args[1])),
        },
        b"CONFIG" => config(sh, args, r),
        b"INFO" => {
            let sh = Arc::clone(sh);
            let sections: Vec<String> = args[1..].iter().map(|a| String::from_utf8_lossy(a).to_lowercase()).collect();
            let clients = sh.clients.load(Ordering::Relaxed);
            return Flow::Blocking(Box::new(move |resp3| {
                let mut out = Vec::new();
                let mut r = Reply { out: &mut out, resp3 };
                match crate::info::info(&sh, &sections, clients) {
                    Ok(text) => r.verbatim(&text),
                    Err(e) => r.error(&store_error(&e)),
                }
                out
            }));
        }
        b"SAVE" | b"SHELF.SYNC" => {
            let shelf = sh.shelf.clone();
            return Flow::Blocking(Box::new(move |resp3| {
                let mut out = Vec::new();
                let mut r = Reply { out: &mut out, resp3 };
                match shelf.sync() {
                    Ok(()) => r.ok(),
                    Err(e) => r.error(&store_error(&e)),
                }
                out
            }));
        }
        b"SHUTDOWN" => {
            let mode = args.get(1).map(|a| a.to_ascii_uppercase());
            match mode.as_deref() {
                Some(b"ABORT") => r.error("ERR There is no shutdown in progress to abort"),
                None | Some(b"NOSAVE" | b"SAVE" | b"NOW" | b"FORCE") if args.len() <= 3 => {
                    log::info!("client {} asked to shut down", sess.addr);
                    return Flow::Shutdown;
                }
                _ => r.error(SYNTAX),
            }
        }
        b"MULTI" => {
            if sess.multi.is_some() {
                r.error("ERR MULTI calls can not be nested");
            } else {
                sess.multi = Some(Vec::new());
                sess.multi_failed = false;
                sess.queued_bytes = 0;
                r.ok();
            }
        }
        b"DISCARD" => {
            if sess.multi.take().is_some() {
                sess.watched.clear();
                r.ok();
            } else {
                r.error("ERR DISCARD without MULTI");
            }
        }
        b"WATCH" => {
            if sess.multi.is_some() {
                r.error("ERR WATCH inside MULTI is not allowed");
                return Flow::Continue;
            }
            for a in &args[1..] {
                let k = key!(r, a);
                let d = store!(r, sh.shelf.digest(k));
                sess.watched.push((k.to_owned(), d));
            }
            r.ok();
        }
        b"UNWATCH" => {
            sess.watched.clear();
            r.ok();
        }
        b"EXEC" => return exec(sh, sess, r),
        _ => r.error(&unknown_command(args)),
    }
    Flow::Continue
}

fn auth(sh: &Shared, sess: &mut Session, args: &[Bytes], r: &mut Reply<'_>) {
    let (user, pass) = match args.len() {
        2 => (None, &args[1]),
        3 => (Some(&args[1]), &args[2]),
        _ => return r.error(SYNTAX),
    };
    match check_password(sh, sess, user.map(|u| &u[..]), pass) {
        Ok(()) => r.ok(),
        Err(msg) => r.error(msg),
    }
}

/// Authenticates `sess` with (`user`, `pass`), logging a refusal.
fn check_password(sh: &Shared, sess: &mut Session, user: Option<&[u8]>, pass: &[u8]) -> Result<(), &'static str> {
    let Some(pw) = &sh.config.password else {
        // As Redis's default user without a password: any password for `default`.
        return match user {
            None => Err("ERR AUTH <password> called without any password configured for the default user. \
                         Are you sure your configuration is correct?"),
            Some(b"default") => Ok(()),
            Some(_) => Err("WRONGPASS invalid username-password pair or user is disabled."),
        };
    };
    if user.is_none_or(|u| u == b"default") && pw.matches(pass) {
        sess.authenticated = true;
        return Ok(());
    }
    sh.stats.auth_failures.fetch_add(1, Ordering::Relaxed);
    log::warn!("client {} (id {}): AUTH refused: wrong user name or password", sess.addr, sess.id);
    Err("WRONGPASS invalid username-password pair or user is disabled.")
}

fn hello(sh: &Shared, sess: &mut Session, args: &[Bytes], r: &mut Reply<'_>) {
    let mut proto = None;
    let mut i = 1;
    if let Some(v) = args.get(1) {
        match int_arg(v) {
            Some(p @ (2 | 3)) => proto = Some(p),
            Some(_) => return r.error("NOPROTO unsupported protocol version"),
            None => return r.error("ERR Protocol version is not an integer or out of range"),
        }
        i = 2;
    }
    let mut name = None;
    let mut authed = false;
    while i < args.len() {
        let opt = args[i].to_ascii_uppercase();
        if opt == b"AUTH" && i + 2 < args.len() {
            if let Err(msg) = check_password(sh, sess, Some(&args[i + 1]), &args[i + 2]) {
                return r.error(msg);
            }
            authed = true;
            i += 3;
        } else if opt == b"SETNAME" && i + 1 < args.len() {
            if !valid_name(&args[i + 1]) {
                return r.error("ERR Client names cannot contain spaces, newlines or special characters.");
            }
            name = Some(args[i + 1].clone());
            i += 2;
        } else {
            return r.error(&format!("ERR Syntax error in HELLO option '{}'", String::from_utf8_lossy(&args[i])));
        }
    }
    if sh.config.password.is_some() && !sess.authenticated && !authed {
        return r.error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> \
             AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol \
             version at the same time",
        );
    }
    if let Some(n) = name {
        sess.name = Some(n);
    }
    if let Some(p) = proto {
        sess.resp3 = p == 3;
        r.resp3 = sess.resp3;
    }
    r.map_len(8);
    r.bulk(b"server");
    r.bulk(b"redis");
    r.bulk(b"version");
    r.bulk(crate::REDIS_VERSION.as_bytes());
    r.bulk(b"proto");
    r.int(if sess.resp3 { 3 } else { 2 });
    r.bulk(b"id");
    r.int(sess.id as i64);
    r.bulk(b"mode");
    r.bulk(b"standalone");
    r.bulk(b"role");
    r.bulk(b"master");
    r.bulk(b"modules");
    r.array_len(0);
    r.bulk(b"pickleshelf");
    r.bulk(env!("CARGO_PKG_VERSION").as_bytes());
}

fn valid_name(n: &[u8]) -> bool {
    n.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

fn client(sess: &mut Session, args: &[Bytes], r: &mut Reply<'_>) {
    let sub = args[1].to_ascii_uppercase();
    match (&sub[..], args.len()) {
        (b"SETINFO", 4) => {
            let attr = args[2].to_ascii_uppercase();
            if attr == b"LIB-NAME" || attr == b"LIB-VER" {
                r.ok();
            } else {
                r.error(&format!("ERR Unrecognized option '{}'", String::from_utf8_lossy(&args[2])));
            }
        }
        (b"SETNAME", 3) => {
            if valid_name(&args[2]) {
                sess.name = if args[2].is_empty() { None } else { Some(args[2].clone()) };
                r.ok();
            } else {
                r.error("ERR Client names cannot contain spaces, newlines or special characters.");
            }
        }
        (b"GETNAME", 2) => r.bulk_or_null(sess.name.as_deref()),
        (b"ID", 2) => r.int(sess.id as i64),
        (b"INFO", 2) | (b"LIST", 2) => {
            let name = sess.name.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            let line = format!(
                "id={} addr={} name={} db=0 multi={} resp={}\n",
                sess.id,
                sess.addr,
                name,
                sess.multi.as_ref().map_or(-1, |q| q.len() as i64),
                if sess.resp3 { 3 } else { 2 }
            );
            r.verbatim(&line);
        }
        (b"NO-EVICT" | b"NO-TOUCH", 3) => r.ok(),
        (b"HELP", 2) => {
            let lines = ["CLIENT <subcommand>: SETINFO, SETNAME, GETNAME, ID, INFO, LIST, NO-EVICT, NO-TOUCH, HELP"];
            r.array_len(lines.len());
            for l in lines {
                r.simple(l);
            }
        }
        (b"SETINFO" | b"SETNAME" | b"GETNAME" | b"ID" | b"INFO" | b"LIST" | b"NO-EVICT" | b"NO-TOUCH" | b"HELP", _) => {
            r.error(&format!(
                "ERR wrong number of arguments for 'client|{}' command",
                String::from_utf8_lossy(&args[1]).to_lowercase()
            ))
        }
        _ => r.error(&unknown_subcommand("client", &args[1])),
    }
}

fn config(sh: &Shared, args: &[Bytes], r: &mut Reply<'_>) {
    let sub = args[1].to_ascii_uppercase();
    match &sub[..] {
        b"GET" if args.len() >= 3 => {
            let c = &sh.config;
            let params: [(&str, String); 9] = [
                ("save", String::new()),
                ("appendonly", "yes".into()),
                ("appendfsync", c.appendfsync.to_string()),
                ("maxclients", c.maxclients.to_string()),
                ("timeout", c.timeout.map_or(0, |t| t.as_secs()).to_string()),
                ("databases", "1".into()),
                ("proto-max-bulk-len", c.limits.max_bulk.to_string()),
                ("client-query-buffer-limit", c.query_buffer_limit.to_string()),
                ("requirepass", String::new()),
            ];
            let hits: Vec<&(&str, String)> = params
                .iter()
                .filter(|(p, _)| *p != "requirepass")
                .filter(|(p, _)| args[2..].iter().any(|pat| glob::matches(&pat.to_ascii_lowercase(), p.as_bytes())))
                .collect();
            r.map_len(hits.len());
            for (p, v) in hits {
                r.bulk(p.as_bytes());
                r.bulk(v.as_bytes());
            }
        }
        b"RESETSTAT" if args.len() == 2 => {
            sh.stats.reset();
            r.ok();
        }
        b"SET" => r.error("ERR CONFIG SET is not supported: settings are given when the server starts"),
        b"GET" | b"RESETSTAT" => r.error(&format!(
            "ERR wrong number of arguments for 'config|{}' command",
            String::from_utf8_lossy(&args[1]).to_lowercase()
        )),
        _ => r.error(&unknown_subcommand("config", &args[1])),
    }
}

/// `EXEC`: every queued command against one transaction, applied at once under the
/// write lock; nothing is written when a watched key changed or the write fails.
fn exec(sh: &Arc<Shared>, sess: &mut Session, r: &mut Reply<'_>) -> Flow {
    let Some(queue) = sess.multi.take() else {
        r.error("ERR EXEC without MULTI");
        return Flow::Continue;
    };
    let watched = std::mem::take(&mut sess.watched);
    if sess.multi_failed {
        sess.multi_failed = false;
        r.error("EXECABORT Transaction discarded because of previous errors.");
        return Flow::Continue;
    }
    let _w = sh.write_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for (k, d) in &watched {
        if store!(r, sh.shelf.digest(k)) != *d {
            r.null_array();
            return Flow::Continue;
        }
    }
    let mut txn = Txn::default();
    let mut replies = Vec::new();
    let mut flow = Flow::Continue;
    {
        let mut qr = Reply { out: &mut replies, resp3: sess.resp3 };
        for args in &queue {
            let Some((buf, n)) = upper(&args[0]) else { continue };
            let name = &buf[..n];
            match spec(name) {
                Some((_, _, Kind::Read | Kind::Write)) => {
                    let mut db = Db { shelf: &sh.shelf, txn: Some(&mut txn) };
                    if let Flow::Blocking(job) = run(sh, sess, name, args, &mut db, &mut qr) {
                        qr.out.extend(job(sess.resp3));
                    }
                }
                _ => match control(sh, sess, name, args, &mut qr) {
                    Flow::Blocking(job) => qr.out.extend(job(sess.resp3)),
                    Flow::Continue => {}
                    other => flow = other,
                },
            }
        }
    }
    let wrote = txn.wrote();
    if let Err(e) = txn.commit(&sh.shelf) {
        r.error(&format!("EXECABORT transaction failed and nothing of it was written: {e}"));
        return Flow::Continue;
    }
    if wrote {
        sh.syncer.wrote();
        sess.wrote = true;
    }
    r.array_len(queue.len());
    r.out.extend_from_slice(&replies);
    flow
}

/// The keyspace commands, against `db` (the store, or a transaction).
fn run(sh: &Arc<Shared>, sess: &mut Session, name: &[u8], args: &[Bytes], db: &mut Db<'_>, r: &mut Reply<'_>) -> Flow {
    let flow = keyspace(sh, name, args, db, r);
    // A command run off the connection's thread counts its own writes, once made.
    if spec(name).is_some_and(|(_, _, k)| k == Kind::Write) && db.txn.is_none() && !matches!(flow, Flow::Blocking(_)) {
        sh.syncer.wrote();
        sess.wrote = true;
    }
    flow
}

fn keyspace(sh: &Arc<Shared>, name: &[u8], args: &[Bytes], db: &mut Db<'_>, r: &mut Reply<'_>) -> Flow {
    match name {
        b"GET" => {
            let k = key!(r, args[1]);
            let v = store!(r, db.get(k));
            let counter = if v.is_some() { &sh.stats.hits } else { &sh.stats.misses };
            counter.fetch_add(1, Ordering::Relaxed);
            r.bulk_or_null(v.map(from_stored).as_deref());
        }
        b"SHELF.GETPICKLE" => {
            let k = key!(r, args[1]);
            r.bulk_or_null(store!(r, db.get(k)).as_deref());
        }
        b"SHELF.SETPICKLE" => {
            let k = key!(r, args[1]);
            if let Err(e) = pickle::check(&args[2]) {
                r.error(&format!("ERR value is not a valid pickle, nothing was stored: {e}"));
                return Flow::Continue;
            }
            store!(r, db.put(k, &args[2]));
            r.ok();
        }
        b"SET" => return set(args, db, r),
        b"SETNX" => {
            let k = key!(r, args[1]);
            if store!(r, db.exists(k)) {
                r.int(0);
            } else {
                store!(r, db.put(k, &to_stored(&args[2])));
                r.int(1);
            }
        }
        b"SETEX" | b"PSETEX" | b"EXPIRE" | b"PEXPIRE" | b"EXPIREAT" | b"PEXPIREAT" => r.error(EXPIRY),
        b"TTL" | b"PTTL" => {
            let k = key!(r, args[1]);
            r.int(if store!(r, db.exists(k)) { -1 } else { -2 });
        }
        b"PERSIST" => {
            let k = key!(r, args[1]);
            store!(r, db.exists(k));
            r.int(0);
        }
        b"MGET" => {
            let mut keys = Vec::with_capacity(args.len() - 1);
            for a in &args[1..] {
                keys.push(key!(r, a));
            }
            let mut vals = Vec::with_capacity(keys.len());
            for k in keys {
                vals.push(store!(r, db.get(k)).map(from_stored));
            }
            r.array_len(vals.len());
            for v in vals {
                r.bulk_or_null(v.as_deref());
            }
        }
        b"MSET" | b"MSETNX" => {
            if args.len().is_multiple_of(2) {
                r.error(&format!(
                    "ERR wrong number of arguments for '{}' command",
                    String::from_utf8_lossy(name).to_lowercase()
                ));
                return Flow::Continue;
            }
            let mut items: Vec<(&str, Cow<'_, [u8]>)> = Vec::with_capacity(args.len() / 2);
            for pair in args[1..].chunks(2) {
                items.push((key!(r, pair[0]), to_stored(&pair[1])));
            }
            if name == b"MSETNX" {
                for (k, _) in &items {
                    if store!(r, db.exists(k)) {
                        r.int(0);
                        return Flow::Continue;
                    }
                }
            }
            let refs: Vec<(&str, &[u8])> = items.iter().map(|(k, v)| (*k, &**v)).collect();
            store!(r, db.put_many(&refs));
            if name == b"MSET" { r.ok() } else { r.int(1) }
        }
        b"DEL" | b"UNLINK" => {
            let mut keys = Vec::with_capacity(args.len() - 1);
            for a in &args[1..] {
                keys.push(key!(r, a));
            }
            r.int(store!(r, db.del_many(&keys)));
        }
        b"EXISTS" => {
            let mut n = 0;
            for a in &args[1..] {
                let k = key!(r, a);
                n += i64::from(store!(r, db.exists(k)));
            }
            r.int(n);
        }
        b"TYPE" => {
            let k = key!(r, args[1]);
            r.simple(if store!(r, db.exists(k)) { "string" } else { "none" });
        }
        b"STRLEN" => {
            let k = key!(r, args[1]);
            r.int(store!(r, db.get(k)).map_or(0, |v| values::value_len(&v)) as i64);
        }
        b"INCR" | b"DECR" | b"INCRBY" | b"DECRBY" => {
            let k = key!(r, args[1]);
            let by = match name {
                b"INCR" => 1,
                b"DECR" => -1,
                _ => match int_arg(&args[2]) {
                    Some(v) if name == b"INCRBY" => v,
                    Some(v) => match v.checked_neg() {
                        Some(v) => v,
                        None => {
                            r.error("ERR decrement would overflow");
                            return Flow::Continue;
                        }
                    },
                    None => {
                        r.error(NOT_INT);
                        return Flow::Continue;
                    }
                },
            };
            let current = store!(r, db.get(k));
            match incr(current.as_deref(), by) {
                Ok((n, stored)) => {
                    store!(r, db.put(k, &stored));
                    r.int(n);
                }
                Err(msg) => r.error(msg),
            }
        }
        b"DBSIZE" | b"KEYS" | b"SCAN" | b"SHELF.VERIFY" | b"SHELF.STATS" | b"SHELF.CHECKPOINT" => {
            return crate::scans::run(sh, name, args, db, r);
        }
        _ => r.error(&unknown_command(args)),
    }
    Flow::Continue
}

/// `SET key value [NX|XX] [GET] [KEEPTTL]` (`EX`/`PX`/`EXAT`/`PXAT` are refused).
fn set(args: &[Bytes], db: &mut Db<'_>, r: &mut Reply<'_>) -> Flow {
    let k = key!(r, args[1]);
    let (mut nx, mut xx, mut get) = (false, false, false);
    let mut i = 3;
    while i < args.len() {
        let opt = args[i].to_ascii_uppercase();
        match &opt[..] {
            b"NX" if !xx => nx = true,
            b"XX" if !nx => xx = true,
            b"GET" => get = true,
            b"KEEPTTL" => {}
            b"EX" | b"PX" | b"EXAT" | b"PXAT" if i + 1 < args.len() => {
                r.error(EXPIRY);
                return Flow::Continue;
            }
            _ => {
                r.error(SYNTAX);
                return Flow::Continue;
            }
        }
        i += 1;
    }
    let old = if get { store!(r, db.get(k)) } else { None };
    let exists = if get {
        old.is_some()
    } else if nx || xx {
        store!(r, db.exists(k))
    } else {
        false
    };
    let write = !(nx && exists || xx && !exists);
    if write {
        store!(r, db.put(k, &to_stored(&args[2])));
    }
    match (get, write) {
        (true, _) => r.bulk_or_null(old.map(from_stored).as_deref()),
        (false, true) => r.ok(),
        (false, false) => r.null(),
    }
    Flow::Continue
}

/// The new value of a counter: a pickled int stays a pickled int (a missing key becomes
/// one), a raw decimal value stays raw decimal text.
fn incr(current: Option<&[u8]>, by: i64) -> Result<(i64, Vec<u8>), &'static str> {
    const OVERFLOW: &str = "ERR increment or decrement would overflow";
    match current {
        None => Ok((by, pickle::to_vec(&by).map_err(|_| NOT_INT)?)),
        Some(stored) => {
            if let Some(text) = values::unwrapped(stored) {
                let n = if text.len() <= 20 { crate::parse::parse_int(text) } else { None }.ok_or(NOT_INT)?;
                let n = n.checked_add(by).ok_or(OVERFLOW)?;
                return Ok((n, values::wrap(n.to_string().as_bytes())));
            }
            let v = pickle::decode(stored).map_err(|_| NOT_INT)?;
            match v.root_node() {
                Node::Int(n) => {
                    let n = n.checked_add(by).ok_or(OVERFLOW)?;
                    Ok((n, pickle::to_vec(&n).map_err(|_| NOT_INT)?))
                }
                _ => Err(NOT_INT),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn counters() {
        let (n, p) = incr(None, 5).unwrap();
        assert_eq!((n, pickle::from_slice::<i64>(&p).unwrap()), (5, 5));
        let (n, p) = incr(Some(&p), -7).unwrap();
        assert_eq!((n, pickle::from_slice::<i64>(&p).unwrap()), (-2, -2));
        let (n, p) = incr(Some(&values::wrap(b"41")), 1).unwrap();
        assert_eq!((n, from_stored(p)), (42, b"42".to_vec()));
        assert_eq!(incr(Some(&values::wrap(b"x")), 1).unwrap_err(), NOT_INT);
        assert_eq!(incr(Some(&values::wrap(b"01")), 1).unwrap_err(), NOT_INT);
        assert_eq!(incr(Some(&pickle::to_vec(&"s").unwrap()), 1).unwrap_err(), NOT_INT);
        assert!(incr(Some(&pickle::to_vec(&i64::MAX).unwrap()), 1).unwrap_err().contains("overflow"));
    }

    #[test]
    fn unknown_command_text() {
        let args: Vec<Bytes> = ["FOO", "a", "b"].iter().map(|s| Bytes::from(s.as_bytes().to_vec())).collect();
        assert_eq!(unknown_command(&args), "ERR unknown command 'FOO', with args beginning with: 'a' 'b' ");
    }
}
