//! Python's `hash` and `==` for dict keys and set elements: which nodes CPython takes for
//! the same key, and which it refuses as keys.
//!
//! Invariant: [`Keys::eq`]`(a, b)` implies `hash(a) == hash(b)` for both hashers, and
//! both agree with CPython for the hashable native kinds: `None`; the numbers `bool`,
//! `int`, `float` and `complex` compared by value across types (`1 == 1.0 == True ==
//! 1+0j`, `-0.0 == 0`), a NaN equal only to itself (the same node); `str`; `bytes`;
//! tuples element by element; frozensets as sets; and globals by module and name (a
//! pickle names one class or function object with them). Any other node — an object kept
//! as data, a persistent id, an extension — is compared by identity, the only equality
//! the codec can know without running its `__eq__`, except the `collections` containers
//! whose type makes them unhashable. `list`, `dict`, `set` and `bytearray` (and tuples
//! or frozensets holding one) are unhashable, as in CPython. Nothing here recurses in
//! proportion to the input, and the work on a cyclic graph (possible only in a value
//! built by hand) is bounded.

use std::collections::HashMap;

use crate::int::{BigInt, Int128, big_to_128, big_to_float_exact};
use crate::value::{Construct, Global, Node, NodeId};

// ----- numbers -----

/// A real number, exactly: `m × 2^e` with `m` odd (or `0 × 2^0`), or an infinity. An
/// `int` and a `float` are equal in Python exactly when these are.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Real {
    Fin(i64, i32),
    Inf(bool),
}

/// A number as Python compares it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Num<'a> {
    Real(Real),
    /// An int that no float holds exactly.
    Big(&'a BigInt),
    /// A complex number with a non-zero imaginary part (one with a zero imaginary part
    /// is its real part).
    Complex(Real, Real),
}

/// The exact value of an `i64`.
pub(crate) fn int_real(i: i64) -> Real {
    if i == 0 {
        return Real::Fin(0, 0);
    }
    let tz = i.trailing_zeros();
    Real::Fin(i >> tz, tz as i32)
}

/// The exact value of a float; `None` for a NaN (equal to nothing but itself).
pub(crate) fn float_real(x: f64) -> Option<Real> {
    if x.is_nan() {
        return None;
    }
    if x.is_infinite() {
        return Some(Real::Inf(x > 0.0));
    }
    if x == 0.0 {
        return Some(Real::Fin(0, 0));
    }
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1 << 52) - 1);
    let (m, e) = if exp == 0 { (frac, -1074) } else { (frac | (1 << 52), exp - 1075) };
    let tz = m.trailing_zeros();
    let m = (m >> tz) as i64;
    Some(Real::Fin(if bits >> 63 == 1 { -m } else { m }, e + tz as i32))
}

/// The value of an int outside `i64` (or inside it, in a value built by hand).
pub(crate) fn big_num(b: &BigInt) -> Num<'_> {
    if let Some(Int128::Signed(x)) = big_to_128(b)
        && let Ok(i) = i64::try_from(x)
    {
        return Num::Real(int_real(i));
    }
    match big_to_float_exact(b, 53, 1024).and_then(float_real) {
        Some(r) => Num::Real(r),
        None => Num::Big(b),
    }
}

/// A complex number from its two parts (floats, or ints CPython converts to floats);
/// `None` when a part is a NaN.
pub(crate) fn complex_num(re: f64, im: f64) -> Option<Num<'static>> {
    let (r, i) = (float_real(re)?, float_real(im)?);
    Some(if i == Real::Fin(0, 0) { Num::Real(r) } else { Num::Complex(r, i) })
}

/// `builtins.complex(re, im)` as the pickle built it (`REDUCE`, `NEWOBJ`, `INST`/`OBJ`,
/// with no operations after): its two parts. Arguments may be floats, ints that a float
/// holds, or bools; absent ones are zero, as in Python.
pub(crate) fn complex_parts(nodes: &[Node], id: NodeId) -> Option<(f64, f64)> {
    let Some(Node::Object(o)) = nodes.get(id.index()) else { return None };
    if !o.ops.is_empty() {
        return None;
    }
    let is_complex = |cls: NodeId| matches!(nodes.get(cls.index()), Some(Node::Global(g)) if g.module == "builtins" && g.name == "complex");
    let tuple = |t: NodeId| match nodes.get(t.index()) {
        Some(Node::Tuple(items)) => Some(items.as_slice()),
        _ => None,
    };
    let args: &[NodeId] = match &o.construct {
        Construct::Reduce { callable: cls, args } | Construct::NewObj { cls, args } if is_complex(*cls) => {
            tuple(*args)?
        }
        Construct::Instantiate { cls, args } if is_complex(*cls) => args,
        _ => return None,
    };
    let part = |id: &NodeId| -> Option<f64> {
        match nodes.get(id.index())? {
            Node::Float(x) => Some(*x),
            Node::Int(i) if i.unsigned_abs() <= 1 << 53 => Some(*i as f64),
            Node::Bool(b) => Some(f64::from(u8::from(*b))),
            _ => None,
        }
    };
    match args {
        [] => Some((0.0, 0.0)),
        [re] => Some((part(re)?, 0.0)),
        [re, im] => Some((part(re)?, part(im)?)),
        _ => None,
    }
}

