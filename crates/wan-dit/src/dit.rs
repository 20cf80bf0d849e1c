//! The Wan diffusion transformer: diffusers' `WanTransformer3DModel`, the official `WanModel`.
//!
//! `forward` predicts the flow-matching velocity of a video latent `[B, C, F, H, W]` for a
//! timestep, the umT5 text states and, for the Wan2.1 image-to-video models, CLIP image tokens.
//! Weights are asked for by their diffusers names (official checkpoints are renamed on the fly,
//! see [`crate::layout`]). The timestep path, the modulation tables, the norms and the gated
//! residual sums run in f32 whatever the weight dtype, as in the reference; the linear layers and
//! attention run in the weight dtype (attention scores always in f32).

use std::path::Path;

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;

use crate::config::DitConfig;
use crate::error::{Error, Result};
use crate::layout::{KeyLayout, official_name};
use crate::linear::Linear;
use crate::rope::{self, Rope3d};

/// Rotary base of every Wan release.
const ROPE_THETA: f64 = 10000.0;
/// Epsilon of the image embedder's LayerNorms (PyTorch's default).
const IMAGE_NORM_EPS: f64 = 1e-5;
/// Stems of the weight files in a diffusers `transformer/` or official checkpoint folder.
const WEIGHT_STEMS: &[&str] = &["diffusion_pytorch_model", "model"];

/// LayerNorm over the last dimension, computed in f32; `affine` holds (weight, bias).
#[derive(Debug, Clone)]
struct Norm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl Norm {
    fn plain(dim: usize, eps: f64, device: &Device) -> Result<Self> {
        Ok(Self {
            weight: Tensor::ones(dim, DType::F32, device)?,
            bias: Tensor::zeros(dim, DType::F32, device)?,
            eps: eps as f32,
        })
    }

    fn load(vb: VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        let vb = vb.to_dtype(DType::F32);
        Ok(Self {
            weight: vb.get(dim, "weight")?,
            bias: vb.get(dim, "bias")?,
            eps: eps as f32,
        })
    }

    /// Normalises `x` (any dtype) in f32 and returns f32.
    fn forward_f32(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.to_dtype(DType::F32)?;
        Ok(candle_nn::ops::layer_norm(
            &x,
            &self.weight,
            &self.bias,
            self.eps,
        )?)
    }
}

/// RMSNorm across all heads (`x * rsqrt(mean(x^2) + eps) * w`).
#[derive(Debug, Clone)]
struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    fn load(vb: VarBuilder, dim: usize, eps: f64, dtype: DType) -> Result<Self> {
        Ok(Self {
            weight: vb.to_dtype(dtype).get(dim, "weight")?,
            eps: eps as f32,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::rms_norm(x, &self.weight, self.eps)?)
    }
}

/// `[B, L, heads * head_dim]` -> `[B, heads, L, head_dim]`, contiguous.
fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, l, dim) = x.dims3()?;
    Ok(x.reshape((b, l, heads, dim / heads))?
        .transpose(1, 2)?
        .contiguous()?)
}

/// `[B, heads, L, head_dim]` -> `[B, L, heads * head_dim]`.
fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let (b, h, l, d) = x.dims4()?;
    Ok(x.transpose(1, 2)?.reshape((b, l, h * d))?)
}

/// Self-attention with RMS-normed q/k and 3D rotary embedding (`attn1`).
#[derive(Debug, Clone)]
struct SelfAttention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    norm_q: RmsNorm,
    norm_k: RmsNorm,
    heads: usize,
    scale: f64,
}

impl SelfAttention {
    fn load(vb: VarBuilder, cfg: &DitConfig, dtype: DType) -> Result<Self> {
        let dim = cfg.dim();
        Ok(Self {
            to_q: Linear::load(vb.pp("to_q"), dim, dim, dtype)?,
            to_k: Linear::load(vb.pp("to_k"), dim, dim, dtype)?,
            to_v: Linear::load(vb.pp("to_v"), dim, dim, dtype)?,
            to_out: Linear::load(vb.pp("to_out.0"), dim, dim, dtype)?,
            norm_q: RmsNorm::load(vb.pp("norm_q"), dim, cfg.eps, dtype)?,
            norm_k: RmsNorm::load(vb.pp("norm_k"), dim, cfg.eps, dtype)?,
            heads: cfg.num_attention_heads,
            scale: 1.0 / (cfg.attention_head_dim as f64).sqrt(),
        })
    }

