//! Fused elementwise programs: many elementwise ops in one pass over memory.
//!
//! A [`Program`] is a list of instructions over its inputs (each instruction defines one
//! value). [`eval`] walks the output in blocks of [`BLOCK`] elements: each block loads its
//! inputs into registers (arrays of `BLOCK` elements, reading broadcast and strided inputs
//! through their strides), runs every instruction as a tight loop over the block (one `match`
//! per instruction per block, not per element, so LLVM vectorises the loops) and writes the
//! result once. Intermediate values never leave the cache. Blocks are split across threads.

use std::mem::MaybeUninit;

use crate::cpu::CpuLevel;
use smallvec::SmallVec;
use crate::{threads, Float};

/// Elements per block: 256 f32 registers are 1 KiB each, so a program's registers stay in L1.
pub const BLOCK: usize = 256;

/// Unary functions, with the formulas of the runtime's unary ops (exp and tanh, also inside
/// sigmoid, silu and tanh-gelu, are [`FusedFloat::fused_exp`] and [`FusedFloat::fused_tanh`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryFn {
    Neg,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Abs,
    Sin,
    Cos,
    Tanh,
    Sigmoid,
    Relu,
    Gelu,
    GeluTanh,
    Silu,
    Softplus,
    Log1p,
    Square,
    Reciprocal,
    Erf,
    Elu(f64),
    LeakyRelu(f64),
    /// `sign(x)`, 0 at 0 and NaN.
    Sign,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryFn {
    Add,
    Sub,
    Mul,
    Div,
    /// NaN if either is NaN.
    Max,
    Min,
}

/// `op(x, c)` for a constant `c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalarFn {
    Add,
    Mul,
    /// `x ** c` (`x * x` when `c == 2`).
    Pow,
    /// `c - x`
    RSub,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
}

/// One instruction; operands are indices of earlier instructions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Instr {
    /// Input `k`.
    Load(usize),
    Const(f64),
    Unary(UnaryFn, usize),
    Binary(BinaryFn, usize, usize),
    Scalar(ScalarFn, f64, usize),
    /// `x cmp threshold ? a : b` (false for NaN).
    Select { cmp: Cmp, x: usize, threshold: f64, a: usize, b: usize },
}

/// An instruction on physical registers, writing register `dst` (or the output if `dst` is
/// `OUT`).
#[derive(Clone, Copy, Debug)]
struct Step {
    instr: Instr,
    dst: usize,
}

const OUT: usize = usize::MAX;

/// A checked program with registers assigned.
#[derive(Clone, Debug)]
pub struct Program {
    steps: Vec<Step>,
    regs: usize,
    n_inputs: usize,
}

