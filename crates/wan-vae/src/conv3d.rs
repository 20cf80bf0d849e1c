//! The causal 3D convolution of the Wan-VAE, built on the fused [`Conv2d`], and the frame cache that lets
//! a video stream through it chunk by chunk.
//!
//! Activations inside the VAE are laid out frames-first, `[B, T, C, H, W]`, so that folding frames
//! into the batch for conv2d is a free reshape. A kernel with `kt` temporal taps becomes one conv2d
//! over `kt * C` input channels, each block of `C` read from its own frame (a cached history
//! frame, a frame of the chunk, or zeros for the causal padding) without copying the frames
//! together; the weight `[O, C, kt, kh, kw]` is reordered to `[O, kt * C, kh, kw]` at load time.

use candle_core::{IndexOp, Result, Tensor};
use candle_nn::VarBuilder;

use crate::conv2d::Conv2d;

/// How many trailing input frames a temporal convolution keeps between chunks (`CACHE_T`).
pub const CACHE_FRAMES: usize = 2;

/// What one cached layer remembers between chunks.
#[derive(Debug, Clone, Default)]
pub enum CacheSlot {
    /// Nothing seen yet.
    #[default]
    Fresh,
    /// The first chunk went through without being remembered (the 3D upsampler's first frame).
    Primed,
    /// The trailing input frames of the previous chunks, `[B, t, C, H, W]` with `t <= CACHE_FRAMES`.
    Frames(Tensor),
}

/// The per-layer frame caches of one encoder or decoder pass, visited in a fixed order per chunk.
#[derive(Debug, Default)]
pub struct FeatureCache {
    slots: Vec<CacheSlot>,
    next: usize,
}

impl FeatureCache {
    /// An empty cache (the state before the first chunk).
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a new chunk: layers will be visited again from the first.
    pub fn start_chunk(&mut self) {
        self.next = 0;
    }

    /// The next layer's slot, created on first use.
    pub fn next_slot(&mut self) -> &mut CacheSlot {
        if self.next == self.slots.len() {
            self.slots.push(CacheSlot::Fresh);
        }
        let slot = &mut self.slots[self.next];
        self.next += 1;
        slot
    }
}

/// Keeps the last [`CACHE_FRAMES`] frames of `history ++ x` as an owned copy (not a view that would
/// keep the whole chunk alive).
fn trailing_frames(history: Option<&Tensor>, x: &Tensor) -> Result<Tensor> {
    let t = x.dim(1)?;
    let tail = if t >= CACHE_FRAMES {
        x.narrow(1, t - CACHE_FRAMES, CACHE_FRAMES)?
    } else {
        match history {
            Some(h) => {
                let keep = (CACHE_FRAMES - t).min(h.dim(1)?);
                let h_tail = h.narrow(1, h.dim(1)? - keep, keep)?;
                Tensor::cat(&[&h_tail, x], 1)?
            }
            None => x.clone(),
        }
    };
    tail.copy()
}

/// A 3D convolution, causal in time: `2 * pad_t` zero frames in front and none behind, replaced by
/// cached frames of the previous chunk when there are some. Spatial padding is symmetric.
#[derive(Debug, Clone)]
pub struct CausalConv3d {
    /// The spatial convolution over `kt * C` channels (weight `[O, kt * C, kh, kw]`, taps major).
    conv: Conv2d,
    in_channels: usize,
    taps: usize,
    front_pad: usize,
    stride_t: usize,
}

