//! redis-rs (the `redis` crate) against the server: RESP2 and RESP3, commands, atomic
//! and plain pipelines, binary values, a password, and typed values Rust reads back
//! through its own store handle.
#![allow(clippy::unwrap_used)]

mod common;

use common::TestServer;
use pickleshelf_server::{Config, Password};
use redis::Commands;

fn clients(s: &TestServer, auth: &str) -> Vec<(&'static str, redis::Connection)> {
    ["2", "3"]
        .into_iter()
        .map(|p| {
            let url = format!("redis://{auth}{}/?protocol={p}", s.addr);
            let name = if p == "2" { "resp2" } else { "resp3" };
            (name, redis::Client::open(url).unwrap().get_connection().unwrap())
        })
        .collect()
}

#[test]
fn commands_and_pipelines() {
    let s = TestServer::start(Config::new());
    for (p, mut c) in clients(&s, "") {
        let k = |x: &str| format!("{p}:{x}");
        let _: () = c.set(k("a"), "hello").unwrap();
        assert_eq!(c.get::<_, Option<String>>(k("a")).unwrap().as_deref(), Some("hello"));
        assert_eq!(c.get::<_, Option<String>>(k("missing")).unwrap(), None);
        let bin: Vec<u8> = (0..=255).collect();
        let _: () = c.set(k("bin"), &bin).unwrap();
        assert_eq!(c.get::<_, Vec<u8>>(k("bin")).unwrap(), bin);
        assert_eq!(c.incr::<_, _, i64>(k("n"), 5).unwrap(), 5);
        assert_eq!(c.exists::<_, i64>(&[k("a"), k("n"), k("zz")]).unwrap(), 2);
        assert_eq!(c.del::<_, i64>(k("a")).unwrap(), 1);
        let _: () = c.mset(&[(k("m1"), "1"), (k("m2"), "2")]).unwrap();
        assert_eq!(
            c.mget::<_, Vec<Option<String>>>(&[k("m1"), k("x"), k("m2")]).unwrap(),
            [Some("1".into()), None, Some("2".into())]
        );

        let (x, y): (i64, String) = redis::pipe()
            .atomic()
            .incr(k("t"), 1)
            .ignore()
            .incr(k("t"), 1)
            .set(k("s"), "v")
            .ignore()
            .get(k("s"))
            .query(&mut c)
            .unwrap();
        assert_eq!((x, y.as_str()), (2, "v"));
        let mut pipe = redis::pipe();
        for i in 0..1000 {
            pipe.set(k(&format!("p{i}")), i).ignore();
        }
        pipe.get(k("p999"));
        let (last,): (i64,) = pipe.query(&mut c).unwrap();
        assert_eq!(last, 999);
        let keys: Vec<String> = c.scan_match(format!("{p}:p*")).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(keys.len(), 1000);
        let e = redis::cmd("SET").arg(k("e")).arg("v").arg("EX").arg(10).query::<()>(&mut c).unwrap_err();
        assert!(e.to_string().contains("per-key expiry is not supported"), "{e}");
        let e = redis::cmd("NOSUCH").query::<()>(&mut c).unwrap_err();
        assert!(e.to_string().contains("unknown command 'NOSUCH'"), "{e}");
    }
    assert_eq!(s.shelf.get::<i64>("resp3:t").unwrap(), Some(2));
}

#[test]
fn typed_values_written_through_redis_rs_read_by_the_store() {
    let s = TestServer::start(Config::new());
    let mut c = redis::Client::open(s.url()).unwrap().get_connection().unwrap();
    let record = ("Kim".to_string(), vec![1.5f64, 2.5], 42i64);
    let bytes = pickleshelf::pickle::to_vec(&record).unwrap();
    let _: () = c.set("record", &bytes).unwrap();
    assert_eq!(s.shelf.get::<(String, Vec<f64>, i64)>("record").unwrap(), Some(record));
    assert_eq!(c.get::<_, Vec<u8>>("record").unwrap(), bytes);
}

#[test]
fn password() {
    let s = TestServer::start(Config::new().password(Some(Password::new("rs-secret").unwrap())));
    for (_, mut c) in clients(&s, "default:rs-secret@") {
        let _: () = c.set("k", "v").unwrap();
        assert_eq!(c.get::<_, String>("k").unwrap(), "v");
    }
    for p in ["2", "3"] {
        let url = format!("redis://default:wrong@{}/?protocol={p}", s.addr);
        let refused = redis::Client::open(url).unwrap().get_connection();
        assert!(refused.is_err(), "protocol {p}: a wrong password was accepted");
    }
    let mut unauth = redis::Client::open(s.url()).unwrap().get_connection().unwrap();
    let e = unauth.get::<_, String>("k").unwrap_err();
    assert!(e.to_string().contains("NOAUTH") || e.code() == Some("NOAUTH"), "{e}");
}
