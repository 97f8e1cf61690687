//! An S3-compatible server on loopback for the remote tests: moto's server (`moto[server]`
//! from PyPI, installed by scripts/setup-test-deps.sh), started by a test and killed when
//! its handle drops. Without moto the tests skip with a message, or fail when CI is set.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto server.
pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    port: u16,
}

/// The credentials the tests give (moto accepts any unless told to check them).
pub const ACCESS_KEY_ID: &str = "AKIATESTPICKLESHELF0";
pub const SECRET_ACCESS_KEY: &str = "pickleshelf-test-secret-0123456789abcdef";

fn moto_command() -> Option<Command> {
    if Command::new("moto_server")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        return Some(Command::new("moto_server"));
    }
    let ok = Command::new("python3")
        .args(["-c", "import moto.server, flask"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| {
        let mut c = Command::new("python3");
        c.args(["-m", "moto.server"]);
        c
    })
}

impl S3Server {
    /// Starts a server; `None` (the test skips) when moto is not installed and CI is not
    /// set. `env` is given to the server (e.g. `INITIAL_NO_AUTH_ACTION_COUNT=0`, which
    /// makes it check credentials).
    pub fn start_with(env: &[(&str, &str)]) -> Option<S3Server> {
        let Some(mut cmd) = moto_command() else {
            if std::env::var_os("CI").is_some() {
                panic!("moto_server is required when CI is set (scripts/setup-test-deps.sh installs moto[server])");
            }
            eprintln!("SKIPPED: moto_server not found (pip install 'moto[server]')");
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]).stdout(Stdio::null()).stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start moto_server");
        let server = S3Server { child, endpoint: format!("http://127.0.0.1:{port}"), port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen on port {port} within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(server)
    }

    /// [`S3Server::start_with`] with no extra environment.
    pub fn start() -> Option<S3Server> {
        S3Server::start_with(&[])
    }

    /// One plain HTTP/1.1 request, as the test credentials' owner (moto reads the access
    /// key id from the `Authorization` header and checks no signature unless told to);
    /// returns the status and the body.
    pub fn http(&self, method: &str, target: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let split = out.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP answer");
        let status_line = String::from_utf8_lossy(&out[..split]).to_string();
        let status: u16 = status_line.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("a status code");
        let headers = status_line.to_ascii_lowercase();
        let mut body = out[split + 4..].to_vec();
        if headers.contains("transfer-encoding: chunked") {
            body = dechunk(&body);
        }
        (status, body)
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, bucket: &str) {
        let (status, body) = self.http("PUT", &format!("/{bucket}"), b"");
        assert_eq!(status, 200, "create bucket {bucket}: {}", String::from_utf8_lossy(&body));
    }

    /// Writes an object directly, bypassing pickleshelf (a writer to the bucket).
    pub fn put_object(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let (status, body) = self.http("PUT", &format!("/{bucket}/{key}"), bytes);
        assert_eq!(status, 200, "put {key}: {}", String::from_utf8_lossy(&body));
    }

    /// Reads an object directly.
    pub fn get_object(&self, bucket: &str, key: &str) -> Vec<u8> {
        let (status, body) = self.http("GET", &format!("/{bucket}/{key}"), b"");
        assert_eq!(status, 200, "get {key}");
        body
    }

    /// Deletes an object directly.
    pub fn delete_object(&self, bucket: &str, key: &str) {
        let (status, _) = self.http("DELETE", &format!("/{bucket}/{key}"), b"");
        assert!(status == 204 || status == 200, "delete {key}: {status}");
    }

    /// The keys of the bucket under `prefix`.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let (status, body) = self.http("GET", &format!("/{bucket}?list-type=2&prefix={prefix}&max-keys=1000"), b"");
        assert_eq!(status, 200);
        let text = String::from_utf8(body).unwrap();
        let mut out = Vec::new();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("<Key>") {
            let after = &rest[i + 5..];
            let j = after.find("</Key>").unwrap();
            out.push(after[..j].to_owned());
            rest = &after[j..];
        }
        out
    }

    /// A remote handle on `s3://bucket/prefix` of this server, with test credentials.
    pub fn remote(&self, url: &str) -> pickleshelf::RemoteBuilder {
        pickleshelf::Remote::builder(url)
            .option("aws_endpoint", &self.endpoint)
            .option("aws_allow_http", "true")
            .option("aws_region", "us-east-1")
            .option("aws_access_key_id", ACCESS_KEY_ID)
            .option("aws_secret_access_key", SECRET_ACCESS_KEY)
            .max_retries(0)
    }

    /// The environment a `pickleshelf` process needs to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.into()),
        ]
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else { return out };
        let size = usize::from_str_radix(String::from_utf8_lossy(&body[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[eol + 2..eol + 2 + size]);
        body = &body[eol + 4 + size..];
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
