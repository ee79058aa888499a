//! Creation ops: ranges, identity, and the seeded random samplers.

use tensorbrain::ops::with_default_generator;
use tensorbrain::{manual_seed, DType, Generator, Tensor};

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

// ---------------------------------------------------------------------------------------------
// arange
// ---------------------------------------------------------------------------------------------

#[test]
fn arange_values_and_lengths() {
    assert_eq!(Tensor::arange(0.0, 5.0, 1.0, DType::F32).to_vec::<f32>(), [0., 1., 2., 3., 4.]);
    assert_eq!(Tensor::arange(2.0, 11.0, 3.0, DType::F32).to_vec::<f32>(), [2., 5., 8.]);
    assert_eq!(Tensor::arange(-1.0, 1.0, 0.5, DType::F64).to_vec::<f64>(), [-1.0, -0.5, 0.0, 0.5]);
    // ceil((3.3 - 0) / 0.7) = 5 values; the last one, 2.8, is below the end.
    let t = Tensor::arange(0.0, 3.3, 0.7, DType::F64);
    assert_eq!(t.shape(), [5]);
    let v = t.to_vec::<f64>();
    assert!((v[4] - 2.8).abs() < 1e-12, "{v:?}");
    // Negative step counts down.
    assert_eq!(Tensor::arange(5.0, -1.0, -1.5, DType::F32).to_vec::<f32>(), [5.0, 3.5, 2.0, 0.5]);
    // Integer dtype.
    let t = Tensor::arange(3.0, 7.0, 1.0, DType::I64);
    assert_eq!(t.dtype(), DType::I64);
    assert_eq!(t.to_vec::<i64>(), [3, 4, 5, 6]);
}

#[test]
fn arange_empty_for_either_step_sign() {
    for step in [1.0, -1.0] {
        let t = Tensor::arange(3.0, 3.0, step, DType::F32);
        assert_eq!(t.shape(), [0]);
    }
}

#[test]
fn arange_rejects_bad_steps() {
    let e = Tensor::try_arange(0.0, 5.0, 0.0, DType::F32).unwrap_err().to_string();
    assert!(e.contains("arange") && e.contains("nonzero"), "{e}");
    let e = Tensor::try_arange(0.0, 5.0, -1.0, DType::F32).unwrap_err().to_string();
    assert!(e.contains("arange") && e.contains("wrong sign") && e.contains("-1"), "{e}");
    let e = Tensor::try_arange(5.0, 0.0, 1.0, DType::F32).unwrap_err().to_string();
    assert!(e.contains("wrong sign"), "{e}");
    assert!(Tensor::try_arange(0.0, f64::INFINITY, 1.0, DType::F32).is_err());
    assert!(Tensor::try_arange(f64::NAN, 1.0, 1.0, DType::F32).is_err());
    assert!(Tensor::try_arange(0.0, 1.0, f64::NAN, DType::F32).is_err());
}

#[test]
#[should_panic(expected = "arange")]
fn arange_panicking_form_names_the_op() {
    Tensor::arange(0.0, 1.0, 0.0, DType::F32);
}

// ---------------------------------------------------------------------------------------------
// linspace / eye
// ---------------------------------------------------------------------------------------------

#[test]
fn linspace_values() {
    assert_eq!(Tensor::linspace(0.0, 1.0, 5, DType::F32).to_vec::<f32>(), [0.0, 0.25, 0.5, 0.75, 1.0]);
    assert_eq!(Tensor::linspace(5.0, -5.0, 11, DType::F64).to_vec::<f64>(), [5., 4., 3., 2., 1., 0., -1., -2., -3., -4., -5.]);
    assert_eq!(Tensor::linspace(1.5, 4.0, 1, DType::F32).to_vec::<f32>(), [1.5]);
    assert_eq!(Tensor::linspace(1.5, 4.0, 0, DType::F32).shape(), [0]);
    assert_eq!(Tensor::linspace(0.0, 10.0, 3, DType::I64).to_vec::<i64>(), [0, 5, 10]);
}

