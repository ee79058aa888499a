//! `QEmbedding`: an embedding table held in i8 with one symmetric scale per row (a quarter of
//! the f32 bytes), the weight-only dynamic quantization PyTorch applies to `nn.Embedding`
//! (per row, since rows are looked up one at a time). A lookup dequantizes only the rows it
//! reads: `out[i, :] = table[idx[i], :] · scale[idx[i]]`.

use super::qlinear::weight_qparams;
use super::scheme::{Granularity, QDType, QParams};
use crate::tensor::{DType, Error, Result, Tensor};

#[derive(Clone, Debug)]
pub struct QEmbedding {
    name: String,
    /// `[num_embeddings, dim]` i8.
    table: Tensor,
    /// `[num_embeddings, 1]` f32: each row's scale, shaped to broadcast over the row.
    scales: Tensor,
}

impl QEmbedding {
    /// Quantizes an f32 table `[num_embeddings, dim]` row by row.
    ///
    /// # Errors
    /// If the table is not a finite 2-D f32 tensor.
    pub fn from_f32(name: &str, weight: &Tensor) -> Result<QEmbedding> {
        if weight.rank() != 2 || weight.dtype() != DType::F32 {
            return Err(Error::Msg(format!("QEmbedding {name}: the table must be a 2-D f32 tensor, got {} {:?}", weight.dtype(), weight.shape())));
        }
        let dim = weight.shape()[1];
        let w = weight.to_vec::<f32>();
        if let Some(bad) = w.iter().position(|v| !v.is_finite()) {
            return Err(Error::Msg(format!("QEmbedding {name}: table value {} at [{}, {}] is not finite", w[bad], bad / dim, bad % dim)));
        }
        let params = weight_qparams(&w, dim, Granularity::PerChannel { axis: 0 })?;
        let table = super::ops::quantize(weight, &params)?;
        QEmbedding::from_parts(name, table, &params)
    }

    /// Builds the layer from an i8 table and its per-row parameters (e.g. loaded from
    /// safetensors).
    ///
    /// # Errors
    /// If the table is not 2-D i8 or the parameters are not one symmetric scale per row.
    pub fn from_parts(name: &str, table: Tensor, params: &QParams) -> Result<QEmbedding> {
        if table.rank() != 2 || table.dtype() != DType::I8 {
            return Err(Error::Msg(format!("QEmbedding {name}: the table must be 2-D i8, got {} {:?}", table.dtype(), table.shape())));
        }
        let rows = table.shape()[0];
        if !params.is_symmetric_i8() || params.axis != Some(0) || params.scales.len() != rows {
            return Err(Error::Msg(format!(
                "QEmbedding {name}: expected {rows} symmetric i8 scales along axis 0, got {} scales on axis {:?}",
                params.scales.len(),
                params.axis
            )));
        }
        let scales = Tensor::from_slice(&params.scales, &[rows, 1]);
        Ok(QEmbedding { name: name.to_string(), table, scales })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn num_embeddings(&self) -> usize {
        self.table.shape()[0]
    }
    pub fn dim(&self) -> usize {
        self.table.shape()[1]
    }
    /// The i8 table, `[num_embeddings, dim]`.
    pub fn table(&self) -> &Tensor {
        &self.table
    }
    /// Its per-row parameters (axis 0, zero points 0).
    pub fn params(&self) -> QParams {
        let scales = self.scales.to_vec::<f32>();
        QParams { dtype: QDType::I8, zero_points: vec![0; scales.len()], scales, axis: Some(0) }
    }

    /// The rows of `indices` (any integer shape), dequantized: `[..., dim]` f32.
    ///
    /// # Errors
    /// If an index is out of range or the indices are not integers (named by the lookup).
    pub fn forward(&self, indices: &Tensor) -> Result<Tensor> {
        let flat = indices.try_reshape(&[-1])?;
        let at = |e: Error| Error::Msg(format!("QEmbedding {}: {e}", self.name));
        let rows = self.table.try_index_select(0, &flat).map_err(at)?;
        let scales = self.scales.try_index_select(0, &flat).map_err(at)?;
        let mut shape: Vec<isize> = indices.shape().iter().map(|&d| d as isize).collect();
        shape.push(self.dim() as isize);
        rows.try_to_dtype(DType::F32)?.try_mul(&scales)?.try_reshape(&shape)
    }
}
