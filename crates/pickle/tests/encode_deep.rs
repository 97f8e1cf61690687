//! A value nested 1,000,000 levels deep encodes without recursion (no stack overflow on
//! a test thread's 2 MiB stack) and decodes back.

use pickleshelf_pickle::{self as pickle, Limits, Node, NodeId, Value};

/// `[[[...[]...]]]` (or tuples), `depth` containers deep.
fn nested(depth: usize, tuple: bool) -> Value {
    let mut v = Value::new(if tuple { Node::Tuple(Vec::new()) } else { Node::List(Vec::new()) });
    let mut inner = v.root();
    if tuple {
        // An empty tuple has no depth; start from (0,).
        let zero = v.push(Node::Int(0));
        inner = v.push(Node::Tuple(vec![zero]));
    }
    for _ in 1..depth {
        inner = v.push(if tuple { Node::Tuple(vec![inner]) } else { Node::List(vec![inner]) });
    }
    v.set_root(inner);
    v
}

/// The number of containers on the chain of first children from the root.
fn chain_len(v: &Value) -> usize {
    let mut n = 0;
    let mut id: NodeId = v.root();
    while let Node::List(items) | Node::Tuple(items) = &v[id] {
        n += 1;
        match items.first() {
            Some(&child) => id = child,
            None => break,
        }
    }
    n
}

#[test]
fn million_deep_list_and_tuple() {
    const DEPTH: usize = 1_000_000;
    let limits = Limits::default().max_depth(2_000_000);
    for tuple in [false, true] {
        let v = nested(DEPTH, tuple);
        assert_eq!(chain_len(&v), DEPTH);
        for p in [2, 4, 5] {
            let bytes = pickle::encode(&v, p).unwrap_or_else(|e| panic!("p{p}: {e}"));
            let back = pickle::decode_with(&bytes, &limits).unwrap_or_else(|e| panic!("p{p}: {e}"));
            assert_eq!(chain_len(&back), DEPTH, "tuple={tuple} p{p}");
            assert!(back.same_as(&v), "tuple={tuple} p{p}");
        }
    }
}