// ----- what a node is as a key -----

/// A node as a dict key.
pub(crate) enum KeyView<'a> {
    None,
    Num(Num<'a>),
    Str(&'a [u8]),
    Bytes(&'a [u8]),
    Tuple(&'a [NodeId]),
    FrozenSet(&'a [NodeId]),
    Global(&'a Global),
    /// Equal only to itself: an object, a NaN, a persistent id, ...
    Identity,
    /// Python refuses it as a key: `unhashable type: '<name>'`.
    Unhashable(&'static str),
}

/// The `collections` types that are unhashable (mutable containers).
const UNHASHABLE_OBJECTS: [(&str, &str, &str); 4] = [
    ("collections", "OrderedDict", "collections.OrderedDict"),
    ("collections", "defaultdict", "collections.defaultdict"),
    ("collections", "deque", "collections.deque"),
    ("collections", "Counter", "collections.Counter"),
];

fn object_type(nodes: &[Node], id: NodeId) -> Option<(&str, &str)> {
    let global = |id: NodeId| match nodes.get(id.index()) {
        Some(Node::Global(g)) => Some((g.module.as_str(), g.name.as_str())),
        _ => None,
    };
    let Some(Node::Object(o)) = nodes.get(id.index()) else { return None };
    match &o.construct {
        Construct::Reduce { callable, args } => {
            let (m, n) = global(*callable)?;
            if m == "copyreg" && matches!(n, "_reconstructor" | "__newobj__" | "__newobj_ex__") {
                let Some(Node::Tuple(items)) = nodes.get(args.index()) else { return None };
                global(*items.first()?)
            } else {
                Some((m, n))
            }
        }
        Construct::NewObj { cls, .. } | Construct::NewObjEx { cls, .. } | Construct::Instantiate { cls, .. } => {
            global(*cls)
        }
    }
}

/// What the node at `id` is as a key.
pub(crate) fn view(nodes: &[Node], id: NodeId) -> KeyView<'_> {
    let Some(node) = nodes.get(id.index()) else { return KeyView::Identity };
    match node {
        Node::None => KeyView::None,
        Node::Bool(b) => KeyView::Num(Num::Real(int_real(i64::from(*b)))),
        Node::Int(i) => KeyView::Num(Num::Real(int_real(*i))),
        Node::BigInt(b) => KeyView::Num(big_num(b)),
        Node::Float(x) => match float_real(*x) {
            Some(r) => KeyView::Num(Num::Real(r)),
            None => KeyView::Identity,
        },
        Node::Str(s) => KeyView::Str(s.as_surrogatepass()),
        Node::Bytes(b) => KeyView::Bytes(b),
        Node::ByteArray(_) => KeyView::Unhashable("bytearray"),
        Node::List(_) => KeyView::Unhashable("list"),
        Node::Dict(_) => KeyView::Unhashable("dict"),
        Node::Set(_) => KeyView::Unhashable("set"),
        Node::Tuple(items) => KeyView::Tuple(items),
        Node::FrozenSet(items) => KeyView::FrozenSet(items),
        Node::Global(g) => KeyView::Global(g),
        Node::Object(_) => {
            if let Some((re, im)) = complex_parts(nodes, id) {
                return match complex_num(re, im) {
                    Some(n) => KeyView::Num(n),
                    None => KeyView::Identity,
                };
            }
            match object_type(nodes, id) {
                Some((m, n)) => match UNHASHABLE_OBJECTS.iter().find(|(um, un, _)| *um == m && *un == n) {
                    Some((_, _, full)) => KeyView::Unhashable(full),
                    None => KeyView::Identity,
                },
                None => KeyView::Identity,
            }
        }
        Node::PersistentId(_) | Node::Buffer { .. } | Node::Extension(_) => KeyView::Identity,
    }
}

// ----- hashing -----

/// A random seed, the same for the whole process: hashes made with it cannot be
/// predicted from outside, so chosen collisions are not practical (see [`duplicates`]).
pub(crate) fn process_seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0x5eed_u64))
}

const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;
const P2: u64 = 0x8ebc_6af0_9c88_c6e3;

/// The folded multiply of `wyhash`/`foldhash`: the 128-bit product's halves xored, so
/// that every input bit reaches every output bit.
#[inline(always)]
fn mix(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

#[inline(always)]
fn word(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()).map_or(0, u64::from_le_bytes)
}

#[inline(always)]
fn half(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 4).and_then(|w| <[u8; 4]>::try_from(w).ok()).map_or(0, |w| u64::from(u32::from_le_bytes(w)))
}

/// A fast hash of bytes (after `wyhash`: short inputs read as two overlapping words,
/// longer ones 16 bytes at a time), seeded and tagged by kind. Deterministic for a
/// seed; not a cryptographic hash.
#[inline]
fn hash_bytes(seed: u64, tag: u64, b: &[u8]) -> u64 {
    let len = b.len();
    let s = seed ^ mix(tag ^ P2, len as u64 ^ P1);
    let (x, y, s) = if len <= 16 {
        if len >= 8 {
            (word(b, 0), word(b, len - 8), s)
        } else if len >= 4 {
            (half(b, 0), half(b, len - 4), s)
        } else if len > 0 {
            let (a, m, z) = (b[0], b[len / 2], b[len - 1]);
            ((u64::from(a) << 16) | (u64::from(m) << 8) | u64::from(z), 0, s)
        } else {
            (0, 0, s)
        }
    } else {
        let mut s = s;
        let mut i = 0;
        while i + 16 < len {
            s = mix(word(b, i) ^ P0, word(b, i + 8) ^ s);
            i += 16;
        }
        (word(b, len - 16), word(b, len - 8), s)
    };
    mix(x ^ P0 ^ s, y ^ P1 ^ s)
}

/// Combines a kind tag and a sequence of hashes, in order.
#[inline]
fn hash_words(seed: u64, tag: u64, words: impl Iterator<Item = u64>) -> u64 {
    let mut s = seed ^ mix(tag ^ P2, P1);
    for w in words {
        s = mix(s ^ P0, w ^ P1);
    }
    s
}

const T_NONE: u64 = 1;
const T_NUM: u64 = 2;
const T_BIG: u64 = 3;
const T_COMPLEX: u64 = 4;
const T_STR: u64 = 5;
const T_BYTES: u64 = 6;
const T_TUPLE: u64 = 7;
const T_FROZENSET: u64 = 8;
const T_GLOBAL: u64 = 9;
const T_IDENTITY: u64 = 10;
const T_INF: u64 = 11;

fn real_words(r: Real) -> (u64, u64) {
    match r {
        Real::Fin(m, e) => (m as u64, e as u64),
        Real::Inf(pos) => (T_INF, u64::from(pos)),
    }
}

/// A scalar key: `None`, a number, a str (its `surrogatepass` bytes) or bytes. The
/// direct deserializer hashes the scalars it streams with [`scalar_hash`].
pub(crate) enum Scalar<'a> {
    None,
    Num(Num<'a>),
    Str(&'a [u8]),
    Bytes(&'a [u8]),
}

/// The hash of a scalar key with `seed`; keys Python finds equal hash alike.
#[inline]
pub(crate) fn scalar_hash(seed: u64, s: &Scalar<'_>) -> u64 {
    match s {
        Scalar::None => hash_words(seed, T_NONE, std::iter::empty()),
        Scalar::Num(Num::Real(r)) => {
            let (a, b) = real_words(*r);
            mix(seed ^ a ^ P0, b ^ mix(T_NUM, P2))
        }
        Scalar::Num(Num::Big(b)) => hash_words(
            seed,
            T_BIG,
            std::iter::once(u64::from(b.is_negative())).chain(b.magnitude().iter().map(|&l| u64::from(l))),
        ),
        Scalar::Num(Num::Complex(re, im)) => {
            let ((a, b), (c, d)) = (real_words(*re), real_words(*im));
            hash_words(seed, T_COMPLEX, [a, b, c, d].into_iter())
        }
        Scalar::Str(b) => hash_bytes(seed, T_STR, b),
        Scalar::Bytes(b) => hash_bytes(seed, T_BYTES, b),
    }
}

/// The hash of an object equal only to itself, by a number that names it.
pub(crate) fn identity_hash(seed: u64, id: u64) -> u64 {
    hash_words(seed, T_IDENTITY, std::iter::once(id))
}

/// The hash of a tuple from its items' hashes, in order.
pub(crate) fn tuple_hash(seed: u64, items: &[u64]) -> u64 {
    hash_words(seed, T_TUPLE, std::iter::once(items.len() as u64).chain(items.iter().copied()))
}

/// The hash of a frozenset from its elements' hashes, in any order, repeats ignored.
pub(crate) fn frozenset_hash(seed: u64, items: &mut Vec<u64>) -> u64 {
    items.sort_unstable();
    items.dedup();
    hash_words(seed, T_FROZENSET, items.iter().copied())
}

/// Keys of one graph: hashes (with tuples' and frozensets' cached) and equality.
pub(crate) struct Keys<'n> {
    nodes: &'n [Node],
    seed: u64,
    cache: HashMap<u32, u64>,
}

/// Frozensets nested deeper than this inside each other (as elements) are compared by
/// identity: CPython's own comparison recurses, and such values do not occur in practice.
const FROZENSET_DEPTH: u32 = 32;

impl<'n> Keys<'n> {
    pub(crate) fn new(nodes: &'n [Node], seed: u64) -> Self {
        Keys { nodes, seed, cache: HashMap::new() }
    }

    /// The hash of a hashable node (an unhashable one gets a hash too; it is never
    /// compared).
    pub(crate) fn hash(&mut self, id: NodeId) -> u64 {
        match view(self.nodes, id) {
            KeyView::Tuple(_) | KeyView::FrozenSet(_) => self.compound_hash(id),
            other => self.flat_hash(id, &other),
        }
    }

    fn flat_hash(&self, id: NodeId, v: &KeyView<'_>) -> u64 {
        let scalar = match v {
            KeyView::None => Scalar::None,
            KeyView::Num(n) => Scalar::Num(*n),
            KeyView::Str(b) => Scalar::Str(b),
            KeyView::Bytes(b) => Scalar::Bytes(b),
            KeyView::Global(g) => {
                let m = hash_bytes(self.seed, T_GLOBAL, g.module.as_bytes());
                return hash_bytes(m, T_GLOBAL, g.name.as_bytes());
            }
            _ => return identity_hash(self.seed, u64::from(id.0)),
        };
        scalar_hash(self.seed, &scalar)
    }

    /// Hashes of tuples and frozensets, bottom up with an explicit stack, cached per
    /// node. A tuple met again while its own hash is being computed (a cycle, in a value
    /// built by hand) counts by identity there.
    fn compound_hash(&mut self, root: NodeId) -> u64 {
        if let Some(&h) = self.cache.get(&root.0) {
            return h;
        }
        let nodes = self.nodes;
        let mut open: HashMap<u32, ()> = HashMap::new();
        let mut stack = vec![(root, false)];
        while let Some((id, expanded)) = stack.pop() {
            if self.cache.contains_key(&id.0) {
                continue;
            }
            let (items, frozen) = match view(nodes, id) {
                KeyView::Tuple(items) => (items, false),
                KeyView::FrozenSet(items) => (items, true),
                _ => continue,
            };
            if !expanded {
                open.insert(id.0, ());
                stack.push((id, true));
                for &c in items {
                    if matches!(view(nodes, c), KeyView::Tuple(_) | KeyView::FrozenSet(_))
                        && !self.cache.contains_key(&c.0)
                        && !open.contains_key(&c.0)
                    {
                        stack.push((c, false));
                    }
                }
                continue;
            }
            let child = |k: &Self, c: NodeId| -> u64 {
                match view(nodes, c) {
                    KeyView::Tuple(_) | KeyView::FrozenSet(_) => match k.cache.get(&c.0) {
                        Some(&h) => h,
                        None => k.flat_hash(c, &KeyView::Identity),
                    },
                    other => k.flat_hash(c, &other),
                }
            };
            let mut hs: Vec<u64> = items.iter().map(|&c| child(self, c)).collect();
            let h = if frozen { frozenset_hash(self.seed, &mut hs) } else { tuple_hash(self.seed, &hs) };
            open.remove(&id.0);
            self.cache.insert(id.0, h);
        }
        self.cache.get(&root.0).copied().unwrap_or(0)
    }

    /// Python's `a == b` for two keys (see the module docs).
    pub(crate) fn eq(&mut self, a: NodeId, b: NodeId) -> bool {
        self.eq_at(a, b, 0)
    }

    fn eq_at(&mut self, a: NodeId, b: NodeId, depth: u32) -> bool {
        let nodes = self.nodes;
        let mut budget = nodes.len().saturating_mul(2).saturating_add(64);
        let mut work: Vec<(NodeId, NodeId)> = Vec::new();
        let (mut a, mut b) = (a, b);
        loop {
            if a != b {
                let equal = match (view(nodes, a), view(nodes, b)) {
                    (KeyView::None, KeyView::None) => true,
                    (KeyView::Num(x), KeyView::Num(y)) => x == y,
                    (KeyView::Str(x), KeyView::Str(y)) | (KeyView::Bytes(x), KeyView::Bytes(y)) => x == y,
                    (KeyView::Global(x), KeyView::Global(y)) => x == y,
                    (KeyView::Tuple(x), KeyView::Tuple(y)) => {
                        if x.len() != y.len() || budget < x.len() {
                            return false;
                        }
                        budget -= x.len();
                        work.extend(x.iter().copied().zip(y.iter().copied()).rev());
                        true
                    }
                    (KeyView::FrozenSet(x), KeyView::FrozenSet(y)) => self.frozenset_eq(a, x, b, y, depth),
                    _ => false,
                };
                if !equal {
                    return false;
                }
            }
            match work.pop() {
                Some((x, y)) => (a, b) = (x, y),
                None => return true,
            }
        }
    }

    /// Two frozensets are equal when each element of one has an equal in the other.
    fn frozenset_eq(&mut self, a: NodeId, x: &[NodeId], b: NodeId, y: &[NodeId], depth: u32) -> bool {
        if depth >= FROZENSET_DEPTH || self.hash(a) != self.hash(b) {
            return false;
        }
        let mut by_hash: HashMap<u64, Vec<NodeId>> = HashMap::new();
        for &e in y {
            let h = self.hash(e);
            by_hash.entry(h).or_default().push(e);
        }
        let mut distinct_x = 0usize;
        let mut seen_x: HashMap<u64, Vec<NodeId>> = HashMap::new();
        for &e in x {
            let h = self.hash(e);
            let dup = seen_x.get(&h).is_some_and(|v| v.clone().into_iter().any(|o| self.eq_at(o, e, depth + 1)));
            if dup {
                continue;
            }
            seen_x.entry(h).or_default().push(e);
            distinct_x += 1;
            let found = by_hash.get(&h).is_some_and(|v| v.clone().into_iter().any(|o| self.eq_at(o, e, depth + 1)));
            if !found {
                return false;
            }
        }
        // Every distinct element of `x` is in `y`; equal when `y` has no more of them.
        let mut distinct_y = 0usize;
        let mut seen_y: HashMap<u64, Vec<NodeId>> = HashMap::new();
        for &e in y {
            let h = self.hash(e);
            let dup = seen_y.get(&h).is_some_and(|v| v.clone().into_iter().any(|o| self.eq_at(o, e, depth + 1)));
            if !dup {
                seen_y.entry(h).or_default().push(e);
                distinct_y += 1;
            }
        }
        distinct_x == distinct_y
    }
}

// ----- hashability -----

/// Whether the node is a hashable atom: a str, number, `None`, bytes or global (most
/// keys), which needs no further look.
#[inline(always)]
pub(crate) fn is_atom(nodes: &[Node], id: NodeId) -> bool {
    matches!(
        nodes.get(id.index()),
        Some(
            Node::Str(_)
                | Node::Int(_)
                | Node::Float(_)
                | Node::Bool(_)
                | Node::None
                | Node::Bytes(_)
                | Node::BigInt(_)
                | Node::Global(_)
        )
    )
}

/// Tuples and frozensets already found hashable, so that a key fetched from the memo
/// many times is checked once.
#[derive(Default)]
pub(crate) struct Hashable {
    known: HashMap<u32, ()>,
}

impl Hashable {
    /// `Err(type name)` when Python would refuse the node as a key
    /// (`unhashable type: 'list'`): a list, dict, set or bytearray, an unhashable
    /// `collections` container, or a tuple or frozenset holding one.
    #[inline]
    pub(crate) fn check(&mut self, nodes: &[Node], id: NodeId) -> Result<(), &'static str> {
        if is_atom(nodes, id) { Ok(()) } else { self.check_slow(nodes, id) }
    }

    #[inline(never)]
    fn check_slow(&mut self, nodes: &[Node], id: NodeId) -> Result<(), &'static str> {
        let compound = match view(nodes, id) {
            KeyView::Unhashable(name) => return Err(name),
            KeyView::Tuple(_) | KeyView::FrozenSet(_) => true,
            _ => false,
        };
        if !compound || self.known.contains_key(&id.0) {
            return Ok(());
        }
        let mut visited: HashMap<u32, ()> = HashMap::new();
        let mut stack = vec![id];
        while let Some(t) = stack.pop() {
            if self.known.contains_key(&t.0) || visited.insert(t.0, ()).is_some() {
                continue;
            }
            if let KeyView::Tuple(items) | KeyView::FrozenSet(items) = view(nodes, t) {
                for &c in items {
                    match view(nodes, c) {
                        KeyView::Unhashable(name) => return Err(name),
                        KeyView::Tuple(_) | KeyView::FrozenSet(_) => stack.push(c),
                        _ => {}
                    }
                }
            }
        }
        self.known.extend(visited);
        Ok(())
    }
}

