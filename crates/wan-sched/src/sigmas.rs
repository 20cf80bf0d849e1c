//! Sigma and timestep schedules of the diffusers and official Wan samplers, computed with the reference's dtypes:
//! numpy float64 for the schedule, float32 for the stored sigmas (and for the Euler scheduler's training range).

use crate::config::FinalSigma;

/// A sampling schedule: `timesteps[i]` is fed to the DiT at step `i`, which moves the sample from `sigmas[i]` to
/// `sigmas[i + 1]` (`sigmas` has one more entry, the final sigma).
#[derive(Debug, Clone, PartialEq)]
pub struct SigmaSchedule {
    /// Timesteps given to the model (integers for UniPC and DPM++, float32 values for Euler).
    pub timesteps: Vec<f64>,
    /// Noise levels, float32 as the reference stores them, ending with the final sigma.
    pub sigmas: Vec<f32>,
}

/// `numpy.linspace(start, stop, num)` in float64, bit for bit: `i * step + start`, last element set to `stop`.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 1 {
        return vec![start];
    }
    let div = (num - 1) as f64;
    let delta = stop - start;
    let step = delta / div;
    let mut y: Vec<f64> = if step == 0.0 {
        (0..num).map(|i| i as f64 / div * delta + start).collect()
    } else {
        (0..num).map(|i| i as f64 * step + start).collect()
    };
    y[num - 1] = stop;
    y
}

/// The flow shift `s sigma / (1 + (s - 1) sigma)` in float64 (numpy).
fn shift_f64(sigma: f64, shift: f64) -> f64 {
    shift * sigma / (1.0 + (shift - 1.0) * sigma)
}

/// The flow shift on a float32 tensor with a Python float `shift` (torch casts the scalars to float32).
fn shift_f32(sigma: f32, shift: f64) -> f32 {
    (shift as f32 * sigma) / (1.0 + (shift - 1.0) as f32 * sigma)
}

/// Integer timesteps `int64(sigma * T)` (truncation toward zero), as both stacks compute them.
fn truncated_timesteps(sigmas: &[f64], num_train_timesteps: usize) -> Vec<f64> {
    sigmas
        .iter()
        .map(|s| (s * num_train_timesteps as f64).trunc())
        .collect()
}

fn finish(sigmas: Vec<f64>, last: f64, timesteps: Vec<f64>) -> SigmaSchedule {
    let mut sigmas: Vec<f32> = sigmas.iter().map(|&s| s as f32).collect();
    sigmas.push(last as f32);
    SigmaSchedule { timesteps, sigmas }
}

/// diffusers `UniPCMultistepScheduler` with `use_flow_sigmas`: `shift(linspace(1, 1/T, n+1)[:-1])`, the first sigma
/// lowered by 1e-6 when within 1e-6 of 1.
pub fn unipc_diffusers(
    steps: usize,
    shift: f64,
    num_train_timesteps: usize,
    last: FinalSigma,
) -> SigmaSchedule {
    let mut sigmas: Vec<f64> = linspace(1.0, 1.0 / num_train_timesteps as f64, steps + 1)[..steps]
        .iter()
        .map(|&s| shift_f64(s, shift))
        .collect();
    const EPS: f64 = 1e-6;
    if (sigmas[0] - 1.0).abs() < EPS {
        sigmas[0] -= EPS;
    }
    let timesteps = truncated_timesteps(&sigmas, num_train_timesteps);
    let last = match last {
        FinalSigma::Zero => 0.0,
        FinalSigma::SigmaMin => sigmas[steps - 1],
    };
    finish(sigmas, last, timesteps)
}

