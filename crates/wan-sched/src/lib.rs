//! Flow-matching samplers for Wan: UniPC, Euler, DPM++ 2M, with flow shift and both schedules.
//!
//! A Wan DiT predicts the flow `v` of `x_sigma = (1 - sigma) x0 + sigma eps`. A [`Sampler`] holds the schedule of one
//! generation (timesteps for the DiT, sigmas) and the multistep state; the pipeline feeds it one model output per
//! step. Settings come from a diffusers `scheduler_config.json` ([`SchedulerConfig::from_json_file`]) or from Wan's
//! defaults ([`SchedulerConfig::default_for`]); [`Schedule`] picks diffusers' or the official code's sigmas.
//!
//! ```no_run
//! # fn denoise(x: &candle_core::Tensor, t: f32) -> candle_core::Tensor { x.clone() }
//! # fn main() -> wan_sched::Result<()> {
//! use wan_sched::{Sampler, SamplerKind, Schedule, SchedulerConfig};
//! let cfg = SchedulerConfig::default_for(Schedule::Official, 5.0);
//! let mut sampler = Sampler::new("unipc".parse::<SamplerKind>()?, &cfg, 50, None)?;
//! let mut x = candle_core::Tensor::zeros((16, 21, 60, 104), candle_core::DType::F32, &candle_core::Device::Cpu)?;
//! for t in sampler.timesteps().to_vec() {
//!     let v = denoise(&x, t as f32);
//!     x = sampler.step(&v, &x)?;
//! }
//! # Ok(()) }
//! ```

mod config;
mod dpmpp;
mod error;
mod euler;
mod guidance;
mod sampler;
mod sigmas;
mod unipc;

pub use config::{FinalSigma, SamplerKind, Schedule, SchedulerConfig, SolverType};
pub use error::{Error, Result};
pub use guidance::{cfg_combine, guidance_enabled};
pub use sampler::Sampler;