impl CausalConv3d {
    /// Loads `weight` `[out, in, kt, kh, kw]` and `bias` `[out]` from `vb`.
    ///
    /// `padding` is `(pad_t, pad_hw)` as given to the reference `Conv3d` (time padding becomes
    /// `2 * pad_t` frames in front).
    pub fn load(
        vb: VarBuilder,
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize, usize),
        stride_t: usize,
        padding: (usize, usize),
    ) -> Result<Self> {
        let (kt, kh, kw) = kernel;
        let weight = vb.get((out_channels, in_channels, kt, kh, kw), "weight")?;
        let bias = vb.get(out_channels, "bias")?;
        let weight = weight
            .permute((0, 2, 1, 3, 4))?
            .reshape((out_channels, kt * in_channels, kh, kw))?
            .contiguous()?;
        Ok(Self {
            conv: Conv2d::new(&weight, Some(&bias), padding.1)?,
            in_channels,
            taps: kt,
            front_pad: 2 * padding.0,
            stride_t,
        })
    }

    /// Convolves `x` `[B, T, C, H, W]`, preceded by `history` frames when the layer pads in time.
    pub fn forward(&self, x: &Tensor, history: Option<&Tensor>) -> Result<Tensor> {
        let (b, t, c, h, w) = x.dims5()?;
        if c != self.in_channels {
            candle_core::bail!(
                "causal conv3d expects {} input channels, got {c}",
                self.in_channels
            );
        }
        // The padded frame sequence of each batch item, as (input, frame) sources for the conv:
        // zero frames, then the history frames (input 1), then the chunk's frames (input 0).
        let history = match history {
            Some(hist) if self.front_pad > 0 => Some(hist),
            _ => None,
        };
        let hist_t = match history {
            Some(hist) => {
                let (hb, ht, hc, hh, hw) = hist.dims5()?;
                if (hb, hc, hh, hw) != (b, c, h, w) {
                    candle_core::bail!(
                        "causal conv3d history {:?} does not match its chunk {:?}",
                        hist.dims(),
                        x.dims()
                    );
                }
                ht.min(self.front_pad)
            }
            None => 0,
        };
        let zeros = self.front_pad - hist_t;
        let t_in = zeros + hist_t + t;
        if t_in < self.taps {
            candle_core::bail!(
                "causal conv3d needs at least {} frames, got {t_in}",
                self.taps
            );
        }
        let t_out = (t_in - self.taps) / self.stride_t + 1;
        let hist_skip = history.map_or(Ok(0), |hist| hist.dim(1))? - hist_t;
        let source = |bi: usize, s: usize| -> Option<(usize, usize)> {
            if s < zeros {
                None
            } else if s < zeros + hist_t {
                let ht = hist_t + hist_skip;
                Some((1, bi * ht + hist_skip + s - zeros))
            } else {
                Some((0, bi * t + s - zeros - hist_t))
            }
        };
        let mut sources = Vec::with_capacity(b * t_out * self.taps);
        for bi in 0..b {
            for to in 0..t_out {
                for k in 0..self.taps {
                    sources.push(source(bi, to * self.stride_t + k));
                }
            }
        }
        let x = x.reshape((b * t, c, h, w))?;
        let hist = history
            .map(|hist| {
                let (hb, ht, ..) = hist.dims5()?;
                hist.reshape((hb * ht, c, h, w))
            })
            .transpose()?;
        let inputs: Vec<&Tensor> = std::iter::once(&x).chain(hist.as_ref()).collect();
        let y = self.conv.forward_frames(&inputs, &sources, self.taps, 1)?;
        let (_, o, ho, wo) = y.dims4()?;
        y.reshape((b, t_out, o, ho, wo))
    }

    /// Convolves one chunk, reading and updating this layer's next slot of `cache`.
    pub fn forward_cached(&self, x: &Tensor, cache: &mut FeatureCache) -> Result<Tensor> {
        self.forward_slot(x, cache.next_slot())
    }

    /// Convolves one chunk with the history held in `slot`, then stores this chunk's trailing frames there.
    pub fn forward_slot(&self, x: &Tensor, slot: &mut CacheSlot) -> Result<Tensor> {
        let history = match slot {
            CacheSlot::Frames(h) => Some(h.clone()),
            CacheSlot::Fresh | CacheSlot::Primed => None,
        };
        let keep = trailing_frames(history.as_ref(), x)?;
        let y = self.forward(x, history.as_ref())?;
        *slot = CacheSlot::Frames(keep);
        Ok(y)
    }
}

/// Folds frames into the batch: `[B, T, C, H, W]` -> `[B * T, C, H, W]`.
pub fn fold_frames(x: &Tensor) -> Result<(Tensor, usize, usize)> {
    let (b, t, c, h, w) = x.dims5()?;
    Ok((x.reshape((b * t, c, h, w))?, b, t))
}

/// Unfolds frames from the batch: `[B * T, C, H, W]` -> `[B, T, C, H, W]`.
pub fn unfold_frames(x: &Tensor, b: usize, t: usize) -> Result<Tensor> {
    let (_, c, h, w) = x.dims4()?;
    x.reshape((b, t, c, h, w))
}

/// The last frame of `[B, T, C, H, W]` as `[B, 1, C, H, W]`.
pub fn last_frame(x: &Tensor) -> Result<Tensor> {
    let t = x.dim(1)?;
    x.i((.., t - 1..t))
}
