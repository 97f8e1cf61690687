//! Safe loading: a decoded pickle ([`Value`]) turned into Python objects without running
//! anything the caller did not allow.
//!
//! Invariant: before any object is made, every global the pickle names is checked
//! against the allow-table; a name not in it raises `UnpicklingError` naming
//! `module.name`, and nothing is imported or called. Only allowed callables are called
//! (with arguments decoded from the pickle), and only the operations a pickle can apply
//! (`__setstate__` or `__dict__` update, `append`, `obj[k] = v`, `add`) are applied to
//! the objects they made. Shared nodes become one shared object and cycles stay cycles;
//! the work is linear in the number of nodes and nothing recurses.

use pickleshelf::pickle::{Construct, Node, NodeId, ObjectOp, Value};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyFloat, PyFrozenSet, PyList, PySet, PyString, PyTuple, PyType};

use crate::errors::raise;

/// The globals a load may use: `table` maps `"module.qualname"` to the object, or to
/// `None` until `resolve(name)` (a Python callable that imports it) has been asked.
pub struct Allow<'py> {
    pub table: Bound<'py, PyDict>,
    pub resolve: Bound<'py, PyAny>,
}

/// Callables that pickles use to make instances of a class; allowed when the class is.
const RECONSTRUCTOR: &str = "copyreg._reconstructor";
const NEWOBJ: &str = "copyreg.__newobj__";
const NEWOBJ_EX: &str = "copyreg.__newobj_ex__";

fn global_name(value: &Value, id: NodeId) -> Option<String> {
    match value.get(id)? {
        Node::Global(g) => Some(format!("{}.{}", g.module, g.name)),
        _ => None,
    }
}

fn error(py: Python<'_>, message: String) -> PyErr {
    raise(py, "UnpicklingError", message)
}

fn not_allowed(py: Python<'_>, name: &str) -> PyErr {
    error(py, format!("global '{name}' is not allowed (add it to allow= to load it)"))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    New,
    Busy,
    Done,
}

enum Step {
    /// Make the node (or schedule what making it needs).
    Enter(NodeId),
    /// Fill a list, dict or set made empty at `Enter`, its items all made.
    Fill(NodeId),
    /// Make a tuple, frozenset or object, its parts all made.
    Make(NodeId),
    /// Apply an object's operations, their operands all made.
    Apply(NodeId),
}

struct Builder<'a, 'py> {
    py: Python<'py>,
    value: &'a Value,
    allow: &'a Allow<'py>,
    objs: Vec<Option<Bound<'py, PyAny>>>,
    state: Vec<State>,
    stack: Vec<Step>,
    /// Containers whose filling waits for a node under construction (a tuple or object
    /// that holds the container, which holds it back: `t = ([],); t[0].append(t)`),
    /// by that node. Pickle fills such a container after making the node; so does this.
    waiting: std::collections::HashMap<NodeId, Vec<NodeId>>,
}

/// Builds the Python object of `value`, allowing only the globals in `allow`.
pub fn build<'py>(py: Python<'py>, value: &Value, allow: &Allow<'py>) -> PyResult<Bound<'py, PyAny>> {
    check_globals(py, value, allow)?;
    let n = value.len();
    let mut b = Builder {
        py,
        value,
        allow,
        objs: vec![None; n],
        state: vec![State::New; n],
        stack: Vec::new(),
        waiting: std::collections::HashMap::new(),
    };
    b.stack.push(Step::Enter(value.root()));
    while let Some(step) = b.stack.pop() {
        match step {
            Step::Enter(id) => b.enter(id)?,
            Step::Fill(id) => b.fill(id)?,
            Step::Make(id) => b.make(id)?,
            Step::Apply(id) => b.apply(id)?,
        }
    }
    if !b.waiting.is_empty() {
        return Err(error(py, "the pickle refers to an object while it is being constructed".into()));
    }
    b.take(value.root())
}

