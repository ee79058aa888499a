//! Tests that need a CUDA device are `#[ignore = "needs a CUDA device"]`; run them on a GPU
//! machine with `cargo test -p tensorbrain-kernels --features cuda --test cuda_device -- --ignored`
//! (and TENSORBRAIN_NVRTC_LIB set if libnvrtc is not on the loader path).
//!
//! The one test that is not ignored checks the other side: on a machine without a driver,
//! asking for a device is a clear error, not a panic.
#![cfg(feature = "cuda")]

use tensorbrain_kernels::cuda::driver::{device_count, Device, DRIVER_LIB};
use tensorbrain_kernels::cuda::CudaError;

/// Whether this machine has a loadable driver library (decides what the test below expects).
fn driver_present() -> bool {
    // SAFETY: only loads the library, as the backend itself would.
    unsafe { libloading::Library::new(DRIVER_LIB) }.is_ok()
}

#[test]
fn asking_for_a_device_without_a_driver_is_a_clear_error() {
    let got = std::panic::catch_unwind(|| Device::new(0).map(|d| d.ordinal()));
    let got = got.expect("Device::new panicked; it must return an error instead");
    if driver_present() {
        // On a GPU machine the same call must get past the probe.
        assert!(!matches!(got, Err(CudaError::NoDriver { .. })), "{got:?}");
        return;
    }
    let err = got.expect_err("a device without a driver");
    assert!(matches!(err, CudaError::NoDriver { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("no CUDA driver found ({DRIVER_LIB}): ")), "{msg}");
    // Asking again gives the same answer (the probe is cached, and cudarc was never reached).
    assert_eq!(Device::new(3).unwrap_err().to_string(), msg);
    assert_eq!(device_count().unwrap_err().to_string(), msg);
}

// ---- Tests that need a GPU. None of these has run yet (see docs/cuda.md). ----

mod gpu {
    use tensorbrain_kernels::cuda::alloc::{CachingAllocator, CudaMemory};
    use tensorbrain_kernels::cuda::codegen::{samples, DType};
    use tensorbrain_kernels::cuda::cudarc::driver::{result, CudaSlice, CudaStream, DeviceRepr, PushKernelArg, ValidAsZeroBits};
    use tensorbrain_kernels::cuda::driver::Device;
    use tensorbrain_kernels::cuda::launch::{self, kernel_layout};
    use tensorbrain_kernels::cuda::module::KernelLibrary;
    use tensorbrain_kernels::fused::{eval_vec, BinaryFn, FusedFloat, Instr, Operand, Program};
    use tensorbrain_kernels::strided::reduce_rows;

    use std::sync::Arc;

    fn library() -> KernelLibrary {
        KernelLibrary::new(Device::new(0).expect("a CUDA device")).expect("kernel library")
    }

    fn assert_close<T: Into<f64> + Copy>(got: &[T], want: &[T], rtol: f64, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let (g, w): (f64, f64) = (g.into(), w.into());
            if g.is_nan() && w.is_nan() {
                continue;
            }
            assert!((g - w).abs() <= rtol * (1.0 + w.abs()), "{what}[{i}]: gpu {g} vs cpu {w}");
        }
    }

    fn upload<T: DeviceRepr>(s: &Arc<CudaStream>, x: &[T]) -> CudaSlice<T> {
        s.clone_htod(x).expect("host to device copy")
    }

    #[test]
    #[ignore = "needs a CUDA device"]
    fn copies_round_trip_through_the_caching_allocator() {
        let dev = Device::new(0).unwrap();
        let stream = dev.default_stream();
        let mut alloc = CachingAllocator::new(CudaMemory::new(&dev));
        let x: Vec<f32> = (0..4000).map(|i| i as f32 * 0.5 - 7.0).collect();
        let b = alloc.alloc(x.len() * 4, stream.id()).unwrap();
        dev.context().bind_to_thread().unwrap();
        unsafe { result::memcpy_htod_sync(b.ptr, &x) }.unwrap();
        let mut y = vec![0f32; x.len()];
        unsafe { result::memcpy_dtoh_sync(&mut y, b.ptr) }.unwrap();
        assert_eq!(x, y);
        // Freed and asked for again (same size class): the same device block comes back.
        let p = b.ptr;
        alloc.free(b);
        let b2 = alloc.alloc(3900 * 4, stream.id()).unwrap();
        assert_eq!(b2.ptr, p);
        let s = alloc.stats();
        assert_eq!((s.device_mallocs, s.cache_hits, s.allocated), (1, 1, 16384));
        alloc.free(b2);
        alloc.empty_cache().unwrap();
        assert_eq!(alloc.stats().reserved, 0);
    }

    /// out[i, j] = a[j, i] (a stored transposed) + b[j] (broadcast), via elementwise.cu `add`,
    /// against the CPU fused interpreter running the same add.
    #[test]
    #[ignore = "needs a CUDA device"]
    fn broadcast_strided_add_matches_cpu() {
        let lib = library();
        let s = lib.device().default_stream().cuda().clone();
        let (m, n) = (37usize, 301usize);
        let a: Vec<f32> = (0..m * n).map(|i| (i as f32 * 0.37).sin()).collect(); // [n, m]
        let b: Vec<f32> = (0..n).map(|j| j as f32 * 0.01).collect();
        let (a_st, b_st): ([isize; 2], [isize; 2]) = ([1, m as isize], [0, 1]);
        let (shape, st) = kernel_layout(&[m, n], &[(0, &a_st), (0, &b_st)]).unwrap();
        let (da, db) = (upload(&s, &a), upload(&s, &b));
        let mut out = s.alloc_zeros::<f32>(m * n).unwrap();
        let f = lib.source_function("elementwise.cu", "add_f32").unwrap();
        let cfg = launch::elementwise(m * n, lib.sm_count().unwrap()).unwrap().config();
        let total = (m * n) as i64;
        unsafe { s.launch_builder(&f).arg(&total).arg(&shape).arg(&da).arg(&st[0]).arg(&db).arg(&st[1]).arg(&mut out).launch(cfg) }
            .unwrap();
        let got = s.clone_dtoh(&out).unwrap();
        let p = Program::new(&[Instr::Load(0), Instr::Load(1), Instr::Binary(BinaryFn::Add, 0, 1)], 2, 2).unwrap();
        let want = eval_vec(
            &p,
            &[Operand::Strided { data: &a, offset: 0, strides: &[1, m] }, Operand::Strided { data: &b, offset: 0, strides: &[0, 1] }],
            &[m, n],
        );
        assert_close(&got, &want, 0.0, "add");
    }

    fn fused_case<T: FusedFloat + DeviceRepr + ValidAsZeroBits + Into<f64>>(lib: &KernelLibrary, p: &Program, dt: DType, rtol: f64, name: &str) {
        let s = lib.device().default_stream().cuda().clone();
        // Output [33, 70]; input 0 full and transposed, the others broadcast along rows.
        let (m, n) = (33usize, 70usize);
        let mut host: Vec<Vec<T>> = Vec::new();
        let mut strides: Vec<[usize; 2]> = Vec::new();
        for k in 0..p.n_inputs() {
            if k == 0 {
                host.push((0..m * n).map(|i| T::from_f64(0.1 + 1.9 * ((i * 7919) % 1000) as f64 / 1000.0)).collect());
                strides.push([1, m]);
            } else {
                // Positive and away from 0: `mixed` divides by input 1.
                host.push((0..n).map(|j| T::from_f64(0.5 + 0.03 * j as f64 + 0.1 * k as f64)).collect());
                strides.push([0, 1]);
            }
        }
        let ops: Vec<Operand<'_, T>> = host.iter().zip(&strides).map(|(d, st)| Operand::Strided { data: d, offset: 0, strides: st }).collect();
        let want = eval_vec(p, &ops, &[m, n]);
        let ist: Vec<[isize; 2]> = strides.iter().map(|s| [s[0] as isize, s[1] as isize]).collect();
        let layout_in: Vec<(usize, &[isize])> = ist.iter().map(|s| (0usize, &s[..])).collect();
        let (shape, st) = kernel_layout(&[m, n], &layout_in).unwrap();
        let dev: Vec<CudaSlice<T>> = host.iter().map(|h| upload(&s, h)).collect();
        let mut out = s.alloc_zeros::<T>(m * n).unwrap();
        let f = lib.fused_function(p, dt).unwrap();
        let total = (m * n) as i64;
        let mut b = s.launch_builder(&f);
        b.arg(&total).arg(&shape);
        for (d, st) in dev.iter().zip(&st) {
            b.arg(d).arg(st);
        }
        b.arg(&mut out);
        unsafe { b.launch(launch::elementwise(m * n, lib.sm_count().unwrap()).unwrap().config()) }.unwrap();
        let got = s.clone_dtoh(&out).unwrap();
        assert_close(&got, &want, rtol, name);
    }

    #[test]
    #[ignore = "needs a CUDA device"]
    fn generated_fused_kernels_match_the_cpu_interpreter() {
        let lib = library();
        for (name, p, dt) in samples() {
            match dt {
                // The CPU's f32 exp/tanh are vectorised approximations (fast_math.rs), CUDA's
                // are within 2 ulp: a few ulp apart, summed over the 22 unary functions.
                DType::F32 => fused_case::<f32>(&lib, &p, dt, 1e-4, name),
                DType::F64 => fused_case::<f64>(&lib, &p, dt, 1e-12, name),
            }
        }
    }

    fn softmax_ref(x: &[f64], cols: usize, log: bool) -> Vec<f64> {
        x.chunks(cols)
            .flat_map(|r| {
                let m = r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let s: f64 = r.iter().map(|v| (v - m).exp()).sum();
                r.iter().map(move |v| if log { v - m - s.ln() } else { (v - m).exp() / s }).collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    #[ignore = "needs a CUDA device"]
    fn softmax_forward_and_backward_match_references() {
        let lib = library();
        let s = lib.device().default_stream().cuda().clone();
        // 1500 columns: more than one block's worth of threads, so each thread folds several.
        for (rows, cols) in [(3usize, 5usize), (7, 1500), (64, 32)] {
            let x: Vec<f64> = (0..rows * cols).map(|i| ((i * 37) % 101) as f64 * 0.3 - 15.0).collect();
            let dy: Vec<f64> = (0..rows * cols).map(|i| ((i * 13) % 7) as f64 - 3.0).collect();
            for log in [false, true] {
                let want = softmax_ref(&x, cols, log);
                let (dx_dev, ddy) = (upload(&s, &x), upload(&s, &dy));
                let mut y = s.alloc_zeros::<f64>(rows * cols).unwrap();
                let pre = if log { "log_softmax" } else { "softmax" };
                let f = lib.source_function("softmax.cu", &format!("{pre}_fwd_f64")).unwrap();
                let cfg = launch::rows(rows, cols).unwrap().config();
                let (r, c) = (rows as i64, cols as i64);
                unsafe { s.launch_builder(&f).arg(&dx_dev).arg(&mut y).arg(&r).arg(&c).launch(cfg) }.unwrap();
                let got = s.clone_dtoh(&y).unwrap();
                assert_close(&got, &want, 1e-12, pre);
                // Backward against the formula on the reference output.
                let mut dx = s.alloc_zeros::<f64>(rows * cols).unwrap();
                let fb = lib.source_function("softmax.cu", &format!("{pre}_bwd_f64")).unwrap();
                unsafe { s.launch_builder(&fb).arg(&y).arg(&ddy).arg(&mut dx).arg(&r).arg(&c).launch(cfg) }.unwrap();
                let got = s.clone_dtoh(&dx).unwrap();
                let want_dx: Vec<f64> = (0..rows)
                    .flat_map(|i| {
                        let (yr, gr) = (&want[i * cols..(i + 1) * cols], &dy[i * cols..(i + 1) * cols]);
                        let sum: f64 = if log { gr.iter().sum() } else { yr.iter().zip(gr).map(|(a, b)| a * b).sum() };
                        (0..cols).map(move |j| if log { gr[j] - yr[j].exp() * sum } else { yr[j] * (gr[j] - sum) }).collect::<Vec<_>>()
                    })
                    .collect();
                assert_close(&got, &want_dx, 1e-10, &format!("{pre} backward"));
            }
        }
    }

    #[test]
    #[ignore = "needs a CUDA device"]
    fn row_sums_and_maxima_match_cpu() {
        let lib = library();
        let s = lib.device().default_stream().cuda().clone();
        for (rows, cols) in [(1usize, 1usize), (5, 33), (9, 5000)] {
            let mut x: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919) % 211) as f32 * 0.01 - 1.0).collect();
            if rows > 1 {
                x[cols + cols / 2] = f32::NAN; // row 1's max is NaN, as on the CPU
            }
            let dx = upload(&s, &x);
            let (r, c) = (rows as i64, cols as i64);
            let cfg = launch::rows(rows, cols).unwrap().config();
            for kind in ["sum", "max"] {
                let mut out = s.alloc_zeros::<f32>(rows).unwrap();
                let f = lib.source_function("reduce.cu", &format!("{kind}_rows_f32")).unwrap();
                unsafe { s.launch_builder(&f).arg(&dx).arg(&mut out).arg(&r).arg(&c).launch(cfg) }.unwrap();
                let got = s.clone_dtoh(&out).unwrap();
                let want: Vec<f32> = reduce_rows(&x, cols, rows, |row| {
                    if kind == "sum" {
                        row.iter().map(|&v| v as f64).sum::<f64>() as f32
                    } else if row.iter().any(|v| v.is_nan()) {
                        f32::NAN
                    } else {
                        row.iter().cloned().fold(f32::NEG_INFINITY, f32::max)
                    }
                });
                // Sums are accumulated in f32 in a different order: allow for it.
                assert_close(&got, &want, if kind == "sum" { 1e-4 } else { 0.0 }, kind);
            }
        }
    }

    #[test]
    #[ignore = "needs a CUDA device"]
    fn layer_norm_forward_and_backward_match_references() {
        let lib = library();
        let s = lib.device().default_stream().cuda().clone();
        let (rows, cols) = (6usize, 700usize);
        let x: Vec<f64> = (0..rows * cols).map(|i| ((i * 31) % 97) as f64 * 0.05 + (i / cols) as f64).collect();
        let gamma: Vec<f64> = (0..cols).map(|j| 1.0 + 0.001 * j as f64).collect();
        let beta: Vec<f64> = (0..cols).map(|j| 0.01 * j as f64 - 2.0).collect();
        let dy: Vec<f64> = (0..rows * cols).map(|i| ((i * 17) % 11) as f64 * 0.1 - 0.5).collect();
        let eps = 1e-5f64;
        let (dx_, dg, db, ddy) = (upload(&s, &x), upload(&s, &gamma), upload(&s, &beta), upload(&s, &dy));
        let mut y = s.alloc_zeros::<f64>(rows * cols).unwrap();
        let mut mean = s.alloc_zeros::<f64>(rows).unwrap();
        let mut rstd = s.alloc_zeros::<f64>(rows).unwrap();
        let (r, c) = (rows as i64, cols as i64);
        let f = lib.source_function("layer_norm.cu", "layer_norm_fwd_f64").unwrap();
        let cfg = launch::rows(rows, cols).unwrap().config();
        unsafe { s.launch_builder(&f).arg(&dx_).arg(&dg).arg(&db).arg(&mut y).arg(&mut mean).arg(&mut rstd).arg(&r).arg(&c).arg(&eps).launch(cfg) }
            .unwrap();
        let mut want_y = vec![0.0; rows * cols];
        let mut want_dx = vec![0.0; rows * cols];
        let (mut want_dg, mut want_db) = (vec![0.0; cols], vec![0.0; cols]);
        for i in 0..rows {
            let xr = &x[i * cols..(i + 1) * cols];
            let mu = xr.iter().sum::<f64>() / cols as f64;
            let var = xr.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / cols as f64;
            let rs = 1.0 / (var + eps).sqrt();
            let xhat: Vec<f64> = xr.iter().map(|v| (v - mu) * rs).collect();
            let g: Vec<f64> = (0..cols).map(|j| dy[i * cols + j] * gamma[j]).collect();
            let mg = g.iter().sum::<f64>() / cols as f64;
            let mgx = g.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f64>() / cols as f64;
            for j in 0..cols {
                want_y[i * cols + j] = xhat[j] * gamma[j] + beta[j];
                want_dx[i * cols + j] = rs * (g[j] - mg - xhat[j] * mgx);
                want_dg[j] += dy[i * cols + j] * xhat[j];
                want_db[j] += dy[i * cols + j];
            }
        }
        assert_close(&s.clone_dtoh(&y).unwrap(), &want_y, 1e-12, "layer_norm y");
        let mut dx = s.alloc_zeros::<f64>(rows * cols).unwrap();
        let fb = lib.source_function("layer_norm.cu", "layer_norm_bwd_dx_f64").unwrap();
        unsafe { s.launch_builder(&fb).arg(&dx_).arg(&ddy).arg(&dg).arg(&mean).arg(&rstd).arg(&mut dx).arg(&r).arg(&c).launch(cfg) }.unwrap();
        assert_close(&s.clone_dtoh(&dx).unwrap(), &want_dx, 1e-10, "layer_norm dx");
        let (mut dgamma, mut dbeta) = (s.alloc_zeros::<f64>(cols).unwrap(), s.alloc_zeros::<f64>(cols).unwrap());
        let fp = lib.source_function("layer_norm.cu", "layer_norm_bwd_params_f64").unwrap();
        let pcfg = launch::elementwise(cols, lib.sm_count().unwrap()).unwrap().config();
        unsafe { s.launch_builder(&fp).arg(&dx_).arg(&ddy).arg(&mean).arg(&rstd).arg(&mut dgamma).arg(&mut dbeta).arg(&r).arg(&c).launch(pcfg) }
            .unwrap();
        assert_close(&s.clone_dtoh(&dgamma).unwrap(), &want_dg, 1e-10, "layer_norm dgamma");
        assert_close(&s.clone_dtoh(&dbeta).unwrap(), &want_db, 1e-12, "layer_norm dbeta");
    }

    #[test]
    #[ignore = "needs a CUDA device"]
    fn cross_entropy_forward_and_backward_match_references() {
        let lib = library();
        let s = lib.device().default_stream().cuda().clone();
        let (rows, classes) = (5usize, 1000usize);
        let x: Vec<f64> = (0..rows * classes).map(|i| ((i * 7) % 23) as f64 * 0.4 - 4.0).collect();
        let target: Vec<i64> = vec![3, -100, 999, 0, 500]; // row 1 ignored
        let dloss: Vec<f64> = vec![0.25; rows];
        let (dx_, dt, dl) = (upload(&s, &x), upload(&s, &target), upload(&s, &dloss));
        let mut loss = s.alloc_zeros::<f64>(rows).unwrap();
        let mut lse = s.alloc_zeros::<f64>(rows).unwrap();
        let mut bad = s.alloc_zeros::<i32>(1).unwrap();
        let (r, c, ignore) = (rows as i64, classes as i64, -100i64);
        let f = lib.source_function("cross_entropy.cu", "cross_entropy_fwd_f64").unwrap();
        let cfg = launch::rows(rows, classes).unwrap().config();
        unsafe { s.launch_builder(&f).arg(&dx_).arg(&dt).arg(&mut loss).arg(&mut lse).arg(&r).arg(&c).arg(&ignore).arg(&mut bad).launch(cfg) }
            .unwrap();
        let lse_ref: Vec<f64> = x
            .chunks(classes)
            .map(|row| {
                let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
            })
            .collect();
        let want: Vec<f64> = (0..rows).map(|i| if target[i] == -100 { 0.0 } else { lse_ref[i] - x[i * classes + target[i] as usize] }).collect();
        assert_close(&s.clone_dtoh(&loss).unwrap(), &want, 1e-12, "cross_entropy loss");
        assert_eq!(s.clone_dtoh(&bad).unwrap(), vec![0]);
        let mut dx = s.alloc_zeros::<f64>(rows * classes).unwrap();
        let fb = lib.source_function("cross_entropy.cu", "cross_entropy_bwd_f64").unwrap();
        let bcfg = launch::elementwise(rows * classes, lib.sm_count().unwrap()).unwrap().config();
        unsafe { s.launch_builder(&fb).arg(&dx_).arg(&dt).arg(&lse).arg(&dl).arg(&mut dx).arg(&r).arg(&c).arg(&ignore).launch(bcfg) }.unwrap();
        let want_dx: Vec<f64> = (0..rows * classes)
            .map(|k| {
                let (i, j) = (k / classes, k % classes);
                if target[i] == -100 {
                    0.0
                } else {
                    0.25 * ((x[k] - lse_ref[i]).exp() - if j as i64 == target[i] { 1.0 } else { 0.0 })
                }
            })
            .collect();
        assert_close(&s.clone_dtoh(&dx).unwrap(), &want_dx, 1e-12, "cross_entropy dx");
        // A target out of range is reported (row 2 + 1) and its loss is NaN.
        let bad_t = upload(&s, &[3i64, 0, 1000, 0, 0]);
        let mut bad = s.alloc_zeros::<i32>(1).unwrap();
        unsafe { s.launch_builder(&f).arg(&dx_).arg(&bad_t).arg(&mut loss).arg(&mut lse).arg(&r).arg(&c).arg(&ignore).arg(&mut bad).launch(cfg) }
            .unwrap();
        assert_eq!(s.clone_dtoh(&bad).unwrap(), vec![3]);
        assert!(s.clone_dtoh(&loss).unwrap()[2].is_nan());
    }

    #[test]
    #[ignore = "needs a CUDA device"]
    fn embedding_gathers_and_accumulates_repeated_ids() {
        let lib = library();
        let s = lib.device().default_stream().cuda().clone();
        let (vocab, dim) = (10usize, 300usize);
        let w: Vec<f32> = (0..vocab * dim).map(|i| i as f32 * 0.001).collect();
        let ids: Vec<i64> = vec![4, 0, 4, 9, 2, 4];
        let n = ids.len();
        let (dw, di) = (upload(&s, &w), upload(&s, &ids));
        let mut out = s.alloc_zeros::<f32>(n * dim).unwrap();
        let mut bad = s.alloc_zeros::<i32>(1).unwrap();
        let (nn, v, d) = (n as i64, vocab as i64, dim as i64);
        let cfg = launch::elementwise(n * dim, lib.sm_count().unwrap()).unwrap().config();
        let f = lib.source_function("embedding.cu", "embedding_fwd_f32").unwrap();
        unsafe { s.launch_builder(&f).arg(&di).arg(&dw).arg(&mut out).arg(&nn).arg(&v).arg(&d).arg(&mut bad).launch(cfg) }.unwrap();
        let want: Vec<f32> = ids.iter().flat_map(|&id| w[id as usize * dim..(id as usize + 1) * dim].to_vec()).collect();
        assert_eq!(s.clone_dtoh(&out).unwrap(), want);
        assert_eq!(s.clone_dtoh(&bad).unwrap(), vec![0]);
        // Backward with padding_idx 2: id 4 appears three times, so its row gets 3 * dy.
        let dy: Vec<f32> = vec![1.0; n * dim];
        let ddy = upload(&s, &dy);
        let mut dweight = s.alloc_zeros::<f32>(vocab * dim).unwrap();
        let pad = 2i64;
        let fb = lib.source_function("embedding.cu", "embedding_bwd_f32").unwrap();
        unsafe { s.launch_builder(&fb).arg(&di).arg(&ddy).arg(&mut dweight).arg(&nn).arg(&v).arg(&d).arg(&pad).launch(cfg) }.unwrap();
        let got = s.clone_dtoh(&dweight).unwrap();
        for id in 0..vocab {
            let expect = match id {
                4 => 3.0,
                0 | 9 => 1.0,
                _ => 0.0, // 2 is padding; the rest unused
            };
            assert!(got[id * dim..(id + 1) * dim].iter().all(|&g| g == expect), "row {id}");
        }
        // An id outside the vocabulary: reported as position + 1, row filled with NaN.
        let bad_ids = upload(&s, &[1i64, 10]);
        let mut out2 = s.alloc_zeros::<f32>(2 * dim).unwrap();
        let mut bad = s.alloc_zeros::<i32>(1).unwrap();
        let two = 2i64;
        unsafe { s.launch_builder(&f).arg(&bad_ids).arg(&dw).arg(&mut out2).arg(&two).arg(&v).arg(&d).arg(&mut bad).launch(cfg) }.unwrap();
        assert_eq!(s.clone_dtoh(&bad).unwrap(), vec![2]);
        assert!(s.clone_dtoh(&out2).unwrap()[dim..].iter().all(|v| v.is_nan()));
    }

    /// Three AdamW steps (decoupled decay, amsgrad) against the formula of
    /// tensorbrain/src/optim/adam.rs written out here in f64.
    #[test]
    #[ignore = "needs a CUDA device"]
    fn adamw_steps_match_the_cpu_formula() {
        let lib = library();
        let s = lib.device().default_stream().cuda().clone();
        let n = 1000usize;
        let (lr, b1, b2, eps, wd) = (1e-3f64, 0.9f64, 0.999f64, 1e-8f64, 0.01f64);
        let mut p: Vec<f64> = (0..n).map(|i| (i as f64 * 0.01).sin()).collect();
        let (mut m, mut v, mut vmax) = (vec![0.0f64; n], vec![0.0f64; n], vec![0.0f64; n]);
        let mut dp = upload(&s, &p);
        let (mut dm, mut dv, mut dvm) = (upload(&s, &m), upload(&s, &v), upload(&s, &vmax));
        let f = lib.source_function("adam.cu", "adam_step_f64").unwrap();
        let cfg = launch::elementwise(n, lib.sm_count().unwrap()).unwrap().config();
        for step in 1..=3 {
            let g: Vec<f64> = (0..n).map(|i| ((i * step) as f64 * 0.37).cos()).collect();
            let dg = upload(&s, &g);
            let (bc1, bc2) = (1.0 - b1.powi(step as i32), 1.0 - b2.powi(step as i32));
            let (step_size, bc2_sqrt, w1, w2, decay_factor) = (lr / bc1, bc2.sqrt(), 1.0 - b1, 1.0 - b2, 1.0 - lr * wd);
            let (decay, maximize, nn) = (2i32, 0i32, n as i64);
            unsafe {
                s.launch_builder(&f)
                    .arg(&mut dp).arg(&dg).arg(&mut dm).arg(&mut dv).arg(&mut dvm).arg(&nn)
                    .arg(&step_size).arg(&bc2_sqrt).arg(&w1).arg(&b2).arg(&w2).arg(&eps).arg(&wd).arg(&decay_factor)
                    .arg(&decay).arg(&maximize)
                    .launch(cfg)
            }
            .unwrap();
            for i in 0..n {
                p[i] *= decay_factor;
                m[i] += w1 * (g[i] - m[i]);
                v[i] = v[i] * b2 + (1.0 - b2) * g[i] * g[i];
                vmax[i] = vmax[i].max(v[i]);
                p[i] -= step_size * (m[i] / (vmax[i].sqrt() / bc2_sqrt + eps));
            }
        }
        assert_close(&s.clone_dtoh(&dp).unwrap(), &p, 1e-12, "adamw params");
        assert_close(&s.clone_dtoh(&dm).unwrap(), &m, 1e-12, "adamw m");
        assert_close(&s.clone_dtoh(&dvm).unwrap(), &vmax, 1e-12, "adamw vmax");
    }
}