    fn forward(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let q = split_heads(&self.norm_q.forward(&self.to_q.forward(x)?)?, self.heads)?;
        let k = split_heads(&self.norm_k.forward(&self.to_k.forward(x)?)?, self.heads)?;
        let v = split_heads(&self.to_v.forward(x)?, self.heads)?;
        let q = rope::apply(&q, cos, sin)?;
        let k = rope::apply(&k, cos, sin)?;
        let o = wan_core::attention::attention(&q, &k, &v, self.scale)?;
        self.to_out.forward(&merge_heads(&o)?)
    }
}

/// Image keys/values of the Wan2.1 image-to-video cross-attention.
#[derive(Debug, Clone)]
struct ImageKv {
    add_k_proj: Linear,
    add_v_proj: Linear,
    norm_added_k: RmsNorm,
}

/// Cross-attention to the text (and image) context (`attn2`).
#[derive(Debug, Clone)]
struct CrossAttention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    norm_q: RmsNorm,
    norm_k: RmsNorm,
    image: Option<ImageKv>,
    heads: usize,
    scale: f64,
}

impl CrossAttention {
    fn load(vb: VarBuilder, cfg: &DitConfig, dtype: DType) -> Result<Self> {
        let dim = cfg.dim();
        let image = match cfg.added_kv_proj_dim {
            Some(kv) => Some(ImageKv {
                add_k_proj: Linear::load(vb.pp("add_k_proj"), kv, dim, dtype)?,
                add_v_proj: Linear::load(vb.pp("add_v_proj"), kv, dim, dtype)?,
                norm_added_k: RmsNorm::load(vb.pp("norm_added_k"), dim, cfg.eps, dtype)?,
            }),
            None => None,
        };
        Ok(Self {
            to_q: Linear::load(vb.pp("to_q"), dim, dim, dtype)?,
            to_k: Linear::load(vb.pp("to_k"), dim, dim, dtype)?,
            to_v: Linear::load(vb.pp("to_v"), dim, dim, dtype)?,
            to_out: Linear::load(vb.pp("to_out.0"), dim, dim, dtype)?,
            norm_q: RmsNorm::load(vb.pp("norm_q"), dim, cfg.eps, dtype)?,
            norm_k: RmsNorm::load(vb.pp("norm_k"), dim, cfg.eps, dtype)?,
            image,
            heads: cfg.num_attention_heads,
            scale: 1.0 / (cfg.attention_head_dim as f64).sqrt(),
        })
    }

    fn forward(&self, x: &Tensor, text: &Tensor, image: Option<&Tensor>) -> Result<Tensor> {
        let q = split_heads(&self.norm_q.forward(&self.to_q.forward(x)?)?, self.heads)?;
        let k = split_heads(&self.norm_k.forward(&self.to_k.forward(text)?)?, self.heads)?;
        let v = split_heads(&self.to_v.forward(text)?, self.heads)?;
        let mut o = wan_core::attention::attention(&q, &k, &v, self.scale)?;
        if let (Some(kv), Some(image)) = (&self.image, image) {
            let k = kv.norm_added_k.forward(&kv.add_k_proj.forward(image)?)?;
            let k = split_heads(&k, self.heads)?;
            let v = split_heads(&kv.add_v_proj.forward(image)?, self.heads)?;
            o = (o + wan_core::attention::attention(&q, &k, &v, self.scale)?)?;
        }
        self.to_out.forward(&merge_heads(&o)?)
    }
}

/// Linear, GELU (tanh approximation), Linear.
#[derive(Debug, Clone)]
struct FeedForward {
    up: Linear,
    down: Linear,
}

impl FeedForward {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.down
            .forward(&wan_core::gelu_tanh(&self.up.forward(x)?)?)
    }
}

/// The six per-block modulation vectors, each `[B, 1 or L, dim]` f32.
struct Modulation {
    shift: Tensor,
    scale1: Tensor,
    gate: Tensor,
    c_shift: Tensor,
    c_scale1: Tensor,
    c_gate: Tensor,
}

/// One transformer block.
#[derive(Debug, Clone)]
struct Block {
    norm1: Norm,
    attn1: SelfAttention,
    norm2: Option<Norm>,
    attn2: CrossAttention,
    norm3: Norm,
    ffn: FeedForward,
    /// `[1, 6, dim]` f32, added to the timestep projection.
    scale_shift_table: Tensor,
}

