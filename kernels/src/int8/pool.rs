//! Max pooling on u8 activations. Quantization is monotonic, so the max of quantized values is
//! the quantized max: a pool between two int8 layers runs on the bytes, in the parameters of
//! its input, with no dequantize/quantize around it.

/// `[N, C, H, W]` u8 → `[N, C, OH, OW]`, windows `kernel` apart by `stride`, with `padding`
/// cells on each side that never win (PyTorch pads max pooling with -inf).
///
/// # Panics
/// If `x` does not match `shape`, or the window does not fit.
pub fn max_pool2d_u8(x: &[u8], shape: [usize; 4], kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2]) -> (Vec<u8>, [usize; 4]) {
    let [n, c, h, w] = shape;
    assert_eq!(x.len(), n * c * h * w, "max_pool2d_u8: input length does not match {shape:?}");
    let out_size = |size: usize, k: usize, s: usize, p: usize| (size + 2 * p).checked_sub(k).map(|r| r / s + 1);
    let (oh, ow) = match (out_size(h, kernel[0], stride[0], padding[0]), out_size(w, kernel[1], stride[1], padding[1])) {
        (Some(oh), Some(ow)) => (oh, ow),
        _ => panic!("max_pool2d_u8: a {kernel:?} window does not fit {shape:?} with padding {padding:?}"),
    };
    let mut out = vec![0u8; n * c * oh * ow];
    if out.is_empty() {
        return (out, [n, c, oh, ow]);
    }
    if kernel == [2, 2] && stride == [2, 2] && padding == [0, 0] {
        // The CNN case, as straight loops over pairs of rows.
        for (plane, dst) in x.chunks_exact(h * w).zip(out.chunks_exact_mut(oh * ow)) {
            for (y, dst_row) in dst.chunks_exact_mut(ow).enumerate() {
                let (top, bottom) = (&plane[2 * y * w..][..2 * ow], &plane[(2 * y + 1) * w..][..2 * ow]);
                for ((d, t), b) in dst_row.iter_mut().zip(top.chunks_exact(2)).zip(bottom.chunks_exact(2)) {
                    *d = t[0].max(t[1]).max(b[0].max(b[1]));
                }
            }
        }
        return (out, [n, c, oh, ow]);
    }
    for (plane, dst) in x.chunks_exact(h * w).zip(out.chunks_exact_mut(oh * ow)) {
        for y in 0..oh {
            let y0 = (y * stride[0]).saturating_sub(padding[0]);
            let y1 = (y * stride[0] + kernel[0]).saturating_sub(padding[0]).min(h);
            for xo in 0..ow {
                let x0 = (xo * stride[1]).saturating_sub(padding[1]);
                let x1 = (xo * stride[1] + kernel[1]).saturating_sub(padding[1]).min(w);
                let mut best = 0u8;
                for row in plane[y0 * w..y1 * w].chunks_exact(w) {
                    best = row[x0..x1].iter().fold(best, |m, &v| m.max(v));
                }
                dst[y * ow + xo] = best;
            }
        }
    }
    (out, [n, c, oh, ow])
}
