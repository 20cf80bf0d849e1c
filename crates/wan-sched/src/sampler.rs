//! The sampler the pipeline drives: a schedule plus one solver's multistep state.
//!
//! Step arithmetic follows diffusers' dtype behaviour: sigmas and all per-step coefficients (lambda, h, expm1, the
//! UniPC rho solves) are float32 scalars, and every tensor operation is one float32 operation in the reference's
//! order, so results agree with diffusers to rounding of the transcendental functions.

use candle_core::{DType, Tensor};

use crate::config::{SamplerKind, Schedule, SchedulerConfig};
use crate::dpmpp::DpmPp;
use crate::error::{Error, Result};
use crate::euler::Euler;
use crate::sigmas::{self, SigmaSchedule};
use crate::unipc::UniPc;

/// One solver's state between steps.
#[derive(Debug)]
enum Solver {
    UniPc(UniPc),
    Euler(Euler),
    DpmPp(DpmPp),
}

/// A configured sampler: the schedule of one generation and the state carried between its steps.
///
/// Drive it as: for each `t` in [`Sampler::timesteps`], run the DiT at `t` (as f32) on the current sample, then
/// `sample = sampler.step(&model_output, &sample)?`. After `timesteps().len()` steps the sample is the clean latent.
#[derive(Debug)]
pub struct Sampler {
    kind: SamplerKind,
    schedule: SigmaSchedule,
    solver: Solver,
    step_index: usize,
}

impl Sampler {
    /// Builds a `kind` sampler with `steps` steps from `cfg`, with `shift_override` replacing `cfg.shift` when given.
    ///
    /// `kind` may differ from `cfg.kind` (the sampler the config file describes); the config's solver options apply
    /// where they make sense for `kind`, with diffusers' remapping of `solver_type`. Errors: `steps` outside
    /// `1..=cfg.num_train_timesteps`, a shift that is not finite and positive, unsupported solver settings.
    pub fn new(
        kind: SamplerKind,
        cfg: &SchedulerConfig,
        steps: usize,
        shift_override: Option<f64>,
    ) -> Result<Self> {
        let shift = shift_override.unwrap_or(cfg.shift);
        cfg.validate(kind, shift)?;
        let t = cfg.num_train_timesteps;
        if steps == 0 || steps > t {
            return Err(Error::InvalidSteps { steps, max: t });
        }
        let (schedule, solver) = match kind {
            SamplerKind::UniPc => {
                let schedule = match cfg.schedule {
                    Schedule::Diffusers => {
                        sigmas::unipc_diffusers(steps, shift, t, cfg.final_sigma)
                    }
                    Schedule::Official => sigmas::unipc_official(steps, shift, t),
                };
                (schedule, Solver::UniPc(UniPc::new(cfg)))
            }
            SamplerKind::DpmPp => {
                let schedule = match cfg.schedule {
                    Schedule::Diffusers => sigmas::dpmpp_diffusers(steps, shift, t),
                    Schedule::Official => sigmas::dpmpp_official(steps, shift, t),
                };
                (schedule, Solver::DpmPp(DpmPp::new(cfg)))
            }
            SamplerKind::Euler => (
                sigmas::euler_diffusers(steps, shift, t),
                Solver::Euler(Euler),
            ),
        };
        Ok(Sampler {
            kind,
            schedule,
            solver,
            step_index: 0,
        })
    }

    /// The sampler this is.
    pub fn kind(&self) -> SamplerKind {
        self.kind
    }

    /// The timesteps fed to the DiT, one per step (give them to the model as f32).
    pub fn timesteps(&self) -> &[f64] {
        &self.schedule.timesteps
    }

    /// The noise levels: `sigmas()[i]` before step `i`, one more entry than [`Sampler::timesteps`] (the final one).
    pub fn sigmas(&self) -> &[f32] {
        &self.schedule.sigmas
    }

    /// How many steps have been taken so far.
    pub fn steps_done(&self) -> usize {
        self.step_index
    }

