//! The workloads W1–W5 (WORKLOADS.md §2–6), one function each, timing exactly the
//! regions the definition times and reporting the metrics under the names
//! `python_baselines.py` uses. Data generation, key strings and verification are never
//! timed.

use std::cell::Cell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use pickleshelf::pickle::numpy;
use serde_json::{Map, Value as Json, json};

use super::codec::{self, Codec, Record, W3Result, W5State};
use super::generate::{self, Counts, SplitMix64, W1Checksum, W4Values};
use super::measure::{rss_mark, since};
use super::refpickle;
use super::stores::{Backend, Closed, Store, present};

pub type Metrics = Map<String, Json>;

pub fn run(workload: &str, backend: Backend, codec: Codec, c: &Counts, scale: f64, dir: &Path) -> Result<Metrics> {
    match workload {
        "W1" => w1(backend, codec, c, dir),
        "W2" => w2(backend, codec, c, dir),
        "W3" => w3(backend, codec, c, dir),
        "W4" => w4(backend, codec, c, dir),
        "W5" => w5(backend, codec, c, dir),
        "W6" => w6(backend, dir, scale),
        _ => bail!("unknown workload {workload}"),
    }
}

fn obj(v: Json) -> Metrics {
    match v {
        Json::Object(m) => m,
        _ => Map::new(),
    }
}

// ----- W1: state save / resume -----

fn w1(backend: Backend, codec: Codec, c: &Counts, dir: &Path) -> Result<Metrics> {
    let n = c.w1_n as usize;
    let recs = generate::w1_records(c.w1_n);
    let keys: Vec<String> = (0..c.w1_n).map(generate::w1_key).collect();
    let expected = W1Checksum::of_records(&recs);
    let logical: usize = recs.iter().map(|r| refpickle::dumps(&refpickle::w1_obj(r)).len()).sum();
    let values: Vec<_> = recs.iter().map(codec::w1_value).collect();
    drop(recs);
    let base = rss_mark();

    let t0 = Instant::now();
    let mut store = Store::open(backend, dir, Closed::default())?;
    let t_open = since(t0);
    let t0 = Instant::now();
    for i in 0..n {
        store.put_value(codec, &keys[i], &values[i])?;
    }
    let t_insert = since(t0);
    let t0 = Instant::now();
    let closed = store.close()?;
    let t_close = since(t0);
    drop(values);

    let t0 = Instant::now();
    let store = Store::open(backend, dir, closed)?;
    let t_reopen = since(t0);
    let mut out: Vec<Record> = Vec::with_capacity(n);
    let t0 = Instant::now();
    for key in &keys {
        out.push(present(store.get_typed::<Record>(codec, key)?, key)?);
    }
    let t_read = since(t0);
    store.close()?;

    let mut got = W1Checksum::default();
    for r in &out {
        got.add(r.id, r.name.len(), r.tags.iter().map(String::len).sum(), r.active, &r.scores);
    }
    let ok = got.same(&expected) && out.iter().enumerate().all(|(i, r)| r.id == i as u64);
    let nf = n as f64;
    Ok(obj(json!({
        "n": n, "logical_bytes": logical, "base_rss_mb": base, "ok": ok,
        "open_s": t_open, "insert_s": t_insert, "close_s": t_close,
        "reopen_s": t_reopen, "read_s": t_read,
        "insert_ops_s": nf / t_insert,
        "insert_close_ops_s": nf / (t_insert + t_close),
        "read_ops_s": nf / t_read,
        "reopen_read_ops_s": nf / (t_reopen + t_read),
        "checksum": [expected.ci, super::checks::float_hex(expected.cf)],
    })))
}

// ----- W2: hot reads -----

