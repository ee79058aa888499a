//! A request's or response's tensor contents as a typed flat vector, and the Open Inference
//! Protocol's datatype names. Batching concatenates and splits these along the first dim (the
//! batch dim is the outermost, so that is appending and slicing the row-major data).

use half::{bf16, f16};
use tensorbrain::{DType, Tensor};

/// Row-major tensor contents, one variant per dtype a `#[model]` input can have.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    I16(Vec<i16>),
    I8(Vec<i8>),
    U8(Vec<u8>),
    Bool(Vec<bool>),
}

/// Runs `$body` with `$v` bound to the vector inside `$data`, whatever its type.
macro_rules! with_vec {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::F32($v) => $body,
            TensorData::F64($v) => $body,
            TensorData::F16($v) => $body,
            TensorData::BF16($v) => $body,
            TensorData::I64($v) => $body,
            TensorData::I32($v) => $body,
            TensorData::I16($v) => $body,
            TensorData::I8($v) => $body,
            TensorData::U8($v) => $body,
            TensorData::Bool($v) => $body,
        }
    };
}

/// Same as [`with_vec`], rebuilding the same variant from `$body`'s vector.
macro_rules! map_vec {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::F32($v) => TensorData::F32($body),
            TensorData::F64($v) => TensorData::F64($body),
            TensorData::F16($v) => TensorData::F16($body),
            TensorData::BF16($v) => TensorData::BF16($body),
            TensorData::I64($v) => TensorData::I64($body),
            TensorData::I32($v) => TensorData::I32($body),
            TensorData::I16($v) => TensorData::I16($body),
            TensorData::I8($v) => TensorData::I8($body),
            TensorData::U8($v) => TensorData::U8($body),
            TensorData::Bool($v) => TensorData::Bool($body),
        }
    };
}

/// The protocol's name for a dtype (`FP32`, `INT64`, ...; `BF16` is Triton's extension).
pub fn datatype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "FP32",
        DType::F64 => "FP64",
        DType::F16 => "FP16",
        DType::BF16 => "BF16",
        DType::I64 => "INT64",
        DType::I32 => "INT32",
        DType::I16 => "INT16",
        DType::I8 => "INT8",
        DType::U8 => "UINT8",
        DType::Bool => "BOOL",
    }
}

/// Every datatype the protocol defines, so a request naming one we do not serve is told so
/// rather than that it misspelled something.
pub const PROTOCOL_DATATYPES: [&str; 14] =
    ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BF16", "BYTES"];

