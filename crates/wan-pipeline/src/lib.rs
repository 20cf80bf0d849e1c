//! Generation pipelines for Wan models. A pipeline only wires the parts together: the text
//! encoder (`wan-text`), the diffusion transformer (`wan-dit`), a sampler (`wan-sched`) and the
//! VAE (`wan-vae`); outputs are written by `wan-video`.
//!
//! [`GenerateRequest`] is the one description of a generation job, shared by `wan generate` and
//! `wan serve`; [`GenerateRequest::validate`] holds the validation rules for both.

pub mod error;
pub mod model;
pub mod noise;
pub mod progress;
pub mod request;
pub mod t2v;
pub mod variant;

pub use error::{Error, Result};
pub use model::{HubOptions, Layout, ModelFiles};
pub use progress::{NoProgress, Progress, ProgressEvent, Stage};
pub use request::{GenerateRequest, ModelDefaults, ResolvedRequest, SAMPLERS, ValidationError};
pub use t2v::{Generated, LoadOptions, StageTimings, TextToVideo};
pub use variant::{DEFAULT_NEGATIVE_PROMPT, TEXT_LEN, Variant};
