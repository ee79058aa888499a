//! Element types a tensor can hold.

use half::{bf16, f16};

/// The element type of a tensor, known at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    /// Bytes (unsigned, wrapping). Masks were u8 before [`DType::Bool`]; ops that take a mask
    /// still accept 0/1 bytes.
    U8,
    I16,
    I8,
    /// `true`/`false`, one byte each: what comparisons return and masks are.
    Bool,
}

impl DType {
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
    }

    /// A signed or unsigned integer dtype (not bool).
    pub fn is_int(self) -> bool {
        matches!(self, DType::I64 | DType::I32 | DType::I16 | DType::I8 | DType::U8)
    }

    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::U8 | DType::I8 | DType::Bool => 1,
        }
    }

    /// The name PyTorch users know (`float32`), for error messages.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I64 => "i64",
            DType::I32 => "i32",
            DType::U8 => "u8",
            DType::I16 => "i16",
            DType::I8 => "i8",
            DType::Bool => "bool",
        }
    }

    /// Parses the short names used in fixtures and configs (`"f32"`, `"bf16"`, ...).
    pub fn from_name(name: &str) -> Option<DType> {
        Some(match name {
            "f32" | "float32" => DType::F32,
            "f64" | "float64" => DType::F64,
            "f16" | "float16" => DType::F16,
            "bf16" | "bfloat16" => DType::BF16,
            "i64" | "int64" => DType::I64,
            "i32" | "int32" => DType::I32,
            "u8" | "uint8" => DType::U8,
            "i16" | "int16" => DType::I16,
            "i8" | "int8" => DType::I8,
            "bool" => DType::Bool,
            _ => return None,
        })
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A Rust type that can be a tensor element.
pub trait Element: super::storage::StorageElement + Copy + Send + Sync + std::fmt::Debug + PartialOrd + Default + 'static {
    const DTYPE: DType;
    fn to_f64(self) -> f64;
    /// From f64: floats round once, integers truncate toward zero (saturating), bool is
    /// `v != 0` (so NaN is true).
    fn from_f64(v: f64) -> Self;
    /// Exact for integers and bools; floats truncate toward zero (saturating).
    fn to_i64(self) -> i64;
    /// From i64: narrower integers wrap (as a C cast does), floats round once, bool is `v != 0`.
    fn from_i64(v: i64) -> Self;
}

macro_rules! element {
    ($t:ty, $d:ident, $to:expr, $from:expr, $to_i:expr, $from_i:expr) => {
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            #[inline(always)]
            fn to_f64(self) -> f64 {
                $to(self)
            }
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                $from(v)
            }
            #[inline(always)]
            fn to_i64(self) -> i64 {
                $to_i(self)
            }
            #[inline(always)]
            fn from_i64(v: i64) -> Self {
                $from_i(v)
            }
        }
    };
}

element!(f32, F32, |x: f32| x as f64, |v| v as f32, |x: f32| x as i64, |v| v as f32);
element!(f64, F64, |x: f64| x, |v| v, |x: f64| x as i64, |v| v as f64);
// PyTorch converts integers to half types through f32.
element!(f16, F16, |x: f16| x.to_f64(), f16::from_f64, |x: f16| x.to_f32() as i64, |v| f16::from_f32(v as f32));
element!(bf16, BF16, |x: bf16| x.to_f64(), bf16::from_f64, |x: bf16| x.to_f32() as i64, |v| bf16::from_f32(v as f32));
element!(i64, I64, |x: i64| x as f64, |v| v as i64, |x: i64| x, |v| v);
element!(i32, I32, |x: i32| x as f64, |v| v as i32, |x: i32| x as i64, |v| v as i32);
element!(i16, I16, |x: i16| x as f64, |v| v as i16, |x: i16| x as i64, |v| v as i16);
element!(i8, I8, |x: i8| x as f64, |v| v as i8, |x: i8| x as i64, |v| v as i8);
element!(u8, U8, |x: u8| x as f64, |v| v as u8, |x: u8| x as i64, |v| v as u8);
element!(bool, Bool, |x: bool| x as u8 as f64, |v| v != 0.0, |x: bool| x as i64, |v| v != 0);
