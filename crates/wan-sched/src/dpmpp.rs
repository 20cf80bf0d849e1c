//! Multistep DPM-Solver++ (order 1 or 2, midpoint or Heun) on flow sigmas, as diffusers'
//! `DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", prediction_type="flow_prediction",
//! use_flow_sigmas=True)` and the official `FlowDPMSolverMultistepScheduler` step it.

use candle_core::Tensor;

use crate::config::{FinalSigma, SchedulerConfig};
use crate::error::Result;
use crate::sampler::{lambda, scale};

/// DPM++ state: the previous data prediction and how many steps have warmed up the multistep history.
#[derive(Debug)]
pub(crate) struct DpmPp {
    order: usize,
    heun: bool,
    lower_order_final: bool,
    euler_at_final: bool,
    final_zero: bool,
    previous: Option<Tensor>,
    lower_order_nums: usize,
}

impl DpmPp {
    pub(crate) fn new(cfg: &SchedulerConfig) -> Self {
        DpmPp {
            order: cfg.solver_order,
            heun: cfg.dpm_heun(),
            lower_order_final: cfg.lower_order_final,
            euler_at_final: cfg.euler_at_final,
            final_zero: cfg.final_sigma == FinalSigma::Zero,
            previous: None,
            lower_order_nums: 0,
        }
    }

    /// One step from `sigmas[k]` to `sigmas[k + 1]`.
    pub(crate) fn step(
        &mut self,
        sigmas: &[f32],
        k: usize,
        model_output: &Tensor,
        sample: &Tensor,
    ) -> Result<Tensor> {
        let n = sigmas.len() - 1;
        let last_step_first_order = k == n - 1
            && (self.euler_at_final || (self.lower_order_final && n < 15) || self.final_zero);
        // Data prediction x0 = x - sigma v.
        let m0 = (sample - scale(model_output, sigmas[k])?)?;

        let (sigma_t, sigma_s0) = (sigmas[k + 1], sigmas[k]);
        let alpha_t = 1.0 - sigma_t;
        let h = lambda(sigma_t) - lambda(sigma_s0);
        let phi = alpha_t * ((-h).exp() - 1.0);
        let first = (scale(sample, sigma_t / sigma_s0)? - scale(&m0, phi)?)?;

        let next = match &self.previous {
            Some(m1) if self.order >= 2 && self.lower_order_nums >= 1 && !last_step_first_order => {
                let h_0 = lambda(sigma_s0) - lambda(sigmas[k - 1]);
                let r0 = h_0 / h;
                let d1 = scale(&(&m0 - m1)?, 1.0 / r0)?;
                if self.heun {
                    let c = alpha_t * (((-h).exp() - 1.0) / h + 1.0);
                    (first + scale(&d1, c)?)?
                } else {
                    (first - scale(&d1, 0.5 * phi)?)?
                }
            }
            _ => first,
        };
        self.previous = Some(m0);
        if self.lower_order_nums < self.order {
            self.lower_order_nums += 1;
        }
        Ok(next)
    }
}
