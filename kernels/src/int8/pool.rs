//! Max pooling on u8 activations. Quantization is monotonic, so the max of quantized values is
//! the quantized max: a pool between two int8 layers runs on the bytes, in the parameters of
//! its input, with no dequantize/quantize around it.

use crate::pool::Geometry;

/// `[N, C, H, W]` u8 → `[N, C, OH, OW]`, windows `kernel` apart by `stride`, with `padding`
/// cells on each side that never win (PyTorch pads max pooling with -inf). The windows are
/// those of the f32 pools ([`crate::pool`]'s geometry).
///
/// # Panics
/// If `x` does not match `shape`, or the window does not fit (as the f32 pools).
pub fn max_pool2d_u8(x: &[u8], shape: [usize; 4], kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2]) -> (Vec<u8>, [usize; 4]) {
    let g = Geometry::new(shape, kernel, stride, padding);
    assert_eq!(x.len(), g.planes * g.in_plane(), "max_pool2d_u8: input length does not match {shape:?}");
    let out_shape = [shape[0], shape[1], g.oh, g.ow];
    let mut out = vec![0u8; g.planes * g.out_plane()];
    if out.is_empty() {
        return (out, out_shape);
    }
    let w = g.w;
    for (plane, dst) in x.chunks_exact(g.in_plane()).zip(out.chunks_exact_mut(g.out_plane())) {
        if g.unpadded && kernel == [2, 2] && stride == [2, 2] {
            // The CNN case, as straight loops over pairs of rows.
            for (y, dst_row) in dst.chunks_exact_mut(g.ow).enumerate() {
                let (top, bottom) = (&plane[2 * y * w..][..2 * g.ow], &plane[(2 * y + 1) * w..][..2 * g.ow]);
                for ((d, t), b) in dst_row.iter_mut().zip(top.chunks_exact(2)).zip(bottom.chunks_exact(2)) {
                    *d = t[0].max(t[1]).max(b[0].max(b[1]));
                }
            }
            continue;
        }
        let cells = g.rows.iter().flat_map(|r| g.cols.iter().map(move |c| (r, c)));
        for ((r, c), d) in cells.zip(dst.iter_mut()) {
            *d = (r.lo..r.hi).map(|iy| plane[iy * w..][c.lo..c.hi].iter().copied().max().unwrap_or(0)).max().unwrap_or(0);
        }
    }
    (out, out_shape)
}

/// [`max_pool2d_u8`] on channels-last input: `[N, H, W, C]` u8 → `[N, OH, OW, C]`. Each window
/// cell is a run of `C` bytes, so the max runs across channels (and vectorises). Output rows
/// are filled in parallel.
///
/// # Panics
/// As [`max_pool2d_u8`] (`shape` is `[N, H, W, C]`).
pub fn max_pool2d_u8_nhwc(x: &[u8], shape: [usize; 4], kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2]) -> (Vec<u8>, [usize; 4]) {
    let [n, h, w, c] = shape;
    let g = Geometry::new([n, c, h, w], kernel, stride, padding);
    assert_eq!(x.len(), n * h * w * c, "max_pool2d_u8_nhwc: input length does not match {shape:?}");
    let out_shape = [n, g.oh, g.ow, c];
    let mut out = vec![0u8; n * g.oh * g.ow * c];
    if out.is_empty() {
        return (out, out_shape);
    }
    let image_len = h * w * c;
    crate::threads::for_each_chunk_mut(&mut out, g.ow * c, x.len(), |row_index, dst_row| {
        let (image, r) = (row_index / g.oh, &g.rows[row_index % g.oh]);
        let src = &x[image * image_len..][..image_len];
        for (col, dst) in g.cols.iter().zip(dst_row.chunks_exact_mut(c)) {
            // Every window holds at least one input cell (PyTorch's rule), and 0 is the
            // smallest byte, so starting from 0 is starting from -inf.
            dst.fill(0);
            for iy in r.lo..r.hi {
                for ix in col.lo..col.hi {
                    let cell = &src[(iy * w + ix) * c..][..c];
                    dst.iter_mut().zip(cell).for_each(|(d, &v)| *d = (*d).max(v));
                }
            }
        }
    });
    (out, out_shape)
}
