//! The Wan-VAE 2.1 (`AutoencoderKLWan`): a causal 3D VAE with z = 16 latent channels, 8x spatial and
//! 4x temporal compression (`frames = 1 + 4k`), ported from diffusers 0.42.1
//! `models/autoencoders/autoencoder_kl_wan.py`.
//!
//! Videos stream through the model like the reference does: encoding takes the first frame, then
//! chunks of 4; decoding takes one latent frame at a time. Every temporal convolution keeps the last
//! two frames it saw ([`crate::conv3d::FeatureCache`]), so working memory does not grow with the
//! video's length; decoded chunks are written straight into the output tensor.
//!
//! Tensors at the API are `[B, C, T, H, W]`; inside, activations are `[B, T, C, H, W]`.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, VarBuilder};
use serde::Deserialize;
use wan_core::{WeightFiles, WeightFormat};

use crate::conv2d::Conv2d as GemmConv2d;
use crate::conv3d::{
    CacheSlot, CausalConv3d, FeatureCache, fold_frames, last_frame, unfold_frames,
};
use crate::error::{Error, Result};
use crate::layout::{KeyLayout, official_name};
use crate::rms_norm::RmsNorm;

/// Per-channel latent mean of the released Wan2.1 VAE.
const WAN21_LATENTS_MEAN: [f64; 16] = [
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715, 0.5517,
    -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
];

/// Per-channel latent standard deviation of the released Wan2.1 VAE.
const WAN21_LATENTS_STD: [f64; 16] = [
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579,
    1.6382, 1.1253, 2.8251, 1.9160,
];

/// Video frames the encoder takes per chunk after the first frame.
const ENCODE_CHUNK: usize = 4;

/// Query rows per attention block, bounding the score matrix to `QUERY_BLOCK x (H * W)`.
const QUERY_BLOCK: usize = 1024;

/// The diffusers `vae/config.json` of `AutoencoderKLWan`. Defaults are the Wan2.1 release's.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct VaeConfig {
    /// `_class_name`; when present it must be `AutoencoderKLWan`.
    #[serde(rename = "_class_name")]
    pub class_name: Option<String>,
    /// Encoder base width (96).
    pub base_dim: usize,
    /// Decoder base width; `base_dim` when absent.
    pub decoder_base_dim: Option<usize>,
    /// Latent channels (16).
    pub z_dim: usize,
    /// Width multipliers per stage ([1, 2, 4, 4]); spatial factor is `2^(len - 1)`.
    pub dim_mult: Vec<usize>,
    /// Residual blocks per encoder stage (the decoder has one more per stage).
    pub num_res_blocks: usize,
    /// Scales with attention in the encoder's down path; must be empty (the reference cannot run it).
    pub attn_scales: Vec<f64>,
    /// Which encoder stages also downsample time ([false, true, true]); the decoder mirrors it.
    pub temperal_downsample: Vec<bool>,
    /// Dropout rate (training only; ignored).
    pub dropout: f64,
    /// Per-channel latent mean used by [`WanVae::normalize`] / [`WanVae::denormalize`].
    pub latents_mean: Vec<f64>,
    /// Per-channel latent standard deviation used by [`WanVae::normalize`] / [`WanVae::denormalize`].
    pub latents_std: Vec<f64>,
    /// Wan2.2 residual down/up blocks; must be false.
    pub is_residual: bool,
    /// Video channels in (3).
    pub in_channels: usize,
    /// Video channels out (3).
    pub out_channels: usize,
    /// Wan2.2 pixel patchification; must be absent or 1.
    pub patch_size: Option<usize>,
    /// Declared temporal factor; when present it must match `temperal_downsample`.
    pub scale_factor_temporal: Option<usize>,
    /// Declared spatial factor (informational; the structure is decided by `dim_mult`).
    pub scale_factor_spatial: Option<usize>,
}

impl Default for VaeConfig {
    fn default() -> Self {
        Self {
            class_name: None,
            base_dim: 96,
            decoder_base_dim: None,
            z_dim: 16,
            dim_mult: vec![1, 2, 4, 4],
            num_res_blocks: 2,
            attn_scales: Vec::new(),
            temperal_downsample: vec![false, true, true],
            dropout: 0.0,
            latents_mean: WAN21_LATENTS_MEAN.to_vec(),
            latents_std: WAN21_LATENTS_STD.to_vec(),
            is_residual: false,
            in_channels: 3,
            out_channels: 3,
            patch_size: None,
            scale_factor_temporal: Some(4),
            scale_factor_spatial: Some(8),
        }
    }
}

