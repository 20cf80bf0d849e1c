//! Checkpoint key layouts: diffusers (`WanTransformer3DModel`) and official (`WanModel`).
//!
//! The model asks for diffusers names; an official checkpoint is read through
//! [`candle_nn::VarBuilder::rename_f`] with [`official_name`], the one place where the two layouts
//! are mapped onto each other.

use std::collections::BTreeSet;

/// The naming scheme of a checkpoint's tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLayout {
    /// diffusers: `condition_embedder.*`, `blocks.N.attn1.to_q`, `proj_out`, ...
    Diffusers,
    /// Official Wan code: `time_embedding.*`, `blocks.N.self_attn.q`, `head.head`, ...
    Official,
}

impl KeyLayout {
    /// Detects the layout from the checkpoint's tensor names, or `None` if neither matches.
    pub fn detect(names: &BTreeSet<String>) -> Option<Self> {
        if names.contains("condition_embedder.time_embedder.linear_1.weight") {
            Some(Self::Diffusers)
        } else if names.contains("time_embedding.0.weight") {
            Some(Self::Official)
        } else {
            None
        }
    }
}

/// Top-level diffusers prefixes and their official counterparts.
const TOP_LEVEL: &[(&str, &str)] = &[
    (
        "condition_embedder.time_embedder.linear_1.",
        "time_embedding.0.",
    ),
    (
        "condition_embedder.time_embedder.linear_2.",
        "time_embedding.2.",
    ),
    ("condition_embedder.time_proj.", "time_projection.1."),
    (
        "condition_embedder.text_embedder.linear_1.",
        "text_embedding.0.",
    ),
    (
        "condition_embedder.text_embedder.linear_2.",
        "text_embedding.2.",
    ),
    (
        "condition_embedder.image_embedder.norm1.",
        "img_emb.proj.0.",
    ),
    (
        "condition_embedder.image_embedder.ff.net.0.proj.",
        "img_emb.proj.1.",
    ),
    (
        "condition_embedder.image_embedder.ff.net.2.",
        "img_emb.proj.3.",
    ),
    (
        "condition_embedder.image_embedder.norm2.",
        "img_emb.proj.4.",
    ),
    (
        "condition_embedder.image_embedder.pos_embed",
        "img_emb.emb_pos",
    ),
    ("scale_shift_table", "head.modulation"),
    ("proj_out.", "head.head."),
];

/// Prefixes inside `blocks.N.`. The official code calls the cross-attention norm `norm3` and the
/// (parameter-free) FFN norm `norm2`; diffusers swaps the two names.
const IN_BLOCK: &[(&str, &str)] = &[
    ("attn1.to_q.", "self_attn.q."),
    ("attn1.to_k.", "self_attn.k."),
    ("attn1.to_v.", "self_attn.v."),
    ("attn1.to_out.0.", "self_attn.o."),
    ("attn1.norm_q.", "self_attn.norm_q."),
    ("attn1.norm_k.", "self_attn.norm_k."),
    ("attn2.to_q.", "cross_attn.q."),
    ("attn2.to_k.", "cross_attn.k."),
    ("attn2.to_v.", "cross_attn.v."),
    ("attn2.to_out.0.", "cross_attn.o."),
    ("attn2.norm_q.", "cross_attn.norm_q."),
    ("attn2.norm_k.", "cross_attn.norm_k."),
    ("attn2.add_k_proj.", "cross_attn.k_img."),
    ("attn2.add_v_proj.", "cross_attn.v_img."),
    ("attn2.norm_added_k.", "cross_attn.norm_k_img."),
    ("norm2.", "norm3."),
    ("ffn.net.0.proj.", "ffn.0."),
    ("ffn.net.2.", "ffn.2."),
    ("scale_shift_table", "modulation"),
];

fn replace_prefix(name: &str, table: &[(&str, &str)]) -> Option<String> {
    table
        .iter()
        .find_map(|(from, to)| name.strip_prefix(from).map(|rest| format!("{to}{rest}")))
}

/// The official name of the tensor diffusers calls `name` (unchanged when both agree).
pub fn official_name(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("blocks.")
        && let Some((index, inner)) = rest.split_once('.')
    {
        return match replace_prefix(inner, IN_BLOCK) {
            Some(mapped) => format!("blocks.{index}.{mapped}"),
            None => name.to_string(),
        };
    }
    replace_prefix(name, TOP_LEVEL).unwrap_or_else(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_every_fixture_key_onto_the_official_shards() {
        // The fixture's official shards were written by renaming the diffusers state dict and
        // checked against diffusers' own converter (tools/fixtures/dit.py).
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/dit");
        let names = |sub: &str, stem: &str| {
            wan_core::WeightFiles::resolve(&dir.join(sub), &[stem])
                .and_then(|w| w.tensor_names())
                .expect("names")
        };
        let diffusers = names("t2v", "diffusion_pytorch_model");
        let official = names("t2v_official", "diffusion_pytorch_model");
        assert_eq!(KeyLayout::detect(&diffusers), Some(KeyLayout::Diffusers));
        assert_eq!(KeyLayout::detect(&official), Some(KeyLayout::Official));
        let mapped: BTreeSet<String> = diffusers.iter().map(|n| official_name(n)).collect();
        assert_eq!(mapped, official);
    }

    #[test]
    fn image_keys_and_swapped_norms() {
        assert_eq!(
            official_name("blocks.3.attn2.add_k_proj.weight"),
            "blocks.3.cross_attn.k_img.weight"
        );
        assert_eq!(
            official_name("blocks.3.attn2.norm_added_k.weight"),
            "blocks.3.cross_attn.norm_k_img.weight"
        );
        assert_eq!(
            official_name("blocks.10.norm2.bias"),
            "blocks.10.norm3.bias"
        );
        assert_eq!(
            official_name("condition_embedder.image_embedder.pos_embed"),
            "img_emb.emb_pos"
        );
        assert_eq!(
            official_name("patch_embedding.weight"),
            "patch_embedding.weight"
        );
    }
}
