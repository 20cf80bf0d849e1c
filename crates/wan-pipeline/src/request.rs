//! The description of one generation job and its validation rules.

use serde::{Deserialize, Serialize};

/// Sampler names accepted by `--sampler` and the API's `sampler` field.
pub const SAMPLERS: &[&str] = &["unipc", "euler", "dpm++"];

/// What the user asked for. Fields left `None` take the model's defaults ([`ModelDefaults`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    /// The prompt.
    pub prompt: String,
    /// The negative prompt; the model's default negative prompt when `None`.
    #[serde(default)]
    pub negative_prompt: Option<String>,
    /// Output width in pixels (a multiple of 16).
    #[serde(default)]
    pub width: Option<u32>,
    /// Output height in pixels (a multiple of 16).
    #[serde(default)]
    pub height: Option<u32>,
    /// Number of video frames, of the form 4k+1 (1 gives a single image).
    #[serde(default)]
    pub frames: Option<u32>,
    /// Denoising steps (>= 1).
    #[serde(default)]
    pub steps: Option<u32>,
    /// Classifier-free guidance scale (>= 0; 1 disables the unconditional pass).
    #[serde(default)]
    pub guidance: Option<f64>,
    /// Flow shift (> 0).
    #[serde(default)]
    pub shift: Option<f64>,
    /// Sampler name, one of [`SAMPLERS`].
    #[serde(default)]
    pub sampler: Option<String>,
    /// Noise seed; drawn at random when `None`, and always recorded.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Frames per second of the written video.
    #[serde(default)]
    pub fps: Option<u32>,
}

/// A model's defaults, used for the fields a request leaves out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelDefaults {
    /// Default width in pixels.
    pub width: u32,
    /// Default height in pixels.
    pub height: u32,
    /// Default frame count.
    pub frames: u32,
    /// Default number of steps.
    pub steps: u32,
    /// Default guidance scale.
    pub guidance: f64,
    /// Default flow shift.
    pub shift: f64,
    /// Default sampler.
    pub sampler: String,
    /// Default frames per second.
    pub fps: u32,
    /// The model's default negative prompt.
    pub negative_prompt: String,
}

/// A request with every field resolved and validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedRequest {
    /// The prompt.
    pub prompt: String,
    /// The negative prompt actually used.
    pub negative_prompt: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frame count (4k+1).
    pub frames: u32,
    /// Denoising steps.
    pub steps: u32,
    /// Guidance scale.
    pub guidance: f64,
    /// Flow shift.
    pub shift: f64,
    /// Sampler name.
    pub sampler: String,
    /// Noise seed.
    pub seed: u64,
    /// Frames per second.
    pub fps: u32,
}

/// A request field outside its allowed range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("invalid {field}: {message}")]
pub struct ValidationError {
    /// The offending field, as named in the API and by the CLI flag (`width`, `frames`, ...).
    pub field: &'static str,
    /// What is wrong and what is allowed.
    pub message: String,
}

/// Largest accepted width or height, in pixels.
pub const MAX_SIDE: u32 = 4096;
/// Largest accepted frame count.
pub const MAX_FRAMES: u32 = 1025;
/// Largest accepted number of steps.
pub const MAX_STEPS: u32 = 1000;
/// Largest accepted guidance scale.
pub const MAX_GUIDANCE: f64 = 100.0;
/// Largest accepted flow shift.
pub const MAX_SHIFT: f64 = 100.0;
/// Largest accepted frames per second.
pub const MAX_FPS: u32 = 240;
/// Largest accepted prompt length, in characters.
pub const MAX_PROMPT_CHARS: usize = 20_000;

fn invalid(field: &'static str, message: impl Into<String>) -> ValidationError {
    ValidationError {
        field,
        message: message.into(),
    }
}

