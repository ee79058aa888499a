//! Running fused kernels on tensors: elementwise programs and GEMM/conv epilogues.

use tensorbrain_ir::passes::fusion::{Cmp, Instr, Program};
use tensorbrain_ir::{BinaryOp, Op, ScalarOp, UnaryOp};
use tensorbrain_kernels::fused::{self as kf, FusedFloat, Operand};
use tensorbrain_kernels::gemm::matmul_with_threads;
use tensorbrain_kernels::threads;

use crate::tensor::layout::{broadcast_shapes, Layout};
use crate::tensor::{DType, Element, Error, Result, Tensor};

/// Output elements per epilogue block (64 KiB of f32): the GEMM result is still in L2 when
/// the tail reads it.
const EPILOGUE_BLOCK: usize = 1 << 14;
/// The largest GEMM right operand (bytes) that row blocks re-read: about a quarter of a
/// typical per-core L2, so that it stays there from one block to the next.
const EPILOGUE_MAX_RHS_BYTES: usize = 1 << 18;

/// A program lowered for the kernel, with the IR form kept for the fallback path.
#[derive(Clone, Debug)]
pub(crate) struct Lowered {
    pub ir: Program,
    pub kernel: kf::Program,
    pub fill_shapes: Vec<Vec<usize>>,
}

impl Lowered {
    pub fn new(ir: &Program) -> Result<Lowered> {
        let instrs: Vec<kf::Instr> = ir.instrs.iter().map(lower_instr).collect::<Result<_>>()?;
        let kernel = kf::Program::new(&instrs, ir.n_inputs, ir.out).map_err(Error::Msg)?;
        let fill_shapes = ir
            .fill_shapes
            .iter()
            .map(|s| s.0.iter().map(|d| d.known().ok_or_else(|| Error::Msg(format!("fused program: fill of unknown shape {s}")))).collect())
            .collect::<Result<_>>()?;
        Ok(Lowered { ir: ir.clone(), kernel, fill_shapes })
    }
}

fn unary_fn(u: UnaryOp) -> kf::UnaryFn {
    use kf::UnaryFn as F;
    match u {
        UnaryOp::Neg => F::Neg,
        UnaryOp::Exp => F::Exp,
        UnaryOp::Log => F::Log,
        UnaryOp::Sqrt => F::Sqrt,
        UnaryOp::Rsqrt => F::Rsqrt,
        UnaryOp::Abs => F::Abs,
        UnaryOp::Sin => F::Sin,
        UnaryOp::Cos => F::Cos,
        UnaryOp::Tanh => F::Tanh,
        UnaryOp::Sigmoid => F::Sigmoid,
        UnaryOp::Relu => F::Relu,
        UnaryOp::Gelu => F::Gelu,
        UnaryOp::GeluTanh => F::GeluTanh,
        UnaryOp::Silu => F::Silu,
        UnaryOp::Softplus => F::Softplus,
        UnaryOp::Log1p => F::Log1p,
        UnaryOp::Square => F::Square,
        UnaryOp::Reciprocal => F::Reciprocal,
        UnaryOp::Erf => F::Erf,
        UnaryOp::Elu(a) => F::Elu(a),
        UnaryOp::LeakyRelu(a) => F::LeakyRelu(a),
    }
}

fn lower_instr(i: &Instr) -> Result<kf::Instr> {
    Ok(match *i {
        Instr::Input(k) => kf::Instr::Load(k),
        Instr::Const(c) => kf::Instr::Const(c),
        Instr::Unary(u, x) => kf::Instr::Unary(unary_fn(u), x),
        Instr::Sign(x) => kf::Instr::Unary(kf::UnaryFn::Sign, x),
        Instr::Binary(b, x, y) => kf::Instr::Binary(
            match b {
                BinaryOp::Add => kf::BinaryFn::Add,
                BinaryOp::Sub => kf::BinaryFn::Sub,
                BinaryOp::Mul => kf::BinaryFn::Mul,
                BinaryOp::Div => kf::BinaryFn::Div,
                BinaryOp::Maximum => kf::BinaryFn::Max,
                BinaryOp::Minimum => kf::BinaryFn::Min,
            },
            x,
            y,
        ),
        Instr::Scalar(op, c, x) => kf::Instr::Scalar(
            match op {
                ScalarOp::Add => kf::ScalarFn::Add,
                ScalarOp::Mul => kf::ScalarFn::Mul,
                ScalarOp::Pow => kf::ScalarFn::Pow,
                ScalarOp::RSub => kf::ScalarFn::RSub,
                ScalarOp::RDiv => return Err(Error::Msg("fused program: rdiv must be lowered to pow and mul".into())),
            },
            c,
            x,
        ),
        Instr::Select { cmp, x, threshold, a, b } => kf::Instr::Select {
            cmp: match cmp {
                Cmp::Gt => kf::Cmp::Gt,
                Cmp::Ge => kf::Cmp::Ge,
                Cmp::Lt => kf::Cmp::Lt,
                Cmp::Le => kf::Cmp::Le,
            },
            x,
            threshold,
            a,
            b,
        },
    })
}

