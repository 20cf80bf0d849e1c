//! The 3D rotary position embedding of Wan: each head's channel pairs are split between the
//! frame, row and column index of the token's patch.
//!
//! For head width `d`, the row and column axes get `2 * (d / 6)` channels each and the frame axis
//! the rest (128 -> 44 + 42 + 42). Axis `a` with `n` channels rotates pair `j` by
//! `pos * theta^(-2j / n)`; angles are computed in f64, as in the reference, then stored as f32.

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

/// Rotary tables for a head width, independent of the latent size.
#[derive(Debug, Clone)]
pub struct Rope3d {
    /// Channels of the frame, row and column axes.
    axis_dims: [usize; 3],
    max_len: usize,
    theta: f64,
}

impl Rope3d {
    /// The rotary embedding for heads of width `head_dim` (even) over grids of at most `max_len`
    /// patches along each axis, with base `theta` (10000 in Wan).
    pub fn new(head_dim: usize, max_len: usize, theta: f64) -> Self {
        let hw = 2 * (head_dim / 6);
        Self {
            axis_dims: [head_dim - 2 * hw, hw, hw],
            max_len,
            theta,
        }
    }

    /// Channels given to the frame, row and column axes.
    pub fn axis_dims(&self) -> [usize; 3] {
        self.axis_dims
    }

    /// Per-token `(cos, sin)` tables, each `[f * h * w, head_dim / 2]`, for a patch grid of
    /// `grid = (frames, rows, columns)` with tokens in (frame, row, column) row-major order.
    pub fn tables(
        &self,
        grid: (usize, usize, usize),
        dtype: DType,
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let (f, h, w) = grid;
        let extent = f.max(h).max(w);
        if extent > self.max_len {
            return Err(Error::Input {
                input: "latents",
                expected: format!(
                    "at most {} patches along each axis (rope_max_seq_len)",
                    self.max_len
                ),
                got: vec![f, h, w],
            });
        }
        // angles[axis][pos][pair]
        let angles: Vec<Vec<Vec<f64>>> = self
            .axis_dims
            .iter()
            .zip([f, h, w])
            .map(|(&dim, len)| {
                let freqs: Vec<f64> = (0..dim / 2)
                    .map(|j| 1.0 / self.theta.powf((2 * j) as f64 / dim as f64))
                    .collect();
                (0..len)
                    .map(|p| freqs.iter().map(|fr| p as f64 * fr).collect())
                    .collect()
            })
            .collect();
        let half: usize = self.axis_dims.iter().sum::<usize>() / 2;
        let tokens = f * h * w;
        let mut cos = Vec::with_capacity(tokens * half);
        let mut sin = Vec::with_capacity(tokens * half);
        for fi in 0..f {
            for hi in 0..h {
                for wi in 0..w {
                    for (axis, pos) in [fi, hi, wi].into_iter().enumerate() {
                        for &a in &angles[axis][pos] {
                            cos.push(a.cos() as f32);
                            sin.push(a.sin() as f32);
                        }
                    }
                }
            }
        }
        let cos = Tensor::from_vec(cos, (tokens, half), device)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, (tokens, half), device)?.to_dtype(dtype)?;
        Ok((cos, sin))
    }
}

/// Rotates channel pairs `(2j, 2j + 1)` of `x: [B, heads, L, head_dim]` (contiguous) by the
/// per-token tables from [`Rope3d::tables`].
pub fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::rotary_emb::rope_i(x, cos, sin)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_128_splits_44_42_42() {
        assert_eq!(Rope3d::new(128, 1024, 1e4).axis_dims(), [44, 42, 42]);
        assert_eq!(Rope3d::new(16, 1024, 1e4).axis_dims(), [8, 4, 4]);
    }

    #[test]
    fn rotation_matches_complex_multiplication() {
        // Token (frame 1, row 2, column 0) of a 2 x 3 x 1 grid, head width 12 (axes 4 + 4 + 4).
        let rope = Rope3d::new(12, 16, 10000.0);
        let (cos, sin) = rope
            .tables((2, 3, 1), DType::F32, &Device::Cpu)
            .expect("tables");
        let x = Tensor::arange(0f32, 6.0 * 12.0, &Device::Cpu)
            .and_then(|t| t.reshape((1, 1, 6, 12)))
            .expect("x");
        let y = apply(&x, &cos, &sin).expect("rope");
        let token = 3 + 2; // frame 1 (3 tokens per frame), row 2
        let rows = |t: &Tensor| {
            t.reshape((6, 12))
                .and_then(|t| t.to_vec2::<f32>())
                .expect("rows")
        };
        let (got, src) = (rows(&y)[token].clone(), rows(&x)[token].clone());
        // pairs: frame axis pairs 0,1 at pos 1; row pairs 2,3 at pos 2; column pairs 4,5 at pos 0.
        let pos = [1.0, 1.0, 2.0, 2.0, 0.0, 0.0];
        for j in 0..6 {
            let freq = 1.0 / 10000f64.powf((2 * (j % 2)) as f64 / 4.0);
            let a = pos[j] * freq;
            let (re, im) = (src[2 * j] as f64, src[2 * j + 1] as f64);
            let want = (re * a.cos() - im * a.sin(), re * a.sin() + im * a.cos());
            assert!((got[2 * j] as f64 - want.0).abs() < 1e-4, "pair {j}");
            assert!((got[2 * j + 1] as f64 - want.1).abs() < 1e-4, "pair {j}");
        }
    }

    #[test]
    fn grids_beyond_the_table_are_an_error() {
        let err = Rope3d::new(128, 8, 1e4)
            .tables((2, 9, 3), DType::F32, &Device::Cpu)
            .expect_err("too long")
            .to_string();
        assert!(err.contains("rope_max_seq_len"), "{err}");
    }
}