impl Program {
    /// Checks `instrs` (operands before use, loads in range), drops what `out` does not need
    /// and assigns registers so that values share registers once dead.
    pub fn new(instrs: &[Instr], n_inputs: usize, out: usize) -> Result<Program, String> {
        if out >= instrs.len() {
            return Err(format!("fused program: output v{out} does not exist ({} instructions)", instrs.len()));
        }
        for (k, ins) in instrs.iter().enumerate() {
            if let Some(&bad) = operands(ins).iter().find(|&&a| a >= k) {
                return Err(format!("fused program: v{k} reads v{bad}, which does not come before it"));
            }
            if let Instr::Load(i) = ins {
                if *i >= n_inputs {
                    return Err(format!("fused program: v{k} loads input {i} of {n_inputs}"));
                }
            }
        }
        // Live values and the last instruction reading each.
        let mut needed = vec![false; instrs.len()];
        needed[out] = true;
        for k in (0..=out).rev() {
            if needed[k] {
                for a in operands(&instrs[k]) {
                    needed[a] = true;
                }
            }
        }
        let mut last_use = vec![0usize; instrs.len()];
        for k in 0..=out {
            if needed[k] {
                for a in operands(&instrs[k]) {
                    last_use[a] = k;
                }
            }
        }
        let mut reg_of = vec![usize::MAX; instrs.len()];
        let mut free: Vec<usize> = Vec::new();
        let mut regs = 0;
        let mut steps = Vec::new();
        for k in 0..=out {
            if !needed[k] {
                continue;
            }
            let remap = |a: usize| reg_of[a];
            let instr = match instrs[k] {
                Instr::Load(i) => Instr::Load(i),
                Instr::Const(c) => Instr::Const(c),
                Instr::Unary(f, x) => Instr::Unary(f, remap(x)),
                Instr::Binary(f, x, y) => Instr::Binary(f, remap(x), remap(y)),
                Instr::Scalar(f, c, x) => Instr::Scalar(f, c, remap(x)),
                Instr::Select { cmp, x, threshold, a, b } => Instr::Select { cmp, x: remap(x), threshold, a: remap(a), b: remap(b) },
            };
            // The destination never aliases an operand: operands are freed only afterwards.
            let dst = if k == out {
                OUT
            } else {
                free.pop().unwrap_or_else(|| {
                    regs += 1;
                    regs - 1
                })
            };
            reg_of[k] = dst;
            steps.push(Step { instr, dst });
            let mut ops = operands(&instrs[k]);
            ops.sort_unstable();
            ops.dedup();
            for a in ops {
                if last_use[a] == k {
                    free.push(reg_of[a]);
                }
            }
        }
        Ok(Program { steps, regs, n_inputs })
    }

    pub fn n_inputs(&self) -> usize {
        self.n_inputs
    }

    /// Registers (of [`BLOCK`] elements) one block needs.
    pub fn registers(&self) -> usize {
        self.regs
    }

    /// Instructions left after dead-code removal.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The program after dead-code removal and register assignment, for code generators (the
    /// CUDA one in cuda/codegen.rs): each instruction's operands are register numbers, and it
    /// writes register `Some(r)` or, for the last one, the output (`None`).
    pub fn steps(&self) -> impl Iterator<Item = (Instr, Option<usize>)> + '_ {
        self.steps.iter().map(|s| (s.instr, (s.dst != OUT).then_some(s.dst)))
    }
}

fn operands(i: &Instr) -> Vec<usize> {
    match *i {
        Instr::Load(_) | Instr::Const(_) => vec![],
        Instr::Unary(_, x) | Instr::Scalar(_, _, x) => vec![x],
        Instr::Binary(_, x, y) => vec![x, y],
        Instr::Select { x, a, b, .. } => vec![x, a, b],
    }
}

/// A float the fused kernels compute in: f32 or f64. The f32 functions are the vectorisable
/// ones of [`crate::fast_math`] (their ulp bounds are stated and tested there); f64 uses libm.
/// `exp`, `tanh` and sigmoid are the fused-multiply-add forms: callers run them in code compiled
/// for the active SIMD level (the interpreter's blocks, [`crate::fused_scalar::map_elements`]),
/// where `mul_add` is one instruction; at the portable level it is libm's `fmaf`, slower but
/// the same bits.
pub trait FusedFloat: Float {
    fn fused_exp(self) -> Self;
    fn fused_log(self) -> Self;
    fn fused_tanh(self) -> Self;
    fn fused_erf(self) -> Self;
    fn fused_sigmoid(self) -> Self;
    /// Exact (erf) GELU, `x·Φ(x)`.
    fn fused_gelu(self) -> Self;
}

impl FusedFloat for f32 {
    #[inline(always)]
    fn fused_exp(self) -> f32 {
        crate::fast_math::exp_f32_fma(self)
    }
    #[inline(always)]
    fn fused_log(self) -> f32 {
        crate::fast_math::log_f32(self)
    }
    #[inline(always)]
    fn fused_tanh(self) -> f32 {
        crate::fast_math::tanh_f32_fma(self)
    }
    #[inline(always)]
    fn fused_erf(self) -> f32 {
        crate::fast_math::erf_f32(self)
    }
    #[inline(always)]
    fn fused_sigmoid(self) -> f32 {
        crate::fast_math::sigmoid_f32_fma(self)
    }
    #[inline(always)]
    fn fused_gelu(self) -> f32 {
        crate::fast_math::gelu_f32(self)
    }
}

