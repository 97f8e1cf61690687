//! The `pickleshelf pickle ...` subcommands, run as a user runs them: output, exit
//! status, and one line on stderr for every malformed input.
//!
//! Cases that read `../shared/conformance` skip when it is missing (fail when `CI` is
//! set); so do the checks that ask `python3` to load what the encoder wrote.

mod common;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command as StdCommand, Stdio};

use common::cli::bin;
use common::{corpus, python3};
use predicates::prelude::*;

fn sample() -> PathBuf {
    common::repo_root().join("examples/data/sample.pkl")
}

/// Runs the binary and returns stdout, asserting success.
fn run_ok(args: &[&str], stdin: Option<Vec<u8>>) -> Vec<u8> {
    let mut cmd = bin();
    cmd.args(args);
    if let Some(input) = stdin {
        cmd.write_stdin(input);
    }
    cmd.assert().success().stderr("").get_output().stdout.clone()
}

/// Runs the binary expecting a failure with exit status 2 and one stderr line.
fn run_fail(args: &[&str], stdin: Option<Vec<u8>>) -> String {
    let mut cmd = bin();
    cmd.args(args);
    if let Some(input) = stdin {
        cmd.write_stdin(input);
    }
    let out = cmd.assert().code(2).stdout("").get_output().clone();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "stderr should be one line: {err:?}");
    assert!(err.ends_with('\n'), "{err:?}");
    err
}

