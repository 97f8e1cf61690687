//! `enum` members and `pathlib` paths.
//!
//! Invariant: an [`EnumMember`]'s value is a [`NodeId`] of the value it was read from;
//! a [`PyPath`]'s parts are what the pickle lists (`Path.parts`), joined as its flavour
//! joins them only for display.
//!
//! CPython writes an enum member as `Class(value)` (members of enums that pickle by
//! name, such as `re.RegexFlag`, as the global `Class.NAME`), and a path as
//! `PurePosixPath(*parts)` (3.12 and 3.13 may name the module `pathlib._local`).

use std::fmt;

use super::{PyAtom, PyObject, bad, call, describe, global_at, push_global, push_reduce, str_arg};
use crate::Result;
use crate::repr::str_repr;
use crate::value::{Global, Node, NodeId, Value};

const ENUM: &str = "enum member";
const PATH: &str = "pathlib path";

/// How an enum member is named in the pickle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnumRef {
    /// `Class(value)`: the member's value (a node of the value it was read from).
    Value(NodeId),
    /// The global `Class.NAME`: the member's name.
    Name(String),
}

/// A member of an `enum.Enum` (or `IntEnum`, `Flag`, ...) class.
///
/// Which calls are enum members cannot be known without importing the class, so
/// [`EnumMember::read`] takes any call of a global class with one argument and nothing
/// applied after (`Class(value)`), and any global whose qualified name has a dot
/// (`Class.NAME`); the caller knows which classes are enums.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnumMember {
    /// The enum class.
    pub class: Global,
    /// The member, by value or by name.
    pub member: EnumRef,
}

impl PyObject for EnumMember {
    const PYTHON_TYPE: &'static str = ENUM;

    fn read(value: &Value, id: NodeId) -> Result<EnumMember> {
        if let Some(g) = global_at(value, id) {
            return match g.name.rsplit_once('.') {
                Some((class, name)) => Ok(EnumMember {
                    class: Global { module: g.module.clone(), name: class.into() },
                    member: EnumRef::Name(name.into()),
                }),
                None => Err(bad(ENUM, format!("the global {}.{} names no member of a class", g.module, g.name))),
            };
        }
        let c = call(value, id, ENUM, |_, _| true)?;
        if c.newobj {
            return Err(bad(ENUM, "expected Class(value), found Class.__new__"));
        }
        super::no_ops(ENUM, c.ops)?;
        let [v] = c.args else {
            return Err(bad(ENUM, format!("expected 1 argument (the value), found {}", c.args.len())));
        };
        Ok(EnumMember { class: c.global.clone(), member: EnumRef::Value(*v) })
    }

    fn write(&self, value: &mut Value) -> NodeId {
        match &self.member {
            EnumRef::Value(v) => push_reduce(value, &self.class.module, &self.class.name, vec![*v], Vec::new()),
            EnumRef::Name(n) => push_global(value, &self.class.module, &format!("{}.{n}", self.class.name)),
        }
    }
}

/// The class of a `pathlib` path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PathFlavour {
    /// `pathlib.PurePosixPath`.
    PurePosix,
    /// `pathlib.PosixPath`.
    Posix,
    /// `pathlib.PureWindowsPath`.
    PureWindows,
    /// `pathlib.WindowsPath`.
    Windows,
}

impl PathFlavour {
    /// The class name.
    pub fn class_name(self) -> &'static str {
        match self {
            PathFlavour::PurePosix => "PurePosixPath",
            PathFlavour::Posix => "PosixPath",
            PathFlavour::PureWindows => "PureWindowsPath",
            PathFlavour::Windows => "WindowsPath",
        }
    }

    fn from_name(name: &str) -> Option<PathFlavour> {
        Some(match name {
            "PurePosixPath" => PathFlavour::PurePosix,
            "PosixPath" => PathFlavour::Posix,
            "PureWindowsPath" => PathFlavour::PureWindows,
            "WindowsPath" => PathFlavour::Windows,
            _ => return None,
        })
    }

    /// True for the Windows classes.
    pub fn is_windows(self) -> bool {
        matches!(self, PathFlavour::PureWindows | PathFlavour::Windows)
    }
}

/// A `pathlib` path: its class and its parts (`Path.parts`: the anchor first, such as
/// `/` or `c:\`, then the names).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PyPath {
    /// The class.
    pub flavour: PathFlavour,
    /// The parts.
    pub parts: Vec<String>,
}

