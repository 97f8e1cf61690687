//! The JSON forms scripts read: `get --json`, `ls --json` (with and without `--long`),
//! `checkpoint ls --json`, `stats --json`, `verify --json` and `gc --json`, each parsed
//! with serde_json and checked field by field against the store (docs/CLI.md, "JSON
//! output").

mod common;

use std::path::Path;

use common::cli::*;
use pickleshelf::{Shelf, pickle};
use serde_json::{Value as Json, json};

fn parse(bytes: &[u8]) -> Json {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

fn open(store: &Path) -> Shelf {
    Shelf::builder(store).read_only(true).open().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn get_json_is_the_value_as_json_dumps_writes_it() {
    let dir = tmp();
    let store = dir.path().join("s.db");
    let st = s(&store);
    let shelf = Shelf::open(&store).unwrap_or_else(|e| panic!("{e}"));
    // Python: {'name': 'Ada', 'langs': ('en', 'fr'), 'age': 36, 'score': 2.5, 'ok': True, 'none': None, 7: 'seven'}
    let v = pickle::from_tagged_json(
        r#"{"dict":[[{"str":"name"},{"str":"Ada"}],[{"str":"langs"},{"tuple":[{"str":"en"},{"str":"fr"}]}],
            [{"str":"age"},{"int":"36"}],[{"str":"score"},{"float":"2.5"}],[{"str":"ok"},{"bool":true}],
            [{"str":"none"},{"none":null}],[{"int":"7"},{"str":"seven"}]]}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    shelf
        .insert_pickle("user:1", &pickle::encode(&v, 4).unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or_else(|e| panic!("{e}"));
    shelf.close().unwrap_or_else(|e| panic!("{e}"));
    let out = ok(&["get", &st, "user:1", "--json"]);
    assert!(out.ends_with(b"}\n") && !out[..out.len() - 1].contains(&b'\n'), "one line");
    let got = parse(&out);
    assert_eq!(got["name"], "Ada");
    assert_eq!(got["langs"], json!(["en", "fr"]));
    assert_eq!(got["age"], 36);
    assert_eq!(got["score"], 2.5);
    assert_eq!(got["ok"], true);
    assert_eq!(got["none"], Json::Null);
    assert_eq!(got["7"], "seven");
    assert_eq!(got.as_object().map(|o| o.len()), Some(7));
    // The keys in the dict's order, as Python writes them.
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with(r#"{"name":"Ada","langs":["en","fr"],"age":36,"#), "{text}");
}

#[test]
fn get_shows_everyday_python_types_with_their_values() {
    let dir = tmp();
    let store = dir.path().join("s.db");
    let st = s(&store);
    let shelf = Shelf::open(&store).unwrap_or_else(|e| panic!("{e}"));
    // Python: pickle.dumps({'at': datetime.datetime(2024, 1, 2, 3, 4, 5, 6),
    //                       'amount': decimal.Decimal('1.50')}, 2)
    let bytes = b"\x80\x02}q\x00(X\x02\x00\x00\x00atq\x01cdatetime\ndatetime\nq\x02c_codecs\nencode\nq\x03X\x0b\x00\x00\x00\x07\xc3\xa8\x01\x02\x03\x04\x05\x00\x00\x06q\x04X\x06\x00\x00\x00latin1q\x05\x86q\x06Rq\x07\x85q\x08Rq\tX\x06\x00\x00\x00amountq\ncdecimal\nDecimal\nq\x0bX\x04\x00\x00\x001.50q\x0c\x85q\rRq\x0eu.";
    shelf.insert_pickle("ev", bytes).unwrap_or_else(|e| panic!("{e}"));
    shelf.close().unwrap_or_else(|e| panic!("{e}"));
    let json = parse(&ok(&["get", &st, "ev", "--json"]));
    assert_eq!(json, json!({"at": "2024-01-02T03:04:05.000006", "amount": "1.50"}));
    let repr = String::from_utf8_lossy(&ok(&["get", &st, "ev", "--repr"])).into_owned();
    assert_eq!(repr.trim_end(), "{'at': datetime.datetime(2024, 1, 2, 3, 4, 5, 6), 'amount': Decimal('1.50')}");
    let tagged = parse(&ok(&["get", &st, "ev", "--tagged"]));
    assert_eq!(tagged["dict"][0][1]["object"]["python_repr"], "datetime.datetime(2024, 1, 2, 3, 4, 5, 6)");
    assert_eq!(tagged["dict"][1][1]["object"]["python_repr"], "Decimal('1.50')");
}

#[test]
fn ls_json_lists_keys_and_their_storage() {
    let dir = tmp();
    let store = sample_store(dir.path());
    let st = s(&store);
    let keys = parse(&ok(&["ls", &st, "--json"]));
    assert_eq!(keys, json!(["a", "b", "big", "big2", "user:1", "user:2"]));
    assert_eq!(parse(&ok(&["ls", &st, "--json", "--prefix", "user:"])), json!(["user:1", "user:2"]));
    assert_eq!(ok_text(&["ls", &st, "--json", "--prefix", "nothing"]), "[]\n");
    // One item per line.
    assert_eq!(ok_text(&["ls", &st, "--json", "-p", "user:"]), "[\n\"user:1\",\n\"user:2\"\n]\n");

    let long = parse(&ok(&["ls", &st, "--json", "--long"]));
    let items = long.as_array().unwrap_or_else(|| panic!("{long}"));
    let infos: Vec<_> = open(&store).key_info("").map(|i| i.unwrap_or_else(|e| panic!("{e}"))).collect();
    assert_eq!(items.len(), infos.len());
    for (item, info) in items.iter().zip(&infos) {
        let fields: Vec<&str> = item.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
        assert_eq!(fields, ["compression", "digest", "key", "refs", "size", "stored"], "{item}");
        assert_eq!(item["key"], info.key.as_str());
        assert_eq!(item["size"], json!(info.size));
        assert_eq!(item["stored"], info.stored);
        assert_eq!(item["compression"], json!(info.compression.map(|c| c.to_string())));
        assert_eq!(item["refs"], json!(info.shared_by));
        assert_eq!(item["digest"], info.digest.to_string());
    }
    // The large value is one object shared by two keys; small ones are inline.
    let by_key = |k: &str| items.iter().find(|i| i["key"] == k).cloned().unwrap_or(Json::Null);
    assert_eq!(by_key("big")["refs"], 2);
    assert_eq!(by_key("big")["size"], bytes_pickle(&noise(20_000, 7)).len());
    assert_eq!(by_key("a")["refs"], Json::Null);
    assert_eq!(by_key("big")["digest"], by_key("big2")["digest"]);
    // Keys that JSON must escape come back as they are.
    ok_in(&["put", &st, "tab\there \"q\" é", "-"], Some(b"1".to_vec()));
    let keys = parse(&ok(&["ls", &st, "--json", "-p", "tab"]));
    assert_eq!(keys, json!(["tab\there \"q\" é"]));
    // -0 and --json do not go together.
    bin().args(["ls", &st, "--json", "-0"]).assert().code(FAILED);
}

#[test]
fn checkpoint_ls_json_lists_name_time_keys_and_size() {
    let dir = tmp();
    let store = sample_store(dir.path());
    let st = s(&store);
    assert_eq!(ok_text(&["checkpoint", "ls", &st, "--json"]), "[]\n");
    ok(&["checkpoint", "create", &st, "v1"]);
    ok(&["rm", &st, "big", "big2"]);
    ok(&["checkpoint", "create", &st, "v2"]);
    let text = ok_text(&["checkpoint", "ls", &st, "--json"]);
    let got = parse(text.as_bytes());
    let items = got.as_array().unwrap_or_else(|| panic!("{got}"));
    let infos = open(&store).checkpoints().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(items.len(), 2);
    let lines: Vec<&str> = text.lines().collect();
    for (i, (item, info)) in items.iter().zip(&infos).enumerate() {
        let fields: Vec<&str> = item.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
        assert_eq!(fields, ["bytes", "created", "created_ms", "keys", "name"], "{item}");
        assert_eq!(item["name"], info.name.as_str());
        assert_eq!(item["keys"], info.keys);
        assert_eq!(item["bytes"], info.bytes);
        let ms = info.created.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        assert_eq!(item["created_ms"], ms);
        // The text form's first column is the same time.
        let created = item["created"].as_str().unwrap_or_default();
        assert!(created.len() == 20 && created.ends_with('Z'), "{created}");
        let plain = ok_text(&["checkpoint", "ls", &st]);
        assert!(plain.lines().nth(i).unwrap_or_default().starts_with(created), "{plain}");
        assert!(lines[i + 1].starts_with('{'), "one checkpoint per line: {text}");
    }
    assert_eq!((items[0]["keys"].as_u64(), items[1]["keys"].as_u64()), (Some(6), Some(4)));
    assert!(items[0]["bytes"].as_u64() > items[1]["bytes"].as_u64());
}

#[test]
fn stats_json_has_every_count_and_allocated_bytes() {
    let dir = tmp();
    let store = sample_store(dir.path());
    let st = s(&store);
    let got = parse(&ok(&["stats", &st, "--json"]));
    let stats = open(&store).stats().unwrap_or_else(|e| panic!("{e}"));
    let n = |k: &str| got[k].as_u64().unwrap_or_else(|| panic!("{k} in {got}"));
    assert_eq!(got["store"], st.as_str());
    assert_eq!(n("format_version"), u64::from(stats.format_version));
    for (k, v) in [
        ("generation", stats.generation),
        ("keys", stats.keys),
        ("memo_entries", stats.memo_entries),
        ("inline_values", stats.inline_values),
        ("objects", stats.objects),
        ("object_refs", stats.object_refs),
        ("checkpoints", stats.checkpoints),
        ("logical_bytes", stats.logical_bytes),
        ("unique_bytes", stats.unique_bytes),
        ("stored_bytes", stats.stored_bytes),
        ("pages", stats.pages),
        ("page_bytes", stats.page_bytes),
        ("pack_bytes", stats.pack_bytes),
        ("unreadable", stats.unreadable),
    ] {
        assert_eq!(n(k), v, "{k}");
    }
    assert_eq!(got["dedup_ratio"].as_f64(), Some(stats.dedup_ratio()));
    assert_eq!(got["compression_ratio"].as_f64(), Some(stats.compression_ratio()));
    assert_eq!(got["dictionary"], json!(stats.dictionary));
    // Sizes on disk: apparent, and allocated as du counts it.
    assert!(n("disk_bytes") > 0 && n("allocated_bytes") > 0);
    if let Ok(out) = std::process::Command::new("du").args(["-s", "-B1"]).arg(&store).output() {
        let du: u64 =
            String::from_utf8_lossy(&out.stdout).split_whitespace().next().and_then(|x| x.parse().ok()).unwrap_or(0);
        assert_eq!(n("allocated_bytes"), du);
    }
    let text = ok_text(&["stats", &st]);
    let line = text.lines().find(|l| l.starts_with("on disk")).unwrap_or_default();
    assert!(line.contains("bytes) allocated (du); "), "{line}");
}

#[test]
fn verify_json_reports_counts_problems_and_leftovers() {
    let dir = tmp();
    let store = sample_store(dir.path());
    let st = s(&store);
    let report = parse(&ok(&["verify", &st, "--json"]));
    assert_eq!(report["ok"], true);
    assert_eq!(report["complete"], true);
    assert_eq!(
        (report["keys"].clone(), report["objects"].clone(), report["files"].clone()),
        (json!(6), json!(1), json!(1))
    );
    assert_eq!(report["problems"], json!([]));
    assert_eq!(report["leftovers"], json!([]));
    assert_eq!(report["store"], st);

    // A temporary file a crash left: a leftover, not a problem.
    std::fs::create_dir_all(store.join("objects/tmp")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(store.join("objects").join("tmp").join("abc.123.0"), b"half a frame")
        .unwrap_or_else(|e| panic!("{e}"));
    let report = parse(&ok(&["verify", &st, "--json"]));
    assert_eq!(report["ok"], true);
    let leftovers = report["leftovers"].as_array().cloned().unwrap_or_default();
    assert_eq!(leftovers.len(), 1, "{report}");
    assert!(leftovers[0].as_str().is_some_and(|l| l.contains("objects/tmp")), "{report}");

    // A damaged object: exit 1, the problem named, the same report shape.
    damage_object(&store);
    let (out, err) = fails_with(1, &["verify", &st, "--json"], None);
    let report = parse(&out);
    assert_eq!(report["ok"], false);
    assert_eq!(report["complete"], true);
    let problems = report["problems"].as_array().cloned().unwrap_or_default();
    assert!(!problems.is_empty() && problems.iter().all(|p| p.is_string()), "{report}");
    assert!(err.contains("verify found"), "{err}");
}

#[test]
fn gc_json_reports_what_it_repaired_and_what_is_left() {
    let dir = tmp();
    let store = sample_store(dir.path());
    let st = s(&store);
    let report = parse(&ok(&["gc", &st, "--json"]));
    assert_eq!(report["ok"], true);
    assert_eq!(report["repaired"], json!([]));
    assert_eq!(report["keys"], 6);

    // A damaged value is reported, never removed: both keys that name it stay.
    damage_object(&store);
    let (out, err) = fails_with(1, &["gc", &st, "--json"], None);
    let report = parse(&out);
    assert_eq!(report["ok"], false);
    assert!(!report["problems"].as_array().cloned().unwrap_or_default().is_empty(), "{report}");
    assert!(err.contains("gc cannot repair"), "{err}");
    let keys = parse(&ok(&["ls", &st, "--json"]));
    assert_eq!(keys, json!(["a", "b", "big", "big2", "user:1", "user:2"]));
}