#[test]
fn decode_prints_tagged_json() {
    let out = run_ok(&["pickle", "decode", &sample().to_string_lossy()], None);
    let text = String::from_utf8(out).unwrap_or_else(|e| panic!("{e}"));
    assert!(text.starts_with(r#"{"dict":[[{"str":"app"},{"str":"pickleshelf-demo"}]"#), "{text}");
    assert!(text.contains(r#"{"object":{"module":"datetime","name":"datetime""#), "{text}");
    assert!(text.contains(r#"[{"str":"open_tabs"},{"ref":"1"}]"#), "{text}");
    assert!(text.ends_with("]]}\n"), "{text}");
    assert_eq!(text.lines().count(), 1);
}

#[test]
fn decode_reads_stdin() {
    let bytes = std::fs::read(sample()).unwrap_or_else(|e| panic!("{e}"));
    let from_file = run_ok(&["pickle", "decode", &sample().to_string_lossy()], None);
    let from_stdin = run_ok(&["pickle", "decode", "-"], Some(bytes));
    assert_eq!(from_file, from_stdin);
}

#[test]
fn decode_matches_the_corpus_json_for_every_protocol() {
    let Some(dir) = corpus() else { return };
    for case in ["program_state", "cycle_list_dict", "str_lone_surrogate", "deep_list_500", "memo_args_tuple"] {
        let expected = std::fs::read(dir.join(format!("cases/{case}.json"))).unwrap_or_else(|e| panic!("{e}"));
        for p in 0..=5 {
            let path = dir.join(format!("cases/{case}.p{p}.pkl"));
            let out = run_ok(&["pickle", "decode", &path.to_string_lossy()], None);
            assert!(out == expected, "{case} protocol {p}: {}", String::from_utf8_lossy(&out));
        }
    }
}

/// Plain data (no objects, which JSON cannot rebuild): a shared list, a cycle, a
/// shared tuple, big ints, special floats, bytes, a set and a lone surrogate.
const PLAIN_JSON: &str = concat!(
    r#"{"id":"1","value":{"dict":[[{"str":"tags"},{"id":"2","value":{"list":[{"str":"a"},{"str":"é"}]}}],"#,
    r#"[{"str":"alias"},{"ref":"2"}],[{"str":"self"},{"ref":"1"}],"#,
    r#"[{"str":"pair"},{"id":"3","value":{"tuple":[{"int":"-18446744073709551616"},{"float":"-0.0"}]}}],"#,
    r#"[{"ref":"3"},{"list":[{"float":"nan"},{"float":"inf"},{"none":null},{"bool":true}]}],"#,
    r#"[{"str":"raw"},{"bytes":"00ff"}],[{"str":"buf"},{"bytearray":"0102"}],"#,
    r#"[{"str":"ids"},{"set":[{"int":"1"},{"int":"2"}]}],[{"str":"frozen"},{"frozenset":[{"str":"x"}]}],"#,
    r#"[{"str_utf8_surrogatepass_hex":"eda080"},{"tuple":[]}]]}}"#,
    "\n"
);

#[test]
fn encode_writes_a_pickle_that_decodes_back() {
    let json = PLAIN_JSON.as_bytes().to_vec();
    for p in ["2", "3", "4", "5"] {
        let pkl = run_ok(&["pickle", "encode", "--protocol", p, "-"], Some(json.clone()));
        assert!(pkl.starts_with(&[0x80, p.parse().unwrap_or(0)]) || pkl.is_empty(), "protocol {p}");
        let again = run_ok(&["pickle", "decode", "-"], Some(pkl));
        assert_eq!(String::from_utf8_lossy(&again), String::from_utf8_lossy(&json), "protocol {p}");
    }
    // The default protocol is 4.
    let pkl = run_ok(&["pickle", "encode", "-"], Some(br#"{"list":[{"int":"1"}]}"#.to_vec()));
    assert_eq!(pkl.get(..2), Some(&[0x80, 4][..]));
}

#[test]
fn encode_output_loads_in_python() {
    let Some(dir) = corpus() else { return };
    if python3().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut pairs = Vec::new();
    for case in ["program_state", "self_ref_dict", "shared_tuple_in_set_and_dict", "str_lone_surrogate", "int_2pow1000"]
    {
        let json = dir.join(format!("cases/{case}.json"));
        for p in 2..=5 {
            let out = tmp.path().join(format!("{case}.p{p}.pkl"));
            let pkl = run_ok(&["pickle", "encode", "-p", &p.to_string(), &json.to_string_lossy()], None);
            std::fs::write(&out, pkl).unwrap_or_else(|e| panic!("{e}"));
            pairs.push(out.to_string_lossy().into_owned());
            pairs.push(json.to_string_lossy().into_owned());
        }
    }
    let status = StdCommand::new("python3")
        .arg(dir.join("check_python_loads.py"))
        .args(&pairs)
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "check_python_loads.py rejected the encoder's output");
}

#[test]
fn roundtrip_keeps_the_value() {
    let original = run_ok(&["pickle", "decode", &sample().to_string_lossy()], None);
    for p in ["2", "4", "5"] {
        let pkl = run_ok(&["pickle", "roundtrip", "--protocol", p, &sample().to_string_lossy()], None);
        let again = run_ok(&["pickle", "decode", "-"], Some(pkl.clone()));
        assert_eq!(again, original, "protocol {p}");
        if p == "4" && python3().is_some() {
            // CPython loads the re-encoded sample to a value equal to the original's.
            let code = "import pickle,sys; a=pickle.load(open(sys.argv[1],'rb')); b=pickle.loads(sys.stdin.buffer.read()); \
                        sys.exit(0 if a == b and a['recent_files'] is a['open_tabs'] and b['recent_files'] is b['open_tabs'] else 1)";
            let mut child = StdCommand::new("python3")
                .args(["-c", code, &sample().to_string_lossy()])
                .stdin(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("{e}"));
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(&pkl).unwrap_or_else(|e| panic!("{e}"));
            }
            let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
            assert!(status.success(), "python3 did not load the re-encoded sample to the same value");
        }
    }
}

#[test]
fn malformed_pickles_fail_with_one_line_naming_the_offset() {
    let bytes = std::fs::read(sample()).unwrap_or_else(|e| panic!("{e}"));
    let half = bytes.get(..bytes.len() / 2).unwrap_or_default().to_vec();
    let err = run_fail(&["pickle", "decode", "-"], Some(half));
    assert!(err.contains("<stdin>: pickle decode failed at byte ") && err.contains("input ends inside"), "{err}");

    let err = run_fail(&["pickle", "decode", "-"], Some(b"\x80\x04\xff.".to_vec()));
    assert_eq!(err, "pickleshelf: <stdin>: pickle decode failed at byte 2: unknown opcode 0xff\n");

    let err = run_fail(&["pickle", "roundtrip", "-"], Some(Vec::new()));
    assert!(err.contains("at byte 0"), "{err}");

    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let bad = tmp.path().join("bad.pkl");
    std::fs::write(&bad, b"\x80\x02]q\x00(K\x01K\x02").unwrap_or_else(|e| panic!("{e}"));
    let err = run_fail(&["pickle", "decode", &bad.to_string_lossy()], None);
    assert!(err.contains("bad.pkl: pickle decode failed at byte 10"), "{err}");
}

#[test]
fn malformed_json_fails_with_one_line_naming_the_offset() {
    let err = run_fail(&["pickle", "encode", "-"], Some(b"{\"list\":[{\"int\":\"1\"},]}".to_vec()));
    assert_eq!(err, "pickleshelf: <stdin>: tagged JSON invalid at byte 21: expected a JSON value, found ']'\n");
    let err = run_fail(&["pickle", "encode", "-"], Some(b"garbage".to_vec()));
    assert!(err.contains("at byte 0"), "{err}");
    let err = run_fail(&["pickle", "encode", "-"], Some(b"{\"str\":\"\xff\"}".to_vec()));
    assert!(err.contains("at byte 8: the text is not UTF-8"), "{err}");
    let err = run_fail(&["pickle", "encode", "-"], Some(br#"{"object":{"module":"m","name":"n"}}"#.to_vec()));
    assert!(err.contains("at byte 10: object nodes cannot be built"), "{err}");
}

#[test]
fn missing_file_fails_with_one_line() {
    for sub in ["decode", "encode", "roundtrip"] {
        let err = run_fail(&["pickle", sub, "no/such/file.pkl"], None);
        assert!(err.starts_with("pickleshelf: cannot read no/such/file.pkl: "), "{err}");
    }
}

#[test]
fn usage_errors_exit_2() {
    bin().assert().code(2);
    bin().args(["pickle"]).assert().code(2);
    bin().args(["pickle", "decode"]).assert().code(2).stderr(predicate::str::contains("FILE"));
    bin().args(["pickle", "encode", "--protocol", "7", "x.json"]).assert().code(2);
    bin().args(["pickle", "roundtrip", "--protocol", "1", "x.pkl"]).assert().code(2);
    bin().args(["pickle", "frobnicate"]).assert().code(2);
}

#[test]
fn help_has_an_example_per_subcommand() {
    bin().arg("--help").assert().success().stdout(predicate::str::contains("pickleshelf pickle decode"));
    bin().args(["pickle", "--help"]).assert().success().stdout(
        predicate::str::contains("pickle decode")
            .and(predicate::str::contains("pickle encode"))
            .and(predicate::str::contains("pickle roundtrip")),
    );
    for sub in ["decode", "encode", "roundtrip"] {
        bin()
            .args(["pickle", sub, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("Example:").and(predicate::str::contains(format!("pickle {sub}"))));
    }
}

#[test]
fn broken_pipe_exits_quietly() {
    // A value whose JSON is far larger than a pipe's buffer; the reader stops early.
    let mut pkl = b"\x80\x04]\x94(".to_vec();
    for _ in 0..200_000 {
        pkl.extend_from_slice(b"\x8c\x10sixteen chars...");
    }
    pkl.extend_from_slice(b"e.");
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("pickleshelf"))
        .args(["pickle", "decode", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&pkl).unwrap_or_else(|e| panic!("{e}"));
    }
    let mut first = [0u8; 16];
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_exact(&mut first).unwrap_or_else(|e| panic!("{e}"));
        // dropping stdout closes the pipe
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&first, b"{\"list\":[{\"str\":");
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
}
