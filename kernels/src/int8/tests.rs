//! Every level against the unpacked scalar reference, bit for bit, on shapes that exercise
//! partial tiles, partial panels and k not a multiple of four.

use super::*;

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    fn u8s(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn i8s(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| self.next() as u8 as i8).collect()
    }
}

const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (1, 16, 4),
    (1, 17, 5),
    (2, 33, 7),
    (3, 15, 3),
    (5, 47, 13),
    (7, 64, 64),
    (9, 70, 130),
    (13, 100, 61),
    (64, 129, 255),
];

fn reference(m: usize, n: usize, k: usize, a: &[u8], lda: usize, w: &[i8]) -> Vec<i32> {
    let mut c = vec![0; m * n];
    gemm_u8i8_reference(m, n, k, a, lda, w, &mut c, n);
    c
}

#[test]
fn every_level_matches_the_reference_bit_for_bit() {
    let mut rng = Lcg(7);
    let levels = CpuLevel::supported();
    eprintln!("int8 levels on this CPU: {levels:?}");
    for &(m, n, k) in SHAPES {
        let lda = k + 3; // a strided view: rows do not touch
        let a = rng.u8s(m * lda);
        let w = rng.i8s(n * k);
        let want = reference(m, n, k, &a, lda, &w);
        let packed = PackedI8::pack(&w, n, k);
        for &level in &levels {
            let mut got = vec![i32::MIN; m * n];
            qgemm_with_level(level, m, &a, lda, &packed, Output::I32(&mut got), n);
            assert_eq!(got, want, "{level}: {m}x{n}x{k}");
        }
    }
}

#[test]
fn extreme_operands_do_not_saturate() {
    // 255 · -128 summed over k: a vpmaddubsw kernel would clamp each pair to -32 768.
    for &(m, n, k) in &[(3, 17, 9), (4, 32, 1024)] {
        for (x, y) in [(255u8, -128i8), (255, 127), (128, -128)] {
            let a = vec![x; m * k];
            let w = vec![y; n * k];
            let want = vec![i32::from(x) * i32::from(y) * k as i32; m * n];
            let packed = PackedI8::pack(&w, n, k);
            for level in CpuLevel::supported() {
                let mut got = vec![0; m * n];
                qgemm_with_level(level, m, &a, k, &packed, Output::I32(&mut got), n);
                assert_eq!(got, want, "{level}: {x} x {y}, k = {k}");
            }
        }
    }
}

#[test]
fn fused_outputs_match_the_reference_epilogue_on_every_level() {
    let mut rng = Lcg(11);
    for &(m, n, k) in SHAPES {
        let a = rng.u8s(m * k);
        let w = rng.i8s(n * k);
        let raw = reference(m, n, k, &a, k, &w);
        let packed = PackedI8::pack(&w, n, k);
        let scales: Vec<f32> = (0..n).map(|j| 1e-3 * (1.0 + j as f32 * 0.01)).collect();
        let bias: Vec<f32> = (0..n).map(|j| (j as f32 - 5.0) * 0.05).collect();
        let a_zero = 117;
        let (out_scale, out_zero) = (0.02f32, 3);
        let col_sums: Vec<i32> = w.chunks(k).map(|r| r.iter().map(|&v| i32::from(v)).sum()).collect();
        for relu in [false, true] {
            let epilogue = Epilogue { a_zero, scales: &scales, bias: Some(&bias), relu };
            let want_f32: Vec<f32> = (0..m * n).map(|i| epilogue.real(i % n, raw[i], col_sums[i % n])).collect();
            let want_u8: Vec<u8> = want_f32.iter().map(|&y| quantize_u8_one(y, 1.0 / out_scale, out_zero)).collect();
            if relu {
                assert!(want_f32.iter().all(|&y| y >= 0.0));
            }
            for level in CpuLevel::supported() {
                let mut got = vec![f32::NAN; m * n];
                qgemm_with_level(level, m, &a, k, &packed, Output::F32 { out: &mut got, epilogue }, n);
                assert_eq!(got, want_f32, "{level} f32: {m}x{n}x{k} relu={relu}");
                let mut got = vec![0u8; m * n];
                qgemm_with_level(level, m, &a, k, &packed, Output::U8 { out: &mut got, epilogue, out_scale, out_zero }, n);
                assert_eq!(got, want_u8, "{level} u8: {m}x{n}x{k} relu={relu}");
            }
        }
    }
}