impl FusedFloat for f64 {
    #[inline(always)]
    fn fused_exp(self) -> f64 {
        self.exp()
    }
    #[inline(always)]
    fn fused_log(self) -> f64 {
        self.ln()
    }
    #[inline(always)]
    fn fused_tanh(self) -> f64 {
        self.tanh()
    }
    #[inline(always)]
    fn fused_erf(self) -> f64 {
        libm::erf(self)
    }
    #[inline(always)]
    fn fused_sigmoid(self) -> f64 {
        1.0 / (1.0 + (-self).exp())
    }
    #[inline(always)]
    fn fused_gelu(self) -> f64 {
        self * 0.5 * (1.0 + libm::erf(self * std::f64::consts::FRAC_1_SQRT_2))
    }
}

/// Where an input's elements are.
#[derive(Clone, Copy, Debug)]
pub enum Operand<'a, T> {
    /// Element `idx` of the (broadcast) output index space is at
    /// `offset + sum(idx[d] * strides[d])`; `strides` has one entry per output dim (0 where the
    /// input is broadcast).
    Strided { data: &'a [T], offset: usize, strides: &'a [usize] },
    /// The output buffer itself, read before each block is written (for epilogues that
    /// transform a GEMM result in place).
    Output,
}

/// Input addressing with dims merged where every input allows it.
struct Plan {
    /// Collapsed outer dims (all but the last).
    outer: Vec<usize>,
    /// Per input: strides of the outer dims, the inner stride and the offset; `None` for
    /// [`Operand::Output`].
    inputs: Vec<Option<(Vec<usize>, usize, usize)>>,
    /// Per input: dense and laid out like the output (element `i` at `offset + i`).
    dense: Vec<bool>,
    inner: usize,
}

