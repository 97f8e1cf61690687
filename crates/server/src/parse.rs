//! The request parser: RESP2 multibulk (`*N` then N `$len` bulk strings) and inline
//! commands (a line of words), read incrementally from a connection's input buffer.
//!
//! Invariant: the parser never allocates from a length the peer declared. It holds only
//! bytes that arrived (in the caller's buffer, which grows as they arrive) plus the
//! arguments already complete; a declared count or length is checked against
//! [`Limits`] before anything waits for it. Every malformed input gets one of Redis's own
//! protocol error texts ([`ProtocolError`]), after which the connection is closed. Work is
//! linear in the bytes received: a line being searched for its end is never scanned twice.

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

/// Sizes a request may reach, as Redis keeps them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk string (Redis's `proto-max-bulk-len`, default 512 MiB).
    pub max_bulk: u64,
    /// Longest inline command line, and longest `*N` / `$N` line (64 KiB).
    pub max_inline: usize,
    /// Most arguments of a request before the connection has authenticated (10).
    pub unauth_max_args: u64,
    /// Longest bulk string before the connection has authenticated (16 KiB).
    pub unauth_max_bulk: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_bulk: 512 << 20, max_inline: 64 << 10, unauth_max_args: 10, unauth_max_bulk: 16 << 10 }
    }
}

/// A request the parser refuses; `Display` is Redis's error text (without `ERR `).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// An inline line longer than [`Limits::max_inline`].
    TooBigInline,
    /// An inline line with a quote that does not close (or closes before a non-space).
    UnbalancedQuotes,
    /// A `*N` line longer than [`Limits::max_inline`].
    TooBigMbulkCount,
    /// `*N` with N not an integer or above `i32::MAX`.
    InvalidMultibulkLength,
    /// `*N` with N above [`Limits::unauth_max_args`] before authentication.
    UnauthenticatedMultibulkLength,
    /// A `$N` line longer than [`Limits::max_inline`].
    TooBigBulkCount,
    /// Something other than `$` where a bulk string should start (a nested array, say).
    ExpectedDollar(u8),
    /// `$N` with N negative, not an integer or above [`Limits::max_bulk`].
    InvalidBulkLength,
    /// `$N` with N above [`Limits::unauth_max_bulk`] before authentication.
    UnauthenticatedBulkLength,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::TooBigInline => "too big inline request",
            Self::UnbalancedQuotes => "unbalanced quotes in request",
            Self::TooBigMbulkCount => "too big mbulk count string",
            Self::InvalidMultibulkLength => "invalid multibulk length",
            Self::UnauthenticatedMultibulkLength => "unauthenticated multibulk length",
            Self::TooBigBulkCount => "too big bulk count string",
            Self::ExpectedDollar(b) => return write!(f, "Protocol error: expected '$', got '{}'", char::from(*b)),
            Self::InvalidBulkLength => "invalid bulk length",
            Self::UnauthenticatedBulkLength => "unauthenticated bulk length",
        };
        write!(f, "Protocol error: {text}")
    }
}

impl std::error::Error for ProtocolError {}

/// What the parser is in the middle of.
#[derive(Debug)]
enum State {
    /// Between requests.
    Idle,
    /// Inside `*N`: `remaining` bulk strings still to come, `bulk` the declared length
    /// of the one being read once its `$len` line is in.
    Multibulk { remaining: u64, args: Vec<Bytes>, bulk: Option<usize>, held: usize },
}

/// An incremental request parser (one per connection).
///
/// ```
/// use bytes::BytesMut;
/// use pickleshelf_server::parse::{Limits, Parser};
/// let mut parser = Parser::new(Limits::default());
/// let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r"[..]);
/// assert_eq!(parser.next(&mut buf, true), Ok(None)); // not complete yet
/// buf.extend_from_slice(b"\nk\r\nPING\r\n");
/// let args = parser.next(&mut buf, true).unwrap().unwrap();
/// assert_eq!(args, [&b"GET"[..], &b"k"[..]]);
/// assert_eq!(parser.next(&mut buf, true).unwrap().unwrap(), [&b"PING"[..]]); // inline
/// ```
#[derive(Debug)]
pub struct Parser {
    limits: Limits,
    state: State,
    /// Bytes at the front of the buffer already searched for the end of a line.
    scanned: usize,
}

/// Redis's `string2ll`: an optional `-`, then digits without a leading zero (`0` alone
/// is fine), nothing else, within `i64`.
pub(crate) fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || (digits[0] == b'0' && (digits.len() > 1 || neg)) {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        v = v.checked_mul(10)?;
        v = if neg { v.checked_sub(d)? } else { v.checked_add(d)? };
    }
    Some(v)
}

impl Parser {
    /// A parser that enforces `limits`.
    pub fn new(limits: Limits) -> Parser {
        Parser { limits, state: State::Idle, scanned: 0 }
    }

