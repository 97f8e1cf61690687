//! Plain JSON against CPython: for every pickle file of the shared corpus
//! (`../shared/conformance`), `to_plain_json` writes exactly what Python's
//! `json.dumps(pickle.loads(data), ensure_ascii=False, allow_nan=False,
//! separators=(",", ":"), default=everyday)` writes (`everyday` gives the date and time
//! types as ISO text, a timedelta as its seconds, `Decimal`, `UUID`, `Fraction`,
//! `complex` and paths as `str()`, a deque as a list), and fails exactly where it raises — then reading the
//! text back and writing it again gives the same text.
//!
//! Values holding a set are left out (after `pickle.loads` a set of str may iterate in
//! another order than the pickle's, and `json.dumps` refuses sets anyway), as are those
//! Python cannot write for its own recursion limit. A lone surrogate, which UTF-8 cannot
//! hold, is compared as the `\udxxx` escape pickleshelf writes.
//!
//! Without python3 or the corpus the test skips with a message; with `CI` set it fails.

mod common;

use std::process::Command;

use common::{corpus, python3};
use pickleshelf_pickle as pickle;

/// Python: one line per file: `path<TAB>OK<TAB>hex of the JSON`, `path<TAB>ERR<TAB>type`
/// or `path<TAB>SKIP<TAB>why`.
const DUMPS: &str = r#"
import collections, datetime, decimal, fractions, json, os, pathlib, pickle, re, sys, uuid
corpus = sys.argv[1]
def everyday(o):
    # The forms pickleshelf gives Python's everyday types (docs/PICKLE.md, "Plain JSON").
    if isinstance(o, (datetime.datetime, datetime.date, datetime.time)):
        return o.isoformat()
    if isinstance(o, datetime.timedelta):
        return o.total_seconds()
    if isinstance(o, (decimal.Decimal, uuid.UUID, fractions.Fraction, complex, pathlib.PurePath)):
        return str(o)
    if isinstance(o, collections.deque):
        return list(o)
    raise TypeError(type(o).__name__)
sys.path.insert(0, corpus)
def has_set(v):
    seen, todo = set(), [v]
    while todo:
        x = todo.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, (set, frozenset)):
            return True
        if isinstance(x, dict):
            todo.extend(x.keys()); todo.extend(x.values())
        elif isinstance(x, (list, tuple)):
            todo.extend(x)
    return False
cases = os.path.join(corpus, "cases")
for name in sorted(os.listdir(cases)):
    if not name.endswith(".pkl"):
        continue
    v = pickle.loads(open(os.path.join(cases, name), "rb").read())
    if has_set(v):
        print(name, "SKIP", "set", sep="\t"); continue
    try:
        text = json.dumps(v, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=everyday)
    except RecursionError:
        print(name, "SKIP", "recursion", sep="\t"); continue
    except (TypeError, ValueError) as e:
        print(name, "ERR", type(e).__name__, sep="\t"); continue
    text = re.sub("[\ud800-\udfff]", lambda m: "\\u%04x" % ord(m.group()), text)
    print(name, "OK", text.encode("utf-8").hex(), sep="\t")
"#;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or_else(|e| panic!("{e}"))).collect()
}

#[test]
fn plain_json_is_what_python_json_dumps_writes() {
    let Some(dir) = corpus() else { return };
    let Some(python) = python3() else { return };
    let out = Command::new(python).args(["-B", "-c", DUMPS]).arg(&dir).output().unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    let listing = String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("{e}"));
    let (mut written, mut refused, mut failures) = (0, 0, Vec::new());
    for line in listing.lines() {
        let mut parts = line.split('\t');
        let (Some(name), Some(status), Some(arg)) = (parts.next(), parts.next(), parts.next()) else {
            panic!("bad line {line:?}");
        };
        let bytes = std::fs::read(dir.join("cases").join(name)).unwrap_or_else(|e| panic!("{e}"));
        let value = pickle::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let ours = pickle::to_plain_json(&value);
        match (status, ours) {
            ("OK", Ok(text)) => {
                let want = String::from_utf8(unhex(arg)).unwrap_or_else(|e| panic!("{e}"));
                if text != want {
                    failures.push(format!("{name}: wrote {text:.200}, Python {want:.200}"));
                    continue;
                }
                match pickle::from_plain_json(&text).and_then(|v| pickle::to_plain_json(&v)) {
                    Ok(again) if again == text => written += 1,
                    Ok(again) => failures.push(format!("{name}: read back and written again: {again:.200}")),
                    Err(e) => failures.push(format!("{name}: cannot read back: {e}")),
                }
            }
            ("OK", Err(e)) => failures.push(format!("{name}: Python writes it, we fail: {e}")),
            ("ERR", Ok(text)) => failures.push(format!("{name}: Python raises {arg}, we wrote {text:.200}")),
            ("ERR", Err(_)) => refused += 1,
            _ => {}
        }
    }
    assert!(failures.is_empty(), "{} differences:\n{}", failures.len(), failures.join("\n"));
    assert!(written >= 300 && refused >= 50, "only {written} files compared written, {refused} refused");
    eprintln!("{written} files written as Python writes them, {refused} refused where Python raises");
}