#[test]
fn linspace_hits_both_ends_exactly() {
    // PyTorch computes the second half from the end, so the last value is `end` exactly even
    // when `step` is inexact.
    for (s, e, n) in [(0.1f64, 0.7, 7usize), (-2.0, 3.0, 7), (0.0, 1.0, 50), (1e-3, 123.456, 33)] {
        let v = Tensor::linspace(s, e, n, DType::F32).to_vec::<f32>();
        assert_eq!(v[0], s as f32);
        assert_eq!(v[n - 1], e as f32);
        let v = Tensor::linspace(s, e, n, DType::F64).to_vec::<f64>();
        assert_eq!((v[0], v[n - 1]), (s, e));
        // Evenly spaced within rounding.
        let step = (e - s) / (n - 1) as f64;
        for (i, x) in v.iter().enumerate() {
            assert!((x - (s + i as f64 * step)).abs() < 1e-12 * e.abs().max(1.0), "{i}: {x}");
        }
    }
}

#[test]
fn linspace_uses_pytorch_two_sided_formula_in_f32() {
    // torch.linspace(-2, 3, 7) in float32: step = 5/6 in f32; the first 3 values are
    // start + i*step, the last 4 are end - (6 - i)*step (all in f32).
    let step = 5.0f32 / 6.0;
    let want: Vec<f32> = (0..7).map(|i| if i < 3 { -2.0 + step * i as f32 } else { 3.0 - step * (6 - i) as f32 }).collect();
    assert_eq!(Tensor::linspace(-2.0, 3.0, 7, DType::F32).to_vec::<f32>(), want);
}

#[test]
fn eye_square_and_rectangular() {
    assert_eq!(Tensor::eye(3, DType::F32).to_vec2::<f32>(), [[1., 0., 0.], [0., 1., 0.], [0., 0., 1.]]);
    assert_eq!(Tensor::eye(0, DType::F64).shape(), [0, 0]);
    let t = Tensor::eye_m(2, 3, DType::I64);
    assert_eq!((t.dtype(), t.to_vec2::<i64>()), (DType::I64, vec![vec![1, 0, 0], vec![0, 1, 0]]));
    assert_eq!(Tensor::eye_m(3, 2, DType::U8).to_vec::<u8>(), [1, 0, 0, 1, 0, 0]);
}

// ---------------------------------------------------------------------------------------------
// Random: ranges and moments
// ---------------------------------------------------------------------------------------------

const N: usize = 100_000;

#[test]
fn rand_range_and_moments_every_float_dtype() {
    manual_seed(1);
    for dtype in [DType::F32, DType::F64, DType::F16, DType::BF16] {
        let t = Tensor::rand(&[N / 100, 100], dtype);
        assert_eq!((t.shape(), t.dtype()), (&[N / 100, 100][..], dtype));
        let v = t.to_vec::<f64>();
        assert!(v.iter().all(|&x| (0.0..1.0).contains(&x)), "{dtype}: a value outside [0, 1)");
        let (mean, std) = mean_std(&v);
        // U(0,1): mean 1/2, std 1/sqrt(12) = 0.2887; the mean's standard error is 0.0009.
        assert!((mean - 0.5).abs() < 0.005, "{dtype}: mean {mean}");
        assert!((std - 0.288_675).abs() < 0.005, "{dtype}: std {std}");
        // Every tenth of the interval gets about a tenth of the samples.
        let mut hist = [0usize; 10];
        v.iter().for_each(|&x| hist[(x * 10.0) as usize] += 1);
        assert!(hist.iter().all(|&h| (h as f64 - N as f64 / 10.0).abs() < 600.0), "{dtype}: {hist:?}");
    }
}

#[test]
fn randn_moments_every_float_dtype() {
    manual_seed(2);
    for dtype in [DType::F32, DType::F64, DType::F16, DType::BF16] {
        let v = Tensor::randn(&[N], dtype).to_vec::<f64>();
        let (mean, std) = mean_std(&v);
        assert!(mean.abs() < 0.015, "{dtype}: mean {mean}");
        assert!((std - 1.0).abs() < 0.015, "{dtype}: std {std}");
        // Shape of the distribution: P(|z| < 1) = 0.6827, P(|z| < 2) = 0.9545, and tails exist.
        let within = |k: f64| v.iter().filter(|x| x.abs() < k).count() as f64 / N as f64;
        assert!((within(1.0) - 0.6827).abs() < 0.006, "{dtype}: {}", within(1.0));
        assert!((within(2.0) - 0.9545).abs() < 0.004, "{dtype}: {}", within(2.0));
        assert!(v.iter().any(|&x| x > 3.5) && v.iter().any(|&x| x < -3.5), "{dtype}: no tails");
        // Skewness ~ 0 and kurtosis ~ 3.
        let m3 = v.iter().map(|x| (x - mean).powi(3)).sum::<f64>() / N as f64 / std.powi(3);
        let m4 = v.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / N as f64 / std.powi(4);
        assert!(m3.abs() < 0.05 && (m4 - 3.0).abs() < 0.1, "{dtype}: skew {m3} kurtosis {m4}");
    }
}

