//! Compiles every CUDA source, and fused kernels generated from `Program`s, with NVRTC for
//! sm_80 and sm_90, failing on any error or warning. NVRTC needs no GPU, so this runs on CPU
//! machines; point `TENSORBRAIN_NVRTC_LIB` at libnvrtc.so.12 (docs/cuda.md says how to get it).
//!
//! Without NVRTC the test fails when `CI=true` and otherwise prints why it did nothing.
#![cfg(feature = "cuda")]

use tensorbrain_kernels::cuda::nvrtc::{compile_cubin, compile_ptx, load_nvrtc, PtxCache, NVRTC_ENV};
use tensorbrain_kernels::cuda::sources::{full_source, SOURCES};

const ARCHS: &[&str] = &["sm_80", "sm_90"];

/// Whether NVRTC is available; panics in CI when it is not, so CI cannot pass vacuously.
fn nvrtc_or_skip(test: &str) -> bool {
    match load_nvrtc() {
        Ok(v) => {
            eprintln!("{test}: NVRTC {}.{}", v.major, v.minor);
            true
        }
        Err(e) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{test}: NVRTC is required in CI (CI=true): {e}");
            }
            // Written to the stderr handle, not with eprintln!, which the test harness captures
            // and hides for a passing test: a skip must be visible.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED {test} (needs {NVRTC_ENV}): {e}");
            false
        }
    }
}

