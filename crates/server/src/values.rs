//! Redis values and keys ↔ the store's pickles and keys.
//!
//! Invariant: [`to_stored`] and [`from_stored`] are inverse on every byte string:
//! `from_stored(to_stored(v)) == v`, so `GET` returns byte for byte what `SET` stored.
//! A value that is a complete, valid pickle is stored as itself (Python and Rust read
//! the object it encodes); any other value is stored *wrapped* as a Python `bytes`
//! pickle in one exact form — `80 04 8e <u64 LE length> <bytes> 2e` (protocol 4,
//! `BINBYTES8`, `STOP`) — that CPython never writes (it uses `BINBYTES8` only beyond
//! 4 GiB, and memoizes what it writes), so a pickle a client sends is never mistaken for
//! a wrapped value. A value that is itself exactly in that form is wrapped once more.
//! Keys are the store's UTF-8 strings: a key that is not UTF-8 is refused.

use std::borrow::Cow;

use pickleshelf::pickle;

/// The first bytes of a wrapped value: PROTO 4, BINBYTES8.
const WRAP_HEAD: [u8; 3] = [0x80, 0x04, 0x8e];
/// Bytes a wrapped value adds to its payload: the head, the length, STOP.
pub const WRAP_OVERHEAD: usize = WRAP_HEAD.len() + 8 + 1;

/// The payload of `stored` when it is a wrapped value.
pub fn unwrapped(stored: &[u8]) -> Option<&[u8]> {
    let rest = stored.strip_prefix(&WRAP_HEAD[..])?;
    let (len, rest) = rest.split_first_chunk::<8>()?;
    let len = usize::try_from(u64::from_le_bytes(*len)).ok()?;
    let (payload, stop) = rest.split_at_checked(len)?;
    (stop == b".").then_some(payload)
}

/// `bytes` wrapped as a Python `bytes` pickle in the server's exact form.
pub fn wrap(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + WRAP_OVERHEAD);
    out.extend_from_slice(&WRAP_HEAD);
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
    out.push(b'.');
    out
}

/// The pickle a Redis value is stored as: itself when it is a valid pickle not in the
/// wrapped form, else wrapped.
///
/// ```
/// use pickleshelf_server::values::{from_stored, to_stored};
/// assert_eq!(&*to_stored(b"\x80\x04K\x2a."), b"\x80\x04K\x2a."); // the int 42, as is
/// let stored = to_stored(b"hello").into_owned();                  // wrapped as b'hello'
/// assert_eq!(from_stored(stored), b"hello");
/// ```
pub fn to_stored(value: &[u8]) -> Cow<'_, [u8]> {
    if unwrapped(value).is_none() && pickle::check(value).is_ok() {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(wrap(value))
    }
}

/// The Redis value a stored pickle stands for (the inverse of [`to_stored`]).
pub fn from_stored(mut stored: Vec<u8>) -> Vec<u8> {
    if let Some(payload) = unwrapped(&stored) {
        let len = payload.len();
        stored.truncate(WRAP_HEAD.len() + 8 + len);
        stored.drain(..WRAP_HEAD.len() + 8);
        debug_assert_eq!(stored.len(), len);
    }
    stored
}

/// The length of the Redis value a stored pickle stands for.
pub fn value_len(stored: &[u8]) -> usize {
    unwrapped(stored).map_or(stored.len(), <[u8]>::len)
}

/// A Redis key as a store key.
///
/// # Errors
/// A message for the client (`ERR ...`) when the key is not UTF-8.
pub fn key(raw: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(raw).map_err(|e| {
        format!(
            "ERR key is not valid UTF-8 (invalid byte at offset {}): pickleshelf keys are text, see docs/SERVER.md",
            e.valid_up_to()
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wrapped_form_is_a_bytes_pickle() {
        let w = wrap(b"abc");
        let v = pickle::decode(&w).unwrap();
        assert!(matches!(v.root_node(), pickle::Node::Bytes(b) if b == b"abc"));
        // A value that looks wrapped is wrapped again, and comes back as it was.
        assert_eq!(&*to_stored(&w), wrap(&w).as_slice());
        assert_eq!(from_stored(to_stored(&w).into_owned()), w);
    }

    proptest! {
        #[test]
        fn round_trip(v in proptest::collection::vec(any::<u8>(), 0..300)) {
            let stored = to_stored(&v).into_owned();
            prop_assert!(pickle::check(&stored).is_ok());
            prop_assert_eq!(value_len(&stored), v.len());
            prop_assert_eq!(from_stored(stored), v);
        }

        #[test]
        fn pickles_are_stored_as_themselves(n in any::<i64>(), s in ".{0,40}") {
            for bytes in [pickle::to_vec(&n).unwrap(), pickle::to_vec(&s).unwrap(), pickle::to_vec(&(n, &s)).unwrap()] {
                prop_assert_eq!(&*to_stored(&bytes), bytes.as_slice());
            }
        }
    }
}
