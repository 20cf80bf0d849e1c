//! Errors raised by the pipelines.

/// Errors raised while resolving a model or generating.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model named by the user could not be found.
    #[error("model {spec:?} not found: {reason}")]
    ModelNotFound {
        /// What the user named (folder or repo id).
        spec: String,
        /// Why it could not be used.
        reason: String,
    },
    /// Talking to the Hugging Face Hub failed.
    #[error("downloading {repo} from the Hugging Face Hub failed: {message}")]
    Hub {
        /// The repo id.
        repo: String,
        /// The client's message.
        message: String,
    },
}

/// Result alias for the pipelines.
pub type Result<T> = std::result::Result<T, Error>;
