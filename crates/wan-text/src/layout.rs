//! Checkpoint key layouts of the umT5 encoder: transformers' `UMT5EncoderModel` (diffusers `text_encoder/`) and
//! the official Wan `T5Encoder` (`models_t5_umt5-xxl-enc-bf16.pth`, names from `wan/modules/t5.py`).
//!
//! The model asks for transformers names; official checkpoints are read through
//! [`candle_nn::VarBuilder::rename_f`] with [`diffusers_to_official`].

/// Which naming a checkpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// transformers / diffusers names (`shared.weight`, `encoder.block.N.layer.0.SelfAttention.q.weight`, ...).
    Diffusers,
    /// Official Wan names (`token_embedding.weight`, `blocks.N.attn.q.weight`, ...).
    Official,
}

impl Layout {
    /// Detects the layout from a checkpoint's tensor names, or `None` when neither layout fits.
    pub fn detect<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        for name in names {
            if name == "shared.weight" || name.starts_with("encoder.block.") {
                return Some(Self::Diffusers);
            }
            if name == "token_embedding.weight" || name.starts_with("blocks.") {
                return Some(Self::Official);
            }
        }
        None
    }
}

/// Per-block name pairs: (official suffix after `blocks.N.`, transformers suffix after `encoder.block.N.`).
const BLOCK_NAMES: [(&str, &str); 10] = [
    ("norm1.weight", "layer.0.layer_norm.weight"),
    ("attn.q.weight", "layer.0.SelfAttention.q.weight"),
    ("attn.k.weight", "layer.0.SelfAttention.k.weight"),
    ("attn.v.weight", "layer.0.SelfAttention.v.weight"),
    ("attn.o.weight", "layer.0.SelfAttention.o.weight"),
    (
        "pos_embedding.embedding.weight",
        "layer.0.SelfAttention.relative_attention_bias.weight",
    ),
    ("norm2.weight", "layer.1.layer_norm.weight"),
    ("ffn.gate.0.weight", "layer.1.DenseReluDense.wi_0.weight"),
    ("ffn.fc1.weight", "layer.1.DenseReluDense.wi_1.weight"),
    ("ffn.fc2.weight", "layer.1.DenseReluDense.wo.weight"),
];

/// Top-level name pairs: (official, transformers).
const TOP_NAMES: [(&str, &str); 3] = [
    ("token_embedding.weight", "shared.weight"),
    ("token_embedding.weight", "encoder.embed_tokens.weight"),
    ("norm.weight", "encoder.final_layer_norm.weight"),
];

/// Maps a transformers name to its official name; names without an official counterpart come back unchanged.
pub fn diffusers_to_official(name: &str) -> String {
    if let Some((official, _)) = TOP_NAMES.iter().find(|(_, d)| *d == name) {
        return (*official).to_string();
    }
    if let Some((index, suffix)) = name
        .strip_prefix("encoder.block.")
        .and_then(|r| r.split_once('.'))
        && let Some((official, _)) = BLOCK_NAMES.iter().find(|(_, d)| *d == suffix)
    {
        return format!("blocks.{index}.{official}");
    }
    name.to_string()
}

/// Maps an official name to its transformers name; unknown names come back unchanged.
pub fn official_to_diffusers(name: &str) -> String {
    if let Some((_, diffusers)) = TOP_NAMES.iter().find(|(o, _)| *o == name) {
        return (*diffusers).to_string();
    }
    if let Some((index, suffix)) = name.strip_prefix("blocks.").and_then(|r| r.split_once('.'))
        && let Some((_, diffusers)) = BLOCK_NAMES.iter().find(|(o, _)| *o == suffix)
    {
        return format!("encoder.block.{index}.{diffusers}");
    }
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (official, diffusers) in BLOCK_NAMES {
            let o = format!("blocks.7.{official}");
            let d = format!("encoder.block.7.{diffusers}");
            assert_eq!(diffusers_to_official(&d), o);
            assert_eq!(official_to_diffusers(&o), d);
        }
        assert_eq!(
            diffusers_to_official("shared.weight"),
            "token_embedding.weight"
        );
        assert_eq!(
            diffusers_to_official("encoder.embed_tokens.weight"),
            "token_embedding.weight"
        );
        assert_eq!(
            official_to_diffusers("norm.weight"),
            "encoder.final_layer_norm.weight"
        );
        assert_eq!(diffusers_to_official("something.else"), "something.else");
    }

    #[test]
    fn detects_layouts() {
        assert_eq!(
            Layout::detect(["encoder.final_layer_norm.weight", "shared.weight"]),
            Some(Layout::Diffusers)
        );
        assert_eq!(
            Layout::detect(["norm.weight", "blocks.0.attn.q.weight"]),
            Some(Layout::Official)
        );
        assert_eq!(Layout::detect(["model.diffusion_model.x"]), None);
    }
}
