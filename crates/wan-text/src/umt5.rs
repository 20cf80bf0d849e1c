//! The umT5 encoder (transformers `UMT5EncoderModel`, the text encoder of every Wan model).
//!
//! Unlike T5, every layer has its own relative position bias (32 bidirectional buckets, max distance 128). Pre-norm
//! blocks with T5 RMS norm, unscaled attention (the bias stands in for the 1/sqrt(d) factor), padded keys masked
//! with the most negative float, softmax in f32, gated-GELU (tanh) feed-forward, final RMS norm.
//!
//! Precision follows transformers 5 with half-precision weights: everything runs in the weights' dtype except the
//! RMS statistics and the attention (scores, bias, softmax and the weighted sum in f32, rounded once, as torch's
//! CPU sdpa does), with `gelu_new` rounded op by op as torch rounds it. With f16 weights transformers keeps the
//! feed-forward output projection `wo` in f32, which makes the residual stream f32 from the first block on; so
//! does this model.

use std::path::Path;

use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use serde::Deserialize;

use crate::error::{Error, Result};

/// Hyper-parameters of a umT5 encoder, as in transformers' `config.json` (`UMT5Config`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UMT5Config {
    /// Vocabulary size (rows of the token embedding).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Width of one attention head.
    pub d_kv: usize,
    /// Width of the feed-forward hidden layer.
    pub d_ff: usize,
    /// Number of encoder blocks.
    pub num_layers: usize,
    /// Number of attention heads.
    pub num_heads: usize,
    /// Number of relative position buckets (both directions together).
    #[serde(default = "default_num_buckets")]
    pub relative_attention_num_buckets: usize,
    /// Relative distance from which all positions share the last bucket.
    #[serde(default = "default_max_distance")]
    pub relative_attention_max_distance: usize,
    /// RMS norm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    /// Feed-forward kind; only `gated-gelu` (umT5's) is supported.
    #[serde(default = "default_feed_forward")]
    pub feed_forward_proj: String,
}

fn default_num_buckets() -> usize {
    32
}

fn default_max_distance() -> usize {
    128
}

fn default_eps() -> f64 {
    1e-6
}

fn default_feed_forward() -> String {
    "gated-gelu".to_string()
}

impl UMT5Config {
    /// umT5-XXL, the text encoder of Wan 2.1 and 2.2.
    pub fn umt5_xxl() -> Self {
        Self {
            vocab_size: 256_384,
            d_model: 4096,
            d_kv: 64,
            d_ff: 10_240,
            num_layers: 24,
            num_heads: 64,
            relative_attention_num_buckets: 32,
            relative_attention_max_distance: 128,
            layer_norm_epsilon: 1e-6,
            feed_forward_proj: default_feed_forward(),
        }
    }

    /// Reads a transformers `config.json` and checks it describes a supported encoder.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |reason: String| Error::BadConfig {
            path: path.to_path_buf(),
            reason,
        };
        let config: Self = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        config.validate().map_err(bad)?;
        Ok(config)
    }

    /// Checks the hyper-parameters are usable; the message names the offending field and its allowed range.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.feed_forward_proj != "gated-gelu" {
            return Err(format!(
                "feed_forward_proj {:?} is not supported (umT5 uses \"gated-gelu\")",
                self.feed_forward_proj
            ));
        }
        for (name, value) in [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("d_kv", self.d_kv),
            ("d_ff", self.d_ff),
            ("num_heads", self.num_heads),
            (
                "relative_attention_max_distance",
                self.relative_attention_max_distance,
            ),
        ] {
            if value == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        let buckets = self.relative_attention_num_buckets;
        if buckets < 4 || !buckets.is_multiple_of(2) {
            return Err(format!(
                "relative_attention_num_buckets must be even and at least 4, got {buckets}"
            ));
        }
        if self.layer_norm_epsilon.is_nan() || self.layer_norm_epsilon <= 0.0 {
            return Err(format!(
                "layer_norm_epsilon must be positive, got {}",
                self.layer_norm_epsilon
            ));
        }
        Ok(())
    }
}

