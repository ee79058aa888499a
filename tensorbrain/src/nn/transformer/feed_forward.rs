//! The position-wise feed-forward block of a transformer layer.

use crate::nn::runtime::{dropout, DynLinear};
use crate::nn::{join, Module};
use crate::ops::Generator;
use crate::tensor::{Result, Tensor};

/// The feed-forward nonlinearity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activation {
    /// `linear2(relu(linear1(x)))` (`nn.TransformerEncoderLayer`'s default).
    #[default]
    Relu,
    /// `linear2(gelu(linear1(x)))`, exact (erf) GELU.
    Gelu,
    /// `linear2(silu(linear1(x)) * linear3(x))` (Shazeer 2020; LLaMA's `w2(silu(w1 x) * w3 x)`),
    /// without biases.
    SwiGlu,
}

/// `linear1` (`[d_ff, d_model]`), `linear2` (`[d_model, d_ff]`) and, for SwiGLU, the gate's
/// partner `linear3` (`[d_ff, d_model]`), with dropout after the activation in training.
pub struct FeedForward {
    pub linear1: DynLinear,
    pub linear2: DynLinear,
    pub linear3: Option<DynLinear>,
    activation: Activation,
    dropout: f64,
    training: bool,
}

impl FeedForward {
    pub fn new(d_model: usize, d_ff: usize, activation: Activation, bias: bool, dropout: f64, gen: &mut Generator) -> Self {
        let bias = bias && activation != Activation::SwiGlu;
        let linear1 = DynLinear::new(d_model, d_ff, bias, gen);
        let linear2 = DynLinear::new(d_ff, d_model, bias, gen);
        let linear3 = (activation == Activation::SwiGlu).then(|| DynLinear::new(d_model, d_ff, false, gen));
        FeedForward { linear1, linear2, linear3, activation, dropout, training: true }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.linear1.forward(x)?;
        // SwiGLU is the one activation built with linear3.
        let h = match &self.linear3 {
            Some(l3) => h.try_silu()?.try_mul(&l3.forward(x)?)?,
            None if self.activation == Activation::Gelu => h.try_gelu()?,
            None => h.try_relu()?,
        };
        self.linear2.forward(&dropout(&h, self.dropout, self.training)?)
    }

    /// Visits with PyTorch's layer-level names (`linear1.weight`, ...), which are the
    /// `nn.TransformerEncoderLayer` field names, so a layer calls this with its own prefix.
    pub(crate) fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.linear1.visit_params(&join(prefix, "linear1"), f);
        self.linear2.visit_params(&join(prefix, "linear2"), f);
        if let Some(l3) = &self.linear3 {
            l3.visit_params(&join(prefix, "linear3"), f);
        }
    }

    pub(crate) fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        self.linear1.visit_params_mut(&join(prefix, "linear1"), f);
        self.linear2.visit_params_mut(&join(prefix, "linear2"), f);
        if let Some(l3) = &mut self.linear3 {
            l3.visit_params_mut(&join(prefix, "linear3"), f);
        }
    }

    pub(crate) fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}