fn w2(backend: Backend, codec: Codec, c: &Counts, dir: &Path) -> Result<Metrics> {
    let (n, ops, hot) = (c.w1_n, c.w2_ops, c.w2_hot);
    let recs = generate::w1_records(n);
    let keys: Vec<String> = (0..n).map(generate::w1_key).collect();
    // hashmap mirrors Python's dict_mem: the decoded records themselves, no pickling.
    let mut mem: HashMap<String, Record> = HashMap::new();
    let mut closed = Closed::default();
    if backend == Backend::HashMap {
        for (k, r) in keys.iter().zip(&recs) {
            mem.insert(k.clone(), Record::of(r));
        }
    } else {
        let mut store = Store::open(backend, dir, Closed::default())?;
        for (k, r) in keys.iter().zip(&recs) {
            store.put_value(codec, k, &codec::w1_value(r))?;
        }
        closed = store.close()?;
    }
    drop(recs);
    let idx = generate::w2_sequence(ops, hot, n);
    let expected = idx.iter().fold(0u64, |a, &i| a.wrapping_add(i));
    let seq: Vec<&str> = idx.iter().map(|&i| keys[i as usize].as_str()).collect();
    drop(idx);
    let base = rss_mark();

    let mut acc = 0u64;
    let (t_reopen, t_get);
    if backend == Backend::HashMap {
        t_reopen = 0.0;
        let t0 = Instant::now();
        for &k in &seq {
            acc = acc.wrapping_add(present(mem.get(k), k)?.id);
        }
        t_get = since(t0);
    } else {
        let t0 = Instant::now();
        let store = Store::open(backend, dir, closed)?;
        t_reopen = since(t0);
        let t0 = Instant::now();
        if let Some(shelf) = store.shelf() {
            // The API for hot reads: served from the decoded-object cache after the first get.
            for &k in &seq {
                acc = acc.wrapping_add(present(shelf.get_arc::<Record>(k)?, k)?.id);
            }
        } else {
            for &k in &seq {
                acc = acc.wrapping_add(present(store.get_typed::<Record>(codec, k)?, k)?.id);
            }
        }
        t_get = since(t0);
        store.close()?;
    }
    let opsf = ops as f64;
    Ok(obj(json!({
        "n": n, "ops": ops, "hot": hot, "base_rss_mb": base,
        "ok": acc == expected, "reopen_s": t_reopen,
        "get_s": t_get, "get_ops_s": opsf / t_get, "us_per_get": t_get / opsf * 1e6,
        "checksum": expected,
    })))
}

// ----- W3: memoization -----

/// A memoized call's result: decoded from the store, or shared from the in-memory map.
enum MemoOut {
    Owned(W3Result),
    Shared(Rc<W3Result>),
}

impl std::ops::Deref for MemoOut {
    type Target = W3Result;
    fn deref(&self) -> &W3Result {
        match self {
            MemoOut::Owned(r) => r,
            MemoOut::Shared(r) => r,
        }
    }
}

/// pickleshelf's memo API; for `sled_raw` the hand-written memo of the Python baselines:
/// key = hash of the pickled arguments; get; on a miss compute, put, return.
enum Memo {
    Api(Store, pickleshelf::Memo),
    Store(Store),
    Map(HashMap<String, Rc<W3Result>>),
}

impl Memo {
    fn call(
        &mut self,
        codec: Codec,
        args: &generate::W3Args,
        f: &impl Fn(&generate::W3Args) -> W3Result,
    ) -> Result<MemoOut> {
        if let Memo::Api(_, memo) = self {
            let opts = codec::W3Options { mode: args.mode, limit: args.limit, exact: args.exact };
            return Ok(MemoOut::Owned(memo.get_or_compute(&(args.n, args.label.as_str(), opts), || f(args))?));
        }
        let key = codec::memo_key(&codec.w3_args_pickle(args)?);
        match self {
            Memo::Api(..) => unreachable!("handled above"),
            Memo::Store(store) => {
                if let Some(r) = store.get_typed::<W3Result>(codec, &key)? {
                    return Ok(MemoOut::Owned(r));
                }
                let r = f(args);
                store.put_typed(codec, &key, &r, |r| codec.w3_result_pickle(r))?;
                Ok(MemoOut::Owned(r))
            }
            Memo::Map(m) => {
                if let Some(r) = m.get(&key) {
                    return Ok(MemoOut::Shared(Rc::clone(r)));
                }
                let r = Rc::new(f(args));
                m.insert(key, Rc::clone(&r));
                Ok(MemoOut::Shared(r))
            }
        }
    }
}

