//! Turns an inference request body (the protocol's JSON, optionally followed by Triton's binary
//! tensor data) into typed tensors, checked against the model's signature before anything is
//! queued. Every way a request can be wrong is a 400 whose message names the input and says
//! what was expected.

use std::fmt::Write as _;
use std::time::Duration;

use half::{bf16, f16};
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tensorbrain::nn::{DimCheck, Signature, TensorSpec};
use tensorbrain::DType;

use crate::error::ApiError;
use crate::tensor_data::{datatype_name, TensorData, PROTOCOL_DATATYPES};

/// What to do with NaN and infinite values in float inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NonFinite {
    /// Answer 400 naming the input and the first bad element.
    Reject,
    /// Hand them to the model.
    Pass,
}

/// A request that passed every check: one tensor per declared input, in the declared order.
#[derive(Debug)]
pub struct InferRequest {
    pub id: Option<String>,
    pub inputs: Vec<TensorData>,
    pub shapes: Vec<Vec<usize>>,
    /// Rows along the batch dim (1 for a model without one).
    pub rows: usize,
    /// Whether the output goes back as binary data after the JSON header.
    pub binary_output: bool,
    /// The request's own deadline (`parameters.timeout`, microseconds, as Triton reads it).
    pub timeout: Option<Duration>,
}

/// Checks requests against one model's signature.
#[derive(Clone, Debug)]
pub struct Decoder {
    pub signature: Signature,
    /// The symbol requests are batched along (`B`), if the signature has one.
    pub batch_symbol: Option<&'static str>,
    pub max_batch: usize,
    pub non_finite: NonFinite,
}

