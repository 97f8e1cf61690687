//! numpy-made pickles (scripts/gen_numpy_pickles.py: every supported dtype, both byte
//! orders, 0-d to 4-d, C and Fortran order, protocols 2–5) read as the arrays numpy
//! wrote; protocol-5 pickles written here equal numpy's byte for byte, and numpy loads
//! them as equal arrays. Skipped when python3 has no numpy, except under CI (env `CI`),
//! where that fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use pickleshelf_pickle::numpy::{self, ArrayHeader, ByteOrder, Dtype, NdArray, Order};
use serde_json::Value as Json;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/gen_numpy_pickles.py")
}

fn python() -> String {
    std::env::var("PICKLESHELF_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs the generator into `dir`; false (a skip) when numpy is missing outside CI.
fn generate(dir: &Path) -> bool {
    let out = Command::new(python()).arg(script()).arg(dir).output();
    match out {
        Ok(o) if o.status.success() => true,
        Ok(o) if o.status.code() == Some(3) && std::env::var_os("CI").is_none() => {
            eprintln!("skipped: {}", String::from_utf8_lossy(&o.stderr).trim());
            false
        }
        Ok(o) => panic!("{} failed: {}", script().display(), String::from_utf8_lossy(&o.stderr)),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipped: cannot run {}: {e}", python());
            false
        }
        Err(e) => panic!("cannot run {}: {e}", python()),
    }
}

fn manifest(dir: &Path) -> serde_json::Map<String, Json> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let m: Json = serde_json::from_str(&text).unwrap();
    m["arrays"].as_object().unwrap().clone()
}

