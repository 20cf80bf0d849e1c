//! The Wan-VAE's RMS normalisation over channels, optionally fused with the SiLU that follows it.
//!
//! The reference computes `F.normalize(x, dim=channels) * sqrt(C) * gamma`. Built from candle ops
//! that is six passes over the activation (square, strided channel sum, root, divide, scale,
//! SiLU), each with its own buffer; here it is one pass to sum the squares per pixel and one to
//! write the result, in f32 whatever the activation's dtype.

use candle_core::{CpuStorage, DType, Device, Result, Storage, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

/// The smallest norm divided by, as in `F.normalize`.
const EPS: f32 = 1e-12;

/// RMS normalisation over the channel dim (third from last, `[.., C, H, W]`):
/// `x / max(||x||_2, 1e-12) * sqrt(C) * gamma`.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    /// `gamma * sqrt(C)`, one value per channel.
    scale: Vec<f32>,
}

impl RmsNorm {
    /// Loads `gamma`, stored `[C, 1, 1, 1]` (`trailing_ones` 3, residual blocks) or `[C, 1, 1]`
    /// (2, attention).
    pub fn load(vb: VarBuilder, channels: usize, trailing_ones: usize) -> Result<Self> {
        let mut shape = vec![channels];
        shape.extend(std::iter::repeat_n(1, trailing_ones));
        let gamma = vb.get(shape, "gamma")?;
        Self::new(&gamma)
    }

    /// Wraps `gamma` (any shape holding one value per channel).
    pub fn new(gamma: &Tensor) -> Result<Self> {
        let gamma = gamma
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let root = (gamma.len() as f32).sqrt();
        Ok(Self {
            scale: gamma.iter().map(|g| g * root).collect(),
        })
    }

    /// Normalises `x` `[.., C, H, W]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.apply(x, false)
    }

    /// Normalises `x` `[.., C, H, W]` and applies SiLU.
    pub fn forward_silu(&self, x: &Tensor) -> Result<Tensor> {
        self.apply(x, true)
    }

    fn apply(&self, x: &Tensor, silu: bool) -> Result<Tensor> {
        let dims = x.dims();
        let rank = dims.len();
        if rank < 3 || dims[rank - 3] != self.scale.len() {
            candle_core::bail!(
                "RMS norm over {} channels got a tensor of shape {dims:?}",
                self.scale.len()
            );
        }
        if !matches!(x.device(), Device::Cpu) {
            candle_core::bail!("the VAE's RMS norm runs on the CPU only");
        }
        let c = self.scale.len();
        let plane = dims[rank - 2] * dims[rank - 1];
        let dtype = x.dtype();
        let xf = x.to_dtype(DType::F32)?.contiguous()?;
        let out = {
            let (storage, layout) = xf.storage_and_layout();
            let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
                candle_core::bail!("RMS norm input is not f32 on the CPU");
            };
            let start = layout.start_offset();
            let data = &data[start..start + layout.shape().elem_count()];
            let mut out = vec![0f32; data.len()];
            if plane > 0 {
                out.par_chunks_mut(c * plane)
                    .zip(data.par_chunks(c * plane))
                    .for_each(|(dst, src)| self.normalize_frame(src, dst, plane, silu));
            }
            out
        };
        Tensor::from_vec(out, dims, x.device())?.to_dtype(dtype)
    }

    /// One `[C, H * W]` frame from `src` into `dst`.
    fn normalize_frame(&self, src: &[f32], dst: &mut [f32], plane: usize, silu: bool) {
        let mut inv = vec![0f32; plane];
        for channel in src.chunks_exact(plane) {
            for (acc, v) in inv.iter_mut().zip(channel) {
                *acc += v * v;
            }
        }
        for acc in &mut inv {
            *acc = 1.0 / acc.sqrt().max(EPS);
        }
        for ((out, channel), scale) in dst
            .chunks_exact_mut(plane)
            .zip(src.chunks_exact(plane))
            .zip(&self.scale)
        {
            for ((o, v), i) in out.iter_mut().zip(channel).zip(&inv) {
                let y = v * i * scale;
                *o = if silu { y / (1.0 + (-y).exp()) } else { y };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    /// The reference formula from candle ops, as the module used before the fused kernel.
    fn reference(x: &Tensor, gamma: &Tensor, silu: bool) -> Tensor {
        let c = gamma.dim(0).expect("c");
        let dim = x.rank() - 3;
        let norm = x
            .sqr()
            .and_then(|s| s.sum_keepdim(dim)?.sqrt()?.maximum(1e-12))
            .expect("norm");
        let scale = (gamma.reshape((c, 1, 1)).expect("g") * (c as f64).sqrt()).expect("scale");
        let y = x
            .broadcast_div(&norm)
            .and_then(|y| y.broadcast_mul(&scale))
            .expect("y");
        if silu {
            candle_nn::ops::silu(&y).expect("silu")
        } else {
            y
        }
    }

    #[test]
    fn matches_the_unfused_formula() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 5, 4, 6), &dev).expect("x");
        let gamma = Tensor::randn(0f32, 1.0, 5, &dev).expect("gamma");
        let norm = RmsNorm::new(&gamma).expect("norm");
        for silu in [false, true] {
            let got = norm.apply(&x, silu).expect("fused");
            let want = reference(&x, &gamma, silu);
            let d = (got - want)
                .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>())
                .expect("diff");
            assert!(d < 1e-5, "silu {silu}: max |diff| {d}");
        }
    }

    #[test]
    fn zero_pixels_stay_zero_and_wrong_channels_are_an_error() {
        let dev = Device::Cpu;
        let norm = RmsNorm::new(&Tensor::ones(4, DType::F32, &dev).expect("g")).expect("norm");
        let zeros = Tensor::zeros((1, 4, 2, 2), DType::F32, &dev).expect("z");
        let y = norm.forward_silu(&zeros).expect("zeros");
        let max = y
            .abs()
            .and_then(|a| a.flatten_all()?.max(0)?.to_scalar::<f32>())
            .expect("max");
        assert_eq!(max, 0.0);
        let err = norm
            .forward(&Tensor::zeros((1, 3, 2, 2), DType::F32, &dev).expect("x"))
            .expect_err("channels")
            .to_string();
        assert!(
            err.contains("4 channels") && err.contains("[1, 3, 2, 2]"),
            "{err}"
        );
    }
}
