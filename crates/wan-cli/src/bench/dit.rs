//! `wan bench dit`: one forward of the diffusion transformer at a release preset's real block
//! widths (random weights made in-process, `--layers` of them), beside `bench/dit_peer.py`
//! (diffusers `WanTransformer3DModel`) on the same case.

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use clap::{Args, ValueEnum};
use wan_dit::{DitConfig, WanTransformer};

/// Arguments of `wan bench dit`.
#[derive(Args, Debug)]
pub struct DitArgs {
    #[command(flatten)]
    common: super::Common,
    /// Release configuration whose widths are used.
    #[arg(long, value_enum, default_value_t = Preset::OnePointThreeB)]
    preset: Preset,
    /// Transformer blocks to build (the releases have 30 or 40).
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// Video frames (1 + 4k) the latent stands for.
    #[arg(long, default_value_t = 17)]
    frames: usize,
    /// Video height in pixels.
    #[arg(long, default_value_t = 160)]
    height: usize,
    /// Video width in pixels.
    #[arg(long, default_value_t = 272)]
    width: usize,
    /// Text tokens (512 in the releases).
    #[arg(long, default_value_t = 512)]
    text_len: usize,
    /// Weight and activation dtype.
    #[arg(long, value_enum, default_value_t = super::BenchDType::F32)]
    dtype: super::BenchDType,
}

/// Release presets.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Preset {
    /// Wan2.1 T2V-1.3B (dim 1536, 12 heads, FFN 8960).
    #[value(name = "1.3b")]
    OnePointThreeB,
    /// Wan2.1 T2V-14B (dim 5120, 40 heads, FFN 13824).
    #[value(name = "14b")]
    FourteenB,
    /// Wan2.2 TI2V-5B (dim 3072, 24 heads, FFN 14336, 48 channels, 16x VAE).
    #[value(name = "5b")]
    FiveB,
}

impl Preset {
    fn name(self) -> &'static str {
        match self {
            Self::OnePointThreeB => "1.3b",
            Self::FourteenB => "14b",
            Self::FiveB => "5b",
        }
    }

    fn config(self) -> DitConfig {
        match self {
            Self::OnePointThreeB => DitConfig::wan21_t2v_1_3b(),
            Self::FourteenB => DitConfig::wan21_t2v_14b(),
            Self::FiveB => DitConfig::wan22_ti2v_5b(),
        }
    }

    /// Pixels per latent cell of the preset's VAE (8 for Wan2.1, 16 for Wan2.2's).
    fn vae_factor(self) -> usize {
        match self {
            Self::FiveB => 16,
            _ => 8,
        }
    }
}

/// Floating-point operations of one forward (matrix products and attention; norms and
/// element-wise work are negligible beside them).
fn forward_flops(cfg: &DitConfig, tokens: usize, text_len: usize) -> f64 {
    let (l, lt, d, f) = (
        tokens as f64,
        text_len as f64,
        cfg.dim() as f64,
        cfg.ffn_dim as f64,
    );
    let patch = (cfg.patch_size.iter().product::<usize>()) as f64;
    let self_attn = 2.0 * 4.0 * l * d * d + 2.0 * 2.0 * l * l * d;
    let cross_attn = 2.0 * 2.0 * l * d * d + 2.0 * 2.0 * lt * d * d + 2.0 * 2.0 * l * lt * d;
    let ffn = 2.0 * 2.0 * l * d * f;
    let blocks = cfg.num_layers as f64 * (self_attn + cross_attn + ffn);
    let text_embed = 2.0 * lt * d * (cfg.text_dim as f64 + d);
    let patchify = 2.0 * l * d * patch * (cfg.in_channels + cfg.out_channels) as f64;
    blocks + text_embed + patchify
}

/// Runs the case.
pub fn run(args: DitArgs) -> Result<()> {
    if args.layers == 0 {
        bail!("--layers must be at least 1");
    }
    if args.frames == 0 || !(args.frames - 1).is_multiple_of(4) {
        bail!(
            "--frames must be 1 + 4k (1, 5, 9, 13, 17, ...), got {}",
            args.frames
        );
    }
    let mut cfg = args.preset.config();
    cfg.num_layers = args.layers;
    let cell = args.preset.vae_factor() * cfg.patch_size[1];
    if args.height == 0
        || args.width == 0
        || !args.height.is_multiple_of(cell)
        || !args.width.is_multiple_of(cell)
    {
        bail!(
            "--height and --width must be positive multiples of {cell} for preset {}, got {}x{}",
            args.preset.name(),
            args.height,
            args.width
        );
    }
    if args.text_len == 0 {
        bail!("--text-len must be at least 1");
    }
    let device = Device::Cpu;
    let dtype = args.dtype.candle();
    let dit = WanTransformer::load(wan_core::random_weights(dtype, &device), &cfg)
        .context("building the transformer with random weights")?;
    let latent = (
        1,
        cfg.in_channels,
        (args.frames - 1) / 4 + 1,
        args.height / args.preset.vae_factor(),
        args.width / args.preset.vae_factor(),
    );
    let tokens = latent.2 * latent.3 / cfg.patch_size[1] * latent.4 / cfg.patch_size[2];
    let x = Tensor::randn(0f32, 1.0, latent, &device)?.to_dtype(dtype)?;
    let text =
        Tensor::randn(0f32, 1.0, (1, args.text_len, cfg.text_dim), &device)?.to_dtype(dtype)?;
    let t = Tensor::new(&[500f32], &device)?;
    let seconds = super::median_seconds(args.common.repeats, || {
        dit.forward(&x, &t, &text, None).context("forward")?;
        Ok(())
    })?;
    let peer_seconds = if args.common.peer {
        let peer_args = [
            ("--preset", args.preset.name().to_string()),
            ("--layers", args.layers.to_string()),
            ("--frames", args.frames.to_string()),
            ("--height", args.height.to_string()),
            ("--width", args.width.to_string()),
            ("--text-len", args.text_len.to_string()),
            ("--dtype", args.dtype.name().to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_string(), v])
        .collect::<Vec<_>>();
        Some(super::run_peer(&args.common, "dit_peer.py", &peer_args)?)
    } else {
        None
    };
    let flops = forward_flops(&cfg, tokens, args.text_len);
    let result = super::CaseResult {
        case: format!(
            "dit {} L{} f{} {}x{} ({tokens} tokens, {} text) {}",
            args.preset.name(),
            args.layers,
            args.frames,
            args.height,
            args.width,
            args.text_len,
            args.dtype.name()
        ),
        seconds,
        gflops: Some(flops / seconds / 1e9),
        peer_seconds,
    };
    super::report(&[result], args.common.json);
    Ok(())
}
