//! Python's everyday types (`pickle::pytypes`): pickles CPython writes at protocols 0–5
//! are read into the helper structs, shown by repr, tagged JSON and plain JSON with
//! their values, and written back so that CPython's `pickle.loads` gives an equal
//! object (`==` and the same `repr`). Malformed states give errors naming the type.
//!
//! CPython is asked twice per test (one process writes every case, one checks every
//! result); the tests skip without python3, and fail instead when `CI` is set.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use pickleshelf_pickle::pytypes::{
    self, Complex, Counter, Date, DateTime, Decimal, DefaultDict, Deque, EnumMember, EnumRef, Fraction, OrderedDict,
    PathFlavour, PyAtom, PyObject, PyPath, Time, TimeDelta, TimeZone, TzInfo, Uuid,
};
use pickleshelf_pickle::{self as pickle, Global, Node, NodeId, Value};

/// The Python expressions of the cases: each is pickled at protocols 0–5.
const CASES: &[&str] = &[
    "datetime.datetime(2024, 1, 2, 3, 4, 5, 6)",
    "datetime.datetime(2024, 2, 29, 23, 59, 59, tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=30), 'IST'))",
    "datetime.datetime(2024, 1, 2, fold=1)",
    "datetime.datetime(1, 1, 1)",
    "datetime.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=datetime.timezone.utc)",
    "datetime.datetime(2024, 3, 1, 12, 0, tzinfo=datetime.timezone(-datetime.timedelta(hours=3, seconds=1, microseconds=5)))",
    "datetime.datetime(2024, 7, 1, 8, 30, tzinfo=zoneinfo.ZoneInfo('Europe/Paris'))",
    "datetime.date(2024, 1, 2)",
    "datetime.date(1, 1, 1)",
    "datetime.time(3, 4, 5, 6, tzinfo=datetime.timezone.utc)",
    "datetime.time(0, 0)",
    "datetime.time(23, 59, fold=1)",
    "datetime.timedelta(days=-1, seconds=5, microseconds=7)",
    "datetime.timedelta(0)",
    "datetime.timedelta(days=999999999, seconds=86399, microseconds=999999)",
    "datetime.timedelta(microseconds=-1)",
    "datetime.timezone.utc",
    "datetime.timezone(datetime.timedelta(hours=-8), 'PST')",
    "decimal.Decimal('1.5')",
    "decimal.Decimal('-0.00')",
    "decimal.Decimal('1E+3')",
    "decimal.Decimal('NaN')",
    "decimal.Decimal('-Infinity')",
    "decimal.Decimal('123456789012345678901234567890.123456789')",
    "uuid.UUID('12345678-1234-5678-1234-567812345678')",
    "uuid.UUID(int=0)",
    "uuid.UUID(int=2**128-1)",
    "uuid.UUID(int=5, is_safe=uuid.SafeUUID.safe)",
    "fractions.Fraction(1, 3)",
    "fractions.Fraction(-7, 2)",
    "fractions.Fraction(2**70, 3)",
    "fractions.Fraction(5)",
    "complex(1, 2)",
    "complex(0, 2)",
    "complex(-0.0, -1)",
    "complex(1.5, float('inf'))",
    "complex(1e16, -1e-05)",
    "pathlib.PurePosixPath('/a/b')",
    "pathlib.PosixPath('a/b c')",
    "pathlib.PurePosixPath()",
    "pathlib.PurePosixPath('//x/y')",
    "pathlib.PureWindowsPath('c:/x/y')",
    "pathlib.PureWindowsPath('//server/share/x')",
    "pathlib.PureWindowsPath('rel\\\\p')",
    "collections.OrderedDict([('a', 1), ('b', [2])])",
    "collections.OrderedDict()",
    "collections.deque([1, 'x'], maxlen=5)",
    "collections.deque()",
    "collections.Counter('aab')",
    "collections.defaultdict(list, {'a': [1]})",
    "collections.defaultdict(None)",
    "http.HTTPStatus.OK",
    "signal.Signals.SIGTERM",
];

/// Writes every case at every protocol; per line: expression, protocol, pickle hex, and
/// the `repr` and a description (see `describe`) of what `pickle.loads` gives back.
const WRITER: &str = r#"
import collections, datetime, decimal, fractions, http, json, pathlib, pickle, signal, sys, uuid, zoneinfo
def describe(o):
    if isinstance(o, (datetime.datetime, datetime.date, datetime.time)):
        if isinstance(getattr(o, 'tzinfo', None), zoneinfo.ZoneInfo):
            return o.replace(tzinfo=None).isoformat() + '[' + o.tzinfo.key + ']'
        return o.isoformat()
    if isinstance(o, datetime.timedelta):
        return f'{o.days} {o.seconds} {o.microseconds}'
    if isinstance(o, datetime.timezone):
        return repr(o)
    if isinstance(o, fractions.Fraction):
        return f'{o.numerator}/{o.denominator}'
    if isinstance(o, complex):
        return repr(o)
    if isinstance(o, pathlib.PurePath):
        return type(o).__name__ + ' ' + '|'.join(o.parts)
    if isinstance(o, collections.OrderedDict):
        return 'collections.OrderedDict(' + repr(dict(o)) + ')'
    if isinstance(o, collections.Counter):
        return 'collections.Counter(' + repr(dict(o)) + ')'
    if isinstance(o, collections.defaultdict):
        f = o.default_factory
        f = 'None' if f is None else f"<class '{f.__module__}.{f.__qualname__}'>"
        return f'collections.defaultdict({f}, {dict(o)!r})'
    if isinstance(o, collections.deque):
        m = '' if o.maxlen is None else f', maxlen={o.maxlen}'
        return f'collections.deque({list(o)!r}{m})'
    if isinstance(o, (http.HTTPStatus, signal.Signals)):
        return f'{type(o).__module__}.{type(o).__qualname__}({o.value!r})'
    return str(o)
