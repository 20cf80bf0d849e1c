//! The text encoder the pipelines call: prompt clean-up, tokenizer and umT5 encoder together, producing the
//! context tensor the DiT cross-attends to exactly as diffusers' `WanPipeline._get_t5_prompt_embeds` does.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use wan_core::{WeightFiles, WeightFormat};

use crate::clean::prompt_clean;
use crate::error::{Error, Result};
use crate::layout::{Layout, diffusers_to_official, official_to_diffusers};
use crate::tokenizer::Tokenizer;
use crate::umt5::{UMT5Config, UMT5Encoder};

/// Weight file stems tried, in order, inside a text-encoder folder.
const WEIGHT_STEMS: [&str; 3] = ["model", "pytorch_model", "models_t5_umt5-xxl-enc-bf16"];

/// A umT5 text encoder with its tokenizer.
#[derive(Debug, Clone)]
pub struct TextEncoder {
    tokenizer: Tokenizer,
    model: UMT5Encoder,
    model_id: String,
}

impl TextEncoder {
    /// Loads the tokenizer and the encoder.
    ///
    /// `tokenizer_dir` is a diffusers `tokenizer/` folder (or a `tokenizer.json` file). `encoder_path` is a
    /// diffusers `text_encoder/` folder (`config.json` + single or sharded safetensors) or a weight file: the
    /// official `models_t5_umt5-xxl-enc-bf16.pth`, or a safetensors file in either key layout. Without a
    /// `config.json` the hyper-parameters are read off the tensor shapes. `dtype` (f32, bf16 or f16) is the
    /// weights' dtype in memory.
    pub fn from_paths(
        tokenizer_dir: &Path,
        encoder_path: &Path,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        if !matches!(dtype, DType::F32 | DType::BF16 | DType::F16) {
            return Err(Error::InvalidArgument {
                what: "dtype",
                reason: format!("{dtype:?}; the text encoder runs in f32, bf16 or f16"),
            });
        }
        let tokenizer = Tokenizer::from_path(tokenizer_dir)?;
        let files = WeightFiles::resolve(encoder_path, &WEIGHT_STEMS)?;
        let bad = |reason: String| Error::BadWeights {
            path: files.display_path().to_path_buf(),
            reason,
        };
        let shapes = tensor_shapes(&files)?;
        let layout = Layout::detect(shapes.keys().map(String::as_str)).ok_or_else(|| {
            bad("no umT5 encoder tensors: expected transformers names (`shared.weight`, `encoder.block.N...`) \
                 or official Wan names (`token_embedding.weight`, `blocks.N...`)"
                .to_string())
        })?;
        let shapes: HashMap<String, Vec<usize>> = match layout {
            Layout::Diffusers => shapes,
            Layout::Official => shapes
                .into_iter()
                .map(|(k, v)| (official_to_diffusers(&k), v))
                .collect(),
        };
        let config_file = encoder_path.join("config.json");
        let config = if encoder_path.is_dir() && config_file.is_file() {
            UMT5Config::from_file(&config_file)?
        } else {
            config_from_shapes(&shapes).map_err(bad)?
        };
        if tokenizer.vocab_size() > config.vocab_size {
            return Err(bad(format!(
                "the tokenizer {} has {} tokens but the encoder embeds only {}: they do not belong together",
                tokenizer.path().display(),
                tokenizer.vocab_size(),
                config.vocab_size
            )));
        }
        let vb = files.var_builder(dtype, device)?;
        let vb = match layout {
            Layout::Diffusers => vb,
            Layout::Official => vb.rename_f(diffusers_to_official),
        };
        let model = UMT5Encoder::load(vb, &config).map_err(|e| bad(e.to_string()))?;
        let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let model_id = format!(
            "umt5:{}:{}:{dtype:?}",
            canonical(encoder_path).display(),
            canonical(tokenizer.path()).display()
        );
        Ok(Self {
            tokenizer,
            model,
            model_id,
        })
    }

    /// Pairs an already-loaded tokenizer and encoder; `model_id` names the pair in cache keys.
    pub fn new(tokenizer: Tokenizer, model: UMT5Encoder, model_id: impl Into<String>) -> Self {
        Self {
            tokenizer,
            model,
            model_id: model_id.into(),
        }
    }

    /// Identifies the weights, tokenizer and dtype (used in cache keys).
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The encoder.
    pub fn model(&self) -> &UMT5Encoder {
        &self.model
    }

    /// Width of the embeddings (`d_model`, 4096 for umT5-XXL).
    pub fn hidden_size(&self) -> usize {
        self.model.config().d_model
    }

