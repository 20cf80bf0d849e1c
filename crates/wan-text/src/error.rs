//! Errors raised while loading and running the text encoder.

use std::path::PathBuf;

/// Errors raised by `wan-text`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder the caller named does not exist.
    #[error("{what} not found: {path}")]
    NotFound {
        /// What was looked for ("tokenizer", "tokenizer.json", ...).
        what: &'static str,
        /// The path that was looked for.
        path: PathBuf,
    },
    /// A tokenizer file exists but cannot be used.
    #[error("malformed tokenizer {path}: {reason}")]
    BadTokenizer {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A model `config.json` exists but cannot be used.
    #[error("malformed text-encoder config {path}: {reason}")]
    BadConfig {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The checkpoint's tensors do not form a umT5 encoder (unknown layout, missing or misshapen tensor).
    #[error("cannot load the umT5 encoder from {path}: {reason}")]
    BadWeights {
        /// The checkpoint file (or first shard).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Locating or opening the weight files failed.
    #[error(transparent)]
    Weights(#[from] wan_core::Error),
    /// Reading a file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The tokenizer failed on a prompt.
    #[error("cannot tokenize prompt {index}: {reason}")]
    Tokenize {
        /// The prompt's index in the batch.
        index: usize,
        /// The tokenizer's message.
        reason: String,
    },
    /// A token id is outside the encoder's vocabulary: the tokenizer does not belong to this model.
    #[error(
        "token id {id} is outside the text encoder's vocabulary of {vocab_size}: tokenizer and model do not match"
    )]
    TokenOutOfRange {
        /// The offending id.
        id: u32,
        /// The encoder's vocabulary size.
        vocab_size: usize,
    },
    /// A caller-supplied argument is out of range.
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// The argument ("text_len", "attention_mask", ...).
        what: &'static str,
        /// What is wrong and the allowed range.
        reason: String,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias for `wan-text`.
pub type Result<T> = std::result::Result<T, Error>;
