//! Property tests of the request parser: any request encoded as RESP comes back as its
//! arguments however the bytes are split on arrival; any input gives the same requests
//! and the same error whole or split; what the parser holds never exceeds what arrived.
#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use pickleshelf_server::parse::{Limits, Parser, ProtocolError};
use proptest::prelude::*;

fn encode(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend(format!("${}\r\n", a.len()).bytes());
        out.extend(a);
        out.extend(b"\r\n");
    }
    out
}

/// Feeds `input` in pieces of the given sizes (cycled); returns the requests and the
/// error, if any, and checks the memory bound after every piece.
fn feed(input: &[u8], sizes: &[usize], auth: bool) -> (Vec<Vec<Bytes>>, Option<ProtocolError>) {
    let mut p = Parser::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    loop {
        loop {
            match p.next(&mut buf, auth) {
                Ok(Some(a)) => out.push(a),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
        assert!(buf.len() + p.held_bytes() <= at, "holding more than arrived");
        if at == input.len() {
            return (out, None);
        }
        let n = sizes[i % sizes.len()].max(1).min(input.len() - at);
        buf.extend_from_slice(&input[at..at + n]);
        at += n;
        i += 1;
    }
}

proptest! {
    #[test]
    fn requests_survive_any_split(
        reqs in proptest::collection::vec(proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..70), 1..8), 1..6),
        sizes in proptest::collection::vec(1..40usize, 1..10),
    ) {
        let input: Vec<u8> = reqs.iter().flat_map(|r| encode(r)).collect();
        let (got, err) = feed(&input, &sizes, true);
        prop_assert_eq!(err, None);
        let got: Vec<Vec<Vec<u8>>> = got.into_iter().map(|r| r.into_iter().map(|a| a.to_vec()).collect()).collect();
        prop_assert_eq!(got, reqs);
    }

    #[test]
    fn inline_words(words in proptest::collection::vec("[a-zA-Z0-9:_.-]{1,12}", 1..8), sizes in proptest::collection::vec(1..10usize, 1..5)) {
        let line = format!("{}\r\n", words.join("  "));
        let (got, err) = feed(line.as_bytes(), &sizes, true);
        prop_assert_eq!(err, None);
        prop_assert_eq!(got.len(), 1);
        let got: Vec<String> = got[0].iter().map(|a| String::from_utf8(a.to_vec()).unwrap()).collect();
        prop_assert_eq!(got, words);
    }

    #[test]
    fn any_input_same_whole_or_split(
        input in proptest::collection::vec(prop_oneof![Just(b'*'), Just(b'$'), Just(b'\r'), Just(b'\n'), Just(b'"'), Just(b' '), Just(b'1'), Just(b'-'), any::<u8>()], 0..300),
        sizes in proptest::collection::vec(1..20usize, 1..6),
        auth in any::<bool>(),
    ) {
        let whole = feed(&input, &[input.len().max(1)], auth);
        let split = feed(&input, &sizes, auth);
        prop_assert_eq!(whole, split);
    }
}

#[test]
fn pre_auth_limits_apply_only_before_auth() {
    let big = vec![b'x'; 20_000];
    let req = encode(&[b"SET".to_vec(), b"k".to_vec(), big.clone()]);
    assert_eq!(feed(&req, &[4096], false).1, Some(ProtocolError::UnauthenticatedBulkLength));
    let (got, err) = feed(&req, &[4096], true);
    assert_eq!((got.len(), err), (1, None));
    assert_eq!(got[0][2], big);
}