/// The relative position bucket of an encoder (bidirectional) attention, as transformers'
/// `UMT5Attention._relative_position_bucket`: half the buckets per direction, exact buckets up to a quarter of
/// them, then logarithmic bins up to `max_distance`. The logarithm is taken in f32, as torch does.
pub fn relative_position_bucket(
    relative_position: i64,
    num_buckets: usize,
    max_distance: usize,
) -> u32 {
    let per_direction = (num_buckets / 2) as i64;
    let offset = if relative_position > 0 {
        per_direction
    } else {
        0
    };
    let distance = relative_position.abs();
    let max_exact = per_direction / 2;
    if distance < max_exact {
        return (offset + distance) as u32;
    }
    let log_ratio = ((distance as f32) / (max_exact as f32)).ln()
        / ((max_distance as f64 / max_exact as f64).ln() as f32)
        * ((per_direction - max_exact) as f32);
    let large = (max_exact + log_ratio as i64).min(per_direction - 1);
    (offset + large) as u32
}

/// T5 RMS norm: `w * x / sqrt(mean(x^2) + eps)`, statistics in f32, cast to a half-precision weight's dtype.
#[derive(Debug, Clone)]
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn load(vb: VarBuilder, size: usize, eps: f64) -> candle_core::Result<Self> {
        Ok(Self {
            weight: vb.get(size, "weight")?,
            eps,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = x.to_dtype(DType::F32)?;
        let variance = x.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = x.broadcast_mul(&(variance + self.eps)?.sqrt()?.recip()?)?;
        normed
            .to_dtype(self.weight.dtype())?
            .broadcast_mul(&self.weight)
    }
}

/// Self-attention with this layer's own relative position bias.
#[derive(Debug, Clone)]
struct SelfAttention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    relative_attention_bias: Tensor,
    num_heads: usize,
    d_kv: usize,
}

impl SelfAttention {
    fn load(vb: VarBuilder, cfg: &UMT5Config) -> candle_core::Result<Self> {
        let inner = cfg.num_heads * cfg.d_kv;
        let linear = |name: &str, out: usize, inp: usize| -> candle_core::Result<Linear> {
            Ok(Linear::new(
                vb.get((out, inp), &format!("{name}.weight"))?,
                None,
            ))
        };
        Ok(Self {
            q: linear("q", inner, cfg.d_model)?,
            k: linear("k", inner, cfg.d_model)?,
            v: linear("v", inner, cfg.d_model)?,
            o: linear("o", cfg.d_model, inner)?,
            relative_attention_bias: vb.get(
                (cfg.relative_attention_num_buckets, cfg.num_heads),
                "relative_attention_bias.weight",
            )?,
            num_heads: cfg.num_heads,
            d_kv: cfg.d_kv,
        })
    }

    /// `x`: `[B, L, d_model]`; `buckets`: `[L*L]` u32; `mask`: additive `[B, 1, 1, L]` f32.
    fn forward(&self, x: &Tensor, buckets: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        let heads = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((b, l, self.num_heads, self.d_kv))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = heads(self.q.forward(x)?)?;
        let k = heads(self.k.forward(x)?)?;
        let v = heads(self.v.forward(x)?)?;
        let bias = self
            .relative_attention_bias
            .index_select(buckets, 0)?
            .reshape((l, l, self.num_heads))?
            .permute((2, 0, 1))?
            .to_dtype(DType::F32)?
            .unsqueeze(0)?;
        // The whole attention in f32, rounded once at the end (as torch's CPU sdpa does for half precision).
        let scores = q
            .to_dtype(DType::F32)?
            .matmul(&k.to_dtype(DType::F32)?.t()?)?;
        let scores = scores.broadcast_add(&bias)?.broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs
            .matmul(&v.to_dtype(DType::F32)?)?
            .to_dtype(v.dtype())?
            .transpose(1, 2)?
            .reshape((b, l, self.num_heads * self.d_kv))?;
        self.o.forward(&out)
    }
}

/// Gated-GELU feed-forward: `wo(gelu_new(wi_0 x) * wi_1 x)`; with f16 weights `wo` is held and run in f32
/// (transformers' `_keep_in_fp32_modules = ["wo"]`, which it applies to f16 only).
#[derive(Debug, Clone)]
struct FeedForward {
    wi_0: Linear,
    wi_1: Linear,
    wo: Tensor,
}

