//! Parity of the samplers with the reference schedulers (fixtures from `tools/fixtures/sched.py`).
//!
//! Reference: diffusers 0.42.1 (torch 2.15.0) `UniPCMultistepScheduler` / `DPMSolverMultistepScheduler`
//! (`flow_prediction`, `use_flow_sigmas`) and `FlowMatchEulerDiscreteScheduler`. The official Wan schedules
//! (`FlowUniPCMultistepScheduler`, `get_sampling_sigmas`) come from the official code's formulas re-implemented in the
//! fixture script (the official package is not installable); their step-by-step runs use diffusers' step code, which
//! the official solvers share, with the official sigmas swapped in.
//! Tolerances: timesteps and sigmas <= 1e-6 (absolute), samples after every step <= 1e-5 (absolute).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use wan_sched::{
    FinalSigma, Sampler, SamplerKind, Schedule, SchedulerConfig, SolverType, cfg_combine,
    guidance_enabled,
};

const SCHEDULE_TOL: f64 = 1e-6;
const STEP_TOL: f32 = 1e-5;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/sched")
}

fn load(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join(name), &Device::Cpu).expect("fixture loads")
}

fn get<'a>(tensors: &'a HashMap<String, Tensor>, key: &str) -> &'a Tensor {
    tensors
        .get(key)
        .unwrap_or_else(|| panic!("fixture tensor {key} missing"))
}

/// Sampler kind and schedule of a fixture family name.
fn family(name: &str) -> (SamplerKind, Schedule) {
    match name {
        "unipc_diffusers" => (SamplerKind::UniPc, Schedule::Diffusers),
        "unipc_official" => (SamplerKind::UniPc, Schedule::Official),
        "dpmpp_diffusers" => (SamplerKind::DpmPp, Schedule::Diffusers),
        "dpmpp_official" => (SamplerKind::DpmPp, Schedule::Official),
        "euler_diffusers" => (SamplerKind::Euler, Schedule::Diffusers),
        other => panic!("unknown family {other}"),
    }
}

