//! redis-cli against the server, in RESP2 and RESP3 (`-3`), one-shot and `--pipe`, with
//! and without a password.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{TestServer, run, tool};
use pickleshelf_server::Config;

fn cli(s: &TestServer, args: &[&str]) -> String {
    let (ok, out, err) = run(Command::new("redis-cli").args(["-h", "127.0.0.1", "-p", &s.port()]).args(args));
    assert!(ok, "redis-cli {args:?} failed: {err}");
    out
}

#[test]
fn resp2_and_resp3() {
    let Some(_) = tool("redis-cli") else { return };
    let s = TestServer::start(Config::new());
    assert_eq!(cli(&s, &["PING"]), "PONG\n");
    assert_eq!(cli(&s, &["SET", "greeting", "hello world"]), "OK\n");
    assert_eq!(cli(&s, &["GET", "greeting"]), "hello world\n");
    assert_eq!(cli(&s, &["-3", "GET", "greeting"]), "hello world\n");
    assert_eq!(cli(&s, &["INCR", "visits"]), "1\n");
    assert_eq!(cli(&s, &["-3", "INCRBY", "visits", "9"]), "10\n");
    assert_eq!(s.shelf.get::<i64>("visits").unwrap(), Some(10));
    // RESP3 maps (HELLO, CONFIG GET) are printed as pairs; RESP2 as a flat list.
    let hello = cli(&s, &["-3", "HELLO", "3"]);
    assert!(hello.contains("proto\n3") || hello.contains("proto 3"), "{hello}");
    assert_eq!(cli(&s, &["-3", "CONFIG", "GET", "save"]), "save \n");
    assert_eq!(cli(&s, &["CONFIG", "GET", "save"]), "save\n\n");
    assert_eq!(cli(&s, &["--no-raw", "GET", "missing"]), "(nil)\n");
    assert_eq!(cli(&s, &["-3", "--no-raw", "GET", "missing"]), "(nil)\n");
    let unknown = cli(&s, &["NOSUCH", "x"]);
    assert!(unknown.starts_with("ERR unknown command 'NOSUCH', with args beginning with: 'x'"), "{unknown}");
    let keys = cli(&s, &["KEYS", "*"]);
    assert_eq!(keys, "greeting\nvisits\n");
    assert_eq!(cli(&s, &["DBSIZE"]), "2\n");
}

#[test]
fn binary_values_and_pipe_mode() {
    let Some(_) = tool("redis-cli") else { return };
    let s = TestServer::start(Config::new());
    let value: Vec<u8> = (0..=255u8).chain(*b"\r\n\r\n").collect();
    let mut child = Command::new("redis-cli")
        .args(["-p", &s.port(), "-x", "SET", "bin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&value).unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let out = Command::new("redis-cli").args(["-p", &s.port(), "--raw", "GET", "bin"]).output().unwrap();
    // --raw adds one newline after the value.
    assert_eq!(&out.stdout[..out.stdout.len() - 1], &value[..]);
    let bytes = s.shelf.get_value("bin").unwrap().unwrap();
    assert!(matches!(bytes.root_node(), pickleshelf::pickle::Node::Bytes(b) if *b == value));

    // --pipe: 10,000 commands in one stream, every reply accounted for.
    let mut input = Vec::new();
    for i in 0..10_000 {
        let (k, v) = (format!("key:{i}"), format!("value {i}"));
        input.extend(format!("*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n", k.len(), v.len()).bytes());
    }
    let mut child = Command::new("redis-cli")
        .args(["-p", &s.port(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("errors: 0, replies: 10000"), "{text}");
    assert_eq!(s.shelf.len().unwrap(), 10_001);
}

#[test]
fn password() {
    let Some(_) = tool("redis-cli") else { return };
    let pw = pickleshelf_server::Password::new("pa ss\u{e9}word").unwrap();
    let s = TestServer::start(Config::new().password(Some(pw)));
    let denied = cli(&s, &["GET", "k"]);
    assert!(denied.contains("NOAUTH Authentication required."), "{denied}");
    let wrong =
        Command::new("redis-cli").args(["-p", &s.port(), "--no-auth-warning", "-a", "nope", "PING"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&wrong.stdout).contains("WRONGPASS")
            || String::from_utf8_lossy(&wrong.stderr).contains("WRONGPASS")
    );
    // REDISCLI_AUTH keeps the password off the command line.
    for proto in ["-2", "-3"] {
        let out = Command::new("redis-cli")
            .env("REDISCLI_AUTH", "pa ss\u{e9}word")
            .args(["-p", &s.port(), proto, "SET", "k", "v"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n", "{proto}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let shelf = pickleshelf::Shelf::open(dir.path().join("store")).unwrap();
    let sock = dir.path().join("s.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let running = pickleshelf_server::Server::new(shelf.clone(), Config::new()).listen(listener).spawn().unwrap();
    let remote = pickleshelf_server::RemoteShelf::connect(&format!("unix://{}", sock.display())).unwrap();
    remote.insert("via-unix", &7i64).unwrap();
    assert_eq!(shelf.get::<i64>("via-unix").unwrap(), Some(7));
    if tool("redis-cli").is_some() {
        let (ok, out, err) = run(Command::new("redis-cli").args(["-s", sock.to_str().unwrap(), "-3", "SET", "k", "v"]));
        assert!(ok && out == "OK\n", "{out} {err}");
        assert_eq!(run(Command::new("redis-cli").args(["-s", sock.to_str().unwrap(), "GET", "k"])).1, "v\n");
    }
    running.stop().unwrap();
}
