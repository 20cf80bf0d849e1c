//! The umT5-XXL text encoder of the Wan models, its tokenizer and the text-embedding cache.
//!
//! [`TextEncoder::encode`] turns prompts into the `[B, text_len, 4096]` context the DiT cross-attends to, the
//! way the diffusers Wan pipelines do: [`prompt_clean`], tokenize to `text_len` (512 for Wan), encode with
//! [`UMT5Encoder`], zero the rows past each prompt's tokens. [`EmbeddingCache`] keeps the results per process.

pub mod cache;
mod clean;
pub mod encoder;
pub mod error;
mod html;
pub mod layout;
pub mod tokenizer;
pub mod umt5;

pub use cache::{CacheStats, EmbeddingCache};
pub use clean::prompt_clean;
pub use encoder::TextEncoder;
pub use error::{Error, Result};
pub use tokenizer::{TokenBatch, Tokenizer};
pub use umt5::{UMT5Config, UMT5Encoder};

/// The text length of every Wan model: prompts are cut or padded to 512 tokens.
pub const DEFAULT_TEXT_LEN: usize = 512;
