//! Decoder conformance: every pickle file of the shared corpus (`../shared/conformance`,
//! made by CPython 3.11) decodes to the value its tagged JSON describes, and every
//! `values` case's JSON reads back and writes out unchanged.
//!
//! Comparison: JSON trees are equal when their objects have the same keys and values and
//! their arrays the same items in order; floats compare by parsed value (any NaN matches
//! NaN, `-0.0` keeps its sign); `object` nodes compare `module` and `name`, and
//! `python_repr` where the codec writes one too (CPython's `repr` of a `datetime`,
//! `Decimal`, `complex`, ...). Every
//! failure is collected and reported at the end, not just the first.
//!
//! When the corpus is missing the tests skip with a message, or fail when `CI` is set.

mod common;

use std::path::Path;

use common::corpus;
use pickleshelf_pickle as pickle;

struct Case {
    name: String,
    group: String,
    json: String,
    /// (protocol, path relative to the corpus)
    files: Vec<(u32, String)>,
}

fn read_manifest(dir: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap_or_else(|e| panic!("manifest: {e}"));
    let doc = Doc::parse(&text).unwrap_or_else(|e| panic!("manifest: {e}"));
    let cases = doc.get(doc.root, "cases").unwrap_or_else(|| panic!("manifest has no cases"));
    let mut out = Vec::new();
    for &c in doc.items(cases) {
        let s = |key: &str| doc.get(c, key).and_then(|i| doc.str(i)).map(str::to_owned).unwrap_or_default();
        let mut files = Vec::new();
        for &f in doc.get(c, "files").map(|i| doc.items(i)).unwrap_or(&[]) {
            let protocol = doc.get(f, "protocol").and_then(|i| doc.num(i)).and_then(|n| n.parse().ok()).unwrap_or(99);
            let path = doc.get(f, "path").and_then(|i| doc.str(i)).unwrap_or_default().to_owned();
            files.push((protocol, path));
        }
        out.push(Case { name: s("name"), group: s("group"), json: s("json"), files });
    }
    out
}

#[test]
fn every_pickle_file_decodes_to_its_json() {
    let Some(dir) = corpus() else { return };
    let cases = read_manifest(&dir);
    assert!(cases.len() >= 117, "manifest lists only {} cases", cases.len());
    let mut failures = Vec::new();
    let mut files = 0;
    let mut protocols_seen = [0usize; 6];
    for case in &cases {
        let expected = match std::fs::read_to_string(dir.join(&case.json)) {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{}: cannot read {}: {e}", case.name, case.json));
                continue;
            }
        };
        for (protocol, path) in &case.files {
            files += 1;
            if let Some(n) = protocols_seen.get_mut(*protocol as usize) {
                *n += 1;
            }
            let bytes = match std::fs::read(dir.join(path)) {
                Ok(b) => b,
                Err(e) => {
                    failures.push(format!("{path}: cannot read: {e}"));
                    continue;
                }
            };
            if let Err(e) = pickle::check(&bytes) {
                failures.push(format!("{path}: check: {e}"));
            }
            let value = match pickle::decode(&bytes) {
                Ok(v) => v,
                Err(e) => {
                    failures.push(format!("{path}: {e}"));
                    continue;
                }
            };
            let got = pickle::to_tagged_json(&value);
            // The writer matches the corpus byte for byte for plain data; compare trees
            // otherwise (objects, or to say where a difference is).
            if got.len() + 1 == expected.len() && expected.starts_with(&got) && expected.ends_with('\n') {
                continue;
            }
            if let Some(diff) = tree_difference(&expected, &got) {
                failures.push(format!("{path} (protocol {protocol}): {diff}"));
            } else if case.group == "values" {
                failures.push(format!("{path}: equal as trees but not byte for byte"));
            }
        }
    }
    eprintln!("decoded {files} files of {} cases; per protocol: {protocols_seen:?}", cases.len());
    assert!(files >= 700, "manifest lists only {files} files");
    assert!(failures.is_empty(), "{} of {files} files differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn values_json_round_trips_through_the_reader() {
    let Some(dir) = corpus() else { return };
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in read_manifest(&dir).iter().filter(|c| c.group == "values") {
        let text = match std::fs::read_to_string(dir.join(&case.json)) {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{}: {e}", case.name));
                continue;
            }
        };
        checked += 1;
        match pickle::from_tagged_json(&text) {
            Ok(v) => {
                let again = pickle::to_tagged_json(&v);
                if again != text.trim_end_matches('\n') {
                    let diff = tree_difference(&text, &again).unwrap_or_else(|| "differs byte for byte".into());
                    failures.push(format!("{}: {diff}", case.name));
                }
            }
            Err(e) => failures.push(format!("{}: {e}", case.name)),
        }
    }
    assert!(checked >= 106, "only {checked} values cases");
    assert!(failures.is_empty(), "{} cases differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn object_cases_are_rejected_by_the_reader_with_an_offset() {
    let Some(dir) = corpus() else { return };
    for case in read_manifest(&dir).iter().filter(|c| c.group == "objects") {
        let text = std::fs::read_to_string(dir.join(&case.json)).unwrap_or_default();
        match pickle::from_tagged_json(&text) {
            Err(pickleshelf_pickle::Error::Json { offset, message }) => {
                assert!(message.contains("object"), "{}: {message}", case.name);
                assert_eq!(text.get(offset..offset + 1), Some("{"), "{}: offset {offset}", case.name);
            }
            other => panic!("{}: expected a JSON error, got {:?}", case.name, other.map(|v| v.to_string())),
        }
    }
}