impl Block {
    fn load(vb: VarBuilder, cfg: &DitConfig, dtype: DType) -> Result<Self> {
        let dim = cfg.dim();
        let device = vb.device().clone();
        Ok(Self {
            norm1: Norm::plain(dim, cfg.eps, &device)?,
            attn1: SelfAttention::load(vb.pp("attn1"), cfg, dtype)?,
            norm2: if cfg.cross_attn_norm {
                Some(Norm::load(vb.pp("norm2"), dim, cfg.eps)?)
            } else {
                None
            },
            attn2: CrossAttention::load(vb.pp("attn2"), cfg, dtype)?,
            norm3: Norm::plain(dim, cfg.eps, &device)?,
            ffn: FeedForward {
                up: Linear::load(vb.pp("ffn.net.0.proj"), dim, cfg.ffn_dim, dtype)?,
                down: Linear::load(vb.pp("ffn.net.2"), cfg.ffn_dim, dim, dtype)?,
            },
            scale_shift_table: vb
                .to_dtype(DType::F32)
                .get((1, 6, dim), "scale_shift_table")?,
        })
    }

    /// `temb_proj: [B, T, 6, dim]` f32 with T = 1 or L.
    fn modulation(&self, temb_proj: &Tensor) -> Result<Modulation> {
        let m = temb_proj.broadcast_add(&self.scale_shift_table)?;
        let part = |i: usize| -> Result<Tensor> { Ok(m.i((.., .., i, ..))?.contiguous()?) };
        Ok(Modulation {
            shift: part(0)?,
            scale1: (part(1)? + 1.0)?,
            gate: part(2)?,
            c_shift: part(3)?,
            c_scale1: (part(4)? + 1.0)?,
            c_gate: part(5)?,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        text: &Tensor,
        image: Option<&Tensor>,
        temb_proj: &Tensor,
        rope: (&Tensor, &Tensor),
    ) -> Result<Tensor> {
        let dtype = x.dtype();
        let m = self.modulation(temb_proj)?;
        let modulate =
            |norm: &Norm, x: &Tensor, scale1: &Tensor, shift: &Tensor| -> Result<Tensor> {
                Ok(norm
                    .forward_f32(x)?
                    .broadcast_mul(scale1)?
                    .broadcast_add(shift)?
                    .to_dtype(dtype)?)
            };
        let gated = |x: &Tensor, y: &Tensor, gate: &Tensor| -> Result<Tensor> {
            let y = y.to_dtype(DType::F32)?.broadcast_mul(gate)?;
            Ok((x.to_dtype(DType::F32)? + y)?.to_dtype(dtype)?)
        };

        let h = modulate(&self.norm1, x, &m.scale1, &m.shift)?;
        let x = gated(x, &self.attn1.forward(&h, rope.0, rope.1)?, &m.gate)?;

        let h = match &self.norm2 {
            Some(norm) => norm.forward_f32(&x)?.to_dtype(dtype)?,
            None => x.clone(),
        };
        let x = (&x + self.attn2.forward(&h, text, image)?)?;

        let h = modulate(&self.norm3, &x, &m.c_scale1, &m.c_shift)?;
        gated(&x, &self.ffn.forward(&h)?, &m.c_gate)
    }
}

/// CLIP image tokens -> model width (Wan2.1 image-to-video, first-last-frame).
#[derive(Debug, Clone)]
struct ImageEmbedder {
    norm1: Norm,
    up: Linear,
    down: Linear,
    norm2: Norm,
    /// `[1, S, image_dim]`, first-last-frame models only.
    pos_embed: Option<Tensor>,
}

impl ImageEmbedder {
    fn load(vb: VarBuilder, cfg: &DitConfig, image_dim: usize, dtype: DType) -> Result<Self> {
        let dim = cfg.dim();
        let pos_embed = match cfg.pos_embed_seq_len {
            Some(len) => Some(
                vb.to_dtype(DType::F32)
                    .get((1, len, image_dim), "pos_embed")?,
            ),
            None => None,
        };
        Ok(Self {
            norm1: Norm::load(vb.pp("norm1"), image_dim, IMAGE_NORM_EPS)?,
            up: Linear::load(vb.pp("ff.net.0.proj"), image_dim, image_dim, dtype)?,
            down: Linear::load(vb.pp("ff.net.2"), image_dim, dim, dtype)?,
            norm2: Norm::load(vb.pp("norm2"), dim, IMAGE_NORM_EPS)?,
            pos_embed,
        })
    }

    fn forward(&self, image: &Tensor, dtype: DType) -> Result<Tensor> {
        let mut x = image.to_dtype(DType::F32)?;
        if let Some(pos) = &self.pos_embed {
            x = x.broadcast_add(pos)?;
        }
        let h = self.norm1.forward_f32(&x)?.to_dtype(dtype)?;
        let h = self.down.forward(&self.up.forward(&h)?.gelu_erf()?)?;
        Ok(self.norm2.forward_f32(&h)?.to_dtype(dtype)?)
    }
}

/// The sinusoidal timestep embedding `[cos(t w_i), sin(t w_i)]`, `w_i = 10000^(-i / half)`, in
/// f32 arithmetic as diffusers' `Timesteps(flip_sin_to_cos=True, downscale_freq_shift=0)`.
fn timestep_sinusoid(t: &[f32], dim: usize, device: &Device) -> Result<Tensor> {
    let half = dim / 2;
    let log_period = -(10000f64.ln() as f32);
    let freqs: Vec<f32> = (0..half)
        .map(|i| (log_period * i as f32 / half as f32).exp())
        .collect();
    let mut out = Vec::with_capacity(t.len() * dim);
    for &ti in t {
        let args: Vec<f32> = freqs.iter().map(|&f| ti * f).collect();
        out.extend(args.iter().map(|&a| (a as f64).cos() as f32));
        out.extend(args.iter().map(|&a| (a as f64).sin() as f32));
    }
    Ok(Tensor::from_vec(out, (t.len(), dim), device)?)
}

/// The Wan diffusion transformer.
#[derive(Debug, Clone)]
pub struct WanTransformer {
    cfg: DitConfig,
    dtype: DType,
    patch_embedding: Linear,
    time_linear_1: Linear,
    time_linear_2: Linear,
    time_proj: Linear,
    text_linear_1: Linear,
    text_linear_2: Linear,
    image_embedder: Option<ImageEmbedder>,
    blocks: Vec<Block>,
    norm_out: Norm,
    proj_out: Linear,
    /// `[1, 2, dim]` f32: the output head's (shift, scale) table.
    scale_shift_table: Tensor,
    rope: Rope3d,
}

impl WanTransformer {
    /// Builds the model from diffusers-named weights; linear layers take `vb`'s dtype, the
    /// timestep path, modulation tables and norms are kept in f32.
    pub fn load(vb: VarBuilder, cfg: &DitConfig) -> Result<Self> {
        cfg.validate()?;
        let dtype = vb.dtype();
        let dim = cfg.dim();
        let [pt, ph, pw] = cfg.patch_size;
        let patch_in = cfg.in_channels * pt * ph * pw;
        let patch_w = vb
            .to_dtype(dtype)
            .get((dim, cfg.in_channels, pt, ph, pw), "patch_embedding.weight")?;
        let patch_b = vb.to_dtype(dtype).get(dim, "patch_embedding.bias")?;
        let patch_embedding = Linear::from_weights(&patch_w.reshape((dim, patch_in))?, patch_b)?;
        let ce = vb.pp("condition_embedder");
        let image_embedder = match cfg.image_dim {
            Some(image_dim) => Some(ImageEmbedder::load(
                ce.pp("image_embedder"),
                cfg,
                image_dim,
                dtype,
            )?),
            None => None,
        };
        let blocks = (0..cfg.num_layers)
            .map(|i| Block::load(vb.pp("blocks").pp(i), cfg, dtype))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            dtype,
            patch_embedding,
            time_linear_1: Linear::load(
                ce.pp("time_embedder.linear_1"),
                cfg.freq_dim,
                dim,
                DType::F32,
            )?,
            time_linear_2: Linear::load(ce.pp("time_embedder.linear_2"), dim, dim, DType::F32)?,
            time_proj: Linear::load(ce.pp("time_proj"), dim, 6 * dim, DType::F32)?,
            text_linear_1: Linear::load(ce.pp("text_embedder.linear_1"), cfg.text_dim, dim, dtype)?,
            text_linear_2: Linear::load(ce.pp("text_embedder.linear_2"), dim, dim, dtype)?,
            image_embedder,
            blocks,
            norm_out: Norm::plain(dim, cfg.eps, vb.device())?,
            proj_out: Linear::load(
                vb.pp("proj_out"),
                dim,
                cfg.out_channels * pt * ph * pw,
                dtype,
            )?,
            scale_shift_table: vb
                .to_dtype(DType::F32)
                .get((1, 2, dim), "scale_shift_table")?,
            rope: Rope3d::new(cfg.attention_head_dim, cfg.rope_max_seq_len, ROPE_THETA),
        })
    }