// ----- removing duplicates -----

/// Containers up to this many entries compare the hashes of all pairs; larger ones use
/// a table. The hashes are seeded per process ([`process_seed`]), so that chosen
/// collisions cannot make large containers quadratic.
const SMALL: usize = 32;

/// A text's length and first (and last) bytes as a word, read without a copy loop:
/// equal texts give equal words, and most unequal short ones different words.
#[inline(always)]
fn head_word(t: &[u8]) -> u64 {
    let len = t.len();
    let w = if len >= 8 {
        word(t, 0) ^ word(t, len - 8).rotate_left(29)
    } else if len >= 4 {
        half(t, 0) | (half(t, len - 4) << 32)
    } else if len > 0 {
        u64::from(t[0]) | (u64::from(t[len / 2]) << 8) | (u64::from(t[len - 1]) << 16)
    } else {
        0
    };
    w ^ ((len as u64) << 57) ^ ((len as u64) >> 7)
}

/// Up to this many keys, all strs, [`may_repeat`] compares them pair by pair.
const FEW_STRS: usize = 8;

/// The hash of a key of the common kinds (the same as [`Keys::hash`] gives it), without
/// the general machinery; `None` for the others.
#[inline]
fn quick_hash(nodes: &[Node], id: NodeId, seed: u64) -> Option<u64> {
    let scalar = match nodes.get(id.index())? {
        Node::Str(s) => Scalar::Str(s.as_surrogatepass()),
        Node::Int(i) => Scalar::Num(Num::Real(int_real(*i))),
        Node::Bool(b) => Scalar::Num(Num::Real(int_real(i64::from(*b)))),
        Node::None => Scalar::None,
        Node::Float(x) => Scalar::Num(Num::Real(float_real(*x)?)),
        Node::Bytes(b) => Scalar::Bytes(b),
        _ => return None,
    };
    Some(scalar_hash(seed, &scalar))
}