impl PyPath {
    /// A path of this class from its text, split as Python splits it for the common
    /// cases (separators `/`, and `\` for Windows; empty and `.` names dropped; a
    /// leading separator, or a Windows drive with one, is the anchor).
    pub fn new(flavour: PathFlavour, text: &str) -> PyPath {
        let seps: &[char] = if flavour.is_windows() { &['/', '\\'] } else { &['/'] };
        let mut parts = Vec::new();
        let mut rest = text;
        if flavour.is_windows() {
            let b = text.as_bytes();
            if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
                let drive = &text[..2];
                rest = &text[2..];
                if rest.starts_with(seps) {
                    parts.push(format!("{drive}\\"));
                    rest = rest.trim_start_matches(seps);
                } else {
                    parts.push(drive.to_owned());
                }
            } else if let Some(unc) = unc_anchor(text, seps) {
                // \\server\share\ is one anchor
                rest = &text[unc.len()..];
                let names: Vec<&str> = unc.split(seps).filter(|p| !p.is_empty()).collect();
                parts.push(format!("\\\\{}\\", names.join("\\")));
                rest = rest.trim_start_matches(seps);
            } else if rest.starts_with(seps) {
                parts.push("\\".into());
                rest = rest.trim_start_matches(seps);
            }
        } else if let Some(r) = rest.strip_prefix('/') {
            // POSIX keeps exactly two leading slashes (`//a`); one or three or more are `/`.
            let two = r.starts_with('/') && !r.starts_with("//");
            parts.push(if two { "//".into() } else { "/".into() });
            rest = rest.trim_start_matches('/');
        }
        parts.extend(rest.split(seps).filter(|p| !p.is_empty() && *p != ".").map(str::to_owned));
        PyPath { flavour, parts }
    }

    /// `str(path)`: the parts joined with the flavour's separator (`.` for no parts).
    pub fn as_string(&self) -> String {
        self.joined(if self.flavour.is_windows() { '\\' } else { '/' })
    }

    /// `path.as_posix()`: joined with `/`.
    pub fn as_posix(&self) -> String {
        self.joined('/')
    }

    fn joined(&self, sep: char) -> String {
        let mut out = String::new();
        for (i, p) in self.parts.iter().enumerate() {
            let part = if sep == '/' { p.replace('\\', "/") } else { p.clone() };
            if i > 0 && !out.ends_with(sep) {
                out.push(sep);
            }
            out.push_str(&part);
        }
        if out.is_empty() { ".".into() } else { out }
    }
}

impl fmt::Display for PyPath {
    /// Python's `repr`: `PurePosixPath('/a/b')`, `PureWindowsPath('c:/x')`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.flavour.class_name(), str_repr(&self.as_posix().as_str().into()))
    }
}

impl PyObject for PyPath {
    const PYTHON_TYPE: &'static str = PATH;

    fn read(value: &Value, id: NodeId) -> Result<PyPath> {
        let c = call(value, id, PATH, |m, n| {
            (m == "pathlib" || m == "pathlib._local") && PathFlavour::from_name(n).is_some()
        })?;
        super::no_ops(PATH, c.ops)?;
        let flavour = PathFlavour::from_name(&c.global.name).ok_or_else(|| bad(PATH, "not a path class"))?;
        let mut text = Vec::with_capacity(c.args.len());
        for &a in c.args {
            if !matches!(value.get(a), Some(Node::Str(_))) {
                return Err(bad(PATH, format!("a part is {}, not str", describe(value, a))));
            }
            text.push(str_arg(value, a, PATH, "a part")?);
        }
        // Each argument may itself hold separators (3.12+ writes the parts, older
        // versions too; a hand-made pickle may pass a whole path): split as Python does.
        let sep = if flavour.is_windows() { "\\" } else { "/" };
        let mut joined = String::new();
        for t in text {
            let absolute =
                t.starts_with('/') || (flavour.is_windows() && (t.starts_with('\\') || t.get(1..2) == Some(":")));
            if absolute || joined.is_empty() {
                joined = t.to_owned();
            } else {
                if !joined.ends_with(['/', '\\']) {
                    joined.push_str(sep);
                }
                joined.push_str(t);
            }
        }
        Ok(PyPath::new(flavour, &joined))
    }

    fn write(&self, value: &mut Value) -> NodeId {
        let args = self.parts.iter().map(|p| value.push(Node::Str(p.as_str().into()))).collect();
        push_reduce(value, "pathlib", self.flavour.class_name(), args, Vec::new())
    }
}

impl PyAtom for PyPath {}

/// The `\\server\share` prefix of a Windows UNC path (two separators, then a server
/// and a share name), if the text starts with one.
fn unc_anchor<'t>(text: &'t str, seps: &[char]) -> Option<&'t str> {
    let body = text.strip_prefix(seps)?.strip_prefix(seps)?;
    if body.starts_with(seps) {
        return None;
    }
    let server_end = body.find(seps)?;
    let share = &body[server_end + 1..];
    if share.is_empty() || share.starts_with(seps) {
        return None;
    }
    let share_end = share.find(seps).unwrap_or(share.len());
    Some(&text[..2 + server_end + 1 + share_end])
}