#[derive(Deserialize)]
struct RawRequest<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(borrow)]
    inputs: Vec<RawInput<'a>>,
    #[serde(default)]
    outputs: Option<Vec<RawOutput>>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct RawInput<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawOutput {
    name: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

impl Decoder {
    pub fn new(signature: Signature, max_batch: usize, non_finite: NonFinite) -> Decoder {
        let batch_symbol = signature.batch_symbol();
        Decoder { signature, batch_symbol, max_batch, non_finite }
    }

    /// `x: [-1, 784] FP32, y: ...`: what the model takes, for error messages.
    pub fn describe_inputs(&self) -> String {
        let mut out = String::new();
        for (i, spec) in self.signature.inputs.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(out, "{sep}`{}` {:?} {}", spec.name, spec.shape_with_wildcards(), datatype_name(spec.dtype));
        }
        out
    }

    /// Decodes a request body. `header_len` is the `Inference-Header-Content-Length` header:
    /// the JSON is that many leading bytes and binary tensor data follows.
    pub fn decode(&self, body: &[u8], header_len: Option<usize>) -> Result<InferRequest, ApiError> {
        let (json, mut binary) = match header_len {
            None => (body, &body[body.len()..]),
            Some(n) if n > body.len() => {
                return Err(bad(format!("Inference-Header-Content-Length is {n} but the body has only {} bytes", body.len())))
            }
            Some(n) => body.split_at(n),
        };
        let raw: RawRequest = serde_json::from_slice(json).map_err(|e| {
            // Python's json.dumps writes NaN and Infinity, which are not JSON.
            let text = String::from_utf8_lossy(json);
            let hint = if text.contains("NaN") || text.contains("Infinity") {
                " (JSON has no NaN or Infinity: send such values as binary tensor data)"
            } else {
                ""
            };
            bad(format!("the request is not a valid inference request: {e}{hint}"))
        })?;

        let params = Params::new("the request's", raw.parameters.as_ref());
        let binary_default = params.bool("binary_data_output")?.unwrap_or(false);
        let timeout = params.u64("timeout")?.map(Duration::from_micros);
        let binary_output = self.requested_output(raw.outputs.as_deref(), binary_default)?;

        let mut slots: Vec<Option<(TensorData, Vec<usize>)>> = vec![None; self.signature.inputs.len()];
        for input in &raw.inputs {
            let Some(k) = self.signature.inputs.iter().position(|s| s.name == input.name) else {
                return Err(bad(format!("unknown input `{}`; {} takes {}", input.name, self.signature.model, self.describe_inputs())));
            };
            if slots[k].is_some() {
                return Err(bad(format!("input `{}` is given twice", input.name)));
            }
            slots[k] = Some(self.decode_input(&self.signature.inputs[k], input, &mut binary)?);
        }
        if !binary.is_empty() {
            return Err(bad(format!(
                "{} bytes of binary data follow the JSON header but no input claims them (set each input's parameters.binary_data_size)",
                binary.len()
            )));
        }
        let mut inputs = Vec::with_capacity(slots.len());
        let mut shapes = Vec::with_capacity(slots.len());
        for (slot, spec) in slots.into_iter().zip(&self.signature.inputs) {
            let Some((data, shape)) = slot else {
                return Err(bad(format!("input `{}` is missing; {} takes {}", spec.name, self.signature.model, self.describe_inputs())));
            };
            inputs.push(data);
            shapes.push(shape);
        }
        self.check_symbols(&shapes)?;
        let rows = match self.batch_symbol {
            Some(_) => shapes[0][0],
            None => 1,
        };
        if self.batch_symbol.is_some() && rows > self.max_batch {
            return Err(bad(format!("a batch of {rows} is more than this server's --max-batch {}; split the request", self.max_batch)));
        }
        Ok(InferRequest { id: raw.id, inputs, shapes, rows, binary_output, timeout })
    }

    /// Whether the single output goes back in binary; rejects outputs the model does not have.
    fn requested_output(&self, outputs: Option<&[RawOutput]>, binary_default: bool) -> Result<bool, ApiError> {
        let mut binary = binary_default;
        for out in outputs.unwrap_or_default() {
            if out.name != Signature::OUTPUT_NAME {
                return Err(bad(format!("unknown output `{}`; {} has one output, `{}`", out.name, self.signature.model, Signature::OUTPUT_NAME)));
            }
            let owner = format!("output `{}`'s", out.name);
            let params = Params::new(&owner, out.parameters.as_ref());
            if params.get("classification").is_some() {
                return Err(bad("the classification extension is not supported; request the raw output"));
            }
            if let Some(b) = params.bool("binary_data")? {
                binary = b;
            }
        }
        Ok(binary)
    }

    fn decode_input(&self, spec: &TensorSpec, input: &RawInput, binary: &mut &[u8]) -> Result<(TensorData, Vec<usize>), ApiError> {
        let name = spec.name;
        let expected = datatype_name(spec.dtype);
        if input.datatype != expected {
            let what = if PROTOCOL_DATATYPES.contains(&input.datatype.as_str()) { "" } else { " (not a datatype of the protocol)" };
            return Err(bad(format!("input `{name}` must be {expected}, got datatype {}{what}", input.datatype)));
        }
        let shape = self.check_shape(spec, &input.shape)?;
        let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| bad(format!("input `{name}`: shape {:?} is too large", input.shape)))?;

        let owner = format!("input `{name}`'s");
        let params = Params::new(&owner, input.parameters.as_ref());
        let data = match (params.u64("binary_data_size")?, input.data) {
            (Some(_), Some(_)) => return Err(bad(format!("input `{name}` has both `data` and parameters.binary_data_size; give one"))),
            (None, None) => return Err(bad(format!("input `{name}` has no `data` (nor parameters.binary_data_size for binary data)"))),
            (Some(size), None) => {
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                let want = count.checked_mul(spec.dtype.size_in_bytes());
                if want != Some(size) {
                    return Err(bad(format!(
                        "input `{name}`: binary_data_size is {size} bytes but shape {shape:?} of {expected} needs {}",
                        want.map_or("more than fits in memory".to_string(), |w| w.to_string())
                    )));
                }
                if binary.len() < size {
                    return Err(bad(format!("input `{name}` needs {size} bytes of binary data but only {} remain in the body", binary.len())));
                }
                let (mine, rest) = binary.split_at(size);
                *binary = rest;
                TensorData::from_le_bytes(spec.dtype, mine)
            }
            (None, Some(raw)) => parse_json_data(spec.dtype, raw, count).map_err(|e| bad(format!("input `{name}`: {e}")))?,
        };
        if data.len() != count {
            return Err(bad(format!("input `{name}` has shape {shape:?}, which is {count} values, but {} were given", data.len())));
        }
        if self.non_finite == NonFinite::Reject {
            if let Some(i) = data.first_non_finite() {
                return Err(bad(format!(
                    "input `{name}` holds NaN or infinity at element {i} (or a value beyond {expected}'s range); this server rejects them (--non-finite pass to allow)"
                )));
            }
        }
        Ok((data, shape))
    }

    /// The request's shape as sizes, checked against the declared dims.
    fn check_shape(&self, spec: &TensorSpec, shape: &[i64]) -> Result<Vec<usize>, ApiError> {
        let wrong = |why: String| {
            bad(format!("input `{}` must have shape {:?} ({}), got {shape:?}: {why}", spec.name, spec.shape_with_wildcards(), spec.shape_string()))
        };
        if shape.len() != spec.dims.len() {
            return Err(wrong(format!("{} dims instead of {}", shape.len(), spec.dims.len())));
        }
        let mut out = Vec::with_capacity(shape.len());
        for (i, (&got, dim)) in shape.iter().zip(&spec.dims).enumerate() {
            if got < 1 {
                return Err(wrong(format!("dim {i} is {got}; every size must be at least 1")));
            }
            let got = usize::try_from(got).map_err(|_| wrong(format!("dim {i} is too large")))?;
            if let DimCheck::Known(n) = dim {
                if *n != got {
                    return Err(wrong(format!("dim {i} must be {n}")));
                }
            }
            out.push(got);
        }
        Ok(out)
    }

    /// A size symbol (`B`) must have one value across all inputs of a request.
    fn check_symbols(&self, shapes: &[Vec<usize>]) -> Result<(), ApiError> {
        let mut bound: Vec<(&str, usize, &str)> = Vec::new();
        for (spec, shape) in self.signature.inputs.iter().zip(shapes) {
            for (dim, &size) in spec.dims.iter().zip(shape) {
                let DimCheck::Sym(s) = dim else { continue };
                match bound.iter().find(|(b, _, _)| b == s) {
                    Some((_, v, first)) if *v != size => {
                        return Err(bad(format!("size {s} is {v} in input `{first}` but {size} in input `{}`; it must be the same", spec.name)))
                    }
                    Some(_) => {}
                    None => bound.push((s, size, spec.name)),
                }
            }
        }
        Ok(())
    }
}

