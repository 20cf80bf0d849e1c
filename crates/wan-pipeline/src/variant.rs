//! Which Wan release a checkpoint is, and the generation defaults that release ships with.

use wan_dit::DitConfig;

use crate::request::ModelDefaults;

/// The default negative prompt of Wan2.1 / Wan2.2 text-to-video (the official `sample_neg_prompt`).
pub const DEFAULT_NEGATIVE_PROMPT: &str = "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走";

/// Text length the DiT's cross-attention sees in every release.
pub const TEXT_LEN: usize = 512;

/// The Wan releases this crate knows by their transformer's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Wan2.1 T2V-1.3B.
    Wan21T2V1_3B,
    /// Wan2.1 T2V-14B (also text-to-image with one frame).
    Wan21T2V14B,
    /// Wan2.2 TI2V-5B (VAE 2.2, 24 fps).
    Wan22TI2V5B,
    /// Any other shape (for example the tiny test models): Wan2.1 defaults.
    Other,
}

impl Variant {
    /// Recognises a release from its transformer config.
    pub fn detect(cfg: &DitConfig) -> Self {
        let dim = cfg.dim();
        match (dim, cfg.num_layers, cfg.in_channels) {
            (1536, 30, 16) => Variant::Wan21T2V1_3B,
            (5120, 40, 16) => Variant::Wan21T2V14B,
            (3072, 30, 48) => Variant::Wan22TI2V5B,
            _ => Variant::Other,
        }
    }

    /// The release's defaults, with `shift` from the checkpoint's sampler settings.
    pub fn defaults(self, shift: f64) -> ModelDefaults {
        let (width, height, frames, fps) = match self {
            Variant::Wan22TI2V5B => (1280, 704, 121, 24),
            _ => (832, 480, 81, 16),
        };
        ModelDefaults {
            width,
            height,
            frames,
            steps: 50,
            guidance: 5.0,
            shift,
            sampler: "unipc".to_string(),
            fps,
            negative_prompt: DEFAULT_NEGATIVE_PROMPT.to_string(),
        }
    }
}
