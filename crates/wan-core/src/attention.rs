//! Scaled-dot-product attention on the CPU, tiled over query blocks.
//!
//! `softmax(q kᵀ · scale) v` over `[batch, heads, len, head_dim]` tensors without ever holding the
//! full `len_q × len_k` score matrix of every head at once: queries are processed in row blocks
//! (and heads in groups) so that one tile of scores stays under [`TILE_SCORES`] elements. A 480p,
//! 81-frame Wan latent (32,760 tokens) then needs a few hundred MB for scores, not tens of GB.
//!
//! Half-precision inputs (bf16, f16) are widened to f32 for the scores and the softmax, as PyTorch's
//! CPU attention accumulates in f32, and the result is narrowed back to the input dtype.

use candle_core::{DType, Result, Tensor, bail};

/// The most score elements (`heads × rows × len_k`) one tile may hold: 2^25 f32 values, 128 MiB.
pub const TILE_SCORES: usize = 1 << 25;

/// Attention over `q: [B, H, Lq, D]`, `k: [B, H, Lk, D]`, `v: [B, H, Lk, Dv]`; returns `[B, H, Lq, Dv]`.
///
/// `scale` multiplies the scores (usually `1/sqrt(D)`). No mask: every query sees every key.
/// Errors when the shapes disagree (batch, heads, key length, or q/k head width).
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    tiled(q, k, v, scale, TILE_SCORES)
}

/// [`attention`] with tiles of at most `tile` score elements.
fn tiled(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, tile: usize) -> Result<Tensor> {
    let (b, h, lq, d) = q.dims4()?;
    let (kb, kh, lk, kd) = k.dims4()?;
    let (vb, vh, vl, dv) = v.dims4()?;
    if (kb, kh, kd) != (b, h, d) || (vb, vh, vl) != (b, h, lk) {
        bail!(
            "attention: inconsistent shapes q {:?}, k {:?}, v {:?} (want q [B,H,Lq,D], k [B,H,Lk,D], v [B,H,Lk,Dv])",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    let out_dtype = q.dtype();
    let work = match out_dtype {
        DType::F64 => DType::F64,
        _ => DType::F32,
    };
    let bh = b * h;
    let q = (q.to_dtype(work)?.reshape((bh, lq, d))? * scale)?;
    // kᵀ laid out contiguously once, so every score product is a plain (non-transposed) GEMM.
    let kt = k
        .to_dtype(work)?
        .reshape((bh, lk, d))?
        .transpose(1, 2)?
        .contiguous()?;
    let v = v.to_dtype(work)?.reshape((bh, lk, dv))?.contiguous()?;

    let rows = (tile / lk.max(1)).clamp(1, lq.max(1));
    let heads = (tile / (rows * lk.max(1))).clamp(1, bh.max(1));
    let mut head_groups = Vec::with_capacity(bh.div_ceil(heads));
    for h0 in (0..bh).step_by(heads) {
        let hn = heads.min(bh - h0);
        let (kt_g, v_g) = (kt.narrow(0, h0, hn)?, v.narrow(0, h0, hn)?);
        let q_g = q.narrow(0, h0, hn)?;
        let mut blocks = Vec::with_capacity(lq.div_ceil(rows));
        for r0 in (0..lq).step_by(rows) {
            let rn = rows.min(lq - r0);
            let scores = q_g.narrow(1, r0, rn)?.matmul(&kt_g)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            blocks.push(probs.matmul(&v_g)?);
        }
        head_groups.push(Tensor::cat(&blocks, 1)?);
    }
    Tensor::cat(&head_groups, 0)?
        .reshape((b, h, lq, dv))?
        .to_dtype(out_dtype)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The textbook formula, materialising every score.
    fn naive(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Tensor {
        let s = (q.matmul(&k.t().expect("t")).expect("qk") * scale).expect("scale");
        candle_nn::ops::softmax_last_dim(&s)
            .expect("softmax")
            .matmul(v)
            .expect("pv")
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .and_then(|d| d.abs())
            .and_then(|d| d.flatten_all())
            .and_then(|d| d.max(0))
            .and_then(|d| d.to_scalar::<f32>())
            .expect("diff")
    }

    #[test]
    fn matches_the_naive_formula_across_tiles() {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (2, 3, 37, 8), &dev).expect("q");
        let k = Tensor::randn(0f32, 1.0, (2, 3, 29, 8), &dev).expect("k");
        let v = Tensor::randn(0f32, 1.0, (2, 3, 29, 5), &dev).expect("v");
        let out = attention(&q, &k, &v, 0.3).expect("attention");
        assert_eq!(out.dims(), &[2, 3, 37, 5]);
        assert!(max_diff(&out, &naive(&q, &k, &v, 0.3)) < 1e-5);
    }

    #[test]
    fn small_tiles_split_rows_and_heads_and_stay_exact() {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (2, 3, 23, 4), &dev).expect("q");
        let k = Tensor::randn(0f32, 1.0, (2, 3, 31, 4), &dev).expect("k");
        let v = Tensor::randn(0f32, 1.0, (2, 3, 31, 6), &dev).expect("v");
        let reference = naive(&q, &k, &v, 0.7);
        // 100 scores: 3 rows of one head per tile; 2000: all 23 rows of 2 heads per tile.
        for tile in [100, 2000] {
            let out = tiled(&q, &k, &v, 0.7, tile).expect("attention");
            assert!(max_diff(&out, &reference) < 1e-5, "tile {tile}");
        }
    }

    #[test]
    fn half_inputs_come_back_in_their_dtype() {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (1, 2, 9, 4), &dev).expect("q");
        let out = attention(
            &q.to_dtype(DType::BF16).expect("bf16"),
            &q.to_dtype(DType::BF16).expect("bf16"),
            &q.to_dtype(DType::BF16).expect("bf16"),
            0.5,
        )
        .expect("attention");
        assert_eq!(out.dtype(), DType::BF16);
        let reference = naive(&q, &q, &q, 0.5);
        assert!(max_diff(&out.to_dtype(DType::F32).expect("f32"), &reference) < 2e-2);
    }

    #[test]
    fn mismatched_shapes_are_an_error() {
        let dev = Device::Cpu;
        let q = Tensor::zeros((1, 2, 4, 8), DType::F32, &dev).expect("q");
        let k = Tensor::zeros((1, 2, 5, 6), DType::F32, &dev).expect("k");
        let err = attention(&q, &k, &k, 1.0)
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("inconsistent shapes"), "{err}");
    }
}
