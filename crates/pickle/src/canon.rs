//! Canonical pickles: bytes that depend only on a value's logical content, for
//! memoization keys.
//!
//! The canonical form of a plain value (objects are refused): dicts have their items
//! sorted by the canonical pickle of their keys; a set or frozenset becomes the tuple
//! `("__pickleshelf.set__", e1, e2, ...)` of its elements sorted by their canonical
//! pickles; a bytearray becomes bytes (Python finds them equal); lists and tuples keep
//! their order. The canonical pickle is that form pickled with protocol 4 in CPython's
//! *fast mode* (`Pickler.fast = True`: no memo), so it does not depend on which equal
//! objects happen to be shared either. Python computes the same bytes with the recipe
//! on [`canonical_pickle`].

use std::collections::HashMap;

use super::emit::Emitter;
use super::encode::encode_fast_acyclic;
use super::value::{Node, NodeId, PyStr, Value};
use crate::error::{Error, Result};

/// The tag of a set in the canonical form.
pub(crate) const SET_TAG: &str = "__pickleshelf.set__";

/// The canonical pickle of `value`: bytes that depend only on its logical content, for
/// keys of memoized calls.
///
/// The canonical form of a plain value: dicts have their items sorted by the canonical
/// pickle of their keys; a set or frozenset becomes the tuple
/// `("__pickleshelf.set__", e1, e2, ...)` of its elements sorted by their canonical
/// pickles; a bytearray becomes bytes (Python finds them equal); lists and tuples keep
/// their order. The canonical pickle is that form pickled with protocol 4 in CPython's
/// fast mode (no memo), so it does not depend on which equal objects happen to be
/// shared either. In Python:
///
/// ```python
/// import io, pickle
///
/// def fast_dumps(x):
///     f = io.BytesIO(); p = pickle.Pickler(f, protocol=4); p.fast = True; p.dump(x)
///     return f.getvalue()
///
/// def canonical(x):
///     t = type(x)
///     if t is dict:
///         items = [(canonical(k), canonical(v)) for k, v in x.items()]
///         return dict(sorted(items, key=lambda kv: fast_dumps(kv[0])))
///     if t in (set, frozenset):
///         return ("__pickleshelf.set__", *sorted((canonical(e) for e in x), key=fast_dumps))
///     if t is list: return [canonical(e) for e in x]
///     if t is tuple: return tuple(canonical(e) for e in x)
///     if t is bytearray: return bytes(x)
///     return x
///
/// canonical_pickle = lambda x: fast_dumps(canonical(x))
/// ```
///
/// ```
/// // pickle.dumps({'y': 2, 'x': 1}, protocol=4): the dict in its insertion order
/// let v = pickleshelf_pickle::decode(b"\x80\x04\x95\x11\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01y\x94K\x02\x8c\x01x\x94K\x01u.")?;
/// // fast_dumps({'x': 1, 'y': 2})
/// let want = b"\x80\x04\x95\x0e\x00\x00\x00\x00\x00\x00\x00}(\x8c\x01xK\x01\x8c\x01yK\x02u.";
/// assert_eq!(pickleshelf_pickle::canonical_pickle(&v)?, want);
/// # Ok::<(), pickleshelf_pickle::Error>(())
/// ```
///
/// # Errors
/// [`Error::Encode`] for a value holding objects (anything but plain data) or a cycle.
pub fn canonical_pickle(value: &Value) -> Result<Vec<u8>> {
    let c = canonicalize(value)?;
    encode_fast_acyclic(&c, 4)
}

fn plain_only(kind: &str) -> Error {
    Error::Encode(format!("a canonical pickle holds plain data only, not a {kind}"))
}

