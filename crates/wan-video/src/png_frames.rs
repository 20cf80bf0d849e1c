//! PNG output: a folder of `frame_00000.png`... plus `metadata.json`, and single-frame PNG thumbnails.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::frames::{Frames, Rounding};
use crate::metadata::Metadata;

/// Encodes one 8-bit RGB frame as PNG.
pub(crate) fn encode_png(
    out: &mut dyn Write,
    rgb: &[u8],
    width: usize,
    height: usize,
) -> Result<()> {
    let mut encoder = png::Encoder::new(out, width as u32, height as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(())
}

/// Fills `folder` with one PNG per frame (rounded as diffusers' `numpy_to_pil`) and `metadata.json`.
pub(crate) fn write_png_folder(folder: &Path, frames: &Frames, metadata: &Metadata) -> Result<()> {
    for (index, rgb) in frames.rgb8_frames(Rounding::Nearest).enumerate() {
        let path = folder.join(format!("frame_{index:05}.png"));
        let mut bytes = Vec::new();
        encode_png(&mut bytes, &rgb, frames.width(), frames.height())?;
        std::fs::write(&path, bytes).map_err(Error::writing(&path))?;
    }
    let path = folder.join("metadata.json");
    let json = serde_json::to_string_pretty(metadata)?;
    std::fs::write(&path, json + "\n").map_err(Error::writing(&path))
}
