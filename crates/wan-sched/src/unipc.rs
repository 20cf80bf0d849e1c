//! UniPC multistep (predictor UniP + corrector UniC, `B(h)` bh1 or bh2) on the data prediction of a flow model,
//! as diffusers' `UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True)` and the
//! official `FlowUniPCMultistepScheduler` step it.

use std::collections::VecDeque;

use candle_core::Tensor;

use crate::config::SchedulerConfig;
use crate::error::Result;
use crate::sampler::{div_scalar, lambda, scale};

/// UniPC state between steps.
#[derive(Debug)]
pub(crate) struct UniPc {
    order: usize,
    bh1: bool,
    lower_order_final: bool,
    disable_corrector: Vec<usize>,
    /// Data predictions of the last `order` steps, oldest first.
    outputs: VecDeque<Tensor>,
    lower_order_nums: usize,
    /// Order of the previous predictor step, reused by this step's corrector.
    this_order: usize,
    /// Sample the previous predictor started from.
    last_sample: Option<Tensor>,
}

/// Per-step coefficients shared by predictor and corrector, all float32.
struct Coefficients {
    /// `sigma_t / sigma_s0`.
    ratio: f32,
    /// `alpha_t * (e^{-h} - 1)`.
    alpha_phi: f32,
    /// `alpha_t * B(h)`.
    alpha_b: f32,
    /// `r_k` of each older output, then 1.
    rks: Vec<f32>,
    /// The right-hand side `b` of the rho system.
    b: Vec<f32>,
}

impl UniPc {
    pub(crate) fn new(cfg: &SchedulerConfig) -> Self {
        UniPc {
            order: cfg.solver_order,
            bh1: cfg.unipc_bh1(),
            lower_order_final: cfg.lower_order_final,
            disable_corrector: cfg.disable_corrector.clone(),
            outputs: VecDeque::with_capacity(cfg.solver_order),
            lower_order_nums: 0,
            this_order: 0,
            last_sample: None,
        }
    }

    /// One step from `sigmas[k]` to `sigmas[k + 1]` (correcting `sample` first when a previous step exists).
    pub(crate) fn step(
        &mut self,
        sigmas: &[f32],
        k: usize,
        model_output: &Tensor,
        sample: &Tensor,
    ) -> Result<Tensor> {
        let n = sigmas.len() - 1;
        // Data prediction x0 = x - sigma v.
        let m = (sample - scale(model_output, sigmas[k])?)?;
        let sample = match &self.last_sample {
            Some(last) if k > 0 && !self.disable_corrector.contains(&(k - 1)) => {
                self.corrector(sigmas, k, &m, last, self.this_order)?
            }
            _ => sample.clone(),
        };
        if self.outputs.len() == self.order {
            self.outputs.pop_front();
        }
        self.outputs.push_back(m);
        let order = if self.lower_order_final {
            self.order.min(n - k)
        } else {
            self.order
        };
        self.this_order = order.min(self.lower_order_nums + 1);
        let next = self.predictor(sigmas, k, &sample, self.this_order)?;
        self.last_sample = Some(sample);
        if self.lower_order_nums < self.order {
            self.lower_order_nums += 1;
        }
        Ok(next)
    }

    /// The `i`-th most recent stored data prediction (0 = newest).
    fn output(&self, i: usize) -> &Tensor {
        &self.outputs[self.outputs.len() - 1 - i]
    }

    /// Coefficients of a step from `sigma_s0 = sigmas[s0]` to `sigma_t = sigmas[t]`, with older outputs at
    /// `sigmas[s0 - i]` for `i` in `1..order`.
    fn coefficients(&self, sigmas: &[f32], t: usize, s0: usize, order: usize) -> Coefficients {
        let (sigma_t, sigma_s0) = (sigmas[t], sigmas[s0]);
        let alpha_t = 1.0 - sigma_t;
        let lambda_s0 = lambda(sigma_s0);
        let h = lambda(sigma_t) - lambda_s0;
        let mut rks: Vec<f32> = (1..order)
            .map(|i| (lambda(sigmas[s0 - i]) - lambda_s0) / h)
            .collect();
        rks.push(1.0);

        let hh = -h;
        let h_phi_1 = hh.exp_m1();
        let b_h = if self.bh1 { hh } else { hh.exp_m1() };
        let mut h_phi_k = h_phi_1 / hh - 1.0;
        let mut factorial = 1u64;
        let mut b = Vec::with_capacity(order);
        for i in 1..=order as u64 {
            b.push(h_phi_k * factorial as f32 / b_h);
            factorial *= i + 1;
            h_phi_k = h_phi_k / hh - (1.0 / factorial as f64) as f32;
        }
        Coefficients {
            ratio: sigma_t / sigma_s0,
            alpha_phi: alpha_t * h_phi_1,
            alpha_b: alpha_t * b_h,
            rks,
            b,
        }
    }

