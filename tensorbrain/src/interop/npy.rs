//! NumPy's `.npy` (one array) and `.npz` (a zip of named `.npy` files, as `np.savez` and
//! `np.savez_compressed` write) through the `ndarray-npy` crate.
//!
//! Files hold `f32`, `f64`, `i64`, `i32`, `i16`, `i8`, `u8` or `bool` arrays in C or Fortran
//! order, little- or big-endian; reading gives a tensor of the file's dtype. NumPy has no
//! `bfloat16`, and `ndarray-npy` does not write `float16`, so those tensors are rejected with
//! an error that says to convert them first.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek};
use std::path::Path;

use ndarray::{ArrayD, ArrayViewD};
use ndarray_npy::{NpzReader, NpzWriter, ReadNpyError, ReadNpyExt, ReadNpzError, ReadableElement, WritableElement, WriteNpyExt};

use crate::tensor::{DType, Element, Error, Result, Tensor};

fn io_error(context: String, source: std::io::Error) -> Error {
    Error::Io { context, source }
}

fn unsupported(op: &str, what: &Path, dtype: DType) -> Error {
    Error::Msg(format!("{op} {}: {dtype} tensors cannot be stored in .npy files (NumPy has no bfloat16 and ndarray-npy writes no float16); convert with to_dtype(DType::F32) first", what.display()))
}

/// Calls `$body` with `$t` bound to the Rust type of a dtype NumPy files can hold.
macro_rules! with_npy_type {
    ($dtype:expr, $t:ident => $body:expr, $otherwise:expr) => {
        match $dtype {
            DType::F32 => { type $t = f32; $body }
            DType::F64 => { type $t = f64; $body }
            DType::I64 => { type $t = i64; $body }
            DType::I32 => { type $t = i32; $body }
            DType::I16 => { type $t = i16; $body }
            DType::I8 => { type $t = i8; $body }
            DType::U8 => { type $t = u8; $body }
            DType::Bool => { type $t = bool; $body }
            _ => $otherwise,
        }
    };
}

/// The dtypes a file may hold, in the order reading tries them.
const FILE_DTYPES: [DType; 8] = [DType::F32, DType::F64, DType::I64, DType::I32, DType::I16, DType::I8, DType::U8, DType::Bool];

