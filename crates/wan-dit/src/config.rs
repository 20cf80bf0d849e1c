//! The transformer's configuration, read from a diffusers `transformer/config.json` or an official
//! `WanModel` `config.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Width of the CLIP ViT-H/14 image tokens fed to the Wan2.1 image-to-video models.
pub const CLIP_IMAGE_DIM: usize = 1280;
/// Number of CLIP image tokens per image (class token + 16 x 16 patches).
pub const CLIP_IMAGE_TOKENS: usize = 257;

/// Hyper-parameters of a Wan diffusion transformer, named as in diffusers' `WanTransformer3DModel`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DitConfig {
    /// Patch size (frames, height, width) of the patch embedding; (1, 2, 2) in every release.
    pub patch_size: [usize; 3],
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Width of one head (128 in every release).
    pub attention_head_dim: usize,
    /// Latent channels in (16; 36 for image-to-video; 48 for Wan2.2 TI2V-5B).
    pub in_channels: usize,
    /// Channels out (16; 48 for TI2V-5B).
    pub out_channels: usize,
    /// Width of the text encoder's output (4096 for umT5-XXL).
    pub text_dim: usize,
    /// Width of the sinusoidal timestep embedding.
    pub freq_dim: usize,
    /// Hidden width of the feed-forward layers.
    pub ffn_dim: usize,
    /// Transformer blocks.
    pub num_layers: usize,
    /// Whether cross-attention is preceded by an affine LayerNorm.
    pub cross_attn_norm: bool,
    /// Epsilon of the block norms.
    pub eps: f64,
    /// Width of the image tokens (1280 for CLIP) for image-to-video models with image keys/values.
    pub image_dim: Option<usize>,
    /// Input width of the image key/value projections (the model width) when present.
    pub added_kv_proj_dim: Option<usize>,
    /// Rotary table length: the largest patch-grid extent along any axis.
    pub rope_max_seq_len: usize,
    /// Length of the learned image position embedding (first-last-frame models: 2 x 257).
    pub pos_embed_seq_len: Option<usize>,
}

/// diffusers `config.json` (`WanTransformer3DModel`), with diffusers' defaults.
#[derive(Deserialize)]
#[serde(default)]
struct DiffusersJson {
    patch_size: Vec<usize>,
    num_attention_heads: usize,
    attention_head_dim: usize,
    in_channels: usize,
    out_channels: Option<usize>,
    text_dim: usize,
    freq_dim: usize,
    ffn_dim: usize,
    num_layers: usize,
    cross_attn_norm: bool,
    eps: f64,
    image_dim: Option<usize>,
    added_kv_proj_dim: Option<usize>,
    rope_max_seq_len: usize,
    pos_embed_seq_len: Option<usize>,
}

impl Default for DiffusersJson {
    fn default() -> Self {
        Self {
            patch_size: vec![1, 2, 2],
            num_attention_heads: 40,
            attention_head_dim: 128,
            in_channels: 16,
            out_channels: Some(16),
            text_dim: 4096,
            freq_dim: 256,
            ffn_dim: 13824,
            num_layers: 40,
            cross_attn_norm: true,
            eps: 1e-6,
            image_dim: None,
            added_kv_proj_dim: None,
            rope_max_seq_len: 1024,
            pos_embed_seq_len: None,
        }
    }
}

/// Official `config.json` (`WanModel`), with the official defaults.
#[derive(Deserialize)]
#[serde(default)]
struct OfficialJson {
    model_type: String,
    patch_size: Vec<usize>,
    dim: usize,
    ffn_dim: usize,
    num_heads: usize,
    num_layers: usize,
    in_dim: usize,
    out_dim: usize,
    text_dim: usize,
    freq_dim: usize,
    eps: f64,
    cross_attn_norm: bool,
}

impl Default for OfficialJson {
    fn default() -> Self {
        Self {
            model_type: "t2v".to_string(),
            patch_size: vec![1, 2, 2],
            dim: 2048,
            ffn_dim: 8192,
            num_heads: 16,
            num_layers: 32,
            in_dim: 16,
            out_dim: 16,
            text_dim: 4096,
            freq_dim: 256,
            eps: 1e-6,
            cross_attn_norm: true,
        }
    }
}

fn patch3(patch: &[usize]) -> std::result::Result<[usize; 3], String> {
    <[usize; 3]>::try_from(patch)
        .map_err(|_| format!("patch_size must have 3 entries, got {patch:?}"))
}

