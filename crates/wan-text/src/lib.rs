//! The umT5-XXL text encoder, its tokenizer and the text-embedding cache.

mod clean;
pub mod error;
mod html;
pub mod tokenizer;

pub use clean::prompt_clean;
pub use error::{Error, Result};
pub use tokenizer::{TokenBatch, Tokenizer};