fn w3(backend: Backend, codec: Codec, c: &Counts, dir: &Path) -> Result<Metrics> {
    let (a, b) = (c.w3_a, c.w3_b);
    let seq_b = generate::w3_phase_b(b, a);
    let n_miss_b = b / 10;
    let args: Vec<_> = (0..a + n_miss_b).map(generate::w3_args).collect();
    let logical: usize =
        args.iter().map(|x| refpickle::dumps(&refpickle::w3_out_obj(&generate::w3_compute(x))).len()).sum();
    let executed = Cell::new(0u64);
    let f = |x: &generate::W3Args| {
        executed.set(executed.get() + 1);
        W3Result::compute(x)
    };
    let base = rss_mark();
    let mut memo = match backend {
        Backend::HashMap => Memo::Map(HashMap::new()),
        Backend::Pickleshelf | Backend::PickleshelfNosync => {
            let store = Store::open(backend, dir, Closed::default())?;
            let memo = present(store.shelf(), "the store")?.memo("f")?;
            Memo::Api(store, memo)
        }
        Backend::SledRaw => Memo::Store(Store::open(backend, dir, Closed::default())?),
    };
    let mut bad = 0u64;
    let t0 = Instant::now();
    for n in 0..a {
        if memo.call(codec, &args[n as usize], &f)?.n != n {
            bad += 1;
        }
    }
    let t_a = since(t0);
    let (mut t_hit, mut t_miss) = (0.0, 0.0);
    let t0 = Instant::now();
    for (t, &n) in seq_b.iter().enumerate() {
        let t1 = Instant::now();
        let r = memo.call(codec, &args[n as usize], &f)?;
        let dt = since(t1);
        if t % 10 == 9 {
            t_miss += dt;
        } else {
            t_hit += dt;
        }
        if r.n != n || r.values.len() != generate::W3_VALUES {
            bad += 1;
        }
    }
    let t_b = since(t0);
    let t0 = Instant::now();
    match memo {
        Memo::Api(store, memo) => {
            drop(memo); // writes the last-read times
            store.close()?;
        }
        Memo::Store(store) => {
            store.close()?;
        }
        Memo::Map(_) => {}
    }
    let t_close = since(t0);
    let hits = b - n_miss_b;
    let misses = a + n_miss_b;
    let memo_kind = match backend {
        Backend::Pickleshelf | Backend::PickleshelfNosync => {
            "Shelf::memo(\"f\") get_or_compute(&(n, label, {mode, limit, exact}), f)"
        }
        Backend::SledRaw => "hand-written: key = memo:f: + blake3-128(pickled args); get, on a miss compute + put",
        Backend::HashMap => "hand-written over a HashMap of shared decoded results",
    };
    Ok(obj(json!({
        "a": a, "b": b, "hits": hits, "misses": misses,
        "logical_bytes": logical, "base_rss_mb": base,
        "ok": bad == 0 && executed.get() == misses,
        "f_calls": executed.get(),
        "phase_a_s": t_a, "phase_b_s": t_b, "total_s": t_a + t_b,
        "close_s": t_close,
        "miss_ops_s": a as f64 / t_a, "hit_ops_s": hits as f64 / t_hit,
        "us_per_hit": t_hit / hits as f64 * 1e6,
        "us_per_miss": (t_a + t_miss) / misses as f64 * 1e6,
        "memo": memo_kind,
    })))
}

// ----- W4: large values -----