fn expected_header(spec: &Json) -> ArrayHeader {
    let dtype = Dtype::from_code(spec["dtype"].as_str().unwrap()).unwrap();
    let shape: Vec<usize> = spec["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let order = if spec["order"] == "F" { Order::Fortran } else { Order::C };
    let byte_order = if spec["byteorder"] == "big" { ByteOrder::Big } else { ByteOrder::Little };
    ArrayHeader { dtype, byte_order, shape, order }
}

/// The array's elements in C (row-major) order, little-endian: computed from the raw
/// data bytes, independently of the crate's element conversion.
fn c_order_le(a: &NdArray<'_>) -> Vec<u8> {
    let h = &a.header;
    let size = h.dtype.item_size();
    let scalar = match h.dtype {
        Dtype::Complex64 => 4,
        Dtype::Complex128 => 8,
        _ => size,
    };
    let n = h.len().unwrap();
    let mut out = Vec::with_capacity(n * size);
    let mut index = vec![0usize; h.shape.len()];
    for _ in 0..n {
        // memory position of the C-order index
        let mut pos = 0;
        let mut stride = 1;
        let dims: Vec<usize> = (0..h.shape.len()).collect();
        let walk: Box<dyn Iterator<Item = &usize>> =
            if h.order == Order::C { Box::new(dims.iter().rev()) } else { Box::new(dims.iter()) };
        for &d in walk {
            pos += index[d] * stride;
            stride *= h.shape[d];
        }
        let item = &a.data[pos * size..(pos + 1) * size];
        for s in item.chunks(scalar) {
            if h.byte_order == ByteOrder::Big {
                out.extend(s.iter().rev());
            } else {
                out.extend_from_slice(s);
            }
        }
        for d in (0..h.shape.len()).rev() {
            index[d] += 1;
            if index[d] < h.shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn numpy_made_pickles_read_as_their_arrays_and_write_back_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    if !generate(dir.path()) {
        return;
    }
    let arrays = manifest(dir.path());
    assert!(arrays.len() > 200, "{} arrays", arrays.len());
    let (mut read, mut rewritten) = (0, 0);
    for (name, spec) in &arrays {
        let want = expected_header(spec);
        for proto in 2..=5 {
            let bytes = std::fs::read(dir.path().join(format!("{name}.p{proto}.pkl"))).unwrap();
            let a = numpy::parse(&bytes).unwrap_or_else(|e| panic!("{name} p{proto}: {e}"));
            assert_eq!(a.header, want, "{name} p{proto}");
            assert_eq!(hex(&c_order_le(&a)), spec["c_le_hex"].as_str().unwrap(), "{name} p{proto} data");
            // Protocols 3-5 hold the data in one piece, and say where.
            if proto >= 3 {
                let at = a.data_offset.unwrap_or_else(|| panic!("{name} p{proto}: no data offset"));
                assert_eq!(&bytes[at..at + a.data.len()], &a.data[..]);
            }
            typed::check(name, proto, &a, spec);
            if proto == 5 && spec["contiguous"] == true {
                let ours = numpy::write(&a.header, &a.data).unwrap();
                assert!(
                    ours == bytes,
                    "{name}: our protocol-5 pickle differs from numpy's\nours:  {ours:?}\nnumpy: {bytes:?}"
                );
                rewritten += 1;
            }
            read += 1;
        }
    }
    eprintln!("{read} pickles read, {rewritten} written byte for byte");
}

#[cfg(feature = "ndarray")]
mod typed {
    use super::*;
    use half::f16;
    use num_complex::Complex;
    use pickleshelf_pickle::numpy::Element;

    fn le_of<T: Element>(a: &NdArray<'_>) -> Vec<u8> {
        let nd = a.to_ndarray::<T>().unwrap();
        let mut out = Vec::new();
        for x in nd.iter() {
            x.write_le(&mut out);
        }
        out
    }

    /// `to_ndarray` gives the array numpy had: its logical elements, compared with the
    /// values numpy listed (and as bytes, for every dtype).
    pub fn check(name: &str, proto: u8, a: &NdArray<'_>, spec: &Json) {
        let le = match a.header.dtype {
            Dtype::Bool => le_of::<bool>(a),
            Dtype::Int8 => le_of::<i8>(a),
            Dtype::Int16 => le_of::<i16>(a),
            Dtype::Int32 => le_of::<i32>(a),
            Dtype::Int64 => le_of::<i64>(a),
            Dtype::UInt8 => le_of::<u8>(a),
            Dtype::UInt16 => le_of::<u16>(a),
            Dtype::UInt32 => le_of::<u32>(a),
            Dtype::UInt64 => le_of::<u64>(a),
            Dtype::Float16 => le_of::<f16>(a),
            Dtype::Float32 => le_of::<f32>(a),
            Dtype::Float64 => le_of::<f64>(a),
            Dtype::Complex64 => le_of::<Complex<f32>>(a),
            Dtype::Complex128 => le_of::<Complex<f64>>(a),
            other => panic!("{other:?}"),
        };
        assert_eq!(hex(&le), spec["c_le_hex"].as_str().unwrap(), "{name} p{proto} to_ndarray");
        if a.header.dtype == Dtype::Float64
            && let Some(values) = spec["values"].as_array()
        {
            let got: Vec<f64> = a.to_ndarray::<f64>().unwrap().iter().copied().collect();
            let want: Vec<f64> = values.iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(got, want, "{name} p{proto} values");
        }
        if a.header.dtype == Dtype::Int64
            && let Some(values) = spec["values"].as_array()
        {
            let got: Vec<i64> = a.to_ndarray::<i64>().unwrap().iter().copied().collect();
            let want: Vec<i64> = values.iter().map(|v| v.as_i64().unwrap()).collect();
            assert_eq!(got, want, "{name} p{proto} values");
        }
        // A wrong element type is an error, not a reinterpretation.
        if a.header.dtype != Dtype::UInt8 {
            assert!(matches!(
                a.to_ndarray::<u8>(),
                Err(numpy::ArrayError::TypeMismatch { expected: Dtype::UInt8, .. })
            ));
        }
    }
}

#[cfg(not(feature = "ndarray"))]
mod typed {
    use super::*;
    pub fn check(_: &str, _: u8, a: &NdArray<'_>, _: &Json) {
        if a.header.dtype == Dtype::Float64 && a.header.byte_order == ByteOrder::Little && a.header.order == Order::C {
            let v = a.to_vec::<f64>().unwrap();
            assert_eq!(v.len(), a.header.len().unwrap());
        }
    }
}

/// Arrays written here (through `ndarray`, in each memory order) load in numpy as equal
/// arrays.
#[cfg(feature = "ndarray")]
#[test]
fn numpy_loads_what_rust_writes() {
    let dir = tempfile::tempdir().unwrap();
    if !generate(dir.path()) {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let arrays = manifest(dir.path());
    let mut n = 0;
    for (name, spec) in &arrays {
        if spec["byteorder"] == "big" {
            continue; // ndarray arrays are native (little-endian) data
        }
        let bytes = std::fs::read(dir.path().join(format!("{name}.p4.pkl"))).unwrap();
        let a = numpy::parse(&bytes).unwrap();
        let ours = match a.header.dtype {
            Dtype::Bool => numpy::write_ndarray(&a.to_ndarray::<bool>().unwrap()),
            Dtype::Int8 => numpy::write_ndarray(&a.to_ndarray::<i8>().unwrap()),
            Dtype::Int16 => numpy::write_ndarray(&a.to_ndarray::<i16>().unwrap()),
            Dtype::Int32 => numpy::write_ndarray(&a.to_ndarray::<i32>().unwrap()),
            Dtype::Int64 => numpy::write_ndarray(&a.to_ndarray::<i64>().unwrap()),
            Dtype::UInt8 => numpy::write_ndarray(&a.to_ndarray::<u8>().unwrap()),
            Dtype::UInt16 => numpy::write_ndarray(&a.to_ndarray::<u16>().unwrap()),
            Dtype::UInt32 => numpy::write_ndarray(&a.to_ndarray::<u32>().unwrap()),
            Dtype::UInt64 => numpy::write_ndarray(&a.to_ndarray::<u64>().unwrap()),
            Dtype::Float16 => numpy::write_ndarray(&a.to_ndarray::<half::f16>().unwrap()),
            Dtype::Float32 => numpy::write_ndarray(&a.to_ndarray::<f32>().unwrap()),
            Dtype::Float64 => numpy::write_ndarray(&a.to_ndarray::<f64>().unwrap()),
            Dtype::Complex64 => numpy::write_ndarray(&a.to_ndarray::<num_complex::Complex<f32>>().unwrap()),
            Dtype::Complex128 => numpy::write_ndarray(&a.to_ndarray::<num_complex::Complex<f64>>().unwrap()),
            other => panic!("{other:?}"),
        }
        .unwrap();
        std::fs::write(out.path().join(format!("{name}.rust.pkl")), ours).unwrap();
        n += 1;
    }
    let check = Command::new(python()).arg(script()).arg("--check").arg(out.path()).output().unwrap();
    assert!(
        check.status.success(),
        "numpy rejects {n} Rust-written arrays: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn bad_headers_are_errors_naming_the_problem() {
    let h = ArrayHeader::new(Dtype::Float64, [2, 3], Order::C);
    let good = numpy::write(&h, &[0u8; 48]).unwrap();
    assert_eq!(numpy::parse(&good).unwrap().header, h);
    // a wrong length for the data
    assert!(numpy::write(&h, &[0u8; 40]).unwrap_err().to_string().contains("needs 48 data bytes, got 40"));
    // every truncation and every byte flip: an error or a consistent array, never a panic
    for i in 0..good.len() {
        assert!(numpy::parse(&good[..i]).is_err());
        for v in [0u8, 0xff, good[i] ^ 0x01, good[i] ^ 0x80] {
            let mut b = good.clone();
            b[i] = v;
            if let Ok(a) = numpy::parse(&b) {
                assert_eq!(Some(a.data.len()), a.header.data_len());
            }
        }
    }
    // a shape that does not match the data
    let other = numpy::write(&ArrayHeader::new(Dtype::Float64, [2, 4], Order::C), &[0u8; 64]).unwrap();
    let at = other.windows(4).position(|w| w == b"K\x02K\x04").unwrap();
    let mut b = other.clone();
    b[at + 3] = 5;
    let e = numpy::parse(&b).unwrap_err().to_string();
    assert!(e.contains("shape [2, 5] of float64 needs 80 data bytes, the pickle holds 64"), "{e}");
    // unsupported dtypes name themselves
    let mut b = good.clone();
    let at = b.windows(2).position(|w| w == b"f8").unwrap();
    b[at] = b'O';
    let e = numpy::parse(&b).unwrap_err();
    assert_eq!(e.to_string(), "unsupported numpy array: dtype \"O8\" (object arrays)");
}
