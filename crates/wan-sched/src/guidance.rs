//! Classifier-free guidance: combining the unconditional (negative prompt) and conditional flow predictions.

use candle_core::{DType, Tensor};

use crate::error::{Error, Result};

/// Whether `guidance` needs the unconditional pass: diffusers' Wan pipeline runs it only for scales above 1.
/// At 1 (or below) the pipeline runs the DiT once per step, on the prompt, and skips [`cfg_combine`].
pub fn guidance_enabled(guidance: f64) -> bool {
    guidance > 1.0
}

/// Classifier-free guidance `v = u + g (c - u)` with diffusers' order of operations
/// (`noise_uncond + guidance_scale * (noise_pred - noise_uncond)`), each operation rounded in the inputs' dtype.
///
/// `uncond` is the prediction for the negative prompt, `cond` the one for the prompt; they must have the same
/// shape and dtype. With guidance 1 the result is `cond` (up to rounding of `u + (c - u)`) and the pipeline should skip the unconditional DiT
/// pass altogether (see [`guidance_enabled`]): one DiT pass per step instead of two.
pub fn cfg_combine(uncond: &Tensor, cond: &Tensor, guidance: f64) -> Result<Tensor> {
    if uncond.dims() != cond.dims() {
        return Err(Error::ShapeMismatch {
            what: "cond",
            expected: uncond.dims().to_vec(),
            got: cond.dims().to_vec(),
        });
    }
    let dtype = uncond.dtype();
    let cond = cond.to_dtype(dtype)?;
    // Half-precision inputs: torch computes each op in f32 and rounds the result back to the storage dtype.
    let round = |t: Tensor| -> Result<Tensor> { Ok(t.to_dtype(dtype)?) };
    let wide = if matches!(dtype, DType::F32 | DType::F64) {
        dtype
    } else {
        DType::F32
    };
    let (u, c) = (uncond.to_dtype(wide)?, cond.to_dtype(wide)?);
    let diff = round((&c - &u)?)?.to_dtype(wide)?;
    let scaled = round(diff.affine(guidance, 0.0)?)?.to_dtype(wide)?;
    round((u + scaled)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn guidance_one_is_cond_and_disabled() -> Result<()> {
        let dev = Device::Cpu;
        let u = Tensor::new(&[0.25f32, -1.5, 3.0], &dev)?;
        let c = Tensor::new(&[1.0f32, 2.0, -0.75], &dev)?;
        assert_eq!(
            cfg_combine(&u, &c, 1.0)?.to_vec1::<f32>()?,
            c.to_vec1::<f32>()?
        );
        assert!(!guidance_enabled(1.0) && guidance_enabled(5.0));
        let bad = Tensor::zeros(2, DType::F32, &dev)?;
        assert!(cfg_combine(&u, &bad, 5.0).is_err());
        Ok(())
    }
}
