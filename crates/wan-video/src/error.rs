//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while validating or writing an output.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The output path's extension names no supported format.
    #[error(
        "unsupported output extension {extension:?} in {path}: use .mp4, .gif, .webp, .safetensors, \
         or a folder (no extension, or a trailing '/') for PNG frames"
    )]
    UnsupportedExtension {
        /// The offending path.
        path: PathBuf,
        /// Its extension.
        extension: String,
    },
    /// The folder that should receive the output does not exist.
    #[error("output folder {0} does not exist")]
    MissingParent(PathBuf),
    /// The output folder exists but cannot be written to.
    #[error("output folder {path} is not writable: {source}")]
    NotWritable {
        /// The folder.
        path: PathBuf,
        /// Why the probe file could not be created.
        source: std::io::Error,
    },
    /// A PNG-frames output would overwrite something that is not an empty folder.
    #[error("PNG frames output {0} already exists and is not an empty folder")]
    FolderNotEmpty(PathBuf),
    /// A file output path names an existing folder.
    #[error("output path {0} is an existing folder; give a file name with an extension")]
    PathIsFolder(PathBuf),
    /// The frame tensor's length does not match its dimensions.
    #[error(
        "frame data has {got} values, expected {expected} for [frames={frames}, height={height}, width={width}, 3]"
    )]
    DataLength {
        /// Values expected from the dimensions.
        expected: usize,
        /// Values given.
        got: usize,
        /// Frame count.
        frames: usize,
        /// Frame height.
        height: usize,
        /// Frame width.
        width: usize,
    },
    /// A dimension (frames, height, width, fps) is out of the accepted range.
    #[error("{what} = {got} is out of range: expected {allowed}")]
    OutOfRange {
        /// Which quantity.
        what: &'static str,
        /// The value given.
        got: usize,
        /// The accepted range, in words.
        allowed: String,
    },
    /// A sample is NaN or infinite.
    #[error("frame data holds a non-finite value ({value}) at flat index {index}")]
    NonFinite {
        /// Flat index into the [F, H, W, 3] data.
        index: usize,
        /// The value.
        value: f32,
    },
    /// The metadata disagrees with the frames it describes.
    #[error("metadata {field} = {metadata} disagrees with the frames ({frames})")]
    MetadataMismatch {
        /// The disagreeing field.
        field: &'static str,
        /// The metadata's value.
        metadata: usize,
        /// The frames' value.
        frames: usize,
    },
    /// The H.264 encoder failed or produced an unusable stream.
    #[error("H.264 encoding failed: {0}")]
    H264(String),
    /// GIF encoding failed.
    #[error("GIF encoding failed: {0}")]
    Gif(#[from] gif::EncodingError),
    /// PNG encoding failed.
    #[error("PNG encoding failed: {0}")]
    Png(#[from] png::EncodingError),
    /// WebP encoding failed.
    #[error("WebP encoding failed: {0}")]
    WebP(String),
    /// Metadata could not be serialised.
    #[error("metadata serialisation failed: {0}")]
    Json(#[from] serde_json::Error),
    /// A file-system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with the action and path it concerns.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }

    /// Wraps write errors on `path`; reusable for many writes.
    pub(crate) fn writing(path: &std::path::Path) -> impl Fn(std::io::Error) -> Error + '_ {
        move |source| Error::Io {
            action: "writing",
            path: path.to_path_buf(),
            source,
        }
    }
}
