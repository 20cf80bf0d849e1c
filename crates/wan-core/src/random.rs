//! Random weights for benchmarks and smoke tests of the real configurations, made in-process
//! (no checkpoint needed): a [`VarBuilder`] that answers every request with fresh random values.
//!
//! Matrices and convolution kernels get `N(0, 1/fan_in)`, so activations stay O(1) through the
//! layers; norm gains (1-D `*norm*` tensors and RMS-norm `gamma`s of any shape) are 1; biases,
//! modulation tables and embeddings get `N(0, 0.02^2)`.

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

/// A weight source producing random tensors of whatever shape is asked for.
struct RandomBackend;

impl SimpleBackend for RandomBackend {
    fn get(&self, s: Shape, name: &str, _: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let dims = s.dims();
        let gain = (dims.len() == 1 && name.contains("norm")) || name.ends_with("gamma");
        let t = if gain {
            Tensor::ones(s, DType::F32, dev)?
        } else if dims.len() >= 2 && !name.contains("scale_shift_table") {
            let fan_in: usize = dims[1..].iter().product();
            Tensor::randn(0f32, (1.0 / fan_in.max(1) as f64).sqrt() as f32, s, dev)?
        } else {
            Tensor::randn(0f32, 0.02, s, dev)?
        };
        t.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        candle_core::bail!("random weights need a shape: {name} was asked for without one")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// A [`VarBuilder`] of random weights in `dtype` on `device`.
pub fn random_weights(dtype: DType, device: &Device) -> VarBuilder<'static> {
    VarBuilder::from_backend(Box::new(RandomBackend), dtype, device.clone())
}
