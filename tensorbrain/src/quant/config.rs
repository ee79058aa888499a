//! What `quantize` does: the mode, the weight granularity and the activation observer.

use super::observer::ObserverKind;
use super::scheme::Granularity;

/// PyTorch's post-training modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Weights int8 ahead of time; each layer quantizes its input from the batch's own range
    /// and returns f32. Needs no calibration data.
    Dynamic,
    /// Weights and activation ranges fixed ahead of time from calibration batches; activations
    /// stay u8 between consecutive int8 layers (each layer requantizes its output to the next
    /// one's input parameters).
    Static,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantConfig {
    pub mode: Mode,
    /// Per output channel (default) or per tensor weight scales.
    pub weights: Granularity,
    /// How calibration picks activation ranges (static mode).
    pub observer: ObserverKind,
}

impl QuantConfig {
    /// Dynamic quantization with per-channel weights.
    pub fn dynamic() -> QuantConfig {
        QuantConfig { mode: Mode::Dynamic, weights: Granularity::PerChannel { axis: 0 }, observer: ObserverKind::MinMax }
    }

    /// Static quantization with per-channel weights and min-max calibration.
    pub fn static_ptq() -> QuantConfig {
        QuantConfig { mode: Mode::Static, ..QuantConfig::dynamic() }
    }

    pub fn with_observer(self, observer: ObserverKind) -> QuantConfig {
        QuantConfig { observer, ..self }
    }

    pub fn per_tensor_weights(self) -> QuantConfig {
        QuantConfig { weights: Granularity::PerTensor, ..self }
    }
}