    /// `D1_i = (m_i - m_0) / r_i` for the older outputs `m_i`, newest-but-one first.
    fn differences(&self, rks: &[f32]) -> Result<Vec<Tensor>> {
        let m0 = self.output(0);
        rks[..rks.len() - 1]
            .iter()
            .enumerate()
            .map(|(i, &rk)| div_scalar(&(self.output(i + 1) - m0)?, rk))
            .collect()
    }

    /// UniP: predicts the sample at `sigmas[k + 1]` from `x` at `sigmas[k]`.
    fn predictor(&self, sigmas: &[f32], k: usize, x: &Tensor, order: usize) -> Result<Tensor> {
        let c = self.coefficients(sigmas, k + 1, k, order);
        let d1s = self.differences(&c.rks)?;
        let x_t = (scale(x, c.ratio)? - scale(self.output(0), c.alpha_phi)?)?;
        if d1s.is_empty() {
            return Ok(x_t);
        }
        let rhos = if order == 2 {
            vec![0.5]
        } else {
            let r = rho_matrix(&c.rks, order - 1);
            solve(r, c.b[..order - 1].to_vec())
        };
        let pred_res = weighted_sum(&rhos, &d1s)?;
        Ok((x_t - scale(&pred_res, c.alpha_b)?)?)
    }

    /// UniC: corrects `this_sample` at `sigmas[k]` using the new data prediction `model_t` and the predictor's start
    /// `last_sample` at `sigmas[k - 1]`.
    fn corrector(
        &self,
        sigmas: &[f32],
        k: usize,
        model_t: &Tensor,
        last_sample: &Tensor,
        order: usize,
    ) -> Result<Tensor> {
        let c = self.coefficients(sigmas, k, k - 1, order);
        let d1s = self.differences(&c.rks)?;
        let m0 = self.output(0);
        let x_t = (scale(last_sample, c.ratio)? - scale(m0, c.alpha_phi)?)?;
        // One rho per older output, then the weight of the new output (0.5 at order 1).
        let rhos = if order == 1 {
            vec![0.5]
        } else {
            solve(rho_matrix(&c.rks, order), c.b)
        };
        let d1_t = scale(&(model_t - m0)?, rhos[order - 1])?;
        let res = if d1s.is_empty() {
            d1_t
        } else {
            (weighted_sum(&rhos[..order - 1], &d1s)? + d1_t)?
        };
        Ok((x_t - scale(&res, c.alpha_b)?)?)
    }
}

/// The `size x size` leading block of `R[i][j] = rks[j]^i`.
fn rho_matrix(rks: &[f32], size: usize) -> Vec<Vec<f32>> {
    (0..size)
        .map(|i| {
            rks[..size]
                .iter()
                .map(|&r| (0..i).fold(1.0f32, |acc, _| acc * r))
                .collect()
        })
        .collect()
}

/// `sum_k w_k t_k`, accumulated in order.
fn weighted_sum(weights: &[f32], tensors: &[Tensor]) -> Result<Tensor> {
    let mut acc = scale(&tensors[0], weights[0])?;
    for (w, t) in weights.iter().zip(tensors).skip(1) {
        acc = (acc + scale(t, *w)?)?;
    }
    Ok(acc)
}

/// Solves the small dense system `a x = b` in float32 by Gaussian elimination with partial pivoting (LAPACK
/// `gesv`'s method, which `torch.linalg.solve` calls).
fn solve(mut a: Vec<Vec<f32>>, mut b: Vec<f32>) -> Vec<f32> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).fold(col, |best, row| {
            if a[row][col].abs() > a[best][col].abs() {
                row
            } else {
                best
            }
        });
        a.swap(col, pivot);
        b.swap(col, pivot);
        let inv = 1.0 / a[col][col];
        let (done, below) = a.split_at_mut(col + 1);
        let pivot_row = &done[col];
        for (offset, row) in below.iter_mut().enumerate() {
            let factor = row[col] * inv;
            for (x, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                *x -= factor * p;
            }
            b[col + 1 + offset] -= factor * b[col];
        }
    }
    let mut x = vec![0.0f32; n];
    for row in (0..n).rev() {
        let s = (row + 1..n).fold(b[row], |s, j| s - a[row][j] * x[j]);
        x[row] = s / a[row][row];
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solve_pivots() {
        // [[1e-8, 1], [1, 1]] x = [1, 2] needs a row swap to stay accurate: x = (1, 1).
        let x = solve(vec![vec![1e-8, 1.0], vec![1.0, 1.0]], vec![1.0, 2.0]);
        assert!(
            (x[0] - 1.0).abs() < 1e-6 && (x[1] - 1.0).abs() < 1e-6,
            "{x:?}"
        );
    }
}