/// A `parameters` object, read with type checks.
struct Params<'a> {
    owner: &'a str,
    map: Option<&'a Map<String, Value>>,
}

impl<'a> Params<'a> {
    fn new(owner: &'a str, map: Option<&'a Map<String, Value>>) -> Params<'a> {
        Params { owner, map }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.and_then(|m| m.get(key))
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(bad(format!("{} parameters.{key} must be true or false, got {other}", self.owner))),
        }
    }

    fn u64(&self, key: &str) -> Result<Option<u64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| bad(format!("{} parameters.{key} must be a whole number ≥ 0, got {v}", self.owner))),
        }
    }
}

/// A JSON number as an element of one dtype, or why it cannot be one.
trait FromJsonNumber: Sized {
    const DATATYPE: &'static str;
    fn from_f64(v: f64) -> Option<Self>;
    fn from_i64(v: i64) -> Option<Self>;
    fn from_u64(v: u64) -> Option<Self>;
    /// JSON `true`/`false`: only a BOOL element takes them.
    fn from_bool(_: bool) -> Option<Self> {
        None
    }
}

macro_rules! float_from_json {
    ($t:ty, $name:literal, $conv:expr) => {
        impl FromJsonNumber for $t {
            const DATATYPE: &'static str = $name;
            fn from_f64(v: f64) -> Option<Self> {
                Some($conv(v))
            }
            fn from_i64(v: i64) -> Option<Self> {
                Some($conv(v as f64))
            }
            fn from_u64(v: u64) -> Option<Self> {
                Some($conv(v as f64))
            }
        }
    };
}
float_from_json!(f32, "FP32", |v: f64| v as f32);
float_from_json!(f64, "FP64", |v: f64| v);
float_from_json!(f16, "FP16", f16::from_f64);
float_from_json!(bf16, "BF16", bf16::from_f64);