impl DitConfig {
    /// Reads a diffusers (`WanTransformer3DModel`) or official (`WanModel`) `config.json`.
    ///
    /// The official format is recognised by its `dim`/`num_heads` keys or `_class_name: WanModel`.
    pub fn from_json_file(path: &Path) -> Result<Self> {
        let bad = |reason: String| Error::Config {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let official = json.get("dim").is_some()
            || json.get("num_heads").is_some()
            || json.get("_class_name").and_then(|c| c.as_str()) == Some("WanModel");
        let cfg = if official {
            let raw: OfficialJson = serde_json::from_value(json).map_err(|e| bad(e.to_string()))?;
            Self::from_official(raw).map_err(bad)?
        } else {
            let raw: DiffusersJson =
                serde_json::from_value(json).map_err(|e| bad(e.to_string()))?;
            Self::from_diffusers(raw).map_err(bad)?
        };
        cfg.validate().map_err(|e| bad(e.to_string()))?;
        Ok(cfg)
    }

    fn from_diffusers(raw: DiffusersJson) -> std::result::Result<Self, String> {
        Ok(Self {
            patch_size: patch3(&raw.patch_size)?,
            num_attention_heads: raw.num_attention_heads,
            attention_head_dim: raw.attention_head_dim,
            in_channels: raw.in_channels,
            out_channels: raw.out_channels.unwrap_or(raw.in_channels),
            text_dim: raw.text_dim,
            freq_dim: raw.freq_dim,
            ffn_dim: raw.ffn_dim,
            num_layers: raw.num_layers,
            cross_attn_norm: raw.cross_attn_norm,
            eps: raw.eps,
            image_dim: raw.image_dim,
            added_kv_proj_dim: raw.added_kv_proj_dim,
            rope_max_seq_len: raw.rope_max_seq_len,
            pos_embed_seq_len: raw.pos_embed_seq_len,
        })
    }

    fn from_official(raw: OfficialJson) -> std::result::Result<Self, String> {
        if raw.num_heads == 0 || !raw.dim.is_multiple_of(raw.num_heads) {
            return Err(format!(
                "dim {} is not a multiple of num_heads {}",
                raw.dim, raw.num_heads
            ));
        }
        let (image_dim, added_kv_proj_dim, pos_embed_seq_len) = match raw.model_type.as_str() {
            "t2v" | "t2i" | "ti2v" => (None, None, None),
            "i2v" => (Some(CLIP_IMAGE_DIM), Some(raw.dim), None),
            "flf2v" => (
                Some(CLIP_IMAGE_DIM),
                Some(raw.dim),
                Some(2 * CLIP_IMAGE_TOKENS),
            ),
            other => {
                return Err(format!(
                    "model_type {other:?} is not supported (t2v, t2i, i2v, flf2v, ti2v)"
                ));
            }
        };
        Ok(Self {
            patch_size: patch3(&raw.patch_size)?,
            num_attention_heads: raw.num_heads,
            attention_head_dim: raw.dim / raw.num_heads,
            in_channels: raw.in_dim,
            out_channels: raw.out_dim,
            text_dim: raw.text_dim,
            freq_dim: raw.freq_dim,
            ffn_dim: raw.ffn_dim,
            num_layers: raw.num_layers,
            cross_attn_norm: raw.cross_attn_norm,
            eps: raw.eps,
            image_dim,
            added_kv_proj_dim,
            rope_max_seq_len: 1024,
            pos_embed_seq_len,
        })
    }

    /// Checks that the values describe a model this crate can build.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Unsupported(msg));
        if self.patch_size.contains(&0) {
            return bad(format!("patch_size {:?} has a zero entry", self.patch_size));
        }
        let hd = self.attention_head_dim;
        if self.num_attention_heads == 0 || hd < 6 || !hd.is_multiple_of(2) {
            return bad(format!(
                "{} heads of width {hd}: need at least one head of an even width >= 6 (3D rotary split)",
                self.num_attention_heads
            ));
        }
        if self.freq_dim == 0 || !self.freq_dim.is_multiple_of(2) {
            return bad(format!(
                "freq_dim {} must be even and positive",
                self.freq_dim
            ));
        }
        for (name, v) in [
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("text_dim", self.text_dim),
            ("ffn_dim", self.ffn_dim),
            ("rope_max_seq_len", self.rope_max_seq_len),
        ] {
            if v == 0 {
                return bad(format!("{name} must be positive"));
            }
        }
        match (self.image_dim, self.added_kv_proj_dim) {
            (None, None) => {}
            (Some(_), Some(kv)) if kv == self.dim() => {}
            (image, kv) => {
                return bad(format!(
                    "image_dim {image:?} and added_kv_proj_dim {kv:?}: both must be set (added_kv_proj_dim = model width {}) or neither",
                    self.dim()
                ));
            }
        }
        if self.pos_embed_seq_len.is_some() && self.image_dim.is_none() {
            return bad("pos_embed_seq_len needs image_dim".to_string());
        }
        Ok(())
    }

