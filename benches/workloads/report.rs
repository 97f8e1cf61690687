//! Medians over repeated runs and the human tables (the layout of `python_baselines.py`).

use serde_json::{Map, Value as Json};

use super::generate::Counts;

/// One case's runs summarized: the first ok run with every numeric field replaced by its
/// median over the ok runs; `ok` only when all runs were; `runs` and `all_runs` added.
pub fn summarize(runs: Vec<Map<String, Json>>) -> Map<String, Json> {
    let ok_runs: Vec<&Map<String, Json>> = runs.iter().filter(|r| !r.contains_key("error")).collect();
    let mut out = match ok_runs.first() {
        Some(first) => (*first).clone(),
        None => return runs.last().cloned().unwrap_or_default(),
    };
    for (k, v) in out.iter_mut() {
        if v.is_number() {
            let mut vals: Vec<f64> = ok_runs.iter().filter_map(|r| r.get(k)?.as_f64()).collect();
            if let Some(m) = median(&mut vals) {
                *v = serde_json::Number::from_f64(m).map_or(Json::Null, Json::Number);
            }
        }
    }
    let all_ok = runs.iter().all(|r| r.get("ok").and_then(Json::as_bool).unwrap_or(false));
    out.insert("ok".into(), Json::Bool(all_ok));
    out.insert("runs".into(), ok_runs.len().into());
    out.insert("all_runs".into(), Json::Array(runs.into_iter().map(Json::Object).collect()));
    out
}

/// The median (mean of the two middle values for an even count), like Python's.
pub fn median(vals: &mut [f64]) -> Option<f64> {
    vals.sort_by(f64::total_cmp);
    let n = vals.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(vals[n / 2]),
        _ => Some((vals[n / 2 - 1] + vals[n / 2]) / 2.0),
    }
}

/// `{:,.Nf}`: fixed decimals with thousands separators.
pub fn thousands(x: f64, decimals: usize) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let s = format!("{:.*}", decimals, x.abs());
    let (int, frac) = s.split_once('.').map_or((s.as_str(), None), |(a, b)| (a, Some(b)));
    let mut grouped = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    let sign = if x < 0.0 && s.chars().any(|c| c.is_ascii_digit() && c != '0') { "-" } else { "" };
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// (header, field, decimals, thousands separators, multiplier)
type Col = (&'static str, &'static str, usize, bool, f64);

fn columns(workload: &str) -> Vec<Col> {
    let mut cols: Vec<Col> = match workload {
        "W1" => vec![
            ("insert ops/s", "insert_ops_s", 0, true, 1.0),
            ("close s", "close_s", 3, false, 1.0),
            ("insert+close ops/s", "insert_close_ops_s", 0, true, 1.0),
            ("reopen s", "reopen_s", 4, false, 1.0),
            ("read ops/s", "read_ops_s", 0, true, 1.0),
            ("reopen+read ops/s", "reopen_read_ops_s", 0, true, 1.0),
            ("disk/logical", "disk_over_logical", 3, false, 1.0),
        ],
        "W2" => vec![("get ops/s", "get_ops_s", 0, true, 1.0), ("us/get", "us_per_get", 2, false, 1.0)],
        "W3" => vec![
            ("total s", "total_s", 2, false, 1.0),
            ("phase A s", "phase_a_s", 2, false, 1.0),
            ("phase B s", "phase_b_s", 2, false, 1.0),
            ("miss ops/s", "miss_ops_s", 0, true, 1.0),
            ("hit ops/s", "hit_ops_s", 0, true, 1.0),
            ("us/hit", "us_per_hit", 1, false, 1.0),
            ("f calls", "f_calls", 0, false, 1.0),
            ("disk/logical", "disk_over_logical", 3, false, 1.0),
        ],
        "W6" => vec![
            ("write MB/s", "write_mb_s", 1, true, 1.0),
            ("read MB/s", "read_mb_s", 1, true, 1.0),
            ("probe s", "probe_s", 4, false, 1.0),
            ("mmap", "probe_mmap", 0, false, 1.0),
            ("disk/logical", "disk_over_logical", 3, false, 1.0),
        ],
        "W4" => vec![
            ("write MB/s", "write_mb_s", 1, true, 1.0),
            ("read MB/s", "read_mb_s", 1, true, 1.0),
            ("write s", "write_s", 2, false, 1.0),
            ("read s", "read_s", 2, false, 1.0),
            ("disk/logical", "disk_over_logical", 3, false, 1.0),
        ],
        _ => vec![
            ("write s", "write_s", 3, false, 1.0),
            ("snapshots/s", "snapshots_per_s", 1, true, 1.0),
            ("read-all s", "read_all_s", 3, false, 1.0),
            ("logical MB", "logical_bytes", 1, false, 1e-6),
            ("disk/logical", "disk_over_logical", 3, false, 1.0),
        ],
    };
    cols.extend([
        ("disk MB", "disk_mb", 2, false, 1.0),
        ("RSS base MB", "base_rss_mb", 0, false, 1.0),
        ("RSS ops peak MB", "peak_ops_rss_mb", 0, false, 1.0),
        ("RSS peak MB", "peak_rss_mb", 0, false, 1.0),
        ("ok", "ok", 0, false, 1.0),
    ]);
    cols
}