/// False when no two of `keys` can be equal (their fast hashes all differ), which is
/// every dict and set CPython writes; true when [`duplicates`] must decide. Allocates
/// nothing for up to [`SMALL`] keys, and one table otherwise.
pub(crate) fn may_repeat(nodes: &[Node], keys: impl ExactSizeIterator<Item = NodeId> + Clone) -> bool {
    // A few str keys (records, most dicts): their lengths and first bytes compared
    // pair by pair, no hashing; only a pair alike there is compared in full.
    if keys.len() <= FEW_STRS {
        let mut heads = [0u64; FEW_STRS];
        let mut all_strs = true;
        for (i, k) in keys.clone().enumerate() {
            match nodes.get(k.index()) {
                Some(Node::Str(s)) => heads[i] = head_word(s.as_surrogatepass()),
                _ => {
                    all_strs = false;
                    break;
                }
            }
        }
        if all_strs {
            let n = keys.len();
            let heads = &heads[..n];
            // Alike heads: compare the texts (or say "may repeat", which costs only the
            // exact check).
            return heads.iter().enumerate().any(|(i, h)| heads[..i].contains(h));
        }
    }
    let seed = process_seed();
    let mut general: Option<Keys<'_>> = None;
    let mut hash = |id: NodeId| match quick_hash(nodes, id, seed) {
        Some(h) => h,
        None => general.get_or_insert_with(|| Keys::new(nodes, seed)).hash(id),
    };
    if keys.len() <= SMALL {
        let mut seen = [0u64; SMALL];
        for (i, k) in keys.enumerate() {
            let h = hash(k);
            if seen[..i].contains(&h) {
                return true;
            }
            seen[i] = h;
        }
        return false;
    }
    // Open addressing: a power-of-two table at least 1.5 times the key count; 0 marks
    // a free slot (a hash of 0 is stored as 1).
    let size = (keys.len() * 3 / 2).next_power_of_two();
    let mut table = vec![0u64; size];
    for k in keys {
        let h = hash(k).max(1);
        let mut i = (h as usize) & (size - 1);
        loop {
            match table[i] {
                0 => {
                    table[i] = h;
                    break;
                }
                x if x == h => return true,
                _ => i = (i + 1) & (size - 1),
            }
        }
    }
    false
}

