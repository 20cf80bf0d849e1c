//! Errors raised by the diffusion transformer.

use std::path::PathBuf;

/// Errors raised by `wan-dit`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `config.json` could not be read or does not describe a Wan transformer.
    #[error("bad transformer config {path}: {reason}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A configuration value is out of the supported range.
    #[error("unsupported transformer config: {0}")]
    Unsupported(String),
    /// Locating or opening the weight files failed (missing shard, bad index, ...).
    #[error(transparent)]
    Weights(#[from] wan_core::Error),
    /// A tensor is missing from the checkpoint or has the wrong shape.
    #[error("cannot load transformer weights from {path}: {source}")]
    Load {
        /// The checkpoint (first shard) being read.
        path: PathBuf,
        /// The underlying candle error, naming the key and the shapes.
        source: candle_core::Error,
    },
    /// An input tensor of `forward` has the wrong shape.
    #[error("bad {input}: expected {expected}, got {got:?}")]
    Input {
        /// Which input ("latents", "timestep", "text", "image").
        input: &'static str,
        /// What was expected, in words.
        expected: String,
        /// The shape that was passed.
        got: Vec<usize>,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias for `wan-dit`.
pub type Result<T> = std::result::Result<T, Error>;
