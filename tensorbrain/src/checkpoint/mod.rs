//! Checkpoints: safetensors files (readable by PyTorch and Hugging Face), written atomically,
//! and training checkpoints: directories of them saved all-or-nothing ([`CheckpointDir`]) with
//! SHA-256 checksums.

mod atomic;
mod checksums;
mod fs;
mod invalid;
mod store;
mod training;

use std::collections::HashMap;
use std::path::Path;

use half::{bf16, f16};
use safetensors::tensor::{Dtype as StDtype, TensorView};
use safetensors::SafeTensors;

pub use atomic::write_atomically;
pub use checksums::{sha256_hex, CHECKSUMS_FILE};
pub use fs::{CheckpointFs, LocalFs};
pub use store::{CheckpointDir, DEFAULT_KEEP_LAST};
pub use training::{DataParallelState, TrainingCheckpoint, TrainingState, MODEL_FILE, STATE_FILE};

use crate::tensor::{DType, Device, Error, Result, Tensor};

fn st_dtype(d: DType) -> StDtype {
    match d {
        DType::F32 => StDtype::F32,
        DType::F64 => StDtype::F64,
        DType::F16 => StDtype::F16,
        DType::BF16 => StDtype::BF16,
        DType::I64 => StDtype::I64,
        DType::I32 => StDtype::I32,
        DType::U8 => StDtype::U8,
        DType::I16 => StDtype::I16,
        DType::I8 => StDtype::I8,
        DType::Bool => StDtype::BOOL,
    }
}

/// Serialises named tensors to safetensors bytes.
pub fn to_safetensors_bytes(tensors: &[(String, Tensor)], metadata: Option<HashMap<String, String>>) -> Result<Vec<u8>> {
    let contiguous: Vec<(String, Tensor)> =
        // Tensors on a GPU are copied to the host first (a checkpoint holds host bytes).
        tensors.iter().map(|(n, t)| Ok((n.clone(), t.detach().try_to_device(Device::Cpu)?.try_contiguous()?))).collect::<Result<_>>()?;
    let guards: Vec<_> = contiguous.iter().map(|(_, t)| t.storage()).collect();
    let mut views = Vec::with_capacity(contiguous.len());
    for ((name, t), g) in contiguous.iter().zip(&guards) {
        let bytes = g.cpu()?.as_bytes();
        let size = t.dtype().size_in_bytes();
        let start = t.layout().offset * size;
        let data = &bytes[start..start + t.numel() * size];
        let view = TensorView::new(st_dtype(t.dtype()), t.shape().to_vec(), data)
            .map_err(|e| Error::Msg(format!("cannot serialise {name}: {e}")))?;
        views.push((name.clone(), view));
    }
    safetensors::tensor::serialize(views, &metadata).map_err(|e| Error::Msg(format!("safetensors: {e}")))
}

/// Writes named tensors to `path` as safetensors, atomically.
pub fn save_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let bytes = to_safetensors_bytes(tensors, None)?;
    write_atomically(path, &bytes)
}

/// Reads every tensor of a safetensors file.
pub fn load_safetensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    Ok(load_safetensors_with_metadata(path)?.0)
}

/// Parses safetensors bytes; corrupt or truncated input is an error, never a panic.
pub fn from_safetensors_bytes(bytes: &[u8]) -> Result<HashMap<String, Tensor>> {
    Ok(from_safetensors_bytes_with_metadata(bytes)?.0)
}

/// Reads every tensor of a safetensors file and its string metadata (empty if it has none).
pub fn load_safetensors_with_metadata(path: &Path) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io { context: format!("cannot read checkpoint {}", path.display()), source: e })?;
    from_safetensors_bytes_with_metadata(&bytes).map_err(|e| Error::Msg(format!("{}: {e}", path.display())))
}

/// [`from_safetensors_bytes`], also returning the file's metadata.
pub fn from_safetensors_bytes_with_metadata(bytes: &[u8]) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| Error::Msg(invalid::describe(bytes, &e)))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Msg(invalid::describe(bytes, &e)))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        out.insert(name.clone(), tensor_from_view(&name, &view)?);
    }
    Ok((out, metadata))
}

/// Copies one safetensors view into a tensor.
pub fn tensor_from_view(name: &str, view: &TensorView<'_>) -> Result<Tensor> {
    let shape = view.shape().to_vec();
    let data = view.data();
    fn cast<T: bytemuck::Pod>(data: &[u8]) -> Vec<T> {
        // The data may not be aligned for T inside the file buffer: copy bytewise.
        data.chunks_exact(std::mem::size_of::<T>()).map(bytemuck::pod_read_unaligned).collect()
    }
    match view.dtype() {
        StDtype::F32 => Tensor::try_from_vec(cast::<f32>(data), &shape),
        StDtype::F64 => Tensor::try_from_vec(cast::<f64>(data), &shape),
        StDtype::F16 => Tensor::try_from_vec(cast::<f16>(data), &shape),
        StDtype::BF16 => Tensor::try_from_vec(cast::<bf16>(data), &shape),
        StDtype::I64 => Tensor::try_from_vec(cast::<i64>(data), &shape),
        StDtype::I32 => Tensor::try_from_vec(cast::<i32>(data), &shape),
        StDtype::U8 => Tensor::try_from_vec(data.to_vec(), &shape),
        StDtype::I16 => Tensor::try_from_vec(cast::<i16>(data), &shape),
        StDtype::I8 => Tensor::try_from_vec(cast::<i8>(data), &shape),
        StDtype::BOOL => Tensor::try_from_vec(data.iter().map(|&b| b != 0).collect::<Vec<bool>>(), &shape),
        other => Err(Error::Msg(format!("tensor {name} has dtype {other:?}, which TensorBrain does not support"))),
    }
}