// ----- comparing JSON trees -----

/// Where two JSON texts differ as tagged-JSON trees, or `None` when they are equal.
fn tree_difference(expected: &str, got: &str) -> Option<String> {
    let a = match Doc::parse(expected) {
        Ok(d) => d,
        Err(e) => return Some(format!("expected JSON unreadable: {e}")),
    };
    let b = match Doc::parse(got) {
        Ok(d) => d,
        Err(e) => return Some(format!("output is not JSON: {e}")),
    };
    // (node in a, node in b, path, inside an "object" tag)
    let mut work = vec![(a.root, b.root, String::from("$"), false)];
    while let Some((x, y, path, object)) = work.pop() {
        match (&a.nodes[x], &b.nodes[y]) {
            (J::Obj(ma), J::Obj(mb)) => {
                let keys = |m: &[(String, usize)]| {
                    let mut k: Vec<String> = m.iter().map(|(k, _)| k.clone()).collect();
                    if object {
                        k.retain(|k| k == "module" || k == "name");
                    }
                    k.sort();
                    k
                };
                if keys(ma) != keys(mb) {
                    return Some(format!("at {path}: keys {:?} expected, got {:?}", keys(ma), keys(mb)));
                }
                for (k, va) in ma {
                    // The codec writes CPython's repr for the types of `pytypes` that
                    // print without their contents: where both have one, they agree.
                    if object
                        && k == "python_repr"
                        && let Some(vb) = b.get(y, k)
                        && a.str(*va) != b.str(vb)
                    {
                        return Some(format!("at {path}: python_repr {:?} expected, got {:?}", a.str(*va), b.str(vb)));
                    }
                    if object && k != "module" && k != "name" {
                        continue;
                    }
                    let Some(vb) = b.get(y, k) else { continue };
                    if k == "float"
                        && let (Some(fa), Some(fb)) = (a.str(*va), b.str(vb))
                    {
                        if !same_float(fa, fb) {
                            return Some(format!("at {path}: float {fa} expected, got {fb}"));
                        }
                        continue;
                    }
                    work.push((*va, vb, format!("{path}.{k}"), k == "object"));
                }
            }
            (J::Arr(ia), J::Arr(ib)) => {
                if ia.len() != ib.len() {
                    return Some(format!("at {path}: {} items expected, got {}", ia.len(), ib.len()));
                }
                for (i, (p, q)) in ia.iter().zip(ib).enumerate().rev() {
                    work.push((*p, *q, format!("{path}[{i}]"), false));
                }
            }
            (p, q) if p == q => {}
            (p, q) => return Some(format!("at {path}: {} expected, got {}", p.short(), q.short())),
        }
    }
    None
}

