//! What is wrong with bytes that are not a whole safetensors file, in words: "empty file",
//! "truncated: header says 188 bytes, file has 94", "not a safetensors file", instead of the
//! library's variant names (`HeaderTooSmall`, `InvalidHeaderLength`, ...).
//!
//! A safetensors file is an 8-byte little-endian header length `n`, `n` bytes of JSON header
//! (each tensor's dtype, shape and `data_offsets` into the data, plus string metadata), then
//! the tensor data, exactly as long as the offsets say.

use safetensors::SafeTensorError;

/// Describes why `bytes` failed to parse with `error`.
pub(crate) fn describe(bytes: &[u8], error: &SafeTensorError) -> String {
    let len = bytes.len();
    if len == 0 {
        return "empty file (0 bytes): not a safetensors file".to_string();
    }
    if len < 8 {
        return format!("not a safetensors file: {len} bytes is too short to hold the 8-byte header length that starts one");
    }
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let after_length = (len - 8) as u64;
    match error {
        SafeTensorError::HeaderTooLarge => format!(
            "not a safetensors file: read as a header length, its first 8 bytes say {header_len} bytes, more than safetensors allows (100 MB)"
        ),
        SafeTensorError::InvalidHeaderLength if header_len > after_length => {
            format!("truncated: header says {header_len} bytes, file has {after_length}")
        }
        SafeTensorError::InvalidHeader => format!("not a safetensors file: its {header_len}-byte header is not UTF-8 text"),
        SafeTensorError::InvalidHeaderStart | SafeTensorError::InvalidHeaderDeserialization | SafeTensorError::JsonError(_) => {
            format!("not a safetensors file: its {header_len}-byte header is not the JSON safetensors expects")
        }
        SafeTensorError::MetadataIncompleteBuffer => {
            let data = after_length - header_len;
            match described_data_len(&bytes[8..8 + header_len as usize]) {
                Some(want) if data < want => format!("truncated: the header describes {want} bytes of tensor data, the file has {data}"),
                Some(want) if data > want => {
                    format!("{} unexpected bytes after the {want} bytes of tensor data the header describes", data - want)
                }
                _ => format!("corrupt: the tensor data ({data} bytes) does not match what the header describes"),
            }
        }
        SafeTensorError::InvalidOffset(name) => {
            format!("corrupt header: the data offsets of tensor {name} do not start where the previous tensor's data ends")
        }
        SafeTensorError::TensorInvalidInfo => "corrupt header: a tensor's shape and dtype do not match the size of its data".to_string(),
        SafeTensorError::ValidationOverflow => "corrupt header: a tensor's size overflows".to_string(),
        other => format!("not a valid safetensors file ({other})"),
    }
}

/// The data length a valid header describes: the largest end offset of its tensors.
fn described_data_len(header: &[u8]) -> Option<u64> {
    let json: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(header).ok()?;
    json.iter().filter(|(k, _)| *k != "__metadata__").map(|(_, v)| v.get("data_offsets")?.get(1)?.as_u64()).try_fold(0, |m, end| Some(m.max(end?)))
}
