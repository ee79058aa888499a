//! The `Module` trait: what every layer and every `#[model]` struct provides.

use std::fmt;
use std::collections::HashMap;
use std::path::Path;

use crate::ops::Generator;
use crate::tensor::{Device, Error, Result, Tensor};

/// A layer or model: parameters reachable by dotted names (`fc1.weight`, the names a PyTorch
/// module with the same fields would use), seeded initialisation and train/eval mode.
///
/// `#[model]` derives this for structs whose fields are modules; layers implement it by hand.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a layer or a #[model]",
    label = "every field of a #[model] struct must be a layer (Linear, Conv2d, ...) or another #[model]",
    note = "keep other state outside the model struct"
)]
pub trait Module: Send + Sync {
    /// Builds the module with parameters drawn from `gen`, following PyTorch's default
    /// initialisation for each layer.
    fn init_with(gen: &mut Generator) -> Self
    where
        Self: Sized;

    /// Calls `f(name, parameter)` for every trainable parameter, names prefixed by `prefix`.
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor));

    /// Like [`Module::visit_params`] with mutable access, to replace tensors (device moves,
    /// loading).
    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor));

    /// Appends every parameter, in `visit_params` order, without building names (the hot path
    /// of every training step).
    fn collect_params(&self, out: &mut Vec<Tensor>) {
        self.visit_params("", &mut |_, t| out.push(t.clone()));
    }

    /// Number of parameter tensors.
    fn param_count(&self) -> usize {
        let mut n = 0;
        self.visit_params("", &mut |_, _| n += 1);
        n
    }

    /// Non-trainable state that is saved with the weights (batch norm running statistics).
    fn visit_buffers(&self, _prefix: &str, _f: &mut dyn FnMut(&str, &Tensor)) {}

    fn visit_buffers_mut(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut Tensor)) {}

    /// Switches training behaviour (dropout, batch norm) on or off, recursively.
    fn set_training(&mut self, _training: bool) {}

    /// One summary row per layer, for [`ModuleExt::summary`].
    fn summary_rows(&self, prefix: &str, rows: &mut Vec<SummaryRow>) {
        let mut count = 0;
        self.visit_params("", &mut |_, t| count += t.numel());
        rows.push(SummaryRow { name: prefix.to_string(), kind: self.kind(), params: count });
    }

    /// The layer's type as users write it (`Linear<784, 256>`).
    fn kind(&self) -> String {
        short_type_name(std::any::type_name::<Self>())
    }
}

/// Joins a prefix and a field name with a dot (`fc1` + `weight` = `fc1.weight`).
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn short_type_name(full: &str) -> String {
    // `tensorbrain::nn::layers::LinearOf<tensorbrain::shape::Const<784>, tensorbrain::shape::Const<256>>`
    // -> `Linear<784, 256>`: paths dropped, `Const<N>` written as `N`, and the size-generic
    // `XOf` types named by the alias users write.
    let mut out = String::new();
    let mut segment = String::new();
    // For each open `<`: whether its `>` is dropped (it closed a `Const<`).
    let mut open: Vec<bool> = Vec::new();
    for c in full.chars() {
        match c {
            ':' => segment.clear(),
            '<' if segment == "Const" => {
                segment.clear();
                open.push(true);
            }
            '<' | '>' | ',' | ' ' | '[' | ']' | ';' => {
                let name = if c == '<' { segment.strip_suffix("Of").filter(|s| !s.is_empty()).unwrap_or(&segment) } else { &segment };
                out.push_str(name);
                segment.clear();
                match c {
                    '<' => {
                        open.push(false);
                        out.push(c);
                    }
                    '>' => {
                        if !open.pop().unwrap_or(false) {
                            out.push(c);
                        }
                    }
                    _ => out.push(c),
                }
            }
            _ => segment.push(c),
        }
    }
    out.push_str(&segment);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn type_names_read_as_written() {
        let full = "tensorbrain::nn::layers::LinearOf<tensorbrain::shape::Const<784>, tensorbrain::shape::Const<256>>";
        assert_eq!(super::short_type_name(full), "Linear<784, 256>");
        assert_eq!(super::short_type_name("a::Wide<a::Const<4>, [b::Block<c::U64>; 3]>"), "Wide<4, [Block<U64>; 3]>");
    }
}

