//! The request decoder against a hand-written signature: every way a request can be wrong is
//! a 400 whose message names the problem, and good requests decode to the right tensors.

use tensorbrain::nn::{DimCheck, Signature, TensorSpec};
use tensorbrain::DType;
use tensorbrain_serve::{Decoder, NonFinite, TensorData};

fn signature() -> Signature {
    Signature {
        model: "Net",
        inputs: vec![
            TensorSpec { name: "x", dtype: DType::F32, dims: vec![DimCheck::Sym("B"), DimCheck::Known(3)] },
            TensorSpec { name: "ids", dtype: DType::I64, dims: vec![DimCheck::Sym("B"), DimCheck::Sym("T")] },
        ],
        output: TensorSpec { name: "output", dtype: DType::F32, dims: vec![DimCheck::Sym("B"), DimCheck::Known(2)] },
    }
}

fn decoder() -> Decoder {
    Decoder::new(signature(), 8, NonFinite::Reject)
}

fn request(x: &str, ids: &str) -> String {
    format!(r#"{{"inputs": [{x}, {ids}]}}"#)
}

const X_OK: &str = r#"{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4.5, 5, 6]}"#;
const IDS_OK: &str = r#"{"name": "ids", "shape": [2, 2], "datatype": "INT64", "data": [[1, 2], [3, 4]]}"#;

/// The 400 message for `body`, asserting it is a 400.
fn rejected(body: &str) -> String {
    rejected_with(&decoder(), body.as_bytes(), None)
}

fn rejected_with(d: &Decoder, body: &[u8], header_len: Option<usize>) -> String {
    let e = d.decode(body, header_len).expect_err("the request should be refused");
    assert_eq!(e.status.as_u16(), 400, "{e}");
    e.message
}

#[test]
fn good_json_request_decodes_in_signature_order() {
    // Inputs may come in any order; nested and flat data are both row-major.
    let r = decoder().decode(request(IDS_OK, X_OK).as_bytes(), None).unwrap();
    assert_eq!(r.inputs[0], TensorData::F32(vec![1.0, 2.0, 3.0, 4.5, 5.0, 6.0]));
    assert_eq!(r.inputs[1], TensorData::I64(vec![1, 2, 3, 4]));
    assert_eq!(r.shapes, vec![vec![2, 3], vec![2, 2]]);
    assert_eq!(r.rows, 2);
    assert!(!r.binary_output);
}

#[test]
fn binary_tensor_extension() {
    let header = r#"{"id": "7", "inputs": [
        {"name": "x", "shape": [1, 3], "datatype": "FP32", "parameters": {"binary_data_size": 12}},
        {"name": "ids", "shape": [1, 1], "datatype": "INT64", "parameters": {"binary_data_size": 8}}],
        "parameters": {"binary_data_output": true, "timeout": 2500}}"#;
    let mut body = header.as_bytes().to_vec();
    for v in [0.5f32, -1.0, 2.0] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    body.extend_from_slice(&42i64.to_le_bytes());
    let r = decoder().decode(&body, Some(header.len())).unwrap();
    assert_eq!(r.inputs[0], TensorData::F32(vec![0.5, -1.0, 2.0]));
    assert_eq!(r.inputs[1], TensorData::I64(vec![42]));
    assert_eq!(r.id.as_deref(), Some("7"));
    assert!(r.binary_output);
    assert_eq!(r.timeout, Some(std::time::Duration::from_micros(2500)));

    // One byte short, one byte over, and a header length past the body.
    let m = rejected_with(&decoder(), &body[..body.len() - 1], Some(header.len()));
    assert!(m.contains("input `ids` needs 8 bytes of binary data but only 7 remain"), "{m}");
    let mut longer = body.clone();
    longer.push(0);
    let m = rejected_with(&decoder(), &longer, Some(header.len()));
    assert!(m.contains("1 bytes of binary data follow the JSON header but no input claims them"), "{m}");
    let m = rejected_with(&decoder(), &body, Some(body.len() + 10));
    assert!(m.contains("Inference-Header-Content-Length is"), "{m}");
}

#[test]
fn binary_size_must_match_the_shape() {
    let header = r#"{"inputs": [
        {"name": "x", "shape": [1, 3], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
        {"name": "ids", "shape": [1, 1], "datatype": "INT64", "data": [1]}]}"#;
    let mut body = header.as_bytes().to_vec();
    body.extend_from_slice(&[0; 8]);
    let m = rejected_with(&decoder(), &body, Some(header.len()));
    assert!(m.contains("input `x`: binary_data_size is 8 bytes but shape [1, 3] of FP32 needs 12"), "{m}");
}