/// The broadcast output shape of a program over `shapes` (and its inlined fills).
pub(crate) fn out_shape(p: &Lowered, shapes: &[&[usize]]) -> Result<Vec<usize>> {
    let mut shape: Vec<usize> = Vec::new();
    for s in shapes.iter().copied().chain(p.fill_shapes.iter().map(Vec::as_slice)) {
        shape = broadcast_shapes("fused", &shape, s)?.to_vec();
    }
    Ok(shape)
}

/// The one float dtype the fast path (CPU kernels over host memory) computes in, if every
/// input has it and lives on the CPU. Fused programs over f32/f64 tensors on one GPU run its
/// generated kernel (`run_fused`); other tensors on a GPU take the op-by-op path, whose tensor
/// ops dispatch to the device.
fn fast_dtype(inputs: &[&Tensor]) -> Option<DType> {
    if inputs.iter().any(|t| t.device() != crate::tensor::Device::Cpu) {
        return None;
    }
    let d = inputs.first().map_or(DType::F32, |t| t.dtype());
    (matches!(d, DType::F32 | DType::F64) && inputs.iter().all(|t| t.dtype() == d)).then_some(d)
}

/// Runs a fused program on `inputs`.
pub(crate) fn run_fused(p: &Lowered, inputs: &[&Tensor]) -> Result<Tensor> {
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
    let shape = out_shape(p, &shapes)?;
    #[cfg(feature = "cuda")]
    if crate::cuda::fused_runs_on_device(inputs) {
        return crate::cuda::fused(&p.kernel, inputs, &shape);
    }
    match fast_dtype(inputs) {
        Some(DType::F32) => fused_typed::<f32>(p, inputs, &shape),
        Some(DType::F64) => fused_typed::<f64>(p, inputs, &shape),
        _ => fallback(&p.ir, inputs, &shape),
    }
}

fn fused_typed<T: FusedFloat + Element>(p: &Lowered, inputs: &[&Tensor], shape: &[usize]) -> Result<Tensor> {
    let guards: Vec<_> = inputs.iter().map(|t| t.storage()).collect();
    let layouts: Vec<Layout> = inputs.iter().map(|t| t.layout().broadcast_to(shape)).collect();
    let ops: Vec<Operand<T>> = guards
        .iter()
        .zip(&layouts)
        .map(|(g, l)| Ok(Operand::Strided { data: g.cpu()?.as_slice::<T>(), offset: l.offset, strides: &l.strides }))
        .collect::<Result<_>>()?;
    let out = kf::eval_vec(&p.kernel, &ops, shape);
    drop(ops);
    drop(guards);
    Ok(Tensor::from_storage(T::wrap(out), shape))
}