impl FeedForward {
    fn load(vb: VarBuilder, cfg: &UMT5Config) -> candle_core::Result<Self> {
        Ok(Self {
            wi_0: Linear::new(vb.get((cfg.d_ff, cfg.d_model), "wi_0.weight")?, None),
            wi_1: Linear::new(vb.get((cfg.d_ff, cfg.d_model), "wi_1.weight")?, None),
            wo: match vb.dtype() {
                DType::F16 => vb.to_dtype(DType::F32),
                _ => vb,
            }
            .get((cfg.d_model, cfg.d_ff), "wo.weight")?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let gated = (gelu_new(&self.wi_0.forward(x)?)? * self.wi_1.forward(x)?)?;
        gated
            .to_dtype(self.wo.dtype())?
            .broadcast_matmul(&self.wo.t()?)
    }
}

/// transformers' `gelu_new` (`NewGELUActivation`, the tanh approximation written out op by op), rounded to the
/// input's dtype after every op as torch does on half-precision tensors (exact f32 arithmetic otherwise).
fn gelu_new(x: &Tensor) -> candle_core::Result<Tensor> {
    let dtype = x.dtype();
    let round = |t: Tensor| -> candle_core::Result<Tensor> {
        if dtype == DType::F32 {
            Ok(t)
        } else {
            t.to_dtype(dtype)?.to_dtype(DType::F32)
        }
    };
    let x = x.to_dtype(DType::F32)?;
    let cube = round((x.sqr()? * &x)?)?;
    let inner = round((&x + round((cube * 0.044715)?)?)?)?;
    let tanh = round(round((inner * (2.0 / std::f64::consts::PI).sqrt())?)?.tanh()?)?;
    let half = round((&x * 0.5)?)?;
    round((half * round((tanh + 1.0)?)?)?)?.to_dtype(dtype)
}

/// One encoder block: attention sublayer, then feed-forward sublayer, each pre-normed with a residual.
#[derive(Debug, Clone)]
struct Block {
    attn_norm: RmsNorm,
    attn: SelfAttention,
    ff_norm: RmsNorm,
    ff: FeedForward,
}

impl Block {
    fn load(vb: VarBuilder, cfg: &UMT5Config) -> candle_core::Result<Self> {
        let eps = cfg.layer_norm_epsilon;
        Ok(Self {
            attn_norm: RmsNorm::load(vb.pp("layer.0.layer_norm"), cfg.d_model, eps)?,
            attn: SelfAttention::load(vb.pp("layer.0.SelfAttention"), cfg)?,
            ff_norm: RmsNorm::load(vb.pp("layer.1.layer_norm"), cfg.d_model, eps)?,
            ff: FeedForward::load(vb.pp("layer.1.DenseReluDense"), cfg)?,
        })
    }

    fn forward(&self, x: &Tensor, buckets: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let x = residual(
            x,
            &self
                .attn
                .forward(&self.attn_norm.forward(x)?, buckets, mask)?,
        )?;
        residual(&x, &self.ff.forward(&self.ff_norm.forward(&x)?)?)
    }
}

/// `a + b`, promoted to f32 when the dtypes differ (as torch promotes bf16 + f32).
fn residual(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    if a.dtype() == b.dtype() {
        a + b
    } else {
        a.to_dtype(DType::F32)? + b.to_dtype(DType::F32)?
    }
}

/// The umT5 encoder stack.
#[derive(Debug, Clone)]
pub struct UMT5Encoder {
    embed_tokens: Tensor,
    blocks: Vec<Block>,
    final_layer_norm: RmsNorm,
    config: UMT5Config,
}

impl UMT5Encoder {
    /// Loads the encoder from a [`VarBuilder`] over transformers names (`shared.weight`, falling back to
    /// `encoder.embed_tokens.weight`; `encoder.block.N...`; `encoder.final_layer_norm.weight`).
    pub fn load(vb: VarBuilder, cfg: &UMT5Config) -> candle_core::Result<Self> {
        let embed_name = if vb.contains_tensor("shared.weight") {
            "shared.weight"
        } else {
            "encoder.embed_tokens.weight"
        };
        let embed_tokens = vb.get((cfg.vocab_size, cfg.d_model), embed_name)?;
        let blocks = (0..cfg.num_layers)
            .map(|i| Block::load(vb.pp(format!("encoder.block.{i}")), cfg))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let final_layer_norm = RmsNorm::load(
            vb.pp("encoder.final_layer_norm"),
            cfg.d_model,
            cfg.layer_norm_epsilon,
        )?;
        Ok(Self {
            embed_tokens,
            blocks,
            final_layer_norm,
            config: cfg.clone(),
        })
    }

    /// The encoder's hyper-parameters.
    pub fn config(&self) -> &UMT5Config {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        self.embed_tokens.device()
    }

    /// Encodes `input_ids` (`[B, L]`, u32) with `attention_mask` (`[B, L]`, nonzero on real tokens; keys where
    /// it is zero are masked out) into `last_hidden_state` `[B, L, d_model]`, in the weights' dtype.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (b, l) = input_ids.dims2()?;
        if attention_mask.dims() != [b, l] {
            candle_core::bail!(
                "attention_mask shape {:?} does not match input_ids shape [{b}, {l}]",
                attention_mask.dims()
            );
        }
        let device = input_ids.device();
        let buckets: Vec<u32> = (0..l as i64)
            .flat_map(|query| {
                (0..l as i64).map(move |key| {
                    relative_position_bucket(
                        key - query,
                        self.config.relative_attention_num_buckets,
                        self.config.relative_attention_max_distance,
                    )
                })
            })
            .collect();
        let buckets = Tensor::from_vec(buckets, l * l, device)?;
        let keep = attention_mask
            .to_dtype(DType::F32)?
            .ne(0f64)?
            .to_dtype(DType::F32)?;
        // 0 where attended, f32::MIN where masked.
        let mask = ((keep - 1.0)? * f64::from(f32::MAX))?.reshape((b, 1, 1, l))?;
        let mut x = self
            .embed_tokens
            .embedding(&input_ids.flatten_all()?)?
            .reshape((b, l, self.config.d_model))?;
        for block in &self.blocks {
            x = block.forward(&x, &buckets, &mask)?;
        }
        self.final_layer_norm.forward(&x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/text")
    }

    /// Reference: transformers 5.23.0 `UMT5Attention._relative_position_bucket` for relative positions
    /// -300..=300 (32 buckets, max distance 128). Exact.
    #[test]
    fn buckets_match_transformers() {
        #[derive(Deserialize)]
        struct Buckets {
            relative_positions_from: i64,
            buckets: Vec<u32>,
        }
        let text =
            std::fs::read_to_string(fixtures().join("buckets.json")).expect("read buckets.json");
        let reference: Buckets = serde_json::from_str(&text).expect("parse buckets.json");
        for (i, &want) in reference.buckets.iter().enumerate() {
            let rel = reference.relative_positions_from + i as i64;
            assert_eq!(
                relative_position_bucket(rel, 32, 128),
                want,
                "relative position {rel}"
            );
        }
    }

    #[test]
    fn config_validation_names_the_field() {
        let mut cfg = UMT5Config::umt5_xxl();
        assert!(cfg.validate().is_ok());
        cfg.feed_forward_proj = "relu".into();
        assert!(cfg.validate().unwrap_err().contains("feed_forward_proj"));
        let mut cfg = UMT5Config::umt5_xxl();
        cfg.relative_attention_num_buckets = 3;
        assert!(
            cfg.validate()
                .unwrap_err()
                .contains("relative_attention_num_buckets")
        );
    }

    #[test]
    fn reads_the_fixture_config() {
        let cfg =
            UMT5Config::from_file(&fixtures().join("text_encoder/config.json")).expect("config");
        assert_eq!(
            (
                cfg.d_model,
                cfg.d_kv,
                cfg.num_heads,
                cfg.num_layers,
                cfg.d_ff
            ),
            (32, 8, 4, 2, 64)
        );
        let err = UMT5Config::from_file(&fixtures().join("prompts.json"))
            .expect_err("not a config")
            .to_string();
        assert!(
            err.contains("prompts.json") && err.contains("vocab_size"),
            "{err}"
        );
    }
}