impl GenerateRequest {
    /// A request for `prompt` with every other field left to the model's defaults.
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            ..Self::default()
        }
    }

    /// Checks every field against its allowed range, fills the omitted ones from `defaults`, and
    /// uses `random_seed` when no seed was given. No heavy work happens before this passes.
    pub fn validate(
        &self,
        defaults: &ModelDefaults,
        random_seed: u64,
    ) -> Result<ResolvedRequest, ValidationError> {
        if self.prompt.trim().is_empty() {
            return Err(invalid("prompt", "must not be empty"));
        }
        let prompt_chars = self.prompt.chars().count();
        if prompt_chars > MAX_PROMPT_CHARS {
            return Err(invalid(
                "prompt",
                format!("has {prompt_chars} characters; at most {MAX_PROMPT_CHARS} are allowed"),
            ));
        }
        if let Some(neg) = &self.negative_prompt
            && neg.chars().count() > MAX_PROMPT_CHARS
        {
            return Err(invalid(
                "negative_prompt",
                format!("is longer than {MAX_PROMPT_CHARS} characters"),
            ));
        }
        let width = self.width.unwrap_or(defaults.width);
        let height = self.height.unwrap_or(defaults.height);
        for (field, v) in [("width", width), ("height", height)] {
            if v == 0 || v % 16 != 0 || v > MAX_SIDE {
                return Err(invalid(
                    field,
                    format!("{v} is not allowed: use a multiple of 16 from 16 to {MAX_SIDE}"),
                ));
            }
        }
        let frames = self.frames.unwrap_or(defaults.frames);
        if frames == 0 || frames % 4 != 1 || frames > MAX_FRAMES {
            return Err(invalid(
                "frames",
                format!(
                    "{frames} is not allowed: use 4k+1 frames (1, 5, 9, ..., 81, ...) up to {MAX_FRAMES}"
                ),
            ));
        }
        let steps = self.steps.unwrap_or(defaults.steps);
        if steps == 0 || steps > MAX_STEPS {
            return Err(invalid(
                "steps",
                format!("{steps} is not allowed: use 1 to {MAX_STEPS}"),
            ));
        }
        let guidance = self.guidance.unwrap_or(defaults.guidance);
        if !guidance.is_finite() || !(0.0..=MAX_GUIDANCE).contains(&guidance) {
            return Err(invalid(
                "guidance",
                format!("{guidance} is not allowed: use 0 to {MAX_GUIDANCE}"),
            ));
        }
        let shift = self.shift.unwrap_or(defaults.shift);
        if !shift.is_finite() || shift <= 0.0 || shift > MAX_SHIFT {
            return Err(invalid(
                "shift",
                format!("{shift} is not allowed: use a value above 0 and at most {MAX_SHIFT}"),
            ));
        }
        let sampler = self
            .sampler
            .clone()
            .unwrap_or_else(|| defaults.sampler.clone())
            .to_ascii_lowercase();
        if !SAMPLERS.contains(&sampler.as_str()) {
            return Err(invalid(
                "sampler",
                format!("{sampler:?} is unknown: use one of {}", SAMPLERS.join(", ")),
            ));
        }
        let fps = self.fps.unwrap_or(defaults.fps);
        if fps == 0 || fps > MAX_FPS {
            return Err(invalid(
                "fps",
                format!("{fps} is not allowed: use 1 to {MAX_FPS}"),
            ));
        }
        Ok(ResolvedRequest {
            prompt: self.prompt.clone(),
            negative_prompt: self
                .negative_prompt
                .clone()
                .unwrap_or_else(|| defaults.negative_prompt.clone()),
            width,
            height,
            frames,
            steps,
            guidance,
            shift,
            sampler,
            seed: self.seed.unwrap_or(random_seed),
            fps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> ModelDefaults {
        ModelDefaults {
            width: 832,
            height: 480,
            frames: 81,
            steps: 50,
            guidance: 5.0,
            shift: 5.0,
            sampler: "unipc".into(),
            fps: 16,
            negative_prompt: "bad".into(),
        }
    }

    fn field_of(req: GenerateRequest) -> &'static str {
        req.validate(&defaults(), 7)
            .expect_err("must be rejected")
            .field
    }

    #[test]
    fn defaults_fill_omitted_fields_and_seed_is_recorded() {
        let r = GenerateRequest::new("a cat")
            .validate(&defaults(), 42)
            .expect("valid");
        assert_eq!((r.width, r.height, r.frames, r.steps), (832, 480, 81, 50));
        assert_eq!((r.seed, r.fps, r.negative_prompt.as_str()), (42, 16, "bad"));
        let r = GenerateRequest {
            seed: Some(3),
            ..GenerateRequest::new("a cat")
        }
        .validate(&defaults(), 42)
        .expect("valid");
        assert_eq!(r.seed, 3);
    }

    #[test]
    fn each_out_of_range_field_is_named() {
        let base = GenerateRequest::new("a cat");
        assert_eq!(field_of(GenerateRequest::new("  ")), "prompt");
        assert_eq!(
            field_of(GenerateRequest {
                width: Some(100),
                ..base.clone()
            }),
            "width"
        );
        assert_eq!(
            field_of(GenerateRequest {
                height: Some(0),
                ..base.clone()
            }),
            "height"
        );
        assert_eq!(
            field_of(GenerateRequest {
                frames: Some(80),
                ..base.clone()
            }),
            "frames"
        );
        assert_eq!(
            field_of(GenerateRequest {
                frames: Some(0),
                ..base.clone()
            }),
            "frames"
        );
        assert_eq!(
            field_of(GenerateRequest {
                steps: Some(0),
                ..base.clone()
            }),
            "steps"
        );
        assert_eq!(
            field_of(GenerateRequest {
                guidance: Some(-1.0),
                ..base.clone()
            }),
            "guidance"
        );
        assert_eq!(
            field_of(GenerateRequest {
                guidance: Some(f64::NAN),
                ..base.clone()
            }),
            "guidance"
        );
        assert_eq!(
            field_of(GenerateRequest {
                shift: Some(-2.0),
                ..base.clone()
            }),
            "shift"
        );
        assert_eq!(
            field_of(GenerateRequest {
                sampler: Some("ddim".into()),
                ..base.clone()
            }),
            "sampler"
        );
        assert_eq!(
            field_of(GenerateRequest {
                fps: Some(0),
                ..base
            }),
            "fps"
        );
    }

    #[test]
    fn messages_state_the_allowed_range() {
        let err = GenerateRequest {
            frames: Some(80),
            ..GenerateRequest::new("a cat")
        }
        .validate(&defaults(), 0)
        .expect_err("rejected");
        assert!(err.to_string().contains("4k+1"), "{err}");
        let err = GenerateRequest {
            sampler: Some("ddim".into()),
            ..GenerateRequest::new("a cat")
        }
        .validate(&defaults(), 0)
        .expect_err("rejected");
        assert!(err.to_string().contains("unipc, euler, dpm++"), "{err}");
    }

    #[test]
    fn single_frame_and_guidance_zero_are_allowed() {
        let r = GenerateRequest {
            frames: Some(1),
            guidance: Some(0.0),
            ..GenerateRequest::new("a cat")
        }
        .validate(&defaults(), 0)
        .expect("valid");
        assert_eq!((r.frames, r.guidance), (1, 0.0));
    }
}
