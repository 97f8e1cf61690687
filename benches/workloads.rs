//! The side-by-side benchmark: workloads W1–W6 of `../shared/bench/WORKLOADS.md` on the
//! Rust backends (`pickleshelf`, `pickleshelf_nosync`, `sled_raw`, `hashmap`), reported under the metric names
//! of `../shared/bench/python_baselines.py` so the two can be compared (see
//! `scripts/bench-compare.sh` and `BENCHMARKS.md`).
//!
//! ```text
//! cargo bench --bench workloads -- --workload W1|W2|W3|W4|W5|W6|all --scale S --json FILE
//!                                  [--backends a,b] [--repeat N] [--tmpdir DIR] [--keep] [--check]
//!                                  [--durability power-loss|process-crash]
//! ```
//!
//! Each (workload, backend) run is its own process (this binary re-executed with
//! `--child`), in a fresh temporary directory that is deleted afterwards. `--check`
//! verifies the generators against WORKLOADS.md's reference values and the crate's codec
//! against CPython's bytes, then exits.

#[path = "workloads/cases.rs"]
mod cases;
#[path = "workloads/checks.rs"]
mod checks;
#[path = "workloads/codec.rs"]
mod codec;
#[path = "workloads/generate.rs"]
mod generate;
#[path = "workloads/measure.rs"]
mod measure;
#[path = "workloads/refpickle.rs"]
mod refpickle;
#[path = "workloads/report.rs"]
mod report;
#[path = "workloads/stores.rs"]
mod stores;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value as Json, json};

use codec::Codec;
use generate::Counts;
use stores::Backend;

const WORKLOADS: [&str; 6] = ["W1", "W2", "W3", "W4", "W5", "W6"];

struct Args {
    workloads: Vec<String>,
    scale: f64,
    json: Option<PathBuf>,
    backends: Option<Vec<Backend>>,
    repeat: usize,
    tmpdir: Option<PathBuf>,
    timeout: u64,
    check: bool,
    keep: bool,
    process_crash: bool,
    child: Option<(String, Backend)>,
}

const USAGE: &str = "usage: cargo bench --bench workloads -- [--workload W1|..|W6|all|list] [--scale S] \
[--json FILE] [--backends pickleshelf,pickleshelf_nosync,sled_raw,hashmap] [--repeat N] [--tmpdir DIR] [--timeout SECS] [--keep] [--durability power-loss|process-crash] [--check]
  --keep: keep each case's store directory (under --tmpdir) for inspection
  --durability: pickleshelf's Durability (default power-loss, the store's default: close fsyncs)";

