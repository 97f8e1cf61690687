//! Objects built with keyword arguments to `__new__` (`NEWOBJ_EX`, protocol 4+),
//! re-encoded at protocols 2 and 3, which have no `NEWOBJ_EX`: written as CPython writes
//! them (`copyreg.__newobj_ex__` through `functools.partial`), byte for byte where
//! CPython's bytes follow from the pickle, and in every case loaded by CPython as an
//! object equal to the original. The classes are in `tests/data/kwargs_objects.py`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::python3;
use pickleshelf_pickle as pickle;

const OBJECTS: &[(&str, bool)] = &[
    // (expression, CPython's protocol-2/3 bytes follow from the protocol-4 pickle)
    ("kwargs_objects.New(1, b=2)", true),
    ("kwargs_objects.New('x', b=[1, 2])", true),
    ("kwargs_objects.Many(1, 2.5, 'c', None, k1=b'\\x00', k2={'a': 1})", true),
    ("kwargs_objects.NoKeywords(7)", true),
    ("kwargs_objects.Outer.Inner(3, b=(4,))", true),
    ("[kwargs_objects.New(1, b=2), kwargs_objects.New(1, b=2)]", true),
    // Inherits object.__new__: CPython names `object.__new__`, we name `Inherits.__new__`,
    // the same function.
    ("kwargs_objects.Inherits(1, b=2)", false),
];

fn data_dir() -> String {
    format!("{}/tests/data", env!("CARGO_MANIFEST_DIR"))
}

fn run_python(script: &str, input: &str) -> String {
    let py = python3().unwrap_or("python3");
    let mut child = Command::new(py)
        .arg("-c")
        .arg(script)
        .arg(data_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3: {e}"));
    child.stdin.take().unwrap_or_else(|| panic!("stdin")).write_all(input.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "python3 failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or_else(|e| panic!("{e}"))).collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const DUMP: &str = r#"
import sys, pickle
sys.path.insert(0, sys.argv[1])
import kwargs_objects
for line in sys.stdin:
    v = eval(line)
    print(" ".join(pickle.dumps(v, p).hex() for p in (2, 3, 4)))
"#;

const LOAD: &str = r#"
import sys, pickle
sys.path.insert(0, sys.argv[1])
import kwargs_objects
bad = 0
for line in sys.stdin:
    expr, ours = line.rstrip("\n").split("\t")
    want = eval(expr)
    got = pickle.loads(bytes.fromhex(ours))
    if got != want or type(got) is not type(want):
        bad += 1
        print("%s: loads %r" % (expr, got))
print("bad", bad)
"#;

#[test]
fn newobj_ex_is_written_through_functools_partial_before_protocol_4() {
    if python3().is_none() {
        return;
    }
    let exprs: String = OBJECTS.iter().map(|(e, _)| format!("{e}\n")).collect();
    let dumped = run_python(DUMP, &exprs);
    let mut to_load = String::new();
    let mut identical = 0;
    for ((expr, same_bytes), line) in OBJECTS.iter().zip(dumped.lines()) {
        let p: Vec<Vec<u8>> = line.split(' ').map(unhex).collect();
        let value = pickle::decode(&p[2]).unwrap_or_else(|e| panic!("{expr}: {e}"));
        assert_eq!(pickle::encode(&value, 4).unwrap_or_default(), p[2], "{expr}: protocol 4 again");
        for (i, protocol) in [2u8, 3].into_iter().enumerate() {
            let ours = pickle::encode(&value, protocol).unwrap_or_else(|e| panic!("{expr} p{protocol}: {e}"));
            if *same_bytes {
                assert_eq!(hex(&ours), hex(&p[i]), "{expr} at protocol {protocol}: not CPython's bytes");
                identical += 1;
            }
            pickle::decode(&ours).unwrap_or_else(|e| panic!("{expr} p{protocol}: {e}"));
            to_load.push_str(&format!("{expr}\t{}\n", hex(&ours)));
        }
    }
    let report = run_python(LOAD, &to_load);
    eprintln!("{identical} of {} re-encodings byte-identical to CPython; {report}", 2 * OBJECTS.len());
    assert!(report.trim_end().ends_with("bad 0"), "{report}");
}
