//! The commands, each checked against its reply and the store's state: values kept byte
//! for byte, pickles stored as themselves, keys, counters, transactions all-or-nothing,
//! SCAN, errors with Redis's texts, and what nothing stored may suffer from bad input.
#![allow(clippy::unwrap_used)]

mod common;

use common::TestServer;
use pickleshelf_server::{Config, RemoteShelf, Resp, ServerError};

fn bulk(b: &[u8]) -> Resp {
    Resp::Bulk(b.to_vec())
}

fn ok() -> Resp {
    Resp::Simple("OK".into())
}

fn err(r: Result<Resp, ServerError>) -> String {
    match r {
        Err(ServerError::Reply(e)) => e,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

#[test]
fn values_come_back_byte_for_byte_and_pickles_are_objects() {
    let s = TestServer::start(Config::new());
    let c = RemoteShelf::connect(&s.url()).unwrap();
    let all: Vec<u8> = (0..=255).collect();
    let pickled_dict = pickleshelf::pickle::to_vec(&std::collections::BTreeMap::from([("a", 1i64)])).unwrap();
    let looks_wrapped = pickleshelf_server::values::wrap(b"x");
    for (k, v) in [
        ("raw", &b"hello"[..]),
        ("empty", b""),
        ("binary", &all),
        ("pickle", &pickled_dict),
        ("looks-wrapped", &looks_wrapped),
        ("crlf", b"a\r\nb"),
    ] {
        assert_eq!(c.command(&[b"SET", k.as_bytes(), v]).unwrap(), ok());
        assert_eq!(c.command(&[b"GET", k.as_bytes()]).unwrap(), bulk(v), "{k}");
        assert_eq!(c.command(&[b"STRLEN", k.as_bytes()]).unwrap(), Resp::Int(v.len() as i64));
    }
    // In the store: the pickle as itself, raw bytes as a Python bytes object.
    assert_eq!(s.shelf.get_pickle("pickle").unwrap().unwrap(), pickled_dict);
    let raw = s.shelf.get_value("raw").unwrap().unwrap();
    assert!(matches!(raw.root_node(), pickleshelf::pickle::Node::Bytes(b) if b == b"hello"));
    let again = s.shelf.get_value("looks-wrapped").unwrap().unwrap();
    assert!(matches!(again.root_node(), pickleshelf::pickle::Node::Bytes(b) if *b == looks_wrapped));
    // What the store holds, the server serves.
    s.shelf.insert("from-rust", &vec![1.5f64, 2.5]).unwrap();
    let got = c.command(&[b"GET", b"from-rust"]).unwrap();
    assert_eq!(got, bulk(&pickleshelf::pickle::to_vec(&vec![1.5f64, 2.5]).unwrap()));
}

#[test]
fn set_options_and_string_commands() {
    let s = TestServer::start(Config::new());
    let c = RemoteShelf::connect(&s.url()).unwrap();
    assert_eq!(c.command(&[b"SET", b"k", b"1", b"NX"]).unwrap(), ok());
    assert_eq!(c.command(&[b"SET", b"k", b"2", b"NX"]).unwrap(), Resp::Null);
    assert_eq!(c.command(&[b"SET", b"k", b"3", b"XX", b"GET"]).unwrap(), bulk(b"1"));
    assert_eq!(c.command(&[b"SET", b"nope", b"3", b"XX"]).unwrap(), Resp::Null);
    assert_eq!(c.command(&[b"SETNX", b"k", b"9"]).unwrap(), Resp::Int(0));
    assert_eq!(c.command(&[b"SETNX", b"k2", b"9"]).unwrap(), Resp::Int(1));
    assert_eq!(err(c.command(&[b"SET", b"k", b"1", b"NX", b"XX"])), "ERR syntax error");
    for cmd in [&[&b"SET"[..], b"k", b"v", b"EX", b"10"][..], &[b"SETEX", b"k", b"10", b"v"], &[b"EXPIRE", b"k", b"5"]]
    {
        assert!(err(c.command(cmd)).contains("per-key expiry is not supported"), "{cmd:?}");
    }
    assert_eq!(c.command(&[b"GET", b"k"]).unwrap(), bulk(b"3"), "a refused SET EX changed nothing");
    assert_eq!(c.command(&[b"TTL", b"k"]).unwrap(), Resp::Int(-1));
    assert_eq!(c.command(&[b"PTTL", b"missing"]).unwrap(), Resp::Int(-2));
    assert_eq!(c.command(&[b"PERSIST", b"k"]).unwrap(), Resp::Int(0));
    assert_eq!(c.command(&[b"MSET", b"a", b"1", b"b", b"2"]).unwrap(), ok());
    assert_eq!(
        c.command(&[b"MGET", b"a", b"zz", b"b"]).unwrap(),
        Resp::Array(vec![bulk(b"1"), Resp::Null, bulk(b"2")])
    );
    assert_eq!(c.command(&[b"MSETNX", b"a", b"x", b"new", b"y"]).unwrap(), Resp::Int(0));
    assert_eq!(c.command(&[b"EXISTS", b"new", b"a", b"a"]).unwrap(), Resp::Int(2));
    assert_eq!(c.command(&[b"TYPE", b"a"]).unwrap(), Resp::Simple("string".into()));
    assert_eq!(c.command(&[b"TYPE", b"zz"]).unwrap(), Resp::Simple("none".into()));
    assert_eq!(c.command(&[b"DEL", b"a", b"b", b"a", b"zz"]).unwrap(), Resp::Int(2));
    assert_eq!(c.command(&[b"UNLINK", b"k2"]).unwrap(), Resp::Int(1));
    assert_eq!(c.command(&[b"DBSIZE"]).unwrap(), Resp::Int(1));
    assert_eq!(err(c.command(&[b"MSET", b"a"])), "ERR wrong number of arguments for 'mset' command");
    assert_eq!(err(c.command(&[b"GET"])), "ERR wrong number of arguments for 'get' command");
}

#[test]
fn counters_are_pickled_ints_or_decimal_text() {
    let s = TestServer::start(Config::new());
    let c = RemoteShelf::connect(&s.url()).unwrap();
    assert_eq!(c.command(&[b"INCR", b"n"]).unwrap(), Resp::Int(1));
    assert_eq!(c.command(&[b"INCRBY", b"n", b"41"]).unwrap(), Resp::Int(42));
    assert_eq!(c.command(&[b"DECRBY", b"n", b"2"]).unwrap(), Resp::Int(40));
    assert_eq!(s.shelf.get::<i64>("n").unwrap(), Some(40), "a counter is an int for Python and Rust");
    s.shelf.insert("py", &7i64).unwrap();
    assert_eq!(c.command(&[b"DECR", b"py"]).unwrap(), Resp::Int(6));
    assert_eq!(c.command(&[b"SET", b"text", b"10"]).unwrap(), ok());
    assert_eq!(c.command(&[b"INCR", b"text"]).unwrap(), Resp::Int(11));
    assert_eq!(c.command(&[b"GET", b"text"]).unwrap(), bulk(b"11"), "decimal text stays text");
    s.shelf.insert("float", &1.5f64).unwrap();
    assert_eq!(c.command(&[b"SET", b"word", b"abc"]).unwrap(), ok());
    for k in [&b"float"[..], b"word"] {
        assert_eq!(err(c.command(&[b"INCR", k])), "ERR value is not an integer or out of range");
    }
    assert_eq!(err(c.command(&[b"INCRBY", b"n", b"x"])), "ERR value is not an integer or out of range");
    s.shelf.insert("max", &i64::MAX).unwrap();
    assert_eq!(err(c.command(&[b"INCR", b"max"])), "ERR increment or decrement would overflow");
    assert_eq!(s.shelf.get::<i64>("max").unwrap(), Some(i64::MAX));
}

#[test]
fn transactions_are_all_or_nothing() {
    let s = TestServer::start(Config::new());
    let c = RemoteShelf::connect(&s.url()).unwrap();
    c.command(&[b"SET", b"a", b"0"]).unwrap();
    assert_eq!(c.command(&[b"MULTI"]).unwrap(), ok());
    assert_eq!(c.command(&[b"SET", b"a", b"1"]).unwrap(), Resp::Simple("QUEUED".into()));
    assert_eq!(c.command(&[b"INCR", b"a"]).unwrap(), Resp::Simple("QUEUED".into()));
    assert_eq!(c.command(&[b"GET", b"a"]).unwrap(), Resp::Simple("QUEUED".into()));
    assert_eq!(c.command(&[b"DBSIZE"]).unwrap(), Resp::Simple("QUEUED".into()));
    assert_eq!(
        c.command(&[b"EXEC"]).unwrap(),
        Resp::Array(vec![ok(), Resp::Int(2), bulk(b"2"), Resp::Int(1)]),
        "reads inside see the transaction's writes"
    );
    // A write the store refuses (a key too long) makes EXEC write nothing at all.
    let long = vec![b'k'; pickleshelf::MAX_KEY_LEN + 1];
    c.command(&[b"MULTI"]).unwrap();
    c.command(&[b"SET", b"a", b"changed"]).unwrap();
    c.command(&[b"SET", b"fresh", b"x"]).unwrap();
    c.command(&[b"SET", &long, b"x"]).unwrap();
    let e = c.command(&[b"EXEC"]);
    assert!(
        matches!(&e, Err(ServerError::Reply(m)) if m.starts_with("EXECABORT"))
            || matches!(&e, Ok(Resp::Array(r)) if r.iter().any(|x| matches!(x, Resp::Error(_)))),
        "{e:?}"
    );
    assert_eq!(c.command(&[b"GET", b"a"]).unwrap(), bulk(b"2"));
    assert_eq!(c.command(&[b"EXISTS", b"fresh"]).unwrap(), Resp::Int(0));
    // An unknown command while queueing discards the transaction.
    c.command(&[b"MULTI"]).unwrap();
    c.command(&[b"SET", b"a", b"3"]).unwrap();
    assert!(err(c.command(&[b"NOSUCH"])).starts_with("ERR unknown command 'NOSUCH'"));
    assert_eq!(err(c.command(&[b"EXEC"])), "EXECABORT Transaction discarded because of previous errors.");
    assert_eq!(c.command(&[b"GET", b"a"]).unwrap(), bulk(b"2"));
    assert_eq!(err(c.command(&[b"EXEC"])), "ERR EXEC without MULTI");
    assert_eq!(err(c.command(&[b"DISCARD"])), "ERR DISCARD without MULTI");
    // WATCH: a change by another client aborts EXEC (a null reply), nothing written.
    let other = RemoteShelf::connect(&s.url()).unwrap();
    c.command(&[b"WATCH", b"a"]).unwrap();
    other.command(&[b"SET", b"a", b"other"]).unwrap();
    c.command(&[b"MULTI"]).unwrap();
    c.command(&[b"SET", b"a", b"mine"]).unwrap();
    assert_eq!(c.command(&[b"EXEC"]).unwrap(), Resp::Null);
    assert_eq!(c.command(&[b"GET", b"a"]).unwrap(), bulk(b"other"));
}

#[test]
fn scan_visits_every_key_once_and_keys_match_patterns() {
    let s = TestServer::start(Config::new());
    let c = RemoteShelf::connect(&s.url()).unwrap();
    let mut batch = pickleshelf::Batch::new();
    for i in 0..1000 {
        batch.insert(&format!("user:{i}"), &i).unwrap();
        batch.insert(&format!("item:{i}"), &i).unwrap();
    }
    s.shelf.apply(batch).unwrap();
    for (pattern, count) in [("*", "7"), ("user:*", "100"), ("user:1?", "10"), ("*:99*", "1")] {
        let mut cursor = b"0".to_vec();
        let mut seen = Vec::new();
        loop {
            let Resp::Array(parts) =
                c.command(&[b"SCAN", &cursor, b"MATCH", pattern.as_bytes(), b"COUNT", count.as_bytes()]).unwrap()
            else {
                panic!()
            };
            let [Resp::Bulk(next), Resp::Array(keys)] = &parts[..] else { panic!("{parts:?}") };
            seen.extend(keys.iter().map(|k| match k {
                Resp::Bulk(b) => String::from_utf8(b.clone()).unwrap(),
                _ => panic!(),
            }));
            if next == b"0" {
                break;
            }
            cursor = next.clone();
        }
        let Resp::Array(keys) = c.command(&[b"KEYS", pattern.as_bytes()]).unwrap() else { panic!() };
        let mut expected: Vec<String> = s
            .shelf
            .keys()
            .map(Result::unwrap)
            .filter(|k| pickleshelf_server::glob::matches(pattern.as_bytes(), k.as_bytes()))
            .collect();
        expected.sort();
        assert_eq!(seen, expected, "SCAN MATCH {pattern}");
        assert_eq!(keys.len(), expected.len(), "KEYS {pattern}");
    }
    assert_eq!(err(c.command(&[b"SCAN", b"12345678"])), "ERR invalid cursor");
    assert_eq!(err(c.command(&[b"SCAN", b"x"])), "ERR invalid cursor");
}

#[test]
fn connection_and_server_commands() {
    let s = TestServer::start(Config::new());
    let c = RemoteShelf::connect(&s.url()).unwrap();
    assert_eq!(c.command(&[b"PING"]).unwrap(), Resp::Simple("PONG".into()));
    assert_eq!(c.command(&[b"PING", b"hi"]).unwrap(), bulk(b"hi"));
    assert_eq!(c.command(&[b"ECHO", b"x\r\ny"]).unwrap(), bulk(b"x\r\ny"));
    assert_eq!(c.command(&[b"SELECT", b"0"]).unwrap(), ok());
    assert_eq!(err(c.command(&[b"SELECT", b"1"])), "ERR DB index is out of range");
    assert_eq!(c.command(&[b"CLIENT", b"SETINFO", b"LIB-NAME", b"x"]).unwrap(), ok());
    assert_eq!(c.command(&[b"CLIENT", b"SETNAME", b"worker-1"]).unwrap(), ok());
    assert_eq!(c.command(&[b"CLIENT", b"GETNAME"]).unwrap(), bulk(b"worker-1"));
    assert_eq!(
        err(c.command(&[b"CLIENT", b"SETNAME", b"a b"])),
        "ERR Client names cannot contain spaces, newlines or special characters."
    );
    assert_eq!(err(c.command(&[b"CLIENT", b"BOGUS"])), "ERR unknown subcommand 'BOGUS'. Try CLIENT HELP.");
    assert_eq!(c.command(&[b"COMMAND", b"DOCS"]).unwrap(), Resp::Array(vec![]));
    assert_eq!(c.command(&[b"CONFIG", b"GET", b"save"]).unwrap(), Resp::Array(vec![bulk(b"save"), bulk(b"")]));
    let Resp::Array(cfg) = c.command(&[b"CONFIG", b"GET", b"append*"]).unwrap() else { panic!() };
    assert_eq!(cfg, vec![bulk(b"appendonly"), bulk(b"yes"), bulk(b"appendfsync"), bulk(b"everysec")]);
    c.command(&[b"SET", b"k", b"v"]).unwrap();
    let Resp::Bulk(info) = c.command(&[b"INFO"]).unwrap() else { panic!() };
    let info = String::from_utf8(info).unwrap();
    for field in
        ["# Server", "redis_version:", "connected_clients:1", "# Stats", "total_commands_processed:", "db0:keys=1"]
    {
        assert!(info.contains(field), "{field} missing from {info}");
    }
    assert_eq!(err(c.command(&[b"FOO", b"a", b"b"])), "ERR unknown command 'FOO', with args beginning with: 'a' 'b' ");
    assert!(err(c.command(&[b"GET", b"\xff\xfe"])).contains("not valid UTF-8"));
    assert!(err(c.command(&[b"SET", b"ok\xff", b"v"])).contains("not valid UTF-8"));
    assert_eq!(s.shelf.len().unwrap(), 1, "a refused key stored nothing");
    assert_eq!(c.command(&[b"QUIT"]).unwrap(), ok());
}

#[test]
fn store_commands() {
    let s = TestServer::start(Config::new());
    let c = RemoteShelf::connect(&s.url()).unwrap();
    c.command(&[b"SET", b"a", b"1"]).unwrap();
    let Resp::Array(info) = c.command(&[b"SHELF.CHECKPOINT", b"CREATE", b"v1"]).unwrap() else { panic!() };
    assert_eq!(info[..2], [bulk(b"keys"), Resp::Int(1)]);
    c.command(&[b"SET", b"a", b"2"]).unwrap();
    c.command(&[b"SET", b"b", b"3"]).unwrap();
    assert_eq!(
        c.command(&[b"SHELF.CHECKPOINT", b"DIFF", b"v1"]).unwrap(),
        Resp::Array(vec![Resp::Array(vec![bulk(b"~"), bulk(b"a")]), Resp::Array(vec![bulk(b"+"), bulk(b"b")])])
    );
    let Resp::Array(list) = c.command(&[b"SHELF.CHECKPOINT", b"LIST"]).unwrap() else { panic!() };
    assert_eq!(list.len(), 1);
    assert_eq!(c.command(&[b"SHELF.CHECKPOINT", b"RESTORE", b"v1"]).unwrap(), Resp::Int(2));
    assert_eq!(c.command(&[b"GET", b"a"]).unwrap(), bulk(b"1"));
    assert_eq!(c.command(&[b"EXISTS", b"b"]).unwrap(), Resp::Int(0));
    assert!(err(c.command(&[b"SHELF.CHECKPOINT", b"RESTORE", b"nope"])).contains("no such checkpoint"));
    assert!(err(c.command(&[b"SHELF.CHECKPOINT", b"CREATE", b"v1"])).contains("exists"));
    assert_eq!(c.command(&[b"SHELF.CHECKPOINT", b"DELETE", b"v1"]).unwrap(), Resp::Int(1));
    assert!(err(c.command(&[b"SHELF.CHECKPOINT", b"X"])).starts_with("ERR unknown subcommand 'X'"));
    let Resp::Array(v) = c.command(&[b"SHELF.VERIFY"]).unwrap() else { panic!() };
    assert_eq!(v[..2], [bulk(b"ok"), Resp::Int(1)]);
    let Resp::Array(st) = c.command(&[b"SHELF.STATS"]).unwrap() else { panic!() };
    assert!(st.windows(2).any(|w| w == [bulk(b"keys"), Resp::Int(1)]), "{st:?}");
    assert!(err(c.command(&[b"SHELF.SETPICKLE", b"p", b"not a pickle"])).contains("not a valid pickle"));
    assert_eq!(c.command(&[b"EXISTS", b"p"]).unwrap(), Resp::Int(0));
    assert_eq!(c.command(&[b"SHELF.SYNC"]).unwrap(), ok());
}

#[test]
fn password_is_required_and_wrong_ones_are_refused() {
    let pw = pickleshelf_server::Password::new("s3cret").unwrap();
    let s = TestServer::start(Config::new().password(Some(pw)));
    let c = RemoteShelf::connect(&s.url()).unwrap();
    assert_eq!(err(c.command(&[b"GET", b"k"])), "NOAUTH Authentication required.");
    assert_eq!(err(c.command(&[b"AUTH", b"wrong"])), "WRONGPASS invalid username-password pair or user is disabled.");
    assert_eq!(
        err(c.command(&[b"AUTH", b"admin", b"s3cret"])),
        "WRONGPASS invalid username-password pair or user is disabled."
    );
    assert!(err(c.command(&[b"HELLO", b"3"])).starts_with("NOAUTH HELLO must be called"));
    assert_eq!(c.command(&[b"AUTH", b"default", b"s3cret"]).unwrap(), ok());
    assert_eq!(c.command(&[b"SET", b"k", b"v"]).unwrap(), ok());
    let url = format!("redis://:s3cret@{}", s.addr);
    assert_eq!(RemoteShelf::connect(&url).unwrap().command(&[b"GET", b"k"]).unwrap(), bulk(b"v"));
    assert!(RemoteShelf::connect(&format!("redis://:nope@{}", s.addr)).is_err());
    // HELLO with AUTH inside, switching to RESP3.
    let h = RemoteShelf::connect(&s.url()).unwrap();
    let Resp::Array(m) = h.command(&[b"HELLO", b"3", b"AUTH", b"default", b"s3cret"]).unwrap() else { panic!() };
    assert!(m.windows(2).any(|w| w == [bulk(b"proto"), Resp::Int(3)]));
    assert_eq!(h.command(&[b"GET", b"nothing"]).unwrap(), Resp::Null);
}

#[test]
fn non_loopback_without_password_is_refused() {
    let any: std::net::SocketAddr = "0.0.0.0:6379".parse().unwrap();
    let e = Config::new().validate(&[any]).unwrap_err();
    assert!(e.to_string().contains("not a loopback address, without a password"), "{e}");
    let pw = pickleshelf_server::Password::new("s3cret").unwrap();
    Config::new().password(Some(pw)).validate(&[any]).unwrap();
    Config::new().validate(&["[::1]:6379".parse().unwrap()]).unwrap();
}