/// One line of a model summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummaryRow {
    pub name: String,
    pub kind: String,
    pub params: usize,
}

/// A printable table of layers and parameter counts.
#[derive(Clone, Debug)]
pub struct Summary {
    pub model: String,
    pub rows: Vec<SummaryRow>,
}

impl Summary {
    pub fn total_params(&self) -> usize {
        self.rows.iter().map(|r| r.params).sum()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name_w = self.rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(5);
        let kind_w = self.rows.iter().map(|r| r.kind.len()).max().unwrap_or(0).max(4);
        writeln!(f, "{}", self.model)?;
        writeln!(f, "{:<name_w$}  {:<kind_w$}  {:>12}", "layer", "type", "parameters")?;
        writeln!(f, "{}", "-".repeat(name_w + kind_w + 16))?;
        for r in &self.rows {
            writeln!(f, "{:<name_w$}  {:<kind_w$}  {:>12}", r.name, r.kind, group_thousands(r.params))?;
        }
        writeln!(f, "{}", "-".repeat(name_w + kind_w + 16))?;
        write!(f, "{:<name_w$}  {:<kind_w$}  {:>12}", "total", "", group_thousands(self.total_params()))
    }
}

fn group_thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Conveniences every module gets.
pub trait ModuleExt: Module {
    /// Builds the module from a seed.
    fn init(seed: u64) -> Self
    where
        Self: Sized,
    {
        Self::init_with(&mut Generator::new(seed))
    }

