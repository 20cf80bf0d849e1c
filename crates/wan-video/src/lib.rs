//! Video and image outputs: H.264 MP4, GIF, WebP, PNG frames and safetensors tensors.
//!
//! The format follows the output path's extension ([`OutputFormat::from_path`]); [`check_output_path`] validates
//! a path before generation starts, and [`write_output`] writes atomically (temporary name, then rename), so a
//! crash never leaves a half-written output under the final name.
//!
//! 8-bit conversion matches diffusers: MP4 frames are truncated like `export_to_video`, image formats are rounded
//! like `numpy_to_pil` (see [`Rounding`]).

mod atomic;
mod error;
mod format;
mod frames;
mod gif_file;
mod h264;
mod metadata;
mod mp4;
mod png_frames;
mod tensor_file;
mod webp_file;

use std::path::Path;

pub use error::{Error, Result};
pub use format::{OutputFormat, check_output_path};
pub use frames::{Frames, MAX_FPS, MAX_SIDE, Rounding};
pub use metadata::Metadata;
pub use tensor_file::FRAMES_TENSOR;

/// Writes `frames` to `path` in the format its extension names, with `metadata` embedded (MP4 tags, GIF comment,
/// `metadata.json` beside PNG frames, safetensors header). `metadata`'s width, height, frame count and fps must
/// match `frames`. The output appears under its final name only once complete; an existing file is replaced,
/// an existing PNG folder must be empty.
pub fn write_output(path: &Path, frames: &Frames, metadata: &Metadata) -> Result<()> {
    let format = check_output_path(path)?;
    metadata.check_matches(frames)?;
    match format {
        OutputFormat::Mp4 => {
            let video = h264::encode(frames)?;
            atomic::write_file(path, |out| {
                mp4::write_mp4(
                    out,
                    path,
                    &video,
                    frames.width(),
                    frames.height(),
                    frames.fps(),
                    metadata,
                )
            })
        }
        OutputFormat::Gif => {
            atomic::write_file(path, |out| gif_file::write_gif(out, frames, metadata))
        }
        OutputFormat::WebP => {
            atomic::write_file(path, |out| webp_file::write_webp(out, path, frames))
        }
        OutputFormat::Safetensors => atomic::write_file(path, |out| {
            tensor_file::write_safetensors(out, path, frames, metadata)
        }),
        OutputFormat::PngFrames => atomic::write_folder(path, |folder| {
            png_frames::write_png_folder(folder, frames, metadata)
        }),
    }
}

/// The first frame as PNG bytes (8-bit, rounded like diffusers' `numpy_to_pil`), for previews.
pub fn thumbnail_png(frames: &Frames) -> Result<Vec<u8>> {
    let rgb = frames.frame_rgb8(0, Rounding::Nearest).unwrap_or_default();
    let mut bytes = Vec::new();
    png_frames::encode_png(&mut bytes, &rgb, frames.width(), frames.height())?;
    Ok(bytes)
}
