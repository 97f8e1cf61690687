//! `collections.OrderedDict`, `deque`, `Counter` and `defaultdict`.
//!
//! Invariant: the items are [`NodeId`]s of the value they were read from (or are to be
//! written into); reading checks the shape of the pickle, never the items themselves.
//!
//! CPython writes an `OrderedDict` as `OrderedDict()` and then its items one by one
//! (`SETITEMS`), a `defaultdict` as `defaultdict(factory)` (or `defaultdict()`) and then
//! its items, a `deque` as `deque((), maxlen)` (or `deque()`) and then its items
//! (`APPENDS`), a `Counter` as `Counter(dict)`.

use super::{PyObject, bad, call, describe, global_at, push_global, push_reduce};
use crate::Result;
use crate::value::{Global, Node, NodeId, ObjectOp, Value};

const ORDERED_DICT: &str = "collections.OrderedDict";
const DEQUE: &str = "collections.deque";
const COUNTER: &str = "collections.Counter";
const DEFAULT_DICT: &str = "collections.defaultdict";

/// The items set with `SETITEM` after the call; a `BUILD` of `None` or an empty dict
/// (what CPython writes for an instance without attributes) is allowed.
fn set_items(value: &Value, ops: &[ObjectOp], ty: &'static str) -> Result<Vec<(NodeId, NodeId)>> {
    let mut items = Vec::with_capacity(ops.len());
    for op in ops {
        match *op {
            ObjectOp::SetItem(k, v) => items.push((k, v)),
            ObjectOp::Build(s) if matches!(value.get(s), Some(Node::None)) => {}
            ObjectOp::Build(s) if matches!(value.get(s), Some(Node::Dict(d)) if d.is_empty()) => {}
            _ => return Err(bad(ty, "expected only items set after the call (a subclass with attributes?)")),
        }
    }
    Ok(items)
}

/// A `collections.OrderedDict`: its items in order.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct OrderedDict {
    /// The (key, value) pairs in order.
    pub items: Vec<(NodeId, NodeId)>,
}

impl PyObject for OrderedDict {
    const PYTHON_TYPE: &'static str = ORDERED_DICT;

    fn read(value: &Value, id: NodeId) -> Result<OrderedDict> {
        let c = call(value, id, ORDERED_DICT, |m, n| m == "collections" && n == "OrderedDict")?;
        let mut items = Vec::new();
        match c.args {
            [] => {}
            // OrderedDict([[k, v], ...]): what Python 2 and early Python 3 wrote.
            [pairs] => {
                for &p in
                    value.as_seq(*pairs).ok_or_else(|| bad(ORDERED_DICT, "the argument is not a list of pairs"))?
                {
                    match value.as_seq(p) {
                        Some(&[k, v]) => items.push((k, v)),
                        _ => return Err(bad(ORDERED_DICT, format!("an item is {}, not a pair", describe(value, p)))),
                    }
                }
            }
            _ => return Err(bad(ORDERED_DICT, format!("expected at most 1 argument, found {}", c.args.len()))),
        }
        items.extend(set_items(value, c.ops, ORDERED_DICT)?);
        Ok(OrderedDict { items })
    }

    fn write(&self, value: &mut Value) -> NodeId {
        let ops = self.items.iter().map(|&(k, v)| ObjectOp::SetItem(k, v)).collect();
        push_reduce(value, "collections", "OrderedDict", Vec::new(), ops)
    }
}

/// A `collections.deque`: its items and `maxlen`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Deque {
    /// The items, left to right.
    pub items: Vec<NodeId>,
    /// The maximum length, if bounded.
    pub maxlen: Option<u64>,
}

impl PyObject for Deque {
    const PYTHON_TYPE: &'static str = DEQUE;

