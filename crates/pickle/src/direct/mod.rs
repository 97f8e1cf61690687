//! pickle bytes → serde: [`from_slice`], which reads `T` straight from the opcodes,
//! without building a [`crate::Value`], and takes `decode` + [`from_value`] when it cannot.
//!
//! Invariant: when the direct path returns a `T`, decoding the same bytes and calling
//! [`from_value`] would have returned an equal `T` (the same visitor calls, in the
//! same order, with the same arguments); whenever it cannot be sure of that it returns
//! `None` and the caller takes the `Value` path from the start, which then decides
//! everything, errors included. Memory is the input plus what `T` keeps plus a few words
//! per memoized object, per tuple and per open container; time is linear in the input
//! (the plan, when it runs, also sorts its hints: `h log h` for `h` postfix constructs);
//! stack depth is bounded by [`crate::de::DEFAULT_MAX_DEPTH`] nested containers, as on
//! the `Value` path.
//!
//! The files: `mod.rs` the entry point, the tries and the per-thread buffers; `plan.rs`
//! the plan; `stream.rs` the cursor on the opcodes (framing, hints, limits, memo);
//! `read.rs` the values (scalars, heads of containers, skipping); `body.rs` the items of a
//! container; `deserializer.rs` serde's `Deserializer` and its accessors.
//!
//! # Why a pickle can be streamed
//!
//! A pickle is a program for a stack machine, written mostly in prefix order: a list is
//! `EMPTY_LIST`, then its items in `MARK … APPENDS` batches; a dict `EMPTY_DICT`, then
//! `MARK k v … SETITEMS`. Serde wants exactly that order (the container, then its items).
//! Three constructs are postfix, and only there does a reader going forward need to know
//! what comes later: `a b TUPLE2` (a tuple is known only after its items), `x APPEND` and
//! `k v SETITEM` (a single item, known to belong to the container below it only at the
//! opcode after it), and `MARK … TUPLE|LIST|DICT|FROZENSET` (a container whose kind is
//! known only at its end).
//!
//! # The stream, and the plan
//!
//! [`Stream`] is a serde `Deserializer` that reads the opcodes in order and checks
//! everything the decoder checks (lengths against the input, frames, UTF-8, `PROTO`, the
//! stack discipline, the decoder's mark and depth limits) and everything
//! [`from_value`] checks (types, ranges, lengths, the nesting limit, the node
//! budget). It accepts a postfix construct only where a *hint* says one begins, and then
//! only when the opcodes confirm it: told that a `TUPLE2` starts at this byte, it reads
//! two values and demands the `TUPLE2` opcode; told nothing, it ends a list where no
//! batch follows, and a stray `APPEND` later fails. So hints never change a result, only
//! whether there is one: a wrong hint (only a hostile pickle can make one) costs a
//! fallback, never a wrong value.
//!
//! The hints come from the **plan** ([`plan()`]): one pass over the opcodes that keeps
//! only the start offset of each item on the pickle's stack (it never builds a value)
//! and writes down where each postfix construct begins: "a `TUPLE2` starts at byte 40",
//! "the item at byte 61 is `APPEND`ed", "the `MARK` at byte 12 ends in `DICT`". It also
//! decides whether the pickle is streamable at all: any opcode outside the plain-data
//! subset (`REDUCE` and the other object opcodes, globals, persistent ids, out-of-band
//! buffers, `DUP`/`POP`, protocol-0 text opcodes), a memo reference (`GET`) to a container
//! (which is how shared and cyclic values look), a memo index out of order, or a stack
//! left in an odd shape at `STOP` means the `Value` path.
//!
//! [`from_slice`] runs in up to three tries:
//!
//! 1. The stream with no hints. Most pickles have no postfix construct (W1's records,
//!    W4's lists: `MARK … APPENDS`/`SETITEMS` batches of scalars and strs), and for them
//!    this is the whole cost. A pickle with one fails here, usually at once.
//! 2. After a failure: the plan; when it accepts the pickle and has hints, the stream
//!    again, with them.
//! 3. After a failure, or a refusal: `None`, and the `Value` path from the start.
//!
//! # Fallback: rerun on any error
//!
//! Every failure on the direct path — a serde error, a decode error, a construct the
//! hints did not announce, a limit — is the private [`Bail`], which carries nothing (the
//! messages serde passes it are dropped unread, so they are never even formatted).
//! [`from_slice`] then runs `decode` + `from_value`, which report exactly the
//! errors they always reported: the same `Error::Decode` offsets and `Error::Serde`
//! messages and paths, and the same choice between a type error early in the value and
//! bad bytes after it. The direct path never has to reproduce any of that. The price is
//! paid on errors only: a failing `from_slice` does the direct work up to the failure,
//! then the old work. Values of `T` built halfway are dropped, so a fallback is invisible
//! to the caller except in time — and to a `Deserialize` impl with side effects, which
//! may run up to three times.
//!
//! A pre-scan that decides everything first and never falls back was rejected: it would
//! have to reproduce every error message, path and precedence of the `Value` path for no
//! gain on the success path, and a pre-scan of every pickle cost as much as the stream
//! itself on W1's records (it is now paid only by pickles that need it).
//!
//! # Keeping the results equal
//!
//! - Every visitor call is the one [`crate::de`] makes for the same node (`visit_u64` for
//!   a non-negative int in `deserialize_any`, `visit_f64` for a float read as `f32`,
//!   `visit_borrowed_str` borrowed from the input, …); `Option`, bytes and enums look at
//!   the value first, as `de.rs` does, by putting the value's head back (`pending`).
//! - A value nothing read (a `Deserialize` impl that ignores its deserializer, a visitor
//!   that stops early) is an error at the next item or at the end, so positions cannot
//!   drift.
//! - Visits are counted as `de.rs` counts them, and the total must stay within the node
//!   budget `from_value` would compute, from a lower bound of the decoded node count.
//! - Nesting deeper than the decoder's `max_depth` (less a margin), or more open MARKs
//!   than its `max_marks`, bails, so a deeply nested value that only `IgnoredAny` skips
//!   is still refused exactly where the decoder refuses it.
//! - A memo `GET` reads a short scalar's opcode again (at most [`stream::SHORT_OP`] bytes) and
//!   takes a long str or a big int from a cache, so each fetch costs a constant.
//! - Size hints count a container's first batch when it is a run of one fixed-size
//!   scalar opcode (at most [`stream::SCAN_ITEMS`] of them), and are none otherwise; they only
//!   change the room a visitor reserves.