#[test]
fn randn_neighbours_are_uncorrelated() {
    // Box-Muller makes values in pairs; consecutive values must still be independent.
    let v = Tensor::randn_with(&[N], DType::F32, &mut Generator::new(9)).to_vec::<f64>();
    let corr = |lag: usize| v.iter().zip(&v[lag..]).map(|(a, b)| a * b).sum::<f64>() / (N - lag) as f64;
    for lag in [1, 2, 3] {
        assert!(corr(lag).abs() < 0.015, "lag {lag}: {}", corr(lag));
    }
    // Their squares too (independence, not just zero correlation).
    let sq = |lag: usize| v.iter().zip(&v[lag..]).map(|(a, b)| (a * a - 1.0) * (b * b - 1.0)).sum::<f64>() / (N - lag) as f64;
    assert!(sq(1).abs() < 0.05, "{}", sq(1));
}

#[test]
fn randint_range_and_uniformity() {
    manual_seed(3);
    let t = Tensor::randint(-3, 4, &[N]);
    assert_eq!((t.dtype(), t.shape()), (DType::I64, &[N][..]));
    let v = t.to_vec::<i64>();
    let mut counts = [0usize; 7];
    for &x in &v {
        assert!((-3..4).contains(&x), "{x}");
        counts[(x + 3) as usize] += 1;
    }
    let expect = N as f64 / 7.0;
    assert!(counts.iter().all(|&c| (c as f64 - expect).abs() < 600.0), "{counts:?}");
    // A single-value range and the widest range both work.
    assert!(Tensor::randint(5, 6, &[10]).to_vec::<i64>().iter().all(|&x| x == 5));
    let wide = Tensor::randint(i64::MIN, i64::MAX, &[1000]).to_vec::<i64>();
    assert!(wide.iter().any(|&x| x < -(1 << 62)) && wide.iter().any(|&x| x > 1 << 62));
}

#[test]
fn randint_rejects_empty_range() {
    let e = Tensor::try_randint(4, 4, &[3]).unwrap_err().to_string();
    assert!(e.contains("randint") && e.contains("low (4)") && e.contains("high (4)"), "{e}");
    assert!(Tensor::try_randint(5, -5, &[3]).is_err());
}

#[test]
fn random_float_samplers_reject_integer_dtypes() {
    let e = Tensor::try_rand(&[2], DType::I64).unwrap_err().to_string();
    assert!(e.contains("rand") && e.contains("i64"), "{e}");
    let e = Tensor::try_randn(&[2], DType::U8).unwrap_err().to_string();
    assert!(e.contains("randn") && e.contains("u8"), "{e}");
    assert!(Tensor::from_vec(vec![1i64, 2], &[2]).try_rand_like().is_err());
}

#[test]
fn like_forms_copy_shape_and_dtype() {
    let x = Tensor::zeros(&[2, 0, 3], DType::F64);
    let r = x.rand_like();
    assert_eq!((r.shape(), r.dtype()), (&[2, 0, 3][..], DType::F64));
    let x = Tensor::zeros(&[4, 5], DType::BF16);
    let r = x.randn_like();
    assert_eq!((r.shape(), r.dtype()), (&[4, 5][..], DType::BF16));
    assert!(!r.requires_grad());
    let s = Tensor::randn(&[], DType::F32);
    assert_eq!(s.shape(), [0usize; 0]);
}

// ---------------------------------------------------------------------------------------------
// Random: reproducibility and generator state
// ---------------------------------------------------------------------------------------------

#[test]
fn same_seed_same_stream_different_seed_different_stream() {
    manual_seed(42);
    let a = (Tensor::randn(&[100], DType::F32).to_vec::<f32>(), Tensor::rand(&[7], DType::F64).to_vec::<f64>());
    manual_seed(42);
    let b = (Tensor::randn(&[100], DType::F32).to_vec::<f32>(), Tensor::rand(&[7], DType::F64).to_vec::<f64>());
    assert_eq!(a, b);
    manual_seed(43);
    let c = Tensor::randn(&[100], DType::F32).to_vec::<f32>();
    assert!(c.iter().zip(&a.0).filter(|(x, y)| x == y).count() < 3);
    // Consecutive draws differ.
    manual_seed(42);
    let d1 = Tensor::rand(&[50], DType::F32).to_vec::<f32>();
    let d2 = Tensor::rand(&[50], DType::F32).to_vec::<f32>();
    assert_ne!(d1, d2);
    // An explicit generator with the same seed gives the default generator's stream.
    assert_eq!(Tensor::rand_with(&[50], DType::F32, &mut Generator::new(42)).to_vec::<f32>(), d1);
}

