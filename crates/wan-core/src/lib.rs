//! Shared building blocks of wan-rs: locating and opening checkpoint weights (single or sharded
//! safetensors, PyTorch `.pth` pickles) and the errors that come with them.
//!
//! Model crates (`wan-vae`, `wan-dit`, `wan-text`) build on [`weights::WeightFiles`]: they open a
//! checkpoint with it, inspect its tensor names to detect the key layout (diffusers or official),
//! and get a [`candle_nn::VarBuilder`] that renames keys in one place per model.

// Linked for its `x86-v4` feature only: candle's CPU matmul then runs AVX-512 kernels where the CPU has them.
use gemm_f32 as _;

pub mod attention;
pub mod error;
pub mod gelu;
pub mod random;
pub mod weights;

pub use error::{Error, Result};
pub use gelu::gelu_tanh;
pub use random::random_weights;
pub use weights::{WeightFiles, WeightFormat};
