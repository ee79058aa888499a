//! Reads `tests/parity/fixtures/nn_modules.safetensors` (written by
//! `tests/parity/generate_nn.py` with PyTorch) and replays its cases: outputs and input
//! gradients of `sum(out * gout)` are compared with each case's tolerance.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::Value;
use tensorbrain::autograd::grad;
use tensorbrain::{Result, Tensor};

pub struct Case {
    pub name: String,
    pub op: String,
    pub args: Value,
    pub inputs: usize,
    pub grad: Vec<bool>,
    pub rtol: f64,
    pub atol: f64,
}

pub struct Fixture {
    tensors: HashMap<String, Tensor>,
    pub cases: Vec<Case>,
}

impl Fixture {
    pub fn load() -> Fixture {
        Self::load_file("nn_modules.safetensors", "generate_nn.py")
    }

    /// Loads `tests/parity/fixtures/<file>`, written by `tests/parity/<generator>`.
    pub fn load_file(file: &str, generator: &str) -> Fixture {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/parity/fixtures").join(file);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run tests/parity/{generator})", path.display()));
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("safetensors header");
        let cases_json = meta.metadata().as_ref().and_then(|m| m.get("cases")).expect("`cases` metadata").clone();
        let cases: Vec<Value> = serde_json::from_str(&cases_json).expect("cases JSON");
        let cases = cases
            .into_iter()
            .map(|c| Case {
                name: c["name"].as_str().expect("name").to_string(),
                op: c["op"].as_str().expect("op").to_string(),
                args: c["args"].clone(),
                inputs: c["inputs"].as_u64().expect("inputs") as usize,
                grad: c["grad"].as_array().expect("grad").iter().map(|g| g.as_bool().expect("flag")).collect(),
                rtol: c["rtol"].as_f64().expect("rtol"),
                atol: c["atol"].as_f64().expect("atol"),
            })
            .collect();
        let tensors = tensorbrain::checkpoint::load_safetensors(&path).expect("fixture tensors");
        Fixture { tensors, cases }
    }

    pub fn get(&self, key: &str) -> Tensor {
        self.tensors.get(key).unwrap_or_else(|| panic!("fixture has no tensor {key}")).clone()
    }

    pub fn has(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    /// The cases of the given ops, asserting there are some.
    pub fn cases_of<'a>(&'a self, ops: &[&str]) -> Vec<&'a Case> {
        let out: Vec<&Case> = self.cases.iter().filter(|c| ops.contains(&c.op.as_str())).collect();
        assert!(!out.is_empty(), "fixture has no cases of {ops:?}");
        out
    }

    /// Runs `f` on the case's inputs (gradient-tracked where the case has gradients), compares
    /// the output and the input gradients, and returns the leaves used.
    pub fn check(&self, case: &Case, f: impl Fn(&[Tensor]) -> Result<Tensor>) -> Vec<Tensor> {
        let leaves: Vec<Tensor> =
            (0..case.inputs).map(|i| self.get(&format!("{}/in{i}", case.name)).set_requires_grad(case.grad[i])).collect();
        let out = f(&leaves).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_close(&format!("{} output", case.name), &out, &self.get(&format!("{}/out", case.name)), case.rtol, case.atol);
        if case.grad.iter().any(|&g| g) {
            let gout = self.get(&format!("{}/gout", case.name));
            let wrt: Vec<Tensor> = leaves.iter().zip(&case.grad).filter(|(_, &g)| g).map(|(l, _)| l.clone()).collect();
            let grads = grad(&out.mul(&gout).sum_all(), &wrt, None, false).unwrap_or_else(|e| panic!("{}: backward: {e}", case.name));
            let mut k = 0;
            for (i, &g) in case.grad.iter().enumerate() {
                if g {
                    let want = self.get(&format!("{}/grad{i}", case.name));
                    let got = grads[k].clone().unwrap_or_else(|| Tensor::zeros(want.shape(), want.dtype()));
                    assert_close(&format!("{} grad of input {i}", case.name), &got, &want, case.rtol, case.atol);
                    k += 1;
                }
            }
        }
        leaves
    }
}

/// `|got - want| <= atol + rtol·|want|` elementwise, with equal shapes.
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, rtol: f64, atol: f64) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let (g, w) = (got.to_vec::<f64>(), want.to_vec::<f64>());
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!((a - b).abs() <= atol + rtol * b.abs(), "{what}: element {i}: got {a}, PyTorch {b} (rtol {rtol}, atol {atol})");
    }
}