macro_rules! int_from_json {
    ($t:ty, $name:literal) => {
        impl FromJsonNumber for $t {
            const DATATYPE: &'static str = $name;
            fn from_f64(v: f64) -> Option<Self> {
                // `3.0` is a fine INT64; `3.5` and `1e30` are not.
                (v.fract() == 0.0 && v >= <$t>::MIN as f64 && v <= <$t>::MAX as f64).then(|| v as $t)
            }
            fn from_i64(v: i64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
            fn from_u64(v: u64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
        }
    };
}
int_from_json!(i64, "INT64");
int_from_json!(i32, "INT32");
int_from_json!(i16, "INT16");
int_from_json!(i8, "INT8");
int_from_json!(u8, "UINT8");

impl FromJsonNumber for bool {
    const DATATYPE: &'static str = "BOOL";
    // Numbers 0 and 1 are accepted too, as NumPy-minded clients send them.
    fn from_f64(v: f64) -> Option<Self> {
        (v == 0.0 || v == 1.0).then_some(v == 1.0)
    }
    fn from_i64(v: i64) -> Option<Self> {
        (v == 0 || v == 1).then_some(v == 1)
    }
    fn from_u64(v: u64) -> Option<Self> {
        (v == 0 || v == 1).then_some(v == 1)
    }
    fn from_bool(v: bool) -> Option<Self> {
        Some(v)
    }
}

/// Parses `data` (a flat or nested array of numbers) straight into `T`s, stopping as soon as
/// there are more than `count` of them.
fn parse_vec<T: FromJsonNumber>(raw: &RawValue, count: usize) -> Result<Vec<T>, String> {
    let mut out = Vec::with_capacity(count);
    let mut de = serde_json::Deserializer::from_str(raw.get());
    FlatInto { out: &mut out, count }.deserialize(&mut de).map_err(|e| e.to_string())?;
    Ok(out)
}

fn parse_json_data(dtype: DType, raw: &RawValue, count: usize) -> Result<TensorData, String> {
    Ok(match dtype {
        DType::F32 => TensorData::F32(match crate::fast_json::flat_f32_array(raw.get().as_bytes(), count) {
            Some(v) => v,
            None => parse_vec(raw, count)?,
        }),
        DType::F64 => TensorData::F64(parse_vec(raw, count)?),
        DType::F16 => TensorData::F16(parse_vec(raw, count)?),
        DType::BF16 => TensorData::BF16(parse_vec(raw, count)?),
        DType::I64 => TensorData::I64(parse_vec(raw, count)?),
        DType::I32 => TensorData::I32(parse_vec(raw, count)?),
        DType::I16 => TensorData::I16(parse_vec(raw, count)?),
        DType::I8 => TensorData::I8(parse_vec(raw, count)?),
        DType::U8 => TensorData::U8(parse_vec(raw, count)?),
        DType::Bool => TensorData::Bool(parse_vec(raw, count)?),
    })
}

/// Flattens nested arrays of numbers into `out` (the protocol allows `data` flat or nested in
/// row-major order). serde_json's recursion limit bounds the nesting.
struct FlatInto<'v, T> {
    out: &'v mut Vec<T>,
    count: usize,
}

impl<'v, T: FromJsonNumber> FlatInto<'v, T> {
    fn push<E: de::Error>(self, v: Option<T>, shown: impl std::fmt::Debug) -> Result<(), E> {
        let v = v.ok_or_else(|| E::custom(format!("element {} is {shown:?}, which is not a valid {}", self.out.len(), T::DATATYPE)))?;
        if self.out.len() == self.count {
            return Err(E::custom(format!("more values than the {} its shape holds", self.count)));
        }
        self.out.push(v);
        Ok(())
    }
}

impl<'de, T: FromJsonNumber> DeserializeSeed<'de> for FlatInto<'_, T> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: FromJsonNumber> Visitor<'de> for FlatInto<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "an array of {} numbers (flat or nested)", T::DATATYPE)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(FlatInto { out: &mut *self.out, count: self.count })?.is_some() {}
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.push(T::from_f64(v), v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.push(T::from_i64(v), v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.push(T::from_u64(v), v)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.push(T::from_bool(v), v)
    }
}
