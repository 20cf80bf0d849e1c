//! The [`Generator`] backed by the Wan text-to-video pipeline: a model is loaded on its first
//! job (or at start-up) and stays in memory for the next ones.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use wan_pipeline::{
    HubOptions, LoadOptions, ModelDefaults, ModelFiles, Progress, ProgressEvent, ResolvedRequest,
    Stage, TextToVideo,
};
use wan_video::Metadata;

use crate::error::{Error, Result};
use crate::generator::{GenerateError, GenerateReport, Generator, OutputPaths, write_thumbnail};

struct Model {
    name: String,
    files: ModelFiles,
    defaults: ModelDefaults,
    loaded: Mutex<Option<Arc<TextToVideo>>>,
}

/// Wan text-to-video models served by name.
pub struct PipelineGenerator {
    models: Vec<Model>,
    options: LoadOptions,
}

impl PipelineGenerator {
    /// Resolves each `(name, spec)` (a local folder or a Hugging Face repo id) and reads its
    /// defaults; weights are loaded on first use, or now with [`Self::preload`].
    pub fn open(
        specs: &[(String, String)],
        hub: &HubOptions,
        options: LoadOptions,
    ) -> Result<Self> {
        let mut models = Vec::with_capacity(specs.len());
        for (name, spec) in specs {
            let model_err = |source| Error::Model {
                model: spec.clone(),
                source: Box::new(source),
            };
            let files = ModelFiles::resolve(spec, hub).map_err(model_err)?;
            let defaults = TextToVideo::defaults_for(&files).map_err(model_err)?;
            models.push(Model {
                name: name.clone(),
                files,
                defaults,
                loaded: Mutex::new(None),
            });
        }
        Ok(Self { models, options })
    }

    /// Loads every model's weights now.
    pub fn preload(&self) -> Result<()> {
        for model in &self.models {
            self.loaded(model).map_err(|source| Error::Model {
                model: model.name.clone(),
                source,
            })?;
        }
        Ok(())
    }

    fn loaded(
        &self,
        model: &Model,
    ) -> std::result::Result<Arc<TextToVideo>, Box<wan_pipeline::Error>> {
        let mut slot = model.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(t2v) = slot.as_ref() {
            return Ok(Arc::clone(t2v));
        }
        let t2v = Arc::new(TextToVideo::load(&model.files, &self.options).map_err(Box::new)?);
        *slot = Some(Arc::clone(&t2v));
        Ok(t2v)
    }
}

fn failed(code: &'static str, err: impl std::fmt::Display) -> GenerateError {
    GenerateError::Failed {
        code,
        message: err.to_string(),
    }
}

impl Generator for PipelineGenerator {
    fn models(&self) -> Vec<String> {
        self.models.iter().map(|m| m.name.clone()).collect()
    }

    fn defaults(&self, model: &str) -> Option<ModelDefaults> {
        self.models
            .iter()
            .find(|m| m.name == model)
            .map(|m| m.defaults.clone())
    }

