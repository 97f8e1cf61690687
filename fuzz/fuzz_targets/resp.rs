//! Fuzz target: arbitrary bytes through the server's request parser, as a hostile peer
//! would send them. Nothing may panic or hang; the parser must hold no more than what
//! arrived; the same bytes split differently on arrival must give the same requests and
//! the same error; requests re-encoded as RESP must parse back to themselves. The
//! inline splitter and the glob matcher (KEYS/SCAN patterns) get the bytes too.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use pickleshelf_server::parse::{Limits, Parser, ProtocolError, split_args};

type Outcome = (Vec<Vec<Bytes>>, Option<ProtocolError>);

fn feed(input: &[u8], chunk: usize, auth: bool, limits: &Limits) -> Outcome {
    let mut p = Parser::new(limits.clone());
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        loop {
            match p.next(&mut buf, auth) {
                Ok(Some(a)) => out.push(a),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
        assert!(buf.len() + p.held_bytes() <= at, "the parser holds more than arrived");
        if at == input.len() {
            return (out, None);
        }
        let n = chunk.min(input.len() - at);
        buf.extend_from_slice(&input[at..at + n]);
        at += n;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, input)) = data.split_first() else { return };
    let auth = ctl & 1 == 0;
    // Small limits so that they are reached.
    let limits = Limits { max_bulk: 1 << 12, max_inline: 256, unauth_max_args: 10, unauth_max_bulk: 64 };
    let whole = feed(input, input.len().max(1), auth, &limits);
    let split = feed(input, usize::from(ctl >> 1).max(1), auth, &limits);
    // A line longer than max_inline may be refused when split and accepted whole (as in
    // Redis); otherwise the outcome cannot depend on how the bytes arrived.
    if input.len() <= limits.max_inline {
        assert_eq!(whole, split);
    }
    for req in &whole.0 {
        let mut enc = format!("*{}\r\n", req.len()).into_bytes();
        for a in req {
            enc.extend(format!("${}\r\n", a.len()).bytes());
            enc.extend_from_slice(a);
            enc.extend_from_slice(b"\r\n");
        }
        let again = feed(&enc, 7, true, &Limits::default());
        assert_eq!(again.0.as_slice(), std::slice::from_ref(req));
        assert_eq!(again.1, None);
    }
    let _ = split_args(input);
    let (pattern, subject) = input.split_at(input.len() / 2);
    let _ = pickleshelf_server::glob::matches(&pattern[..pattern.len().min(64)], subject);
});
