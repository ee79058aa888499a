//! The first-order backward of a unary op in one pass of the fused elementwise kernel.

use std::cell::RefCell;
use std::rc::Rc;

use tensorbrain_ir::passes::fusion::program_of;
use tensorbrain_ir::{Op, UnaryOp};

use crate::compile::run::{run_fused, Lowered};
use crate::tensor::{DType, Device, Result, Tensor};

thread_local! {
    /// Each op's lowered backward program, built once per thread: lowering takes microseconds,
    /// about what the whole pass takes on a small tensor.
    static PROGRAMS: RefCell<Vec<(UnaryOp, Rc<Lowered>)>> = const { RefCell::new(Vec::new()) };
}

/// The gradient of `u`'s input from `s` (its saved output or input) and `g`, computed by the
/// fused kernel; `None` where that kernel does not apply (not both on the CPU in the same f32
/// or f64, or shapes that differ), for the caller's op-by-op rule.
pub(super) fn run(u: UnaryOp, s: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
    let on_cpu = s.device() == Device::Cpu && g.device() == Device::Cpu;
    if !on_cpu || s.dtype() != g.dtype() || !matches!(s.dtype(), DType::F32 | DType::F64) || s.shape() != g.shape() {
        return Ok(None);
    }
    let program = lowered(u)?;
    run_fused(&program, &[s, g]).map(Some)
}

fn lowered(u: UnaryOp) -> Result<Rc<Lowered>> {
    PROGRAMS.with(|cache| {
        if let Some((_, p)) = cache.borrow().iter().find(|(op, _)| *op == u) {
            return Ok(p.clone());
        }
        // Inputs in the order `Op::UnaryBackward` takes them: the saved tensor, then the gradient.
        let program = Rc::new(Lowered::new(&program_of(&Op::UnaryBackward(u), 2))?);
        cache.borrow_mut().push((u, program.clone()));
        Ok(program)
    })
}