fn max_abs_diff_f64(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Checks the sampler's timesteps and sigmas; returns the largest differences (timesteps, sigmas).
fn check_schedule(
    sampler: &Sampler,
    timesteps: &Tensor,
    sigmas: &Tensor,
    what: &str,
) -> (f64, f64) {
    let t_ref = timesteps.to_vec1::<f64>().expect("f64 timesteps");
    let s_ref: Vec<f64> = sigmas
        .to_vec1::<f32>()
        .expect("f32 sigmas")
        .into_iter()
        .map(f64::from)
        .collect();
    let s_ours: Vec<f64> = sampler.sigmas().iter().map(|&s| f64::from(s)).collect();
    let dt = max_abs_diff_f64(sampler.timesteps(), &t_ref);
    let ds = max_abs_diff_f64(&s_ours, &s_ref);
    assert!(
        dt <= SCHEDULE_TOL,
        "{what}: timesteps differ by {dt}: {:?} vs {t_ref:?}",
        sampler.timesteps()
    );
    assert!(
        ds <= SCHEDULE_TOL,
        "{what}: sigmas differ by {ds}: {s_ours:?} vs {s_ref:?}"
    );
    (dt, ds)
}

#[test]
fn schedules_match_reference_for_all_steps_and_shifts() {
    let tensors = load("schedules.safetensors");
    let (mut checked, mut worst_t, mut worst_s) = (0, 0f64, 0f64);
    for name in [
        "unipc_diffusers",
        "unipc_official",
        "dpmpp_diffusers",
        "dpmpp_official",
        "euler_diffusers",
    ] {
        let (kind, schedule) = family(name);
        for steps in [1usize, 2, 4, 10, 50] {
            for shift in [1u32, 3, 5, 8] {
                let key = format!("{name}.n{steps}.shift{shift}");
                let cfg = SchedulerConfig::default_for(schedule, f64::from(shift));
                let sampler = Sampler::new(kind, &cfg, steps, None).expect("sampler builds");
                let (dt, ds) = check_schedule(
                    &sampler,
                    get(&tensors, &format!("{key}.timesteps")),
                    get(&tensors, &format!("{key}.sigmas")),
                    &key,
                );
                (worst_t, worst_s) = (worst_t.max(dt), worst_s.max(ds));
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 100);
    println!(
        "100 schedules: max timestep difference {worst_t:e}, max sigma difference {worst_s:e}"
    );
}

/// Applies a run's extra diffusers config keys (from `runs.json`) to `cfg`.
fn apply_extras(cfg: &mut SchedulerConfig, extras: &serde_json::Map<String, serde_json::Value>) {
    for (key, value) in extras {
        match key.as_str() {
            "solver_order" => cfg.solver_order = value.as_u64().expect("order") as usize,
            "solver_type" => {
                cfg.solver_type = match value.as_str().expect("solver type") {
                    "bh1" => SolverType::Bh1,
                    "bh2" => SolverType::Bh2,
                    "midpoint" => SolverType::Midpoint,
                    "heun" => SolverType::Heun,
                    other => panic!("solver type {other}"),
                }
            }
            "final_sigmas_type" => {
                cfg.final_sigma = match value.as_str().expect("final sigmas type") {
                    "zero" => FinalSigma::Zero,
                    "sigma_min" => FinalSigma::SigmaMin,
                    other => panic!("final sigmas type {other}"),
                }
            }
            "lower_order_final" => cfg.lower_order_final = value.as_bool().expect("bool"),
            "euler_at_final" => cfg.euler_at_final = value.as_bool().expect("bool"),
            "disable_corrector" => {
                cfg.disable_corrector = value
                    .as_array()
                    .expect("list")
                    .iter()
                    .map(|v| v.as_u64().expect("index") as usize)
                    .collect()
            }
            other => panic!("fixture uses unhandled config key {other}"),
        }
    }
}

#[test]
fn multistep_runs_match_reference_step_by_step() {
    let tensors = load("runs.safetensors");
    let meta: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("runs.json")).expect("runs.json"),
    )
    .expect("runs.json parses");
    assert!(meta.len() >= 36, "expected the full set of runs");
    for (name, run) in &meta {
        let (kind, schedule) = family(run["family"].as_str().expect("family"));
        let steps = run["steps"].as_u64().expect("steps") as usize;
        let shift = run["shift"].as_f64().expect("shift");
        let mut cfg = SchedulerConfig::default_for(schedule, shift);
        apply_extras(&mut cfg, run["config"].as_object().expect("config"));
        let mut sampler = Sampler::new(kind, &cfg, steps, None).expect("sampler builds");
        check_schedule(
            &sampler,
            get(&tensors, &format!("{name}.timesteps")),
            get(&tensors, &format!("{name}.sigmas")),
            name,
        );

        let mut x = get(&tensors, &format!("{name}.sample")).clone();
        let outputs = get(&tensors, &format!("{name}.model_outputs"));
        let expected = get(&tensors, &format!("{name}.samples"));
        let mut worst = 0f32;
        for i in 0..steps {
            let v = outputs.get(i).expect("model output");
            x = sampler.step(&v, &x).expect("step");
            let want = expected.get(i).expect("expected sample");
            let err = (&x - &want)
                .and_then(|d| d.abs())
                .and_then(|d| d.flatten_all())
                .and_then(|d| d.max(0))
                .and_then(|d| d.to_scalar::<f32>())
                .expect("diff");
            assert!(
                err <= STEP_TOL,
                "{name}: step {i} differs by {err} (tolerance {STEP_TOL})"
            );
            worst = worst.max(err);
        }
        println!("{name}: {steps} steps, max |ours - diffusers| = {worst:e}");
    }
}

#[test]
fn diffusers_configs_load() {
    // A diffusers model folder: its scheduler config is read.
    let unipc = SchedulerConfig::for_model_dir(fixtures().join("wan_diffusers"), 5.0)
        .expect("unipc config");
    assert_eq!(unipc, {
        let mut c = SchedulerConfig::default_for(Schedule::Diffusers, 3.0);
        c.kind = SamplerKind::UniPc;
        c
    });
    // The Wan2.1 1.3B diffusers config at 50 steps gives diffusers' schedule.
    let sampler = Sampler::new(unipc.kind, &unipc, 50, None).expect("sampler");
    let tensors = load("schedules.safetensors");
    check_schedule(
        &sampler,
        get(&tensors, "unipc_diffusers.n50.shift3.timesteps"),
        get(&tensors, "unipc_diffusers.n50.shift3.sigmas"),
        "config_unipc",
    );
    // Overriding the shift replaces flow_shift.
    let sampler = Sampler::new(unipc.kind, &unipc, 10, Some(8.0)).expect("sampler");
    check_schedule(
        &sampler,
        get(&tensors, "unipc_diffusers.n10.shift8.timesteps"),
        get(&tensors, "unipc_diffusers.n10.shift8.sigmas"),
        "config_unipc shift override",
    );

    // A folder without scheduler config (official layout): Wan's defaults with the official schedule.
    let official = SchedulerConfig::for_model_dir(fixtures(), 5.0).expect("official defaults");
    assert_eq!(
        official,
        SchedulerConfig::default_for(Schedule::Official, 5.0)
    );
    let sampler = Sampler::new(official.kind, &official, 50, None).expect("sampler");
    check_schedule(
        &sampler,
        get(&tensors, "unipc_official.n50.shift5.timesteps"),
        get(&tensors, "unipc_official.n50.shift5.sigmas"),
        "official layout",
    );

    // diffusers writes `"lambda_min_clipped": -Infinity` into DPM-Solver configs.
    let dpm =
        SchedulerConfig::from_json_file(fixtures().join("config_dpmpp/scheduler_config.json"))
            .expect("dpm config");
    assert_eq!(
        (dpm.kind, dpm.shift, dpm.solver_type),
        (SamplerKind::DpmPp, 5.0, SolverType::Midpoint)
    );
    let euler =
        SchedulerConfig::from_json_file(fixtures().join("config_euler/scheduler_config.json"))
            .expect("euler config");
    assert_eq!((euler.kind, euler.shift), (SamplerKind::Euler, 5.0));
    let sampler = Sampler::new(euler.kind, &euler, 10, None).expect("sampler");
    check_schedule(
        &sampler,
        get(&tensors, "euler_diffusers.n10.shift5.timesteps"),
        get(&tensors, "euler_diffusers.n10.shift5.sigmas"),
        "config_euler",
    );
}

fn write_temp_config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wan-sched-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write temp config");
    path
}

