#!/usr/bin/env python3
"""NumPy .npy/.npz files both ways between NumPy and TensorBrain.

    python3 tests/interop/numpy_files.py        # from the repository root; needs numpy

1. NumPy -> TensorBrain: writes small files into tests/interop/numpy/ (committed, so CI reads
   them without NumPy): every dtype NumPy and TensorBrain share, C and Fortran order, a
   big-endian array, a 0-d and an empty array, `np.savez` and `np.savez_compressed` archives,
   and a float16 and a complex64 file that TensorBrain must reject. Their values follow
   formulas that `tensorbrain/tests/ndarray_interop.rs` recomputes.
2. TensorBrain -> NumPy: runs the ignored `writes_files_for_numpy` test, which writes .npy and
   .npz files into a temporary directory, and checks them with `np.load`.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "numpy")
ROOT = os.path.dirname(os.path.dirname(HERE))


def values(n):
    """0.5 k - 3 for k in 0..n: exact in every float type, distinct."""
    return np.arange(n) * 0.5 - 3.0


def write_numpy_files():
    os.makedirs(OUT, exist_ok=True)
    save = lambda name, a: np.save(os.path.join(OUT, name), a)  # noqa: E731
    save("f32_c.npy", values(24).reshape(2, 3, 4).astype(np.float32))
    save("f64_fortran.npy", np.asfortranarray(values(12).reshape(3, 4)))
    save("f32_big_endian.npy", values(6).reshape(2, 3).astype(">f4"))
    for dt in ("int64", "int32", "int16", "int8"):
        save(f"{dt}.npy", (np.arange(10) - 5).astype(dt).reshape(2, 5))
    save("uint8.npy", (np.arange(10) * 25).astype(np.uint8))
    save("bool.npy", np.arange(6).reshape(3, 2) % 3 == 0)
    save("f32_scalar.npy", np.float32(2.5) * np.ones((), np.float32))
    save("f32_empty.npy", np.zeros((0, 3), np.float32))
    save("f16_unsupported.npy", values(4).astype(np.float16))
    save("c64_unsupported.npy", values(4).astype(np.complex64))
    arrays = dict(weight=values(6).reshape(2, 3).astype(np.float32), ids=np.arange(4, dtype=np.int64), mask=np.array([True, False, True]))
    np.savez(os.path.join(OUT, "arrays.npz"), **arrays)
    np.savez_compressed(os.path.join(OUT, "arrays_compressed.npz"), **arrays)


def check_tensorbrain_files():
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, TB_NPY_OUT=tmp)
        cmd = ["cargo", "test", "-p", "tensorbrain", "--test", "ndarray_interop", "writes_files_for_numpy", "--", "--ignored"]
        subprocess.run(cmd, cwd=ROOT, env=env, check=True)
        a = np.load(os.path.join(tmp, "transposed_f64.npy"))
        assert a.dtype == np.float64 and a.shape == (4, 3), (a.dtype, a.shape)
        np.testing.assert_array_equal(a, values(12).reshape(3, 4).T)
        b = np.load(os.path.join(tmp, "i64.npy"))
        assert b.dtype == np.int64
        np.testing.assert_array_equal(b, np.arange(6).reshape(2, 3) - 2)
        for name in ("saved.npz", "saved_compressed.npz"):
            with np.load(os.path.join(tmp, name)) as z:
                assert sorted(z.files) == ["mask", "x"], z.files
                np.testing.assert_array_equal(z["x"], values(6).reshape(3, 2).astype(np.float32))
                np.testing.assert_array_equal(z["mask"], np.array([True, False, False, True]))
    print("numpy reads TensorBrain's .npy and .npz files")


if __name__ == "__main__":
    write_numpy_files()
    print(f"numpy {np.__version__}: wrote {len(os.listdir(OUT))} files to {os.path.relpath(OUT)}")
    if "--no-check" not in sys.argv:
        check_tensorbrain_files()
