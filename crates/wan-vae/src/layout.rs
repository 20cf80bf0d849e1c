//! Checkpoint key layouts of the Wan-VAE 2.1: the diffusers `AutoencoderKLWan` names the model asks
//! for, and the official `Wan2.1_VAE.pth` (`WanVAE_`) names, mapped in one place.
//!
//! The mapping is the inverse of diffusers' `convert_wan_vae_to_diffusers`
//! (`diffusers/loaders/single_file_utils.py`), generalised to any `num_res_blocks` / `dim_mult`:
//!
//! | diffusers | official |
//! |---|---|
//! | `quant_conv`, `post_quant_conv` | `conv1`, `conv2` |
//! | `{encoder,decoder}.conv_in` | `{..}.conv1` |
//! | `{..}.norm_out`, `{..}.conv_out` | `{..}.head.0`, `{..}.head.2` |
//! | `{..}.mid_block.resnets.{0,1}`, `.attentions.0` | `{..}.middle.{0,2}`, `.middle.1` |
//! | resnet `norm1`, `conv1`, `norm2`, `conv2`, `conv_shortcut` | `residual.0`, `.2`, `.3`, `.6`, `shortcut` |
//! | `encoder.down_blocks.N` | `encoder.downsamples.N` |
//! | `decoder.up_blocks.i.resnets.j` | `decoder.upsamples.{i * (R + 2) + j}` |
//! | `decoder.up_blocks.i.upsamplers.0` | `decoder.upsamples.{i * (R + 2) + R + 1}` |
//!
//! where `R` is `num_res_blocks` (each decoder stage holds `R + 1` residual blocks and one resampler).

use std::collections::BTreeSet;

/// Which naming a checkpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLayout {
    /// diffusers `AutoencoderKLWan` (`vae/diffusion_pytorch_model.safetensors`).
    Diffusers,
    /// The official Wan2.1 release (`Wan2.1_VAE.pth`).
    Official,
}

impl KeyLayout {
    /// Detects the layout from a checkpoint's tensor names, or `None` when it is neither.
    pub fn detect(names: &BTreeSet<String>) -> Option<Self> {
        if names.contains("decoder.conv_in.weight") || names.contains("encoder.conv_in.weight") {
            Some(Self::Diffusers)
        } else if names.contains("decoder.conv1.weight") || names.contains("encoder.conv1.weight") {
            Some(Self::Official)
        } else {
            None
        }
    }
}

/// The official name of the diffusers key `name` for a model with `num_res_blocks` residual blocks
/// per encoder stage. Names outside the VAE's key set are returned unchanged.
pub fn official_name(name: &str, num_res_blocks: usize) -> String {
    if let Some(rest) = name.strip_prefix("quant_conv.") {
        return format!("conv1.{rest}");
    }
    if let Some(rest) = name.strip_prefix("post_quant_conv.") {
        return format!("conv2.{rest}");
    }
    let Some((side, rest)) = name.split_once('.') else {
        return name.to_string();
    };
    let parts: Vec<&str> = rest.split('.').collect();
    let mapped = match parts.as_slice() {
        ["conv_in", tail @ ..] => Some(format!("conv1.{}", tail.join("."))),
        ["norm_out", tail @ ..] => Some(format!("head.0.{}", tail.join("."))),
        ["conv_out", tail @ ..] => Some(format!("head.2.{}", tail.join("."))),
        ["mid_block", "resnets", j, tail @ ..] => j
            .parse::<usize>()
            .ok()
            .and_then(|j| resnet_tail(tail).map(|t| format!("middle.{}.{t}", 2 * j))),
        ["mid_block", "attentions", "0", tail @ ..] => Some(format!("middle.1.{}", tail.join("."))),
        ["down_blocks", n, tail @ ..] => {
            let tail = match tail.first() {
                Some(&"resample") | Some(&"time_conv") => Some(tail.join(".")),
                _ => resnet_tail(tail),
            };
            tail.map(|t| format!("downsamples.{n}.{t}"))
        }
        ["up_blocks", i, "resnets", j, tail @ ..] => {
            match (i.parse::<usize>(), j.parse::<usize>()) {
                (Ok(i), Ok(j)) => resnet_tail(tail)
                    .map(|t| format!("upsamples.{}.{t}", i * (num_res_blocks + 2) + j)),
                _ => None,
            }
        }
        ["up_blocks", i, "upsamplers", "0", tail @ ..] => i.parse::<usize>().ok().map(|i| {
            format!(
                "upsamples.{}.{}",
                i * (num_res_blocks + 2) + num_res_blocks + 1,
                tail.join(".")
            )
        }),
        _ => None,
    };
    match mapped {
        Some(m) => format!("{side}.{m}"),
        None => name.to_string(),
    }
}

/// Renames a residual block's parameter path (`norm1.gamma` -> `residual.0.gamma`).
fn resnet_tail(tail: &[&str]) -> Option<String> {
    let (head, rest) = tail.split_first()?;
    let official = match *head {
        "norm1" => "residual.0",
        "conv1" => "residual.2",
        "norm2" => "residual.3",
        "conv2" => "residual.6",
        "conv_shortcut" => "shortcut",
        _ => return None,
    };
    Some(format!("{official}.{}", rest.join(".")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spot checks against the table in diffusers 0.42.1 `convert_wan_vae_to_diffusers` (2 res blocks).
    #[test]
    fn maps_the_converter_examples() {
        let cases = [
            ("quant_conv.weight", "conv1.weight"),
            ("post_quant_conv.bias", "conv2.bias"),
            ("encoder.conv_in.weight", "encoder.conv1.weight"),
            ("decoder.norm_out.gamma", "decoder.head.0.gamma"),
            ("decoder.conv_out.bias", "decoder.head.2.bias"),
            (
                "encoder.mid_block.resnets.1.conv2.weight",
                "encoder.middle.2.residual.6.weight",
            ),
            (
                "decoder.mid_block.attentions.0.to_qkv.bias",
                "decoder.middle.1.to_qkv.bias",
            ),
            (
                "encoder.down_blocks.2.norm2.gamma",
                "encoder.downsamples.2.residual.3.gamma",
            ),
            (
                "encoder.down_blocks.3.conv_shortcut.weight",
                "encoder.downsamples.3.shortcut.weight",
            ),
            (
                "encoder.down_blocks.5.time_conv.weight",
                "encoder.downsamples.5.time_conv.weight",
            ),
            (
                "encoder.down_blocks.2.resample.1.bias",
                "encoder.downsamples.2.resample.1.bias",
            ),
            (
                "decoder.up_blocks.1.resnets.0.conv_shortcut.weight",
                "decoder.upsamples.4.shortcut.weight",
            ),
            (
                "decoder.up_blocks.3.resnets.2.conv1.weight",
                "decoder.upsamples.14.residual.2.weight",
            ),
            (
                "decoder.up_blocks.0.upsamplers.0.time_conv.bias",
                "decoder.upsamples.3.time_conv.bias",
            ),
            (
                "decoder.up_blocks.2.upsamplers.0.resample.1.weight",
                "decoder.upsamples.11.resample.1.weight",
            ),
        ];
        for (diffusers, official) in cases {
            assert_eq!(official_name(diffusers, 2), official, "{diffusers}");
        }
        assert_eq!(
            official_name("decoder.up_blocks.1.upsamplers.0.resample.1.weight", 1),
            "decoder.upsamples.5.resample.1.weight"
        );
    }
}
