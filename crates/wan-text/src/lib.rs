//! The umT5-XXL text encoder, its tokenizer and the text-embedding cache.

mod clean;
pub mod error;
mod html;

pub use clean::prompt_clean;
pub use error::{Error, Result};