impl TensorData {
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F64(_) => DType::F64,
            TensorData::F16(_) => DType::F16,
            TensorData::BF16(_) => DType::BF16,
            TensorData::I64(_) => DType::I64,
            TensorData::I32(_) => DType::I32,
            TensorData::I16(_) => DType::I16,
            TensorData::I8(_) => DType::I8,
            TensorData::U8(_) => DType::U8,
            TensorData::Bool(_) => DType::Bool,
        }
    }

    pub fn len(&self) -> usize {
        with_vec!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decodes little-endian bytes (the binary tensor extension's layout). The caller has
    /// checked that `bytes.len()` is a whole number of elements.
    pub fn from_le_bytes(dtype: DType, bytes: &[u8]) -> TensorData {
        debug_assert_eq!(bytes.len() % dtype.size_in_bytes(), 0);
        fn read<T: bytemuck::Pod>(bytes: &[u8]) -> Vec<T> {
            // Copying through `pod_collect_to_vec` handles any alignment of the body buffer.
            let mut v: Vec<T> = bytemuck::allocation::pod_collect_to_vec(bytes);
            if cfg!(target_endian = "big") {
                v.iter_mut().for_each(|x| bytemuck::bytes_of_mut(x).reverse());
            }
            v
        }
        match dtype {
            DType::F32 => TensorData::F32(read(bytes)),
            DType::F64 => TensorData::F64(read(bytes)),
            DType::F16 => TensorData::F16(read(bytes)),
            DType::BF16 => TensorData::BF16(read(bytes)),
            DType::I64 => TensorData::I64(read(bytes)),
            DType::I32 => TensorData::I32(read(bytes)),
            DType::I16 => TensorData::I16(read(bytes)),
            DType::I8 => TensorData::I8(read(bytes)),
            DType::U8 => TensorData::U8(bytes.to_vec()),
            // Triton's binary BOOL is one byte per element, non-zero meaning true.
            DType::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
        }
    }

    /// Appends the little-endian bytes of every element to `out`.
    pub fn write_le_bytes(&self, out: &mut Vec<u8>) {
        fn write<T: bytemuck::Pod>(v: &[T], out: &mut Vec<u8>) {
            let start = out.len();
            out.extend_from_slice(bytemuck::cast_slice(v));
            if cfg!(target_endian = "big") {
                let size = std::mem::size_of::<T>();
                out[start..].chunks_mut(size).for_each(<[u8]>::reverse);
            }
        }
        match self {
            TensorData::Bool(v) => out.extend(v.iter().map(|&b| b as u8)),
            TensorData::F32(v) => write(v, out),
            TensorData::F64(v) => write(v, out),
            TensorData::F16(v) => write(v, out),
            TensorData::BF16(v) => write(v, out),
            TensorData::I64(v) => write(v, out),
            TensorData::I32(v) => write(v, out),
            TensorData::I16(v) => write(v, out),
            TensorData::I8(v) => write(v, out),
            TensorData::U8(v) => write(v, out),
        }
    }

    pub fn byte_len(&self) -> usize {
        self.len() * self.dtype().size_in_bytes()
    }

    /// The index of the first NaN or infinite element, if any (never for integer data).
    pub fn first_non_finite(&self) -> Option<usize> {
        match self {
            TensorData::F32(v) => v.iter().position(|x| !x.is_finite()),
            TensorData::F64(v) => v.iter().position(|x| !x.is_finite()),
            TensorData::F16(v) => v.iter().position(|x| !x.is_finite()),
            TensorData::BF16(v) => v.iter().position(|x| !x.is_finite()),
            TensorData::I64(_) | TensorData::I32(_) | TensorData::I16(_) | TensorData::I8(_) | TensorData::U8(_) | TensorData::Bool(_) => None,
        }
    }

    /// Joins pieces of one dtype end to end (concatenation along the outermost dim).
    pub fn concat(pieces: &[&TensorData]) -> TensorData {
        let (first, rest) = pieces.split_first().expect("concat needs at least one piece");
        let total = pieces.iter().map(|p| p.len()).sum();
        let mut out = map_vec!(first, v => {
            let mut out = Vec::with_capacity(total);
            out.extend_from_slice(v);
            out
        });
        rest.iter().for_each(|p| out.extend_from(p));
        out
    }

    /// Appends `other`'s elements; both must have the same dtype (the batcher joins only
    /// requests that passed the same signature check).
    pub fn extend_from(&mut self, other: &TensorData) {
        macro_rules! same_variant {
            ($($v:ident),*) => {
                match (self, other) {
                    $((TensorData::$v(a), TensorData::$v(b)) => a.extend_from_slice(b),)*
                    (a, b) => panic!("cannot join {} data to {} data", b.dtype(), a.dtype()),
                }
            };
        }
        same_variant!(F32, F64, F16, BF16, I64, I32, I16, I8, U8, Bool)
    }

    /// Elements `start..end` as their own data.
    pub fn slice(&self, start: usize, end: usize) -> TensorData {
        map_vec!(self, v => v[start..end].to_vec())
    }

    pub fn into_tensor(self, shape: &[usize]) -> tensorbrain::Result<Tensor> {
        with_vec!(self, v => Tensor::try_from_vec(v, shape))
    }

    /// A tensor's elements, row-major, in its own dtype.
    pub fn from_tensor(t: &Tensor) -> TensorData {
        match t.dtype() {
            DType::F32 => TensorData::F32(t.to_vec()),
            DType::F64 => TensorData::F64(t.to_vec()),
            DType::F16 => TensorData::F16(t.to_vec()),
            DType::BF16 => TensorData::BF16(t.to_vec()),
            DType::I64 => TensorData::I64(t.to_vec()),
            DType::I32 => TensorData::I32(t.to_vec()),
            DType::I16 => TensorData::I16(t.to_vec()),
            DType::I8 => TensorData::I8(t.to_vec()),
            DType::U8 => TensorData::U8(t.to_vec()),
            DType::Bool => TensorData::Bool(t.to_vec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn le_bytes_round_trip_every_dtype() {
        let cases = [
            TensorData::F32(vec![1.5, -2.0, f32::MAX]),
            TensorData::F64(vec![0.1, -1e300]),
            TensorData::F16(vec![f16::from_f32(0.5), f16::from_f32(-3.0)]),
            TensorData::BF16(vec![bf16::from_f32(2.0)]),
            TensorData::I64(vec![i64::MIN, 7]),
            TensorData::I32(vec![-1, i32::MAX]),
            TensorData::U8(vec![0, 255]),
        ];
        for data in cases {
            let mut bytes = vec![0xAB]; // an odd offset, as inside a request body
            data.write_le_bytes(&mut bytes);
            assert_eq!(bytes.len(), 1 + data.byte_len());
            assert_eq!(TensorData::from_le_bytes(data.dtype(), &bytes[1..]), data);
        }
        let mut bytes = Vec::new();
        TensorData::F32(vec![1.0]).write_le_bytes(&mut bytes);
        assert_eq!(bytes, 1.0f32.to_le_bytes());
    }

    #[test]
    fn concat_then_slice_gives_the_pieces_back() {
        let a = TensorData::I32(vec![1, 2, 3]);
        let b = TensorData::I32(vec![4, 5]);
        let joined = TensorData::concat(&[&a, &b]);
        assert_eq!(joined, TensorData::I32(vec![1, 2, 3, 4, 5]));
        assert_eq!(joined.slice(0, 3), a);
        assert_eq!(joined.slice(3, 5), b);
    }

    #[test]
    fn finds_nan_and_inf_but_not_in_integers() {
        assert_eq!(TensorData::F32(vec![0.0, 1.0, f32::NAN]).first_non_finite(), Some(2));
        assert_eq!(TensorData::F64(vec![f64::NEG_INFINITY]).first_non_finite(), Some(0));
        assert_eq!(TensorData::F16(vec![f16::from_f32(1.0)]).first_non_finite(), None);
        assert_eq!(TensorData::I64(vec![i64::MAX]).first_non_finite(), None);
    }

    #[test]
    fn tensor_round_trip() {
        let data = TensorData::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let t = data.clone().into_tensor(&[2, 3]).unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(TensorData::from_tensor(&t), data);
        assert!(TensorData::F32(vec![1.0]).into_tensor(&[2]).is_err());
    }
}
