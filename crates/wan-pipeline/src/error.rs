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
    /// The model exists but this pipeline cannot run it.
    #[error("model {model:?} cannot be used for text-to-video: {reason}")]
    UnsupportedModel {
        /// The model's name.
        model: String,
        /// Why.
        reason: String,
    },
    /// Initial latents given by the user do not fit the request.
    #[error("initial latents rejected: {reason}")]
    InitLatents {
        /// Why.
        reason: String,
    },
    /// The run was cancelled between steps.
    #[error("generation cancelled")]
    Cancelled,
    /// The transformer failed to load or run.
    #[error(transparent)]
    Dit(Box<wan_dit::Error>),
    /// The VAE failed to load or run.
    #[error(transparent)]
    Vae(Box<wan_vae::Error>),
    /// The text encoder failed to load or run.
    #[error(transparent)]
    Text(Box<wan_text::Error>),
    /// The sampler rejected its settings.
    #[error(transparent)]
    Sampler(Box<wan_sched::Error>),
    /// Frames could not be assembled or written.
    #[error(transparent)]
    Video(Box<wan_video::Error>),
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(Box<candle_core::Error>),
}

/// Component errors are boxed so that `Result`s stay small on the happy path.
macro_rules! boxed_from {
    ($($variant:ident: $source:ty),* $(,)?) => {
        $(impl From<$source> for Error {
            fn from(e: $source) -> Self {
                Self::$variant(Box::new(e))
            }
        })*
    };
}

boxed_from!(
    Dit: wan_dit::Error,
    Vae: wan_vae::Error,
    Text: wan_text::Error,
    Sampler: wan_sched::Error,
    Video: wan_video::Error,
    Tensor: candle_core::Error,
);

/// Result alias for the pipelines.
pub type Result<T> = std::result::Result<T, Error>;