fn same_float(a: &str, b: &str) -> bool {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

// ----- a small JSON reader for the tests (iterative; flat arena) -----

#[derive(PartialEq, Debug)]
enum J {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<usize>),
    Obj(Vec<(String, usize)>),
}

impl J {
    fn short(&self) -> String {
        let s = format!("{self:?}");
        if s.len() > 80 { format!("{}...", &s[..s.char_indices().nth(80).map_or(s.len(), |(i, _)| i)]) } else { s }
    }
}

struct Doc {
    nodes: Vec<J>,
    root: usize,
}

enum Open {
    Arr(Vec<usize>),
    Obj(Vec<(String, usize)>, String),
}

impl Doc {
    fn get(&self, obj: usize, key: &str) -> Option<usize> {
        match self.nodes.get(obj)? {
            J::Obj(m) => m.iter().find(|(k, _)| k == key).map(|&(_, v)| v),
            _ => None,
        }
    }
    fn items(&self, arr: usize) -> &[usize] {
        match self.nodes.get(arr) {
            Some(J::Arr(v)) => v,
            _ => &[],
        }
    }
    fn str(&self, i: usize) -> Option<&str> {
        match self.nodes.get(i)? {
            J::Str(s) => Some(s),
            _ => None,
        }
    }
    fn num(&self, i: usize) -> Option<&str> {
        match self.nodes.get(i)? {
            J::Num(s) => Some(s),
            _ => None,
        }
    }

