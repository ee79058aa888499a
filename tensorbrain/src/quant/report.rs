//! What quantization did: which layers run in int8 and which ops stayed f32.

use std::fmt;

use super::chains::KeptF32;
use super::config::Mode;

/// One layer that runs in int8.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedLayer {
    pub name: String,
    /// `Linear` or `Conv2d KHxKW`.
    pub kind: String,
    pub in_features: usize,
    pub out_features: usize,
    pub relu: bool,
    /// `dynamic`, or the calibrated `scale`/`zero point`.
    pub input: String,
    /// Whether the output stays u8 for the next int8 layer (else it is f32).
    pub output_u8: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct QuantReport {
    pub mode: Mode,
    pub quantized: Vec<QuantizedLayer>,
    pub kept_f32: Vec<KeptF32>,
}

impl fmt::Display for QuantReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:?} int8 quantization: {} layer(s) in int8, {} op(s) kept f32", self.mode, self.quantized.len(), self.kept_f32.len())?;
        for l in &self.quantized {
            writeln!(
                f,
                "  int8  {:<12} {} {}->{}{}  input {}  output {}",
                l.name,
                l.kind,
                l.in_features,
                l.out_features,
                if l.relu { " +ReLU" } else { "" },
                l.input,
                if l.output_u8 { "u8" } else { "f32" }
            )?;
        }
        for k in &self.kept_f32 {
            writeln!(f, "  f32   {:<12} {}: {}", k.label, k.op, k.why)?;
        }
        Ok(())
    }
}
