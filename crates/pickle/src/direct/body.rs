//! The items of a container: where reading a list's, tuple's, set's or dict's items
//! stands, shared by serde's accessors and by skipping.
//!
//! Invariant: [`Body::step`] says `Item` exactly when the next opcodes are an item of
//! this container, and `End` only after the container's closing opcodes were read and
//! checked against what opened it.

use super::plan::{H_APPEND, H_SETITEM};
use super::stream::{
    Bail, Body, FAST_DICT_KEY, FAST_DICT_VALUE, FAST_LIST, FAST_NONE, FAST_SET, Kind, NO_ITEM, R, Step, Stream, is_memo,
};
use crate::opcodes as op;

impl Body {
    /// A container just opened; `n` is a `Kind::Tuple`'s length.
    pub(super) fn new(kind: Kind, n: u8) -> Body {
        Body {
            kind,
            batch: false,
            value_next: false,
            single: false,
            done: false,
            after: 0,
            n,
            count: 0,
            item_at: NO_ITEM,
            key_at: NO_ITEM,
            fast: FAST_NONE,
        }
    }

    /// What `fast` is for the other fields.
    pub(super) fn fast_state(&self) -> u8 {
        if self.done || !self.batch || self.after != 0 {
            return FAST_NONE;
        }
        match self.kind {
            Kind::List => FAST_LIST,
            Kind::Set => FAST_SET,
            Kind::Dict if self.value_next => FAST_DICT_VALUE,
            Kind::Dict => FAST_DICT_KEY,
            _ => FAST_NONE,
        }
    }

    /// Read as a tuple (`deserialize_tuple` takes a list or a tuple, not a set).
    pub(super) fn tuple_like(&self) -> bool {
        !matches!(self.kind, Kind::Set | Kind::MarkFrozenSet)
    }

    /// The length when the opcodes fixed it already.
    pub(super) fn fixed_len(&self) -> Option<usize> {
        match self.kind {
            Kind::Tuple => Some(usize::from(self.n)),
            Kind::EmptyTuple => Some(0),
            _ => None,
        }
    }

    pub(super) fn size_hint(&self, st: &Stream<'_>) -> Option<usize> {
        if self.done {
            return Some(0);
        }
        match self.kind {
            Kind::Tuple => Some(usize::from(self.n).saturating_sub(self.count as usize)),
            Kind::EmptyTuple => Some(0),
            _ if self.count > 0 || self.batch => None,
            Kind::List => st.scan_items(op::APPENDS),
            Kind::Set => st.scan_items(op::ADDITEMS),
            Kind::Dict => st.scan_items(op::SETITEMS).map(|n| n / 2),
            _ => None,
        }
    }

    #[inline(always)]
    pub(super) fn item(&mut self, pos: usize) -> Step {
        self.item_at = pos;
        Step::Item
    }

    /// An item of a list, set or tuple (not a dict: its entries count at their keys).
    #[inline(always)]
    pub(super) fn counted_item(&mut self, pos: usize) -> Step {
        self.count += 1;
        self.item(pos)
    }

    #[inline(always)]
    pub(super) fn end(&mut self, st: &mut Stream<'_>) -> Step {
        self.done = true;
        st.nesting -= 1;
        Step::End
    }

    /// Advances to the next item or the end. The item before, if any, must have been
    /// read whole.
    #[inline(always)]
    pub(super) fn step(&mut self, st: &mut Stream<'_>) -> R<Step> {
        if self.fast == FAST_NONE
            && !self.batch
            && self.item_at == NO_ITEM
            && !self.done
            && matches!(self.kind, Kind::List | Kind::Dict | Kind::Set)
            && st.hints.is_empty()
        {
            // A batch opening right after its container (and the container's `MEMOIZE`).
            let pos = st.pos;
            let w = st.window;
            let at = if w.get(pos) == Some(&op::MEMOIZE) { pos + 1 } else { pos };
            if w.get(at) == Some(&op::MARK) {
                if at > pos {
                    st.memo_container(op::MEMOIZE)?;
                }
                st.bump();
                st.open_mark()?;
                self.batch = true;
                self.fast = self.fast_state();
            }
        }
        // The common cases inline: the next item of a batch, and the end of a container
        // after its only batch.
        if self.fast != FAST_NONE {
            let pos = st.pos;
            if pos != self.item_at
                && let Some(&code) = st.window.get(pos)
                && code != op::FRAME
                && code != op::PROTO
            {
                let close = match self.fast {
                    FAST_LIST => op::APPENDS,
                    FAST_SET => op::ADDITEMS,
                    FAST_DICT_KEY => op::SETITEMS,
                    _ => {
                        // A dict's value.
                        self.fast = FAST_DICT_KEY;
                        self.value_next = false;
                        self.item_at = pos;
                        return Ok(Step::Item);
                    }
                };
                if code != close {
                    if self.fast == FAST_DICT_KEY {
                        self.fast = FAST_DICT_VALUE;
                        self.value_next = true;
                    }
                    self.count += 1;
                    self.item_at = pos;
                    return Ok(Step::Item);
                }
                // The batch closes; unless a memo opcode or another batch follows (or
                // the plan may have something to say), the container ends.
                if st.hints.is_empty()
                    && let Some(&next) = st.window.get(pos + 1)
                    && !is_memo(next)
                    && !matches!(next, op::MARK | op::FRAME | op::PROTO)
                {
                    st.pos = pos + 1;
                    st.marks -= 1;
                    self.batch = false;
                    self.fast = FAST_NONE;
                    return Ok(self.end(st));
                }
            }
        }
        let out = self.step_slow(st);
        self.fast = self.fast_state();
        out
    }

