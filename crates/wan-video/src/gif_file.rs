//! Animated GIF output: one locally quantised palette per frame (NeuQuant), looping forever.

use std::io::Write;

use crate::error::{Error, Result};
use crate::frames::{Frames, Rounding};
use crate::metadata::Metadata;

/// NeuQuant sampling factor: 1 is slowest/best, 30 fastest; 10 is the gif crate's recommended balance.
const QUANTISER_SPEED: i32 = 10;

/// Frame delay in GIF units (10 ms), as PIL computes it from diffusers' `export_to_gif` (`duration = 1000 // fps`
/// ms, stored as `duration // 10`), but at least one unit.
pub(crate) fn delay_centiseconds(fps: u32) -> u16 {
    ((1000 / fps.max(1)) / 10).max(1) as u16
}

/// Writes `frames` as a looping GIF with the metadata JSON in a comment extension.
pub(crate) fn write_gif(out: &mut dyn Write, frames: &Frames, metadata: &Metadata) -> Result<()> {
    let side = |what, v: usize| {
        u16::try_from(v).map_err(|_| Error::OutOfRange {
            what,
            got: v,
            allowed: "at most 65535 for GIF".into(),
        })
    };
    let (width, height) = (
        side("width", frames.width())?,
        side("height", frames.height())?,
    );
    let mut encoder = gif::Encoder::new(out, width, height, &[])?;
    encoder.set_repeat(gif::Repeat::Infinite)?;
    encoder.write_raw_extension(
        gif::AnyExtension(gif::Extension::Comment as u8),
        &[metadata.to_json()?.as_bytes()],
    )?;
    let delay = delay_centiseconds(frames.fps());
    for rgb in frames.rgb8_frames(Rounding::Nearest) {
        let mut frame = gif::Frame::from_rgb_speed(width, height, &rgb, QUANTISER_SPEED);
        frame.delay = delay;
        encoder.write_frame(&frame)?;
    }
    Ok(())
}
