//! Code shared by the server's test files (`mod common;` in each): servers started on
//! loopback by the tests themselves, in process or as a child process, and the external
//! tools (redis-cli, redis-benchmark, python3 with redis-py) they drive.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pickleshelf::Shelf;
use pickleshelf_server::{Config, Running, Server};

/// A server on an ephemeral loopback port, in this process, over a fresh store.
pub struct TestServer {
    pub addr: SocketAddr,
    pub shelf: Shelf,
    running: Option<Running>,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub fn start(config: Config) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let shelf = Shelf::open(dir.path().join("store")).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let running = Server::new(shelf.clone(), config).listen(listener).spawn().unwrap();
        TestServer { addr, shelf, running: Some(running), dir }
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    pub fn port(&self) -> String {
        self.addr.port().to_string()
    }

    /// A raw connection.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    }

    pub fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.stop();
        }
    }
}

/// A `pickleshelf-server` child process on an ephemeral loopback port.
pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub store: PathBuf,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _dir: Option<tempfile::TempDir>,
}

impl ServerProcess {
    /// Starts the server binary on `store` (a fresh one when `None`) with extra arguments.
    pub fn start(store: Option<&Path>, args: &[&str]) -> ServerProcess {
        let (dir, store) = match store {
            Some(s) => (None, s.to_path_buf()),
            None => {
                let d = tempfile::tempdir().unwrap();
                let s = d.path().join("store");
                (Some(d), s)
            }
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_pickleshelf-server"))
            .arg(&store)
            .args(["--bind", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(a) = line.split(" on ").nth(1).filter(|_| line.contains("INFO serving")) {
                    let _ = tx.send(a.trim().to_owned());
                }
                log2.lock().unwrap().push(line);
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(30)).expect("the server did not start").parse().unwrap();
        ServerProcess { child, addr, store, log, _dir: dir }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Resident memory of the server, in bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `req` and reads one reply line (without CRLF).
pub fn roundtrip_line(s: &mut TcpStream, req: &[u8]) -> String {
    s.write_all(req).unwrap();
    read_line(s)
}

pub fn read_line(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while !out.ends_with(b"\r\n") {
        match s.read(&mut b) {
            Ok(0) => break,
            Ok(_) => out.push(b[0]),
            Err(e) => panic!("read failed after {:?}: {e}", String::from_utf8_lossy(&out)),
        }
    }
    String::from_utf8_lossy(&out).trim_end().to_owned()
}

/// True when the peer closed the connection (reads end) within `limit`.
pub fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// An external tool, or `None` (with a message) when it is missing and CI is not set.
pub fn tool(name: &str) -> Option<&str> {
    let found =
        Command::new("sh").arg("-c").arg(format!("command -v {name}")).output().is_ok_and(|o| o.status.success());
    if found {
        Some(name)
    } else if std::env::var_os("CI").is_some() {
        panic!("{name} is required when CI is set (scripts/setup-test-deps.sh installs it)");
    } else {
        eprintln!("SKIPPED: {name} not found (scripts/setup-test-deps.sh installs it)");
        None
    }
}

/// python3 with redis-py (5 or later) and pytest, or `None` as [`tool`].
pub fn python_with_redis() -> Option<&'static str> {
    let ok = Command::new("python3")
        .args(["-c", "import redis, pytest, sys; sys.exit(0 if int(redis.__version__.split('.')[0]) >= 5 else 1)"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some("python3")
    } else if std::env::var_os("CI").is_some() {
        panic!(
            "python3 with redis-py 5+ and pytest is required when CI is set (scripts/setup-test-deps.sh installs them)"
        );
    } else {
        eprintln!("SKIPPED: python3 with redis-py 5+ and pytest not found (scripts/setup-test-deps.sh installs them)");
        None
    }
}

/// Runs a command, returning (status ok, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