    /// Encodes prompts into `[B, text_len, d_model]` f32: each prompt cleaned, tokenized (truncated to
    /// `text_len` with `</s>`), encoded, and its rows past its token count set to zero, as diffusers'
    /// `_get_t5_prompt_embeds` hands them to the DiT.
    pub fn encode(&self, prompts: &[&str], text_len: usize) -> Result<Tensor> {
        let rows = self.encode_trimmed(prompts, text_len)?;
        let padded = rows
            .iter()
            .map(|row| pad_rows(row, text_len))
            .collect::<Result<Vec<_>>>()?;
        if padded.is_empty() {
            return Ok(Tensor::zeros(
                (0, text_len, self.hidden_size()),
                DType::F32,
                self.model.device(),
            )?);
        }
        Ok(Tensor::stack(&padded, 0)?)
    }

    /// Like [`TextEncoder::encode`], but each prompt's embeddings are returned trimmed to its token count:
    /// `[len_i, d_model]` f32, `len_i <= text_len`.
    ///
    /// The encoder runs on the longest prompt's token count rather than on `text_len`: padded keys are masked
    /// and the relative position bias depends only on offsets, so the real rows are the same (up to float
    /// summation order) as when run over the full padded length, at a fraction of the cost.
    pub fn encode_trimmed(&self, prompts: &[&str], text_len: usize) -> Result<Vec<Tensor>> {
        if prompts.is_empty() {
            return Ok(Vec::new());
        }
        let cleaned: Vec<String> = prompts.iter().map(|p| prompt_clean(p)).collect();
        let texts: Vec<&str> = cleaned.iter().map(String::as_str).collect();
        let batch = self.tokenizer.tokenize(&texts, text_len)?;
        let vocab_size = self.model.config().vocab_size;
        if let Some(&id) = batch.ids.iter().find(|&&id| id as usize >= vocab_size) {
            return Err(Error::TokenOutOfRange { id, vocab_size });
        }
        let longest = batch.lengths.iter().copied().max().unwrap_or(0).max(1);
        let ids: Vec<u32> = batch
            .ids
            .chunks(text_len)
            .flat_map(|row| row[..longest].iter().copied())
            .collect();
        let mask: Vec<u8> = batch
            .lengths
            .iter()
            .flat_map(|&len| (0..longest).map(move |i| u8::from(i < len)))
            .collect();
        let device = self.model.device();
        let shape = (prompts.len(), longest);
        let ids = Tensor::from_vec(ids, shape, device)?;
        let mask = Tensor::from_vec(mask, shape, device)?;
        let hidden = self.model.forward(&ids, &mask)?.to_dtype(DType::F32)?;
        batch
            .lengths
            .iter()
            .enumerate()
            .map(|(row, &len)| Ok(hidden.get(row)?.narrow(0, 0, len)?))
            .collect()
    }
}

/// `[len, d]` -> `[text_len, d]` with zero rows appended.
pub(crate) fn pad_rows(rows: &Tensor, text_len: usize) -> Result<Tensor> {
    let (len, width) = rows.dims2()?;
    if len >= text_len {
        return Ok(rows.narrow(0, 0, text_len)?);
    }
    let zeros = Tensor::zeros((text_len - len, width), rows.dtype(), rows.device())?;
    Ok(Tensor::cat(&[rows, &zeros], 0)?)
}

/// Every tensor's name and shape, without reading the data.
fn tensor_shapes(files: &WeightFiles) -> Result<HashMap<String, Vec<usize>>> {
    let load_err = |path: &Path, source| wan_core::Error::Load {
        path: path.to_path_buf(),
        source,
    };
    let mut shapes = HashMap::new();
    match files.format() {
        WeightFormat::Safetensors => {
            for file in files.files() {
                // SAFETY: the file is mapped read-only and not modified while mapped.
                let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(file) }
                    .map_err(|e| load_err(file, e))?;
                for (name, view) in st.tensors() {
                    shapes.insert(name, view.shape().to_vec());
                }
            }
        }
        WeightFormat::Pth => {
            let file = files.display_path();
            let infos = candle_core::pickle::read_pth_tensor_info(file, false, None)
                .map_err(|e| load_err(file, e))?;
            for info in infos {
                shapes.insert(info.name, info.layout.shape().dims().to_vec());
            }
        }
    }
    Ok(shapes)
}