fn parse_args() -> Result<Args> {
    let mut a = Args {
        workloads: WORKLOADS.iter().map(|s| s.to_string()).collect(),
        scale: 1.0,
        json: None,
        backends: None,
        repeat: 1,
        tmpdir: None,
        timeout: 900,
        check: false,
        keep: false,
        process_crash: false,
        child: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().ok_or_else(|| anyhow!("{arg} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--workload" => {
                let v = val()?;
                if !v.eq_ignore_ascii_case("all") {
                    a.workloads = v.split(',').map(|w| w.trim().to_ascii_uppercase()).collect();
                }
                if let Some(w) = a.workloads.iter().find(|w| !WORKLOADS.contains(&w.as_str())) {
                    bail!("unknown workload {w}\n{USAGE}");
                }
            }
            "--scale" => a.scale = val()?.parse().context("--scale")?,
            "--json" => a.json = Some(val()?.into()),
            "--backends" => {
                let v = val()?;
                let list = v
                    .split(',')
                    .map(|b| Backend::parse(b.trim()).ok_or_else(|| anyhow!("unknown backend {b}\n{USAGE}")))
                    .collect::<Result<Vec<_>>>()?;
                a.backends = Some(list);
            }
            "--repeat" => a.repeat = val()?.parse::<usize>().context("--repeat")?.max(1),
            "--tmpdir" => a.tmpdir = Some(val()?.into()),
            "--timeout" => a.timeout = val()?.parse().context("--timeout")?,
            "--check" => a.check = true,
            "--keep" => a.keep = true,
            "--durability" => match val()?.as_str() {
                "power-loss" => a.process_crash = false,
                "process-crash" => a.process_crash = true,
                other => bail!("--durability is power-loss (the default) or process-crash, not {other}"),
            },
            "--child" => {
                let w = val()?;
                let b = val()?;
                a.child = Some((w, Backend::parse(&b).ok_or_else(|| anyhow!("unknown backend {b}"))?));
            }
            "--bench" => {} // added by `cargo bench`
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    if a.scale.is_nan() || a.scale <= 0.0 {
        bail!("--scale must be positive");
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("workloads: {e:#}");
            return ExitCode::from(2);
        }
    };
    let outcome = if let Some((w, b)) = &args.child {
        child(w, *b, &args)
    } else if args.check {
        check()
    } else {
        parent(&args)
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("workloads: {e:#}");
            ExitCode::from(2)
        }
    }
}

// ----- checks -----

fn check() -> Result<ExitCode> {
    let mut failed = 0;
    let mut show = |c: &checks::Check| match &c.outcome {
        Ok(()) => println!("ok      {}", c.name),
        Err(e) => {
            failed += 1;
            println!("FAILED  {}: {e}", c.name);
        }
    };
    println!("# WORKLOADS.md reference values (generators, reference pickle writer)");
    checks::reference_checks().iter().for_each(&mut show);
    let codec = Codec::detect();
    println!("# the crate's codec on the workloads' values (bytes must be CPython's)");
    if codec == Codec::Library {
        codec::library_checks().iter().for_each(&mut show);
    } else {
        println!("UNAVAILABLE  the crate's encoder or serde support is a stub: the Rust backends run with the");
        println!(
            "             reference writer instead (results say codec=reference); pickleshelf figures are provisional"
        );
    }
    println!("{failed} failed");
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

// ----- child: one case -----

fn child(workload: &str, backend: Backend, args: &Args) -> Result<ExitCode> {
    let root = args.tmpdir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix(&format!("{workload}-{}-", backend.name()))
        .tempdir_in(&root)
        .with_context(|| format!("temp dir in {}", root.display()))?;
    let counts = Counts::for_scale(args.scale);
    let codec = Codec::detect();
    stores::PROCESS_CRASH.store(args.process_crash, std::sync::atomic::Ordering::Relaxed);
    let mut res = match cases::run(workload, backend, codec, &counts, args.scale, dir.path()) {
        Ok(m) => m,
        Err(e) => {
            let mut m = Map::new();
            m.insert("ok".into(), false.into());
            m.insert("error".into(), format!("{e:#}").into());
            m
        }
    };
    let (alloc, apparent) = measure::disk_usage(dir.path());
    let (peak_ops, peak) = measure::rss_peaks();
    res.insert("workload".into(), workload.into());
    res.insert("backend".into(), backend.name().into());
    res.insert("scale".into(), json!(args.scale));
    res.insert("codec".into(), codec.name().into());
    if backend.is_shelf() {
        let nosync = args.process_crash || backend == Backend::PickleshelfNosync;
        let d = if nosync { "process-crash" } else { "power-loss" };
        res.insert("durability".into(), d.into());
    }
    res.insert("lock_retries".into(), stores::LOCK_RETRIES.load(std::sync::atomic::Ordering::Relaxed).into());
    res.insert("disk_bytes".into(), alloc.into());
    res.insert("disk_apparent_bytes".into(), apparent.into());
    res.insert("disk_mb".into(), json!(alloc as f64 / 1e6));
    res.insert("peak_ops_rss_mb".into(), json!(peak_ops));
    res.insert("peak_rss_mb".into(), json!(peak));
    if let Some(logical) = res.get("logical_bytes").and_then(Json::as_f64)
        && logical > 0.0
    {
        res.insert("disk_over_logical".into(), json!(alloc as f64 / logical));
    }
    if args.keep {
        let kept = dir.keep();
        eprintln!("kept the store directory {}", kept.display());
        res.insert("kept_dir".into(), kept.display().to_string().into());
    } else {
        dir.close().context("removing the case's temp dir")?;
    }
    println!("RESULT_JSON:{}", Json::Object(res));
    Ok(ExitCode::SUCCESS)
}

// ----- parent: orchestration and report -----

fn run_child(workload: &str, backend: Backend, args: &Args, tmp_root: &Path) -> Map<String, Json> {
    let started = Instant::now();
    let fail = |msg: String| {
        let mut m = Map::new();
        m.insert("workload".into(), workload.into());
        m.insert("backend".into(), backend.name().into());
        m.insert("ok".into(), false.into());
        m.insert("error".into(), msg.into());
        m
    };
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return fail(format!("cannot find this executable: {e}")),
    };
    let spawned = Command::new(exe)
        .args(["--child", workload, backend.name(), "--scale", &args.scale.to_string(), "--tmpdir"])
        .arg(tmp_root)
        .args(if args.keep { &["--keep"][..] } else { &[] })
        .args(if args.process_crash { &["--durability", "process-crash"][..] } else { &[] })
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut proc = match spawned {
        Ok(p) => p,
        Err(e) => return fail(format!("cannot start the case: {e}")),
    };
    let pipe = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let out = pipe(proc.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = pipe(proc.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Duration::from_secs(args.timeout);
    loop {
        match proc.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() > deadline => {
                let _ = proc.kill();
                let _ = proc.wait();
                return fail(format!("timed out after {}s", args.timeout));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return fail(format!("waiting for the case: {e}")),
        }
    }
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    for line in stdout.lines() {
        if let Some(j) = line.strip_prefix("RESULT_JSON:")
            && let Ok(Json::Object(mut m)) = serde_json::from_str(j)
        {
            m.insert("wall_s".into(), json!(started.elapsed().as_secs_f64()));
            return m;
        }
    }
    let tail: Vec<&str> = stderr.lines().chain(stdout.lines()).rev().take(3).collect();
    fail(format!("child failed: {}", tail.into_iter().rev().collect::<Vec<_>>().join(" | ")))
}

fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem / 60 % 60, rem % 60)
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_owned()).unwrap_or_else(|_| "?".into())
}