#[test]
fn bad_configs_are_clear_errors() {
    let cases = [
        (
            r#"{"_class_name": "DDIMScheduler"}"#,
            "UniPCMultistepScheduler, FlowMatchEulerDiscreteScheduler, DPMSolverMultistepScheduler",
        ),
        (
            r#"{"_class_name": "UniPCMultistepScheduler", "use_flow_sigmas": true}"#,
            "prediction_type",
        ),
        (
            r#"{"_class_name": "UniPCMultistepScheduler", "prediction_type": "flow_prediction", "use_flow_sigmas": true, "use_karras_sigmas": true}"#,
            "use_karras_sigmas",
        ),
        (
            r#"{"_class_name": "UniPCMultistepScheduler", "prediction_type": "flow_prediction", "use_flow_sigmas": true, "flow_shift": -2.0}"#,
            "invalid flow shift -2",
        ),
        (
            r#"{"_class_name": "UniPCMultistepScheduler", "prediction_type": "flow_prediction", "use_flow_sigmas": true, "solver_type": "bh1"}"#,
            "bh1",
        ),
        (
            r#"{"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": "5"}"#,
            "invalid type",
        ),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let path = write_temp_config(&format!("bad{i}.json"), text);
        let err = SchedulerConfig::from_json_file(&path).expect_err("config must be rejected");
        let msg = err.to_string();
        assert!(
            msg.contains(needle),
            "case {i}: {msg:?} does not mention {needle:?}"
        );
    }
    let missing = SchedulerConfig::from_json_file(fixtures().join("no_such_config.json"))
        .expect_err("missing file");
    assert!(
        missing.to_string().contains("no_such_config.json"),
        "{missing}"
    );
}

#[test]
fn cfg_combine_matches_diffusers_order() {
    let tensors = load("cfg.safetensors");
    let (u, c) = (get(&tensors, "uncond"), get(&tensors, "cond"));
    for g in ["1.0", "3.5", "5.0"] {
        let ours = cfg_combine(u, c, g.parse().expect("float")).expect("combine");
        let want = get(&tensors, &format!("combined_g{g}"));
        let err = (&ours - want)
            .and_then(|d| d.abs())
            .and_then(|d| d.flatten_all())
            .and_then(|d| d.max(0))
            .and_then(|d| d.to_scalar::<f32>())
            .expect("diff");
        assert_eq!(err, 0.0, "guidance {g}: differs by {err}");
    }
    assert!(!guidance_enabled(1.0));

    // bf16 predictions: each op rounded to bf16 as torch does.
    let (u, c) = (get(&tensors, "uncond_bf16"), get(&tensors, "cond_bf16"));
    let ours = cfg_combine(u, c, 5.0).expect("combine bf16");
    assert_eq!(ours.dtype(), candle_core::DType::BF16);
    let want = get(&tensors, "combined_bf16_g5.0");
    let diff = (ours.to_dtype(candle_core::DType::F32).expect("f32")
        - want.to_dtype(candle_core::DType::F32).expect("f32"))
    .and_then(|d| d.abs())
    .and_then(|d| d.flatten_all())
    .and_then(|d| d.max(0))
    .and_then(|d| d.to_scalar::<f32>())
    .expect("diff");
    assert_eq!(diff, 0.0, "bf16 guidance differs by {diff}");
}
