//! `pickleshelf completions SHELL`: a script for bash, zsh and fish (and elvish and
//! powershell) that names every subcommand; the bash one, loaded into bash, completes
//! subcommands and option values. A shell that clap_complete does not know is a usage
//! error (status 2).

mod common;

use std::process::Command;

use common::cli::*;

#[test]
fn every_shell_gets_a_script_naming_every_subcommand() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = ok_text(&["completions", shell]);
        assert!(script.len() > 5_000, "{shell}: {} bytes", script.len());
        for sub in subcommands() {
            assert!(script.contains(&sub), "{shell}: no {sub}");
        }
    }
    let zsh = ok_text(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef pickleshelf"), "{}", &zsh[..40]);
    let fish = ok_text(&["completions", "fish"]);
    assert!(fish.contains("complete -c pickleshelf"), "fish");
    bin().args(["completions", "tcsh"]).assert().code(FAILED);
    bin().args(["completions"]).assert().code(FAILED);
}

/// What bash completes after `words`, with the script loaded (`None` without bash).
fn bash_completes(words: &[&str]) -> Option<String> {
    let script = ok_text(&["completions", "bash"]);
    let cword = words.len() - 1;
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let prev = if cword > 0 { words[cword - 1] } else { "" };
    let program = format!(
        "{script}\nCOMP_WORDS=({}); COMP_CWORD={cword}; _pickleshelf pickleshelf '{}' '{prev}'; echo \"${{COMPREPLY[@]}}\"",
        quoted.join(" "),
        words[cword],
    );
    let out = Command::new("bash").args(["--norc", "-c", &program]).output().ok()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn bash_completes_subcommands_and_values() {
    let Some(got) = bash_completes(&["pickleshelf", "ch"]) else {
        eprintln!("skipping: no bash");
        return;
    };
    assert_eq!(got, "checkpoint");
    let checkpoint = bash_completes(&["pickleshelf", "checkpoint", ""]).unwrap_or_default();
    for sub in ["create", "ls", "diff", "restore", "rm"] {
        assert!(checkpoint.split(' ').any(|w| w == sub), "{checkpoint}");
    }
    let memo = bash_completes(&["pickleshelf", "memo", ""]).unwrap_or_default();
    assert!(memo.split(' ').any(|w| w == "clear"), "{memo}");
    assert_eq!(
        bash_completes(&["pickleshelf", "get", "s.db", "k", "--format", ""]).unwrap_or_default(),
        "repr json tagged pickle"
    );
    assert_eq!(bash_completes(&["pickleshelf", "completions", "f"]).unwrap_or_default(), "fish");
}
