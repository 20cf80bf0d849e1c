//! Generation settings stored alongside every output.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::frames::Frames;

/// What produced a clip: written into the MP4's metadata, the PNG folder's `metadata.json`, the GIF comment and
/// the safetensors header.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// The prompt.
    pub prompt: String,
    /// The negative prompt (empty when none).
    pub negative_prompt: String,
    /// The random seed.
    pub seed: u64,
    /// The model (name or path).
    pub model: String,
    /// The sampler.
    pub sampler: String,
    /// Number of denoising steps.
    pub steps: u32,
    /// Classifier-free guidance scale.
    pub guidance: f32,
    /// Flow-matching timestep shift.
    pub shift: f32,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Number of frames.
    pub frames: u32,
    /// Frames per second.
    pub fps: u32,
    /// Any further settings, free-form.
    #[serde(default)]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

impl Metadata {
    /// Metadata with the size, length and frame rate of `frames` and every other field empty.
    pub fn describing(frames: &Frames) -> Self {
        Self {
            width: saturating_u32(frames.width()),
            height: saturating_u32(frames.height()),
            frames: saturating_u32(frames.frame_count()),
            fps: frames.fps(),
            ..Self::default()
        }
    }

    /// The metadata as compact JSON.
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string(self)?)
    }

    /// The metadata as flat string pairs (strings as they are, everything else as JSON), for containers whose
    /// metadata is a string map.
    pub fn to_string_map(&self) -> Result<Vec<(String, String)>> {
        let serde_json::Value::Object(map) = serde_json::to_value(self)? else {
            return Ok(Vec::new());
        };
        Ok(map
            .into_iter()
            .map(|(key, value)| match value {
                serde_json::Value::String(s) => (key, s),
                other => (key, other.to_string()),
            })
            .collect())
    }

    /// Checks that width, height, frame count and fps match the frames they describe.
    pub fn check_matches(&self, frames: &Frames) -> Result<()> {
        let pairs = [
            ("width", self.width as usize, frames.width()),
            ("height", self.height as usize, frames.height()),
            ("frames", self.frames as usize, frames.frame_count()),
            ("fps", self.fps as usize, frames.fps() as usize),
        ];
        for (field, metadata, actual) in pairs {
            if metadata != actual {
                return Err(Error::MetadataMismatch {
                    field,
                    metadata,
                    frames: actual,
                });
            }
        }
        Ok(())
    }
}

fn saturating_u32(x: usize) -> u32 {
    u32::try_from(x).unwrap_or(u32::MAX)
}