    /// Loads a diffusers `transformer/` folder or an official checkpoint folder (`config.json` plus
    /// single or sharded safetensors), detecting the key layout from the tensor names.
    ///
    /// Weights are converted to `dtype` (f32, bf16 or f16) as they are read from the memory map.
    pub fn from_path(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        if !matches!(dtype, DType::F32 | DType::BF16 | DType::F16) {
            return Err(Error::Unsupported(format!(
                "weight dtype {dtype:?}: use f32, bf16 or f16"
            )));
        }
        let mut cfg = DitConfig::from_json_file(&dir.join("config.json"))?;
        let files = wan_core::WeightFiles::resolve(dir, WEIGHT_STEMS)?;
        let names = files.tensor_names()?;
        let path = files.display_path().to_path_buf();
        let layout = KeyLayout::detect(&names).ok_or_else(|| Error::Load {
            path: path.clone(),
            source: candle_core::Error::Msg(
                "neither diffusers (condition_embedder.*) nor official (time_embedding.*) transformer keys"
                    .to_string(),
            ),
        })?;
        let vb = files.var_builder(dtype, device)?;
        let vb = match layout {
            KeyLayout::Diffusers => vb,
            KeyLayout::Official => {
                // Official Wan2.2 image-to-video configs say "i2v" but the model has no CLIP input.
                if cfg.has_image_input() && !names.contains("img_emb.proj.0.weight") {
                    cfg = cfg.without_image_input();
                }
                vb.rename_f(|name: &str| official_name(name))
            }
        };
        Self::load(vb, &cfg).map_err(|e| match e {
            Error::Candle(source) => Error::Load { path, source },
            other => other,
        })
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &DitConfig {
        &self.cfg
    }

    /// The dtype of the linear layers (and of the activations between them).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Predicts the flow-matching velocity.
    ///
    /// - `latents`: `[B, in_channels, F, H, W]`, `F, H, W` divisible by the patch size;
    /// - `timestep`: `[B]` f32, or `[B, L]` with one timestep per patch token (Wan2.2 TI2V);
    /// - `text`: `[B, L_text, text_dim]` umT5 states (512 rows in the releases, unmasked);
    /// - `image`: `[B, 257, image_dim]` CLIP tokens for the image-to-video models
    ///   (`[B, 514, image_dim]`, first then last frame, for first-last-frame models), else `None`.
    ///
    /// Returns `[B, out_channels, F, H, W]` in f32.
    pub fn forward(
        &self,
        latents: &Tensor,
        timestep: &Tensor,
        text: &Tensor,
        image: Option<&Tensor>,
    ) -> Result<Tensor> {
        let cfg = &self.cfg;
        let [pt, ph, pw] = cfg.patch_size;
        let (b, c, f, h, w) = latents.dims5().map_err(|_| self.latents_error(latents))?;
        if c != cfg.in_channels
            || f % pt != 0
            || h % ph != 0
            || w % pw != 0
            || f == 0
            || h == 0
            || w == 0
        {
            return Err(self.latents_error(latents));
        }
        let grid = (f / pt, h / ph, w / pw);
        let tokens = grid.0 * grid.1 * grid.2;
        let per_token = match timestep.dims() {
            [tb] if *tb == b => false,
            [tb, tl] if *tb == b && *tl == tokens => true,
            got => {
                return Err(Error::Input {
                    input: "timestep",
                    expected: format!("[{b}] or [{b}, {tokens}] (one per patch token)"),
                    got: got.to_vec(),
                });
            }
        };
        match text.dims() {
            [tb, tl, td] if *tb == b && *tl > 0 && *td == cfg.text_dim => {}
            got => {
                return Err(Error::Input {
                    input: "text",
                    expected: format!(
                        "[{b}, L, {}] (text encoder width {})",
                        cfg.text_dim, cfg.text_dim
                    ),
                    got: got.to_vec(),
                });
            }
        }
        let image = self.check_image(image, b)?;

        let dtype = self.dtype;
        let device = latents.device();

        // Patch embedding: a Conv3d with kernel = stride = patch is a matmul over patches.
        let x = latents
            .to_dtype(dtype)?
            .reshape(vec![b, c, grid.0, pt, grid.1, ph, grid.2, pw])?
            .permute(vec![0, 2, 4, 6, 1, 3, 5, 7])?
            .reshape((b, tokens, c * pt * ph * pw))?;
        let mut x = self.patch_embedding.forward(&x)?;

        // Timestep path in f32: temb [B, T, dim], temb_proj [B, T, 6, dim], T = 1 or tokens.
        let t = timestep
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let sinusoid = timestep_sinusoid(&t, cfg.freq_dim, device)?;
        let temb = self
            .time_linear_2
            .forward(&self.time_linear_1.forward(&sinusoid)?.silu()?)?;
        let temb_proj = self.time_proj.forward(&temb.silu()?)?;
        let steps = if per_token { tokens } else { 1 };
        let dim = cfg.dim();
        let temb = temb.reshape((b, steps, dim))?;
        let temb_proj = temb_proj.reshape((b, steps, 6, dim))?;

        let text = self.text_linear_2.forward(&wan_core::gelu_tanh(
            &self.text_linear_1.forward(&text.to_dtype(dtype)?)?,
        )?)?;
        let image = match (&self.image_embedder, image) {
            (Some(embedder), Some(image)) => Some(embedder.forward(image, dtype)?),
            _ => None,
        };

        let (cos, sin) = self.rope.tables(grid, dtype, device)?;
        for block in &self.blocks {
            x = block.forward(&x, &text, image.as_ref(), &temb_proj, (&cos, &sin))?;
        }

        // Output head: (shift, scale) = table + temb.
        let m = temb.unsqueeze(2)?.broadcast_add(&self.scale_shift_table)?;
        let shift = m.i((.., .., 0, ..))?.contiguous()?;
        let scale1 = (m.i((.., .., 1, ..))?.contiguous()? + 1.0)?;
        let x = self
            .norm_out
            .forward_f32(&x)?
            .broadcast_mul(&scale1)?
            .broadcast_add(&shift)?
            .to_dtype(dtype)?;
        let x = self.proj_out.forward(&x)?;

        // Unpatchify: token (f, h, w) holds (pt, ph, pw, c) with c fastest.
        let out = cfg.out_channels;
        Ok(x.reshape(vec![b, grid.0, grid.1, grid.2, pt, ph, pw, out])?
            .permute(vec![0, 7, 1, 4, 2, 5, 3, 6])?
            .reshape((b, out, f, h, w))?
            .to_dtype(DType::F32)?)
    }

    fn latents_error(&self, latents: &Tensor) -> Error {
        let [pt, ph, pw] = self.cfg.patch_size;
        Error::Input {
            input: "latents",
            expected: format!(
                "[B, {}, F, H, W] with F divisible by {pt}, H by {ph}, W by {pw} (non-zero)",
                self.cfg.in_channels
            ),
            got: latents.dims().to_vec(),
        }
    }

    fn check_image<'a>(&self, image: Option<&'a Tensor>, b: usize) -> Result<Option<&'a Tensor>> {
        let cfg = &self.cfg;
        match (cfg.image_dim, image) {
            (None, None) => Ok(None),
            (None, Some(img)) => Err(Error::Input {
                input: "image",
                expected: "no image tokens (this model has no image keys/values)".to_string(),
                got: img.dims().to_vec(),
            }),
            (Some(id), None) => Err(Error::Input {
                input: "image",
                expected: format!("[{b}, S, {id}] CLIP image tokens (image-to-video model)"),
                got: vec![],
            }),
            (Some(id), Some(img)) => {
                let ok = match img.dims() {
                    [ib, is, idim] => {
                        *ib == b
                            && *idim == id
                            && *is > 0
                            && cfg.pos_embed_seq_len.is_none_or(|n| n == *is)
                    }
                    _ => false,
                };
                if ok {
                    Ok(Some(img))
                } else {
                    let len = cfg
                        .pos_embed_seq_len
                        .map_or("S".to_string(), |n| n.to_string());
                    Err(Error::Input {
                        input: "image",
                        expected: format!("[{b}, {len}, {id}]"),
                        got: img.dims().to_vec(),
                    })
                }
            }
        }
    }
}
