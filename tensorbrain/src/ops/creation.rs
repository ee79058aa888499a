//! Creating tensors: constants, ranges, identity, and seeded random numbers.

use std::cell::RefCell;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{any_dispatch, ok};
use crate::tensor::{DType, Element, Result, StorageElement, Tensor};

/// A seedable random number generator (ChaCha8: fast, reproducible across platforms).
#[derive(Clone, Debug)]
pub struct Generator {
    pub(crate) rng: ChaCha8Rng,
}

impl Generator {
    pub fn new(seed: u64) -> Generator {
        Generator { rng: ChaCha8Rng::seed_from_u64(seed) }
    }

    /// The full state, for checkpoints: seed plus position in the stream.
    pub fn state(&self) -> (u64, u128) {
        let seed = u64::from_le_bytes(self.rng.get_seed()[..8].try_into().expect("8 bytes"));
        (seed, self.rng.get_word_pos())
    }

    pub fn set_state(&mut self, (seed, pos): (u64, u128)) {
        self.rng = ChaCha8Rng::seed_from_u64(seed);
        self.rng.set_word_pos(pos);
    }
}

thread_local! {
    static DEFAULT_GENERATOR: RefCell<Generator> = RefCell::new(Generator::new(0));
}

/// Seeds this thread's default generator (used by `rand`, `randn`, layer init, dropout...).
pub fn manual_seed(seed: u64) {
    DEFAULT_GENERATOR.with(|g| *g.borrow_mut() = Generator::new(seed));
}

/// Runs `f` with this thread's default generator.
pub fn with_default_generator<R>(f: impl FnOnce(&mut Generator) -> R) -> R {
    DEFAULT_GENERATOR.with(|g| f(&mut g.borrow_mut()))
}

impl Tensor {
    /// A tensor of `shape` filled with `value` (converted to `dtype`).
    pub fn full(shape: &[usize], value: f64, dtype: DType) -> Tensor {
        let n = shape.iter().product();
        any_dispatch!(dtype, T => Tensor::from_storage(T::wrap(vec![<T as Element>::from_f64(value); n]), shape))
    }

    pub fn zeros(shape: &[usize], dtype: DType) -> Tensor {
        Tensor::full(shape, 0.0, dtype)
    }

    pub fn ones(shape: &[usize], dtype: DType) -> Tensor {
        Tensor::full(shape, 1.0, dtype)
    }

    pub fn zeros_like(&self) -> Tensor {
        Tensor::zeros(self.shape(), self.dtype())
    }

    pub fn ones_like(&self) -> Tensor {
        Tensor::ones(self.shape(), self.dtype())
    }

    pub fn full_like(&self, value: f64) -> Tensor {
        Tensor::full(self.shape(), value, self.dtype())
    }

    pub(crate) fn try_zeros_like(&self) -> Result<Tensor> {
        Ok(self.zeros_like())
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Tensor>();
    let _ = ok::<()>;
}