/// Compiles `source`, printing NVRTC's log, and fails on an error or any warning.
fn compile_clean(name: &str, source: &str, arch: &str) -> String {
    match compile_ptx(name, source, arch, &[]) {
        Ok(c) => {
            assert!(c.log.is_empty(), "NVRTC warnings for {name} ({arch}):\n{}", c.log);
            c.ptx
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn every_cu_source_compiles_without_warnings() {
    if !nvrtc_or_skip("every_cu_source_compiles_without_warnings") {
        return;
    }
    for (name, _) in SOURCES {
        let src = full_source(name).unwrap();
        for arch in ARCHS {
            let ptx = compile_clean(name, &src, arch);
            let target = format!(".target {arch}");
            assert!(ptx.contains(&target), "{name}: PTX for {arch} lacks `{target}`");
            // Both precisions of every kernel exist, with unmangled (extern "C") names.
            for line in src.lines().filter(|l| l.contains("extern \"C\" __global__ void ")) {
                let kname = line.split("void ").nth(1).unwrap().split('(').next().unwrap().trim();
                if kname.contains("##") {
                    continue; // macro bodies; their expansions are checked below by name
                }
                assert!(ptx.contains(&format!(".entry {kname}(")), "{name}: no entry {kname} in PTX");
            }
        }
    }
}

#[test]
fn macro_generated_kernels_are_in_the_ptx() {
    if !nvrtc_or_skip("macro_generated_kernels_are_in_the_ptx") {
        return;
    }
    let expect = [
        ("elementwise.cu", &["exp_f32", "gelu_tanh_f64", "copy_f32", "add_f64", "maximum_f32", "pow_f64", "eq_f32", "ge_f64", "where_f32", "where_f64", "affine_f32", "clamp_f64", "elu_f32", "cast_u8_f32", "cast_i64_f64", "cast_f64_f32", "copy_b1", "copy_b2", "copy_b4", "copy_b8", "cast_f16_f32", "cast_bf16_f64", "cast_f64_f16", "cast_f32_bf16"][..]),
        ("index.cu", &["index_select_b1", "index_select_b2", "index_select_b4", "index_select_b8", "index_add_f32", "index_add_f64"][..]),
        ("layer_norm.cu", &["layer_norm_fwd_f32", "layer_norm_bwd_dx_f64", "layer_norm_bwd_params_f32"][..]),
    ];
    for (file, names) in expect {
        let ptx = compile_clean(file, &full_source(file).unwrap(), "sm_80");
        for n in names {
            assert!(ptx.contains(&format!(".entry {n}(")), "{file}: no entry {n}");
        }
    }
}

#[test]
fn a_broken_source_is_an_error_with_the_log() {
    if !nvrtc_or_skip("a_broken_source_is_an_error_with_the_log") {
        return;
    }
    let err = compile_ptx("broken.cu", "extern \"C\" __global__ void k(float* x) { x[0] = undefined_name; }", "sm_80", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("broken.cu") && err.contains("undefined_name"), "{err}");
}

#[test]
fn a_warning_is_reported_in_the_log() {
    if !nvrtc_or_skip("a_warning_is_reported_in_the_log") {
        return;
    }
    // An unused variable: proves warnings reach `log`, so the zero-warning checks above mean
    // something.
    let c = compile_ptx("warn.cu", "extern \"C\" __global__ void k(float* x) { int unused = 3; x[0] = 1.0f; }", "sm_80", &[]).unwrap();
    assert!(!c.log.is_empty(), "expected a warning in the log");
}

#[test]
fn the_cache_compiles_each_arch_and_source_once() {
    if !nvrtc_or_skip("the_cache_compiles_each_arch_and_source_once") {
        return;
    }
    let cache = PtxCache::new();
    let src = full_source("reduce.cu").unwrap();
    let a = cache.get_or_compile("reduce.cu", &src, "sm_80", &[]).unwrap();
    let b = cache.get_or_compile("reduce.cu", &src, "sm_80", &[]).unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    assert_eq!(cache.compiles(), 1);
    cache.get_or_compile("reduce.cu", &src, "sm_90", &[]).unwrap();
    assert_eq!(cache.compiles(), 2);
}

#[test]
fn generated_fused_kernels_compile_without_warnings() {
    use tensorbrain_kernels::cuda::codegen::{kernel_name, module_source, samples, DType};
    use tensorbrain_kernels::fused::{BinaryFn, Instr, Program, UnaryFn};
    if !nvrtc_or_skip("generated_fused_kernels_compile_without_warnings") {
        return;
    }
    let mut programs: Vec<(String, Program, DType)> = samples().into_iter().map(|(n, p, d)| (n.to_string(), p, d)).collect();
    // A program whose only input is never read after dead-code removal (its parameter stays,
    // unused), and one that is a bare copy (a load straight into the output).
    let unused_input = Program::new(&[Instr::Load(0), Instr::Load(1), Instr::Unary(UnaryFn::Exp, 1)], 2, 2).unwrap();
    let copy = Program::new(&[Instr::Load(0)], 1, 0).unwrap();
    let gelu = Program::new(&[Instr::Load(0), Instr::Load(1), Instr::Binary(BinaryFn::Add, 0, 1), Instr::Unary(UnaryFn::Gelu, 2)], 2, 3).unwrap();
    for p in [unused_input, copy, gelu] {
        for dt in [DType::F32, DType::F64] {
            programs.push((kernel_name(&p, dt), p.clone(), dt));
        }
    }
    for (name, p, dt) in &programs {
        let src = module_source(p, name, *dt);
        for arch in ARCHS {
            let ptx = compile_clean(name, &src, arch);
            assert!(ptx.contains(&format!(".entry {name}(")), "{name}: no entry in PTX");
        }
    }
}

/// Compiling to CUBIN runs ptxas inside NVRTC: register, shared-memory and parameter-space
/// limits are checked for the real architectures, and spills to local memory are warnings
/// (so they fail here: a spilling kernel is a performance bug worth knowing about).
#[test]
fn every_source_and_sample_assembles_for_sm_80_and_sm_90() {
    use tensorbrain_kernels::cuda::codegen::{module_source, samples};
    if !nvrtc_or_skip("every_source_and_sample_assembles_for_sm_80_and_sm_90") {
        return;
    }
    let mut all: Vec<(String, String)> = SOURCES.iter().map(|(n, _)| (n.to_string(), full_source(n).unwrap())).collect();
    all.extend(samples().into_iter().map(|(n, p, d)| (n.to_string(), module_source(&p, n, d))));
    for (name, src) in &all {
        for arch in ARCHS {
            match compile_cubin(name, src, arch, &["--ptxas-options=--warn-on-spills"]) {
                Ok((cubin, log)) => {
                    assert!(log.is_empty(), "NVRTC/ptxas warnings for {name} ({arch}):\n{log}");
                    // An ELF image.
                    assert_eq!(&cubin[..4], b"\x7fELF", "{name} ({arch}): not an ELF CUBIN");
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
}

#[test]
fn ptxas_output_reaches_the_log() {
    // With --verbose ptxas reports register use; seeing it proves that ptxas ran and that its
    // warnings (checked empty above) would be in the same log.
    if !nvrtc_or_skip("ptxas_output_reaches_the_log") {
        return;
    }
    let (_, log) = compile_cubin("verbose.cu", &full_source("softmax.cu").unwrap(), "sm_90", &["--ptxas-options=--verbose"]).unwrap();
    assert!(log.contains("ptxas info") && log.contains("softmax_fwd_f32"), "{log}");
}
