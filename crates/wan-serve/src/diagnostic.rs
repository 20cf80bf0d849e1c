//! The diagnostic model: a [`Generator`] that draws a moving colour pattern (no weights), one
//! "denoising step" at a fixed pace. It checks a deployment end to end (queue, workers,
//! progress, cancellation, MP4 output) and gives tests slow, deterministic jobs. Served as
//! `diagnostic` when `wan serve --model diagnostic[:MS_PER_STEP]` is given.

use std::time::{Duration, Instant};

use wan_pipeline::{ModelDefaults, Progress, ProgressEvent, ResolvedRequest, Stage};
use wan_video::{Frames, Metadata};

use crate::generator::{GenerateError, GenerateReport, Generator, OutputPaths, write_thumbnail};

/// The model name of the diagnostic generator.
pub const DIAGNOSTIC_MODEL: &str = "diagnostic";

/// Draws a test pattern instead of running a model; see the module docs.
#[derive(Debug, Clone)]
pub struct DiagnosticGenerator {
    step_time: Duration,
}

impl DiagnosticGenerator {
    /// A generator that spends `step_time` on each step.
    pub fn new(step_time: Duration) -> Self {
        Self { step_time }
    }

    /// Parses `diagnostic` or `diagnostic:MS_PER_STEP`; `None` when `spec` names another model.
    pub fn from_spec(spec: &str) -> Option<std::result::Result<Self, String>> {
        let rest = spec.strip_prefix(DIAGNOSTIC_MODEL)?;
        if rest.is_empty() {
            return Some(Ok(Self::new(Duration::from_millis(100))));
        }
        let ms = rest.strip_prefix(':')?;
        Some(
            ms.parse::<u64>()
                .map(|ms| Self::new(Duration::from_millis(ms)))
                .map_err(|_| {
                    format!("{spec:?}: the diagnostic model's step time must be whole milliseconds, as in diagnostic:200")
                }),
        )
    }
}

fn pattern(req: &ResolvedRequest) -> std::result::Result<Frames, wan_video::Error> {
    let (f, h, w) = (req.frames as usize, req.height as usize, req.width as usize);
    let phase = (req.seed % 97) as f32 / 97.0;
    let mut data = Vec::with_capacity(f * h * w * 3);
    for t in 0..f {
        for y in 0..h {
            for x in 0..w {
                let u = x as f32 / w.max(1) as f32;
                let v = y as f32 / h.max(1) as f32;
                let s = (t as f32 / f.max(1) as f32 + phase).fract();
                data.extend_from_slice(&[u, v, s]);
            }
        }
    }
    Frames::new(data, f, h, w, req.fps)
}

impl Generator for DiagnosticGenerator {
    fn models(&self) -> Vec<String> {
        vec![DIAGNOSTIC_MODEL.to_string()]
    }

    fn defaults(&self, model: &str) -> Option<ModelDefaults> {
        (model == DIAGNOSTIC_MODEL).then(|| ModelDefaults {
            width: 64,
            height: 64,
            frames: 5,
            steps: 4,
            guidance: 1.0,
            shift: 3.0,
            sampler: "unipc".into(),
            fps: 16,
            negative_prompt: String::new(),
        })
    }

    fn generate(
        &self,
        model: &str,
        request: &ResolvedRequest,
        output: &OutputPaths,
        progress: &mut dyn Progress,
    ) -> Result<GenerateReport, GenerateError> {
        if model != DIAGNOSTIC_MODEL {
            return Err(GenerateError::UnknownModel(model.to_string()));
        }
        let total = request.steps as usize;
        let start = Instant::now();
        progress.event(&ProgressEvent::StageStarted {
            stage: Stage::Denoise,
            total,
        });
        for done in 1..=total {
            if progress.cancelled() {
                return Err(GenerateError::Cancelled);
            }
            std::thread::sleep(self.step_time);
            progress.event(&ProgressEvent::Advanced {
                stage: Stage::Denoise,
                done,
                total,
            });
        }
        let denoise = start.elapsed().as_secs_f64();
        if progress.cancelled() {
            return Err(GenerateError::Cancelled);
        }
        let start = Instant::now();
        let write_err = |e: wan_video::Error| GenerateError::Failed {
            code: "write_failed",
            message: e.to_string(),
        };
        let frames = pattern(request).map_err(write_err)?;
        let metadata = Metadata {
            prompt: request.prompt.clone(),
            seed: request.seed,
            model: DIAGNOSTIC_MODEL.to_string(),
            steps: request.steps,
            ..Metadata::describing(&frames)
        };
        wan_video::write_output(&output.video, &frames, &metadata).map_err(write_err)?;
        write_thumbnail(
            &output.thumbnail,
            &wan_video::thumbnail_png(&frames).map_err(write_err)?,
        )?;
        Ok(GenerateReport {
            denoise,
            write: start.elapsed().as_secs_f64(),
            ..GenerateReport::default()
        })
    }
}
