//! H.264 encoding with OpenH264 (Constrained Baseline): RGB -> BT.709 limited-range yuv420p -> NAL units.

use openh264::OpenH264API;
use openh264::Timestamp;
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, RateControlMode, VuiConfig,
};
use openh264::formats::YUVBuffer;

use crate::error::{Error, Result};
use crate::frames::{Frames, Rounding};

/// Bits per pixel per frame the rate control aims at: enough for near-transparent quality on generated video
/// with a Baseline encoder (libx264 at its default CRF 23 lands near 0.1 with a far better toolset).
const BITS_PER_PIXEL: f64 = 0.3;
/// Lowest target bitrate, so tiny clips still look clean.
const MIN_BITRATE: u32 = 500_000;
/// OpenH264's frame size limit (level 5.2), either orientation.
const MAX_LONG_SIDE: usize = 3840;
const MAX_SHORT_SIDE: usize = 2160;

/// One coded picture: its NAL units, each prefixed with a 4-byte big-endian length (MP4 `avc1` layout).
pub(crate) struct Sample {
    /// Length-prefixed NAL units.
    pub data: Vec<u8>,
    /// Whether the picture is an IDR (a sync sample).
    pub sync: bool,
}

/// A coded clip: parameter sets plus one sample per input frame.
pub(crate) struct EncodedVideo {
    /// Sequence parameter set NAL unit (no start code).
    pub sps: Vec<u8>,
    /// Picture parameter set NAL unit (no start code).
    pub pps: Vec<u8>,
    /// One sample per frame, in order.
    pub samples: Vec<Sample>,
}

/// The target bitrate for a clip size and frame rate.
pub(crate) fn target_bitrate(width: usize, height: usize, fps: u32) -> u32 {
    let bits = (width * height) as f64 * f64::from(fps) * BITS_PER_PIXEL;
    (bits.min(f64::from(i32::MAX)) as u32).max(MIN_BITRATE)
}

/// Fails unless the frame size can be coded as yuv420p by OpenH264.
pub(crate) fn check_size(width: usize, height: usize) -> Result<()> {
    for (what, side) in [("width", width), ("height", height)] {
        if side % 2 != 0 {
            return Err(Error::OutOfRange {
                what,
                got: side,
                allowed: "an even number of pixels (MP4 output is yuv420p)".into(),
            });
        }
    }
    let (long, short) = (width.max(height), width.min(height));
    if long > MAX_LONG_SIDE || short > MAX_SHORT_SIDE {
        return Err(Error::OutOfRange {
            what: if width >= height { "width" } else { "height" },
            got: long,
            allowed: format!(
                "at most {MAX_LONG_SIDE}x{MAX_SHORT_SIDE} in either orientation for MP4"
            ),
        });
    }
    Ok(())
}

/// Encodes every frame; 8-bit conversion truncates as diffusers' `export_to_video` does.
pub(crate) fn encode(frames: &Frames) -> Result<EncodedVideo> {
    let (width, height, fps) = (frames.width(), frames.height(), frames.fps());
    check_size(width, height)?;
    let config = EncoderConfig::new()
        .bitrate(BitRate::from_bps(target_bitrate(width, height, fps)))
        .max_frame_rate(FrameRate::from_hz(fps as f32))
        .rate_control_mode(RateControlMode::Quality)
        .complexity(Complexity::High)
        .skip_frames(false)
        .vui(VuiConfig::bt709());
    let mut encoder = Encoder::with_api_config(OpenH264API::from_source(), config)
        .map_err(|e| Error::H264(e.to_string()))?;

    let mut sps: Option<Vec<u8>> = None;
    let mut pps: Option<Vec<u8>> = None;
    let mut samples = Vec::with_capacity(frames.frame_count());
    let mut yuv = vec![0u8; width * height * 3 / 2];
    for (index, rgb) in frames.rgb8_frames(Rounding::Truncate).enumerate() {
        rgb_to_yuv420_bt709(&rgb, width, height, &mut yuv);
        let source = YUVBuffer::from_vec(yuv.clone(), width, height);
        let millis = index as u64 * 1000 / u64::from(fps);
        let stream = encoder
            .encode_at(&source, Timestamp::from_millis(millis))
            .map_err(|e| Error::H264(format!("frame {index}: {e}")))?;
        let sync = match stream.frame_type() {
            FrameType::IDR => true,
            FrameType::I | FrameType::P => false,
            other => {
                return Err(Error::H264(format!(
                    "frame {index}: encoder returned a {other:?} frame"
                )));
            }
        };
        let mut data = Vec::new();
        for layer in (0..stream.num_layers()).filter_map(|l| stream.layer(l)) {
            for nal in (0..layer.nal_count()).filter_map(|n| layer.nal_unit(n)) {
                let nal = strip_start_code(nal);
                match nal.first().map(|b| b & 0x1f) {
                    Some(7) => keep_parameter_set(&mut sps, nal, "SPS")?,
                    Some(8) => keep_parameter_set(&mut pps, nal, "PPS")?,
                    Some(_) => {
                        let len = u32::try_from(nal.len()).map_err(|_| {
                            Error::H264(format!("frame {index}: NAL unit over 4 GiB"))
                        })?;
                        data.extend_from_slice(&len.to_be_bytes());
                        data.extend_from_slice(nal);
                    }
                    None => {}
                }
            }
        }
        if data.is_empty() {
            return Err(Error::H264(format!(
                "frame {index}: encoder produced no picture"
            )));
        }
        samples.push(Sample { data, sync });
    }
    match (sps, pps) {
        (Some(sps), Some(pps)) => Ok(EncodedVideo { sps, pps, samples }),
        _ => Err(Error::H264("encoder produced no SPS/PPS".into())),
    }
}

