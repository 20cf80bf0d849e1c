//! Sampler settings: which sampler, which schedule, flow shift and the solver options of diffusers'
//! `scheduler_config.json`.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::Deserialize;

use crate::error::{Error, Result};

/// The samplers this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SamplerKind {
    /// UniPC multistep (bh1/bh2 corrector), the default of both the official Wan code and diffusers.
    UniPc,
    /// First-order flow-matching Euler (diffusers `FlowMatchEulerDiscreteScheduler`).
    Euler,
    /// Multistep DPM-Solver++ (2M by default) on the data prediction `x0 = x - sigma v`.
    DpmPp,
}

impl SamplerKind {
    /// The accepted sampler names, as listed in errors.
    pub const ALLOWED: &'static str = "unipc, euler, dpm++";

    /// The canonical name (`"unipc"`, `"euler"`, `"dpm++"`), accepted back by [`SamplerKind::from_str`].
    pub fn name(self) -> &'static str {
        match self {
            SamplerKind::UniPc => "unipc",
            SamplerKind::Euler => "euler",
            SamplerKind::DpmPp => "dpm++",
        }
    }
}

impl fmt::Display for SamplerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SamplerKind {
    type Err = Error;

    /// Parses `unipc`, `euler` or `dpm++` (case-insensitive); anything else is an error listing those.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "unipc" => Ok(SamplerKind::UniPc),
            "euler" => Ok(SamplerKind::Euler),
            "dpm++" => Ok(SamplerKind::DpmPp),
            _ => Err(Error::UnknownSampler {
                name: s.to_string(),
                allowed: Self::ALLOWED,
            }),
        }
    }
}

/// Which sigma/timestep schedule to use: the two Wan stacks build different ones.
///
/// * `Diffusers`: diffusers' schedulers. UniPC: `shift(linspace(1, 1/T, n+1)[:-1])` with the first sigma lowered by
///   1e-6 when it is 1; DPM++: `shift(1 - linspace(1, 1/T, n+1))` reversed, first `n`; Euler: the
///   `FlowMatchEulerDiscreteScheduler` schedule (shift applied to its sigma range, then again to the steps).
/// * `Official`: the official Wan code. UniPC (`FlowUniPCMultistepScheduler`): `shift(linspace(0.999.., 0, n+1)[:-1])`,
///   starting at the float32 value of 0.999; DPM++ (`get_sampling_sigmas`): `shift(linspace(1, 0, n+1)[:n])`,
///   starting at exactly 1.
///
/// Both truncate `sigma * T` to integers for UniPC and DPM++ timesteps. The official code has no Euler sampler:
/// Euler always follows diffusers' schedule, whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Schedule {
    /// diffusers' schedules (the layout of `*-Diffusers` checkpoints).
    Diffusers,
    /// The official Wan repositories' schedules (default for checkpoints in the official layout).
    Official,
}

impl Schedule {
    /// The accepted schedule names, as listed in errors.
    pub const ALLOWED: &'static str = "diffusers, official";

    /// The canonical name (`"diffusers"` or `"official"`).
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Diffusers => "diffusers",
            Schedule::Official => "official",
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Schedule {
    type Err = Error;

    /// Parses `diffusers` or `official` (case-insensitive).
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "diffusers" => Ok(Schedule::Diffusers),
            "official" => Ok(Schedule::Official),
            _ => Err(Error::UnknownSchedule {
                name: s.to_string(),
                allowed: Self::ALLOWED,
            }),
        }
    }
}

/// The `solver_type` of a diffusers config. UniPC uses `Bh1`/`Bh2` and reads `Midpoint`/`Heun` as `Bh2`;
/// DPM++ uses `Midpoint`/`Heun` and reads `Bh1`/`Bh2` as `Midpoint` (diffusers' own remapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SolverType {
    /// UniPC with `B(h) = h`.
    Bh1,
    /// UniPC with `B(h) = e^h - 1` (Wan's setting).
    Bh2,
    /// DPM-Solver++ second-order midpoint update.
    Midpoint,
    /// DPM-Solver++ second-order Heun update.
    Heun,
}

impl SolverType {
    fn parse(s: &str) -> Result<Self> {
        match s {
            "bh1" => Ok(SolverType::Bh1),
            "bh2" => Ok(SolverType::Bh2),
            // diffusers maps "logrho" to bh2 (UniPC) or midpoint (DPM-Solver) as well.
            "midpoint" | "logrho" => Ok(SolverType::Midpoint),
            "heun" => Ok(SolverType::Heun),
            other => Err(Error::Unsupported {
                key: "solver_type",
                value: format!("{other:?}"),
                reason: "expected one of bh1, bh2, midpoint, heun".into(),
            }),
        }
    }
}

