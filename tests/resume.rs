//! README's main job, `examples/resume.rs`: killed at any moment and run again, it resumes
//! from its last checkpoint and prints the same result as an uninterrupted run.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The example binary, built by `cargo test` next to the test binaries.
fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
    dir.join("examples").join("resume")
}

fn run_to_end(db: &Path, steps: u32) -> (Vec<String>, String) {
    let out = Command::new(example())
        .args(["--db", &db.display().to_string(), "--steps", &steps.to_string(), "--every", "10"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", example().display()));
    assert!(out.status.success(), "resume failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let result = lines.last().cloned().unwrap_or_default();
    assert!(result.starts_with("result "), "{text}");
    (lines, result)
}

#[test]
fn killed_runs_resume_to_the_same_result() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let steps = 120;
    let (lines, expected) = run_to_end(&dir.path().join("clean.db"), steps);
    assert_eq!(lines.iter().filter(|l| l.starts_with("checkpoint ")).count(), 12);

    // Kill a run after each of a few checkpoints, then let it finish.
    let db = dir.path().join("killed.db");
    let mut last_seen = 0;
    for kill_after in [2, 5, 9] {
        let mut child = Command::new(example())
            .args(["--db", &db.display().to_string(), "--steps", &steps.to_string(), "--every", "10"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let mut seen = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap_or_default();
            if let Some(step) = line.strip_prefix("checkpoint ") {
                let step: u32 = step.parse().unwrap_or(0);
                assert!(step > last_seen, "checkpoint {step} after {last_seen}: did not resume");
                last_seen = step;
                seen += 1;
                if seen == kill_after {
                    // A few milliseconds into the next step's work.
                    std::thread::sleep(Duration::from_millis(3));
                    let _ = child.kill();
                    break;
                }
            }
        }
        let _ = child.wait();
    }
    let (_, result) = run_to_end(&db, steps);
    assert_eq!(result, expected);
    // A finished run prints its result again at once.
    let (lines, again) = run_to_end(&db, steps);
    assert_eq!(again, expected);
    assert_eq!(lines.len(), 1);
}
