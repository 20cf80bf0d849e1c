//! `wan bench vae`: decodes latents with the real Wan2.1 VAE configuration (base_dim 96, dim_mult
//! [1, 2, 4, 4], 2 res blocks) and random weights made in-process, beside `bench/vae_peer.py`
//! (diffusers `AutoencoderKLWan.decode`) on the same case.

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use clap::Args;
use wan_vae::{VaeConfig, WanVae};

/// Arguments of `wan bench vae`.
#[derive(Args, Debug)]
pub struct VaeArgs {
    #[command(flatten)]
    common: super::Common,
    /// Output video frames (1 + 4k; 17 -> 5 latent frames).
    #[arg(long, default_value_t = 17)]
    frames: usize,
    /// Output height in pixels (a multiple of 8).
    #[arg(long, default_value_t = 128)]
    height: usize,
    /// Output width in pixels (a multiple of 8).
    #[arg(long, default_value_t = 128)]
    width: usize,
    /// Weight and activation dtype.
    #[arg(long, value_enum, default_value_t = super::BenchDType::F32)]
    dtype: super::BenchDType,
}

/// Runs the case.
pub fn run(args: VaeArgs) -> Result<()> {
    if (args.frames == 0) || !(args.frames - 1).is_multiple_of(4) {
        bail!(
            "--frames must be 1 + 4k (1, 5, 9, 13, 17, ...), got {}",
            args.frames
        );
    }
    if args.height == 0
        || args.width == 0
        || !args.height.is_multiple_of(8)
        || !args.width.is_multiple_of(8)
    {
        bail!(
            "--height and --width must be positive multiples of 8, got {}x{}",
            args.height,
            args.width
        );
    }
    let device = Device::Cpu;
    let dtype = args.dtype.candle();
    let cfg = VaeConfig::wan21();
    let vae = WanVae::load(wan_core::random_weights(dtype, &device), &cfg)
        .context("building the Wan2.1 VAE with random weights")?;
    let latent_frames = 1 + (args.frames - 1) / 4;
    let z = Tensor::randn(
        0f32,
        1.0,
        (1, 16, latent_frames, args.height / 8, args.width / 8),
        &device,
    )?
    .to_dtype(dtype)?;
    let seconds = super::median_seconds(args.common.repeats, || {
        vae.decode(&z).context("decoding")?;
        Ok(())
    })?;
    let peer_seconds = if args.common.peer {
        let peer_args = [
            "--frames".to_string(),
            args.frames.to_string(),
            "--height".to_string(),
            args.height.to_string(),
            "--width".to_string(),
            args.width.to_string(),
            "--dtype".to_string(),
            args.dtype.name().to_string(),
            "--json".to_string(),
        ];
        Some(super::run_peer(&args.common, "vae_peer.py", &peer_args)?)
    } else {
        None
    };
    let result = super::CaseResult {
        case: format!(
            "vae-decode f{} {}x{} {}",
            args.frames,
            args.height,
            args.width,
            args.dtype.name()
        ),
        seconds,
        gflops: None,
        peer_seconds,
    };
    super::report(&[result], args.common.json);
    Ok(())
}