    fn read(value: &Value, id: NodeId) -> Result<Deque> {
        let c = call(value, id, DEQUE, |m, n| m == "collections" && n == "deque")?;
        let mut items = Vec::new();
        let mut maxlen = None;
        if let Some(&first) = c.args.first() {
            items.extend_from_slice(
                value.as_seq(first).ok_or_else(|| {
                    bad(DEQUE, format!("the items are {}, not a list or tuple", describe(value, first)))
                })?,
            );
        }
        match c.args.get(1).map(|&m| (m, value.get(m))) {
            None | Some((_, Some(Node::None))) => {}
            Some((_, Some(Node::Int(n)))) if *n >= 0 => maxlen = Some(*n as u64),
            Some((m, _)) => {
                return Err(bad(DEQUE, format!("maxlen is {}, not a non-negative int", describe(value, m))));
            }
        }
        if c.args.len() > 2 {
            return Err(bad(DEQUE, format!("expected at most 2 arguments (items, maxlen), found {}", c.args.len())));
        }
        for op in c.ops {
            match *op {
                ObjectOp::Append(x) => items.push(x),
                ObjectOp::Build(s) if matches!(value.get(s), Some(Node::None)) => {}
                _ => return Err(bad(DEQUE, "expected only items appended after the call")),
            }
        }
        Ok(Deque { items, maxlen })
    }

    fn write(&self, value: &mut Value) -> NodeId {
        let empty = value.push(Node::Tuple(Vec::new()));
        let mut args = vec![empty];
        if let Some(m) = self.maxlen {
            args.push(value.push(Node::Int(i64::try_from(m).unwrap_or(i64::MAX))));
        }
        let ops = self.items.iter().map(|&x| ObjectOp::Append(x)).collect();
        push_reduce(value, "collections", "deque", args, ops)
    }
}

/// A `collections.Counter`: its (element, count) pairs in order.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Counter {
    /// The (element, count) pairs in order.
    pub items: Vec<(NodeId, NodeId)>,
}

impl PyObject for Counter {
    const PYTHON_TYPE: &'static str = COUNTER;

    fn read(value: &Value, id: NodeId) -> Result<Counter> {
        let c = call(value, id, COUNTER, |m, n| m == "collections" && n == "Counter")?;
        let mut items = match c.args {
            [] => Vec::new(),
            [d] => match value.get(*d) {
                Some(Node::Dict(pairs)) => pairs.clone(),
                _ => return Err(bad(COUNTER, format!("the argument is {}, not a dict", describe(value, *d)))),
            },
            _ => return Err(bad(COUNTER, format!("expected at most 1 argument, found {}", c.args.len()))),
        };
        items.extend(set_items(value, c.ops, COUNTER)?);
        Ok(Counter { items })
    }

    fn write(&self, value: &mut Value) -> NodeId {
        let dict = value.push(Node::Dict(self.items.clone()));
        push_reduce(value, "collections", "Counter", vec![dict], Vec::new())
    }
}

/// A `collections.defaultdict`: its default factory (a global such as `builtins.list`,
/// or none) and its items in order.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DefaultDict {
    /// The `default_factory`, by name; `None` when it is `None`.
    pub factory: Option<Global>,
    /// The (key, value) pairs in order.
    pub items: Vec<(NodeId, NodeId)>,
}

impl PyObject for DefaultDict {
    const PYTHON_TYPE: &'static str = DEFAULT_DICT;

    fn read(value: &Value, id: NodeId) -> Result<DefaultDict> {
        let c = call(value, id, DEFAULT_DICT, |m, n| m == "collections" && n == "defaultdict")?;
        let factory = match c.args {
            [] => None,
            [f] => match value.get(*f) {
                Some(Node::None) => None,
                _ => Some(global_at(value, *f).cloned().ok_or_else(|| {
                    bad(DEFAULT_DICT, format!("the default factory is {}, not a global name", describe(value, *f)))
                })?),
            },
            _ => return Err(bad(DEFAULT_DICT, format!("expected at most 1 argument, found {}", c.args.len()))),
        };
        Ok(DefaultDict { factory, items: set_items(value, c.ops, DEFAULT_DICT)? })
    }

    fn write(&self, value: &mut Value) -> NodeId {
        let args = match &self.factory {
            Some(g) => vec![push_global(value, &g.module, &g.name)],
            None => Vec::new(),
        };
        let ops = self.items.iter().map(|&(k, v)| ObjectOp::SetItem(k, v)).collect();
        push_reduce(value, "collections", "defaultdict", args, ops)
    }
}
