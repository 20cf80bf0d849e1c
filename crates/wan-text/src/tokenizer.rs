//! The umT5 tokenizer, read from a model's `tokenizer/tokenizer.json` with the `tokenizers` crate and run the
//! way transformers 5 runs it for the diffusers Wan pipelines: `padding="max_length"`, `truncation=True`,
//! `add_special_tokens=True` (the prompt's tokens, cut to `text_len - 1`, then `</s>`, then `<pad>` up to
//! `text_len`).
//!
//! When `tokenizer_config.json` names the `T5Tokenizer` class (as the Wan repos' does), transformers 5 does not use
//! the file's pipeline as written: it rebuilds the T5 one from the file's vocabulary and precompiled normaliser
//! (Unigram with `unk_id` 2 and no byte fallback, whitespace split then Metaspace, `$A </s>`). This module does
//! the same, so that hub tokenizer.json files in older layouts (byte fallback on, a `Replace` normaliser) give
//! the same ids as the reference.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde_json::{Value, json};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{PostProcessor, TruncationDirection};

use crate::error::{Error, Result};

/// Token ids of a batch of prompts, each truncated and padded to `text_len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    /// Row-major `[batch, text_len]` token ids.
    pub ids: Vec<u32>,
    /// The number of real tokens (including `</s>`) in each row; the rest is padding.
    pub lengths: Vec<usize>,
    /// The padded length of every row.
    pub text_len: usize,
}

impl TokenBatch {
    /// The ids as a `[batch, text_len]` u32 tensor.
    pub fn ids_tensor(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_slice(
            &self.ids,
            (self.lengths.len(), self.text_len),
            device,
        )?)
    }

    /// The attention mask as a `[batch, text_len]` u8 tensor: 1 on real tokens, 0 on padding.
    pub fn mask_tensor(&self, device: &Device) -> Result<Tensor> {
        let mask: Vec<u8> = self
            .lengths
            .iter()
            .flat_map(|&len| (0..self.text_len).map(move |i| u8::from(i < len)))
            .collect();
        Ok(Tensor::from_slice(
            &mask,
            (self.lengths.len(), self.text_len),
            device,
        )?)
    }
}

/// A umT5 tokenizer.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    pad_id: u32,
    path: PathBuf,
}

impl Tokenizer {
    /// Loads a tokenizer from a folder holding `tokenizer.json` (and, optionally, `tokenizer_config.json`), or
    /// from a `tokenizer.json` file (its folder's `tokenizer_config.json` is read when present).
    pub fn from_path(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(Error::NotFound {
                what: "tokenizer",
                path: path.to_path_buf(),
            });
        }
        let (file, dir) = if path.is_dir() {
            (path.join("tokenizer.json"), path.to_path_buf())
        } else {
            (
                path.to_path_buf(),
                path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            )
        };
        if !file.is_file() {
            return Err(Error::NotFound {
                what: "tokenizer.json",
                path: file,
            });
        }
        let bad = |reason: String| Error::BadTokenizer {
            path: file.clone(),
            reason,
        };
        let mut spec = read_json(&file)?;
        let config_file = dir.join("tokenizer_config.json");
        let config = if config_file.is_file() {
            Some(read_json(&config_file)?)
        } else {
            None
        };
        let token = |key: &str, default: &str| -> String {
            let value = config.as_ref().and_then(|c| c.get(key));
            value
                .and_then(|v| {
                    v.as_str()
                        .or_else(|| v.get("content").and_then(Value::as_str))
                })
                .unwrap_or(default)
                .to_string()
        };
        let class = config
            .as_ref()
            .and_then(|c| c.get("tokenizer_class"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let rebuild_t5 = class == "T5Tokenizer" || class == "T5TokenizerFast";
        if rebuild_t5 {
            rebuild_as_t5(&mut spec).map_err(bad)?;
        }
        let object = spec
            .as_object_mut()
            .ok_or_else(|| bad("not a JSON object".to_string()))?;
        // transformers sets truncation and padding per call; so do we.
        object.insert("truncation".into(), Value::Null);
        object.insert("padding".into(), Value::Null);
        let mut inner: tokenizers::Tokenizer =
            serde_json::from_value(spec).map_err(|e| bad(format!("not a tokenizers file: {e}")))?;
        if rebuild_t5 {
            let eos = token("eos_token", "</s>");
            let eos_id = inner.token_to_id(&eos).ok_or_else(|| {
                bad(format!(
                    "end-of-sequence token {eos:?} is not in the vocabulary"
                ))
            })?;
            let template = TemplateProcessing::builder()
                .try_single(vec!["$A".to_string(), eos.clone()])
                .and_then(|b| {
                    b.try_pair(vec![
                        "$A".to_string(),
                        eos.clone(),
                        "$B".to_string(),
                        eos.clone(),
                    ])
                })
                .map_err(|e| bad(format!("cannot build the `$A {eos}` template: {e}")))?
                .special_tokens(vec![(eos.clone(), eos_id)])
                .build()
                .map_err(|e| bad(format!("cannot build the `$A {eos}` template: {e}")))?;
            inner.with_post_processor(Some(template));
        }
        let pad = token("pad_token", "<pad>");
        let pad_id = inner
            .token_to_id(&pad)
            .ok_or_else(|| bad(format!("padding token {pad:?} is not in the vocabulary")))?;
        Ok(Self {
            inner,
            pad_id,
            path: file,
        })
    }

    /// The `tokenizer.json` this tokenizer was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The padding token's id.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Tokenizes already-cleaned texts: each is truncated so that it fits `text_len` with its special tokens,
    /// gets `</s>` appended and is right-padded with `<pad>` to `text_len`.
    pub fn tokenize(&self, texts: &[&str], text_len: usize) -> Result<TokenBatch> {
        let added = self
            .inner
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(false));
        if text_len == 0 || text_len < added {
            return Err(Error::InvalidArgument {
                what: "text_len",
                reason: format!(
                    "{text_len} leaves no room for the {added} special token(s); use at least 1"
                ),
            });
        }
        let mut batch = TokenBatch {
            ids: Vec::with_capacity(texts.len() * text_len),
            lengths: Vec::with_capacity(texts.len()),
            text_len,
        };
        for (index, text) in texts.iter().enumerate() {
            let tokenize_err = |e: tokenizers::Error| Error::Tokenize {
                index,
                reason: e.to_string(),
            };
            let mut encoding = self.inner.encode(*text, false).map_err(tokenize_err)?;
            encoding.truncate(text_len - added, 0, TruncationDirection::Right);
            let encoding = self
                .inner
                .post_process(encoding, None, true)
                .map_err(tokenize_err)?;
            let ids = encoding.get_ids();
            let len = ids.len().min(text_len);
            batch.ids.extend_from_slice(&ids[..len]);
            batch
                .ids
                .extend(std::iter::repeat_n(self.pad_id, text_len - len));
            batch.lengths.push(len);
        }
        Ok(batch)
    }
}

