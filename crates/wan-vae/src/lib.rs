//! The causal 3D Wan-VAE (Wan 2.1, z=16, 8x8x4) in candle, at parity with diffusers'
//! `AutoencoderKLWan`.
//!
//! ```no_run
//! # fn main() -> Result<(), wan_vae::Error> {
//! use candle_core::{DType, Device, Tensor};
//! let vae = wan_vae::WanVae::from_path("Wan2.1-T2V-1.3B-Diffusers/vae".as_ref(), DType::F32, &Device::Cpu)?;
//! let latents = Tensor::zeros((1, 16, 5, 60, 104), DType::F32, &Device::Cpu)?;
//! let video = vae.decode(&vae.denormalize(&latents)?)?; // [1, 3, 17, 480, 832] in [-1, 1]
//! # let _ = video; Ok(()) }
//! ```

pub mod conv2d;
pub mod conv3d;
pub mod error;
pub mod layout;
pub mod rms_norm;
pub mod vae;

pub use error::{Error, Result};
pub use layout::KeyLayout;
pub use vae::{VaeConfig, WanVae};