    fn parse(text: &str) -> Result<Doc, String> {
        let b = text.as_bytes();
        let mut pos = 0;
        let mut nodes = Vec::new();
        let mut stack: Vec<Open> = Vec::new();
        let ws = |pos: &mut usize| {
            while *pos < b.len() && b[*pos].is_ascii_whitespace() {
                *pos += 1;
            }
        };
        let string = |pos: &mut usize| -> Result<String, String> {
            *pos += 1;
            let mut units: Vec<u16> = Vec::new();
            let mut out = String::new();
            loop {
                let c = *b.get(*pos).ok_or("unterminated string")?;
                if c != b'\\' || b.get(*pos + 1) != Some(&b'u') {
                    out.push_str(&String::from_utf16_lossy(&units));
                    units.clear();
                }
                match c {
                    b'"' => {
                        *pos += 1;
                        return Ok(out);
                    }
                    b'\\' => {
                        let e = *b.get(*pos + 1).ok_or("bad escape")?;
                        *pos += 2;
                        match e {
                            b'u' => {
                                let h = text.get(*pos..*pos + 4).ok_or("bad \\u")?;
                                units.push(u16::from_str_radix(h, 16).map_err(|e| e.to_string())?);
                                *pos += 4;
                            }
                            b'n' => out.push('\n'),
                            b'r' => out.push('\r'),
                            b't' => out.push('\t'),
                            b'b' => out.push('\u{8}'),
                            b'f' => out.push('\u{c}'),
                            other => out.push(char::from(other)),
                        }
                    }
                    _ => {
                        let start = *pos;
                        while *pos < b.len() && b[*pos] != b'"' && b[*pos] != b'\\' {
                            *pos += 1;
                        }
                        out.push_str(&text[start..*pos]);
                    }
                }
            }
        };
        loop {
            ws(&mut pos);
            let mut done = match b.get(pos) {
                Some(b'{') => {
                    pos += 1;
                    ws(&mut pos);
                    if b.get(pos) == Some(&b'}') {
                        pos += 1;
                        nodes.push(J::Obj(Vec::new()));
                        nodes.len() - 1
                    } else {
                        let k = string(&mut pos)?;
                        ws(&mut pos);
                        pos += 1; // ':'
                        stack.push(Open::Obj(Vec::new(), k));
                        continue;
                    }
                }
                Some(b'[') => {
                    pos += 1;
                    ws(&mut pos);
                    if b.get(pos) == Some(&b']') {
                        pos += 1;
                        nodes.push(J::Arr(Vec::new()));
                        nodes.len() - 1
                    } else {
                        stack.push(Open::Arr(Vec::new()));
                        continue;
                    }
                }
                Some(b'"') => {
                    let s = string(&mut pos)?;
                    nodes.push(J::Str(s));
                    nodes.len() - 1
                }
                Some(_) => {
                    let start = pos;
                    while pos < b.len() && !b"{}[],: \n\r\t".contains(&b[pos]) {
                        pos += 1;
                    }
                    nodes.push(match &text[start..pos] {
                        "null" => J::Null,
                        "true" => J::Bool(true),
                        "false" => J::Bool(false),
                        n => J::Num(n.to_owned()),
                    });
                    nodes.len() - 1
                }
                None => return Err("unexpected end".into()),
            };
            loop {
                ws(&mut pos);
                match stack.last_mut() {
                    None => {
                        return if pos == b.len() {
                            Ok(Doc { nodes, root: done })
                        } else {
                            Err(format!("junk at {pos}"))
                        };
                    }
                    Some(Open::Arr(items)) => {
                        items.push(done);
                        match b.get(pos) {
                            Some(b',') => {
                                pos += 1;
                                break;
                            }
                            Some(b']') => {
                                pos += 1;
                                let items = std::mem::take(items);
                                stack.pop();
                                nodes.push(J::Arr(items));
                                done = nodes.len() - 1;
                            }
                            _ => return Err(format!("bad array at {pos}")),
                        }
                    }
                    Some(Open::Obj(members, key)) => {
                        members.push((std::mem::take(key), done));
                        match b.get(pos) {
                            Some(b',') => {
                                pos += 1;
                                ws(&mut pos);
                                let k = string(&mut pos)?;
                                ws(&mut pos);
                                pos += 1; // ':'
                                if let Some(Open::Obj(_, key)) = stack.last_mut() {
                                    *key = k;
                                }
                                break;
                            }
                            Some(b'}') => {
                                pos += 1;
                                let members = std::mem::take(members);
                                stack.pop();
                                nodes.push(J::Obj(members));
                                done = nodes.len() - 1;
                            }
                            _ => return Err(format!("bad object at {pos}")),
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn the_tree_comparison_itself() {
    assert_eq!(tree_difference(r#"{"float":"nan"}"#, r#"{"float":"nan"}"#), None);
    assert!(tree_difference(r#"{"float":"0.0"}"#, r#"{"float":"-0.0"}"#).is_some());
    assert_eq!(tree_difference(r#"{"float":"1e+16"}"#, r#"{"float":"1e16"}"#), None);
    assert_eq!(
        tree_difference(
            r#"{"object":{"module":"m","name":"n","python_repr":"x"}}"#,
            r#"{"object":{"module":"m","name":"n","kind":"reduce"}}"#
        ),
        None
    );
    assert!(
        tree_difference(r#"{"object":{"module":"m","name":"n"}}"#, r#"{"object":{"module":"m","name":"o"}}"#).is_some()
    );
    assert!(tree_difference(r#"{"list":[{"int":"1"}]}"#, r#"{"list":[{"int":"2"}]}"#).is_some());
    assert!(tree_difference(r#"{"list":[]}"#, r#"{"tuple":[]}"#).is_some());
}