fn parent(args: &Args) -> Result<ExitCode> {
    let root = args.tmpdir.clone().unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new().prefix("rsbench-").tempdir_in(&root).context("temp root")?;
    // With --keep the stores stay for inspection; otherwise the root goes with `tmp`.
    let (tmp, tmp_path) = if args.keep {
        (None, tmp.keep())
    } else {
        let p = tmp.path().to_path_buf();
        (Some(tmp), p)
    };
    let started = utc_now();
    let load_start = read_trimmed("/proc/loadavg");
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let host = read_trimmed("/proc/sys/kernel/hostname");
    let kernel = read_trimmed("/proc/sys/kernel/osrelease");
    let codec = Codec::detect();
    let counts = Counts::for_scale(args.scale);
    println!("# Rust workloads (pickleshelf {})  {started}", env!("CARGO_PKG_VERSION"));
    println!(
        "host: {host}  cpus: {cpus}  kernel: {kernel}  scale: {}  repeat: {}  temp: {}",
        args.scale,
        args.repeat,
        tmp_path.display()
    );
    println!("codec: {}  load average: {load_start}", codec.name());
    let mut all = Vec::new();
    let mut all_ok = true;
    for w in &args.workloads {
        let mut rows = Vec::new();
        for b in Backend::ALL {
            let chosen = match &args.backends {
                Some(only) => only.contains(&b),
                None => b.runs_by_default(w),
            };
            if !chosen {
                continue;
            }
            let mut runs = Vec::new();
            for _ in 0..args.repeat {
                let r = run_child(w, b, args, &tmp_path);
                let wall = r.get("wall_s").and_then(Json::as_f64).unwrap_or(0.0);
                match r.get("error").and_then(Json::as_str) {
                    Some(e) => eprintln!("  [{w} {}] done in {wall:.1}s ERROR {e}", b.name()),
                    None => eprintln!("  [{w} {}] done in {wall:.1}s", b.name()),
                }
                runs.push(r);
            }
            let mut res = report::summarize(runs);
            let mut notes = Vec::new();
            if b == Backend::Pickleshelf && args.process_crash {
                notes.push("durability=process-crash (no fsync)".to_owned());
            }
            if codec != Codec::Library {
                notes.push("codec=reference (crate codec unavailable)".to_owned());
            }
            if b == Backend::PickleshelfNosync {
                notes.push("durability=process-crash (no fsync)".to_owned());
            }
            if w == "W6" {
                notes.push("insert_array_bytes; reads get_array_bytes; probe map_array".to_owned());
            }
            if w == "W3" && b.is_shelf() {
                notes.push("Shelf::memo API".to_owned());
            } else if w == "W3" {
                notes.push("hand-written memo".to_owned());
            }
            if w == "W2" && b.is_shelf() {
                notes.push("get_arc (decoded-object cache)".to_owned());
            }
            if b == Backend::HashMap && (w == "W2" || w == "W3") {
                notes.push("decoded values in memory, like dict_mem".to_owned());
            } else if b == Backend::HashMap {
                notes.push("pickles in memory: codec cost only".to_owned());
            }
            if w != "W4" && w != "W5" && w != "W6" {
                notes.push("typed serde reads".to_owned());
            }
            res.insert("note".into(), notes.join("; ").into());
            all_ok &= res.get("ok").and_then(Json::as_bool).unwrap_or(false);
            rows.push(res);
        }
        report::print_table(w, &rows, &counts);
        all.extend(rows.into_iter().map(Json::Object));
    }
    println!(
        "\nThroughputs are medians over --repeat runs; disk = allocated bytes (du) of the store dir after \
         close; RSS base = RSS after data generation, before the store is opened; RSS ops peak = VmHWM \
         since then; RSS peak = the process's peak including data generation."
    );
    drop(tmp);
    if let Some(path) = &args.json {
        let meta = json!({
            "started_utc": started, "scale": args.scale, "repeat": args.repeat,
            "pickleshelf_durability": if args.process_crash { "process-crash" } else { "power-loss" },
            "host": host, "cpus": cpus, "kernel": kernel, "codec": codec.name(),
            "loadavg_start": load_start, "loadavg_end": read_trimmed("/proc/loadavg"),
            "pickleshelf": env!("CARGO_PKG_VERSION"),
            "counts": {
                "w1_n": counts.w1_n, "w2_ops": counts.w2_ops, "w2_hot": counts.w2_hot,
                "w3_a": counts.w3_a, "w3_b": counts.w3_b, "w4_n": counts.w4_n,
                "w5_entries": counts.w5_entries, "w5_snapshots": counts.w5_snapshots,
                "w5_changes": counts.w5_changes,
            },
            "backend_notes": {
                "pickleshelf_nosync": "pickleshelf with Durability::ProcessCrash (no fsync)",
                "pickleshelf": "Shelf::open(dir) defaults (zstd 3, durability PowerLoss: close = sync with fsyncs); \
                                puts: insert_value(graph); reads: get::<T>() (W1), get_arc::<T>() (W2, cached), get_value() (W4, W5); \
                                W3: Shelf::memo(\"f\").get_or_compute",
                "sled_raw": "the same pickle bytes in one sled tree (sled defaults); close = flush() + drop; \
                             same encode/decode as pickleshelf",
                "hashmap": "in-memory HashMap: decoded values in W2/W3 (like dict_mem), pickles elsewhere \
                            (codec cost only); not persistent",
            },
        });
        let doc = json!({"meta": meta, "results": all});
        let text = serde_json::to_string_pretty(&doc)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