    /// True between requests: nothing of a next request has been parsed (the buffer
    /// may still hold the start of one).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    /// Bytes of complete arguments held for the request being read.
    pub fn held_bytes(&self) -> usize {
        match &self.state {
            State::Idle => 0,
            State::Multibulk { held, .. } => *held,
        }
    }

    /// The next complete request from `buf`, consuming its bytes: `Ok(None)` when more
    /// bytes are needed (what was parsed is kept). Empty requests (`*0`, a blank line)
    /// are skipped. `authenticated` selects the pre-authentication limits.
    ///
    /// # Errors
    /// A [`ProtocolError`] for input Redis would refuse; the parser must not be used
    /// again after one (the connection is to be closed).
    pub fn next(&mut self, buf: &mut BytesMut, authenticated: bool) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        loop {
            if let State::Idle = self.state {
                let Some(&first) = buf.first() else {
                    return Ok(None);
                };
                if first != b'*' {
                    match self.inline(buf)? {
                        Some(args) if args.is_empty() => continue,
                        other => return Ok(other),
                    }
                }
                let Some(line) = self.line(buf, b'\r', ProtocolError::TooBigMbulkCount)? else {
                    return Ok(None);
                };
                let n = match parse_int(&line[1..]) {
                    Some(n) if n <= i64::from(i32::MAX) => n,
                    _ => return Err(ProtocolError::InvalidMultibulkLength),
                };
                if n > 0 && n as u64 > self.limits.unauth_max_args && !authenticated {
                    return Err(ProtocolError::UnauthenticatedMultibulkLength);
                }
                if n <= 0 {
                    continue;
                }
                // Room for what may come, not for what was declared.
                let args = Vec::with_capacity((n as usize).min(16));
                self.state = State::Multibulk { remaining: n as u64, args, bulk: None, held: 0 };
            }
            let State::Multibulk { remaining, args, bulk, held } = &mut self.state else {
                continue;
            };
            while *remaining > 0 {
                let len = match *bulk {
                    Some(len) => len,
                    None => {
                        let Some(line) = Self::line_at(&mut self.scanned, buf, b'\r', &self.limits)
                            .map_err(|()| ProtocolError::TooBigBulkCount)?
                        else {
                            return Ok(None);
                        };
                        match line.first() {
                            Some(b'$') => {}
                            // An empty line: Redis reports the `\r` it found there.
                            other => return Err(ProtocolError::ExpectedDollar(other.copied().unwrap_or(b'\r'))),
                        }
                        let len = match parse_int(&line[1..]) {
                            Some(n) if n >= 0 && (n as u64) <= self.limits.max_bulk => n as u64,
                            _ => return Err(ProtocolError::InvalidBulkLength),
                        };
                        if len > self.limits.unauth_max_bulk && !authenticated {
                            return Err(ProtocolError::UnauthenticatedBulkLength);
                        }
                        let len = usize::try_from(len).map_err(|_| ProtocolError::InvalidBulkLength)?;
                        *bulk = Some(len);
                        len
                    }
                };
                // The bulk and its trailing CRLF (not checked, as Redis does not).
                if buf.len() < len.saturating_add(2) {
                    return Ok(None);
                }
                let arg = buf.split_to(len).freeze();
                buf.advance(2);
                *held += len;
                args.push(arg);
                *bulk = None;
                *remaining -= 1;
            }
            let args = std::mem::take(args);
            self.state = State::Idle;
            return Ok(Some(args));
        }
    }

    /// The line at the front of `buf` up to `end` (`\r` for RESP lines, which must be
    /// followed by `\n`), consumed with its terminator; `None` when it is not all there.
    fn line(&mut self, buf: &mut BytesMut, end: u8, too_big: ProtocolError) -> Result<Option<Bytes>, ProtocolError> {
        Self::line_at(&mut self.scanned, buf, end, &self.limits).map_err(|()| too_big)
    }

    fn line_at(scanned: &mut usize, buf: &mut BytesMut, end: u8, limits: &Limits) -> Result<Option<Bytes>, ()> {
        let from = (*scanned).min(buf.len());
        match buf[from..].iter().position(|&b| b == end) {
            None => {
                *scanned = buf.len();
                if buf.len() > limits.max_inline {
                    return Err(());
                }
                Ok(None)
            }
            Some(i) => {
                let at = from + i;
                // `\r` must be followed by `\n`; wait for it (Redis does not check what it is).
                if end == b'\r' && at + 1 >= buf.len() {
                    *scanned = at;
                    return Ok(None);
                }
                *scanned = 0;
                let line = buf.split_to(at).freeze();
                buf.advance(if end == b'\r' { 2 } else { 1 });
                Ok(Some(line))
            }
        }
    }

    /// An inline request: the line up to `\n` (a `\r` before it dropped), split as
    /// Redis's `sdssplitargs` does.
    fn inline(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let Some(line) = self.line(buf, b'\n', ProtocolError::TooBigInline)? else {
            return Ok(None);
        };
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        split_args(line).map(Some).ok_or(ProtocolError::UnbalancedQuotes)
    }
}

