//! A linear layer whose weight is kept transposed (`[in, out]`, contiguous), so every product is a
//! plain row-major GEMM: candle's CPU GEMM runs markedly faster on that layout than on the
//! transposed view of a PyTorch `[out, in]` weight.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use crate::error::Result;

/// `y = x W^T + b` with `W^T` stored contiguously.
#[derive(Debug, Clone)]
pub struct Linear {
    weight_t: Tensor,
    bias: Tensor,
}

impl Linear {
    /// Loads `{vb}.weight` (`[out, in]`) and `{vb}.bias` (`[out]`) in `dtype`.
    pub fn load(vb: VarBuilder, in_dim: usize, out_dim: usize, dtype: DType) -> Result<Self> {
        let vb = vb.to_dtype(dtype);
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = vb.get(out_dim, "bias")?;
        Self::from_weights(&weight, bias)
    }

    /// Builds the layer from a PyTorch-layout `[out, in]` weight and its `[out]` bias.
    pub fn from_weights(weight: &Tensor, bias: Tensor) -> Result<Self> {
        Ok(Self {
            weight_t: weight.t()?.contiguous()?,
            bias,
        })
    }

    /// Applies the layer over the last dimension of `x` (any leading dimensions).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let in_dim = dims[dims.len() - 1];
        let rows = x.elem_count() / in_dim.max(1);
        let x2 = x.reshape((rows, in_dim))?;
        let y = x2.matmul(&self.weight_t)?.broadcast_add(&self.bias)?;
        let mut out_dims = dims.to_vec();
        let last = out_dims.len() - 1;
        out_dims[last] = self.bias.dim(0)?;
        Ok(y.reshape(out_dims)?)
    }
}