/// Reads one array of element type `T`, or `None` if the file holds another type.
fn read_as<T: Element + ReadableElement>(reader: impl Read) -> std::result::Result<Option<Tensor>, ReadNpyError> {
    match ArrayD::<T>::read_npy(reader) {
        Ok(a) => Ok(Some(Tensor::from_ndarray(a))),
        Err(ReadNpyError::WrongDescriptor(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads an array of whatever supported dtype `open()` yields, trying each in turn (a wrong
/// guess stops at the header, before the data).
fn read_any<R: Read>(what: &str, mut open: impl FnMut() -> Result<R>) -> Result<Tensor> {
    for dtype in FILE_DTYPES {
        let found = with_npy_type!(dtype, T => read_as::<T>(open()?), unreachable!("FILE_DTYPES are all readable"));
        match found {
            Ok(Some(t)) => return Ok(t),
            Ok(None) => continue,
            Err(e) => return Err(Error::Msg(format!("read_npy {what}: {e}"))),
        }
    }
    let descr = match ArrayD::<f32>::read_npy(open()?) {
        Err(ReadNpyError::WrongDescriptor(d)) => d.to_string(),
        _ => "?".into(),
    };
    Err(Error::Msg(format!("read_npy {what}: unsupported array type {descr}; expected one of float32, float64, int64, int32, int16, int8, uint8, bool")))
}

/// Reads a `.npy` file (`np.save`) into a tensor of the file's dtype and shape.
pub fn read_npy(path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    let what = path.display().to_string();
    read_any(&what, || File::open(path).map(BufReader::new).map_err(|e| io_error(format!("read_npy {what}"), e)))
}

/// Writes `array` (any layout) to `writer` as a `.npy` stream.
fn write_array<T: Element + WritableElement, W: std::io::Write>(t: &Tensor, writer: W) -> Result<std::result::Result<(), ndarray_npy::WriteNpyError>> {
    t.try_with_ndarray_view(|v: ArrayViewD<'_, T>| v.write_npy(writer))
}

/// Writes a tensor to a `.npy` file that `np.load` reads (C order; views are written in their
/// logical order). The tensor's storage is read in place, not copied first, where it is
/// contiguous.
pub fn write_npy(path: impl AsRef<Path>, t: &Tensor) -> Result<()> {
    let path = path.as_ref();
    let what = format!("write_npy {}", path.display());
    if !FILE_DTYPES.contains(&t.dtype()) {
        return Err(unsupported("write_npy", path, t.dtype()));
    }
    let t = if t.is_contiguous() { t.clone() } else { t.try_contiguous()? };
    let file = File::create(path).map_err(|e| io_error(what.clone(), e))?;
    let written = with_npy_type!(t.dtype(), T => write_array::<T, _>(&t, BufWriter::new(file))?, return Err(unsupported("write_npy", path, t.dtype())));
    written.map_err(|e| Error::Msg(format!("{what}: {e}")))
}

fn npz_error(what: &str, e: ReadNpzError) -> Error {
    Error::Msg(format!("load_npz {what}: {e}"))
}

/// Reads every array of a `.npz` file (`np.savez`, `np.savez_compressed`), by name (the
/// archive's names without `.npy`, as `np.load(..).files` lists them).
pub fn load_npz(path: impl AsRef<Path>) -> Result<HashMap<String, Tensor>> {
    let path = path.as_ref();
    let what = path.display().to_string();
    let file = File::open(path).map_err(|e| io_error(format!("load_npz {what}"), e))?;
    let mut npz = NpzReader::new(BufReader::new(file)).map_err(|e| npz_error(&what, e))?;
    let mut out = HashMap::new();
    for (index, name) in npz.names().map_err(|e| npz_error(&what, e))?.into_iter().enumerate() {
        let t = read_npz_entry(&mut npz, index, &format!("{what}[{name}]"))?;
        out.insert(name, t);
    }
    Ok(out)
}

fn read_npz_entry<R: Read + Seek>(npz: &mut NpzReader<R>, index: usize, what: &str) -> Result<Tensor> {
    for dtype in FILE_DTYPES {
        let found = with_npy_type!(dtype, T => match npz.by_index::<ndarray::OwnedRepr<T>, ndarray::IxDyn>(index) {
            Ok(a) => Some(Tensor::from_ndarray(a)),
            Err(ReadNpzError::Npy(ReadNpyError::WrongDescriptor(_))) => None,
            Err(e) => return Err(Error::Msg(format!("load_npz {what}: {e}"))),
        }, unreachable!("FILE_DTYPES are all readable"));
        if let Some(t) = found {
            return Ok(t);
        }
    }
    Err(Error::Msg(format!("load_npz {what}: unsupported array type; expected one of float32, float64, int64, int32, int16, int8, uint8, bool")))
}

/// Writes named tensors to a `.npz` file that `np.load` reads, deflate-compressed when
/// `compress` (as `np.savez_compressed`), stored otherwise (as `np.savez`). Names are written
/// in the order given.
pub fn save_npz<'a>(path: impl AsRef<Path>, tensors: impl IntoIterator<Item = (&'a str, &'a Tensor)>, compress: bool) -> Result<()> {
    let path = path.as_ref();
    let what = format!("save_npz {}", path.display());
    let tensors: Vec<(&str, &Tensor)> = tensors.into_iter().collect();
    if let Some((_, t)) = tensors.iter().find(|(_, t)| !FILE_DTYPES.contains(&t.dtype())) {
        return Err(unsupported("save_npz", path, t.dtype()));
    }
    let file = File::create(path).map_err(|e| io_error(what.clone(), e))?;
    let writer = BufWriter::new(file);
    let mut npz = if compress { NpzWriter::new_compressed(writer) } else { NpzWriter::new(writer) };
    for (name, t) in tensors {
        let t = if t.is_contiguous() { t.clone() } else { t.try_contiguous()? };
        let added = with_npy_type!(t.dtype(), T => t.try_with_ndarray_view(|v: ArrayViewD<'_, T>| npz.add_array(name, &v))?, return Err(unsupported("save_npz", path, t.dtype())));
        added.map_err(|e| Error::Msg(format!("{what}[{name}]: {e}")))?;
    }
    npz.finish().map_err(|e| Error::Msg(format!("{what}: {e}")))?;
    Ok(())
}