    /// Advances one step: `model_output` is the DiT's flow prediction `v` at `timesteps()[steps_done()]` for
    /// `sample`. Both must have the same shape; they are computed in f32 (other float dtypes are converted) and
    /// the next sample is returned in f32. Calling it after the last step is an error.
    pub fn step(&mut self, model_output: &Tensor, sample: &Tensor) -> Result<Tensor> {
        let steps = self.schedule.timesteps.len();
        if self.step_index >= steps {
            return Err(Error::Finished { steps });
        }
        if model_output.dims() != sample.dims() {
            return Err(Error::ShapeMismatch {
                what: "model_output",
                expected: sample.dims().to_vec(),
                got: model_output.dims().to_vec(),
            });
        }
        let model_output = model_output.to_dtype(DType::F32)?;
        let sample = sample.to_dtype(DType::F32)?;
        let k = self.step_index;
        let sigmas = &self.schedule.sigmas;
        let next = match &mut self.solver {
            Solver::UniPc(s) => s.step(sigmas, k, &model_output, &sample)?,
            Solver::Euler(s) => s.step(sigmas, k, &model_output, &sample)?,
            Solver::DpmPp(s) => s.step(sigmas, k, &model_output, &sample)?,
        };
        self.step_index += 1;
        Ok(next)
    }
}

/// `c * x` with a float32 scalar, one rounding per element (torch's `0-dim tensor * tensor`).
pub(crate) fn scale(x: &Tensor, c: f32) -> Result<Tensor> {
    Ok(x.affine(c as f64, 0.0)?)
}

/// `x / c` with a float32 scalar, a true division per element (torch's `tensor / 0-dim tensor`).
pub(crate) fn div_scalar(x: &Tensor, c: f32) -> Result<Tensor> {
    Ok(x.broadcast_div(&Tensor::new(c, x.device())?)?)
}

/// `lambda = log(alpha) - log(sigma)` of the flow schedule (`alpha = 1 - sigma`), in float32.
pub(crate) fn lambda(sigma: f32) -> f32 {
    (1.0 - sigma).ln() - sigma.ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn wan() -> SchedulerConfig {
        SchedulerConfig::default_for(Schedule::Official, 5.0)
    }

    #[test]
    fn invalid_settings_are_clear_errors() {
        let err = Sampler::new(SamplerKind::UniPc, &wan(), 0, None).expect_err("0 steps");
        assert!(
            err.to_string()
                .contains("invalid number of steps 0: expected 1..=1000"),
            "{err}"
        );
        let err =
            Sampler::new(SamplerKind::Euler, &wan(), 10, Some(-1.0)).expect_err("negative shift");
        assert!(err.to_string().contains("invalid flow shift -1"), "{err}");
        let err =
            Sampler::new(SamplerKind::DpmPp, &wan(), 10, Some(f64::NAN)).expect_err("NaN shift");
        assert!(err.to_string().contains("invalid flow shift NaN"), "{err}");
        let err = Sampler::new(SamplerKind::UniPc, &wan(), 1001, None).expect_err("too many steps");
        assert!(err.to_string().contains("1001"), "{err}");
        let mut cfg = wan();
        cfg.solver_order = 3;
        let err = Sampler::new(SamplerKind::DpmPp, &cfg, 10, None).expect_err("dpm order 3");
        assert!(err.to_string().contains("solver_order = 3"), "{err}");
    }

    #[test]
    fn step_rejects_shape_mismatch_and_extra_steps() -> Result<()> {
        let dev = Device::Cpu;
        let mut s = Sampler::new(SamplerKind::Euler, &wan(), 1, None)?;
        let x = Tensor::zeros((1, 4, 2), DType::F32, &dev)?;
        let v = Tensor::zeros((1, 4, 3), DType::F32, &dev)?;
        let err = s.step(&v, &x).expect_err("shape mismatch");
        assert!(err.to_string().contains("[1, 4, 3]"), "{err}");
        s.step(&x, &x)?;
        let err = s.step(&x, &x).expect_err("finished");
        assert!(matches!(err, Error::Finished { steps: 1 }), "{err}");
        Ok(())
    }
}