/// The program run op by op with tensor ops (f16/bf16 or mixed dtypes).
pub(crate) fn fallback(p: &Program, inputs: &[&Tensor], shape: &[usize]) -> Result<Tensor> {
    let dtype = inputs.first().map_or(DType::F32, |t| t.dtype());
    let device = inputs.first().map_or(crate::tensor::Device::Cpu, |t| t.device());
    // Constants live where the inputs do, so every op below runs on one device.
    let full = |value: f64, dtype: DType| Tensor::full(&[], value, dtype).try_to_device(device);
    let mut v: Vec<Tensor> = Vec::with_capacity(p.instrs.len());
    let apply = |op: Op, args: &[&Tensor]| crate::exec::apply(&op, args, &[]);
    for ins in &p.instrs {
        let t = match *ins {
            Instr::Input(k) => inputs[k].clone(),
            Instr::Const(c) => full(c, dtype)?,
            Instr::Unary(u, x) => apply(Op::Unary(u), &[&v[x]])?,
            Instr::Sign(x) => {
                let zero = full(0.0, v[x].dtype())?;
                let pos = v[x].try_gt(&zero)?.try_to_dtype(v[x].dtype())?;
                let neg = v[x].try_lt(&zero)?.try_to_dtype(v[x].dtype())?;
                pos.try_sub(&neg)?
            }
            Instr::Binary(b, x, y) => apply(Op::Binary(b), &[&v[x], &v[y]])?,
            Instr::Scalar(op, c, x) => apply(Op::Scalar { op, value: c }, &[&v[x]])?,
            Instr::Select { cmp, x, threshold, a, b } => {
                let t = full(threshold, v[x].dtype())?;
                let mask = match cmp {
                    Cmp::Gt => v[x].try_gt(&t)?,
                    Cmp::Ge => v[x].try_ge(&t)?,
                    Cmp::Lt => v[x].try_lt(&t)?,
                    Cmp::Le => v[x].try_le(&t)?,
                };
                Tensor::try_where_cond(&mask, &v[a], &v[b])?
            }
        };
        v.push(t);
    }
    let out = v.swap_remove(p.out);
    if out.shape() == shape {
        Ok(out)
    } else {
        let target: Vec<isize> = shape.iter().map(|&d| d as isize).collect();
        out.try_expand(&target)?.try_contiguous()
    }
}

/// Runs `head` (matmul or conv) then `tail` on its output, block by block where the fast path
/// applies.
pub(crate) fn run_epilogue(head: &Op, head_inputs: usize, tail: &Lowered, inputs: &[&Tensor]) -> Result<Tensor> {
    let (hin, ext) = inputs.split_at(head_inputs);
    let fast = fast_dtype(inputs);
    let done = match (head, fast) {
        (Op::Matmul, Some(DType::F32)) => matmul_epilogue::<f32>(tail, hin[0], hin[1], ext)?,
        (Op::Matmul, Some(DType::F64)) => matmul_epilogue::<f64>(tail, hin[0], hin[1], ext)?,
        (Op::Conv2d(g), Some(DType::F32)) => conv_epilogue::<f32>(g, tail, hin, ext)?,
        (Op::Conv2d(g), Some(DType::F64)) => conv_epilogue::<f64>(g, tail, hin, ext)?,
        _ => None,
    };
    if let Some(t) = done {
        return Ok(t);
    }
    let y = crate::exec::apply(head, hin, &[])?;
    let mut all = vec![&y];
    all.extend_from_slice(ext);
    run_fused(tail, &all)
}

/// `a @ b` for a 2-D `b`, computed in row blocks, each followed at once by the tail.
fn matmul_epilogue<T: FusedFloat + Element>(tail: &Lowered, a: &Tensor, b: &Tensor, ext: &[&Tensor]) -> Result<Option<Tensor>> {
    if b.rank() != 2 || a.rank() < 2 || a.shape()[a.rank() - 1] != b.shape()[0] {
        return Ok(None);
    }
    let (k, n) = (b.shape()[0], b.shape()[1]);
    let mut shape = a.shape().to_vec();
    *shape.last_mut().unwrap() = n;
    let rows: usize = shape[..shape.len() - 1].iter().product();
    let Some(la) = a.layout().reshape_view(&[rows, k]) else { return Ok(None) };
    let mut all_shapes: Vec<&[usize]> = vec![&shape];
    all_shapes.extend(ext.iter().map(|t| t.shape()));
    if out_shape(tail, &all_shapes)? != shape || rows == 0 || n == 0 {
        return Ok(None);
    }
    let lb = b.layout().clone();
    let guards_ab = (a.storage(), b.storage());
    let (da, db) = (guards_ab.0.cpu()?.as_slice::<T>(), guards_ab.1.cpu()?.as_slice::<T>());
    let guards: Vec<_> = ext.iter().map(|t| t.storage()).collect();
    let layouts: Vec<Layout> = ext.iter().map(|t| t.layout().broadcast_to(&shape)).collect();
    let mut ops: Vec<Operand<T>> = vec![Operand::Output];
    for (g, l) in guards.iter().zip(&layouts) {
        ops.push(Operand::Strided { data: g.cpu()?.as_slice::<T>(), offset: l.offset, strides: &l.strides });
    }

    let mut c = vec![T::zero(); rows * n];
    let block_rows = (EPILOGUE_BLOCK / n).clamp(1, rows);
    let blocks = rows.div_ceil(block_rows);
    let work = rows * k * n;
    let (a_rs, a_cs) = (la.strides[0] as isize, la.strides[1] as isize);
    let (b_rs, b_cs) = (lb.strides[0] as isize, lb.strides[1] as isize);
    if k * n * std::mem::size_of::<T>() > EPILOGUE_MAX_RHS_BYTES {
        // A right operand this large does not stay in cache from one row block to the next:
        // each block would read it again (through power-of-two strides, for a Linear's Wᵀ),
        // which costs far more than the tail's second pass over C saves. One GEMM, then the
        // tail in parallel blocks.
        matmul_with_threads(threads::num_threads(), rows, k, n, da, la.offset, a_rs, a_cs, db, lb.offset, b_rs, b_cs, &mut c, n as isize, 1, false);
        let tail_block = |bi: usize, cb: &mut [T]| kf::eval_range(&tail.kernel, &ops, &shape, bi * block_rows * n, cb);
        threads::for_each_chunk_mut(&mut c, block_rows * n, rows * n, tail_block);
        drop(ops);
        drop(guards);
        return Ok(Some(Tensor::from_storage(T::wrap(c), &shape)));
    }
    let outer_parallel = blocks >= threads::num_threads() && threads::worth_parallelising(work);
    let gemm_threads = if outer_parallel { 1 } else { threads::num_threads() };
    let block = |bi: usize, cb: &mut [T]| {
        let r0 = bi * block_rows;
        let r = cb.len() / n;
        matmul_with_threads(gemm_threads, r, k, n, da, la.offset + r0 * la.strides[0], a_rs, a_cs, db, lb.offset, b_rs, b_cs, cb, n as isize, 1, false);
        kf::eval_range(&tail.kernel, &ops, &shape, r0 * n, cb);
    };
    if outer_parallel {
        threads::for_each_chunk_mut(&mut c, block_rows * n, work, block);
    } else {
        c.chunks_mut(block_rows * n).enumerate().for_each(|(bi, cb)| block(bi, cb));
    }
    drop(ops);
    drop(guards);
    Ok(Some(Tensor::from_storage(T::wrap(c), &shape)))
}

