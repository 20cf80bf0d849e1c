//! GELU with the tanh approximation (PyTorch's `gelu(approximate="tanh")`), split across the CPU
//! cores for f32.
//!
//! candle's CPU `gelu` maps one element at a time on one thread with `tanhf`; at the DiT's FFN
//! widths that single-threaded pass took a sixth of a forward. Here f32 CPU tensors are computed
//! in parallel chunks with `tanh(u) = sign(u) * (1 - 2 / (exp(2|u|) + 1))`; other dtypes and
//! devices use candle's op.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};

/// Below this many elements one thread does the work.
const PARALLEL_MIN: usize = 1 << 16;

/// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
fn gelu_tanh_scalar(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let u = SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x);
    let t = 1.0 - 2.0 / ((2.0 * u.abs()).exp() + 1.0);
    0.5 * x * (1.0 + t.copysign(u))
}

struct GeluTanh;

impl CustomOp1 for GeluTanh {
    fn name(&self) -> &'static str {
        "gelu-tanh-parallel"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(data), Some((start, end))) = (storage, layout.contiguous_offsets())
        else {
            candle_core::bail!("gelu-tanh-parallel takes contiguous f32 input");
        };
        let src = &data[start..end];
        let mut out = vec![0f32; src.len()];
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        if threads == 1 || src.len() < PARALLEL_MIN {
            for (o, &x) in out.iter_mut().zip(src) {
                *o = gelu_tanh_scalar(x);
            }
        } else {
            let chunk = src.len().div_ceil(threads);
            std::thread::scope(|scope| {
                for (o, s) in out.chunks_mut(chunk).zip(src.chunks(chunk)) {
                    scope.spawn(move || {
                        for (o, &x) in o.iter_mut().zip(s) {
                            *o = gelu_tanh_scalar(x);
                        }
                    });
                }
            });
        }
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// GELU, tanh approximation, as PyTorch computes it (max |diff| ~1e-7 in f32).
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1_no_bwd(&GeluTanh)
    } else {
        x.gelu()
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    #[test]
    fn matches_candles_gelu_serial_and_parallel() {
        for n in [1000, PARALLEL_MIN * 3 + 7] {
            let x = Tensor::randn(0f32, 4.0, n, &Device::Cpu).expect("x");
            let want = x.gelu().expect("candle");
            let got = gelu_tanh(&x).expect("ours");
            let d = (got - want)
                .and_then(|d| d.abs()?.max(0)?.to_scalar::<f32>())
                .expect("diff");
            assert!(d < 1e-6, "n={n}: max |diff| {d}");
        }
        let edge = Tensor::new(
            &[0f32, -0.0, 1e-8, -1e-8, 30.0, -30.0, 1e30, -1e30],
            &Device::Cpu,
        )
        .expect("edge");
        let got = gelu_tanh(&edge).expect("edge").to_vec1::<f32>().expect("v");
        assert_eq!(got[4], 30.0);
        assert_eq!(got[5], 0.0);
        assert_eq!(got[6], 1e30);
        assert!(got.iter().all(|v| v.is_finite()), "{got:?}");
    }

    #[test]
    fn strided_and_half_inputs_work() {
        let x = Tensor::randn(0f32, 1.0, (4, 6), &Device::Cpu).expect("x");
        let t = x.t().expect("t");
        let d = (gelu_tanh(&t).expect("ours") - t.gelu().expect("candle"))
            .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>())
            .expect("diff");
        assert!(d < 1e-6);
        let h = x.to_dtype(candle_core::DType::BF16).expect("bf16");
        assert_eq!(
            gelu_tanh(&h).expect("bf16").dtype(),
            candle_core::DType::BF16
        );
    }
}