impl VaeConfig {
    /// The released Wan2.1 VAE configuration (what the official `Wan2.1_VAE.pth` holds).
    pub fn wan21() -> Self {
        Self::default()
    }

    /// Reads and validates a diffusers `config.json`.
    pub fn from_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: Self = serde_json::from_str(&text).map_err(|source| Error::ConfigParse {
            path: path.to_path_buf(),
            source,
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks that this is a Wan2.1-style configuration this crate can run.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Config(msg));
        if let Some(name) = &self.class_name
            && name != "AutoencoderKLWan"
        {
            return bad(format!(
                "_class_name is {name:?}, expected \"AutoencoderKLWan\""
            ));
        }
        if self.is_residual || self.patch_size.is_some_and(|p| p > 1) || self.z_dim == 48 {
            return bad(format!(
                "this is a Wan2.2 VAE (is_residual {}, patch_size {:?}, z_dim {}); only the Wan2.1 VAE is implemented",
                self.is_residual, self.patch_size, self.z_dim
            ));
        }
        if !self.attn_scales.is_empty() {
            return bad(format!(
                "attn_scales {:?} must be empty: the reference encoder cannot run attention in its down path",
                self.attn_scales
            ));
        }
        if self.base_dim == 0 || self.decoder_base_dim == Some(0) || self.z_dim == 0 {
            return bad("base_dim, decoder_base_dim and z_dim must be positive".to_string());
        }
        if self.in_channels == 0 || self.out_channels == 0 {
            return bad("in_channels and out_channels must be positive".to_string());
        }
        if self.dim_mult.is_empty() || self.dim_mult.contains(&0) {
            return bad(format!(
                "dim_mult {:?} must be non-empty and positive",
                self.dim_mult
            ));
        }
        if self.dim_mult.len() > 1 && !(self.decoder_dim() * self.dim_mult[1]).is_multiple_of(2) {
            return bad(format!(
                "decoder width {} x {} must be even (each upsampler halves it)",
                self.decoder_dim(),
                self.dim_mult[1]
            ));
        }
        if self.temperal_downsample.len() + 1 != self.dim_mult.len() {
            return bad(format!(
                "temperal_downsample has {} entries, expected {} (one per stage but the last of dim_mult {:?})",
                self.temperal_downsample.len(),
                self.dim_mult.len() - 1,
                self.dim_mult
            ));
        }
        let time_downs = self.temperal_downsample.iter().filter(|&&d| d).count();
        if time_downs != 2 {
            return bad(format!(
                "temperal_downsample {:?} downsamples time {time_downs} times, expected 2 (4x, frames = 1 + 4k)",
                self.temperal_downsample
            ));
        }
        if let Some(t) = self.scale_factor_temporal
            && t != 4
        {
            return bad(format!("scale_factor_temporal is {t}, expected 4"));
        }
        for (name, values) in [
            ("latents_mean", &self.latents_mean),
            ("latents_std", &self.latents_std),
        ] {
            if values.len() != self.z_dim {
                return bad(format!(
                    "{name} has {} values, expected z_dim = {}",
                    values.len(),
                    self.z_dim
                ));
            }
        }
        if self.latents_std.iter().any(|&s| s <= 0.0 || !s.is_finite()) {
            return bad("latents_std values must be positive and finite".to_string());
        }
        Ok(())
    }

    /// The decoder's base width.
    pub fn decoder_dim(&self) -> usize {
        self.decoder_base_dim.unwrap_or(self.base_dim)
    }

    /// Pixels per latent along height and width (8 for Wan2.1).
    pub fn spatial_factor(&self) -> usize {
        1 << self.dim_mult.len().saturating_sub(1)
    }

    /// Video frames per latent frame after the first (4).
    pub fn temporal_factor(&self) -> usize {
        1 << self.temperal_downsample.iter().filter(|&&d| d).count()
    }

    /// Video frames decoded from `latent_frames` latent frames: `1 + 4 (T - 1)`.
    pub fn decoded_frames(&self, latent_frames: usize) -> usize {
        1 + self.temporal_factor() * latent_frames.saturating_sub(1)
    }

    /// Latent frames encoded from `video_frames` frames, or `None` when it is not `1 + 4k`.
    pub fn encoded_frames(&self, video_frames: usize) -> Option<usize> {
        let k = self.temporal_factor();
        (video_frames >= 1 && (video_frames - 1).is_multiple_of(k))
            .then(|| 1 + (video_frames - 1) / k)
    }
}