mod body;
mod deserializer;
mod plan;
mod read;
mod stream;

use serde::de;

use self::plan::{MAX_INPUT, plan};
use self::stream::{R, Scratch, Stream, with_scratch};
use crate::Result;
use crate::de::from_value;
use crate::decode::decode;

/// Deserializes any `T: DeserializeOwned` from pickle bytes: the same `T` (or error) as
/// [`decode`] then [`from_value`], with the mapping of [`crate::de`]. Plain data is read
/// straight from the opcodes, without building a [`crate::Value`]; objects, shared or
/// cyclic values, protocol-0 text opcodes and every error take `decode` + `from_value`.
///
/// ```
/// # use std::collections::HashMap;
/// // pickle.dumps({"a": [1, 2]}, protocol=2)
/// let m: HashMap<String, Vec<u8>> =
///     pickleshelf_pickle::from_slice(b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01]q\x02(K\x01K\x02es.")?;
/// assert_eq!(m["a"], [1, 2]);
/// # Ok::<(), pickleshelf_pickle::Error>(())
/// ```
///
/// # Errors
/// [`crate::Error::Decode`] for bad pickle bytes, [`crate::Error::Serde`] when the value
/// does not fit `T` — exactly those of `from_value(&decode(bytes)?)`. A failing call
/// costs a little more than it used to: the direct attempt, then the old path.
pub fn from_slice<T: de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    match try_direct(bytes) {
        Some(t) => Ok(t),
        None => from_value(&decode(bytes)?),
    }
}

/// Reads `T` from pickle bytes on the direct path; `None` when the `Value` path must
/// decide (see the [module docs](self)).
fn try_direct<'a, T: de::Deserialize<'a>>(input: &'a [u8]) -> Option<T> {
    if input.len() >= MAX_INPUT {
        return None;
    }
    with_scratch(|s| {
        if let Ok(t) = stream(input, s) {
            return Some(t);
        }
        s.clear();
        if !plan(input, &mut s.plan) || s.plan.hints.is_empty() {
            return None; // refused, or the same stream again
        }
        stream(input, s).ok()
    })
    .flatten()
}

/// Test hooks: the two paths of [`from_slice`] apart.
pub mod testing {
    use serde::de::DeserializeOwned;

    use crate::Result;

    /// The direct path alone; `None` when [`crate::from_slice`] falls back.
    pub fn direct<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
        super::try_direct(bytes)
    }

    /// The `Value` path alone: `from_value(&decode(bytes)?)`.
    ///
    /// # Errors
    /// As [`crate::from_slice`].
    pub fn via_value<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
        super::from_value(&super::decode(bytes)?)
    }

    /// Whether the plan accepts the pickle (the second try runs at all).
    pub fn streamable(bytes: &[u8]) -> bool {
        super::streamable(bytes)
    }

    /// Whether the first try (no plan) reads `T`.
    pub fn without_plan<T: DeserializeOwned>(bytes: &[u8]) -> bool {
        super::with_scratch(|s| super::stream::<T>(bytes, s).is_ok()).unwrap_or(false)
    }
}

/// Whether the plan accepts `bytes`.
fn streamable(input: &[u8]) -> bool {
    input.len() < MAX_INPUT && with_scratch(|s| plan(input, &mut s.plan)).unwrap_or(false)
}

/// One try: the stream with the hints in `scratch` (none before the plan ran).
fn stream<'a, T: de::Deserialize<'a>>(input: &'a [u8], scratch: &mut Scratch) -> R<T> {
    let mut st = Stream::new(input, scratch);
    // `PROTO` and the first `FRAME` now, so that the root value starts on a fast path.
    let out = st.peek_op().and_then(|_| T::deserialize(&mut st)).and_then(|t| st.finish().map(|()| t));
    st.give_back(scratch);
    out
}
