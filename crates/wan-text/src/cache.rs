//! A process-wide cache of prompt embeddings, so that a repeated prompt (and the fixed default negative prompt)
//! is encoded once.
//!
//! Keyed by (model id, prompt, text_len). Entries hold the embeddings trimmed to the prompt's token count
//! (a 512-token context at d_model 4096 is 8 MiB in f32, a typical prompt a tenth of that) and are padded back on
//! each lookup. The cache is bounded: past its capacity the least recently used entry goes. Concurrent lookups of
//! the same key wait for one encoding instead of running several.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use candle_core::Tensor;

use crate::encoder::{TextEncoder, pad_rows};
use crate::error::Result;

/// Number of entries kept by [`EmbeddingCache::new`].
pub const DEFAULT_CAPACITY: usize = 64;

/// (model id, prompt, text_len).
type Key = (String, String, usize);

/// One cached prompt: filled by the first lookup that encodes it.
#[derive(Debug, Default)]
struct Slot {
    embeddings: Mutex<Option<Tensor>>,
}

#[derive(Debug, Default)]
struct State {
    slots: HashMap<Key, (Arc<Slot>, u64)>,
    clock: u64,
    hits: u64,
    misses: u64,
}

/// Lookup counters of an [`EmbeddingCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that ran the encoder.
    pub misses: u64,
    /// Entries held now.
    pub entries: usize,
}

/// A thread-safe, bounded cache of prompt embeddings in front of a [`TextEncoder`].
#[derive(Debug)]
pub struct EmbeddingCache {
    encoder: TextEncoder,
    capacity: usize,
    state: Mutex<State>,
}

impl EmbeddingCache {
    /// Wraps `encoder` with room for [`DEFAULT_CAPACITY`] prompts.
    pub fn new(encoder: TextEncoder) -> Self {
        Self::with_capacity(encoder, DEFAULT_CAPACITY)
    }

    /// Wraps `encoder` with room for `capacity` prompts (at least one).
    pub fn with_capacity(encoder: TextEncoder, capacity: usize) -> Self {
        Self {
            encoder,
            capacity: capacity.max(1),
            state: Mutex::new(State::default()),
        }
    }

    /// The wrapped encoder.
    pub fn encoder(&self) -> &TextEncoder {
        &self.encoder
    }

    /// The embeddings of one prompt, `[1, text_len, d_model]` f32, exactly as
    /// [`TextEncoder::encode`]`(&[prompt], text_len)` returns them; encoded on the first lookup only.
    pub fn get(&self, prompt: &str, text_len: usize) -> Result<Tensor> {
        Ok(pad_rows(&self.trimmed(prompt, text_len)?, text_len)?.unsqueeze(0)?)
    }

    /// The embeddings of several prompts, `[B, text_len, d_model]` f32, each looked up as by
    /// [`EmbeddingCache::get`].
    pub fn get_batch(&self, prompts: &[&str], text_len: usize) -> Result<Tensor> {
        if prompts.is_empty() {
            return self.encoder.encode(&[], text_len);
        }
        let rows = prompts
            .iter()
            .map(|prompt| pad_rows(&self.trimmed(prompt, text_len)?, text_len))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::stack(&rows, 0)?)
    }

    /// Lookup counters and the number of entries held.
    pub fn stats(&self) -> CacheStats {
        let state = self.lock();
        CacheStats {
            hits: state.hits,
            misses: state.misses,
            entries: state.slots.len(),
        }
    }

    /// Drops every entry.
    pub fn clear(&self) {
        self.lock().slots.clear();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The trimmed `[len, d_model]` embeddings of one prompt, from the cache or freshly encoded.
    fn trimmed(&self, prompt: &str, text_len: usize) -> Result<Tensor> {
        let key = (
            self.encoder.model_id().to_string(),
            prompt.to_string(),
            text_len,
        );
        let slot = {
            let mut state = self.lock();
            state.clock += 1;
            let now = state.clock;
            match state.slots.get_mut(&key) {
                Some((slot, used)) => {
                    *used = now;
                    Arc::clone(slot)
                }
                None => {
                    let slot = Arc::new(Slot::default());
                    state.slots.insert(key.clone(), (Arc::clone(&slot), now));
                    if state.slots.len() > self.capacity {
                        let oldest = state
                            .slots
                            .iter()
                            .filter(|(k, _)| **k != key)
                            .min_by_key(|(_, (_, used))| *used)
                            .map(|(k, _)| k.clone());
                        if let Some(oldest) = oldest {
                            state.slots.remove(&oldest);
                        }
                    }
                    slot
                }
            }
        };
        let mut embeddings = slot
            .embeddings
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(cached) = embeddings.as_ref() {
            self.lock().hits += 1;
            return Ok(cached.clone());
        }
        self.lock().misses += 1;
        let encoded = self
            .encoder
            .encode_trimmed(&[prompt], text_len)?
            .pop()
            .ok_or_else(|| {
                candle_core::Error::Msg("the encoder returned no embeddings".to_string())
            })?;
        *embeddings = Some(encoded.clone());
        Ok(encoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use std::path::Path;

    fn encoder() -> TextEncoder {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/text");
        TextEncoder::from_paths(
            &fixtures.join("tokenizer"),
            &fixtures.join("text_encoder"),
            DType::F32,
            &Device::Cpu,
        )
        .expect("load")
    }

    fn same(a: &Tensor, b: &Tensor) -> bool {
        a.dims() == b.dims()
            && (a - b)
                .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
                .expect("diff")
                == 0.0
    }

    #[test]
    fn repeated_prompts_are_encoded_once() {
        let cache = EmbeddingCache::new(encoder());
        let negative = "色调艳丽，过曝，静态，细节模糊不清";
        let first = cache.get(negative, 24).expect("first");
        let again = cache.get(negative, 24).expect("again");
        assert!(same(&first, &again));
        assert!(same(
            &first,
            &cache.encoder().encode(&[negative], 24).expect("direct")
        ));
        assert_eq!(
            cache.stats(),
            CacheStats {
                hits: 1,
                misses: 1,
                entries: 1
            }
        );
        // Another text_len is another key.
        assert_eq!(cache.get(negative, 16).expect("16").dims(), &[1, 16, 32]);
        assert_eq!(cache.stats().misses, 2);
        let batch = cache.get_batch(&["a cat", negative], 24).expect("batch");
        assert!(same(
            &batch.get(1).expect("row").unsqueeze(0).expect("u"),
            &first
        ));
        assert_eq!(
            cache.stats(),
            CacheStats {
                hits: 2,
                misses: 3,
                entries: 3
            }
        );
    }

    #[test]
    fn least_recently_used_entry_is_evicted() {
        let cache = EmbeddingCache::with_capacity(encoder(), 2);
        cache.get("one", 8).expect("one");
        cache.get("two", 8).expect("two");
        cache.get("one", 8).expect("one again");
        cache.get("three", 8).expect("three");
        assert_eq!(cache.stats().entries, 2);
        cache.get("one", 8).expect("one kept");
        assert_eq!(cache.stats().misses, 3);
        cache.get("two", 8).expect("two evicted");
        assert_eq!(cache.stats().misses, 4);
    }

    #[test]
    fn concurrent_lookups_encode_once() {
        let cache = EmbeddingCache::new(encoder());
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| cache.get("a shared prompt", 24).expect("get"));
            }
        });
        assert_eq!(
            cache.stats(),
            CacheStats {
                hits: 3,
                misses: 1,
                entries: 1
            }
        );
    }
}