/// The official `FlowUniPCMultistepScheduler(shift=1).set_timesteps(n, shift=s)`: its training sigmas are
/// `1 - linspace(1, 1/T, T)[::-1]` in float32, so the schedule is `shift(linspace(f32(1 - 1/T), 0, n+1)[:-1])`.
pub fn unipc_official(steps: usize, shift: f64, num_train_timesteps: usize) -> SigmaSchedule {
    let alphas = linspace(1.0, 1.0 / num_train_timesteps as f64, num_train_timesteps);
    // Reversed: the training sigmas run from 1 - alphas[T-1] down to 1 - alphas[0]; shift 1 leaves them as is.
    let sigma_max = (1.0 - alphas[num_train_timesteps - 1]) as f32 as f64;
    let sigma_min = (1.0 - alphas[0]) as f32 as f64;
    let sigmas: Vec<f64> = linspace(sigma_max, sigma_min, steps + 1)[..steps]
        .iter()
        .map(|&s| shift_f64(s, shift))
        .collect();
    let timesteps = truncated_timesteps(&sigmas, num_train_timesteps);
    finish(sigmas, 0.0, timesteps)
}

/// diffusers `DPMSolverMultistepScheduler` with `use_flow_sigmas`: `shift(1 - linspace(1, 1/T, n+1))` reversed,
/// first `n` (it starts at `shift(1 - 1/T)`).
pub fn dpmpp_diffusers(steps: usize, shift: f64, num_train_timesteps: usize) -> SigmaSchedule {
    let alphas = linspace(1.0, 1.0 / num_train_timesteps as f64, steps + 1);
    let sigmas: Vec<f64> = alphas
        .iter()
        .rev()
        .take(steps)
        .map(|&a| shift_f64(1.0 - a, shift))
        .collect();
    let timesteps = truncated_timesteps(&sigmas, num_train_timesteps);
    finish(sigmas, 0.0, timesteps)
}

/// The official `get_sampling_sigmas(n, shift)` fed to `FlowDPMSolverMultistepScheduler(shift=1)`:
/// `shift(linspace(1, 0, n+1)[:n])`, starting at exactly 1 (the scheduler's own shift of 1 is the identity).
pub fn dpmpp_official(steps: usize, shift: f64, num_train_timesteps: usize) -> SigmaSchedule {
    let sigmas: Vec<f64> = linspace(1.0, 0.0, steps + 1)[..steps]
        .iter()
        .map(|&s| shift_f64(s, shift))
        .collect();
    let timesteps = truncated_timesteps(&sigmas, num_train_timesteps);
    finish(sigmas, 0.0, timesteps)
}

/// diffusers `FlowMatchEulerDiscreteScheduler(shift=s)`: the training sigmas `linspace(1, T, T)[::-1] / T` are shifted
/// in float32, their range `[sigma_min, sigma_max] * T` is split into `n` float64 timesteps which are shifted again;
/// timesteps are the float32 sigmas times `T` (not integers).
pub fn euler_diffusers(steps: usize, shift: f64, num_train_timesteps: usize) -> SigmaSchedule {
    let t = num_train_timesteps as f64;
    let sigma_max = shift_f32(1.0, shift) as f64;
    let sigma_min = shift_f32(1.0f32 / num_train_timesteps as f32, shift) as f64;
    let sigmas: Vec<f32> = linspace(sigma_max * t, sigma_min * t, steps)
        .iter()
        .map(|&ts| shift_f64(ts / t, shift) as f32)
        .collect();
    let timesteps = sigmas
        .iter()
        .map(|&s| (s * num_train_timesteps as f32) as f64)
        .collect();
    let mut sigmas = sigmas;
    sigmas.push(0.0);
    SigmaSchedule { timesteps, sigmas }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_matches_numpy_endpoints() {
        assert_eq!(linspace(2.0, 5.0, 1), vec![2.0]);
        assert_eq!(linspace(1.0, 0.0, 3), vec![1.0, 0.5, 0.0]);
        let y = linspace(1.0, 0.001, 7);
        assert_eq!(y[6], 0.001);
        assert_eq!(y[0], 1.0);
    }

    #[test]
    fn official_unipc_starts_below_one() {
        // wan-spec: N=50, shift 5 gives 999, 995, 991, 987, 982, ..., 241, 172, 92.
        let s = unipc_official(50, 5.0, 1000);
        assert_eq!(&s.timesteps[..5], &[999.0, 995.0, 991.0, 987.0, 982.0]);
        assert_eq!(&s.timesteps[47..], &[241.0, 172.0, 92.0]);
        assert_eq!(s.sigmas.len(), 51);
        assert_eq!(s.sigmas[50], 0.0);
    }
}
