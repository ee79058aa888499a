//! ndarray interop and NumPy files (the `ndarray` feature): conversions in both directions
//! with and without copies, typed tensors from fixed-rank arrays, and `.npy`/`.npz` files that
//! NumPy wrote (`tests/interop/numpy/`, made by `tests/interop/numpy_files.py`, whose values
//! follow formulas recomputed here) read, written back and read again.
#![cfg(feature = "ndarray")]

use std::path::PathBuf;

use tensorbrain::interop::{load_npz, read_npy, save_npz, write_npy};
use tensorbrain::ndarray::{s, Array, Array2, Array4, ArrayD, Axis, IxDyn, ShapeBuilder};
use tensorbrain::prelude::*;
use tensorbrain::Result;

type Typed<S, E = f32> = tensorbrain::shape::Tensor<S, E>;

fn numpy_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/numpy").join(name)
}

/// `0.5 k - 3` for `k` in `0..n`, as numpy_files.py writes.
fn values(n: usize) -> Vec<f64> {
    (0..n).map(|k| 0.5 * k as f64 - 3.0).collect()
}

fn err_text<T>(r: Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Conversions
// ---------------------------------------------------------------------------------------------

#[test]
fn owned_standard_arrays_move_into_tensors_without_a_copy() {
    let a = Array::from_shape_vec((2, 3), vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let ptr = a.as_ptr();
    let t = Tensor::from_ndarray(a);
    assert_eq!(t.shape(), [2, 3]);
    assert_eq!(t.dtype(), DType::F32);
    t.try_with_ndarray_view(|v: tensorbrain::ndarray::ArrayViewD<f32>| assert_eq!(v.as_ptr(), ptr, "the buffer moved, not copied")).unwrap();
    // And back out: the only handle on its storage hands the same buffer over.
    let back: ArrayD<f32> = t.try_into_ndarray().unwrap();
    assert_eq!(back.as_ptr(), ptr);
    assert_eq!(back.shape(), [2, 3]);
    assert_eq!(back.iter().copied().collect::<Vec<_>>(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
}

#[test]
fn other_layouts_are_copied_in_logical_order() {
    let base = Array::from_shape_vec((3, 4), (0..12).map(|k| k as f64).collect()).unwrap();
    let want_t: Vec<f64> = base.t().iter().copied().collect();
    assert_eq!(Tensor::from_ndarray(base.t().to_owned()).to_vec::<f64>(), want_t, "to_owned of a transpose");
    let mut fortran = Array2::<f64>::zeros((3, 4).f());
    fortran.assign(&base);
    assert_eq!(Tensor::from_ndarray(fortran).to_vec::<f64>(), base.iter().copied().collect::<Vec<_>>(), "Fortran order");
    let mut rows = base.clone();
    rows.slice_collapse(s![1.., ..]);
    assert_eq!(Tensor::from_ndarray(rows).to_vec::<f64>(), (4..12).map(|k| k as f64).collect::<Vec<_>>(), "rows sliced off the front");
    let view = base.slice(s![.., ..;2]);
    assert_eq!(Tensor::from_ndarray_view(view).to_vec::<f64>(), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
    let ints = Array::from_shape_vec(IxDyn(&[2, 2]), vec![-3i64, 1 << 60, 7, 0]).unwrap();
    let t: Tensor = ints.into();
    assert_eq!((t.dtype(), t.to_vec::<i64>()), (DType::I64, vec![-3, 1 << 60, 7, 0]));
    let flags = Tensor::from_ndarray(Array::from_vec(vec![true, false]));
    assert_eq!(flags.dtype(), DType::Bool);
}

#[test]
fn tensor_views_are_borrowed_with_their_strides() {
    let t = Tensor::from_vec((0..24).map(|k| k as f32).collect::<Vec<_>>(), &[2, 3, 4]);
    let base = t.try_with_ndarray_view(|v: tensorbrain::ndarray::ArrayViewD<f32>| v.as_ptr() as usize).unwrap();
    // A transposed, sliced view: same storage, the view starts at the slice's offset.
    let view = t.transpose(0, 2).narrow(0, 1, 2);
    let (ptr, got) = view
        .try_with_ndarray_view(|v: tensorbrain::ndarray::ArrayViewD<f32>| (v.as_ptr() as usize, v.iter().copied().collect::<Vec<_>>()))
        .unwrap();
    assert_eq!(ptr, base + std::mem::size_of::<f32>(), "no copy: the view points into the tensor's storage");
    assert_eq!(got, view.to_vec::<f32>());
    // Broadcast (stride 0) views and empty views too.
    let row = Tensor::from_vec(vec![1.0f32, 2.0], &[1, 2]).expand(&[3, 2]);
    assert_eq!(row.try_with_ndarray_view(|v: tensorbrain::ndarray::ArrayViewD<f32>| v.sum()).unwrap(), 9.0);
    let empty = Tensor::zeros(&[5, 0], DType::F32).narrow(0, 4, 1);
    assert_eq!(empty.try_with_ndarray_view(|v: tensorbrain::ndarray::ArrayViewD<f32>| v.shape().to_vec()).unwrap(), [1, 0]);
    // Shared storage or a partial view cannot give its buffer away: copied, same values.
    let shared = t.clone();
    let out: ArrayD<f32> = shared.try_into_ndarray().unwrap();
    assert_eq!(out.iter().copied().collect::<Vec<_>>(), t.to_vec::<f32>());
    let part: ArrayD<f32> = t.transpose(0, 1).try_into_ndarray().unwrap();
    assert_eq!(part.shape(), [3, 2, 4]);
    assert_eq!(part.iter().copied().collect::<Vec<_>>(), t.transpose(0, 1).to_vec::<f32>());
    assert!(part.is_standard_layout());
}

#[test]
fn dtype_mismatches_are_errors_not_conversions() {
    let t = Tensor::from_vec(vec![1.0f32, 2.0], &[2]);
    let msg = err_text(t.try_with_ndarray_view(|_: tensorbrain::ndarray::ArrayViewD<f64>| ()));
    assert!(msg.contains("f32") && msg.contains("f64") && msg.contains("to_dtype"), "{msg}");
    let msg = err_text(ArrayD::<i64>::try_from(&t));
    assert!(msg.contains("f32") && msg.contains("i64"), "{msg}");
}

#[test]
fn typed_tensors_from_fixed_rank_arrays_check_the_shape() {
    let images = Array4::<f32>::from_shape_fn((2, 1, 28, 28), |(n, _, h, w)| (n * 784 + h * 28 + w) as f32);
    let x = Typed::<(Dyn, Const<1>, Const<28>, Const<28>)>::try_from_ndarray(images.clone()).unwrap();
    assert_eq!(x.shape(), [2, 1, 28, 28]);
    assert_eq!(x.to_vec::<f32>()[785], 785.0);
    let back: Array4<f32> = x.try_into_ndarray().unwrap();
    assert_eq!(back, images);
    let msg = err_text(Typed::<(Dyn, Const<3>, Const<28>, Const<28>)>::try_from_ndarray(images.clone()));
    assert!(msg.contains("[2, 1, 28, 28]"), "{msg}");
    let msg = err_text(Typed::<(Dyn, Const<784>)>::try_from_ndarray(images));
    assert!(msg.contains("expected shape"), "{msg}");
    let m = Array2::<f64>::eye(3);
    // (An `Array2<f64>` for a `Tensor<_, f32>` is a type error, caught at compile time.)
    let typed = Typed::<(Const<3>, Const<3>), f64>::try_from_ndarray_ref(&m).unwrap();
    assert_eq!(typed.to_vec::<f64>(), m.iter().copied().collect::<Vec<_>>());
    let summed = Tensor::from_ndarray(m.clone()).sum(&[0], false);
    assert_eq!(Tensor::from_ndarray(m.sum_axis(Axis(0))).to_vec::<f64>(), summed.to_vec::<f64>());
}

// ---------------------------------------------------------------------------------------------
// NumPy files
// ---------------------------------------------------------------------------------------------

#[test]
fn reads_files_numpy_wrote() {
    let t = read_npy(numpy_file("f32_c.npy")).unwrap();
    assert_eq!((t.dtype(), t.shape()), (DType::F32, &[2, 3, 4][..]));
    assert_eq!(t.to_vec::<f64>(), values(24));
    let t = read_npy(numpy_file("f64_fortran.npy")).unwrap();
    assert_eq!((t.dtype(), t.shape()), (DType::F64, &[3, 4][..]));
    assert_eq!(t.to_vec::<f64>(), values(12), "Fortran order read in logical order");
    let t = read_npy(numpy_file("f32_big_endian.npy")).unwrap();
    assert_eq!((t.dtype(), t.to_vec::<f64>()), (DType::F32, values(6)));
    for (file, dtype) in [("int64.npy", DType::I64), ("int32.npy", DType::I32), ("int16.npy", DType::I16), ("int8.npy", DType::I8)] {
        let t = read_npy(numpy_file(file)).unwrap();
        assert_eq!((t.dtype(), t.shape()), (dtype, &[2, 5][..]), "{file}");
        assert_eq!(t.to_vec::<i64>(), (-5..5).collect::<Vec<_>>(), "{file}");
    }
    let t = read_npy(numpy_file("uint8.npy")).unwrap();
    assert_eq!((t.dtype(), t.to_vec::<i64>()), (DType::U8, (0..10).map(|k| k * 25).collect()));
    let t = read_npy(numpy_file("bool.npy")).unwrap();
    assert_eq!((t.dtype(), t.to_vec::<bool>()), (DType::Bool, (0..6).map(|k| k % 3 == 0).collect()));
    let t = read_npy(numpy_file("f32_scalar.npy")).unwrap();
    assert_eq!((t.shape(), t.item::<f32>()), (&[][..], 2.5));
    assert_eq!(read_npy(numpy_file("f32_empty.npy")).unwrap().shape(), [0, 3]);
}

#[test]
fn reads_npz_archives_numpy_wrote() {
    for file in ["arrays.npz", "arrays_compressed.npz"] {
        let m = load_npz(numpy_file(file)).unwrap();
        let mut names: Vec<&String> = m.keys().collect();
        names.sort();
        assert_eq!(names, ["ids", "mask", "weight"], "{file}");
        assert_eq!((m["weight"].dtype(), m["weight"].shape()), (DType::F32, &[2, 3][..]));
        assert_eq!(m["weight"].to_vec::<f64>(), values(6));
        assert_eq!(m["ids"].to_vec::<i64>(), [0, 1, 2, 3]);
        assert_eq!(m["mask"].to_vec::<bool>(), [true, false, true]);
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tb_npy_{tag}_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn numpy_files_round_trip_through_tensorbrain() {
    let dir = temp_dir("round_trip");
    for file in ["f32_c.npy", "f64_fortran.npy", "f32_big_endian.npy", "int64.npy", "int8.npy", "uint8.npy", "bool.npy", "f32_scalar.npy", "f32_empty.npy"] {
        let t = read_npy(numpy_file(file)).unwrap();
        let out = dir.join(file);
        write_npy(&out, &t).unwrap();
        let again = read_npy(&out).unwrap();
        assert_eq!((again.dtype(), again.shape()), (t.dtype(), t.shape()), "{file}");
        assert_eq!(again.to_vec::<f64>(), t.to_vec::<f64>(), "{file}");
    }
    let m = load_npz(numpy_file("arrays.npz")).unwrap();
    for compress in [false, true] {
        let out = dir.join(format!("arrays_{compress}.npz"));
        save_npz(&out, m.iter().map(|(k, v)| (k.as_str(), v)), compress).unwrap();
        let again = load_npz(&out).unwrap();
        assert_eq!(again.len(), 3);
        for (k, v) in &m {
            assert_eq!((again[k].dtype(), again[k].shape()), (v.dtype(), v.shape()), "{k}");
            assert_eq!(again[k].to_vec::<f64>(), v.to_vec::<f64>(), "{k}");
        }
    }
    // A non-contiguous view is written in its logical order.
    let t = read_npy(numpy_file("f32_c.npy")).unwrap().transpose(0, 2);
    write_npy(dir.join("view.npy"), &t).unwrap();
    assert_eq!(read_npy(dir.join("view.npy")).unwrap().to_vec::<f32>(), t.to_vec::<f32>());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn unsupported_files_and_dtypes_get_clear_errors() {
    let msg = err_text(read_npy(numpy_file("f16_unsupported.npy")));
    assert!(msg.contains("f16_unsupported.npy") && msg.contains("unsupported array type") && msg.contains("<f2"), "{msg}");
    let msg = err_text(read_npy(numpy_file("c64_unsupported.npy")));
    assert!(msg.contains("unsupported array type") && msg.contains("<c8"), "{msg}");
    let msg = err_text(read_npy(numpy_file("no_such_file.npy")));
    assert!(msg.contains("no_such_file.npy"), "{msg}");
    let dir = temp_dir("errors");
    let half = Tensor::ones(&[2], DType::BF16);
    let msg = err_text(write_npy(dir.join("bf16.npy"), &half));
    assert!(msg.contains("bf16") && msg.contains("to_dtype"), "{msg}");
    assert!(!dir.join("bf16.npy").exists(), "nothing is written for a rejected tensor");
    let msg = err_text(load_npz(numpy_file("f32_c.npy")));
    assert!(msg.contains("load_npz") && msg.contains("f32_c.npy"), "a .npy is not a zip archive: {msg}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Writes files for `tests/interop/numpy_files.py` to check with NumPy (into `$TB_NPY_OUT`).
#[test]
#[ignore = "run by tests/interop/numpy_files.py, which checks the files with NumPy"]
fn writes_files_for_numpy() {
    let dir = PathBuf::from(std::env::var("TB_NPY_OUT").expect("TB_NPY_OUT names the output directory"));
    let base = Tensor::from_vec(values(12), &[3, 4]);
    write_npy(dir.join("transposed_f64.npy"), &base.transpose(0, 1)).unwrap();
    write_npy(dir.join("i64.npy"), &Tensor::from_vec((0..6).map(|k| k - 2).collect::<Vec<i64>>(), &[2, 3])).unwrap();
    let x = Tensor::from_vec(values(6), &[3, 2]).to_dtype(DType::F32);
    let mask = Tensor::from_vec(vec![true, false, false, true], &[4]);
    for (file, compress) in [("saved.npz", false), ("saved_compressed.npz", true)] {
        save_npz(dir.join(file), [("x", &x), ("mask", &mask)], compress).unwrap();
    }
}
