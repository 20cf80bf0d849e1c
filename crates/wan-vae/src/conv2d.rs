//! Stride-1 2D convolution as im2col + one matrix product per band of output rows.
//!
//! candle's CPU `conv2d` spends most of its time rearranging data at the VAE's large spatial
//! sizes (about a quarter of its matrix-product speed at 128x128). Here each kernel tap of a band
//! of rows is a strided copy of the padded input, the taps are stacked into a
//! `[C * kh * kw, rows * W]` matrix, and the weight `[O, C * kh * kw]` multiplies it in one GEMM. Bands bound the
//! im2col buffer, so memory does not grow with the frame size.

use candle_core::{Result, Tensor};

/// Elements of the im2col buffer of one band (16 MiB in f32: under glibc's largest mmap threshold, so the buffers are reused rather than faulted in afresh).
const BAND_ELEMS: usize = 4 << 20;

/// A 2D convolution with stride 1 and equal zero padding on every side.
#[derive(Debug, Clone)]
pub struct Conv2d {
    /// `[O, C * kh * kw]`, taps in `(c, ky, kx)` order.
    weight: Tensor,
    /// `[1, O, 1, 1]`.
    bias: Option<Tensor>,
    in_channels: usize,
    kernel: (usize, usize),
    padding: usize,
}

impl Conv2d {
    /// Wraps a weight `[O, C, kh, kw]` and an optional bias `[O]`.
    pub fn new(weight: &Tensor, bias: Option<&Tensor>, padding: usize) -> Result<Self> {
        let (o, c, kh, kw) = weight.dims4()?;
        Ok(Self {
            weight: weight.reshape((o, c * kh * kw))?.contiguous()?,
            bias: bias.map(|b| b.reshape((1, o, 1, 1))).transpose()?,
            in_channels: c,
            kernel: (kh, kw),
            padding,
        })
    }

    /// Convolves `x` `[N, C, H, W]` into `[N, O, H + 2p - kh + 1, W + 2p - kw + 1]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let (kh, kw) = self.kernel;
        let p = self.padding;
        if c != self.in_channels || h + 2 * p < kh || w + 2 * p < kw {
            candle_core::bail!(
                "conv2d with {} input channels and a {kh}x{kw} kernel (padding {p}) got input {:?}",
                self.in_channels,
                x.dims()
            );
        }
        let (ho, wo) = (h + 2 * p + 1 - kh, w + 2 * p + 1 - kw);
        let x = x.to_dtype(self.weight.dtype())?;
        let padded = if p > 0 {
            x.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?
        } else {
            x
        };
        let taps = kh * kw;
        let rows_per_band = (BAND_ELEMS / (c * taps * wo).max(1)).clamp(1, ho);
        let o = self.weight.dim(0)?;
        let mut frames = Vec::with_capacity(n);
        for i in 0..n {
            let frame = padded.get(i)?;
            let mut bands = Vec::with_capacity(ho.div_ceil(rows_per_band));
            for r0 in (0..ho).step_by(rows_per_band) {
                let rows = rows_per_band.min(ho - r0);
                let cols = if taps == 1 {
                    frame.narrow(1, r0, rows)?.contiguous()?
                } else {
                    let mut shifted = Vec::with_capacity(taps);
                    for ky in 0..kh {
                        for kx in 0..kw {
                            shifted.push(frame.narrow(1, r0 + ky, rows)?.narrow(2, kx, wo)?);
                        }
                    }
                    Tensor::stack(&shifted, 1)?
                };
                let y = self.weight.matmul(&cols.reshape((c * taps, rows * wo))?)?;
                bands.push(y.reshape((o, rows, wo))?);
            }
            frames.push(Tensor::cat(&bands, 1)?);
        }
        let y = Tensor::stack(&frames, 0)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    #[test]
    fn matches_candle_conv2d_across_bands() {
        let dev = Device::Cpu;
        for (k, p, c, o, h, w) in [(3, 1, 5, 7, 9, 11), (1, 0, 6, 4, 5, 3), (3, 0, 2, 3, 6, 8)] {
            let x = Tensor::randn(0f32, 1.0, (2, c, h, w), &dev).expect("x");
            let wt = Tensor::randn(0f32, 1.0, (o, c, k, k), &dev).expect("w");
            let b = Tensor::randn(0f32, 1.0, o, &dev).expect("b");
            let want = x
                .conv2d(&wt, p, 1, 1, 1)
                .and_then(|y| y.broadcast_add(&b.reshape((1, o, 1, 1))?))
                .expect("candle");
            let conv = Conv2d::new(&wt, Some(&b), p).expect("conv");
            let got = conv.forward(&x).expect("ours");
            assert_eq!(got.dims(), want.dims());
            let d = (got - want)
                .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>())
                .expect("diff");
            assert!(d < 1e-4, "k{k} p{p}: max |diff| {d}");
        }
    }

    #[test]
    fn wrong_channel_count_is_an_error() {
        let dev = Device::Cpu;
        let wt = Tensor::zeros((2, 3, 3, 3), candle_core::DType::F32, &dev).expect("w");
        let conv = Conv2d::new(&wt, None, 1).expect("conv");
        let x = Tensor::zeros((1, 4, 5, 5), candle_core::DType::F32, &dev).expect("x");
        let err = conv.forward(&x).expect_err("channels").to_string();
        assert!(err.contains("3 input channels"), "{err}");
    }
}