/// The last sigma of the schedule (`final_sigmas_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinalSigma {
    /// The schedule ends at sigma 0: the last step lands on the clean sample (Wan's setting).
    Zero,
    /// The schedule ends at its smallest sigma (diffusers UniPC schedule only).
    SigmaMin,
}

/// Sampler settings. Build them from a diffusers `scheduler_config.json` with [`SchedulerConfig::from_json_file`] or
/// take Wan's defaults with [`SchedulerConfig::default_for`]; every field may be changed afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    /// The sampler the config describes (from `_class_name`); [`crate::Sampler::new`] may pick another.
    pub kind: SamplerKind,
    /// Which stack's schedule to follow.
    pub schedule: Schedule,
    /// Flow shift `s`: `sigma' = s sigma / (1 + (s - 1) sigma)` (`flow_shift`, or `shift` for Euler).
    pub shift: f64,
    /// Training timesteps `T` (1000 for Wan): timesteps are `sigma * T`.
    pub num_train_timesteps: usize,
    /// Multistep order: UniPC 1..=3, DPM++ 1..=2 (Wan: 2).
    pub solver_order: usize,
    /// UniPC `bh1`/`bh2`, DPM++ `midpoint`/`heun`.
    pub solver_type: SolverType,
    /// Lower the order on the final steps (UniPC: always; DPM++: below 15 steps).
    pub lower_order_final: bool,
    /// Where the schedule ends.
    pub final_sigma: FinalSigma,
    /// UniPC: step indices after which the corrector is skipped (`disable_corrector`).
    pub disable_corrector: Vec<usize>,
    /// DPM++: use a first-order (Euler) update on the last step (`euler_at_final`).
    pub euler_at_final: bool,
}

/// Keys of a diffusers `scheduler_config.json` this crate reads. Absent keys take the defaults of the class.
#[derive(Debug, Deserialize)]
struct DiffusersSchedulerConfig {
    #[serde(rename = "_class_name")]
    class_name: String,
    num_train_timesteps: Option<usize>,
    flow_shift: Option<f64>,
    shift: Option<f64>,
    solver_order: Option<usize>,
    solver_type: Option<String>,
    prediction_type: Option<String>,
    use_flow_sigmas: Option<bool>,
    lower_order_final: Option<bool>,
    final_sigmas_type: Option<String>,
    predict_x0: Option<bool>,
    disable_corrector: Option<Vec<usize>>,
    algorithm_type: Option<String>,
    euler_at_final: Option<bool>,
    shift_terminal: Option<f64>,
    variance_type: Option<String>,
    solver_p: Option<serde_json::Value>,
    thresholding: Option<bool>,
    use_karras_sigmas: Option<bool>,
    use_exponential_sigmas: Option<bool>,
    use_beta_sigmas: Option<bool>,
    use_lu_lambdas: Option<bool>,
    use_dynamic_shifting: Option<bool>,
    invert_sigmas: Option<bool>,
    stochastic_sampling: Option<bool>,
}

/// diffusers scheduler classes and the sampler each one is.
const CLASSES: [(&str, SamplerKind); 3] = [
    ("UniPCMultistepScheduler", SamplerKind::UniPc),
    ("FlowMatchEulerDiscreteScheduler", SamplerKind::Euler),
    ("DPMSolverMultistepScheduler", SamplerKind::DpmPp),
];

impl SchedulerConfig {
    /// Wan's sampler settings: UniPC, order 2, bh2, lower-order final steps, ending at sigma 0, with the given
    /// schedule and shift (Wan2.1 T2V: 5.0 official, 3.0 in the 1.3B diffusers config).
    pub fn default_for(schedule: Schedule, shift: f64) -> Self {
        SchedulerConfig {
            kind: SamplerKind::UniPc,
            schedule,
            shift,
            num_train_timesteps: 1000,
            solver_order: 2,
            solver_type: SolverType::Bh2,
            lower_order_final: true,
            final_sigma: FinalSigma::Zero,
            disable_corrector: Vec::new(),
            euler_at_final: false,
        }
    }

    /// Settings for a model folder: its `scheduler/scheduler_config.json` when it has one (diffusers layout, diffusers
    /// schedule), otherwise Wan's defaults ([`SchedulerConfig::default_for`]) with the official schedule and
    /// `official_shift` (official layout: the shift of the variant, e.g. 5.0 for Wan2.1 T2V).
    pub fn for_model_dir(dir: impl AsRef<Path>, official_shift: f64) -> Result<Self> {
        let path = dir.as_ref().join("scheduler").join("scheduler_config.json");
        if path.is_file() {
            Self::from_json_file(path)
        } else {
            Ok(Self::default_for(Schedule::Official, official_shift))
        }
    }