#[test]
fn parallel_split_gives_the_same_bits_as_one_thread() {
    let mut rng = Lcg(3);
    // Both shapes are above the parallel threshold, so they split when threads exist: the
    // first by output-channel panels, the second (one panel over many rows, a narrow
    // convolution) by rows.
    for (m, n, k, split) in [(33, 300, 512, "by panels"), (4001, 16, 72, "by rows")] {
        assert!(m * n * k >= MIN_PARALLEL_MACS);
        let a = rng.u8s(m * k);
        let w = rng.i8s(n * k);
        let packed = PackedI8::pack(&w, n, k);
        let want = reference(m, n, k, &a, k, &w);
        for level in CpuLevel::supported() {
            let mut got = vec![0; m * n];
            qgemm_with_level(level, m, &a, k, &packed, Output::I32(&mut got), n);
            assert_eq!(got, want, "{level}, split {split}");
        }
    }
}

#[test]
fn pack_round_trips_and_sums_channels() {
    let mut rng = Lcg(5);
    let (n, k) = (19, 11);
    let w = rng.i8s(n * k);
    let packed = PackedI8::pack(&w, n, k);
    assert_eq!(packed.unpack(), w);
    let sums: Vec<i32> = w.chunks(k).map(|r| r.iter().map(|&v| i32::from(v)).sum()).collect();
    assert_eq!(packed.col_sums(), &sums[..]);
    assert_eq!(packed.packed_bytes(), 2 * PANEL * 12);
}

#[test]
fn quantize_rounds_half_to_even_and_clamps() {
    let src = [0.5f32, 1.5, 2.5, -0.5, -1.5, 1000.0, -1000.0, 0.49];
    let mut q = [0u8; 8];
    quantize_u8(&src, 1.0, 10, &mut q);
    assert_eq!(q, [10, 12, 12, 10, 8, 255, 0, 10]);
    let mut back = [0f32; 8];
    dequantize_u8(&q, 0.5, 10, &mut back);
    assert_eq!(back, [0.0, 1.0, 1.0, 0.0, -1.0, 122.5, -5.0, 0.0]);
    assert_eq!(min_max(&[3.0, -1.0, 2.0]), Some((-1.0, 3.0)));
    assert_eq!(min_max(&[3.0, f32::NAN]), None);
    assert_eq!(min_max(&[]), None);
}

#[test]
fn quantize_gives_the_same_bytes_on_every_level() {
    // Ties at every rounding boundary, values far outside the u8 range (and beyond 2^22,
    // where the scalar rounding clamps first), infinities, NaN, and a tail shorter than a
    // vector.
    let mut src: Vec<f32> = (-600..600).map(|i| i as f32 * 0.25).collect();
    src.extend([f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30, -1e30, 5e6, -5e6, 8_388_609.0, -0.0, 1e-40]);
    let mut state = 0x2545_f491u32;
    src.extend((0..1000).map(|_| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state as f32 / u32::MAX as f32 - 0.5) * 700.0
    }));
    src.push(0.5);
    for (scale, zero) in [(1.0f32, 0), (0.5, 128), (0.037, 17), (3.0, 255)] {
        let mut want = vec![0u8; src.len()];
        quantize_u8_with_level(CpuLevel::Scalar, &src, scale, zero, &mut want);
        for level in CpuLevel::supported() {
            for len in [src.len(), 31, 16, 7] {
                let mut got = vec![0u8; len];
                quantize_u8_with_level(level, &src[..len], scale, zero, &mut got);
                assert_eq!(got, want[..len], "{level}, scale {scale}, zero {zero}, {len} values");
            }
        }
    }
}