for expr in json.load(sys.stdin):
    o = eval(expr)
    for p in range(6):
        data = pickle.dumps(o, p)
        back = pickle.loads(data)  # protocols 0-3 do not keep fold
        print(json.dumps([expr, p, data.hex(), repr(back), describe(back)]))
"#;

/// Reads `[expr, hex]` pairs; prints one line per pair: `ok`, or what differs.
const CHECKER: &str = r#"
import collections, datetime, decimal, fractions, http, json, pathlib, pickle, signal, sys, uuid, zoneinfo
for expr, hexed in json.load(sys.stdin):
    want = eval(expr)
    try:
        got = pickle.loads(bytes.fromhex(hexed))
    except Exception as e:
        print(f'{expr}: pickle.loads failed: {e!r}')
        continue
    same = type(got) is type(want) and got == want and repr(got) == repr(want)
    if isinstance(want, float) or isinstance(want, complex) or isinstance(want, decimal.Decimal):
        same = type(got) is type(want) and repr(got) == repr(want)
    if isinstance(want, (datetime.datetime, datetime.time)):
        same = same and got.fold == want.fold and got.tzinfo == want.tzinfo
    print('ok' if same else f'{expr}: got {got!r} ({type(got).__name__}), want {want!r}')
"#;

/// Runs `python3 -c script` with `input` on stdin; its stdout lines.
fn run_python(script: &str, input: &str) -> Vec<String> {
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3: {e}"));
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python3 failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

struct Case {
    expr: String,
    protocol: u8,
    bytes: Vec<u8>,
    repr: String,
    desc: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn cpython_cases() -> Option<Vec<Case>> {
    common::python3()?;
    let lines = run_python(WRITER, &serde_json::to_string(CASES).unwrap());
    let cases: Vec<Case> = lines
        .iter()
        .map(|l| {
            let (expr, protocol, h, repr, desc): (String, u8, String, String, String) =
                serde_json::from_str(l).unwrap();
            Case { expr, protocol, bytes: unhex(&h), repr, desc }
        })
        .collect();
    assert_eq!(cases.len(), CASES.len() * 6);
    Some(cases)
}

/// The description `describe` in [`WRITER`] gives, computed from the helper structs:
/// also checks that the right helper reads the object (and the wrong ones do not).
fn describe(v: &Value, id: NodeId) -> String {
    let (module, name) = v.object_type(id).unwrap_or_else(|| panic!("not an object: {v}"));
    fn read<T: PyObject>(v: &Value, id: NodeId) -> T {
        T::read(v, id).unwrap_or_else(|e| panic!("{}: {e}", T::PYTHON_TYPE))
    }
    match (module, name) {
        ("datetime", "datetime") => read::<DateTime>(v, id).isoformat(),
        ("datetime", "date") => read::<Date>(v, id).isoformat(),
        ("datetime", "time") => read::<Time>(v, id).isoformat(),
        ("datetime", "timedelta") => {
            let d = read::<TimeDelta>(v, id);
            format!("{} {} {}", d.days(), d.seconds(), d.microseconds())
        }
        ("datetime", "timezone") => read::<TimeZone>(v, id).to_string(),
        ("decimal", "Decimal") => read::<Decimal>(v, id).as_str().to_owned(),
        ("uuid", "UUID") => read::<Uuid>(v, id).hyphenated(),
        ("fractions", "Fraction") => {
            let f = read::<Fraction>(v, id);
            format!("{}/{}", f.numerator().to_decimal(), f.denominator().to_decimal())
        }
        ("builtins", "complex") => read::<Complex>(v, id).to_string(),
        ("pathlib", _) => {
            let p = read::<PyPath>(v, id);
            format!("{} {}", p.flavour.class_name(), p.parts.join("|"))
        }
        ("collections", _) => {
            // The helper reads it, and the repr shows its items.
            match name {
                "OrderedDict" => drop(read::<OrderedDict>(v, id)),
                "Counter" => drop(read::<Counter>(v, id)),
                "defaultdict" => drop(read::<DefaultDict>(v, id)),
                "deque" => drop(read::<Deque>(v, id)),
                _ => panic!("unexpected {name}"),
            }
            v.to_string()
        }
        _ => {
            let m = read::<EnumMember>(v, id);
            assert!(matches!(m.member, EnumRef::Value(_)));
            v.to_string()
        }
    }
}

/// Whether the codec prints this type exactly as CPython's `repr`.
fn exact_repr(module: &str) -> bool {
    matches!(module, "datetime" | "decimal" | "uuid" | "fractions" | "builtins" | "pathlib")
}

#[test]
fn cpython_pickles_read_into_helpers_and_show_their_values() {
    let Some(cases) = cpython_cases() else { return };
    for c in &cases {
        let what = format!("{} at protocol {}", c.expr, c.protocol);
        let v = pickle::decode(&c.bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
        let root = v.root();
        assert_eq!(describe(&v, root), c.desc, "{what}");
        let (module, _) = v.object_type(root).unwrap();
        let json = pickle::to_tagged_json(&v);
        let shown = v.to_string();
        if exact_repr(module) && !c.expr.contains("zoneinfo") {
            assert_eq!(shown, c.repr, "{what}: repr");
            assert_eq!(pytypes::python_repr(&v, root).as_deref(), Some(c.repr.as_str()), "{what}");
            let field = format!(r#","python_repr":{}"#, serde_json::to_string(&c.repr).unwrap());
            assert!(json.contains(&field), "{what}: tagged JSON {json} lacks {field}");
        } else if c.expr.contains("zoneinfo") {
            assert_eq!(shown, "datetime.datetime(2024, 7, 1, 8, 30, tzinfo=zoneinfo.ZoneInfo(key='Europe/Paris'))");
        } else {
            // collections and enum members: their items or value in the repr
            assert_eq!(shown, c.desc, "{what}: repr");
            assert!(!json.contains("python_repr"), "{what}: {json}");
        }
        // Plain JSON: the date and time types as ISO text, the numbers and paths as text.
        let plain = pickle::to_plain_json(&v);
        match module {
            "datetime" => {
                let Ok(plain) = plain else {
                    assert!(c.expr.starts_with("datetime.timezone"), "{what}: {plain:?}");
                    continue;
                };
                if c.expr.starts_with("datetime.timedelta") {
                    let d = TimeDelta::read(&v, root).unwrap();
                    let secs: f64 = plain.parse().unwrap_or_else(|e| panic!("{what}: {plain}: {e}"));
                    assert_eq!(secs, d.total_microseconds() as f64 / 1e6, "{what}");
                } else {
                    assert_eq!(plain, serde_json::to_string(&c.desc).unwrap(), "{what}");
                }
            }
            "decimal" | "uuid" | "builtins" => {
                assert_eq!(plain.unwrap(), serde_json::to_string(&c.desc).unwrap(), "{what}")
            }
            "fractions" => {
                let f = c.desc.strip_suffix("/1").unwrap_or(&c.desc);
                assert_eq!(plain.unwrap(), serde_json::to_string(f).unwrap(), "{what}")
            }
            "pathlib" => {
                let p = PyPath::read(&v, root).unwrap();
                assert_eq!(plain.unwrap(), serde_json::to_string(&p.as_string()).unwrap(), "{what}")
            }
            _ => {}
        }
    }
}

/// Reads the root with the helper of its type and writes it into `v` again (the items
/// of collections and enum values are the decoded nodes), making that the root.
fn rewrite(v: &mut Value) {
    let root = v.root();
    let (module, name) = v.object_type(root).unwrap();
    let (module, name) = (module.to_owned(), name.to_owned());
    let id = match (module.as_str(), name.as_str()) {
        ("datetime", "datetime") => DateTime::read(v, root).unwrap().write(v),
        ("datetime", "date") => Date::read(v, root).unwrap().write(v),
        ("datetime", "time") => Time::read(v, root).unwrap().write(v),
        ("datetime", "timedelta") => TimeDelta::read(v, root).unwrap().write(v),
        ("datetime", "timezone") => TimeZone::read(v, root).unwrap().write(v),
        ("decimal", _) => Decimal::read(v, root).unwrap().write(v),
        ("uuid", _) => Uuid::read(v, root).unwrap().write(v),
        ("fractions", _) => Fraction::read(v, root).unwrap().write(v),
        ("builtins", "complex") => Complex::read(v, root).unwrap().write(v),
        ("pathlib", _) => PyPath::read(v, root).unwrap().write(v),
        ("collections", "OrderedDict") => OrderedDict::read(v, root).unwrap().write(v),
        ("collections", "Counter") => Counter::read(v, root).unwrap().write(v),
        ("collections", "defaultdict") => DefaultDict::read(v, root).unwrap().write(v),
        ("collections", "deque") => Deque::read(v, root).unwrap().write(v),
        _ => EnumMember::read(v, root).unwrap().write(v),
    };
    v.set_root(id);
}

/// Sends `(expr, bytes)` pairs to CPython; panics listing every one it does not load
/// as an equal object.
fn check_in_cpython(pairs: &[(String, Vec<u8>)]) {
    let input: Vec<(String, String)> = pairs.iter().map(|(e, b)| (e.clone(), hex(b))).collect();
    let lines = run_python(CHECKER, &serde_json::to_string(&input).unwrap());
    assert_eq!(lines.len(), pairs.len());
    let bad: Vec<&String> = lines.iter().filter(|l| *l != "ok").collect();
    assert!(
        bad.is_empty(),
        "{} of {} differ:\n{}",
        bad.len(),
        lines.len(),
        bad.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn helpers_written_in_rust_load_in_cpython_as_equal_objects() {
    let Some(cases) = cpython_cases() else { return };
    let mut pairs = Vec::new();
    for c in cases.iter().filter(|c| c.protocol == 4) {
        for protocol in 2..=5 {
            let mut v = pickle::decode(&c.bytes).unwrap();
            rewrite(&mut v);
            pairs.push((c.expr.clone(), pickle::encode(&v, protocol).unwrap()));
        }
    }
    // Made from scratch in Rust.
    let tz = TzInfo::TimeZone(TimeZone::new(TimeDelta::new(0, -3600, 0).unwrap(), Some("X".into())).unwrap());
    let made: Vec<(&str, Vec<u8>)> = vec![
        (
            "datetime.datetime(2024, 1, 2, 3, 4, 5, 6)",
            DateTime::new(Date::new(2024, 1, 2).unwrap(), Time::new(3, 4, 5, 6).unwrap()).to_pickle(4).unwrap(),
        ),
        (
            "datetime.datetime(2000, 2, 29, 0, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=-1), 'X'), fold=1)",
            DateTime::new(
                Date::new(2000, 2, 29).unwrap(),
                Time::new(0, 0, 0, 0).unwrap().with_tzinfo(Some(tz)).with_fold(true),
            )
            .to_pickle(2)
            .unwrap(),
        ),
        ("datetime.time(12, 30, tzinfo=zoneinfo.ZoneInfo('UTC'))", {
            Time::new(12, 30, 0, 0).unwrap().with_tzinfo(Some(TzInfo::ZoneInfo("UTC".into()))).to_pickle(3).unwrap()
        }),
        ("datetime.timedelta(days=-2, seconds=86399)", TimeDelta::new(0, -86401, 0).unwrap().to_pickle(5).unwrap()),
        ("decimal.Decimal('-1.50E-7')", Decimal::new("-1.50E-7").unwrap().to_pickle(4).unwrap()),
        ("uuid.UUID(int=2**127 + 1)", Uuid((1u128 << 127) + 1).to_pickle(2).unwrap()),
        (
            "fractions.Fraction(-3, 4)",
            Fraction::new(pickle::Int::Small(6), pickle::Int::Small(-8)).unwrap().to_pickle(4).unwrap(),
        ),
        ("complex(-0.0, float('nan'))", Complex { re: -0.0, im: f64::NAN }.to_pickle(4).unwrap()),
        ("pathlib.PurePosixPath('/usr/lib')", PyPath::new(PathFlavour::PurePosix, "/usr//lib/").to_pickle(4).unwrap()),
        (
            "pathlib.PureWindowsPath('C:/Users/x')",
            PyPath::new(PathFlavour::PureWindows, "C:\\Users\\x").to_pickle(4).unwrap(),
        ),
    ];
    pairs.extend(made.into_iter().map(|(e, b)| (e.to_owned(), b)));
    // Collections and enum members written into a value of their own.
    let mut v = Value::new(Node::None);
    let k = v.push(Node::Str("k".into()));
    let one = v.push(Node::Int(1));
    let two = v.push(Node::Int(2));
    let od = OrderedDict { items: vec![(k, one)] }.write(&mut v);
    let dq = Deque { items: vec![one, two], maxlen: Some(3) }.write(&mut v);
    let ct = Counter { items: vec![(k, two)] }.write(&mut v);
    let dd =
        DefaultDict { factory: Some(Global { module: "builtins".into(), name: "int".into() }), items: vec![(k, one)] }
            .write(&mut v);
    let em = EnumMember {
        class: Global { module: "http".into(), name: "HTTPStatus".into() },
        member: EnumRef::Value(v.push(Node::Int(404))),
    }
    .write(&mut v);
    let by_name = EnumMember {
        class: Global { module: "signal".into(), name: "Signals".into() },
        member: EnumRef::Name("SIGINT".into()),
    }
    .write(&mut v);
    for (expr, id) in [
        ("collections.OrderedDict(k=1)", od),
        ("collections.deque([1, 2], maxlen=3)", dq),
        ("collections.Counter(k=2)", ct),
        ("collections.defaultdict(int, k=1)", dd),
        ("http.HTTPStatus.NOT_FOUND", em),
        ("signal.Signals.SIGINT", by_name),
    ] {
        v.set_root(id);
        pairs.push((expr.to_owned(), pickle::encode(&v, 4).unwrap()));
    }
    check_in_cpython(&pairs);
}

// ----------------------------------------------------------------------------------
// Malformed input
// ----------------------------------------------------------------------------------

/// `module.name(*args)` as a value, with the args made by `f`.
fn call(module: &str, name: &str, f: impl FnOnce(&mut Value) -> Vec<NodeId>) -> Value {
    let mut v = Value::new(Node::None);
    let g = v.push(Node::Global(Box::new(Global { module: module.into(), name: name.into() })));
    let args = f(&mut v);
    let t = v.push(Node::Tuple(args));
    let o = v.push(Node::Object(Box::new(pickle::Object {
        construct: pickle::Construct::Reduce { callable: g, args: t },
        ops: Vec::new(),
    })));
    v.set_root(o);
    v
}

fn bytes_call(name: &str, state: &[u8]) -> Value {
    call("datetime", name, |v| vec![v.push(Node::Bytes(state.to_vec()))])
}

fn err<T: PyObject + std::fmt::Debug>(v: &Value) -> String {
    let e = T::read(v, v.root()).expect_err("malformed input was accepted");
    assert!(matches!(e, pickle::Error::PyType { .. }), "{e:?}");
    e.to_string()
}

#[test]
fn malformed_states_are_errors_naming_the_type_and_the_problem() {
    let cases: Vec<(String, &str)> = vec![
        (err::<Date>(&bytes_call("date", b"\x07\xe8\x01")), "datetime.date: the state has 3 bytes, not 4"),
        (err::<Date>(&bytes_call("date", b"\x07\xe8\x0d\x01")), "datetime.date: month 13 is out of range 1..=12"),
        (
            err::<Date>(&bytes_call("date", b"\x07\xe7\x02\x1d")),
            "datetime.date: day 29 is out of range 1..=28 for 2023-02",
        ),
        (err::<Date>(&bytes_call("date", b"\x00\x00\x01\x01")), "datetime.date: year 0 is out of range 1..=9999"),
        (
            err::<Time>(&bytes_call("time", b"\x18\x00\x00\x00\x00\x00")),
            "datetime.time: hour 24 is out of range 0..=23",
        ),
        (
            err::<Time>(&bytes_call("time", b"\x01\x3c\x00\x00\x00\x00")),
            "datetime.time: minute 60 is out of range 0..=59",
        ),
        (
            err::<Time>(&bytes_call("time", b"\x01\x00\x00\x0f\x42\x40")),
            "datetime.time: microsecond 1000000 is out of range 0..=999999",
        ),
        (
            err::<DateTime>(&bytes_call("datetime", b"\x07\xe8\x01\x02\x03\x04\x05\x00\x00")),
            "datetime.datetime: the state has 9 bytes, not 10",
        ),
        (
            err::<DateTime>(&bytes_call("datetime", b"\x07\xe8\x01\x02\x03\x04\x3d\x00\x00\x00")),
            "datetime.datetime: second 61 is out of range 0..=59",
        ),
        (
            err::<DateTime>(&call("datetime", "datetime", |v| vec![v.push(Node::Str("2024-01-01".into()))])),
            "datetime.datetime: the state is str, not bytes",
        ),
        (
            err::<DateTime>(&call("datetime", "datetime", |v| {
                vec![v.push(Node::Bytes(b"\x07\xe8\x01\x02\x03\x04\x05\x00\x00\x06".to_vec())), v.push(Node::Int(3))]
            })),
            "datetime.datetime: tzinfo of type int is not supported (only datetime.timezone and zoneinfo.ZoneInfo)",
        ),
        (
            err::<DateTime>(&call("datetime", "datetime", |v| {
                let g = v.push(Node::Global(Box::new(Global { module: "pytz".into(), name: "_p".into() })));
                let s = v.push(Node::Str("Europe/Paris".into()));
                let a = v.push(Node::Tuple(vec![s]));
                let tz = v.push(Node::Object(Box::new(pickle::Object {
                    construct: pickle::Construct::Reduce { callable: g, args: a },
                    ops: Vec::new(),
                })));
                vec![v.push(Node::Bytes(b"\x07\xe8\x01\x02\x03\x04\x05\x00\x00\x06".to_vec())), tz]
            })),
            "datetime.datetime: tzinfo of type pytz._p is not supported (only datetime.timezone and zoneinfo.ZoneInfo)",
        ),
        (
            err::<TimeDelta>(&call("datetime", "timedelta", |v| {
                vec![v.push(Node::Int(1_000_000_000)), v.push(Node::Int(0)), v.push(Node::Int(0))]
            })),
            "datetime.timedelta: 1000000000 days is out of range ±999999999",
        ),
        (
            err::<TimeDelta>(&call("datetime", "timedelta", |v| vec![v.push(Node::Int(1))])),
            "datetime.timedelta: expected 3 arguments (days, seconds, microseconds), found 1",
        ),
        (
            err::<TimeDelta>(&call("datetime", "timedelta", |v| {
                vec![v.push(Node::Float(1.0)), v.push(Node::Int(0)), v.push(Node::Int(0))]
            })),
            "datetime.timedelta: days is float, not int",
        ),
        (
            err::<TimeZone>(&call("datetime", "timezone", |v| {
                let td = TimeDelta::new(1, 0, 0).unwrap().write(v);
                vec![td]
            })),
            "datetime.timezone: offset datetime.timedelta(days=1) is not strictly between -24 and 24 hours",
        ),
        (
            err::<Decimal>(&call("decimal", "Decimal", |v| vec![v.push(Node::Str("1.2.3".into()))])),
            "decimal.Decimal: \"1.2.3\" is not a decimal number",
        ),
        (
            err::<Decimal>(&call("decimal", "Decimal", |v| vec![v.push(Node::Float(1.5))])),
            "decimal.Decimal: the argument is float, not str",
        ),
        (
            err::<Fraction>(&call("fractions", "Fraction", |v| vec![v.push(Node::Int(1)), v.push(Node::Int(0))])),
            "fractions.Fraction: the denominator is zero",
        ),
        (
            err::<Fraction>(&call("fractions", "Fraction", |v| vec![v.push(Node::Str("1/x".into()))])),
            "fractions.Fraction: the denominator in \"1/x\" is not an integer",
        ),
        (
            err::<Complex>(&call("builtins", "complex", |v| vec![v.push(Node::Str("1+2j".into()))])),
            "complex: the real part is str, not float",
        ),
        (
            err::<Deque>(&call("collections", "deque", |v| {
                vec![v.push(Node::Tuple(Vec::new())), v.push(Node::Int(-1))]
            })),
            "collections.deque: maxlen is int, not a non-negative int",
        ),
        (
            err::<DefaultDict>(&call("collections", "defaultdict", |v| vec![v.push(Node::Str("list".into()))])),
            "collections.defaultdict: the default factory is str, not a global name",
        ),
        (
            err::<PyPath>(&call("pathlib", "PurePosixPath", |v| vec![v.push(Node::Int(1))])),
            "pathlib path: a part is int, not str",
        ),
        (err::<Date>(&Value::new(Node::Int(5))), "datetime.date: expected a datetime.date object, found int"),
        (
            err::<Date>(&bytes_call("datetime", b"\x07\xe8\x01\x02\x03\x04\x05\x00\x00\x06")),
            "datetime.date: expected a datetime.date object, found datetime.datetime",
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got, want);
    }
}

#[test]
fn malformed_uuid_states_are_errors() {
    // Python: pickle.dumps(uuid.UUID(int=5), 2), with the state's int replaced
    let good = b"\x80\x02cuuid\nUUID\nq\x00)\x81q\x01}q\x02X\x03\x00\x00\x00intq\x03K\x05sb.";
    assert_eq!(Uuid::from_pickle(good).unwrap(), Uuid(5));
    let negative = b"\x80\x02cuuid\nUUID\nq\x00)\x81q\x01}q\x02X\x03\x00\x00\x00intq\x03J\xff\xff\xff\xffsb.";
    assert_eq!(Uuid::from_pickle(negative).unwrap_err().to_string(), "uuid.UUID: 'int' -1 is not in 0..2**128");
    let no_int = b"\x80\x02cuuid\nUUID\nq\x00)\x81q\x01}q\x02X\x03\x00\x00\x00intq\x03K\x05sN\x8a\x00.";
    assert!(Uuid::from_pickle(no_int).is_err());
    let other_key = b"\x80\x02cuuid\nUUID\nq\x00)\x81q\x01}q\x02X\x03\x00\x00\x00inxq\x03K\x05sb.";
    assert_eq!(
        Uuid::from_pickle(other_key).unwrap_err().to_string(),
        "uuid.UUID: the state is dict without an 'int' key"
    );
    let no_state = b"\x80\x02cuuid\nUUID\nq\x00)\x81q\x01.";
    assert_eq!(
        Uuid::from_pickle(no_state).unwrap_err().to_string(),
        "uuid.UUID: expected one state dict after the call"
    );
    // 2**128 as LONG1: one bit too many
    let big = b"\x80\x02cuuid\nUUID\nq\x00)\x81q\x01}q\x02X\x03\x00\x00\x00intq\x03\x8a\x11\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01sb.";
    assert!(Uuid::from_pickle(big).unwrap_err().to_string().contains("is not in 0..2**128"));
}

#[test]
fn malformed_objects_still_print_and_plain_json_names_them() {
    // A datetime whose state is too short: the repr falls back to the call, tagged JSON
    // carries no python_repr, plain JSON names the type.
    let v = bytes_call("datetime", b"\x07\xe8\x01");
    assert_eq!(v.to_string(), "datetime.datetime(b'\\x07\\xe8\\x01')");
    assert!(!pickle::to_tagged_json(&v).contains("python_repr"));
    let e = pickle::to_plain_json(&v).unwrap_err().to_string();
    assert!(e.contains("a datetime.datetime object has no JSON form"), "{e}");
}

// ----------------------------------------------------------------------------------
// serde: the helper structs, and chrono / rust_decimal / uuid behind features
// ----------------------------------------------------------------------------------

/// `pickle.dumps(RECORD, p)` for protocols 0, 2, 4 and 5, as (protocol, bytes).
const RECORD: &str = "{'at': datetime.datetime(2024, 1, 2, 3, 4, 5, 6), \
    'aware': datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))), \
    'day': datetime.date(1999, 12, 31), 'clock': datetime.time(23, 59, 59, 999999), \
    'span': datetime.timedelta(days=-1, seconds=3600, microseconds=5), 'amount': decimal.Decimal('-1.50'), \
    'id': uuid.UUID('12345678-1234-5678-1234-567812345678')}";

fn record_pickles() -> Option<Vec<(u8, Vec<u8>)>> {
    common::python3()?;
    let script = format!(
        "import datetime, decimal, json, pickle, sys, uuid\nfor p in (0, 2, 4, 5):\n    print(p, pickle.dumps({RECORD}, p).hex())"
    );
    let lines = run_python(&script, "");
    Some(
        lines
            .iter()
            .map(|l| {
                let (p, h) = l.split_once(' ').unwrap();
                (p.parse().unwrap(), unhex(h))
            })
            .collect(),
    )
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct Helpers {
    at: DateTime,
    aware: DateTime,
    day: Date,
    clock: Time,
    span: TimeDelta,
    amount: Decimal,
    id: Uuid,
}

#[test]
fn helper_structs_go_through_serde_both_ways() {
    let Some(pickles) = record_pickles() else { return };
    let mut pairs = Vec::new();
    for (p, bytes) in &pickles {
        let r: Helpers = pickle::from_slice(bytes).unwrap_or_else(|e| panic!("protocol {p}: {e}"));
        assert_eq!(r.at.to_string(), "datetime.datetime(2024, 1, 2, 3, 4, 5, 6)");
        assert_eq!(r.aware.isoformat(), "2024-01-02T03:04:05-05:00");
        assert_eq!(r.day, Date::new(1999, 12, 31).unwrap());
        assert_eq!(r.clock.isoformat(), "23:59:59.999999");
        assert_eq!(r.span, TimeDelta::new(-1, 3600, 5).unwrap());
        assert_eq!(r.amount.as_str(), "-1.50");
        assert_eq!(r.id.hyphenated(), "12345678-1234-5678-1234-567812345678");
        let v = pickle::decode(bytes).unwrap();
        assert_eq!(pickle::from_value::<Helpers>(&v).unwrap(), r);
        for protocol in 2..=5 {
            pairs.push((RECORD.to_owned(), pickle::to_vec_with_protocol(&r, protocol).unwrap()));
            pairs.push((RECORD.to_owned(), pickle::encode(&pickle::to_value(&r).unwrap(), protocol).unwrap()));
        }
        // Other formats see the wire text.
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""at":"2024-01-02T03:04:05.000006""#), "{json}");
        assert_eq!(serde_json::from_str::<Helpers>(&json).unwrap(), r);
    }
    check_in_cpython(&pairs);
}

#[test]
fn adapters_refuse_the_wrong_object_naming_the_type() {
    // Python: pickle.dumps({'at': datetime.date(2024, 1, 2)}, 4)
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct At {
        at: DateTime,
    }
    let v = {
        let mut v = Value::new(Node::None);
        let k = v.push(Node::Str("at".into()));
        let d = Date::new(2024, 1, 2).unwrap().write(&mut v);
        let root = v.push(Node::Dict(vec![(k, d)]));
        v.set_root(root);
        v
    };
    let e = pickle::from_value::<At>(&v).unwrap_err().to_string();
    assert!(e.contains("datetime.datetime: expected a datetime.datetime object, found datetime.date"), "{e}");
    let bytes = pickle::encode(&v, 4).unwrap();
    assert_eq!(pickle::from_slice::<At>(&bytes).unwrap_err().to_string(), e);
    // A str is read as wire text, and checked.
    let s = pickle::from_plain_json(r#"{"at": "2024-13-01T00:00:00"}"#).unwrap();
    let e = pickle::from_value::<At>(&s).unwrap_err().to_string();
    assert!(e.contains("datetime.datetime: month 13 is out of range 1..=12"), "{e}");
}

#[cfg(all(feature = "chrono", feature = "rust_decimal", feature = "uuid"))]
mod natural {
    use super::*;
    use chrono::{
        DateTime as ChronoDateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta as ChronoDelta,
    };
    use pickleshelf_pickle::serde_types;

    /// Read through the crates' own `Deserialize` impls: no adapter.
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Direct {
        at: NaiveDateTime,
        aware: ChronoDateTime<FixedOffset>,
        day: NaiveDate,
        clock: NaiveTime,
        amount: rust_decimal::Decimal,
        id: uuid::Uuid,
    }

    /// Both ways through the adapters.
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Adapted {
        #[serde(with = "serde_types::datetime")]
        at: NaiveDateTime,
        #[serde(with = "serde_types::datetime_offset")]
        aware: ChronoDateTime<FixedOffset>,
        #[serde(with = "serde_types::date")]
        day: NaiveDate,
        #[serde(with = "serde_types::time")]
        clock: NaiveTime,
        #[serde(with = "serde_types::timedelta")]
        span: ChronoDelta,
        #[serde(with = "serde_types::decimal")]
        amount: rust_decimal::Decimal,
        #[serde(with = "serde_types::uuid")]
        id: uuid::Uuid,
    }

    fn expected() -> Adapted {
        let day = NaiveDate::from_ymd_opt(2024, 1, 2).unwrap();
        Adapted {
            at: day.and_hms_micro_opt(3, 4, 5, 6).unwrap(),
            aware: FixedOffset::west_opt(5 * 3600)
                .unwrap()
                .from_local_datetime(&day.and_hms_opt(3, 4, 5).unwrap())
                .unwrap(),
            day: NaiveDate::from_ymd_opt(1999, 12, 31).unwrap(),
            clock: NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).unwrap(),
            span: ChronoDelta::days(-1) + ChronoDelta::seconds(3600) + ChronoDelta::microseconds(5),
            amount: "-1.50".parse().unwrap(),
            id: uuid::Uuid::parse_str("12345678-1234-5678-1234-567812345678").unwrap(),
        }
    }
    use chrono::TimeZone as _;

    #[test]
    fn cpython_objects_read_into_chrono_rust_decimal_and_uuid() {
        let Some(pickles) = record_pickles() else { return };
        let want = expected();
        for (p, bytes) in &pickles {
            let direct: Direct = pickle::from_slice(bytes).unwrap_or_else(|e| panic!("protocol {p}: {e}"));
            assert_eq!(
                (direct.at, direct.aware, direct.day, direct.clock, direct.amount, direct.id),
                (want.at, want.aware, want.day, want.clock, want.amount, want.id),
                "protocol {p}"
            );
            assert_eq!(direct.amount.to_string(), "-1.50");
            let adapted: Adapted = pickle::from_slice(bytes).unwrap_or_else(|e| panic!("protocol {p}: {e}"));
            assert_eq!(adapted, want, "protocol {p}");
            // One value at a time, as the issue's example has it.
            let v = pickle::decode(bytes).unwrap();
            let at = v.dict_get(v.root(), "at").unwrap();
            let mut one = v.clone();
            one.set_root(at);
            for protocol in 2..=5 {
                let b = pickle::encode(&one, protocol).unwrap();
                assert_eq!(pickle::from_slice::<NaiveDateTime>(&b).unwrap(), want.at);
            }
        }
    }

    #[test]
    fn chrono_rust_decimal_and_uuid_written_load_in_cpython() {
        if common::python3().is_none() {
            return;
        }
        let value = expected();
        let mut pairs = Vec::new();
        for protocol in 2..=5 {
            pairs.push((RECORD.to_owned(), pickle::to_vec_with_protocol(&value, protocol).unwrap()));
        }
        // The issue's example: a bare uuid through the adapter.
        #[derive(serde::Serialize)]
        struct Id(#[serde(with = "serde_types::uuid")] uuid::Uuid);
        pairs
            .push(("uuid.UUID('12345678-1234-5678-1234-567812345678')".into(), pickle::to_vec(&Id(value.id)).unwrap()));
        // Nanoseconds are truncated to Python's microseconds.
        #[derive(serde::Serialize)]
        struct At(#[serde(with = "serde_types::datetime")] NaiveDateTime);
        let nanos = NaiveDate::from_ymd_opt(2024, 5, 6).unwrap().and_hms_nano_opt(1, 2, 3, 123_456_789).unwrap();
        pairs.push(("datetime.datetime(2024, 5, 6, 1, 2, 3, 123456)".into(), pickle::to_vec(&At(nanos)).unwrap()));
        check_in_cpython(&pairs);
        let back: Adapted = pickle::from_slice(&pickle::to_vec(&value).unwrap()).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn natural_types_refuse_what_they_cannot_hold() {
        // A tz-aware datetime is not a NaiveDateTime; NaN is not a rust_decimal.
        let aware = pickle::to_vec(&expected()).unwrap();
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Naive {
            #[serde(with = "serde_types::datetime")]
            aware: NaiveDateTime,
        }
        let e = pickle::from_slice::<Naive>(&aware).unwrap_err().to_string();
        assert!(e.contains("datetime.datetime") && e.contains("no UTC offset"), "{e}");
        let nan = Decimal::new("NaN").unwrap().to_pickle(4).unwrap();
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Amount(#[serde(with = "serde_types::decimal")] rust_decimal::Decimal);
        let e = pickle::from_slice::<Amount>(&nan).unwrap_err().to_string();
        assert!(e.contains("decimal.Decimal: \"NaN\""), "{e}");
    }
}

// ----------------------------------------------------------------------------------
// Byte sequences are bytes
// ----------------------------------------------------------------------------------

#[test]
fn byte_sequences_are_python_bytes_both_ways() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Blob {
        data: Vec<u8>,
        small: std::collections::BTreeSet<u8>,
        wide: Vec<u16>,
    }
    let blob = Blob { data: vec![0, 1, 255], small: [3, 1].into(), wide: vec![7] };
    let slice: &[u8] = b"\x00ab";
    let mut pairs = Vec::new();
    for protocol in 2..=5 {
        let b = pickle::to_vec_with_protocol(&blob, protocol).unwrap();
        assert_eq!(b, pickle::encode(&pickle::to_value(&blob).unwrap(), protocol).unwrap());
        assert_eq!(pickle::from_slice::<Blob>(&b).unwrap(), blob);
        pairs.push(("{'data': b'\\x00\\x01\\xff', 'small': [1, 3], 'wide': [7]}".to_owned(), b));
        pairs.push(("b'\\x00ab'".to_owned(), pickle::to_vec_with_protocol(&slice, protocol).unwrap()));
        pairs.push(("b''".to_owned(), pickle::to_vec_with_protocol(&Vec::<u8>::new(), protocol).unwrap()));
    }
    if common::python3().is_some() {
        check_in_cpython(&pairs);
    }
    // What CPython writes reads back into Vec<u8>: bytes, bytearray, or a list of ints.
    for (bytes, want) in [
        (&b"\x80\x03C\x03abcq\x00."[..], b"abc".to_vec()),
        (b"\x80\x02c__builtin__\nbytearray\nq\x00X\x02\x00\x00\x00hiq\x01X\x06\x00\x00\x00latin1q\x02\x86q\x03Rq\x04.", b"hi".to_vec()),
        (b"\x80\x02]q\x00(K\x01K\x02e.", vec![1, 2]),
    ] {
        assert_eq!(pickle::from_slice::<Vec<u8>>(bytes).unwrap(), want);
    }
    // A list holding a value beyond a byte is an error naming it.
    let e = pickle::from_slice::<Vec<u8>>(b"\x80\x02]q\x00(K\x01M\x00\x01e.").unwrap_err().to_string();
    assert!(e.contains("256") && e.contains("u8"), "{e}");
}