    fn generate(
        &self,
        model: &str,
        request: &ResolvedRequest,
        output: &OutputPaths,
        progress: &mut dyn Progress,
    ) -> std::result::Result<GenerateReport, GenerateError> {
        let entry = self
            .models
            .iter()
            .find(|m| m.name == model)
            .ok_or_else(|| GenerateError::UnknownModel(model.to_string()))?;
        let start = Instant::now();
        let t2v = self
            .loaded(entry)
            .map_err(|e| failed("model_load_failed", e))?;
        let load = start.elapsed().as_secs_f64();
        let generated = match t2v.generate(request, None, progress) {
            Ok(g) => g,
            Err(wan_pipeline::Error::Cancelled) => return Err(GenerateError::Cancelled),
            Err(e) => return Err(failed("generation_failed", e)),
        };
        let start = Instant::now();
        progress.event(&ProgressEvent::StageStarted {
            stage: Stage::Write,
            total: 1,
        });
        let metadata = Metadata {
            prompt: request.prompt.clone(),
            negative_prompt: request.negative_prompt.clone(),
            seed: request.seed,
            model: model.to_string(),
            sampler: request.sampler.clone(),
            steps: request.steps,
            guidance: request.guidance as f32,
            shift: request.shift as f32,
            ..Metadata::describing(&generated.frames)
        };
        wan_video::write_output(&output.video, &generated.frames, &metadata)
            .map_err(|e| failed("write_failed", e))?;
        let png =
            wan_video::thumbnail_png(&generated.frames).map_err(|e| failed("write_failed", e))?;
        write_thumbnail(&output.thumbnail, &png)?;
        let write = start.elapsed().as_secs_f64();
        progress.event(&ProgressEvent::StageFinished {
            stage: Stage::Write,
            seconds: write,
        });
        Ok(GenerateReport {
            load,
            encode: generated.timings.encode,
            denoise: generated.timings.denoise,
            decode: generated.timings.decode,
            write,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wan_pipeline::GenerateRequest;

    fn tiny() -> PipelineGenerator {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny-t2v");
        PipelineGenerator::open(
            &[("tiny".into(), root.display().to_string())],
            &HubOptions {
                offline: true,
                ..HubOptions::default()
            },
            LoadOptions::default(),
        )
        .expect("tiny model")
    }

    fn request(generator: &PipelineGenerator) -> ResolvedRequest {
        GenerateRequest {
            width: Some(32),
            height: Some(32),
            frames: Some(5),
            steps: Some(3),
            seed: Some(5),
            ..GenerateRequest::new("a lighthouse")
        }
        .validate(&generator.defaults("tiny").expect("defaults"), 0)
        .expect("valid")
    }

    /// Counts denoising steps and cancels after `cancel_after` of them.
    struct StopAfter {
        steps: usize,
        cancel_after: usize,
    }

    impl Progress for StopAfter {
        fn event(&mut self, event: &ProgressEvent) {
            if let ProgressEvent::Advanced {
                stage: Stage::Denoise,
                ..
            } = event
            {
                self.steps += 1;
            }
        }

        fn cancelled(&self) -> bool {
            self.steps >= self.cancel_after
        }
    }

    #[test]
    fn writes_the_video_and_keeps_the_model_loaded() {
        let generator = tiny();
        let req = request(&generator);
        let dir = tempfile::tempdir().expect("tempdir");
        let out = OutputPaths {
            video: dir.path().join("video.mp4"),
            thumbnail: dir.path().join("thumbnail.png"),
        };
        let mut progress = StopAfter {
            steps: 0,
            cancel_after: usize::MAX,
        };
        let first = generator
            .generate("tiny", &req, &out, &mut progress)
            .expect("generate");
        assert_eq!(progress.steps, 3);
        assert!(first.denoise > 0.0 && first.decode > 0.0 && first.write > 0.0);
        let mp4 = std::fs::read(&out.video).expect("mp4");
        assert_eq!(&mp4[4..8], b"ftyp");
        let png = std::fs::read(&out.thumbnail).expect("png");
        assert_eq!(&png[1..4], b"PNG");
        let loaded = generator.loaded(&generator.models[0]).expect("loaded");
        let again = generator.loaded(&generator.models[0]).expect("loaded");
        assert!(Arc::ptr_eq(&loaded, &again), "the model is loaded once");
    }

    #[test]
    fn cancellation_between_steps_writes_nothing() {
        let generator = tiny();
        let req = request(&generator);
        let dir = tempfile::tempdir().expect("tempdir");
        let out = OutputPaths {
            video: dir.path().join("video.mp4"),
            thumbnail: dir.path().join("thumbnail.png"),
        };
        let mut progress = StopAfter {
            steps: 0,
            cancel_after: 1,
        };
        let err = generator
            .generate("tiny", &req, &out, &mut progress)
            .expect_err("cancelled");
        assert!(matches!(err, GenerateError::Cancelled), "{err}");
        assert_eq!(progress.steps, 1, "stopped after the first step");
        assert!(!out.video.exists() && !out.thumbnail.exists());
        let err = generator
            .generate("other", &req, &out, &mut progress)
            .expect_err("unknown");
        assert!(matches!(err, GenerateError::UnknownModel(_)), "{err}");
    }
}