#[test]
fn generator_state_restores_the_continuation() {
    let mut g = Generator::new(7);
    let _ = Tensor::randn_with(&[13], DType::F32, &mut g);
    let _ = Tensor::rand_with(&[5], DType::F64, &mut g);
    let saved = g.state();
    assert_eq!(saved.0, 7);
    let a = Tensor::randn_with(&[1000], DType::F32, &mut g).to_vec::<f32>();
    let ai = Tensor::randint_with(0, 100, &[20], &mut g).to_vec::<i64>();

    // Restoring into the same generator, and into a fresh one with another seed.
    g.set_state(saved);
    assert_eq!(Tensor::randn_with(&[1000], DType::F32, &mut g).to_vec::<f32>(), a);
    assert_eq!(Tensor::randint_with(0, 100, &[20], &mut g).to_vec::<i64>(), ai);
    let mut h = Generator::new(999);
    h.set_state(saved);
    assert_eq!(Tensor::randn_with(&[1000], DType::F32, &mut h).to_vec::<f32>(), a);
    assert_eq!(h.state(), {
        let mut k = Generator::new(0);
        k.set_state(saved);
        let _ = Tensor::randn_with(&[1000], DType::F32, &mut k);
        k.state()
    });
}

#[test]
fn default_generator_state_round_trips() {
    manual_seed(5);
    let _ = Tensor::rand(&[3], DType::F32);
    let saved = with_default_generator(|g| g.state());
    let a = Tensor::randn(&[64], DType::F64).to_vec::<f64>();
    with_default_generator(|g| g.set_state(saved));
    assert_eq!(Tensor::randn(&[64], DType::F64).to_vec::<f64>(), a);
}

#[test]
fn large_tensors_match_piecewise_generation() {
    // Above the parallel threshold the tensor is filled in chunks that seek in the stream; the
    // result must equal drawing the same elements in small sequential pieces.
    let n = 200_000;
    let pieces = 40; // 5000 elements each (even, so Box-Muller pairs line up)
    type Draw = fn(usize, &mut Generator) -> Vec<f64>;
    let draws: [(&str, Draw); 5] = [
        ("rand f32", |n, g| Tensor::rand_with(&[n], DType::F32, g).to_vec::<f64>()),
        ("rand f64", |n, g| Tensor::rand_with(&[n], DType::F64, g).to_vec::<f64>()),
        ("randn f32", |n, g| Tensor::randn_with(&[n], DType::F32, g).to_vec::<f64>()),
        ("randn f64", |n, g| Tensor::randn_with(&[n], DType::F64, g).to_vec::<f64>()),
        ("randint", |n, g| Tensor::randint_with(-50, 50, &[n], g).to_vec::<f64>()),
    ];
    for (name, draw) in draws {
        let mut g = Generator::new(11);
        let whole = draw(n, &mut g);
        let after_whole = draw(10, &mut g);
        let mut h = Generator::new(11);
        let mut parts = Vec::new();
        for _ in 0..pieces {
            parts.extend(draw(n / pieces, &mut h));
        }
        assert!(whole == parts, "{name}: parallel fill differs from sequential pieces");
        assert_eq!(draw(10, &mut h), after_whole, "{name}: generator advanced differently");
    }
}

#[test]
fn odd_lengths_advance_by_whole_pairs() {
    // randn of an odd length uses a whole last pair; the next draw starts after it.
    let mut g = Generator::new(3);
    let a = Tensor::randn_with(&[5], DType::F32, &mut g).to_vec::<f32>();
    let b = Tensor::randn_with(&[2], DType::F32, &mut g).to_vec::<f32>();
    let mut h = Generator::new(3);
    let c = Tensor::randn_with(&[8], DType::F32, &mut h).to_vec::<f32>();
    assert_eq!(&c[..5], &a[..]);
    assert_eq!(&c[6..8], &b[..]);
}
