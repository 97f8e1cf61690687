//! numpy arrays in a shelf: pickles numpy made (scripts/gen_numpy_pickles.py) stored with
//! `insert_pickle` read back as their arrays; arrays stored from Rust read back equal;
//! values that are not supported arrays stay stored and give a clear error. Skipped when
//! python3 has no numpy, except under CI (env `CI`), where that fails.

use std::path::Path;
use std::process::Command;

use pickleshelf::pickle::numpy::{self, ArrayError, ArrayHeader, Dtype, Order};
use pickleshelf::{Error, Shelf};

fn generate(dir: &Path) -> bool {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gen_numpy_pickles.py");
    let python = std::env::var("PICKLESHELF_PYTHON").unwrap_or_else(|_| "python3".into());
    match Command::new(&python).arg(&script).arg(dir).output() {
        Ok(o) if o.status.success() => true,
        Ok(o) if o.status.code() == Some(3) && std::env::var_os("CI").is_none() => {
            eprintln!("skipped: {}", String::from_utf8_lossy(&o.stderr).trim());
            false
        }
        Ok(o) => panic!("{} failed: {}", script.display(), String::from_utf8_lossy(&o.stderr)),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipped: cannot run {python}: {e}");
            false
        }
        Err(e) => panic!("cannot run {python}: {e}"),
    }
}

#[test]
fn numpy_made_pickles_read_back_as_arrays() {
    let gen_dir = tempfile::tempdir().unwrap();
    if !generate(gen_dir.path()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::open(dir.path().join("s.db")).unwrap();
    let mut n = 0;
    #[cfg(feature = "ndarray")]
    let mut mapped_f64 = 0;
    for entry in std::fs::read_dir(gen_dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".pkl") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let want = numpy::parse(&bytes).unwrap();
        shelf.insert_pickle(&name, &bytes).unwrap();
        let got = shelf.get_array_bytes(&name).unwrap().unwrap();
        assert_eq!(got.header(), &want.header, "{name}");
        assert_eq!(got.data(), &want.data[..], "{name}");
        // mapped in place when the data is 64 KiB or more in one piece (protocols 3-5)
        let m = shelf.map_array(&name).unwrap().unwrap();
        assert_eq!(m.header(), &want.header, "{name}");
        assert_eq!(m.data(), &want.data[..], "{name}");
        assert_eq!(m.is_mapped(), want.data.len() >= 65_536 && want.data_offset.is_some(), "{name}");
        #[cfg(feature = "ndarray")]
        if m.is_mapped() && want.header.dtype == Dtype::Float64 {
            let typed = numpy::NdArray { header: want.header.clone(), data: want.data.clone(), data_offset: None };
            assert_eq!(m.view::<f64>().unwrap(), typed.to_ndarray::<f64>().unwrap(), "{name}");
            mapped_f64 += 1;
        }
        n += 1;
    }
    assert!(n > 900, "{n} pickles");
    #[cfg(feature = "ndarray")]
    assert_eq!(mapped_f64, 3, "f8le_300x40_F at protocols 3-5");
    shelf.close().unwrap();
    // and after a reopen
    let shelf = Shelf::open(dir.path().join("s.db")).unwrap();
    let bytes = std::fs::read(gen_dir.path().join("f8le_300x40_F.p5.pkl")).unwrap();
    let a = shelf.get_array_bytes("f8le_300x40_F.p5.pkl").unwrap().unwrap();
    assert_eq!(a.header(), &ArrayHeader::new(Dtype::Float64, [300, 40], Order::Fortran));
    assert_eq!(a.data(), &numpy::parse(&bytes).unwrap().data[..]);
}

#[test]
fn values_that_are_not_supported_arrays_stay_stored() {
    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::open(dir.path().join("s.db")).unwrap();
    shelf.insert("list", &vec![1, 2, 3]).unwrap();
    match shelf.get_array_bytes("list") {
        Err(Error::Array { key, source: ArrayError::NotAnArray(_) }) => assert_eq!(key, "list"),
        other => panic!("{other:?}"),
    }
    assert_eq!(shelf.get::<Vec<i32>>("list").unwrap(), Some(vec![1, 2, 3]));
    // Python: pickle.dumps(numpy.array([None, 1], dtype=object), protocol=5)
    let object_array: &[u8] = b"\x80\x05\x95\x8d\x00\x00\x00\x00\x00\x00\x00\x8c\x16numpy._core.multiarray\x94\x8c\x0c_reconstruct\x94\x93\x94\x8c\x05numpy\x94\x8c\x07ndarray\x94\x93\x94K\x00\x85\x94C\x01b\x94\x87\x94R\x94(K\x01K\x02\x85\x94h\x03\x8c\x05dtype\x94\x93\x94\x8c\x02O8\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01|\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?t\x94b\x89]\x94(NK\x01et\x94b.";
    shelf.insert_pickle("objects", object_array).unwrap();
    let e = shelf.get_array_bytes("objects").unwrap_err();
    assert_eq!(e.to_string(), "array \"objects\": unsupported numpy array: dtype \"O8\" (object arrays)");
    assert_eq!(shelf.get_pickle("objects").unwrap().as_deref(), Some(object_array));
    // a wrong data length is refused before anything is stored
    let e = shelf.insert_array_bytes("bad", &ArrayHeader::new(Dtype::Int16, [3], Order::C), &[0; 5]).unwrap_err();
    assert!(e.to_string().contains("needs 6 data bytes, got 5"), "{e}");
    assert!(!shelf.contains_key("bad").unwrap());
}

#[cfg(feature = "ndarray")]
#[test]
fn ndarray_arrays_round_trip_in_their_order() {
    use ndarray::{Array, ShapeBuilder};
    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::open(dir.path().join("s.db")).unwrap();
    let c = Array::from_shape_fn((30, 50), |(i, j)| (i * 50 + j) as f32);
    let f = Array::from_shape_fn((30, 50).f(), |(i, j)| (i * 50 + j) as i64);
    let z = Array::from_shape_fn((4, 3), |(i, j)| num_complex::Complex::new(i as f64, -(j as f64)));
    shelf.insert_array("c", &c).unwrap();
    shelf.insert_array("f", &f).unwrap();
    shelf.insert_array("z", &z.t()).unwrap();
    assert_eq!(shelf.get_array::<f32>("c").unwrap(), Some(c.into_dyn()));
    let back = shelf.get_array::<i64>("f").unwrap().unwrap();
    assert_eq!(back, f.into_dyn());
    assert!(back.t().is_standard_layout(), "Fortran order kept");
    assert_eq!(shelf.get_array_bytes("f").unwrap().unwrap().header().order, Order::Fortran);
    assert_eq!(shelf.get_array::<num_complex::Complex<f64>>("z").unwrap(), Some(z.t().to_owned().into_dyn()));
    match shelf.get_array::<f64>("c") {
        Err(Error::Array {
            source: ArrayError::TypeMismatch { expected: Dtype::Float64, found: Dtype::Float32 },
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(shelf.get_array::<f64>("missing").unwrap(), None);
}