    /// `(name, parameter)` pairs in a stable order.
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        self.visit_params("", &mut |n, t| out.push((n.to_string(), t.clone())));
        out
    }

    fn parameters(&self) -> Vec<Tensor> {
        let mut out = Vec::new();
        self.collect_params(&mut out);
        out
    }

    /// Parameters and buffers: everything a checkpoint holds.
    fn state_dict(&self) -> Vec<(String, Tensor)> {
        let mut out = self.named_parameters();
        self.visit_buffers("", &mut |n, t| out.push((n.to_string(), t.clone())));
        out
    }

    fn num_parameters(&self) -> usize {
        self.parameters().iter().map(Tensor::numel).sum()
    }

    /// Clears every parameter's gradient.
    fn zero_grad(&self) {
        self.visit_params("", &mut |_, t| t.zero_grad());
    }

    fn train(&mut self) {
        self.set_training(true);
    }

    fn eval(&mut self) {
        self.set_training(false);
    }

    /// Moves every parameter and buffer to `device`.
    fn to_device(&mut self, device: Device) -> Result<()> {
        let mut err = None;
        let mut mv = |_: &str, t: &mut Tensor| {
            if err.is_none() && t.device() != device {
                // A parameter stays a leaf on its new device (not a copy with a grad_fn).
                match t.detach().try_to_device(device).and_then(|m| m.try_set_requires_grad(t.requires_grad())) {
                    Ok(moved) => *t = moved,
                    Err(e) => err = Some(e),
                }
            }
        };
        self.visit_params_mut("", &mut mv);
        self.visit_buffers_mut("", &mut mv);
        err.map_or(Ok(()), Err)
    }

    fn summary(&self) -> Summary {
        let mut rows = Vec::new();
        self.summary_rows("", &mut rows);
        // The model's own row holds the total; show its layers instead when it has any.
        if rows.len() > 1 {
            rows.retain(|r| !r.name.is_empty());
        }
        Summary { model: self.kind(), rows }
    }

    /// Writes parameters and buffers to a safetensors file (atomically: a crash never leaves
    /// a half-written file behind).
    fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::checkpoint::save_safetensors(path.as_ref(), &self.state_dict())
    }

    /// Loads parameters and buffers from a safetensors file. Missing, unexpected and
    /// mis-shaped tensors are reported together, and nothing is changed unless all fit.
    fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let loaded = crate::checkpoint::load_safetensors(path.as_ref())?;
        self.load_state_dict(loaded, &path.as_ref().display().to_string())
    }

    /// Checks that `tensors` hold exactly this model's parameters and buffers, with their
    /// shapes and dtypes; the error lists every problem and names `source`.
    fn check_state_dict(&self, tensors: &HashMap<String, Tensor>, source: &str) -> Result<()> {
        let expected = self.state_dict();
        let mut problems = Vec::new();
        for (name, t) in &expected {
            match tensors.get(name) {
                None => problems.push(format!("missing {name} (expected shape {:?})", t.shape())),
                Some(l) if l.shape() != t.shape() => {
                    problems.push(format!("{name} has shape {:?} in the file but {:?} in the model", l.shape(), t.shape()))
                }
                Some(l) if l.dtype() != t.dtype() => {
                    problems.push(format!("{name} is {} in the file but {} in the model", l.dtype(), t.dtype()))
                }
                Some(_) => {}
            }
        }
        let known: std::collections::HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
        let mut unexpected: Vec<&String> = tensors.keys().filter(|k| !known.contains(k.as_str())).collect();
        unexpected.sort();
        problems.extend(unexpected.into_iter().map(|n| format!("unexpected {n}")));
        if !problems.is_empty() {
            return Err(Error::Msg(format!("{source}: the checkpoint does not fit {}:\n  {}", self.kind(), problems.join("\n  "))));
        }
        Ok(())
    }

    /// Copies `tensors` (by dotted name) into the parameters and buffers, after
    /// [`ModuleExt::check_state_dict`]: nothing changes unless all fit.
    fn load_state_dict(&mut self, mut tensors: HashMap<String, Tensor>, source: &str) -> Result<()> {
        self.check_state_dict(&tensors, source)?;
        crate::autograd::no_grad(|| {
            for (name, t) in &self.state_dict() {
                t.copy_from(&tensors.remove(name).expect("checked above"));
            }
        });
        Ok(())
    }
}

impl<M: Module + ?Sized> ModuleExt for M {}

/// Arrays of modules are numbered like PyTorch's `ModuleList`: `blocks.0.fc.weight`.
impl<M: Module, const N: usize> Module for [M; N] {
    fn init_with(gen: &mut Generator) -> Self {
        std::array::from_fn(|_| M::init_with(gen))
    }

    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        for (i, m) in self.iter().enumerate() {
            m.visit_params(&join(prefix, &i.to_string()), f);
        }
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        for (i, m) in self.iter_mut().enumerate() {
            m.visit_params_mut(&join(prefix, &i.to_string()), f);
        }
    }

    fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        for (i, m) in self.iter().enumerate() {
            m.visit_buffers(&join(prefix, &i.to_string()), f);
        }
    }

    fn visit_buffers_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        for (i, m) in self.iter_mut().enumerate() {
            m.visit_buffers_mut(&join(prefix, &i.to_string()), f);
        }
    }

    fn set_training(&mut self, training: bool) {
        self.iter_mut().for_each(|m| m.set_training(training));
    }

    fn collect_params(&self, out: &mut Vec<Tensor>) {
        self.iter().for_each(|m| m.collect_params(out));
    }

    fn param_count(&self) -> usize {
        self.iter().map(Module::param_count).sum()
    }

    fn summary_rows(&self, prefix: &str, rows: &mut Vec<SummaryRow>) {
        for (i, m) in self.iter().enumerate() {
            m.summary_rows(&join(prefix, &i.to_string()), rows);
        }
    }
}
