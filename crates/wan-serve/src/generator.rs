//! What the workers run: any [`Generator`] turns a validated request into an MP4 and a
//! thumbnail. [`crate::PipelineGenerator`] runs the Wan pipeline; [`crate::DiagnosticGenerator`]
//! draws a test pattern; [`GeneratorSet`] serves several under their names.

use std::path::PathBuf;
use std::sync::Arc;

use wan_pipeline::{ModelDefaults, Progress, ResolvedRequest};

/// Where a job's outputs go, inside its own folder under the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputPaths {
    /// The MP4.
    pub video: PathBuf,
    /// The first frame as PNG.
    pub thumbnail: PathBuf,
}

/// Seconds spent in each stage of one generation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerateReport {
    /// Loading the model (0 when it was already in memory).
    pub load: f64,
    /// Prompt encoding.
    pub encode: f64,
    /// The denoising loop.
    pub denoise: f64,
    /// VAE decoding.
    pub decode: f64,
    /// Writing the MP4 and the thumbnail.
    pub write: f64,
}

/// Why a generation did not produce a video.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// [`Progress::cancelled`] turned true; nothing was written.
    #[error("generation cancelled")]
    Cancelled,
    /// The model is not served here.
    #[error("model {0:?} is not served here")]
    UnknownModel(String),
    /// Loading, generating or writing failed.
    #[error("{message}")]
    Failed {
        /// A stable code for the job's `error.code` (`model_load_failed`, `generation_failed`,
        /// `write_failed`).
        code: &'static str,
        /// What happened.
        message: String,
    },
}

/// Something that generates videos; called on a blocking worker thread, possibly from several
/// workers at once.
pub trait Generator: Send + Sync + 'static {
    /// The model names served, the default first.
    fn models(&self) -> Vec<String>;
    /// A model's defaults for the fields a request leaves out; `None` for an unknown model.
    fn defaults(&self, model: &str) -> Option<ModelDefaults>;
    /// Generates `request` with `model`, writing the MP4 and the thumbnail to `output`. Must
    /// report denoising steps to `progress` and stop between steps, with
    /// [`GenerateError::Cancelled`], once `progress.cancelled()` is true.
    fn generate(
        &self,
        model: &str,
        request: &ResolvedRequest,
        output: &OutputPaths,
        progress: &mut dyn Progress,
    ) -> Result<GenerateReport, GenerateError>;
}

/// Several generators served together, each under its own model names (the first generator's
/// first model is the default).
pub struct GeneratorSet {
    members: Vec<Arc<dyn Generator>>,
}

impl GeneratorSet {
    /// Serves every member's models.
    pub fn new(members: Vec<Arc<dyn Generator>>) -> Self {
        Self { members }
    }

    fn owner(&self, model: &str) -> Option<&Arc<dyn Generator>> {
        self.members
            .iter()
            .find(|g| g.models().iter().any(|m| m == model))
    }
}

impl Generator for GeneratorSet {
    fn models(&self) -> Vec<String> {
        self.members.iter().flat_map(|g| g.models()).collect()
    }

    fn defaults(&self, model: &str) -> Option<ModelDefaults> {
        self.owner(model)?.defaults(model)
    }

    fn generate(
        &self,
        model: &str,
        request: &ResolvedRequest,
        output: &OutputPaths,
        progress: &mut dyn Progress,
    ) -> Result<GenerateReport, GenerateError> {
        self.owner(model)
            .ok_or_else(|| GenerateError::UnknownModel(model.to_string()))?
            .generate(model, request, output, progress)
    }
}

/// Writes the thumbnail bytes under a temporary name, then renames, so a crash never leaves a
/// partial file under the final name.
pub(crate) fn write_thumbnail(path: &std::path::Path, png: &[u8]) -> Result<(), GenerateError> {
    let tmp = path.with_extension("png.partial");
    std::fs::write(&tmp, png)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| GenerateError::Failed {
            code: "write_failed",
            message: format!("writing {}: {e}", path.display()),
        })
}