impl Plan {
    fn new<T>(shape: &[usize], operands: &[Operand<'_, T>]) -> Plan {
        let n = operands.len();
        let strides: Vec<Option<&[usize]>> = operands
            .iter()
            .map(|o| match o {
                Operand::Strided { strides, .. } => Some(*strides),
                Operand::Output => None,
            })
            .collect();
        let contiguous = {
            let mut s = vec![0usize; shape.len()];
            let mut acc = 1;
            for d in (0..shape.len()).rev() {
                s[d] = acc;
                acc *= shape[d];
            }
            s
        };
        // Drop size-1 dims, merge dim d into d+1 where every input allows it.
        let mut dims: Vec<(usize, Vec<usize>)> = Vec::new();
        for (d, &size) in shape.iter().enumerate() {
            if size == 1 {
                continue;
            }
            let s: Vec<usize> = (0..n).map(|k| strides[k].map_or(contiguous[d], |st| st[d])).collect();
            if let Some(last) = dims.last_mut() {
                if (0..n).all(|k| last.1[k] == s[k] * size) {
                    last.0 *= size;
                    last.1 = s;
                    continue;
                }
            }
            dims.push((size, s));
        }
        let (inner, inner_strides) = dims.pop().unwrap_or((1, vec![0; n]));
        let outer: Vec<usize> = dims.iter().map(|d| d.0).collect();
        let dense: Vec<bool> = (0..n)
            .map(|k| match operands[k] {
                Operand::Output => true,
                Operand::Strided { strides: st, .. } => shape.iter().zip(st).zip(&contiguous).all(|((&size, &s), &c)| size == 1 || s == c),
            })
            .collect();
        let inputs = (0..n)
            .map(|k| match operands[k] {
                Operand::Output => None,
                Operand::Strided { offset, .. } => Some((dims.iter().map(|d| d.1[k]).collect(), inner_strides[k], offset)),
            })
            .collect();
        Plan { outer, inputs, dense, inner }
    }

    /// Offset of input `k`'s element at row `row`, column 0.
    #[inline]
    fn row_offset(&self, k: usize, mut row: usize) -> usize {
        let (outer, _, offset) = self.inputs[k].as_ref().expect("strided input");
        let mut off = *offset;
        for d in (0..self.outer.len()).rev() {
            let size = self.outer[d];
            off += (row % size) * outer[d];
            row /= size;
        }
        off
    }

    /// Copies elements `start..start + dst.len()` of input `k` into `dst`. Inlined into the
    /// per-level block runners, so that its fills and copies use the level's full vectors (a
    /// broadcast `[C, 1, 1]` operand's fill, in 16-byte stores, was 4.4% of a fused
    /// conv+affine+relu forward).
    #[inline(always)]
    fn gather<T: Copy>(&self, k: usize, data: &[T], start: usize, dst: &mut [MaybeUninit<T>]) {
        let (_, inner_stride, offset) = *self.inputs[k].as_ref().expect("strided input");
        if self.dense[k] {
            write_slice(dst, &data[offset + start..offset + start + dst.len()]);
            return;
        }
        let inner = self.inner;
        let mut done = 0;
        while done < dst.len() {
            let idx = start + done;
            let (row, col) = (idx / inner, idx % inner);
            let len = (inner - col).min(dst.len() - done);
            let base = self.row_offset(k, row) + col * inner_stride;
            let out = &mut dst[done..done + len];
            match inner_stride {
                0 => out.iter_mut().for_each(|o| *o = MaybeUninit::new(data[base])),
                1 => write_slice(out, &data[base..base + len]),
                s => out.iter_mut().enumerate().for_each(|(i, o)| *o = MaybeUninit::new(data[base + i * s])),
            }
            done += len;
        }
    }
}

#[inline(always)]
fn write_slice<T: Copy>(dst: &mut [MaybeUninit<T>], src: &[T]) {
    for (o, &v) in dst.iter_mut().zip(src) {
        *o = MaybeUninit::new(v);
    }
}

fn check<T>(program: &Program, inputs: &[Operand<'_, T>]) {
    assert_eq!(inputs.len(), program.n_inputs, "fused kernel: {} inputs for a program of {}", inputs.len(), program.n_inputs);
}

/// Runs `program` over the output `shape` into the row-major `out` (which need not be
/// initialised), reading `inputs` ([`Operand::Output`] is not allowed here).
///
/// # Panics
/// If the inputs do not match the program, or a strided input reads outside its slice.
pub fn eval<T: FusedFloat>(program: &Program, inputs: &[Operand<'_, T>], shape: &[usize], out: &mut [MaybeUninit<T>]) {
    eval_with_level(crate::cpu::active_level(), program, inputs, shape, out)
}

/// [`eval`] on a chosen instruction-set level, which this CPU must support.
fn eval_with_level<T: FusedFloat>(level: CpuLevel, program: &Program, inputs: &[Operand<'_, T>], shape: &[usize], out: &mut [MaybeUninit<T>]) {
    assert!(level.is_supported(), "fused kernel: this CPU cannot run the {level} kernels");
    let numel: usize = shape.iter().product();
    assert_eq!(out.len(), numel, "fused kernel: output length vs shape {shape:?}");
    check(program, inputs);
    assert!(!inputs.iter().any(|o| matches!(o, Operand::Output)), "fused kernel: eval cannot read its output; use eval_range");
    let plan = Plan::new(shape, inputs);
    let work = numel.saturating_mul(program.steps.len().max(1));
    // Each task runs a contiguous run of blocks with its own registers.
    threads::for_each_chunk_mut_init(
        out,
        BLOCK,
        work,
        || vec![T::zero(); program.regs.max(1) * BLOCK],
        |regs, b, block| run_block(level, program, inputs, &plan, b * BLOCK, block, regs),
    );
}

/// [`eval`] into a new vector.
pub fn eval_vec<T: FusedFloat>(program: &Program, inputs: &[Operand<'_, T>], shape: &[usize]) -> Vec<T> {
    let numel: usize = shape.iter().product();
    let mut out: Vec<T> = Vec::with_capacity(numel);
    eval(program, inputs, shape, &mut out.spare_capacity_mut()[..numel]);
    // SAFETY: `eval` wrote all `numel` elements.
    unsafe { out.set_len(numel) };
    out
}

/// [`eval`] over the output elements `start..start + out.len()` only, on the calling thread,
/// where `out` already holds values that [`Operand::Output`] inputs read (for epilogues
/// applied to a GEMM result block right after it is computed).
pub fn eval_range<T: FusedFloat>(program: &Program, inputs: &[Operand<'_, T>], shape: &[usize], start: usize, out: &mut [T]) {
    let numel: usize = shape.iter().product();
    assert!(start + out.len() <= numel, "fused kernel: range {start}..{} outside {numel} elements", start + out.len());
    check(program, inputs);
    let plan = Plan::new(shape, inputs);
    let mut regs = vec![T::zero(); program.regs.max(1) * BLOCK];
    // SAFETY: `MaybeUninit<T>` has `T`'s layout; only initialised values are written.
    let out: &mut [MaybeUninit<T>] = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast(), out.len()) };
    let level = crate::cpu::active_level();
    for (b, block) in out.chunks_mut(BLOCK).enumerate() {
        run_block(level, program, inputs, &plan, start + b * BLOCK, block, &mut regs);
    }
}

/// Runs one block on `level`, which the caller has checked this CPU supports: the same code
/// compiled three times, so that the per-instruction loops (and the polynomial `exp`/`tanh`
/// inside them) become 8- or 16-lane AVX2/AVX-512 code instead of the 4-lane SSE2 the default
/// target allows. No fused multiply-adds are formed (Rust never contracts `a * b + c`), so every
/// level computes the same bits.
fn run_block<T: FusedFloat>(level: CpuLevel, program: &Program, inputs: &[Operand<'_, T>], plan: &Plan, start: usize, out: &mut [MaybeUninit<T>], regs: &mut [T]) {
    // Checked once per call by the public entry points, not per block.
    debug_assert!(level.is_supported(), "fused kernel: this CPU cannot run the {level} kernels");
    match level {
        // SAFETY: the callers pass only supported levels (`eval_with_level` asserts it,
        // `eval_range` uses `active_level`).
        #[cfg(target_arch = "x86_64")]
        CpuLevel::Avx512Vnni => unsafe { run_block_avx512(program, inputs, plan, start, out, regs) },
        #[cfg(target_arch = "x86_64")]
        CpuLevel::Avx2 => unsafe { run_block_avx2(program, inputs, plan, start, out, regs) },
        _ => run_block_body(program, inputs, plan, start, out, regs),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_block_avx2<T: FusedFloat>(program: &Program, inputs: &[Operand<'_, T>], plan: &Plan, start: usize, out: &mut [MaybeUninit<T>], regs: &mut [T]) {
    run_block_body(program, inputs, plan, start, out, regs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512dq,avx512vl")]
unsafe fn run_block_avx512<T: FusedFloat>(program: &Program, inputs: &[Operand<'_, T>], plan: &Plan, start: usize, out: &mut [MaybeUninit<T>], regs: &mut [T]) {
    run_block_body(program, inputs, plan, start, out, regs)
}

#[inline(always)]
fn run_block_body<T: FusedFloat>(program: &Program, inputs: &[Operand<'_, T>], plan: &Plan, start: usize, out: &mut [MaybeUninit<T>], regs: &mut [T]) {
    let n = out.len();
    debug_assert!(n <= BLOCK);
    let reg_ptr = regs.as_mut_ptr();
    let out_ptr = out.as_mut_ptr();
    // Where each register's `n` values are: its own `BLOCK`-element piece of `regs`, or, after
    // a load of a dense input, that input's elements themselves, read in place instead of
    // copied (the copies were a memcpy per input per block).
    // SAFETY (for every `add` below): `r < regs` and `regs` holds `regs * BLOCK` elements.
    // Filled in place: collected and then moved, the 128-byte vector was reloaded in 64-byte
    // pieces right after its 8-byte stores, a store-forwarding stall that took 15% of a
    // broadcast affine+relu block (`perf annotate`, AMD EPYC).
    let mut views: SmallVec<[*const T; 16]> = SmallVec::new();
    views.extend((0..program.regs).map(|r| unsafe { reg_ptr.add(r * BLOCK) } as *const T));
    for step in &program.steps {
        if let (Instr::Load(k), true) = (step.instr, step.dst != OUT) {
            if let (Operand::Strided { data, .. }, true) = (inputs[k], plan.dense[k]) {
                let offset = plan.inputs[k].as_ref().expect("strided input").2;
                views[step.dst] = data[offset + start..offset + start + n].as_ptr();
                continue;
            }
        }
        if step.dst != OUT {
            views[step.dst] = unsafe { reg_ptr.add(step.dst * BLOCK) };
        }
        // SAFETY: a view is either a live `n`-element slice of an input (borrowed for the
        // whole call, never written) or an initialised register (initialised when allocated);
        // `Program::new` never gives an instruction a destination equal to one of its
        // operands, and the output is a separate buffer, so each step's `&mut` destination
        // aliases none of the `&` operands it reads.
        let src = |r: usize| unsafe { std::slice::from_raw_parts(views[r], n) };
        let dst: &mut [MaybeUninit<T>] = unsafe {
            if step.dst == OUT {
                std::slice::from_raw_parts_mut(out_ptr, n)
            } else {
                std::slice::from_raw_parts_mut(reg_ptr.add(step.dst * BLOCK).cast(), n)
            }
        };
        match step.instr {
            Instr::Load(k) => match inputs[k] {
                Operand::Strided { data, .. } => plan.gather(k, data, start, dst),
                Operand::Output => {
                    if step.dst != OUT {
                        // SAFETY: only `eval_range` accepts `Output` inputs, and its output
                        // block is initialised; it is written only by the last step.
                        write_slice(dst, unsafe { std::slice::from_raw_parts(out_ptr.cast::<T>(), n) });
                    }
                }
            },
            Instr::Const(c) => dst.iter_mut().for_each(|o| *o = MaybeUninit::new(T::from_f64(c))),
            Instr::Unary(f, x) => unary(f, src(x), dst),
            Instr::Binary(f, x, y) => binary(f, src(x), src(y), dst),
            Instr::Scalar(f, c, x) => scalar(f, c, src(x), dst),
            Instr::Select { cmp, x, threshold, a, b } => {
                let (x, a, b, t) = (src(x), src(a), src(b), T::from_f64(threshold));
                // Both values are loaded before choosing, so the loop is a vector blend (an
                // indexed `if` kept the loads conditional and the loop scalar: 5x slower).
                macro_rules! select {
                    ($op:tt) => {
                        for (d, ((&xv, &av), &bv)) in dst.iter_mut().zip(x.iter().zip(a).zip(b)) {
                            *d = MaybeUninit::new(if xv $op t { av } else { bv });
                        }
                    };
                }
                match cmp {
                    Cmp::Gt => select!(>),
                    Cmp::Ge => select!(>=),
                    Cmp::Lt => select!(<),
                    Cmp::Le => select!(<=),
                }
            }
        }
    }
}

#[inline(always)]
fn map1<T: Copy>(x: &[T], d: &mut [MaybeUninit<T>], f: impl Fn(T) -> T) {
    for (o, &v) in d.iter_mut().zip(x) {
        *o = MaybeUninit::new(f(v));
    }
}

#[inline(always)]
fn unary<T: FusedFloat>(f: UnaryFn, x: &[T], d: &mut [MaybeUninit<T>]) {
    let c = T::from_f64;
    let (zero, one) = (T::zero(), T::one());
    match f {
        UnaryFn::Neg => map1(x, d, |v| -v),
        UnaryFn::Exp => map1(x, d, |v| v.fused_exp()),
        UnaryFn::Log => map1(x, d, |v| v.fused_log()),
        UnaryFn::Sqrt => map1(x, d, |v| v.sqrt()),
        UnaryFn::Rsqrt => map1(x, d, |v| one / v.sqrt()),
        UnaryFn::Abs => map1(x, d, |v| v.abs()),
        UnaryFn::Sin => map1(x, d, |v| v.sin()),
        UnaryFn::Cos => map1(x, d, |v| v.cos()),
        UnaryFn::Tanh => map1(x, d, |v| v.fused_tanh()),
        UnaryFn::Sigmoid => map1(x, d, |v| v.fused_sigmoid()),
        UnaryFn::Relu => map1(x, d, |v| if v <= zero { zero } else { v }),
        UnaryFn::Gelu => map1(x, d, |v| v.fused_gelu()),
        UnaryFn::GeluTanh => {
            let (k, kappa, h) = (c(0.797_884_560_802_865_4), c(0.044715), c(0.5));
            map1(x, d, |v| h * v * (one + (k * (v + kappa * v * v * v)).fused_tanh()))
        }
        UnaryFn::Silu => map1(x, d, |v| v * v.fused_sigmoid()),
        UnaryFn::Softplus => {
            let t = c(20.0);
            map1(x, d, |v| if v > t { v } else { v.exp().ln_1p() })
        }
        UnaryFn::Log1p => map1(x, d, |v| v.ln_1p()),
        UnaryFn::Square => map1(x, d, |v| v * v),
        UnaryFn::Reciprocal => map1(x, d, |v| one / v),
        UnaryFn::Erf => map1(x, d, |v| v.fused_erf()),
        UnaryFn::Elu(a) => {
            let a = c(a);
            map1(x, d, |v| if v > zero { v } else { a * v.exp_m1() })
        }
        UnaryFn::LeakyRelu(s) => {
            let s = c(s);
            map1(x, d, |v| if v > zero { v } else { v * s })
        }
        UnaryFn::Sign => map1(x, d, |v| {
            if v > zero {
                one
            } else if v < zero {
                -one
            } else {
                zero
            }
        }),
    }
}

#[inline(always)]
fn binary<T: FusedFloat>(f: BinaryFn, x: &[T], y: &[T], d: &mut [MaybeUninit<T>]) {
    let n = d.len();
    let (x, y) = (&x[..n], &y[..n]);
    macro_rules! zip {
        (|$a:ident, $b:ident| $e:expr) => {
            for i in 0..n {
                let ($a, $b) = (x[i], y[i]);
                d[i] = MaybeUninit::new($e);
            }
        };
    }
    match f {
        BinaryFn::Add => zip!(|a, b| a + b),
        BinaryFn::Sub => zip!(|a, b| a - b),
        BinaryFn::Mul => zip!(|a, b| a * b),
        BinaryFn::Div => zip!(|a, b| a / b),
        BinaryFn::Max => zip!(|a, b| if a.is_nan() || b.is_nan() { T::nan() } else if a >= b { a } else { b }),
        BinaryFn::Min => zip!(|a, b| if a.is_nan() || b.is_nan() { T::nan() } else if a <= b { a } else { b }),
    }
}

#[inline(always)]
fn scalar<T: FusedFloat>(f: ScalarFn, c: f64, x: &[T], d: &mut [MaybeUninit<T>]) {
    let k = T::from_f64(c);
    match f {
        ScalarFn::Add => map1(x, d, |v| v + k),
        ScalarFn::Mul => map1(x, d, |v| v * k),
        ScalarFn::Pow if c == 2.0 => map1(x, d, |v| v * v),
        ScalarFn::Pow => map1(x, d, |v| v.powf(k)),
        ScalarFn::RSub => map1(x, d, |v| k - v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_program_matches_scalar_loop() {
        // out[i, j] = sigmoid(a[i, j]) * b[j] + 0.5, a transposed in memory
        let (m, n) = (37, 300);
        let a: Vec<f32> = (0..m * n).map(|i| (i as f32 * 0.37).sin()).collect(); // stored [n, m]
        let b: Vec<f32> = (0..n).map(|j| j as f32 * 0.01).collect();
        let p = Program::new(
            &[
                Instr::Load(0),
                Instr::Unary(UnaryFn::Sigmoid, 0),
                Instr::Load(1),
                Instr::Binary(BinaryFn::Mul, 1, 2),
                Instr::Scalar(ScalarFn::Add, 0.5, 3),
            ],
            2,
            4,
        )
        .unwrap();
        let ops = [Operand::Strided { data: &a, offset: 0, strides: &[1, m] }, Operand::Strided { data: &b, offset: 0, strides: &[0, 1] }];
        let out = eval_vec(&p, &ops, &[m, n]);
        for i in 0..m {
            for j in 0..n {
                let v = a[j * m + i];
                let want = 1.0 / (1.0 + (-v).exp()) * b[j] + 0.5;
                // The fused sigmoid's exp is a polynomial within a few ulp of libm's.
                assert!((out[i * n + j] - want).abs() <= 1e-6 * want.abs(), "{} vs {want}", out[i * n + j]);
            }
        }
        // v0 and v2 share a register once sigmoid has read v0; a destination never aliases
        // its own operands, so mul needs a third. Without reuse this would be 4.
        assert_eq!(p.registers(), 3, "registers are reused");
    }

    /// Every instruction-set level computes the same bits (NaN payloads aside): the same Rust, compiled for wider
    /// registers, with no contraction into fused multiply-adds. Inputs cover NaN, the
    /// infinities, exp's overflow and underflow edges and tanh's switch between formulas.
    #[test]
    fn every_level_computes_the_same_bits() {
        let mut xs: Vec<f32> = (-4000..4000).map(|i| i as f32 * 0.031).collect();
        xs.extend([f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 88.72, 88.73, -103.9, -104.1, 0.625, -0.625, 1e-30, f32::MAX, f32::MIN]);
        let unaries = [UnaryFn::Exp, UnaryFn::Tanh, UnaryFn::Sigmoid, UnaryFn::Silu, UnaryFn::GeluTanh, UnaryFn::Gelu, UnaryFn::Log, UnaryFn::Softplus, UnaryFn::Relu, UnaryFn::Elu(1.0)];
        for f in unaries {
            // f(x) * x + 0.5, so binary and scalar instructions run on each level too.
            let p = Program::new(&[Instr::Load(0), Instr::Unary(f, 0), Instr::Binary(BinaryFn::Mul, 1, 0), Instr::Scalar(ScalarFn::Add, 0.5, 2)], 1, 3).unwrap();
            let run = |level: CpuLevel| {
                let mut out = vec![MaybeUninit::uninit(); xs.len()];
                eval_with_level(level, &p, &[Operand::Strided { data: &xs, offset: 0, strides: &[1] }], &[xs.len()], &mut out);
                out.into_iter().map(|v| unsafe { v.assume_init() }.to_bits()).collect::<Vec<u32>>()
            };
            let want = run(CpuLevel::Scalar);
            for level in CpuLevel::supported() {
                let got = run(level);
                // NaN payloads may differ; NaN-ness may not.
                let same = |a: u32, b: u32| a == b || (f32::from_bits(a).is_nan() && f32::from_bits(b).is_nan());
                let diff = (0..xs.len()).find(|&i| !same(got[i], want[i]));
                assert!(diff.is_none(), "{f:?} on {level}: x = {} gives {} (scalar {})", xs[diff.unwrap()], f32::from_bits(got[diff.unwrap()]), f32::from_bits(want[diff.unwrap()]));
            }
        }
    }

    #[test]
    fn rejects_bad_programs() {
        assert!(Program::new(&[Instr::Unary(UnaryFn::Exp, 0)], 0, 0).unwrap_err().contains("does not come before"));
        assert!(Program::new(&[Instr::Load(2)], 1, 0).unwrap_err().contains("input 2 of 1"));
    }
}