    /// Reads a diffusers `scheduler/scheduler_config.json` (`UniPCMultistepScheduler`,
    /// `FlowMatchEulerDiscreteScheduler` or `DPMSolverMultistepScheduler`), with the diffusers schedule.
    ///
    /// Settings that change the sampling but are not implemented (Karras/exponential/beta sigmas, dynamic shifting,
    /// thresholding, non-flow prediction types, SDE variants, ...) are rejected with an error naming the key;
    /// keys that do not affect flow sampling (beta schedule, `timestep_spacing`, ...) are ignored.
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let raw: DiffusersSchedulerConfig = serde_json::from_str(&non_finite_to_null(&text))
            .map_err(|e| Error::BadConfig {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        Self::from_diffusers(raw)
    }

    fn from_diffusers(raw: DiffusersSchedulerConfig) -> Result<Self> {
        let kind = CLASSES
            .iter()
            .find(|(name, _)| *name == raw.class_name)
            .map(|(_, kind)| *kind)
            .ok_or_else(|| Error::Unsupported {
                key: "_class_name",
                value: format!("{:?}", raw.class_name),
                reason: format!(
                    "expected one of {}",
                    CLASSES
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;

        for (key, value) in [
            ("thresholding", raw.thresholding),
            ("use_karras_sigmas", raw.use_karras_sigmas),
            ("use_exponential_sigmas", raw.use_exponential_sigmas),
            ("use_beta_sigmas", raw.use_beta_sigmas),
            ("use_lu_lambdas", raw.use_lu_lambdas),
            ("use_dynamic_shifting", raw.use_dynamic_shifting),
            ("invert_sigmas", raw.invert_sigmas),
            ("stochastic_sampling", raw.stochastic_sampling),
        ] {
            if value == Some(true) {
                return Err(unsupported(key, "true", "only false is implemented"));
            }
        }
        if let Some(v) = raw.shift_terminal {
            return Err(unsupported("shift_terminal", v, "only null is implemented"));
        }
        if let Some(v) = raw.solver_p.filter(|v| !v.is_null()) {
            return Err(unsupported("solver_p", v, "only null is implemented"));
        }
        if let Some(v) = raw.variance_type {
            return Err(unsupported(
                "variance_type",
                format!("{v:?}"),
                "only null is implemented",
            ));
        }

        let shift = match kind {
            SamplerKind::Euler => raw.shift.unwrap_or(1.0),
            SamplerKind::UniPc | SamplerKind::DpmPp => {
                let prediction = raw.prediction_type.as_deref().unwrap_or("epsilon");
                if prediction != "flow_prediction" {
                    return Err(unsupported(
                        "prediction_type",
                        format!("{prediction:?}"),
                        "Wan models need \"flow_prediction\"",
                    ));
                }
                if raw.use_flow_sigmas != Some(true) {
                    return Err(unsupported(
                        "use_flow_sigmas",
                        format!("{:?}", raw.use_flow_sigmas),
                        "flow-matching schedules need true",
                    ));
                }
                raw.flow_shift.unwrap_or(1.0)
            }
        };
        if raw.predict_x0 == Some(false) {
            return Err(unsupported(
                "predict_x0",
                "false",
                "flow_prediction needs true",
            ));
        }
        if let Some(algo) = raw.algorithm_type.as_deref()
            && algo != "dpmsolver++"
        {
            return Err(unsupported(
                "algorithm_type",
                format!("{algo:?}"),
                "only \"dpmsolver++\" is implemented",
            ));
        }
        let final_sigma = match raw.final_sigmas_type.as_deref() {
            None | Some("zero") => FinalSigma::Zero,
            Some("sigma_min") => FinalSigma::SigmaMin,
            Some(other) => {
                return Err(unsupported(
                    "final_sigmas_type",
                    format!("{other:?}"),
                    "expected \"zero\" or \"sigma_min\"",
                ));
            }
        };
        let solver_type = match raw.solver_type.as_deref() {
            Some(s) => SolverType::parse(s)?,
            None if kind == SamplerKind::DpmPp => SolverType::Midpoint,
            None => SolverType::Bh2,
        };
        let cfg = SchedulerConfig {
            kind,
            schedule: Schedule::Diffusers,
            shift,
            num_train_timesteps: raw.num_train_timesteps.unwrap_or(1000),
            solver_order: raw.solver_order.unwrap_or(2),
            solver_type,
            lower_order_final: raw.lower_order_final.unwrap_or(true),
            final_sigma,
            disable_corrector: raw.disable_corrector.unwrap_or_default(),
            euler_at_final: raw.euler_at_final.unwrap_or(false),
        };
        cfg.validate(kind, cfg.shift)?;
        Ok(cfg)
    }

    /// Checks that these settings make a working `kind` sampler with flow shift `shift`.
    pub(crate) fn validate(&self, kind: SamplerKind, shift: f64) -> Result<()> {
        if !(shift.is_finite() && shift > 0.0) {
            return Err(Error::InvalidShift { shift });
        }
        if self.num_train_timesteps < 2 {
            return Err(unsupported(
                "num_train_timesteps",
                self.num_train_timesteps,
                "expected at least 2",
            ));
        }
        match kind {
            SamplerKind::UniPc => {
                if !(1..=3).contains(&self.solver_order) {
                    return Err(unsupported(
                        "solver_order",
                        self.solver_order,
                        "UniPC supports 1..=3",
                    ));
                }
                if self.final_sigma == FinalSigma::Zero {
                    // diffusers produces NaN/inf in these two cases: refuse rather than return garbage.
                    if self.unipc_bh1() {
                        return Err(unsupported(
                            "solver_type",
                            "bh1",
                            "with final_sigmas_type \"zero\" the last UniPC bh1 step is NaN; use bh2 or \"sigma_min\"",
                        ));
                    }
                    if !self.lower_order_final && self.solver_order > 1 {
                        return Err(unsupported(
                            "lower_order_final",
                            "false",
                            "with final_sigmas_type \"zero\" a higher-order last UniPC step is infinite; use true",
                        ));
                    }
                }
                if self.schedule == Schedule::Official && self.final_sigma != FinalSigma::Zero {
                    return Err(unsupported(
                        "final_sigmas_type",
                        "\"sigma_min\"",
                        "the official UniPC schedule ends at \"zero\"",
                    ));
                }
            }
            SamplerKind::DpmPp => {
                if !(1..=2).contains(&self.solver_order) {
                    return Err(unsupported(
                        "solver_order",
                        self.solver_order,
                        "DPM++ supports 1..=2",
                    ));
                }
                if self.final_sigma != FinalSigma::Zero {
                    return Err(unsupported(
                        "final_sigmas_type",
                        "\"sigma_min\"",
                        "DPM++ with flow sigmas supports \"zero\" only",
                    ));
                }
            }
            SamplerKind::Euler => {}
        }
        Ok(())
    }

    /// Whether UniPC runs with `B(h) = h` (diffusers reads midpoint/heun as bh2).
    pub(crate) fn unipc_bh1(&self) -> bool {
        self.solver_type == SolverType::Bh1
    }

    /// Whether DPM++ uses the Heun second-order update (diffusers reads bh1/bh2 as midpoint).
    pub(crate) fn dpm_heun(&self) -> bool {
        self.solver_type == SolverType::Heun
    }
}

fn unsupported(key: &'static str, value: impl fmt::Display, reason: &str) -> Error {
    Error::Unsupported {
        key,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// diffusers writes Python's float specials (`-Infinity`, `Infinity`, `NaN`, e.g. `lambda_min_clipped`) into its
/// JSON; strict JSON parsers reject them. Replaces those bare tokens (outside strings) with `null`: every key that
/// can hold one is one this crate ignores.
fn non_finite_to_null(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if let Some(token) = ["-Infinity", "Infinity", "NaN"]
            .iter()
            .find(|t| rest.starts_with(**t))
        {
            out.push_str("null");
            rest = &rest[token.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_names_round_trip_and_unknown_lists_allowed() {
        for kind in [SamplerKind::UniPc, SamplerKind::Euler, SamplerKind::DpmPp] {
            assert_eq!(kind.name().parse::<SamplerKind>().expect("parses"), kind);
        }
        let err = "ddim".parse::<SamplerKind>().expect_err("unknown");
        let msg = err.to_string();
        assert!(
            msg.contains("ddim") && msg.contains("unipc, euler, dpm++"),
            "{msg}"
        );
        let err = "legacy".parse::<Schedule>().expect_err("unknown");
        assert!(err.to_string().contains("diffusers, official"), "{err}");
    }

    #[test]
    fn non_finite_tokens_outside_strings_become_null() {
        let text = r#"{"a": -Infinity, "b": "NaN \" Infinity", "c": [NaN, Infinity]}"#;
        assert_eq!(
            non_finite_to_null(text),
            r#"{"a": null, "b": "NaN \" Infinity", "c": [null, null]}"#
        );
    }
}
