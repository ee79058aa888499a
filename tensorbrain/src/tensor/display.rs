//! Printing tensors the way PyTorch users expect: nested brackets, long dims elided.

use std::fmt;

use super::{DType, Tensor};

/// Dims longer than this print their first and last few entries only.
const EDGE: usize = 3;
const ELIDE_ABOVE: usize = 2 * EDGE + 2;

impl fmt::Display for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values = self.to_vec::<f64>();
        let is_float = self.dtype().is_float();
        let is_bool = self.dtype() == DType::Bool;
        write!(f, "tensor(")?;
        write_nested(f, &values, self.shape(), 0, 0, &|f, v| match () {
            _ if is_bool => f.write_str(if v != 0.0 { "true" } else { "false" }),
            _ => write_value(f, v, is_float),
        })?;
        write!(f, ", shape={:?}", self.shape())?;
        if self.dtype() != DType::F32 {
            write!(f, ", dtype={}", self.dtype())?;
        }
        if self.requires_grad() {
            write!(f, ", requires_grad=true")?;
        }
        write!(f, ")")
    }
}

/// How one element prints.
type WriteValue<'a> = &'a dyn Fn(&mut fmt::Formatter<'_>, f64) -> fmt::Result;

fn write_nested(f: &mut fmt::Formatter<'_>, values: &[f64], shape: &[usize], depth: usize, start: usize, value: WriteValue) -> fmt::Result {
    if depth == shape.len() {
        return value(f, values[start]);
    }
    let n = shape[depth];
    let block: usize = shape[depth + 1..].iter().product();
    write!(f, "[")?;
    for i in 0..n {
        if n > ELIDE_ABOVE && i == EDGE {
            write!(f, "...")?;
            if depth + 1 < shape.len() {
                write!(f, ",\n{:indent$}", "", indent = depth + 8)?;
            } else {
                write!(f, ", ")?;
            }
            continue;
        }
        if n > ELIDE_ABOVE && i > EDGE && i < n - EDGE {
            continue;
        }
        write_nested(f, values, shape, depth + 1, start + i * block, value)?;
        if i + 1 < n {
            if depth + 1 < shape.len() {
                write!(f, ",\n{:indent$}", "", indent = depth + 8)?;
            } else {
                write!(f, ", ")?;
            }
        }
    }
    write!(f, "]")
}

fn write_value(f: &mut fmt::Formatter<'_>, v: f64, is_float: bool) -> fmt::Result {
    if !is_float {
        write!(f, "{}", v as i64)
    } else if v.is_finite() && v == v.trunc() && v.abs() < 1e16 {
        write!(f, "{v:.1}")
    } else if v != 0.0 && (v.abs() < 1e-4 || v.abs() >= 1e8) {
        write!(f, "{v:.4e}")
    } else {
        write!(f, "{v:.4}")
    }
}