    #[inline(never)]
    pub(super) fn step_slow(&mut self, st: &mut Stream<'_>) -> R<Step> {
        if self.done {
            return Ok(Step::End);
        }
        if self.item_at != NO_ITEM {
            if st.pos == self.item_at {
                return Err(Bail); // nothing read it: positions would drift
            }
            self.item_at = NO_ITEM;
            if self.after != 0 {
                st.expect(self.after)?;
                self.after = 0;
            }
        }
        loop {
            let code = st.peek_op()?;
            let pos = st.pos;
            match self.kind {
                Kind::List | Kind::Set => {
                    let close = if self.kind == Kind::List { op::APPENDS } else { op::ADDITEMS };
                    if self.batch {
                        if code == close {
                            st.bump();
                            st.marks -= 1;
                            self.batch = false;
                            continue;
                        }
                        return Ok(self.counted_item(pos));
                    }
                    if is_memo(code) {
                        st.memo_container(code)?;
                    } else if code == op::MARK && !st.mark_begins_container(pos) {
                        st.bump();
                        st.open_mark()?;
                        self.batch = true;
                    } else if self.kind == Kind::List && st.take_hint(pos, H_APPEND)? {
                        self.after = op::APPEND;
                        return Ok(self.counted_item(pos));
                    } else {
                        return Ok(self.end(st));
                    }
                }
                Kind::Dict => {
                    if self.value_next {
                        self.value_next = false;
                        if self.single {
                            self.single = false;
                            self.after = op::SETITEM;
                        }
                        return Ok(self.item(pos));
                    }
                    if self.batch {
                        if code == op::SETITEMS {
                            st.bump();
                            st.marks -= 1;
                            self.batch = false;
                            continue;
                        }
                        self.value_next = true;
                        return Ok(self.counted_item(pos));
                    }
                    if is_memo(code) {
                        st.memo_container(code)?;
                    } else if code == op::MARK && !st.mark_begins_container(pos) {
                        st.bump();
                        st.open_mark()?;
                        self.batch = true;
                    } else if st.take_hint(pos, H_SETITEM)? {
                        self.single = true;
                        self.value_next = true;
                        return Ok(self.counted_item(pos));
                    } else {
                        return Ok(self.end(st));
                    }
                }
                Kind::Tuple => {
                    if self.count < u32::from(self.n) {
                        return Ok(self.counted_item(pos));
                    }
                    st.expect(op::TUPLE1 + self.n - 1)?;
                    st.created += 1;
                    st.after_container()?;
                    return Ok(self.end(st));
                }
                Kind::EmptyTuple => {
                    st.after_container()?;
                    return Ok(self.end(st));
                }
                Kind::MarkTuple | Kind::MarkFrozenSet | Kind::MarkList => {
                    let close = match self.kind {
                        Kind::MarkTuple => op::TUPLE,
                        Kind::MarkList => op::LIST,
                        _ => op::FROZENSET,
                    };
                    if code != close {
                        return Ok(self.counted_item(pos));
                    }
                    st.bump();
                    st.marks -= 1;
                    // `MARK TUPLE` with no items is the decoder's shared empty tuple.
                    if self.kind != Kind::MarkTuple || self.count > 0 {
                        st.created += 1;
                    }
                    if self.kind == Kind::MarkList {
                        self.kind = Kind::List;
                        continue;
                    }
                    st.after_container()?;
                    return Ok(self.end(st));
                }
                Kind::MarkDict => {
                    if self.value_next {
                        self.value_next = false;
                        return Ok(self.item(pos));
                    }
                    if code != op::DICT {
                        self.value_next = true;
                        return Ok(self.counted_item(pos));
                    }
                    st.bump();
                    st.marks -= 1;
                    st.created += 1;
                    self.kind = Kind::Dict;
                }
            }
        }
    }
}