/// Records the first parameter set; later ones must be identical (one `avcC` describes the whole track).
fn keep_parameter_set(slot: &mut Option<Vec<u8>>, nal: &[u8], name: &str) -> Result<()> {
    match slot {
        None => {
            *slot = Some(nal.to_vec());
            Ok(())
        }
        Some(first) if first.as_slice() == nal => Ok(()),
        Some(_) => Err(Error::H264(format!(
            "encoder changed its {name} mid-stream"
        ))),
    }
}

/// Drops an Annex B start code (`00 00 01` or `00 00 00 01`) from the front of a NAL unit.
fn strip_start_code(nal: &[u8]) -> &[u8] {
    let zeros = nal.iter().take_while(|&&b| b == 0).count();
    if zeros >= 2 && nal.get(zeros) == Some(&1) {
        &nal[zeros + 1..]
    } else {
        nal
    }
}

/// BT.709 limited-range RGB -> Y'CbCr coefficients: rows Y, Cb, Cr applied to R, G, B in [0, 255].
const KR: f32 = 0.2126;
const KB: f32 = 0.0722;
const KG: f32 = 1.0 - KR - KB;

/// Converts packed 8-bit RGB to planar I420 (BT.709, limited range); chroma is the mean of each 2x2 block.
/// `width` and `height` must be even; `out` holds `width * height * 3 / 2` bytes.
pub(crate) fn rgb_to_yuv420_bt709(rgb: &[u8], width: usize, height: usize, out: &mut [u8]) {
    let (luma, chroma) = out.split_at_mut(width * height);
    let (u_plane, v_plane) = chroma.split_at_mut(width * height / 4);
    let y_of = |r: f32, g: f32, b: f32| 16.0 + 219.0 / 255.0 * (KR * r + KG * g + KB * b);
    for (y_row, rgb_row) in luma
        .chunks_exact_mut(width)
        .zip(rgb.chunks_exact(width * 3))
    {
        for (y, px) in y_row.iter_mut().zip(rgb_row.chunks_exact(3)) {
            *y = y_of(f32::from(px[0]), f32::from(px[1]), f32::from(px[2])).round() as u8;
        }
    }
    let half_w = width / 2;
    for cy in 0..height / 2 {
        for cx in 0..half_w {
            let mut sum = [0f32; 3];
            for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                let at = ((2 * cy + dy) * width + 2 * cx + dx) * 3;
                for (c, s) in sum.iter_mut().enumerate() {
                    *s += f32::from(rgb[at + c]);
                }
            }
            let [r, g, b] = sum.map(|s| s / 4.0);
            let luma = KR * r + KG * g + KB * b;
            let cb = 128.0 + 224.0 / 255.0 * (b - luma) / (2.0 * (1.0 - KB));
            let cr = 128.0 + 224.0 / 255.0 * (r - luma) / (2.0 * (1.0 - KR));
            u_plane[cy * half_w + cx] = cb.round().clamp(0.0, 255.0) as u8;
            v_plane[cy * half_w + cx] = cr.round().clamp(0.0, 255.0) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bt709_limited_range_reference_colours() {
        // Rec. ITU-R BT.709 limited range: white (235, 128, 128), black (16, 128, 128), red (63, 102, 240).
        let mut out = [0u8; 6];
        for (rgb, yuv) in [
            ([255u8, 255, 255], [235u8, 128, 128]),
            ([0, 0, 0], [16, 128, 128]),
            ([255, 0, 0], [63, 102, 240]),
        ] {
            let block: Vec<u8> = rgb.iter().copied().cycle().take(12).collect();
            rgb_to_yuv420_bt709(&block, 2, 2, &mut out);
            assert_eq!([out[0], out[4], out[5]], yuv, "rgb {rgb:?}");
        }
    }

    #[test]
    fn rejects_odd_and_oversized_frames() {
        assert!(matches!(
            check_size(63, 48),
            Err(Error::OutOfRange {
                what: "width",
                got: 63,
                ..
            })
        ));
        assert!(matches!(
            check_size(64, 47),
            Err(Error::OutOfRange {
                what: "height",
                got: 47,
                ..
            })
        ));
        assert!(check_size(4096, 64).is_err());
        assert!(check_size(2160, 3840).is_ok());
    }
}