/// For each entry, `Some(j)` when its key repeats the key of an earlier entry `j`
/// (itself kept), else `None`. `keys[i]` is the key of entry `i`.
pub(crate) fn duplicates(nodes: &[Node], keys: &[NodeId]) -> Vec<Option<usize>> {
    let mut merged = vec![None; keys.len()];
    if keys.len() < 2 {
        return merged;
    }
    let mut k = Keys::new(nodes, process_seed());
    if keys.len() <= SMALL {
        let hashes: Vec<u64> = keys.iter().map(|&id| k.hash(id)).collect();
        for i in 1..keys.len() {
            for j in 0..i {
                if merged[j].is_none() && hashes[i] == hashes[j] && k.eq(keys[j], keys[i]) {
                    merged[i] = Some(j);
                    break;
                }
            }
        }
        return merged;
    }
    let mut first: HashMap<u64, Vec<usize>> = HashMap::with_capacity(keys.len());
    for (i, &id) in keys.iter().enumerate() {
        let h = k.hash(id);
        let slot = first.entry(h).or_default();
        match slot.iter().copied().find(|&j| k.eq(keys[j], id)) {
            Some(j) => merged[i] = Some(j),
            None => slot.push(i),
        }
    }
    merged
}

/// Removes repeated keys from dict entries as CPython's `d[k] = v` does: the first key
/// object stays, in its place, with the value set last.
pub(crate) fn dedup_pairs(nodes: &[Node], pairs: &mut Vec<(NodeId, NodeId)>) -> bool {
    if !may_repeat(nodes, pairs.iter().map(|p| p.0)) {
        return false;
    }
    let keys: Vec<NodeId> = pairs.iter().map(|p| p.0).collect();
    let merged = duplicates(nodes, &keys);
    if merged.iter().all(Option::is_none) {
        return false;
    }
    for (i, m) in merged.iter().enumerate() {
        if let Some(j) = *m {
            pairs[j].1 = pairs[i].1;
        }
    }
    let mut i = 0;
    pairs.retain(|_| {
        i += 1;
        merged[i - 1].is_none()
    });
    true
}

