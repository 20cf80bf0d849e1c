//! The umT5-XXL text encoder, its tokenizer and the text-embedding cache.
