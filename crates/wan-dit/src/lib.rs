//! The Wan diffusion transformer (diffusers' `WanTransformer3DModel`, the official `WanModel`) in
//! candle: Wan2.1 text-to-video, image-to-video and first-last-frame, Wan2.2 A14B experts and TI2V-5B.
//!
//! ```no_run
//! # fn main() -> Result<(), wan_dit::Error> {
//! use candle_core::{DType, Device};
//! let dit = wan_dit::WanTransformer::from_path(
//!     std::path::Path::new("Wan2.1-T2V-1.3B-Diffusers/transformer"),
//!     DType::BF16,
//!     &Device::Cpu,
//! )?;
//! # let _ = dit; Ok(()) }
//! ```

pub mod config;
pub mod dit;
pub mod error;
pub mod layout;
pub mod linear;
pub mod rope;

pub use config::DitConfig;
pub use dit::WanTransformer;
pub use error::{Error, Result};