/// Reads and parses a JSON file.
fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| Error::BadTokenizer {
        path: path.to_path_buf(),
        reason: format!("invalid JSON: {e}"),
    })
}

/// Rewrites a tokenizer.json the way transformers 5's `T5Tokenizer.__init__` rebuilds it from the file's
/// vocabulary and precompiled character map (the post-processor is set once the vocabulary is loaded).
fn rebuild_as_t5(spec: &mut Value) -> std::result::Result<(), String> {
    let model = spec
        .get_mut("model")
        .and_then(Value::as_object_mut)
        .ok_or("no \"model\" object")?;
    let kind = model
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("(none)");
    if kind != "Unigram" {
        return Err(format!("T5Tokenizer needs a Unigram model, found {kind}"));
    }
    model.insert("unk_id".into(), json!(2));
    model.insert("byte_fallback".into(), json!(false));
    let normalizer = spec
        .get("normalizer")
        .and_then(find_precompiled)
        .unwrap_or(Value::Null);
    let object = spec.as_object_mut().ok_or("not a JSON object")?;
    object.insert("normalizer".into(), normalizer);
    object.insert(
        "pre_tokenizer".into(),
        json!({
            "type": "Sequence",
            "pretokenizers": [
                {"type": "WhitespaceSplit"},
                {"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "always", "split": true}
            ]
        }),
    );
    object.insert("post_processor".into(), Value::Null);
    Ok(())
}

/// The `Precompiled` normaliser, at the top level or inside a `Sequence`.
fn find_precompiled(normalizer: &Value) -> Option<Value> {
    match normalizer.get("type").and_then(Value::as_str) {
        Some("Precompiled") => Some(normalizer.clone()),
        Some("Sequence") => normalizer
            .get("normalizers")
            .and_then(Value::as_array)?
            .iter()
            .find_map(find_precompiled),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clean::prompt_clean;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/text")
    }

    #[derive(serde::Deserialize)]
    struct Prompts {
        text_len: usize,
        prompts: Vec<String>,
        cleaned: Vec<String>,
        full_ids: Vec<Vec<u32>>,
    }

    fn prompts() -> Prompts {
        let text =
            std::fs::read_to_string(fixtures().join("prompts.json")).expect("read prompts.json");
        serde_json::from_str(&text).expect("parse prompts.json")
    }

    fn reference(name: &str) -> Vec<Vec<i64>> {
        let tensors =
            candle_core::safetensors::load(fixtures().join("reference.safetensors"), &Device::Cpu)
                .expect("load reference.safetensors");
        tensors[name].to_vec2::<i64>().expect("ids")
    }

    fn check_against_reference(dir: &str, ids_key: &str, mask_key: &str) {
        let p = prompts();
        let tokenizer = Tokenizer::from_path(&fixtures().join(dir)).expect("load tokenizer");
        let cleaned: Vec<String> = p.prompts.iter().map(|s| prompt_clean(s)).collect();
        assert_eq!(cleaned, p.cleaned, "prompt_clean");
        let texts: Vec<&str> = cleaned.iter().map(String::as_str).collect();
        let batch = tokenizer.tokenize(&texts, p.text_len).expect("tokenize");
        let want_ids = reference(ids_key);
        let want_mask = reference(mask_key);
        for (row, (want, mask)) in want_ids.iter().zip(&want_mask).enumerate() {
            let got = &batch.ids[row * p.text_len..(row + 1) * p.text_len];
            let got: Vec<i64> = got.iter().map(|&i| i64::from(i)).collect();
            assert_eq!(
                &got, want,
                "{dir}: ids of prompt {row} {:?}",
                p.prompts[row]
            );
            let len = mask.iter().sum::<i64>() as usize;
            assert_eq!(batch.lengths[row], len, "{dir}: length of prompt {row}");
        }
    }

    /// Reference: transformers 5.23.0 `AutoTokenizer` (T5Tokenizer) on `fixtures/text/tokenizer`, called as
    /// diffusers 0.42.1 `_get_t5_prompt_embeds` calls it (max_length padding, truncation, text_len 24). Exact.
    #[test]
    fn ids_match_transformers() {
        check_against_reference("tokenizer", "input_ids", "attention_mask");
    }

    /// The same vocabulary in the older hub layout (byte fallback on, Replace normaliser, Metaspace only):
    /// transformers 5.23.0 rebuilds the T5 pipeline, and so must we. Exact.
    #[test]
    fn legacy_layout_ids_match_transformers() {
        check_against_reference(
            "tokenizer_legacy",
            "legacy_input_ids",
            "legacy_attention_mask",
        );
    }

    /// Untruncated ids (transformers 5.23.0, no padding) for every prompt, including those longer than 24.
    #[test]
    fn untruncated_ids_match_transformers() {
        let p = prompts();
        let tokenizer =
            Tokenizer::from_path(&fixtures().join("tokenizer/tokenizer.json")).expect("load");
        let text_len = 512;
        let texts: Vec<&str> = p.cleaned.iter().map(String::as_str).collect();
        let batch = tokenizer.tokenize(&texts, text_len).expect("tokenize");
        for (row, want) in p.full_ids.iter().enumerate() {
            let got = &batch.ids[row * text_len..row * text_len + batch.lengths[row]];
            assert_eq!(got, &want[..], "prompt {row}");
            assert!(
                batch.ids[row * text_len + batch.lengths[row]..(row + 1) * text_len]
                    .iter()
                    .all(|&i| i == 0)
            );
        }
        assert!(
            p.full_ids.iter().any(|ids| ids.len() > p.text_len),
            "a prompt must exceed text_len"
        );
        let mask = batch.mask_tensor(&Device::Cpu).expect("mask");
        assert_eq!(mask.dims(), &[p.cleaned.len(), text_len]);
    }

    #[test]
    fn text_len_one_keeps_only_eos() {
        let tokenizer = Tokenizer::from_path(&fixtures().join("tokenizer")).expect("load");
        let batch = tokenizer.tokenize(&["a long prompt"], 1).expect("tokenize");
        assert_eq!(batch.ids, vec![1]);
        let err = tokenizer
            .tokenize(&["x"], 0)
            .expect_err("text_len 0")
            .to_string();
        assert!(err.contains("text_len"), "{err}");
    }

    fn tmp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wan-text-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        dir
    }

    #[test]
    fn missing_and_malformed_tokenizers_are_named() {
        let err = Tokenizer::from_path(Path::new("/nonexistent/tokenizer"))
            .expect_err("missing")
            .to_string();
        assert!(err.contains("/nonexistent/tokenizer"), "{err}");

        let empty = tmp_dir("tok-empty");
        let err = Tokenizer::from_path(&empty)
            .expect_err("no tokenizer.json")
            .to_string();
        assert!(
            err.contains("tokenizer.json") && err.contains("not found"),
            "{err}"
        );

        let broken = tmp_dir("tok-broken");
        std::fs::write(broken.join("tokenizer.json"), "{\"model\": ").expect("write");
        let err = Tokenizer::from_path(&broken)
            .expect_err("bad json")
            .to_string();
        assert!(
            err.contains("malformed tokenizer") && err.contains("invalid JSON"),
            "{err}"
        );

        let wrong = tmp_dir("tok-wrong");
        std::fs::write(
            wrong.join("tokenizer.json"),
            r#"{"model": {"type": "BPE", "vocab": {}, "merges": []}}"#,
        )
        .expect("write");
        std::fs::write(
            wrong.join("tokenizer_config.json"),
            r#"{"tokenizer_class": "T5Tokenizer"}"#,
        )
        .expect("write");
        let err = Tokenizer::from_path(&wrong).expect_err("bpe").to_string();
        assert!(err.contains("needs a Unigram model, found BPE"), "{err}");

        let garbage = tmp_dir("tok-garbage");
        std::fs::write(
            garbage.join("tokenizer.json"),
            r#"{"model": {"type": "Nope"}}"#,
        )
        .expect("write");
        let err = Tokenizer::from_path(&garbage)
            .expect_err("garbage")
            .to_string();
        assert!(err.contains("not a tokenizers file"), "{err}");
    }
}