/// Refuses the pickle before anything is made when it names a global that is not
/// allowed, or holds what safe loading never makes (persistent ids, out-of-band buffers,
/// extension codes). Only nodes reachable from the root count: the decoder turns some
/// calls into native values (protocol 2's `_codecs.encode(text, 'latin1')` is bytes),
/// leaving their global behind, unused.
fn check_globals(py: Python<'_>, value: &Value, allow: &Allow<'_>) -> PyResult<()> {
    let special =
        |n: &Node| matches!(n, Node::Global(_) | Node::PersistentId(_) | Node::Buffer { .. } | Node::Extension(_));
    if !value.nodes().iter().any(special) {
        return Ok(());
    }
    let mut seen = vec![false; value.len()];
    let mut work = vec![value.root()];
    while let Some(id) = work.pop() {
        match seen.get_mut(id.index()) {
            Some(s) if !*s => *s = true,
            _ => continue,
        }
        let Some(node) = value.get(id) else { continue };
        match node {
            Node::Global(g) => {
                let name = format!("{}.{}", g.module, g.name);
                if !matches!(name.as_str(), RECONSTRUCTOR | NEWOBJ | NEWOBJ_EX) && !allow.table.contains(&name)? {
                    return Err(not_allowed(py, &name));
                }
            }
            Node::PersistentId(_) => return Err(error(py, "persistent ids are not supported by safe loading".into())),
            Node::Buffer { .. } => {
                return Err(error(py, "out-of-band buffers are not supported by safe loading".into()));
            }
            Node::Extension(code) => {
                return Err(error(py, format!("extension code {code} is not supported by safe loading")));
            }
            _ => {}
        }
        let at = work.len();
        node.for_each_child(|c| work.push(c));
        work[at..].reverse(); // visit children in document order: the first bad global is named
    }
    Ok(())
}

