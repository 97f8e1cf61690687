//! The README's command-line block runs as it is: each line in bash, in a scratch
//! directory, with `pickleshelf` on `PATH`, and prints what its comments say.

mod common;

use std::process::Command;

use common::cli::*;

/// The first ```sh block after the heading "## The command line".
fn readme_block() -> String {
    let readme = std::fs::read_to_string(common::repo_root().join("README.md")).unwrap_or_else(|e| panic!("{e}"));
    let section = readme.split("## The command line\n").nth(1).unwrap_or_else(|| panic!("no CLI section"));
    let block = section.split("```sh\n").nth(1).unwrap_or_else(|| panic!("no sh block"));
    block.split("```").next().unwrap_or_default().to_owned()
}

#[test]
fn the_readme_command_line_block_runs() {
    if common::python3().is_none() {
        return;
    }
    let dir = tmp();
    let block = readme_block();
    assert!(block.lines().count() >= 10, "{block}");
    let bin_dir = bin_path().parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .args(["--norc", "-e", "-o", "pipefail", "-c", &block])
        .current_dir(dir.path())
        .env("PATH", path)
        .env_remove("PICKLESHELF_PYTHON")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{block}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    // What the comments promise.
    for want in [
        "imported 1 keys",
        "{'name': 'Ada', 'visits': 41}\n",
        "{\"name\":\"Ada\",\"visits\":41}\n",
        "ok: 2 keys",
        "created checkpoint v1: 2 keys",
        "- user:2\n",
        "restored checkpoint v1: 1 added, 0 removed, 0 changed\n",
        "status 3\n",
        "exported 2 keys",
    ] {
        assert!(stdout.contains(want), "{want:?} not in:\n{stdout}");
    }
    assert_eq!(stderr, "pickleshelf: state.db: no key \"nobody\"\n");
    assert!(dir.path().join("state-py.dat").is_file() && dir.path().join("state-py.dir").is_file());
}
