//! Progress reporting and cancellation between pipeline stages and denoising steps.

use serde::Serialize;

/// The stages of a generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Loading model weights.
    Load,
    /// Encoding the prompt and negative prompt.
    Encode,
    /// The denoising loop.
    Denoise,
    /// Decoding latents to frames.
    Decode,
    /// Writing the output file.
    Write,
}

/// One progress report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ProgressEvent {
    /// A stage began; `total` units of work follow (steps, latent frames, ...).
    StageStarted {
        /// The stage.
        stage: Stage,
        /// Units of work in this stage.
        total: usize,
    },
    /// `done` of `total` units of the current stage are finished.
    Advanced {
        /// The stage.
        stage: Stage,
        /// Units finished.
        done: usize,
        /// Units in the stage.
        total: usize,
    },
    /// A stage ended after `seconds`.
    StageFinished {
        /// The stage.
        stage: Stage,
        /// Wall-clock seconds the stage took.
        seconds: f64,
    },
}

/// Receives progress and may ask the pipeline to stop.
///
/// The pipeline calls [`Progress::cancelled`] between denoising steps; when it returns `true` the
/// run ends with a cancellation error and no output.
pub trait Progress: Send {
    /// Called for each event.
    fn event(&mut self, event: &ProgressEvent);
    /// Whether the run should stop at the next step boundary.
    fn cancelled(&self) -> bool {
        false
    }
}

/// A [`Progress`] that ignores every event and never cancels.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&mut self, _event: &ProgressEvent) {}
}