impl<'a, 'py> Builder<'a, 'py> {
    fn node(&self, id: NodeId) -> PyResult<&'a Node> {
        let value: &'a Value = self.value;
        value.get(id).ok_or_else(|| error(self.py, format!("node id {} is outside the value", id.index())))
    }

    /// The made object of a node (made, or a container being filled).
    fn obj(&self, id: NodeId) -> PyResult<Bound<'py, PyAny>> {
        match self.objs.get(id.index()) {
            Some(Some(o)) => Ok(o.clone()),
            _ => Err(error(self.py, "the pickle refers to an object while it is being constructed".into())),
        }
    }

    fn take(&mut self, id: NodeId) -> PyResult<Bound<'py, PyAny>> {
        self.obj(id)
    }

    fn set(&mut self, id: NodeId, o: Bound<'py, PyAny>, state: State) {
        self.objs[id.index()] = Some(o);
        self.state[id.index()] = state;
        if let Some(containers) = self.waiting.remove(&id) {
            self.stack.extend(containers.into_iter().map(Step::Fill));
        }
    }

    fn push_children(&mut self, ids: &[NodeId]) {
        for &c in ids.iter().rev() {
            if self.state.get(c.index()) == Some(&State::New) {
                self.stack.push(Step::Enter(c));
            }
        }
    }

    fn enter(&mut self, id: NodeId) -> PyResult<()> {
        if self.state.get(id.index()) != Some(&State::New) {
            return Ok(());
        }
        let py = self.py;
        let node = self.node(id)?;
        let made: Bound<'py, PyAny> = match node {
            Node::None => py.None().into_bound(py),
            Node::Bool(b) => pyo3::types::PyBool::new(py, *b).to_owned().into_any(),
            Node::Int(i) => i.into_pyobject(py)?.into_any(),
            Node::BigInt(b) => {
                let bytes = PyBytes::new(py, &b.to_le_twos_complement());
                let kwargs = PyDict::new(py);
                kwargs.set_item("signed", true)?;
                py.get_type::<pyo3::types::PyInt>().call_method("from_bytes", (bytes, "little"), Some(&kwargs))?
            }
            Node::Float(f) => PyFloat::new(py, *f).into_any(),
            Node::Str(s) => match s.as_str() {
                Some(t) => PyString::new(py, t).into_any(),
                None => PyBytes::new(py, s.as_surrogatepass()).call_method1("decode", ("utf-8", "surrogatepass"))?,
            },
            Node::Bytes(b) => PyBytes::new(py, b).into_any(),
            Node::ByteArray(b) => PyByteArray::new(py, b).into_any(),
            Node::List(items) => {
                // A list of atoms only is made at once, filled.
                if items.iter().all(|c| self.is_atom(*c)) {
                    let mut objs = Vec::with_capacity(items.len());
                    for &c in items {
                        self.enter(c)?;
                        objs.push(self.obj(c)?);
                    }
                    self.set(id, PyList::new(py, objs)?.into_any(), State::Done);
                    return Ok(());
                }
                self.set(id, PyList::empty(py).into_any(), State::Busy);
                self.stack.push(Step::Fill(id));
                self.push_children(items);
                return Ok(());
            }
            Node::Dict(items) => {
                let ids: Vec<NodeId> = items.iter().flat_map(|&(k, v)| [k, v]).collect();
                self.set(id, PyDict::new(py).into_any(), State::Busy);
                self.stack.push(Step::Fill(id));
                self.push_children(&ids);
                return Ok(());
            }
            Node::Set(items) => {
                self.set(id, PySet::empty(py)?.into_any(), State::Busy);
                self.stack.push(Step::Fill(id));
                self.push_children(items);
                return Ok(());
            }
            Node::Tuple(items) | Node::FrozenSet(items) => {
                self.state[id.index()] = State::Busy;
                self.stack.push(Step::Make(id));
                self.push_children(items);
                return Ok(());
            }
            Node::Global(g) => {
                let name = format!("{}.{}", g.module, g.name);
                self.resolve(&name)?
            }
            Node::Object(o) => {
                let mut deps: Vec<NodeId> = Vec::new();
                match &o.construct {
                    Construct::Reduce { callable, args } => {
                        // The copyreg helpers are not resolved: their class argument is.
                        let special = global_name(self.value, *callable)
                            .is_some_and(|n| matches!(n.as_str(), RECONSTRUCTOR | NEWOBJ | NEWOBJ_EX));
                        if !special {
                            deps.push(*callable);
                        }
                        deps.push(*args);
                    }
                    Construct::NewObj { cls, args } => deps.extend([*cls, *args]),
                    Construct::NewObjEx { cls, args, kwargs } => deps.extend([*cls, *args, *kwargs]),
                    Construct::Instantiate { cls, args } => {
                        deps.push(*cls);
                        deps.extend(args.iter().copied());
                    }
                }
                self.state[id.index()] = State::Busy;
                self.stack.push(Step::Make(id));
                self.push_children(&deps);
                return Ok(());
            }
            Node::PersistentId(_) | Node::Buffer { .. } | Node::Extension(_) => {
                return Err(error(py, format!("a {} is not supported by safe loading", node.type_name())));
            }
        };
        self.set(id, made, State::Done);
        Ok(())
    }

    fn is_atom(&self, id: NodeId) -> bool {
        matches!(
            self.value.get(id),
            Some(
                Node::None
                    | Node::Bool(_)
                    | Node::Int(_)
                    | Node::Float(_)
                    | Node::Str(_)
                    | Node::Bytes(_)
                    | Node::BigInt(_)
            )
        )
    }

    /// The allowed object named `name` (checked before the build started).
    fn resolve(&self, name: &str) -> PyResult<Bound<'py, PyAny>> {
        match self.allow.table.get_item(name)? {
            Some(o) if !o.is_none() => Ok(o),
            Some(_) => {
                let o = self.allow.resolve.call1((name,))?;
                self.allow.table.set_item(name, &o)?;
                Ok(o)
            }
            None => Err(not_allowed(self.py, name)),
        }
    }

    fn fill(&mut self, id: NodeId) -> PyResult<()> {
        let container = self.obj(id)?;
        let node = self.node(id)?;
        let mut missing = None;
        node.for_each_child(|c| {
            if missing.is_none() && matches!(self.objs.get(c.index()), Some(None)) {
                missing = Some(c);
            }
        });
        if let Some(c) = missing {
            self.waiting.entry(c).or_default().push(id);
            return Ok(());
        }
        match node {
            Node::List(items) => {
                let list = container.cast::<PyList>()?;
                for &c in items {
                    list.append(self.obj(c)?)?;
                }
            }
            Node::Dict(items) => {
                let dict = container.cast::<PyDict>()?;
                for &(k, v) in items {
                    dict.set_item(self.obj(k)?, self.obj(v)?)?;
                }
            }
            Node::Set(items) => {
                let set = container.cast::<PySet>()?;
                for &c in items {
                    set.add(self.obj(c)?)?;
                }
            }
            _ => {}
        }
        self.state[id.index()] = State::Done;
        Ok(())
    }

    fn objs_of(&self, ids: &[NodeId]) -> PyResult<Vec<Bound<'py, PyAny>>> {
        ids.iter().map(|&c| self.obj(c)).collect()
    }

    /// The argument tuple of a call: a tuple node's items.
    fn args(&self, id: NodeId) -> PyResult<Bound<'py, PyTuple>> {
        let o = self.obj(id)?;
        o.cast_into::<PyTuple>().map_err(|_| error(self.py, "call arguments are not a tuple".into()))
    }

    /// The class named by a node, which must be an allowed global that is a type.
    fn class(&self, id: NodeId) -> PyResult<Bound<'py, PyType>> {
        let name =
            global_name(self.value, id).ok_or_else(|| error(self.py, "an object's class is not a global".into()))?;
        let o = self.resolve(&name)?;
        o.cast_into::<PyType>().map_err(|_| error(self.py, format!("'{name}' is not a class")))
    }

    fn make(&mut self, id: NodeId) -> PyResult<()> {
        let py = self.py;
        let node = self.node(id)?;
        let made = match node {
            Node::Tuple(items) => PyTuple::new(py, self.objs_of(items)?)?.into_any(),
            Node::FrozenSet(items) => PyFrozenSet::new(py, self.objs_of(items)?)?.into_any(),
            Node::Object(o) => {
                let made = self.construct(&o.construct)?;
                if !o.ops.is_empty() {
                    let mut deps = Vec::new();
                    for op in &o.ops {
                        match *op {
                            ObjectOp::Build(s) | ObjectOp::Append(s) | ObjectOp::AddItem(s) => deps.push(s),
                            ObjectOp::SetItem(k, v) => deps.extend([k, v]),
                        }
                    }
                    self.set(id, made, State::Busy);
                    self.stack.push(Step::Apply(id));
                    self.push_children(&deps);
                    return Ok(());
                }
                made
            }
            _ => return Ok(()),
        };
        self.set(id, made, State::Done);
        Ok(())
    }

    fn construct(&self, c: &Construct) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        match c {
            Construct::Reduce { callable, args } => {
                let args = self.args(*args)?;
                match global_name(self.value, *callable).as_deref() {
                    Some(RECONSTRUCTOR) => {
                        // copyreg._reconstructor(cls, base, state): the class and its base
                        // must be allowed (or the base is `object`).
                        let (Some(cls), Some(base)) = (args.get_item(0).ok(), args.get_item(1).ok()) else {
                            return Err(error(py, "copyreg._reconstructor needs a class and a base".into()));
                        };
                        self.check_allowed_class(&cls)?;
                        if !base.is(py.get_type::<pyo3::types::PyAny>()) {
                            self.check_allowed_class(&base)?;
                        }
                        py.import("copyreg")?.getattr("_reconstructor")?.call1(args)
                    }
                    Some(NEWOBJ) => {
                        let cls = args.get_item(0).map_err(|_| error(py, "copyreg.__newobj__ needs a class".into()))?;
                        self.check_allowed_class(&cls)?;
                        cls.call_method1("__new__", args)
                    }
                    Some(NEWOBJ_EX) => {
                        let cls =
                            args.get_item(0).map_err(|_| error(py, "copyreg.__newobj_ex__ needs a class".into()))?;
                        self.check_allowed_class(&cls)?;
                        let a = args.get_item(1)?.cast_into::<PyTuple>()?;
                        let kw = args.get_item(2)?.cast_into::<PyDict>()?;
                        let mut all = vec![cls.clone()];
                        all.extend(a.iter());
                        cls.call_method("__new__", PyTuple::new(py, all)?, Some(&kw))
                    }
                    _ => self.obj(*callable)?.call1(args),
                }
            }
            Construct::NewObj { cls, args } => {
                let cls = self.class(*cls)?;
                let args = self.args(*args)?;
                let mut all = vec![cls.clone().into_any()];
                all.extend(args.iter());
                cls.call_method1("__new__", PyTuple::new(py, all)?)
            }
            Construct::NewObjEx { cls, args, kwargs } => {
                let cls = self.class(*cls)?;
                let args = self.args(*args)?;
                let kw = self.obj(*kwargs)?.cast_into::<PyDict>()?;
                let mut all = vec![cls.clone().into_any()];
                all.extend(args.iter());
                cls.call_method("__new__", PyTuple::new(py, all)?, Some(&kw))
            }
            Construct::Instantiate { cls, args } => {
                // As CPython's `_instantiate`.
                let cls = self.class(*cls)?;
                let args = PyTuple::new(py, self.objs_of(args)?)?;
                if !args.is_empty() || cls.hasattr("__getinitargs__")? {
                    cls.call1(args)
                } else {
                    cls.call_method1("__new__", (cls.clone(),))
                }
            }
        }
    }

    /// Checks that an object passed as a class to a copyreg helper is an allowed class.
    fn check_allowed_class(&self, cls: &Bound<'py, PyAny>) -> PyResult<()> {
        for (name, o) in self.allow.table.iter() {
            if o.is(cls) {
                let _ = name;
                return Ok(());
            }
        }
        let name = match (cls.getattr("__module__"), cls.getattr("__qualname__")) {
            (Ok(m), Ok(q)) => format!("{m}.{q}"),
            _ => "?".into(),
        };
        Err(not_allowed(self.py, &name))
    }

    fn apply(&mut self, id: NodeId) -> PyResult<()> {
        let py = self.py;
        let obj = self.obj(id)?;
        let Node::Object(o) = self.node(id)? else {
            return Ok(());
        };
        for op in &o.ops {
            match *op {
                ObjectOp::Build(s) => self.build_state(&obj, self.obj(s)?)?,
                ObjectOp::Append(x) => {
                    obj.call_method1("append", (self.obj(x)?,))?;
                }
                ObjectOp::SetItem(k, v) => obj.set_item(self.obj(k)?, self.obj(v)?)?,
                ObjectOp::AddItem(x) => {
                    obj.call_method1("add", (self.obj(x)?,))?;
                }
            }
        }
        self.state[id.index()] = State::Done;
        let _ = py;
        Ok(())
    }

    /// `BUILD`, as CPython's `load_build`: `__setstate__(state)` when the object has one,
    /// else `state` (a dict, or a `(dict, slots)` pair) updates `__dict__` and attributes.
    fn build_state(&self, obj: &Bound<'py, PyAny>, state: Bound<'py, PyAny>) -> PyResult<()> {
        let py = self.py;
        if let Ok(setstate) = obj.getattr("__setstate__") {
            setstate.call1((state,))?;
            return Ok(());
        }
        let (state, slots) = match state.cast::<PyTuple>() {
            Ok(t) if t.len() == 2 => (t.get_item(0)?, Some(t.get_item(1)?)),
            _ => (state, None),
        };
        if !state.is_none() {
            let d = state.cast_into::<PyDict>().map_err(|_| error(py, "state is not a dictionary".into()))?;
            let inst_dict = obj.getattr("__dict__")?;
            for (k, v) in d.iter() {
                inst_dict.set_item(k, v)?;
            }
        }
        if let Some(slots) = slots
            && !slots.is_none()
        {
            let d = slots.cast_into::<PyDict>().map_err(|_| error(py, "slot state is not a dictionary".into()))?;
            for (k, v) in d.iter() {
                obj.setattr(k.cast_into::<PyString>()?, v)?;
            }
        }
        Ok(())
    }
}