/// Metrics whose spread over repeats is printed under a table.
fn headline(workload: &str) -> &'static [&'static str] {
    match workload {
        "W1" => &["insert_close_ops_s", "reopen_read_ops_s"],
        "W2" => &["get_ops_s"],
        "W3" => &["total_s", "hit_ops_s"],
        "W4" => &["write_mb_s", "read_mb_s"],
        "W6" => &["write_mb_s", "read_mb_s", "probe_s"],
        _ => &["write_s", "read_all_s"],
    }
}

pub fn title(workload: &str) -> &'static str {
    match workload {
        "W1" => "W1 state-save/resume",
        "W2" => "W2 hot reads (zipf over hot keys of W1's store)",
        "W3" => "W3 memoization (phase A all misses, phase B 90% hits)",
        "W4" => "W4 large values (~2 MB each; MB = 10^6 payload bytes)",
        "W6" => "W6 numpy arrays (MB = 10^6 array data bytes; probe = open a:0 + 1,000 random reads)",
        _ => "W5 snapshots (dict of entries saved repeatedly, 1% changed each time)",
    }
}

pub fn counts_line(workload: &str, c: &Counts) -> String {
    let t = |x: u64| thousands(x as f64, 0);
    match workload {
        "W1" => format!("keys={}", t(c.w1_n)),
        "W2" => format!("store={} keys, gets={} over hot={} keys (zipf s=1)", t(c.w1_n), t(c.w2_ops), t(c.w2_hot)),
        "W3" => format!(
            "phase A={} distinct calls (misses), phase B={} calls ({} hits, {} misses)",
            t(c.w3_a),
            t(c.w3_b),
            t(c.w3_b - c.w3_b / 10),
            t(c.w3_b / 10)
        ),
        "W4" => format!(
            "values={} (even k: list of 250,000 floats; odd k: 2,000,000-byte blob), payload {} MB",
            c.w4_n,
            c.w4_n * 2
        ),
        "W6" => format!(
            "{big} float64 4096x2048, {big} int32 4194304, {} float32 64x64 (C and F order)",
            c.w6_small,
            big = c.w6_big
        ),
        _ => format!("entries={}, snapshots={}, changes/snapshot={}", t(c.w5_entries), c.w5_snapshots, c.w5_changes),
    }
}

fn cell(res: &Map<String, Json>, col: &Col) -> String {
    let (_, key, decimals, sep, mult) = *col;
    match res.get(key) {
        None | Some(Json::Null) => "-".into(),
        Some(Json::Bool(b)) => (if *b { "yes" } else { "NO" }).into(),
        Some(v) => match v.as_f64() {
            Some(x) if sep => thousands(x * mult, decimals),
            Some(x) => format!("{:.*}", decimals, x * mult),
            None => v.to_string(),
        },
    }
}

pub fn print_table(workload: &str, rows: &[Map<String, Json>], c: &Counts) {
    let cols = columns(workload);
    println!("\n### {}\n", title(workload));
    println!("{}\n", counts_line(workload, c));
    let head: Vec<&str> = std::iter::once("backend").chain(cols.iter().map(|c| c.0)).chain(["notes"]).collect();
    println!("| {} |", head.join(" | "));
    println!("|---|{}---|", "---:|".repeat(cols.len()));
    for res in rows {
        let backend = res.get("backend").and_then(Json::as_str).unwrap_or("?");
        let cells: Vec<String> = if let Some(err) = res.get("error").and_then(Json::as_str) {
            std::iter::once(backend.to_owned())
                .chain(cols.iter().map(|_| "-".to_owned()))
                .chain([err.to_owned()])
                .collect()
        } else {
            let note = res.get("note").and_then(Json::as_str).unwrap_or("");
            std::iter::once(backend.to_owned())
                .chain(cols.iter().map(|c| cell(res, c)))
                .chain([note.to_owned()])
                .collect()
        };
        println!("| {} |", cells.join(" | "));
    }
    let mut spread = Vec::new();
    for res in rows {
        let Some(Json::Array(runs)) = res.get("all_runs") else { continue };
        let ok: Vec<&Map<String, Json>> =
            runs.iter().filter_map(Json::as_object).filter(|r| !r.contains_key("error")).collect();
        if ok.len() < 2 {
            continue;
        }
        let parts: Vec<String> = headline(workload)
            .iter()
            .map(|k| {
                let vals: Vec<f64> = ok.iter().filter_map(|r| r.get(*k)?.as_f64()).collect();
                let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                format!("{k} {}..{}", g4(lo), g4(hi))
            })
            .collect();
        let backend = res.get("backend").and_then(Json::as_str).unwrap_or("?");
        spread.push(format!("{backend}: {}", parts.join(", ")));
    }
    if !spread.is_empty() {
        println!("\nSpread (min..max over runs): {}", spread.join("; "));
    }
}

/// Four significant digits.
pub fn g4(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let digits = (3 - x.abs().log10().floor() as i64).max(0) as usize;
    if x.abs() >= 10_000.0 { thousands(x, 0) } else { format!("{:.*}", digits, x) }
}
