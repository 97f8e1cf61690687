//! Reply encoding in RESP2 or RESP3, appended to a connection's output buffer.
//!
//! Invariant: every method appends exactly one complete RESP value (or, for the
//! `*_len` headers, the header of one whose elements the caller appends next), in the
//! protocol the connection chose with `HELLO`; error texts never contain CR or LF.

/// Appends replies to `out` in RESP2 or RESP3.
#[derive(Debug)]
pub struct Reply<'a> {
    /// The connection's output buffer.
    pub out: &'a mut Vec<u8>,
    /// True after `HELLO 3`.
    pub resp3: bool,
}

impl Reply<'_> {
    fn header(&mut self, kind: u8, n: usize) {
        self.out.push(kind);
        self.out.extend_from_slice(itoa_buf(n as i64).as_slice());
        self.out.extend_from_slice(b"\r\n");
    }

    /// `+OK`.
    pub fn ok(&mut self) {
        self.out.extend_from_slice(b"+OK\r\n");
    }

    /// A simple string (must not contain CR or LF).
    pub fn simple(&mut self, s: &str) {
        self.out.push(b'+');
        self.out.extend_from_slice(s.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// An error: `msg` starts with its code (`ERR ...`, `WRONGPASS ...`); CR and LF in it
    /// become spaces.
    pub fn error(&mut self, msg: &str) {
        self.out.push(b'-');
        self.out.extend(msg.bytes().map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
        self.out.extend_from_slice(b"\r\n");
    }

    /// An integer.
    pub fn int(&mut self, v: i64) {
        self.out.push(b':');
        self.out.extend_from_slice(itoa_buf(v).as_slice());
        self.out.extend_from_slice(b"\r\n");
    }

    /// A bulk string.
    pub fn bulk(&mut self, b: &[u8]) {
        self.header(b'$', b.len());
        self.out.extend_from_slice(b);
        self.out.extend_from_slice(b"\r\n");
    }

    /// A bulk string, or the null reply.
    pub fn bulk_or_null(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => self.bulk(b),
            None => self.null(),
        }
    }

    /// The null reply (`$-1` in RESP2, `_` in RESP3).
    pub fn null(&mut self) {
        self.out.extend_from_slice(if self.resp3 { b"_\r\n" } else { b"$-1\r\n" });
    }

    /// The null array (`*-1` in RESP2, `_` in RESP3): an aborted `EXEC`.
    pub fn null_array(&mut self) {
        self.out.extend_from_slice(if self.resp3 { b"_\r\n" } else { b"*-1\r\n" });
    }

    /// The header of an array of `n` elements.
    pub fn array_len(&mut self, n: usize) {
        self.header(b'*', n);
    }

    /// The header of a map of `n` pairs (an array of 2n elements in RESP2).
    pub fn map_len(&mut self, n: usize) {
        if self.resp3 { self.header(b'%', n) } else { self.header(b'*', 2 * n) }
    }

    /// A text document (`INFO`): a verbatim string in RESP3, a bulk string in RESP2.
    pub fn verbatim(&mut self, text: &str) {
        if self.resp3 {
            self.header(b'=', text.len() + 4);
            self.out.extend_from_slice(b"txt:");
            self.out.extend_from_slice(text.as_bytes());
            self.out.extend_from_slice(b"\r\n");
        } else {
            self.bulk(text.as_bytes());
        }
    }
}

/// A stack buffer holding an integer's decimal digits.
struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn itoa_buf(v: i64) -> Digits {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let neg = v < 0;
    let mut n = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if neg {
        i -= 1;
        buf[i] = b'-';
    }
    Digits { buf, start: i }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn resp2_and_resp3() {
        let mut out = Vec::new();
        let mut r = Reply { out: &mut out, resp3: false };
        r.int(i64::MIN);
        r.bulk(b"ab");
        r.null();
        r.map_len(1);
        r.error("ERR a\r\nb");
        assert_eq!(out, b":-9223372036854775808\r\n$2\r\nab\r\n$-1\r\n*2\r\n-ERR a  b\r\n");
        let mut out = Vec::new();
        let mut r = Reply { out: &mut out, resp3: true };
        r.null();
        r.map_len(2);
        r.int(0);
        r.int(1);
        assert_eq!(out, b"_\r\n%2\r\n:0\r\n:1\r\n");
    }
}