#[test]
fn every_bad_input_is_a_400_that_says_what_is_wrong() {
    let cases: Vec<(String, &str)> = vec![
        ("{\"inputs\": [".into(), "not a valid inference request"),
        ("[1, 2]".into(), "not a valid inference request"),
        (r#"{"inputs": 5}"#.into(), "not a valid inference request"),
        (request(X_OK, r#"{"name": "idz", "shape": [2, 2], "datatype": "INT64", "data": [1, 2, 3, 4]}"#), "unknown input `idz`; Net takes `x` [-1, 3] FP32, `ids` [-1, -1] INT64"),
        (format!(r#"{{"inputs": [{X_OK}]}}"#), "input `ids` is missing"),
        (format!(r#"{{"inputs": [{X_OK}, {X_OK}, {IDS_OK}]}}"#), "input `x` is given twice"),
        (request(&X_OK.replace("FP32", "FP64"), IDS_OK), "input `x` must be FP32, got datatype FP64"),
        (request(&X_OK.replace("FP32", "FLOAT"), IDS_OK), "got datatype FLOAT (not a datatype of the protocol)"),
        (request(&X_OK.replace("[2, 3]", "[3, 2]"), IDS_OK), "input `x` must have shape [-1, 3] ([B, 3]), got [3, 2]: dim 1 must be 3"),
        (request(&X_OK.replace("[2, 3]", "[6]"), IDS_OK), "got [6]: 1 dims instead of 2"),
        (request(&X_OK.replace("[2, 3]", "[-2, 3]"), IDS_OK), "dim 0 is -2; every size must be at least 1"),
        (request(&X_OK.replace("[2, 3]", "[0, 3]"), IDS_OK), "dim 0 is 0; every size must be at least 1"),
        (request(X_OK, &IDS_OK.replace("[2, 2]", "[3, 1]").replace("[[1, 2], [3, 4]]", "[1, 2, 3]")), "size B is 2 in input `x` but 3 in input `ids`"),
        (request(&X_OK.replace("4.5, 5, 6", "4.5, 5"), IDS_OK), "input `x` has shape [2, 3], which is 6 values, but 5 were given"),
        (request(&X_OK.replace("4.5, 5, 6", "4.5, 5, 6, 7"), IDS_OK), "input `x`: more values than the 6 its shape holds"),
        (request(&X_OK.replace("4.5", "\"4.5\""), IDS_OK), "input `x`: invalid type: string \"4.5\", expected an array of FP32 numbers"),
        (request(&X_OK.replace("4.5", "1e39"), IDS_OK), "input `x` holds NaN or infinity at element 3"),
        (request(&X_OK.replace("4.5", "NaN"), IDS_OK), "JSON has no NaN or Infinity"),
        (request(X_OK, &IDS_OK.replace("[3, 4]", "[3, 4.5]")), "input `ids`: element 3 is 4.5, which is not a valid INT64"),
        (request(X_OK, &IDS_OK.replace("[3, 4]", "[3, 1e300]")), "element 3 is 1e300, which is not a valid INT64"),
        (request(&X_OK.replace(", \"data\": [1, 2, 3, 4.5, 5, 6]", ""), IDS_OK), "input `x` has no `data`"),
        (request(&X_OK.replace("\"data\"", "\"parameters\": {\"binary_data_size\": 24}, \"data\""), IDS_OK), "has both `data` and parameters.binary_data_size"),
        (request(&X_OK.replace("\"data\"", "\"parameters\": {\"binary_data_size\": -1}, \"data\""), IDS_OK), "parameters.binary_data_size must be a whole number"),
        (format!(r#"{{"inputs": [{X_OK}, {IDS_OK}], "outputs": [{{"name": "logits"}}]}}"#), "unknown output `logits`; Net has one output, `output`"),
        (format!(r#"{{"inputs": [{X_OK}, {IDS_OK}], "parameters": {{"binary_data_output": "yes"}}}}"#), "parameters.binary_data_output must be true or false"),
        (format!(r#"{{"inputs": [{X_OK}, {IDS_OK}], "outputs": [{{"name": "output", "parameters": {{"classification": 3}}}}]}}"#), "classification extension is not supported"),
    ];
    for (body, expected) in cases {
        let m = rejected(&body);
        assert!(m.contains(expected), "for {body}\n  got      {m}\n  expected {expected}");
    }
}

#[test]
fn batch_larger_than_max_batch_is_refused() {
    let x = r#"{"name": "x", "shape": [9, 3], "datatype": "FP32", "data": [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}"#;
    let ids = r#"{"name": "ids", "shape": [9, 1], "datatype": "INT64", "data": [0,0,0,0,0,0,0,0,0]}"#;
    let m = rejected(&request(x, ids));
    assert!(m.contains("a batch of 9 is more than this server's --max-batch 8"), "{m}");
}

#[test]
fn non_finite_values_pass_when_allowed() {
    let pass = Decoder::new(signature(), 8, NonFinite::Pass);
    let r = pass.decode(request(&X_OK.replace("4.5", "1e39"), IDS_OK).as_bytes(), None).unwrap();
    let TensorData::F32(x) = &r.inputs[0] else { panic!("f32 data") };
    assert!(x[3].is_infinite());
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let m = rejected(&request(&X_OK.replace("[1, 2, 3, 4.5, 5, 6]", &deep), IDS_OK));
    assert!(m.contains("recursion limit"), "{m}");
}
