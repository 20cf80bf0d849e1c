//! Seeded Gaussian noise that reproduces PyTorch's CPU generator.
//!
//! `torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))` draws from an MT19937
//! stream: each float is a 24-bit uniform, and blocks of 16 are turned into normals by Box-Muller
//! (`normal_fill` in ATen's CPU distribution kernels). Reproducing it means `wan generate --seed N`
//! starts from the same noise as a diffusers pipeline given a CPU generator seeded with `N`.

use candle_core::{Device, Shape, Tensor};

/// The 32-bit Mersenne Twister (MT19937), seeded as PyTorch's CPU generator seeds it.
struct Mt19937 {
    state: [u32; 624],
    index: usize,
}

impl Mt19937 {
    fn new(seed: u64) -> Self {
        let mut state = [0u32; 624];
        // PyTorch keeps the low 32 bits of the seed for MT19937.
        state[0] = (seed & 0xffff_ffff) as u32;
        for i in 1..624 {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Self { state, index: 624 }
    }

    fn twist(&mut self) {
        for i in 0..624 {
            let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
            let mut next = self.state[(i + 397) % 624] ^ (y >> 1);
            if y & 1 != 0 {
                next ^= 0x9908_b0df;
            }
            self.state[i] = next;
        }
        self.index = 0;
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// A uniform float in [0, 1) from 24 random bits, as `uniform_real_distribution<float>`.
    fn next_uniform_f32(&mut self) -> f32 {
        ((self.next_u32() & 0x00ff_ffff) as f64 / (1u64 << 24) as f64) as f32
    }

    /// A standard normal from the 53-bit double path PyTorch uses for tensors under 16 elements.
    fn next_normal_f64(&mut self, cached: &mut Option<f64>) -> f64 {
        if let Some(v) = cached.take() {
            return v;
        }
        let u1 = self.next_uniform_f64();
        let u2 = self.next_uniform_f64();
        let r = (-2.0 * (1.0 - u2).ln()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u1;
        *cached = Some(r * theta.sin());
        r * theta.cos()
    }

    fn next_uniform_f64(&mut self) -> f64 {
        let hi = self.next_u32() as u64;
        let lo = self.next_u32() as u64;
        let v = (hi << 32) | lo;
        (v & ((1u64 << 53) - 1)) as f64 / (1u64 << 53) as f64
    }
}

/// Box-Muller over 16 uniforms in place: pairs (j, j+8), cosine into j and sine into j+8.
fn normal_fill_16(data: &mut [f32]) {
    let two_pi = 2.0f32 * std::f32::consts::PI;
    for j in 0..8 {
        let u1 = 1.0 - data[j];
        let u2 = data[j + 8];
        let radius = (-2.0f32 * u1.ln()).sqrt();
        let theta = two_pi * u2;
        data[j] = radius * theta.cos();
        data[j + 8] = radius * theta.sin();
    }
}

/// Draws `n` standard normals exactly as `torch.randn(n, generator=cpu_generator(seed))` does.
pub fn torch_randn(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = Mt19937::new(seed);
    if n < 16 {
        let mut cached = None;
        return (0..n)
            .map(|_| rng.next_normal_f64(&mut cached) as f32)
            .collect();
    }
    let mut data: Vec<f32> = (0..n).map(|_| rng.next_uniform_f32()).collect();
    for start in (0..=n - 16).step_by(16) {
        normal_fill_16(&mut data[start..start + 16]);
    }
    if !n.is_multiple_of(16) {
        let tail = &mut data[n - 16..];
        for v in tail.iter_mut() {
            *v = rng.next_uniform_f32();
        }
        normal_fill_16(tail);
    }
    data
}

/// A tensor of standard normals of `shape`, reproducing PyTorch's CPU generator for `seed`.
pub fn randn(seed: u64, shape: impl Into<Shape>, device: &Device) -> candle_core::Result<Tensor> {
    let shape = shape.into();
    Tensor::from_vec(torch_randn(seed, shape.elem_count()), shape, device)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values printed by torch 2.15.0:
    /// `torch.randn(n, generator=torch.Generator("cpu").manual_seed(seed))`, first 6 and last 3.
    const TORCH: &[(u64, usize, [f32; 6], [f32; 3])] = &[
        (
            0,
            16,
            [
                -1.125_839_8,
                -1.152_360_2,
                -0.250_578_58,
                -0.433_878_8,
                0.848_710_36,
                0.692_009_15,
            ],
            [1.237_657_9, 1.116_777_2, -0.247_278_15],
        ),
        (
            42,
            40,
            [
                1.926_915_3,
                1.487_284_1,
                0.900_717_2,
                -2.105_521,
                0.678_418_46,
                -1.234_544_9,
            ],
            [-0.434_454_4, -1.386_365_5, -1.286_215_5],
        ),
        (
            123_456_789,
            7,
            [
                0.110_278_37,
                2.200_769_7,
                -0.896_996_9,
                -0.385_614_8,
                -0.606_252_2,
                1.042_083_1,
            ],
            [-0.606_252_2, 1.042_083_1, 0.291_341_07],
        ),
        (
            1_099_511_627_781,
            33,
            [
                1.842_329_9,
                0.518_887_16,
                -1.711_921_3,
                -1.701_379_3,
                2.019_419_4,
                -0.268_614_44,
            ],
            [-0.525_951_2, -1.697_732_9, -1.036_467_1],
        ),
    ];

    /// Reference: torch 2.15.0 CPU generator; tolerance 1e-6 (libm vs SLEEF rounding of ln/sin/cos).
    #[test]
    fn matches_torch_cpu_generator() {
        for (seed, n, head, tail) in TORCH {
            let got = torch_randn(*seed, *n);
            for (i, want) in head.iter().enumerate() {
                assert!(
                    (got[i] - want).abs() <= 1e-6,
                    "seed {seed} n {n} [{i}]: {} vs {want}",
                    got[i]
                );
            }
            for (i, want) in tail.iter().enumerate() {
                let k = n - 3 + i;
                assert!(
                    (got[k] - want).abs() <= 1e-6,
                    "seed {seed} n {n} [{k}]: {} vs {want}",
                    got[k]
                );
            }
        }
    }

    #[test]
    fn same_seed_same_noise_other_seed_other_noise() {
        assert_eq!(torch_randn(7, 100), torch_randn(7, 100));
        assert_ne!(torch_randn(7, 100), torch_randn(8, 100));
    }
}
