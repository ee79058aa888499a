//! `#[model]` publishes `forward`'s typed signature at run time (`ModelSignature`): names,
//! dtypes and dims exactly as written in `tb![...]`.

use tensorbrain::nn::{DimCheck, ModelSignature, Signature, TensorSpec};
use tensorbrain::prelude::*;

#[model]
pub struct Mlp {
    fc1: Linear<784, 32>,
    fc2: Linear<32, 10>,
}

#[model]
impl Mlp {
    pub fn forward(&self, pixels: tb![B, 784]) -> tb![B, 10] {
        self.fc2(self.fc1(pixels).relu())
    }
}

#[model]
pub struct Tagger {
    embed: Embedding<50, 8>,
    out: Linear<8, 3>,
}

#[model]
impl Tagger {
    pub fn forward(&self, tokens: tb![B, T; i64], scale: tb![B, T, 1]) -> tb![B, T, 3] {
        self.out(self.embed(tokens) * scale)
    }
}

#[test]
fn mlp_signature_matches_its_forward() {
    let sig = Mlp::signature();
    assert_eq!(
        sig,
        Signature {
            model: "Mlp",
            inputs: vec![TensorSpec { name: "pixels", dtype: DType::F32, dims: vec![DimCheck::Sym("B"), DimCheck::Known(784)] }],
            output: TensorSpec { name: "output", dtype: DType::F32, dims: vec![DimCheck::Sym("B"), DimCheck::Known(10)] },
        }
    );
    assert_eq!(sig.inputs[0].shape_with_wildcards(), vec![-1, 784]);
    assert_eq!(sig.batch_symbol(), Some("B"));
    assert_eq!(sig.to_string(), "Mlp(pixels: [B, 784] f32) -> [B, 10] f32");
}

#[test]
fn two_input_signature_keeps_order_dtypes_and_symbols() {
    let sig = Tagger::signature();
    let names: Vec<&str> = sig.inputs.iter().map(|i| i.name).collect();
    assert_eq!(names, ["tokens", "scale"]);
    assert_eq!(sig.inputs[0].dtype, DType::I64);
    assert_eq!(sig.inputs[1].shape_string(), "[B, T, 1]");
    assert_eq!(sig.output.shape_with_wildcards(), vec![-1, -1, 3]);
    assert_eq!(sig.batch_symbol(), Some("B"));
}

#[test]
fn signature_check_reports_what_forward_dyn_reports() {
    let sig = Mlp::signature();
    assert!(sig.check(&[Tensor::zeros(&[3, 784], DType::F32)]).is_ok());
    let wrong = [Tensor::zeros(&[3, 780], DType::F32)];
    let from_sig = sig.check(&wrong).unwrap_err().to_string();
    let from_forward = Mlp::init(0).forward_dyn(&wrong).unwrap_err().to_string();
    assert_eq!(from_sig, from_forward);
    assert!(from_sig.contains("`pixels` must have shape [B, 784]"), "{from_sig}");
    let err = sig.check(&[Tensor::zeros(&[3, 784], DType::F64)]).unwrap_err().to_string();
    assert!(err.contains("must be f32, got f64"), "{err}");
}

#[test]
fn no_batch_symbol_when_the_output_does_not_start_with_one() {
    let mut sig = Mlp::signature();
    sig.output.dims = vec![DimCheck::Known(10)];
    assert_eq!(sig.batch_symbol(), None);
}
