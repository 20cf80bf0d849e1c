//! First-order flow-matching Euler (diffusers `FlowMatchEulerDiscreteScheduler`, deterministic).

use candle_core::Tensor;

use crate::error::Result;
use crate::sampler::scale;

/// Euler has no state between steps.
#[derive(Debug)]
pub(crate) struct Euler;

impl Euler {
    /// `x + (sigma_{k+1} - sigma_k) v`.
    pub(crate) fn step(
        &mut self,
        sigmas: &[f32],
        k: usize,
        model_output: &Tensor,
        sample: &Tensor,
    ) -> Result<Tensor> {
        let dt = sigmas[k + 1] - sigmas[k];
        Ok((sample + scale(model_output, dt)?)?)
    }
}