    /// The model width (`heads x head_dim`).
    pub fn dim(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
    }

    /// Whether the model attends to CLIP image tokens (Wan2.1 image-to-video, first-last-frame).
    pub fn has_image_input(&self) -> bool {
        self.image_dim.is_some()
    }

    /// The same configuration without the image keys/values (Wan2.2 image-to-video has no CLIP).
    pub fn without_image_input(mut self) -> Self {
        self.image_dim = None;
        self.added_kv_proj_dim = None;
        self.pos_embed_seq_len = None;
        self
    }

    fn release(heads: usize, ffn_dim: usize, layers: usize, in_ch: usize, out_ch: usize) -> Self {
        Self {
            patch_size: [1, 2, 2],
            num_attention_heads: heads,
            attention_head_dim: 128,
            in_channels: in_ch,
            out_channels: out_ch,
            text_dim: 4096,
            freq_dim: 256,
            ffn_dim,
            num_layers: layers,
            cross_attn_norm: true,
            eps: 1e-6,
            image_dim: None,
            added_kv_proj_dim: None,
            rope_max_seq_len: 1024,
            pos_embed_seq_len: None,
        }
    }

    /// Wan2.1 T2V-1.3B: width 1536, 12 heads, 30 layers, FFN 8960.
    pub fn wan21_t2v_1_3b() -> Self {
        Self::release(12, 8960, 30, 16, 16)
    }

    /// Wan2.1 T2V-14B (also each Wan2.2 A14B text-to-video expert): width 5120, 40 heads, 40 layers.
    pub fn wan21_t2v_14b() -> Self {
        Self::release(40, 13824, 40, 16, 16)
    }

    /// Wan2.1 I2V-14B: the 14B transformer with 36 input channels and CLIP image keys/values.
    pub fn wan21_i2v_14b() -> Self {
        let mut cfg = Self::release(40, 13824, 40, 36, 16);
        cfg.image_dim = Some(CLIP_IMAGE_DIM);
        cfg.added_kv_proj_dim = Some(cfg.dim());
        cfg
    }

    /// Wan2.2 TI2V-5B: width 3072, 24 heads, 30 layers, FFN 14336, 48 channels in and out.
    pub fn wan22_ti2v_5b() -> Self {
        Self::release(24, 14336, 30, 48, 48)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(rel: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/dit")
            .join(rel)
    }

    #[test]
    fn diffusers_and_official_configs_agree() {
        let d = DitConfig::from_json_file(&fixture("t2v/config.json")).expect("diffusers");
        let o = DitConfig::from_json_file(&fixture("t2v_official/config.json")).expect("official");
        assert_eq!(d, o);
        assert_eq!(d.dim(), 32);
        let i2v = DitConfig::from_json_file(&fixture("i2v/config.json")).expect("i2v");
        assert_eq!((i2v.image_dim, i2v.added_kv_proj_dim), (Some(20), Some(32)));
    }

    #[test]
    fn official_i2v_and_flf2v_get_clip_inputs() {
        let dir = std::env::temp_dir().join(format!("wan-dit-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("config.json");
        std::fs::write(
            &path,
            r#"{"_class_name":"WanModel","model_type":"flf2v","dim":5120,"ffn_dim":13824,"num_heads":40,
                "num_layers":40,"in_dim":36,"out_dim":16,"text_len":512,"freq_dim":256,"eps":1e-6}"#,
        )
        .expect("write");
        let cfg = DitConfig::from_json_file(&path).expect("flf2v");
        let mut want = DitConfig::wan21_i2v_14b();
        want.pos_embed_seq_len = Some(514);
        assert_eq!(cfg, want);
        std::fs::write(&path, r#"{"model_type":"s2v","dim":5120,"num_heads":40}"#).expect("write");
        let err = DitConfig::from_json_file(&path)
            .expect_err("s2v")
            .to_string();
        assert!(err.contains("s2v") && err.contains("config.json"), "{err}");
        std::fs::write(&path, r#"{"dim":100,"num_heads":3}"#).expect("write");
        let err = DitConfig::from_json_file(&path)
            .expect_err("dim")
            .to_string();
        assert!(err.contains("multiple of num_heads"), "{err}");
    }
}