/// Builds the canonical form (a tree: nothing shared, no cycle).
fn canonicalize(value: &Value) -> Result<Value> {
    let mut out: Vec<Node> = Vec::new();
    // Canonical id of each input node, once built (shared input nodes are built once and
    // referenced twice; fast-mode encoding writes them twice, as a tree).
    let mut done: Vec<Option<NodeId>> = vec![None; value.len()];
    let mut on_path: Vec<bool> = vec![false; value.len()];
    // (node, children pushed?)
    let mut stack: Vec<(NodeId, bool)> = vec![(value.root(), false)];
    while let Some((id, expanded)) = stack.pop() {
        let node =
            value.get(id).ok_or_else(|| Error::Encode(format!("node id {} is outside the value", id.index())))?;
        if done[id.index()].is_some() {
            continue;
        }
        if !expanded {
            if on_path[id.index()] {
                return Err(Error::Encode("a cyclic value has no canonical pickle".into()));
            }
            on_path[id.index()] = true;
            stack.push((id, true));
            let at = stack.len();
            let mut cyclic = false;
            node.for_each_child(|c| match on_path.get(c.index()) {
                Some(true) => cyclic = true,
                Some(false) if done.get(c.index()).is_some_and(Option::is_none) => stack.push((c, false)),
                _ => {}
            });
            if cyclic {
                return Err(Error::Encode("a cyclic value has no canonical pickle".into()));
            }
            stack[at..].reverse();
            continue;
        }
        on_path[id.index()] = false;
        let map = |c: &NodeId| {
            done.get(c.index()).copied().flatten().ok_or_else(|| Error::Encode("internal: child not built".into()))
        };
        let built = match node {
            Node::None | Node::Bool(_) | Node::Int(_) | Node::BigInt(_) | Node::Float(_) | Node::Str(_) => node.clone(),
            Node::Bytes(b) | Node::ByteArray(b) => Node::Bytes(b.clone()),
            Node::List(items) => Node::List(items.iter().map(map).collect::<Result<_>>()?),
            Node::Tuple(items) => Node::Tuple(items.iter().map(map).collect::<Result<_>>()?),
            Node::Dict(pairs) => {
                let mut keyed = Vec::with_capacity(pairs.len());
                for (k, v) in pairs {
                    let (k, v) = (map(k)?, map(v)?);
                    keyed.push((sort_key(&out, k)?, k, v));
                }
                keyed.sort_by(|a, b| a.0.cmp(&b.0));
                Node::Dict(keyed.into_iter().map(|(_, k, v)| (k, v)).collect())
            }
            Node::Set(items) | Node::FrozenSet(items) => {
                let mut keyed = Vec::with_capacity(items.len());
                for e in items {
                    let e = map(e)?;
                    keyed.push((sort_key(&out, e)?, e));
                }
                keyed.sort_by(|a, b| a.0.cmp(&b.0));
                let tag = NodeId(out.len() as u32);
                out.push(Node::Str(PyStr::from(SET_TAG)));
                Node::Tuple(std::iter::once(tag).chain(keyed.into_iter().map(|(_, e)| e)).collect())
            }
            other => return Err(plain_only(other.type_name())),
        };
        let new = NodeId(out.len() as u32);
        out.push(built);
        done[id.index()] = Some(new);
    }
    let root = done.get(value.root().index()).copied().flatten().ok_or_else(|| Error::Encode("empty value".into()))?;
    Ok(Value::from_parts_unchecked(out, root))
}

/// The canonical (fast-mode) pickle of the subtree of `nodes` at `root`.
fn sort_key(nodes: &[Node], root: NodeId) -> Result<Vec<u8>> {
    // Atoms (most keys): written directly.
    if let Some(node) = nodes.get(root.index()) {
        let mut em = Emitter::with_capacity(4, 64)?;
        em.set_fast();
        let atom = match node {
            Node::None => {
                em.save_none();
                true
            }
            Node::Bool(b) => {
                em.save_bool(*b);
                true
            }
            Node::Int(v) => {
                em.save_i64(*v);
                true
            }
            Node::Float(v) => {
                em.save_f64(*v);
                true
            }
            Node::Str(s) => {
                em.save_str(s.as_surrogatepass())?;
                true
            }
            Node::Bytes(b) => {
                em.save_bytes(b)?;
                true
            }
            _ => false,
        };
        if atom {
            return Ok(em.finish());
        }
    }
    // Copy the subtree into its own arena, so encoding costs its size only.
    let mut sub: Vec<Node> = Vec::new();
    let mut map: HashMap<NodeId, NodeId> = HashMap::new();
    let mut stack = vec![(root, false)];
    while let Some((id, expanded)) = stack.pop() {
        if map.contains_key(&id) {
            continue;
        }
        let node = nodes.get(id.index()).ok_or_else(|| Error::Encode("internal: bad subtree id".into()))?;
        if !expanded {
            stack.push((id, true));
            node.for_each_child(|c| stack.push((c, false)));
            continue;
        }
        let m = |c: &NodeId| map.get(c).copied().unwrap_or(NodeId(0));
        let copied = match node {
            Node::List(v) => Node::List(v.iter().map(m).collect()),
            Node::Tuple(v) => Node::Tuple(v.iter().map(m).collect()),
            Node::Dict(v) => Node::Dict(v.iter().map(|(k, x)| (m(k), m(x))).collect()),
            other => other.clone(),
        };
        map.insert(id, NodeId(sub.len() as u32));
        sub.push(copied);
    }
    let r = map.get(&root).copied().unwrap_or(NodeId(0));
    encode_fast_acyclic(&Value::from_parts_unchecked(sub, r), 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ser::to_value_with_sets;

    fn cp<T: serde::Serialize>(v: &T) -> Vec<u8> {
        canonical_pickle(&to_value_with_sets(v).unwrap_or_else(|e| panic!("{e}"))).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn map_and_set_order_do_not_matter() {
        let a: std::collections::HashMap<String, i32> = (0..50).map(|i| (format!("k{i}"), i)).collect();
        let b: std::collections::HashMap<String, i32> = (0..50).rev().map(|i| (format!("k{i}"), i)).collect();
        assert_eq!(cp(&a), cp(&b));
        let s1: std::collections::HashSet<i64> = (0..100).collect();
        let s2: std::collections::HashSet<i64> = (0..100).rev().collect();
        assert_eq!(cp(&s1), cp(&s2));
        let bt: std::collections::BTreeSet<i64> = (0..100).collect();
        assert_eq!(cp(&s1), cp(&bt));
        // A list keeps its order.
        assert_ne!(cp(&vec![1, 2]), cp(&vec![2, 1]));
    }

    #[test]
    fn no_memo_opcodes() {
        let v = cp(&("a", "a", vec!["x", "x"]));
        assert!(!v.contains(&0x94), "MEMOIZE in {v:?}");
        assert!(!v.contains(&b'h'), "BINGET in {v:?}");
    }
}
