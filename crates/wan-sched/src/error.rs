//! Errors raised while configuring a sampler or stepping it.

use std::path::PathBuf;

/// Errors raised by `wan-sched`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A sampler name that is not one of the supported samplers.
    #[error("unknown sampler {name:?}: expected one of {allowed}")]
    UnknownSampler {
        /// The name that was given.
        name: String,
        /// The accepted names, comma separated.
        allowed: &'static str,
    },
    /// A schedule name that is not one of the supported schedules.
    #[error("unknown schedule {name:?}: expected one of {allowed}")]
    UnknownSchedule {
        /// The name that was given.
        name: String,
        /// The accepted names, comma separated.
        allowed: &'static str,
    },
    /// The number of sampling steps is out of range.
    #[error("invalid number of steps {steps}: expected 1..={max}")]
    InvalidSteps {
        /// The requested number of steps.
        steps: usize,
        /// The largest accepted number (the config's `num_train_timesteps`).
        max: usize,
    },
    /// The flow shift is not a finite positive number.
    #[error("invalid flow shift {shift}: expected a finite number > 0")]
    InvalidShift {
        /// The shift that was given.
        shift: f64,
    },
    /// A setting has a value this crate does not support (or that the reference turns into NaN/inf).
    #[error("unsupported scheduler setting {key} = {value}: {reason}")]
    Unsupported {
        /// The setting (config key) concerned.
        key: &'static str,
        /// Its value, as given.
        value: String,
        /// What is accepted instead.
        reason: String,
    },
    /// A scheduler config file could not be read.
    #[error("cannot read scheduler config {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A scheduler config file is not valid JSON or a key has the wrong type.
    #[error("malformed scheduler config {path}: {reason}")]
    BadConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `step` was called after the last step of the schedule.
    #[error("sampler already ran all {steps} steps")]
    Finished {
        /// The number of steps of the schedule.
        steps: usize,
    },
    /// Two tensors that must have the same shape do not.
    #[error("shape mismatch: {what} has shape {got:?}, expected {expected:?}")]
    ShapeMismatch {
        /// Which tensor is wrong.
        what: &'static str,
        /// The expected shape.
        expected: Vec<usize>,
        /// The shape that was given.
        got: Vec<usize>,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias for `wan-sched`.
pub type Result<T> = std::result::Result<T, Error>;
