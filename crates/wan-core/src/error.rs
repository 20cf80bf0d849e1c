//! Errors raised while locating and opening weight files.

use std::path::PathBuf;

/// Errors raised by `wan-core`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder the caller named does not exist.
    #[error("{what} not found: {path}")]
    NotFound {
        /// What was looked for ("weights", "shard", ...).
        what: &'static str,
        /// The path that was looked for.
        path: PathBuf,
    },
    /// A folder holds no weight file under any of the expected names.
    #[error("no weight file in {dir}: expected one of {expected}")]
    NoWeights {
        /// The folder searched.
        dir: PathBuf,
        /// The file names that were tried, comma separated.
        expected: String,
    },
    /// A file has an extension that is not a known weight format.
    #[error(
        "unsupported weight file {path}: expected .safetensors, .safetensors.index.json, .pth or .pt"
    )]
    UnsupportedFormat {
        /// The offending file.
        path: PathBuf,
    },
    /// A sharded checkpoint's index file could not be read or is malformed.
    #[error("malformed shard index {path}: {reason}")]
    BadIndex {
        /// The index file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading a file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A weight file could not be parsed or a tensor could not be read from it.
    #[error("cannot load weights from {path}: {source}")]
    Load {
        /// The file (or first shard) being read.
        path: PathBuf,
        /// The underlying candle error.
        source: candle_core::Error,
    },
}

/// Result alias for `wan-core`.
pub type Result<T> = std::result::Result<T, Error>;