#[test]
fn levels_parse_by_name() {
    for level in CpuLevel::ALL {
        assert_eq!(CpuLevel::parse(level.name()), Some(level));
    }
    assert_eq!(CpuLevel::parse("AVX2"), Some(CpuLevel::Avx2));
    assert_eq!(CpuLevel::parse("sse"), None);
    assert!(CpuLevel::supported().contains(&CpuLevel::Scalar));
    assert!(active_level().is_supported());
}

#[test]
#[should_panic(expected = "activations have 5 bytes, but 2x3 at row stride 4 needs 7")]
fn short_activations_are_refused() {
    let packed = PackedI8::pack(&[1; 6], 2, 3);
    let mut out = vec![0; 4];
    qgemm_with_level(CpuLevel::Scalar, 2, &[0; 5], 4, &packed, Output::I32(&mut out), 2);
}

#[test]
fn im2col_then_gemm_is_a_direct_convolution() {
    let mut rng = Lcg(9);
    // The last case pads wider than the kernel reaches: whole output columns are padding.
    for (stride, padding, dilation) in [([1, 1], [0, 0], [1, 1]), ([2, 1], [1, 2], [1, 1]), ([1, 2], [1, 1], [2, 1]), ([3, 2], [4, 3], [1, 2])] {
        let s = ConvShape { batch: 2, channels: 3, height: 7, width: 6, kernel: [3, 2], stride, padding, dilation };
        let (oh, ow) = s.output_size().unwrap();
        let (m, k) = s.gemm_mk().unwrap();
        let o = 5;
        let x = rng.u8s(2 * 3 * 7 * 6);
        let w = rng.i8s(o * k);
        let pad = 17u8;
        let cols = im2col_u8(&x, &s, pad);
        let packed = PackedI8::pack(&w, o, k);
        let mut y = vec![0i32; m * o];
        qgemm_with_level(CpuLevel::best(), m, &cols, k, &packed, Output::I32(&mut y), o);
        let y = pixels_last_to_channels_first(&y, 2, oh * ow, o);
        for n in 0..2 {
            for oc in 0..o {
                for yy in 0..oh {
                    for xx in 0..ow {
                        let mut acc = 0i32;
                        for c in 0..3 {
                            for i in 0..3 {
                                for j in 0..2 {
                                    let iy = (yy * stride[0] + i * dilation[0]) as isize - padding[0] as isize;
                                    let ix = (xx * stride[1] + j * dilation[1]) as isize - padding[1] as isize;
                                    let v = if (0..7).contains(&iy) && (0..6).contains(&ix) {
                                        x[((n * 3 + c) * 7 + iy as usize) * 6 + ix as usize]
                                    } else {
                                        pad
                                    };
                                    acc += i32::from(v) * i32::from(w[oc * k + (c * 3 + i) * 2 + j]);
                                }
                            }
                        }
                        assert_eq!(y[((n * o + oc) * oh + yy) * ow + xx], acc, "{s:?} at n{n} o{oc} ({yy}, {xx})");
                    }
                }
            }
        }
    }
}

#[test]
fn round_half_even_matches_the_std_rounding() {
    let mut rng = Lcg(21);
    let mut values: Vec<f32> = (-600..=600).map(|i| i as f32 * 0.5).collect(); // every tie
    values.extend((0..10_000).map(|_| (rng.next() as f32 / u32::MAX as f32 - 0.5) * 1000.0));
    values.extend([-0.0, 0.49999997, 8388607.5, 4194303.5, -4194303.5, 1e7, -1e30]);
    for x in values {
        let want = x.clamp(-4194304.0, 4194304.0).round_ties_even();
        assert_eq!(round_half_even(x), want, "{x}");
    }
}

