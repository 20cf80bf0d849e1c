//! Decoded video frames: f32 RGB in [0, 1], laid out [frames, height, width, 3], plus the frame rate.

use crate::error::{Error, Result};

/// Largest accepted frame width or height (WebP's canvas limit; H.264 has its own, lower, limit).
pub const MAX_SIDE: usize = 16_383;
/// Largest accepted frame rate.
pub const MAX_FPS: u32 = 120;

/// How f32 samples in [0, 1] become 8-bit values (both clamp to [0, 1] first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// `round(x * 255)` with ties to even, as diffusers' `numpy_to_pil` (`(x * 255).round().astype("uint8")`)
    /// does for PIL images, PNG frames and GIFs.
    Nearest,
    /// `floor(x * 255)`, as diffusers' `export_to_video` (`(frame * 255).astype(np.uint8)`) does for MP4.
    Truncate,
}

impl Rounding {
    /// Converts one sample. The product is taken in f32, as numpy does on float32 frames.
    pub fn to_u8(self, x: f32) -> u8 {
        let scaled = x.clamp(0.0, 1.0) * 255.0;
        match self {
            Rounding::Nearest => scaled.round_ties_even() as u8,
            Rounding::Truncate => scaled as u8,
        }
    }
}

/// A clip of RGB frames as the VAE decoder produced them, before 8-bit rounding.
#[derive(Debug, Clone, PartialEq)]
pub struct Frames {
    data: Vec<f32>,
    frames: usize,
    height: usize,
    width: usize,
    fps: u32,
}

impl Frames {
    /// Wraps f32 RGB samples laid out [frames, height, width, 3] with values in [0, 1].
    ///
    /// Fails when the length does not match the dimensions, a dimension or the frame rate is out of range
    /// (1..=[`MAX_SIDE`] pixels, 1..=[`MAX_FPS`] fps, at least one frame), or a sample is NaN/infinite.
    /// Finite samples outside [0, 1] are accepted and clamped when converted to 8 bits.
    pub fn new(
        data: Vec<f32>,
        frames: usize,
        height: usize,
        width: usize,
        fps: u32,
    ) -> Result<Self> {
        check_range("frames", frames, 1, usize::MAX)?;
        check_range("height", height, 1, MAX_SIDE)?;
        check_range("width", width, 1, MAX_SIDE)?;
        check_range("fps", fps as usize, 1, MAX_FPS as usize)?;
        let expected = frames
            .checked_mul(height * width * 3)
            .ok_or_else(|| Error::OutOfRange {
                what: "frames",
                got: frames,
                allowed: "a clip that fits in memory".into(),
            })?;
        if data.len() != expected {
            return Err(Error::DataLength {
                expected,
                got: data.len(),
                frames,
                height,
                width,
            });
        }
        if let Some((index, &value)) = data.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::NonFinite { index, value });
        }
        Ok(Self {
            data,
            frames,
            height,
            width,
            fps,
        })
    }

    /// Builds frames from one video of the VAE decoder's output, laid out [3, frames, height, width] in
    /// [-1, 1], applying diffusers' `VideoProcessor.postprocess_video(output_type="np")`:
    /// `(x / 2 + 0.5).clamp(0, 1)`, then channels last.
    pub fn from_decoder_output(
        data: &[f32],
        frames: usize,
        height: usize,
        width: usize,
        fps: u32,
    ) -> Result<Self> {
        let plane = frames.saturating_mul(height).saturating_mul(width);
        if data.len() != plane.saturating_mul(3) {
            return Err(Error::DataLength {
                expected: plane.saturating_mul(3),
                got: data.len(),
                frames,
                height,
                width,
            });
        }
        let mut out = vec![0.0f32; data.len()];
        for (c, channel) in data.chunks_exact(plane.max(1)).enumerate() {
            for (i, &x) in channel.iter().enumerate() {
                out[i * 3 + c] = (x / 2.0 + 0.5).clamp(0.0, 1.0);
            }
        }
        Self::new(out, frames, height, width, fps)
    }

    /// The samples, [frames, height, width, 3].
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Number of frames.
    pub fn frame_count(&self) -> usize {
        self.frames
    }

    /// Frame height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Frame width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Frames per second.
    pub fn fps(&self) -> u32 {
        self.fps
    }

    /// Frame `index` as 8-bit RGB (height * width * 3 bytes), or `None` past the last frame.
    pub fn frame_rgb8(&self, index: usize, rounding: Rounding) -> Option<Vec<u8>> {
        let len = self.height * self.width * 3;
        let frame = self.data.get(index * len..(index + 1) * len)?;
        Some(frame.iter().map(|&x| rounding.to_u8(x)).collect())
    }

    /// Iterates over all frames as 8-bit RGB.
    pub(crate) fn rgb8_frames(&self, rounding: Rounding) -> impl Iterator<Item = Vec<u8>> + '_ {
        self.data
            .chunks_exact(self.height * self.width * 3)
            .map(move |frame| frame.iter().map(|&x| rounding.to_u8(x)).collect())
    }
}

fn check_range(what: &'static str, got: usize, min: usize, max: usize) -> Result<()> {
    if (min..=max).contains(&got) {
        Ok(())
    } else if max == usize::MAX {
        Err(Error::OutOfRange {
            what,
            got,
            allowed: format!("at least {min}"),
        })
    } else {
        Err(Error::OutOfRange {
            what,
            got,
            allowed: format!("{min}..={max}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_shapes_and_values() {
        assert!(matches!(
            Frames::new(vec![0.0; 11], 1, 2, 2, 16),
            Err(Error::DataLength { expected: 12, .. })
        ));
        assert!(matches!(
            Frames::new(vec![], 0, 2, 2, 16),
            Err(Error::OutOfRange { what: "frames", .. })
        ));
        assert!(matches!(
            Frames::new(vec![0.0; 12], 1, 2, 2, 0),
            Err(Error::OutOfRange { what: "fps", .. })
        ));
        let mut data = vec![0.5; 12];
        data[7] = f32::NAN;
        assert!(matches!(
            Frames::new(data, 1, 2, 2, 16),
            Err(Error::NonFinite { index: 7, .. })
        ));
    }

    #[test]
    fn rounding_modes_clamp_and_differ_as_numpy() {
        assert_eq!(Rounding::Nearest.to_u8(-0.3), 0);
        assert_eq!(Rounding::Nearest.to_u8(1.7), 255);
        // 0.5 / 255 * 255 is 0.5 in f32: numpy rounds half to even.
        assert_eq!(Rounding::Nearest.to_u8(2.5 / 255.0), 2);
        assert_eq!(Rounding::Nearest.to_u8(0.999), 255);
        assert_eq!(Rounding::Truncate.to_u8(0.999), 254);
    }
}
