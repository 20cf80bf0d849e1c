//! Lossless WebP output: a still VP8L image for one frame, an animated WebP (VP8X + ANIM + one ANMF per frame,
//! each holding a VP8L bitstream) for more.

use std::io::Write;
use std::path::Path;

use image_webp::{ColorType, WebPEncoder};

use crate::error::{Error, Result};
use crate::frames::{Frames, Rounding};

/// Writes `frames` as lossless WebP, animated (looping forever) when there is more than one frame.
pub(crate) fn write_webp(out: &mut dyn Write, path: &Path, frames: &Frames) -> Result<()> {
    let (width, height) = (frames.width() as u32, frames.height() as u32);
    let io = Error::writing(path);
    if frames.frame_count() == 1 {
        let rgb = frames
            .rgb8_frames(Rounding::Nearest)
            .next()
            .unwrap_or_default();
        let mut still = Vec::new();
        encode_still(&rgb, width, height, &mut still)?;
        return out.write_all(&still).map_err(&io);
    }

    let frame_ms = (1000 + frames.fps() / 2) / frames.fps();
    let mut body = Vec::new();
    // VP8X: animation flag, canvas size minus one (24-bit little-endian each).
    let mut vp8x = vec![0x02, 0, 0, 0];
    vp8x.extend_from_slice(&u24(width - 1));
    vp8x.extend_from_slice(&u24(height - 1));
    push_chunk(&mut body, b"VP8X", &vp8x);
    // ANIM: opaque black background (BGRA), loop forever.
    push_chunk(&mut body, b"ANIM", &[0, 0, 0, 0xff, 0, 0]);
    for rgb in frames.rgb8_frames(Rounding::Nearest) {
        let mut still = Vec::new();
        encode_still(&rgb, width, height, &mut still)?;
        let vp8l = vp8l_chunk(&still)?;
        let mut anmf = Vec::with_capacity(16 + vp8l.len());
        anmf.extend_from_slice(&u24(0));
        anmf.extend_from_slice(&u24(0));
        anmf.extend_from_slice(&u24(width - 1));
        anmf.extend_from_slice(&u24(height - 1));
        anmf.extend_from_slice(&u24(frame_ms));
        // Do not blend (bit 1); no disposal: every frame covers the whole canvas.
        anmf.push(0x02);
        anmf.extend_from_slice(vp8l);
        push_chunk(&mut body, b"ANMF", &anmf);
    }
    let riff_size = u32::try_from(body.len() + 4)
        .map_err(|_| Error::WebP("animation larger than 4 GiB".into()))?;
    out.write_all(b"RIFF").map_err(&io)?;
    out.write_all(&riff_size.to_le_bytes()).map_err(&io)?;
    out.write_all(b"WEBP").map_err(&io)?;
    out.write_all(&body).map_err(&io)
}

fn encode_still(rgb: &[u8], width: u32, height: u32, out: &mut Vec<u8>) -> Result<()> {
    WebPEncoder::new(out)
        .encode(rgb, width, height, ColorType::Rgb8)
        .map_err(|e| Error::WebP(e.to_string()))
}

/// The whole `VP8L` chunk (header, payload, padding) of a simple-format WebP file.
fn vp8l_chunk(still: &[u8]) -> Result<&[u8]> {
    let bad = || Error::WebP("encoder output is not a simple VP8L WebP".into());
    if still.get(0..4) != Some(b"RIFF")
        || still.get(8..12) != Some(b"WEBP")
        || still.get(12..16) != Some(b"VP8L")
    {
        return Err(bad());
    }
    let size_bytes: [u8; 4] = still
        .get(16..20)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(bad)?;
    let size = u32::from_le_bytes(size_bytes) as usize;
    still.get(12..20 + size + size % 2).ok_or_else(bad)
}

fn push_chunk(out: &mut Vec<u8>, fourcc: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(fourcc);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    if data.len() % 2 == 1 {
        out.push(0);
    }
}

fn u24(v: u32) -> [u8; 3] {
    let [a, b, c, _] = v.to_le_bytes();
    [a, b, c]
}
