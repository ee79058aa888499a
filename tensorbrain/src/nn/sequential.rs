//! [`Sequential`]: layers applied one after another, built at run time like
//! `torch.nn.Sequential`, with parameters named by position (`0.weight`, `2.bias`).

use super::{join, Forward, Module, SummaryRow};
use crate::ops::Generator;
use crate::tensor::{Error, Result, Tensor};

/// An eager chain of boxed layers:
///
/// ```
/// use tensorbrain::nn::{Linear, ReLU, Sequential};
/// use tensorbrain::prelude::*;
/// let mlp = Sequential::new().add(Linear::<4, 8>::init(0)).add(ReLU::init(0)).add(Linear::<8, 2>::init(1));
/// let y = mlp.forward(&Tensor::randn(&[3, 4], DType::F32)).unwrap();
/// assert_eq!(y.shape(), &[3, 2]);
/// assert_eq!(mlp.named_parameters()[2].0, "2.weight");
/// ```
///
/// Shapes are checked when it runs, layer by layer (a `#[model]` checks them at compile time).
#[derive(Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Forward>>,
}

impl Sequential {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a layer (builder style).
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, layer: impl Forward + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }

    /// Appends a layer.
    pub fn push(&mut self, layer: impl Forward + 'static) {
        self.layers.push(Box::new(layer));
    }

    pub fn len(&self) -> usize {
        self.layers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The layer at `index`.
    pub fn get(&self, index: usize) -> Option<&dyn Forward> {
        self.layers.get(index).map(|l| &**l)
    }

    /// Applies each layer to the previous one's output; an error names the failing layer.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h).map_err(|e| Error::Msg(format!("Sequential layer {i} ({}): {e}", layer.kind())))?;
        }
        Ok(h)
    }
}

impl Forward for Sequential {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Sequential::forward(self, x)
    }
}

impl Module for Sequential {
    /// An empty container: the layers are chosen at run time, so there is nothing to draw.
    fn init_with(_: &mut Generator) -> Self {
        Sequential::new()
    }

    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        for (i, m) in self.layers.iter().enumerate() {
            m.visit_params(&join(prefix, &i.to_string()), f);
        }
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        for (i, m) in self.layers.iter_mut().enumerate() {
            m.visit_params_mut(&join(prefix, &i.to_string()), f);
        }
    }

    fn collect_params(&self, out: &mut Vec<Tensor>) {
        self.layers.iter().for_each(|m| m.collect_params(out));
    }

    fn param_count(&self) -> usize {
        self.layers.iter().map(|m| m.param_count()).sum()
    }

    fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        for (i, m) in self.layers.iter().enumerate() {
            m.visit_buffers(&join(prefix, &i.to_string()), f);
        }
    }

    fn visit_buffers_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        for (i, m) in self.layers.iter_mut().enumerate() {
            m.visit_buffers_mut(&join(prefix, &i.to_string()), f);
        }
    }

    fn set_training(&mut self, training: bool) {
        self.layers.iter_mut().for_each(|m| m.set_training(training));
    }

    fn summary_rows(&self, prefix: &str, rows: &mut Vec<SummaryRow>) {
        for (i, m) in self.layers.iter().enumerate() {
            m.summary_rows(&join(prefix, &i.to_string()), rows);
        }
    }

    fn kind(&self) -> String {
        "Sequential".into()
    }
}