/// Reads the hyper-parameters off the tensor shapes (transformers names), for checkpoints without a config.
fn config_from_shapes(
    shapes: &HashMap<String, Vec<usize>>,
) -> std::result::Result<UMT5Config, String> {
    let matrix = |name: &str| -> std::result::Result<(usize, usize), String> {
        match shapes.get(name).map(Vec::as_slice) {
            Some(&[rows, cols]) => Ok((rows, cols)),
            Some(other) => Err(format!(
                "tensor {name} has shape {other:?}, expected a matrix"
            )),
            None => Err(format!("missing tensor {name}")),
        }
    };
    let (vocab_size, d_model) =
        matrix("shared.weight").or_else(|_| matrix("encoder.embed_tokens.weight"))?;
    let num_layers = (0..)
        .take_while(|i| {
            shapes.contains_key(&format!("encoder.block.{i}.layer.0.SelfAttention.q.weight"))
        })
        .count();
    if num_layers == 0 {
        return Err("no encoder blocks (block 0's attention query weight is missing)".to_string());
    }
    let block = "encoder.block.0.layer";
    let (num_buckets, num_heads) = matrix(&format!(
        "{block}.0.SelfAttention.relative_attention_bias.weight"
    ))?;
    let (inner, _) = matrix(&format!("{block}.0.SelfAttention.q.weight"))?;
    let (d_ff, _) = matrix(&format!("{block}.1.DenseReluDense.wi_0.weight"))?;
    if num_heads == 0 || inner % num_heads != 0 {
        return Err(format!(
            "attention width {inner} is not a multiple of the {num_heads} bias heads"
        ));
    }
    let config = UMT5Config {
        vocab_size,
        d_model,
        d_kv: inner / num_heads,
        d_ff,
        num_layers,
        num_heads,
        relative_attention_num_buckets: num_buckets,
        ..UMT5Config::umt5_xxl()
    };
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/text")
    }

    #[derive(serde::Deserialize)]
    struct Prompts {
        text_len: usize,
        prompts: Vec<String>,
    }

    fn reference(key: &str) -> (Prompts, Tensor) {
        let text =
            std::fs::read_to_string(fixtures().join("prompts.json")).expect("read prompts.json");
        let prompts: Prompts = serde_json::from_str(&text).expect("parse prompts.json");
        let tensors =
            candle_core::safetensors::load(fixtures().join("reference.safetensors"), &Device::Cpu)
                .expect("load reference.safetensors");
        (prompts, tensors[key].clone())
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .expect("sub")
            .abs()
            .expect("abs")
            .max_all()
            .expect("max")
            .to_scalar::<f32>()
            .expect("scalar")
    }

    fn check(encoder_path: &Path, dtype: DType, key: &str, tolerance: f32) -> f32 {
        let (p, want) = reference(key);
        let encoder = TextEncoder::from_paths(
            &fixtures().join("tokenizer"),
            encoder_path,
            dtype,
            &Device::Cpu,
        )
        .expect("load");
        let prompts: Vec<&str> = p.prompts.iter().map(String::as_str).collect();
        let got = encoder.encode(&prompts, p.text_len).expect("encode");
        assert_eq!(got.dims(), want.dims());
        let diff = max_abs_diff(&got, &want);
        let mean = (&got - &want)
            .and_then(|d| d.abs()?.mean_all()?.to_scalar::<f32>())
            .expect("mean");
        eprintln!(
            "{} {dtype:?} vs {key}: max |diff| {diff}, mean |diff| {mean}",
            encoder_path.display()
        );
        assert!(
            diff <= tolerance,
            "{}: max |diff| {diff} > {tolerance}",
            encoder_path.display()
        );
        assert!(
            mean <= tolerance / 10.0,
            "{}: mean |diff| {mean} > {}",
            encoder_path.display(),
            tolerance / 10.0
        );
        // Padded rows are exactly zero.
        let lengths = encoder.tokenizer().tokenize(
            &p.prompts
                .iter()
                .map(|s| prompt_clean(s))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            p.text_len,
        );
        for (row, &len) in lengths.expect("tokenize").lengths.iter().enumerate() {
            let pad = got
                .get(row)
                .expect("row")
                .narrow(0, len, p.text_len - len)
                .expect("pad");
            assert_eq!(
                pad.abs()
                    .expect("abs")
                    .sum_all()
                    .expect("sum")
                    .to_scalar::<f32>()
                    .expect("s"),
                0.0
            );
        }
        diff
    }

    /// Reference: diffusers 0.42.1 `WanPipeline._get_t5_prompt_embeds` with transformers 5.23.0
    /// `UMT5EncoderModel` (fp32, sdpa) on the tiny random checkpoint, 13 prompts in one batch, text_len 24.
    /// Tolerance 1e-4 absolute.
    #[test]
    fn embeddings_match_diffusers_f32() {
        check(
            &fixtures().join("text_encoder"),
            DType::F32,
            "prompt_embeds",
            1e-4,
        );
    }

    /// The same weights under the official Wan key names in a `.pth`, config read off the shapes. 1e-4.
    #[test]
    fn official_pth_matches_diffusers_f32() {
        check(
            &fixtures().join("official/umt5-enc.pth"),
            DType::F32,
            "prompt_embeds",
            1e-4,
        );
    }

    /// Reference: the same diffusers/transformers call with the checkpoint loaded in bf16 (everything bf16, sdpa).
    /// Layer by layer the two agree to one bf16 step (the first difference is one ulp in the attention output),
    /// which compounds over the blocks: tolerance 0.1 max and 0.01 mean absolute, on outputs up to ~4.5 where a
    /// bf16 step is 0.03. For scale, the bf16 reference is 0.22 (max) away from the f32 one.
    #[test]
    fn embeddings_match_diffusers_bf16() {
        check(
            &fixtures().join("text_encoder"),
            DType::BF16,
            "prompt_embeds_bf16",
            0.1,
        );
    }

    #[test]
    fn batch_and_single_prompts_agree() {
        let encoder = TextEncoder::from_paths(
            &fixtures().join("tokenizer"),
            &fixtures().join("text_encoder"),
            DType::F32,
            &Device::Cpu,
        )
        .expect("load");
        let batch = encoder
            .encode(&["a cat", "一只猫在草地上行走，写实风格，金色的阳光。"], 16)
            .expect("batch");
        let single = encoder.encode(&["a cat"], 16).expect("single");
        assert!(max_abs_diff(&batch.get(0).expect("row"), &single.get(0).expect("row")) < 1e-5);
        assert_eq!(encoder.encode(&[], 16).expect("empty").dims(), &[0, 16, 32]);
    }

    fn tmp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wan-text-enc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        dir
    }

    #[test]
    fn bad_weights_are_named() {
        let tok = fixtures().join("tokenizer");
        let load = |path: &Path| {
            TextEncoder::from_paths(&tok, path, DType::F32, &Device::Cpu)
                .expect_err("must fail")
                .to_string()
        };
        let err = load(Path::new("/nonexistent/text_encoder"));
        assert!(err.contains("/nonexistent/text_encoder"), "{err}");

        // A checkpoint with unrelated tensors.
        let dir = tmp_dir("unrelated");
        let t = Tensor::zeros((2, 2), DType::F32, &Device::Cpu).expect("t");
        candle_core::safetensors::save(
            &HashMap::from([("x.weight".to_string(), t)]),
            dir.join("model.safetensors"),
        )
        .expect("save");
        let err = load(&dir);
        assert!(
            err.contains("model.safetensors") && err.contains("no umT5 encoder tensors"),
            "{err}"
        );

        // A checkpoint missing a tensor, and one with a misshapen tensor.
        let mut tensors: HashMap<String, Tensor> =
            candle_core::pickle::read_all(fixtures().join("official/umt5-enc.pth"))
                .expect("read pth")
                .into_iter()
                .collect();
        tensors.remove("blocks.1.ffn.fc2.weight");
        let dir = tmp_dir("missing");
        candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).expect("save");
        let err = load(&dir);
        assert!(err.contains("blocks.1.ffn.fc2.weight"), "{err}");

        tensors.insert(
            "blocks.1.ffn.fc2.weight".to_string(),
            Tensor::zeros((32, 63), DType::F32, &Device::Cpu).expect("t"),
        );
        let dir = tmp_dir("misshapen");
        candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).expect("save");
        let err = load(&dir);
        assert!(
            err.contains("blocks.1.ffn.fc2.weight") && err.contains("63"),
            "{err}"
        );

        // A malformed config.json next to good weights.
        let dir = tmp_dir("badconfig");
        for entry in std::fs::read_dir(fixtures().join("text_encoder")).expect("list") {
            let path = entry.expect("entry").path();
            std::fs::copy(&path, dir.join(path.file_name().expect("name"))).expect("copy");
        }
        std::fs::write(dir.join("config.json"), r#"{"d_model": 32}"#).expect("write");
        let err = load(&dir);
        assert!(
            err.contains("config.json") && err.contains("vocab_size"),
            "{err}"
        );
    }

    #[test]
    fn rejects_integer_dtype() {
        let err = TextEncoder::from_paths(
            &fixtures().join("tokenizer"),
            &fixtures().join("text_encoder"),
            DType::U8,
            &Device::Cpu,
        )
        .expect_err("u8")
        .to_string();
        assert!(err.contains("dtype"), "{err}");
    }
}
