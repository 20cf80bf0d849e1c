//! Errors raised by the service.

/// Errors raised while starting or running the service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The job database failed.
    #[error("job database {path}: {source}")]
    Database {
        /// The database file.
        path: String,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored record could not be read back.
    #[error("stored {what} is corrupt: {message}")]
    Corrupt {
        /// What was being read (`job vid_...`).
        what: String,
        /// Why it could not be decoded.
        message: String,
    },
    /// A file or folder under the data directory could not be used.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another server already uses the data directory.
    #[error(
        "data directory {path} is in use by another wan serve process (lock file {lock} is held)"
    )]
    DataDirInUse {
        /// The data directory.
        path: String,
        /// The lock file.
        lock: String,
    },
    /// The configuration is not usable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A model could not be prepared.
    #[error("model {model:?}: {source}")]
    Model {
        /// The model as named in the configuration.
        model: String,
        /// The pipeline's error.
        #[source]
        source: Box<wan_pipeline::Error>,
    },
}

/// Result alias for the service.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
