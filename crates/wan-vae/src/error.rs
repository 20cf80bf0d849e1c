//! Errors raised by the Wan-VAE.

use std::path::PathBuf;

use candle_core::DType;

/// Errors raised by `wan-vae`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `config.json` could not be read.
    #[error("cannot read VAE config {path}: {source}")]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A `config.json` is not valid JSON or has a field of the wrong type.
    #[error("malformed VAE config {path}: {source}")]
    ConfigParse {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// A configuration this crate cannot run (a Wan2.2 VAE, inconsistent lengths, ...).
    #[error("unsupported VAE config: {0}")]
    Config(String),
    /// Locating or opening the weight files failed (missing file, unknown format).
    #[error(transparent)]
    Weights(#[from] wan_core::Error),
    /// The checkpoint's tensor names match neither the diffusers nor the official layout.
    #[error(
        "{path} is not a Wan-VAE 2.1 checkpoint: neither `decoder.conv_in.weight` (diffusers) nor `decoder.conv1.weight` (official) is present"
    )]
    UnknownLayout {
        /// The weight file.
        path: PathBuf,
    },
    /// A stored tensor has a dtype that is not a float weight type.
    #[error("tensor {key} in {path} has dtype {dtype:?}: expected f32, f16 or bf16")]
    WeightDType {
        /// The weight file.
        path: PathBuf,
        /// The tensor's name in the file.
        key: String,
        /// Its dtype.
        dtype: DType,
    },
    /// A tensor is missing or has the wrong shape (the message names the key and both shapes).
    #[error("cannot load VAE weights from {path}: {source}")]
    Load {
        /// The weight file.
        path: PathBuf,
        /// The candle error naming the key.
        source: candle_core::Error,
    },
    /// An input tensor has the wrong rank, channel count, frame count or dtype.
    #[error("invalid VAE input: {0}")]
    Input(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias for `wan-vae`.
pub type Result<T> = std::result::Result<T, Error>;
