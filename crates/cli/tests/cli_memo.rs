//! `pickleshelf memo ls` and `memo clear`: the memo namespaces a program left in a
//! store, listed (text and JSON) and cleared — all named or none, nothing else touched.

mod common;

use std::path::Path;

use common::cli::*;
use pickleshelf::Shelf;
use serde_json::Value as Json;

/// A store with keys, and memo results in two namespaces: "fib" (version v2, 30
/// results) and "render" (2 results).
fn memo_store(dir: &Path) -> std::path::PathBuf {
    let store = sample_store(dir);
    let shelf = Shelf::open(&store).unwrap_or_else(|e| panic!("{e}"));
    let fib = shelf.memo_builder("fib").version("v2").open().unwrap_or_else(|e| panic!("{e}"));
    for n in 0..30u64 {
        let _: u64 = fib.get_or_compute(&(n,), || n * 3).unwrap_or_else(|e| panic!("{e}"));
    }
    let render = shelf.memo("render").unwrap_or_else(|e| panic!("{e}"));
    for page in ["home", "about"] {
        let _: String = render.get_or_compute(&page, || page.repeat(1000)).unwrap_or_else(|e| panic!("{e}"));
    }
    drop((fib, render));
    shelf.close().unwrap_or_else(|e| panic!("{e}"));
    store
}

fn entries(store: &Path) -> Vec<(String, String, u64)> {
    let shelf = Shelf::builder(store).read_only(true).open().unwrap_or_else(|e| panic!("{e}"));
    let spaces = shelf.memo_namespaces().unwrap_or_else(|e| panic!("{e}"));
    spaces.into_iter().map(|n| (n.name, n.version, n.entries)).collect()
}

#[test]
fn memo_ls_lists_namespaces_in_text_and_json() {
    let dir = tmp();
    let store = memo_store(dir.path());
    let st = s(&store);
    let text = ok_text(&["memo", "ls", &st]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].trim_start().starts_with("30 ") && lines[0].ends_with(" v2 fib"), "{text}");
    assert!(lines[1].trim_start().starts_with("2 ") && lines[1].ends_with(" - render"), "{text}");
    assert!(lines[0].contains("Z v2"), "a time: {text}");

    let json: Json = serde_json::from_slice(&ok(&["memo", "ls", &st, "--json"])).unwrap_or_else(|e| panic!("{e}"));
    let items = json.as_array().unwrap_or_else(|| panic!("{json}"));
    let shelf = Shelf::builder(&store).read_only(true).open().unwrap_or_else(|e| panic!("{e}"));
    let spaces = shelf.memo_namespaces().unwrap_or_else(|e| panic!("{e}"));
    drop(shelf);
    assert_eq!(items.len(), spaces.len());
    for (item, ns) in items.iter().zip(&spaces) {
        let fields: Vec<&str> = item.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
        assert_eq!(fields, ["bytes", "entries", "last_used", "name", "version"]);
        assert_eq!(item["name"], ns.name.as_str());
        assert_eq!(item["version"], ns.version.as_str());
        assert_eq!(item["entries"], ns.entries);
        assert_eq!(item["bytes"], ns.bytes);
        assert!(item["last_used"].as_str().is_some_and(|t| t.len() == 20 && t.ends_with('Z')), "{item}");
    }
    assert!(items[1]["bytes"].as_u64() > Some(0));
    // A store without memo results: nothing, or [].
    let plain = sample_store(&dir.path().join("p"));
    assert_eq!(ok_text(&["memo", "ls", &s(&plain)]), "");
    assert_eq!(ok_text(&["memo", "ls", &s(&plain), "--json"]), "[]\n");
}

#[test]
fn memo_clear_forgets_results_of_the_named_namespaces_only() {
    let dir = tmp();
    let store = memo_store(dir.path());
    let st = s(&store);
    let keys = ok_text(&["ls", &st, "--long"]);
    // A name that is not a namespace: nothing cleared, status 3.
    let err = absent(&["memo", "clear", &st, "fib", "ghost"]);
    assert!(err.ends_with("state.db: no memo namespace \"ghost\" (nothing cleared)\n"), "{err}");
    assert_eq!(entries(&store), [("fib".into(), "v2".into(), 30), ("render".into(), String::new(), 2)]);
    // Read-only: status 2, nothing cleared.
    let err = fails_quietly(&["memo", "clear", &st, "fib", "--read-only"]);
    assert!(err.contains("store is open read-only"), "{err}");
    // With --force the unknown name is ignored.
    let out = ok_text(&["memo", "clear", &st, "fib", "ghost", "--force"]);
    assert!(out.starts_with("cleared memo fib: 30 results ("), "{out}");
    assert_eq!(out.lines().count(), 1);
    assert_eq!(entries(&store), [("fib".into(), "v2".into(), 0), ("render".into(), String::new(), 2)]);
    // The other namespace's results still answer; a call of fib is computed again.
    let shelf = Shelf::open(&store).unwrap_or_else(|e| panic!("{e}"));
    let render = shelf.memo("render").unwrap_or_else(|e| panic!("{e}"));
    let hit: String = render.get_or_compute(&"home", || panic!("recomputed")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hit.len(), 4000);
    let fib = shelf.memo_builder("fib").version("v2").open().unwrap_or_else(|e| panic!("{e}"));
    let mut ran = false;
    let _: u64 = fib
        .get_or_compute(&(3u64,), || {
            ran = true;
            9
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(ran);
    drop((render, fib));
    shelf.close().unwrap_or_else(|e| panic!("{e}"));
    // --all clears every namespace; keys are untouched throughout.
    let out = ok_text(&["memo", "clear", &st, "--all"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert_eq!(entries(&store), [("fib".into(), "v2".into(), 0), ("render".into(), String::new(), 0)]);
    assert_eq!(ok_text(&["ls", &st, "--long"]), keys);
    assert_eq!(ok_text(&["verify", &st]), "ok: 6 keys, 1 objects, 1 object files checked\n");
    // Usage: names or --all, not both, not neither.
    bin().args(["memo", "clear", &st]).assert().code(FAILED);
    bin().args(["memo", "clear", &st, "fib", "--all"]).assert().code(FAILED);
}