fn w4(backend: Backend, codec: Codec, c: &Counts, dir: &Path) -> Result<Metrics> {
    let count = c.w4_n;
    let keys: Vec<String> = (0..count).map(|k| format!("large:{k}")).collect();
    let base = rss_mark();
    let t0 = Instant::now();
    let mut store = Store::open(backend, dir, Closed::default())?;
    let mut t_write = since(t0);
    let mut fps = Vec::new();
    let mut logical = 0usize;
    let mut source = W4Values::new();
    for key in &keys {
        let v = source.next_value();
        fps.push(v.fingerprint());
        logical += refpickle::dumps(&refpickle::w4_obj(&v)).len();
        let v = codec::w4_value(v);
        let t0 = Instant::now();
        store.put_value(codec, key, &v)?;
        t_write += since(t0);
    }
    let t0 = Instant::now();
    let closed = store.close()?;
    let t_close = since(t0);
    t_write += t_close;

    let t0 = Instant::now();
    let store = Store::open(backend, dir, closed)?;
    let mut t_read = since(t0);
    let mut ok = true;
    for (key, fp) in keys.iter().zip(&fps) {
        let t0 = Instant::now();
        let v = present(store.get_value(key)?, key)?;
        t_read += since(t0);
        ok = ok && codec::w4_fingerprint(&v).as_ref() == Some(fp);
    }
    store.close()?;
    let payload = count * generate::W4_PAYLOAD;
    let mb = payload as f64 / 1e6;
    Ok(obj(json!({
        "values": count, "payload_bytes": payload, "logical_bytes": logical,
        "base_rss_mb": base, "ok": ok, "write_s": t_write,
        "close_s": t_close, "read_s": t_read,
        "write_mb_s": mb / t_write, "read_mb_s": mb / t_read,
    })))
}

// ----- W5: snapshots of program state -----

fn w5(backend: Backend, codec: Codec, c: &Counts, dir: &Path) -> Result<Metrics> {
    let (entries, snaps, changes) = (c.w5_entries, c.w5_snapshots, c.w5_changes);
    let mut rng = SplitMix64::new(generate::SEED_W5);
    let mut plain = generate::w5_initial(entries, &mut rng);
    let mut state = W5State::new(&plain);
    let item_keys: Vec<String> = (0..plain.len()).map(generate::w5_key).collect();
    let labels: Vec<String> = (0..plain.len()).map(generate::w5_label).collect();
    let keys: Vec<String> = (0..snaps).map(|n| format!("snapshot:{n}")).collect();
    let base = rss_mark();
    let t0 = Instant::now();
    let mut store = Store::open(backend, dir, Closed::default())?;
    let mut t_write = since(t0);
    let mut logical = 0usize;
    for (n, key) in keys.iter().enumerate() {
        if n > 0 {
            generate::w5_mutate(entries, changes, &mut rng, |j, v| {
                plain[j].rev += 1;
                plain[j].value = v;
                state.change(j, v);
            });
        }
        logical += refpickle::dumps(&refpickle::w5_obj(&plain, &item_keys, &labels)).len();
        let t0 = Instant::now();
        store.put_value(codec, key, &state.value)?;
        t_write += since(t0);
    }
    let t0 = Instant::now();
    let closed = store.close()?;
    let t_close = since(t0);
    t_write += t_close;

    let t0 = Instant::now();
    let store = Store::open(backend, dir, closed)?;
    let mut t_read = since(t0);
    let mut ok = true;
    let mut last = None;
    for (n, key) in keys.iter().enumerate() {
        let t0 = Instant::now();
        let snap = present(store.get_value(key)?, key)?;
        t_read += since(t0);
        ok = ok && codec::w5_summary(&snap) == Some((entries as usize, n as u64 * changes));
        last = Some(snap);
    }
    ok = ok && last.is_some_and(|s| s == state.value);
    store.close()?;
    Ok(obj(json!({
        "entries": entries, "snapshots": snaps, "changes": changes,
        "logical_bytes": logical, "base_rss_mb": base, "ok": ok,
        "write_s": t_write, "close_s": t_close, "read_all_s": t_read,
        "write_mb_s": logical as f64 / 1e6 / t_write,
        "snapshots_per_s": snaps as f64 / t_write,
    })))
}

// ----- W6: numpy arrays -----