/// Redis's `sdssplitargs`: words separated by white space; `"..."` with `\n`, `\r`,
/// `\t`, `\b`, `\a`, `\xHH` and `\<char>` escapes; `'...'` with `\'`. A closing quote
/// must be followed by white space or the end. `None` for unbalanced quotes.
pub fn split_args(line: &[u8]) -> Option<Vec<Bytes>> {
    let space = |b: u8| matches!(b, b' ' | b'\n' | b'\r' | b'\t' | 0x0b | 0x0c);
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut args = Vec::new();
    let mut p = 0;
    loop {
        while p < line.len() && space(line[p]) {
            p += 1;
        }
        if p == line.len() {
            return Some(args);
        }
        let mut cur = Vec::new();
        let (mut inq, mut insq) = (false, false);
        loop {
            let c = line.get(p).copied();
            if inq {
                let c = c?;
                if c == b'\\'
                    && line.get(p + 1) == Some(&b'x')
                    && let (Some(h), Some(l)) =
                        (line.get(p + 2).copied().and_then(hex), line.get(p + 3).copied().and_then(hex))
                {
                    cur.push(h * 16 + l);
                    p += 3;
                } else if c == b'\\' && p + 1 < line.len() {
                    p += 1;
                    cur.push(match line[p] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    // The closing quote must be followed by a space or the end.
                    if p + 1 < line.len() && !space(line[p + 1]) {
                        return None;
                    }
                    p += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else if insq {
                let c = c?;
                if c == b'\\' && line.get(p + 1) == Some(&b'\'') {
                    p += 1;
                    cur.push(b'\'');
                } else if c == b'\'' {
                    if p + 1 < line.len() && !space(line[p + 1]) {
                        return None;
                    }
                    p += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else {
                match c {
                    None => break,
                    Some(c) if space(c) => break,
                    Some(b'"') => inq = true,
                    Some(b'\'') => insq = true,
                    Some(c) => cur.push(c),
                }
            }
            p += 1;
        }
        args.push(Bytes::from(cur));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn all(input: &[u8], auth: bool) -> (Vec<Vec<Bytes>>, Option<ProtocolError>) {
        let mut p = Parser::new(Limits::default());
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match p.next(&mut buf, auth) {
                Ok(Some(a)) => out.push(a),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    #[test]
    fn multibulk_and_inline() {
        let (reqs, err) = all(b"*1\r\n$4\r\nPING\r\nset a \"b c\\x41\\n\" 'd\\'e'\r\n\r\n*0\r\n*-1\r\nGET x\n", true);
        assert_eq!(err, None);
        assert_eq!(reqs.len(), 3);
        assert_eq!(reqs[1], [&b"set"[..], b"a", b"b cA\n", b"d'e"]);
        assert_eq!(reqs[2], [&b"GET"[..], b"x"]);
    }

    #[test]
    fn redis_error_texts() {
        let cases: &[(&[u8], &str)] = &[
            (b"*1\r\n*1\r\n", "Protocol error: expected '$', got '*'"),
            (b"*1\r\n$99999999999\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
            (b"*2147483648\r\n", "Protocol error: invalid multibulk length"),
            (b"*1x\r\n", "Protocol error: invalid multibulk length"),
            (b"*01\r\n", "Protocol error: invalid multibulk length"),
            (b"set \"a\"b\r\n", "Protocol error: unbalanced quotes in request"),
            (b"set \"ab\r\n", "Protocol error: unbalanced quotes in request"),
        ];
        for (input, text) in cases {
            let (_, err) = all(input, true);
            assert_eq!(err.map(|e| e.to_string()).as_deref(), Some(*text), "{input:?}");
        }
        assert_eq!(all(b"*11\r\n", false).1, Some(ProtocolError::UnauthenticatedMultibulkLength));
        assert_eq!(all(b"*10\r\n", false).1, None);
        assert_eq!(all(b"*1\r\n$16385\r\n", false).1, Some(ProtocolError::UnauthenticatedBulkLength));
        assert_eq!(all(b"*2147483647\r\n", true).1, None);
        assert_eq!(all(&[b'x'; 70_000], true).1, Some(ProtocolError::TooBigInline));
        let mut long = b"*".to_vec();
        long.extend(std::iter::repeat_n(b'1', 70_000));
        assert_eq!(all(&long, true).1, Some(ProtocolError::TooBigMbulkCount));
        let mut long = b"*1\r\n$".to_vec();
        long.extend(std::iter::repeat_n(b'1', 70_000));
        assert_eq!(all(&long, true).1, Some(ProtocolError::TooBigBulkCount));
    }

    #[test]
    fn declared_lengths_reserve_nothing() {
        let mut p = Parser::new(Limits::default());
        let mut buf = BytesMut::from(&b"*2147483647\r\n$536870912\r\nabc"[..]);
        assert_eq!(p.next(&mut buf, true), Ok(None));
        assert_eq!(buf.len(), 3);
        let State::Multibulk { args, .. } = &p.state else { panic!("not in a multibulk") };
        assert!(args.capacity() <= 16);
    }
}