/// `RMS, SiLU, conv3x3x3, RMS, SiLU, conv3x3x3` plus a 1x1x1 shortcut when the width changes.
#[derive(Debug, Clone)]
struct ResidualBlock {
    norm1: RmsNorm,
    conv1: CausalConv3d,
    norm2: RmsNorm,
    conv2: CausalConv3d,
    shortcut: Option<CausalConv3d>,
}

impl ResidualBlock {
    fn load(vb: VarBuilder, in_dim: usize, out_dim: usize) -> candle_core::Result<Self> {
        let shortcut = if in_dim != out_dim {
            Some(CausalConv3d::load(
                vb.pp("conv_shortcut"),
                in_dim,
                out_dim,
                (1, 1, 1),
                1,
                (0, 0),
            )?)
        } else {
            None
        };
        Ok(Self {
            norm1: RmsNorm::load(vb.pp("norm1"), in_dim, 3)?,
            conv1: CausalConv3d::load(vb.pp("conv1"), in_dim, out_dim, (3, 3, 3), 1, (1, 1))?,
            norm2: RmsNorm::load(vb.pp("norm2"), out_dim, 3)?,
            conv2: CausalConv3d::load(vb.pp("conv2"), out_dim, out_dim, (3, 3, 3), 1, (1, 1))?,
            shortcut,
        })
    }

    fn forward(&self, x: &Tensor, cache: &mut FeatureCache) -> candle_core::Result<Tensor> {
        let h = match &self.shortcut {
            Some(conv) => conv.forward(x, None)?,
            None => x.clone(),
        };
        let y = self.norm1.forward_silu(x)?;
        let y = self.conv1.forward_cached(&y, cache)?;
        let y = self.norm2.forward_silu(&y)?;
        let y = self.conv2.forward_cached(&y, cache)?;
        y + h
    }
}

/// Single-head self-attention over the pixels of each frame, with a residual connection.
#[derive(Debug, Clone)]
struct AttentionBlock {
    norm: RmsNorm,
    to_qkv: Conv2d,
    proj: Conv2d,
}