/// The conv, with the tail run on each sample's output inside the conv kernel, on the thread
/// that computed it and while it is still in cache (in place: the tail reads the conv result as
/// [`Operand::Output`]).
fn conv_epilogue<T: FusedFloat + Element>(g: &tensorbrain_ir::op::ConvGeometry, tail: &Lowered, hin: &[&Tensor], ext: &[&Tensor]) -> Result<Option<Tensor>> {
    let (x, w) = (hin[0], hin[1]);
    let bias = hin.get(2).copied();
    if x.rank() != 4 || w.rank() != 4 || x.shape()[0] == 0 {
        return Ok(None);
    }
    let p = tensorbrain_kernels::conv::Conv2dParams { stride: g.stride, padding: g.padding, dilation: g.dilation, groups: g.groups };
    let Some((oh, ow)) = p.output_size(x.shape()[2], x.shape()[3], w.shape()[2], w.shape()[3]) else { return Ok(None) };
    let shape = vec![x.shape()[0], w.shape()[0], oh, ow];
    let per_sample = shape[1] * oh * ow;
    let mut all_shapes: Vec<&[usize]> = vec![&shape];
    all_shapes.extend(ext.iter().map(|t| t.shape()));
    if out_shape(tail, &all_shapes)? != shape || per_sample == 0 {
        return Ok(None);
    }
    let guards: Vec<_> = ext.iter().map(|t| t.storage()).collect();
    let layouts: Vec<Layout> = ext.iter().map(|t| t.layout().broadcast_to(&shape)).collect();
    let mut ops: Vec<Operand<T>> = vec![Operand::Output];
    for (gd, l) in guards.iter().zip(&layouts) {
        ops.push(Operand::Strided { data: gd.cpu()?.as_slice::<T>(), offset: l.offset, strides: &l.strides });
    }
    let y = crate::ops::nn::conv2d_forward_then::<T>(x, w, bias, p, |s, out_s| kf::eval_range(&tail.kernel, &ops, &shape, s * per_sample, out_s))?;
    drop(guards);
    Ok(Some(y))
}

/// Distinct elements a tensor view reads (broadcast dims count once), in bytes.
pub(crate) fn bytes_read(t: &Tensor) -> usize {
    let l = t.layout();
    let distinct: usize = l.shape.iter().zip(&l.strides).map(|(&d, &s)| if s == 0 { 1 } else { d }).product();
    distinct * t.dtype().size_in_bytes()
}