/// Removes repeated set elements as CPython's `set.add` does: the first stays.
pub(crate) fn dedup_items(nodes: &[Node], items: &mut Vec<NodeId>) -> bool {
    if !may_repeat(nodes, items.iter().copied()) {
        return false;
    }
    let merged = duplicates(nodes, items);
    if merged.iter().all(Option::is_none) {
        return false;
    }
    let mut i = 0;
    items.retain(|_| {
        i += 1;
        merged[i - 1].is_none()
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{Object, PyStr};

    fn eq(nodes: &[Node], a: u32, b: u32) -> bool {
        let mut k = Keys::new(nodes, 0);
        let e = k.eq(NodeId(a), NodeId(b));
        if e {
            assert_eq!(k.hash(NodeId(a)), k.hash(NodeId(b)), "equal keys {a}, {b} hash apart");
            let mut r = Keys::new(nodes, process_seed());
            assert_eq!(r.hash(NodeId(a)), r.hash(NodeId(b)));
        }
        for id in [NodeId(a), NodeId(b)] {
            if let Some(q) = quick_hash(nodes, id, 7) {
                assert_eq!(q, Keys::new(nodes, 7).hash(id), "the quick hash of {id:?} differs");
            }
        }
        e
    }

    #[test]
    fn numbers_compare_across_types() {
        let nodes = vec![
            Node::Int(1),
            Node::Float(1.0),
            Node::Bool(true),
            Node::Int(0),
            Node::Float(-0.0),
            Node::Bool(false),
            Node::Float(f64::NAN),
            Node::Float(0.5),
            Node::Int(i64::MIN),
            Node::Float(-(2f64.powi(63))),
            Node::Float(f64::INFINITY),
            Node::Int(2),
        ];
        assert!(eq(&nodes, 0, 1) && eq(&nodes, 1, 2) && eq(&nodes, 0, 2));
        assert!(eq(&nodes, 3, 4) && eq(&nodes, 4, 5));
        assert!(!eq(&nodes, 6, 6 + 1) && eq(&nodes, 6, 6), "a NaN equals only itself");
        assert!(!eq(&nodes, 0, 7) && !eq(&nodes, 0, 11) && !eq(&nodes, 10, 1));
        assert!(eq(&nodes, 8, 9), "i64::MIN == -2.0**63");
        // 2**64 as an int beyond i64 and as a float.
        let big = match BigInt::from_sign_magnitude(false, vec![0, 0, 1]) {
            crate::Int::Big(b) => b,
            crate::Int::Small(_) => panic!("2**64 is big"),
        };
        let nodes = vec![Node::BigInt(Box::new(big)), Node::Float(18446744073709551616.0)];
        assert!(eq(&nodes, 0, 1));
    }

    #[test]
    fn strs_bytes_tuples_frozensets_globals() {
        let g = |m: &str, n: &str| Node::Global(Box::new(Global { module: m.into(), name: n.into() }));
        let nodes = vec![
            Node::Str(PyStr::from("a")),                            // 0
            Node::Bytes(b"a".to_vec()),                             // 1
            Node::Str(PyStr::from("a".to_owned())),                 // 2
            Node::Tuple(vec![NodeId(0), NodeId(5)]),                // 3: ('a', 1)
            Node::Tuple(vec![NodeId(2), NodeId(6)]),                // 4: ('a', 1.0)
            Node::Int(1),                                           // 5
            Node::Float(1.0),                                       // 6
            Node::FrozenSet(vec![NodeId(5), NodeId(0), NodeId(6)]), // 7: {1, 'a', 1.0}
            Node::FrozenSet(vec![NodeId(2), NodeId(5)]),            // 8: {'a', 1}
            Node::FrozenSet(vec![NodeId(2)]),                       // 9: {'a'}
            g("m", "C"),                                            // 10
            g("m", "C"),                                            // 11
            g("m", "D"),                                            // 12
        ];
        assert!(eq(&nodes, 0, 2) && !eq(&nodes, 0, 1));
        assert!(eq(&nodes, 3, 4));
        assert!(eq(&nodes, 7, 8) && !eq(&nodes, 8, 9));
        assert!(eq(&nodes, 10, 11) && !eq(&nodes, 10, 12));
    }

    #[test]
    fn unhashable_kinds() {
        let nodes = vec![
            Node::List(vec![]),
            Node::Tuple(vec![NodeId(2), NodeId(0)]),
            Node::Int(3),
            Node::Tuple(vec![NodeId(2)]),
            Node::FrozenSet(vec![NodeId(1)]),
        ];
        let mut h = Hashable::default();
        assert_eq!(h.check(&nodes, NodeId(0)), Err("list"));
        assert_eq!(h.check(&nodes, NodeId(1)), Err("list"));
        assert_eq!(h.check(&nodes, NodeId(4)), Err("list"));
        assert_eq!(h.check(&nodes, NodeId(3)), Ok(()));
        assert_eq!(h.check(&nodes, NodeId(2)), Ok(()));
    }

    #[test]
    fn complex_numbers_equal_their_real_part() {
        let nodes = vec![
            Node::Global(Box::new(Global { module: "builtins".into(), name: "complex".into() })),
            Node::Float(1.0),
            Node::Float(0.0),
            Node::Tuple(vec![NodeId(1), NodeId(2)]),
            Node::Object(Box::new(Object {
                construct: Construct::Reduce { callable: NodeId(0), args: NodeId(3) },
                ops: vec![],
            })),
            Node::Int(1),
        ];
        assert!(eq(&nodes, 4, 5));
    }

    #[test]
    fn dedup_keeps_first_key_and_last_value() {
        let nodes = vec![Node::Int(1), Node::Float(1.0), Node::Bool(true), Node::Str("x".into())];
        let mut pairs =
            vec![(NodeId(0), NodeId(3)), (NodeId(1), NodeId(0)), (NodeId(3), NodeId(3)), (NodeId(2), NodeId(1))];
        assert!(dedup_pairs(&nodes, &mut pairs));
        assert_eq!(pairs, vec![(NodeId(0), NodeId(1)), (NodeId(3), NodeId(3))]);
        // The same with many entries (the seeded map).
        let mut nodes: Vec<Node> = (0..100).map(Node::Int).collect();
        nodes.extend((0..100).map(|i| Node::Float(f64::from(i))));
        let mut items: Vec<NodeId> = (0..200).map(NodeId).collect();
        assert!(dedup_items(&nodes, &mut items));
        assert_eq!(items, (0..100).map(NodeId).collect::<Vec<_>>());
    }

    #[test]
    fn the_fast_hash_tells_similar_keys_apart() {
        for fmt in ["item:", "item", "k", "", "key_0000"] {
            let mut seen = std::collections::HashSet::new();
            for j in 0..100_000 {
                let key = format!("{fmt}{j}");
                let h = scalar_hash(0, &Scalar::Str(key.as_bytes()));
                assert!(seen.insert(h), "{key} collides");
            }
        }
    }

    #[test]
    fn cyclic_tuples_built_by_hand_terminate() {
        let nodes = vec![Node::Tuple(vec![NodeId(0)]), Node::Tuple(vec![NodeId(1)])];
        let mut k = Keys::new(&nodes, 0);
        let _ = k.hash(NodeId(0));
        let _ = k.eq(NodeId(0), NodeId(1));
        let mut h = Hashable::default();
        assert_eq!(h.check(&nodes, NodeId(0)), Ok(()));
    }
}