/// W6's fingerprint of an array: shape, dtype and the sum of the elements at flat
/// positions 0, size/2 and size-1 of its memory order (numpy's `ravel(order='K')`).
fn w6_fingerprint(h: &numpy::ArrayHeader, data: &[u8]) -> (Vec<usize>, numpy::Dtype, f64) {
    let n = h.len().unwrap_or(0);
    let size = h.dtype.item_size();
    let at = |i: usize| -> f64 {
        let b = &data[i * size..(i + 1) * size];
        match h.dtype {
            numpy::Dtype::Float64 => f64::from_le_bytes(b.try_into().unwrap_or_default()),
            numpy::Dtype::Float32 => f64::from(f32::from_le_bytes(b.try_into().unwrap_or_default())),
            numpy::Dtype::Int32 => f64::from(i32::from_le_bytes(b.try_into().unwrap_or_default())),
            _ => f64::NAN,
        }
    };
    let sum = if n == 0 { 0.0 } else { at(0) + at(n / 2) + at(n - 1) };
    (h.shape.clone(), h.dtype, sum)
}

/// The header of a W6 array.
pub fn w6_header(spec: &generate::W6Spec) -> numpy::ArrayHeader {
    let dtype = match spec.kind {
        generate::W6Kind::F8 => numpy::Dtype::Float64,
        generate::W6Kind::I4 => numpy::Dtype::Int32,
        generate::W6Kind::F4 => numpy::Dtype::Float32,
    };
    let order = if spec.fortran { numpy::Order::Fortran } else { numpy::Order::C };
    numpy::ArrayHeader::new(dtype, spec.shape.clone(), order)
}

fn w6(backend: Backend, dir: &Path, scale: f64) -> Result<Metrics> {
    if !backend.is_shelf() {
        bail!("W6 runs on pickleshelf only");
    }
    let specs = generate::w6_specs(scale);
    let base = rss_mark();
    let t0 = Instant::now();
    let store = Store::open(backend, dir, Closed::default())?;
    let mut t_write = since(t0);
    let shelf = store.shelf().context("a shelf")?;
    let (mut payload, mut logical, mut fps) = (0usize, 0usize, Vec::new());
    for spec in &specs {
        // generation (and the logical size, the length of the pickle numpy writes) untimed
        let header = w6_header(spec);
        let data = spec.data();
        fps.push(w6_fingerprint(&header, &data));
        payload += data.len();
        logical += numpy::write(&header, &data)?.len();
        let t0 = Instant::now();
        shelf.insert_array_bytes(&spec.key, &header, &data).context("insert_array_bytes")?;
        t_write += since(t0);
    }
    let t0 = Instant::now();
    store.close()?;
    t_write += since(t0);

    let t0 = Instant::now();
    let store = Store::open(backend, dir, Closed::default())?;
    let mut t_read = since(t0);
    let shelf = store.shelf().context("a shelf")?;
    let mut ok = true;
    for (spec, fp) in specs.iter().zip(&fps) {
        let t0 = Instant::now();
        let a = present(shelf.get_array_bytes(&spec.key)?, &spec.key)?;
        t_read += since(t0);
        ok = ok && w6_fingerprint(a.header(), a.data()) == *fp;
    }
    store.close()?;

    // probe: open, map a:0, sum 1,000 elements at drawn positions
    let n0 = specs[0].len();
    let positions = generate::w6_probe_positions(n0);
    let t0 = Instant::now();
    let store = Store::open(backend, dir, Closed::default())?;
    let shelf = store.shelf().context("a shelf")?;
    let a = present(shelf.map_array("a:0")?, "a:0")?;
    let values = a.as_slice::<f64>()?;
    let probe_sum: f64 = positions.iter().map(|&i| values[i]).sum();
    let t_probe = since(t0);
    let probe_mmap = a.is_mapped();
    drop(a);
    store.close()?;
    let mb = payload as f64 / 1e6;
    Ok(obj(json!({
        "arrays": specs.len(), "payload_bytes": payload, "logical_bytes": logical,
        "base_rss_mb": base, "ok": ok, "write_s": t_write, "read_s": t_read,
        "write_mb_s": mb / t_write, "read_mb_s": mb / t_read,
        "probe_s": t_probe, "probe_sum": probe_sum, "probe_mmap": probe_mmap,
    })))
}