impl AttentionBlock {
    fn load(vb: VarBuilder, dim: usize) -> candle_core::Result<Self> {
        let cfg = Conv2dConfig::default();
        Ok(Self {
            norm: RmsNorm::load(vb.pp("norm"), dim, 2)?,
            to_qkv: candle_nn::conv2d(dim, 3 * dim, 1, cfg, vb.pp("to_qkv"))?,
            proj: candle_nn::conv2d(dim, dim, 1, cfg, vb.pp("proj"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (frames, b, t) = fold_frames(x)?;
        let (n, c, h, w) = frames.dims4()?;
        let hw = h * w;
        let qkv = self
            .to_qkv
            .forward(&self.norm.forward(&frames)?)?
            .reshape((n, 3 * c, hw))?;
        let q = qkv.narrow(1, 0, c)?.transpose(1, 2)?.contiguous()?;
        let k = qkv.narrow(1, c, c)?.contiguous()?;
        let v = qkv.narrow(1, 2 * c, c)?.transpose(1, 2)?.contiguous()?;
        let scale = 1.0 / (c as f64).sqrt();
        let mut blocks = Vec::with_capacity(hw.div_ceil(QUERY_BLOCK));
        for start in (0..hw).step_by(QUERY_BLOCK) {
            let len = QUERY_BLOCK.min(hw - start);
            let scores = (q.narrow(1, start, len)?.matmul(&k)? * scale)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            blocks.push(probs.matmul(&v)?);
        }
        let out = Tensor::cat(&blocks, 1)?
            .transpose(1, 2)?
            .reshape((n, c, h, w))?;
        let out = self.proj.forward(&out)?;
        unfold_frames(&out, b, t)? + x
    }
}

/// The resamplers between stages.
#[derive(Debug, Clone)]
enum Resample {
    /// Nearest x2 then conv3x3 (dim -> out).
    Up2d { conv: GemmConv2d },
    /// Time conv doubling the frames (after the first chunk), nearest x2, conv3x3.
    Up3d {
        time_conv: CausalConv3d,
        conv: GemmConv2d,
    },
    /// Zero-pad right/bottom, conv3x3 stride 2.
    Down2d { conv: Conv2d },
    /// Spatial downsample, then a stride-2 time conv over the previous chunk's last frame and this chunk.
    Down3d {
        conv: Conv2d,
        time_conv: CausalConv3d,
    },
}

impl Resample {
    fn load_up(
        vb: VarBuilder,
        dim: usize,
        out_dim: usize,
        time: bool,
    ) -> candle_core::Result<Self> {
        let vb_conv = vb.pp("resample.1");
        let conv = GemmConv2d::new(
            &vb_conv.get((out_dim, dim, 3, 3), "weight")?,
            Some(&vb_conv.get(out_dim, "bias")?),
            1,
        )?;
        Ok(if time {
            let time_conv =
                CausalConv3d::load(vb.pp("time_conv"), dim, 2 * dim, (3, 1, 1), 1, (1, 0))?;
            Self::Up3d { time_conv, conv }
        } else {
            Self::Up2d { conv }
        })
    }

    fn load_down(vb: VarBuilder, dim: usize, time: bool) -> candle_core::Result<Self> {
        let cfg = Conv2dConfig {
            stride: 2,
            ..Default::default()
        };
        let conv = candle_nn::conv2d(dim, dim, 3, cfg, vb.pp("resample.1"))?;
        Ok(if time {
            let time_conv = CausalConv3d::load(vb.pp("time_conv"), dim, dim, (3, 1, 1), 2, (0, 0))?;
            Self::Down3d { conv, time_conv }
        } else {
            Self::Down2d { conv }
        })
    }

    fn forward(&self, x: &Tensor, cache: &mut FeatureCache) -> candle_core::Result<Tensor> {
        match self {
            Self::Up2d { conv } => upsample_spatial(x, conv),
            Self::Up3d { time_conv, conv } => {
                let slot = cache.next_slot();
                let x = if matches!(slot, CacheSlot::Fresh) {
                    *slot = CacheSlot::Primed;
                    x.clone()
                } else {
                    let y = time_conv.forward_slot(x, slot)?;
                    let (b, t, c2, h, w) = y.dims5()?;
                    y.reshape((b, 2 * t, c2 / 2, h, w))?
                };
                upsample_spatial(&x, conv)
            }
            Self::Down2d { conv } => downsample_spatial(x, conv),
            Self::Down3d { conv, time_conv } => {
                let x = downsample_spatial(x, conv)?;
                let slot = cache.next_slot();
                match slot {
                    CacheSlot::Frames(prev) => {
                        let input = Tensor::cat(&[&last_frame(prev)?, &x], 1)?;
                        *slot = CacheSlot::Frames(last_frame(&x)?.copy()?);
                        time_conv.forward(&input, None)
                    }
                    CacheSlot::Fresh | CacheSlot::Primed => {
                        *slot = CacheSlot::Frames(x.copy()?);
                        Ok(x)
                    }
                }
            }
        }
    }
}

/// Nearest-neighbour x2 (equal to nearest-exact at this factor) and a conv, per frame.
fn upsample_spatial(x: &Tensor, conv: &GemmConv2d) -> candle_core::Result<Tensor> {
    let (frames, b, t) = fold_frames(x)?;
    unfold_frames(&conv.forward_upsampled(&frames, 2)?, b, t)
}

/// Zero-pads one row/column at the bottom/right and applies the stride-2 conv, per frame.
fn downsample_spatial(x: &Tensor, conv: &Conv2d) -> candle_core::Result<Tensor> {
    let (frames, b, t) = fold_frames(x)?;
    let padded = frames.pad_with_zeros(3, 0, 1)?.pad_with_zeros(2, 0, 1)?;
    unfold_frames(&conv.forward(&padded)?, b, t)
}

/// Residual block, attention, residual block.
#[derive(Debug, Clone)]
struct MidBlock {
    resnet0: ResidualBlock,
    attention: AttentionBlock,
    resnet1: ResidualBlock,
}

impl MidBlock {
    fn load(vb: VarBuilder, dim: usize) -> candle_core::Result<Self> {
        Ok(Self {
            resnet0: ResidualBlock::load(vb.pp("resnets.0"), dim, dim)?,
            attention: AttentionBlock::load(vb.pp("attentions.0"), dim)?,
            resnet1: ResidualBlock::load(vb.pp("resnets.1"), dim, dim)?,
        })
    }

    fn forward(&self, x: &Tensor, cache: &mut FeatureCache) -> candle_core::Result<Tensor> {
        let x = self.resnet0.forward(x, cache)?;
        let x = self.attention.forward(&x)?;
        self.resnet1.forward(&x, cache)
    }
}

/// One entry of the encoder's flat `down_blocks` list.
#[derive(Debug, Clone)]
enum DownLayer {
    Residual(ResidualBlock),
    Resample(Resample),
}

/// Video `[B, T, 3, H, W]` -> `[B, T', 2 z, H/8, W/8]` (before `quant_conv`).
#[derive(Debug, Clone)]
struct Encoder {
    conv_in: CausalConv3d,
    down: Vec<DownLayer>,
    mid: MidBlock,
    norm_out: RmsNorm,
    conv_out: CausalConv3d,
}

impl Encoder {
    fn load(vb: VarBuilder, cfg: &VaeConfig) -> candle_core::Result<Self> {
        let dims: Vec<usize> = std::iter::once(1)
            .chain(cfg.dim_mult.iter().copied())
            .map(|m| cfg.base_dim * m)
            .collect();
        let conv_in = CausalConv3d::load(
            vb.pp("conv_in"),
            cfg.in_channels,
            dims[0],
            (3, 3, 3),
            1,
            (1, 1),
        )?;
        let vb_down = vb.pp("down_blocks");
        let mut down = Vec::new();
        let stages = cfg.dim_mult.len();
        for i in 0..stages {
            let mut in_dim = dims[i];
            let out_dim = dims[i + 1];
            for _ in 0..cfg.num_res_blocks {
                let block = ResidualBlock::load(vb_down.pp(down.len()), in_dim, out_dim)?;
                down.push(DownLayer::Residual(block));
                in_dim = out_dim;
            }
            if i + 1 != stages {
                let resample = Resample::load_down(
                    vb_down.pp(down.len()),
                    out_dim,
                    cfg.temperal_downsample[i],
                )?;
                down.push(DownLayer::Resample(resample));
            }
        }
        let top = dims[stages];
        Ok(Self {
            conv_in,
            down,
            mid: MidBlock::load(vb.pp("mid_block"), top)?,
            norm_out: RmsNorm::load(vb.pp("norm_out"), top, 3)?,
            conv_out: CausalConv3d::load(
                vb.pp("conv_out"),
                top,
                2 * cfg.z_dim,
                (3, 3, 3),
                1,
                (1, 1),
            )?,
        })
    }

    fn forward(&self, x: &Tensor, cache: &mut FeatureCache) -> candle_core::Result<Tensor> {
        let mut x = self.conv_in.forward_cached(x, cache)?;
        for layer in &self.down {
            x = match layer {
                DownLayer::Residual(block) => block.forward(&x, cache)?,
                DownLayer::Resample(resample) => resample.forward(&x, cache)?,
            };
        }
        let x = self.mid.forward(&x, cache)?;
        let x = self.norm_out.forward_silu(&x)?;
        self.conv_out.forward_cached(&x, cache)
    }
}

/// One decoder stage: `num_res_blocks + 1` residual blocks and an optional upsampler.
#[derive(Debug, Clone)]
struct UpStage {
    resnets: Vec<ResidualBlock>,
    upsampler: Option<Resample>,
}

/// Latents `[B, T, z, h, w]` -> video `[B, T', 3, 8h, 8w]` (after `post_quant_conv`).
#[derive(Debug, Clone)]
struct Decoder {
    conv_in: CausalConv3d,
    mid: MidBlock,
    stages: Vec<UpStage>,
    norm_out: RmsNorm,
    conv_out: CausalConv3d,
}

impl Decoder {
    fn load(vb: VarBuilder, cfg: &VaeConfig) -> candle_core::Result<Self> {
        let base = cfg.decoder_dim();
        let dims: Vec<usize> = cfg
            .dim_mult
            .last()
            .into_iter()
            .chain(cfg.dim_mult.iter().rev())
            .map(|m| base * m)
            .collect();
        let conv_in =
            CausalConv3d::load(vb.pp("conv_in"), cfg.z_dim, dims[0], (3, 3, 3), 1, (1, 1))?;
        let mid = MidBlock::load(vb.pp("mid_block"), dims[0])?;
        let stages_n = cfg.dim_mult.len();
        let mut stages = Vec::with_capacity(stages_n);
        for i in 0..stages_n {
            let vb_stage = vb.pp("up_blocks").pp(i);
            let mut in_dim = if i > 0 { dims[i] / 2 } else { dims[i] };
            let out_dim = dims[i + 1];
            let mut resnets = Vec::with_capacity(cfg.num_res_blocks + 1);
            for j in 0..=cfg.num_res_blocks {
                resnets.push(ResidualBlock::load(
                    vb_stage.pp("resnets").pp(j),
                    in_dim,
                    out_dim,
                )?);
                in_dim = out_dim;
            }
            let upsampler = if i + 1 != stages_n {
                let time = cfg.temperal_downsample[stages_n - 2 - i];
                Some(Resample::load_up(
                    vb_stage.pp("upsamplers.0"),
                    out_dim,
                    out_dim / 2,
                    time,
                )?)
            } else {
                None
            };
            stages.push(UpStage { resnets, upsampler });
        }
        let out_dim = dims[stages_n];
        Ok(Self {
            conv_in,
            mid,
            stages,
            norm_out: RmsNorm::load(vb.pp("norm_out"), out_dim, 3)?,
            conv_out: CausalConv3d::load(
                vb.pp("conv_out"),
                out_dim,
                cfg.out_channels,
                (3, 3, 3),
                1,
                (1, 1),
            )?,
        })
    }

    fn forward(&self, x: &Tensor, cache: &mut FeatureCache) -> candle_core::Result<Tensor> {
        let x = self.conv_in.forward_cached(x, cache)?;
        let mut x = self.mid.forward(&x, cache)?;
        for stage in &self.stages {
            for resnet in &stage.resnets {
                x = resnet.forward(&x, cache)?;
            }
            if let Some(up) = &stage.upsampler {
                x = up.forward(&x, cache)?;
            }
        }
        let x = self.norm_out.forward_silu(&x)?;
        self.conv_out.forward_cached(&x, cache)
    }
}

/// The Wan-VAE 2.1: `encode` videos to latent means, `decode` latents to videos.
#[derive(Debug, Clone)]
pub struct WanVae {
    cfg: VaeConfig,
    encoder: Encoder,
    decoder: Decoder,
    quant_conv: CausalConv3d,
    post_quant_conv: CausalConv3d,
    /// The dtype `encode`/`decode` return.
    dtype: DType,
    /// The dtype the layers compute in: f32 on the CPU, whose matmul has no half types.
    compute: DType,
    device: Device,
}

impl WanVae {
    /// Builds the model from `vb` in the diffusers key layout, on `vb`'s device. `encode` and
    /// `decode` return `vb`'s dtype; on the CPU the weights are held and the layers computed in
    /// f32 whatever that dtype (candle's CPU matmul has no half types).
    pub fn load(vb: VarBuilder, cfg: &VaeConfig) -> Result<Self> {
        cfg.validate()?;
        let dtype = vb.dtype();
        let vb = if vb.device().is_cpu() {
            vb.set_dtype(DType::F32)
        } else {
            vb
        };
        let z = cfg.z_dim;
        Ok(Self {
            encoder: Encoder::load(vb.pp("encoder"), cfg)?,
            decoder: Decoder::load(vb.pp("decoder"), cfg)?,
            quant_conv: CausalConv3d::load(
                vb.pp("quant_conv"),
                2 * z,
                2 * z,
                (1, 1, 1),
                1,
                (0, 0),
            )?,
            post_quant_conv: CausalConv3d::load(
                vb.pp("post_quant_conv"),
                z,
                z,
                (1, 1, 1),
                1,
                (0, 0),
            )?,
            dtype,
            compute: vb.dtype(),
            device: vb.device().clone(),
            cfg: cfg.clone(),
        })
    }

    /// Loads a VAE from `path`: a diffusers `vae/` folder (`config.json` + weights), a diffusers
    /// safetensors file (with its sibling `config.json` when that is an `AutoencoderKLWan` config,
    /// else the Wan2.1 config), or an official `Wan2.1_VAE.pth` (Wan2.1 config). The key layout is
    /// detected from the tensor names.
    pub fn from_path(path: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let weights = WeightFiles::resolve(path, &["diffusion_pytorch_model", "Wan2.1_VAE"])?;
        let cfg = if path.is_dir() {
            let config = path.join("config.json");
            if config.is_file() {
                VaeConfig::from_json_file(&config)?
            } else {
                VaeConfig::wan21()
            }
        } else {
            sibling_config(path, weights.format())?.unwrap_or_default()
        };
        Self::from_weights(&weights, &cfg, dtype, device)
    }

    /// Loads a VAE with configuration `cfg` from resolved weight files in either key layout.
    pub fn from_weights(
        weights: &WeightFiles,
        cfg: &VaeConfig,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let file = weights.display_path().to_path_buf();
        check_weight_dtypes(weights)?;
        let names = weights.tensor_names()?;
        let layout =
            KeyLayout::detect(&names).ok_or_else(|| Error::UnknownLayout { path: file.clone() })?;
        let vb = weights.var_builder(dtype, device)?;
        let vb = match layout {
            KeyLayout::Diffusers => vb,
            KeyLayout::Official => {
                let res_blocks = cfg.num_res_blocks;
                vb.rename_f(move |name| official_name(name, res_blocks))
            }
        };
        Self::load(vb, cfg).map_err(|e| match e {
            Error::Candle(source) => Error::Load { path: file, source },
            other => other,
        })
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &VaeConfig {
        &self.cfg
    }

    /// The dtype of the tensors `encode`/`decode` return.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Decodes raw (denormalised) latents `[B, z, T, H, W]` to a video `[B, 3, 1 + 4 (T - 1), 8H, 8W]`
    /// in `[-1, 1]`, streaming one latent frame at a time (diffusers `AutoencoderKLWan.decode`).
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        self.decode_with_progress(z, &mut |_, _| {})
    }

    /// [`Self::decode`], calling `progress(done, total)` after each latent frame.
    pub fn decode_with_progress(
        &self,
        z: &Tensor,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Tensor> {
        let (b, c, t, h, w) = self.check_video_like(z, "latents", self.cfg.z_dim)?;
        let s = self.cfg.spatial_factor();
        let frames = self.cfg.decoded_frames(t);
        let out = Tensor::zeros(
            (b, self.cfg.out_channels, frames, h * s, w * s),
            self.compute,
            &self.device,
        )?;
        let z = z
            .to_dtype(self.compute)?
            .to_device(&self.device)?
            .permute((0, 2, 1, 3, 4))?;
        debug_assert_eq!(c, self.cfg.z_dim);
        let mut cache = FeatureCache::new();
        let mut offset = 0;
        for i in 0..t {
            cache.start_chunk();
            let latent = z.narrow(1, i, 1)?.contiguous()?;
            let latent = self.post_quant_conv.forward(&latent, None)?;
            let video = self.decoder.forward(&latent, &mut cache)?;
            let chunk = video
                .clamp(-1f32, 1f32)?
                .permute((0, 2, 1, 3, 4))?
                .contiguous()?;
            let chunk_frames = chunk.dim(2)?;
            if offset + chunk_frames > frames {
                return Err(Error::Input(format!(
                    "decoder produced more than the expected {frames} frames"
                )));
            }
            out.slice_set(&chunk, 2, offset)?;
            offset += chunk_frames;
            progress(i + 1, t);
        }
        Ok(out.to_dtype(self.dtype)?)
    }

    /// Encodes a video `[B, 3, 1 + 4k, H, W]` (values in `[-1, 1]`) to the posterior mean
    /// `[B, z, 1 + k, H/8, W/8]`: the first frame, then chunks of 4 (diffusers
    /// `AutoencoderKLWan.encode(x).latent_dist.mean`).
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, frames, _, _) = self.check_video_like(x, "video", self.cfg.in_channels)?;
        if self.cfg.encoded_frames(frames).is_none() {
            return Err(Error::Input(format!(
                "video has {frames} frames; encoding needs 1 + {}k frames (1, 5, 9, ...)",
                self.cfg.temporal_factor()
            )));
        }
        let x = x
            .to_dtype(self.compute)?
            .to_device(&self.device)?
            .permute((0, 2, 1, 3, 4))?;
        let mut cache = FeatureCache::new();
        let mut means = Vec::new();
        let mut start = 0;
        while start < frames {
            let len = if start == 0 { 1 } else { ENCODE_CHUNK };
            cache.start_chunk();
            let chunk = x.narrow(1, start, len)?.contiguous()?;
            let h = self.encoder.forward(&chunk, &mut cache)?;
            let h = self.quant_conv.forward(&h, None)?;
            means.push(h.narrow(2, 0, self.cfg.z_dim)?);
            start += len;
        }
        Ok(Tensor::cat(&means, 1)?
            .permute((0, 2, 1, 3, 4))?
            .to_dtype(self.dtype)?
            .contiguous()?)
    }

    /// Normalises encoder means for the diffusion model: `(mu - mean) * (1 / std)` per channel.
    pub fn normalize(&self, mu: &Tensor) -> Result<Tensor> {
        let (mean, inv_std) = self.latent_stats(mu)?;
        Ok(mu.broadcast_sub(&mean)?.broadcast_mul(&inv_std)?)
    }

    /// Undoes [`Self::normalize`] before decoding, as diffusers' `WanPipeline` does:
    /// `latents / (1 / std) + mean` per channel.
    pub fn denormalize(&self, latents: &Tensor) -> Result<Tensor> {
        let (mean, inv_std) = self.latent_stats(latents)?;
        Ok(latents.broadcast_div(&inv_std)?.broadcast_add(&mean)?)
    }

    /// `latents_mean` and `1 / latents_std` as `[1, z, 1, 1, 1]` in `x`'s dtype and device.
    fn latent_stats(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        self.check_video_like(x, "latents", self.cfg.z_dim)?;
        let z = self.cfg.z_dim;
        let mean: Vec<f32> = self.cfg.latents_mean.iter().map(|&m| m as f32).collect();
        let inv_std: Vec<f32> = self
            .cfg
            .latents_std
            .iter()
            .map(|&s| 1.0 / s as f32)
            .collect();
        let shape = (1, z, 1, 1, 1);
        let mean = Tensor::from_vec(mean, shape, x.device())?.to_dtype(x.dtype())?;
        let inv_std = Tensor::from_vec(inv_std, shape, x.device())?.to_dtype(x.dtype())?;
        Ok((mean, inv_std))
    }

    /// Checks `x` is `[B, channels, T, H, W]` of a float dtype with no empty dim.
    fn check_video_like(
        &self,
        x: &Tensor,
        what: &str,
        channels: usize,
    ) -> Result<(usize, usize, usize, usize, usize)> {
        let dims = x.dims();
        let [b, c, t, h, w] = dims else {
            return Err(Error::Input(format!(
                "{what} must be [B, C, T, H, W] (5 dims), got shape {:?}",
                dims
            )));
        };
        if *c != channels {
            return Err(Error::Input(format!(
                "{what} have {c} channels (shape {dims:?}), expected {channels}"
            )));
        }
        if dims.contains(&0) {
            return Err(Error::Input(format!(
                "{what} shape {dims:?} has an empty dimension"
            )));
        }
        if !x.dtype().is_float() {
            return Err(Error::Input(format!(
                "{what} have dtype {:?}, expected a float dtype",
                x.dtype()
            )));
        }
        Ok((*b, *c, *t, *h, *w))
    }
}

/// The `config.json` beside a safetensors weight file, when it is an `AutoencoderKLWan` config.
fn sibling_config(file: &Path, format: WeightFormat) -> Result<Option<VaeConfig>> {
    if format != WeightFormat::Safetensors {
        return Ok(None);
    }
    let Some(config) = file.parent().map(|dir| dir.join("config.json")) else {
        return Ok(None);
    };
    if !config.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&config).map_err(|source| Error::ConfigRead {
        path: config.clone(),
        source,
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| Error::ConfigParse {
            path: config.clone(),
            source,
        })?;
    if value.get("_class_name").and_then(|v| v.as_str()) != Some("AutoencoderKLWan") {
        return Ok(None);
    }
    VaeConfig::from_json_file(&config).map(Some)
}

/// Fails on any stored tensor that is not f32, f16 or bf16 (naming the first one).
fn check_weight_dtypes(weights: &WeightFiles) -> Result<()> {
    let ok = |d: DType| matches!(d, DType::F32 | DType::F16 | DType::BF16);
    let load_err = |path: &PathBuf, source| Error::Load {
        path: path.clone(),
        source,
    };
    for file in weights.files() {
        match weights.format() {
            WeightFormat::Safetensors => {
                // SAFETY: the file is mapped read-only and not modified while mapped.
                let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(file) }
                    .map_err(|e| load_err(file, e))?;
                for (key, view) in st.tensors() {
                    let dtype = DType::try_from(view.dtype()).map_err(|e| load_err(file, e))?;
                    if !ok(dtype) {
                        return Err(Error::WeightDType {
                            path: file.clone(),
                            key,
                            dtype,
                        });
                    }
                }
            }
            WeightFormat::Pth => {
                let infos = candle_core::pickle::read_pth_tensor_info(file, false, None)
                    .map_err(|e| load_err(file, e))?;
                for info in infos {
                    if !ok(info.dtype) {
                        return Err(Error::WeightDType {
                            path: file.clone(),
                            key: info.name,
                            dtype: info.dtype,
                        });
                    }
                }
            }
        }
    }
    Ok(())
}
