//! Stride-1 2D convolution over video frames as im2col + GEMM, written straight into the output.
//!
//! candle's CPU `conv2d` spends most of its time rearranging data at the VAE's large spatial
//! sizes (about a quarter of its matrix-product speed at 128x128), and building the causal 3D
//! convolution from tensor ops (concatenating history, padding, stacking the taps) copies every
//! activation several times. Here one pass gathers a band of output rows' input patches from the
//! source frames (zeros stand for the padding and for missing frames) into a
//! `[taps * C * kh * kw, rows * W]` matrix, and one GEMM multiplies the weight
//! `[O, taps * C * kh * kw]` with it into the output, whose rows were first set to the bias. Bands
//! bound the im2col buffer, so memory does not grow with the frame size.
//!
//! The arithmetic is f32 whatever the activations' dtype: half-precision inputs are widened and
//! the result is narrowed back.

use candle_core::{CpuStorage, DType, Device, Result, Storage, Tensor};
use rayon::prelude::*;

/// Elements of the im2col buffer of one band (16 MiB in f32).
const BAND_ELEMS: usize = 4 << 20;

thread_local! {
    /// The im2col buffer, kept between calls: every call overwrites the part it uses.
    static COLS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A 2D convolution with stride 1 and equal zero padding on every side, whose input channels may
/// come in `taps` blocks from different frames (the temporal taps of a 3D convolution).
#[derive(Debug, Clone)]
pub struct Conv2d {
    /// `[O, C * kh * kw]` in f32, taps in `(c, ky, kx)` order.
    weight: Vec<f32>,
    /// `[O]` in f32.
    bias: Option<Vec<f32>>,
    out_channels: usize,
    in_channels: usize,
    kernel: (usize, usize),
    padding: usize,
}

/// The geometry of one convolution call: source frames `[C, H, W]`, seen enlarged `up` times by
/// nearest-neighbour upsampling, and output frames `[O, Ho, Wo]`.
#[derive(Debug, Clone, Copy)]
struct Frame {
    c: usize,
    h: usize,
    w: usize,
    up: usize,
    ho: usize,
    wo: usize,
}

impl Conv2d {
    /// Wraps a weight `[O, C, kh, kw]` and an optional bias `[O]`.
    pub fn new(weight: &Tensor, bias: Option<&Tensor>, padding: usize) -> Result<Self> {
        let (o, c, kh, kw) = weight.dims4()?;
        let to_vec = |t: &Tensor| t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>();
        let bias = bias.map(to_vec).transpose()?;
        if let Some(b) = &bias
            && b.len() != o
        {
            candle_core::bail!("conv2d bias has {} values for {o} output channels", b.len());
        }
        Ok(Self {
            weight: to_vec(weight)?,
            bias,
            out_channels: o,
            in_channels: c,
            kernel: (kh, kw),
            padding,
        })
    }

    /// Convolves `x` `[N, C, H, W]` into `[N, O, H + 2p - kh + 1, W + 2p - kw + 1]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_upsampled(x, 1)
    }

    /// Convolves `x` `[N, C, H, W]` upsampled `up` times (nearest neighbour) without building the
    /// upsampled frames: `[N, O, up * H + 2p - kh + 1, up * W + 2p - kw + 1]`.
    pub fn forward_upsampled(&self, x: &Tensor, up: usize) -> Result<Tensor> {
        let (n, _, _, _) = x.dims4()?;
        let sources: Vec<Option<(usize, usize)>> = (0..n).map(|i| Some((0, i))).collect();
        self.forward_frames(&[x], &sources, 1, up)
    }

    /// Convolves frames gathered from several tensors.
    ///
    /// Each of `inputs` is `[N_i, C / taps, H, W]` (all with the same frame shape and device).
    /// Output frame `f` reads its `k`-th block of `C / taps` input channels from the frame
    /// `sources[f * taps + k]`, given as `(input index, frame index)`, or zeros for `None`; the
    /// frames are seen upsampled `up` times (nearest neighbour). Returns
    /// `[sources.len() / taps, O, Ho, Wo]` in the dtype of the first input.
    pub fn forward_frames(
        &self,
        inputs: &[&Tensor],
        sources: &[Option<(usize, usize)>],
        taps: usize,
        up: usize,
    ) -> Result<Tensor> {
        let first = inputs
            .first()
            .ok_or_else(|| candle_core::Error::Msg("conv2d got no input".into()))?;
        let (_, c, h, w) = first.dims4()?;
        let (kh, kw) = self.kernel;
        let p = self.padding;
        if taps == 0
            || up == 0
            || c * taps != self.in_channels
            || up * h + 2 * p < kh
            || up * w + 2 * p < kw
            || !sources.len().is_multiple_of(taps)
        {
            candle_core::bail!(
                "conv2d with {} input channels and a {kh}x{kw} kernel (padding {p}) got input {:?} in {taps} taps",
                self.in_channels,
                first.dims()
            );
        }
        let dtype = first.dtype();
        let device = first.device().clone();
        if !matches!(device, Device::Cpu) {
            candle_core::bail!("the VAE's convolution runs on the CPU only");
        }
        let inputs = inputs
            .iter()
            .map(|t| {
                if t.dims()[1..] != [c, h, w] {
                    candle_core::bail!(
                        "conv2d inputs differ in shape: {:?} and {:?}",
                        first.dims(),
                        t.dims()
                    );
                }
                t.to_dtype(DType::F32)?.contiguous()
            })
            .collect::<Result<Vec<_>>>()?;
        let guards: Vec<_> = inputs.iter().map(|t| t.storage_and_layout()).collect();
        let mut slices = Vec::with_capacity(guards.len());
        for (storage, layout) in &guards {
            let Storage::Cpu(CpuStorage::F32(data)) = &**storage else {
                candle_core::bail!("conv2d input is not f32 on the CPU");
            };
            let start = layout.start_offset();
            slices.push(&data[start..start + layout.shape().elem_count()]);
        }
        let frame = Frame {
            c,
            h,
            w,
            up,
            ho: up * h + 2 * p + 1 - kh,
            wo: up * w + 2 * p + 1 - kw,
        };
        let frame_len = c * h * w;
        let mut frames = Vec::with_capacity(sources.len());
        for source in sources {
            frames.push(match *source {
                None => None,
                Some((i, f)) => {
                    let data = slices.get(i).ok_or_else(|| {
                        candle_core::Error::Msg(format!("conv2d source names input {i}"))
                    })?;
                    Some(
                        data.get(f * frame_len..(f + 1) * frame_len)
                            .ok_or_else(|| {
                                candle_core::Error::Msg(format!(
                                    "conv2d source names frame {f} of input {i}"
                                ))
                            })?,
                    )
                }
            });
        }
        let n_out = sources.len() / taps;
        let out = self.convolve(&frames, taps, frame);
        drop(guards);
        Tensor::from_vec(out, (n_out, self.out_channels, frame.ho, frame.wo), &device)?
            .to_dtype(dtype)
    }

    /// The convolution proper: `frames` holds `taps` source frames per output frame.
    fn convolve(&self, frames: &[Option<&[f32]>], taps: usize, f: Frame) -> Vec<f32> {
        let (kh, kw) = self.kernel;
        let o = self.out_channels;
        let k_len = taps * f.c * kh * kw;
        let out_len = o * f.ho * f.wo;
        let n_out = frames.len() / taps;
        let mut out = match &self.bias {
            Some(bias) => {
                let mut out = Vec::with_capacity(n_out * out_len);
                for _ in 0..n_out {
                    for b in bias {
                        out.resize(out.len() + f.ho * f.wo, *b);
                    }
                }
                out
            }
            None => vec![0f32; n_out * out_len],
        };
        let rows_per_band = (BAND_ELEMS / (k_len * f.wo).max(1)).clamp(1, f.ho);
        COLS.with_borrow_mut(|cols| {
            cols.resize(cols.len().max(k_len * rows_per_band * f.wo), 0.0);
            self.convolve_into(&mut out, cols, frames, taps, f, rows_per_band);
        });
        out
    }

    /// Runs the bands of every output frame through `cols` and the GEMM into `out`.
    fn convolve_into(
        &self,
        out: &mut [f32],
        cols: &mut [f32],
        frames: &[Option<&[f32]>],
        taps: usize,
        f: Frame,
        rows_per_band: usize,
    ) {
        let (kh, kw) = self.kernel;
        let o = self.out_channels;
        let k_len = taps * f.c * kh * kw;
        let out_len = o * f.ho * f.wo;
        for (i, out_frame) in out.chunks_exact_mut(out_len).enumerate() {
            let sources = &frames[i * taps..(i + 1) * taps];
            for r0 in (0..f.ho).step_by(rows_per_band) {
                let rows = rows_per_band.min(f.ho - r0);
                let n = rows * f.wo;
                let cols = &mut cols[..k_len * n];
                self.gather(sources, f, r0, rows, cols);
                let dst = &mut out_frame[r0 * f.wo..];
                // SAFETY: `dst` holds rows `r0..` of all `o` planes of `ho * wo` values: the
                // `o x n` destination at row stride `ho * wo` ends at `(o - 1) * ho * wo + r0 * wo
                // + n <= o * ho * wo` from the frame start. `self.weight` is `o x k_len` row-major
                // and `cols` is `k_len x n` row-major; none of them overlap.
                unsafe {
                    gemm::gemm(
                        o,
                        n,
                        k_len,
                        dst.as_mut_ptr(),
                        1,
                        (f.ho * f.wo) as isize,
                        self.bias.is_some(),
                        self.weight.as_ptr(),
                        1,
                        k_len as isize,
                        cols.as_ptr(),
                        1,
                        n as isize,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::Rayon(rayon::current_num_threads()),
                    );
                }
            }
        }
    }

    /// Fills `cols` (`[taps * C * kh * kw, rows * Wo]`) with the input patches of output rows
    /// `r0..r0 + rows`.
    fn gather(
        &self,
        sources: &[Option<&[f32]>],
        f: Frame,
        r0: usize,
        rows: usize,
        cols: &mut [f32],
    ) {
        let (kh, kw) = self.kernel;
        let p = self.padding;
        let n = rows * f.wo;
        cols.par_chunks_mut(n).enumerate().for_each(|(row, dst)| {
            let kx = row % kw;
            let ky = (row / kw) % kh;
            let ch = (row / (kw * kh)) % f.c;
            let tap = row / (kw * kh * f.c);
            let Some(src) = sources[tap] else {
                dst.fill(0.0);
                return;
            };
            let plane = &src[ch * f.h * f.w..(ch + 1) * f.h * f.w];
            let (h_up, w_up) = (f.up * f.h, f.up * f.w);
            // Output columns whose (upsampled) input column `ox + kx - p` lies inside the frame.
            let x_lo = p.saturating_sub(kx).min(f.wo);
            let x_hi = (w_up + p).saturating_sub(kx).min(f.wo).max(x_lo);
            for (r, line) in dst.chunks_exact_mut(f.wo).enumerate() {
                let y = r0 + r + ky;
                if y < p || y - p >= h_up {
                    line.fill(0.0);
                    continue;
                }
                let sy = (y - p) / f.up;
                let src_row = &plane[sy * f.w..(sy + 1) * f.w];
                line[..x_lo].fill(0.0);
                if f.up == 1 {
                    line[x_lo..x_hi].copy_from_slice(&src_row[x_lo + kx - p..x_hi + kx - p]);
                } else {
                    // Each source value fills `up` neighbouring columns; the first run may be cut.
                    let first = x_lo + kx - p;
                    let mut out = &mut line[x_lo..x_hi];
                    let mut sx = first / f.up;
                    let mut run = f.up - first % f.up;
                    while !out.is_empty() {
                        let n = run.min(out.len());
                        let (head, rest) = out.split_at_mut(n);
                        head.fill(src_row[sx]);
                        out = rest;
                        sx += 1;
                        run = f.up;
                    }
                }
                line[x_hi..].fill(0.0);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>())
            .expect("diff")
    }

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
            let d = max_diff(&got, &want);
            assert!(d < 1e-4, "k{k} p{p}: max |diff| {d}");
            let unbiased = Conv2d::new(&wt, None, p).expect("conv");
            let want = x.conv2d(&wt, p, 1, 1, 1).expect("candle");
            let d = max_diff(&unbiased.forward(&x).expect("ours"), &want);
            assert!(d < 1e-4, "k{k} p{p} without bias: max |diff| {d}");
        }
    }

    #[test]
    fn taps_from_several_inputs_and_zero_frames() {
        let dev = Device::Cpu;
        let (c, o) = (3, 4);
        let a = Tensor::randn(0f32, 1.0, (2, c, 5, 6), &dev).expect("a");
        let b = Tensor::randn(0f32, 1.0, (1, c, 5, 6), &dev).expect("b");
        let wt = Tensor::randn(0f32, 1.0, (o, 2 * c, 3, 3), &dev).expect("w");
        let conv = Conv2d::new(&wt, None, 1).expect("conv");
        // Output 0: [zeros, a1]; output 1: [a0, b0].
        let sources = [None, Some((0, 1)), Some((0, 0)), Some((1, 0))];
        let got = conv
            .forward_frames(&[&a, &b], &sources, 2, 1)
            .expect("ours");
        let zeros = a.get(0).and_then(|f| f.zeros_like()).expect("zeros");
        let stacked = |x: &Tensor, y: &Tensor| {
            Tensor::cat(&[x, y], 0)
                .and_then(|t| t.unsqueeze(0))
                .expect("cat")
        };
        let input = Tensor::cat(
            &[
                stacked(&zeros, &a.get(1).expect("a1")),
                stacked(&a.get(0).expect("a0"), &b.get(0).expect("b0")),
            ],
            0,
        )
        .expect("input");
        let want = input.conv2d(&wt, 1, 1, 1, 1).expect("candle");
        let d = max_diff(&got, &want);
        assert!(d < 1e-4, "max |diff| {d}");
    }

    #[test]
    fn upsampled_input_matches_upsample_then_conv() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 4, 5), &dev).expect("x");
        let wt = Tensor::randn(0f32, 1.0, (4, 3, 3, 3), &dev).expect("w");
        let b = Tensor::randn(0f32, 1.0, 4, &dev).expect("b");
        let conv = Conv2d::new(&wt, Some(&b), 1).expect("conv");
        let want = x
            .upsample_nearest2d(8, 10)
            .and_then(|u| conv.forward(&u))
            .expect("upsample then conv");
        let got = conv.forward_upsampled(&x, 2).expect("fused");
        assert_eq!(got.dims(), want.dims());
        let d = max_diff(&got, &want);
        assert!(d < 1e-5, "max |diff| {d}");
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