#[test]
fn tap_major_im2col_is_the_same_product_with_the_weight_permuted() {
    let mut rng = Lcg(12);
    for (channels, stride, padding, dilation) in [(1, [1, 1], [1, 1], [1, 1]), (4, [2, 1], [1, 2], [1, 1]), (3, [3, 2], [4, 3], [1, 2])] {
        let s = ConvShape { batch: 2, channels, height: 7, width: 6, kernel: [3, 2], stride, padding, dilation };
        let (m, k) = s.gemm_mk().unwrap();
        let o = 5;
        let x = rng.u8s(2 * channels * 7 * 6);
        let w = rng.i8s(o * k);
        let w_taps = weight_taps_major(&w, o, channels, 6, false);
        assert_eq!(weight_taps_major(&w_taps, o, channels, 6, true), w, "the inverse permutation");
        let (mut want, mut got) = (vec![0i32; m * o], vec![0i32; m * o]);
        qgemm_with_level(CpuLevel::Scalar, m, &im2col_u8(&x, &s, 9), k, &PackedI8::pack(&w, o, k), Output::I32(&mut want), o);
        qgemm_with_level(CpuLevel::Scalar, m, &im2col_u8_taps(&x, &s, 9), k, &PackedI8::pack(&w_taps, o, k), Output::I32(&mut got), o);
        assert_eq!(got, want, "{s:?}");
    }
}

#[test]
fn u8_max_pool_is_the_max_of_each_window() {
    let mut rng = Lcg(13);
    for (kernel, stride, padding) in [([2, 2], [2, 2], [0, 0]), ([3, 3], [2, 1], [1, 1]), ([3, 2], [1, 3], [1, 0])] {
        // 7 rows: the 2x2 fast path drops the odd last row, as PyTorch does.
        let shape = [2, 3, 7, 8];
        let x = rng.u8s(2 * 3 * 7 * 8);
        let (got, [_, _, oh, ow]) = max_pool2d_u8(&x, shape, kernel, stride, padding);
        for p in 0..6 {
            for y in 0..oh {
                for xo in 0..ow {
                    let mut want = None;
                    for i in 0..kernel[0] {
                        for j in 0..kernel[1] {
                            let (iy, ix) = ((y * stride[0] + i) as isize - padding[0] as isize, (xo * stride[1] + j) as isize - padding[1] as isize);
                            if (0..7).contains(&iy) && (0..8).contains(&ix) {
                                let v = x[p * 56 + iy as usize * 8 + ix as usize];
                                want = Some(want.map_or(v, |m: u8| m.max(v)));
                            }
                        }
                    }
                    assert_eq!(got[(p * oh + y) * ow + xo], want.unwrap(), "{kernel:?} {stride:?} {padding:?} at plane {p} ({y}, {xo})");
                }
            }
        }
    }
}

/// `[N, C, H, W]` → `[N, H, W, C]`.
fn to_nhwc(x: &[u8], [_, c, h, w]: [usize; 4]) -> Vec<u8> {
    let mut out = vec![0u8; x.len()];
    for (i, &v) in x.iter().enumerate() {
        let (b, ch, p) = (i / (c * h * w), (i / (h * w)) % c, i % (h * w));
        out[(b * h * w + p) * c + ch] = v;
    }
    out
}

#[test]
fn channels_last_im2col_and_pool_match_the_channels_first_forms() {
    let mut rng = Lcg(14);
    for (channels, stride, padding, dilation) in [(1, [1, 1], [1, 1], [1, 1]), (4, [2, 1], [1, 2], [1, 1]), (16, [1, 1], [1, 1], [1, 1]), (3, [3, 2], [4, 3], [1, 2])] {
        let s = ConvShape { batch: 3, channels, height: 7, width: 6, kernel: [3, 2], stride, padding, dilation };
        let x = rng.u8s(3 * channels * 7 * 6);
        let nhwc = to_nhwc(&x, [3, channels, 7, 6]);
        assert_eq!(im2col_u8_nhwc(&nhwc, &s, 9), im2col_u8_taps(&x, &s, 9), "{s:?}");
        for (kernel, stride, padding) in [([2, 2], [2, 2], [0, 0]), ([3, 3], [2, 1], [1, 1])] {
            let (want, [n, c, oh, ow]) = max_pool2d_u8(&x, [3, channels, 7, 6], kernel, stride, padding);
            let (got, got_shape) = max_pool2d_u8_nhwc(&nhwc, [3, 7, 6, channels], kernel, stride, padding);
            assert_eq!(got_shape, [n, oh, ow, c]);
            assert_eq!(got, to_nhwc(&want, [n, c, oh, ow]), "pool {kernel:?} {stride:?} {padding:?} on {channels} channels");
        }
    }
}
