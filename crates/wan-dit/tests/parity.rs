//! Forward parity with diffusers 0.42.1 (`WanTransformer3DModel`, torch 2.15.0, fp32) on the tiny
//! random checkpoints written by `tools/fixtures/dit.py`.
//!
//! Tolerances: f32 max |diff| <= 1e-4; bf16 and f16 weights within 2e-2 relative L2 of the f32
//! reference; the official key layout gives bit-identical outputs to the diffusers layout.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use wan_dit::WanTransformer;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/dit")
}

fn cases() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("cases.safetensors"), &Device::Cpu)
        .expect("cases.safetensors")
}

fn model(name: &str, dtype: DType) -> WanTransformer {
    WanTransformer::from_path(&fixtures().join(name), dtype, &Device::Cpu).expect("load model")
}

fn run(model: &WanTransformer, cases: &HashMap<String, Tensor>, case: &str) -> Tensor {
    let get = |k: &str| cases.get(&format!("{case}.{k}"));
    model
        .forward(
            get("latents").expect("latents"),
            get("timestep").expect("timestep"),
            get("text").expect("text"),
            get("image"),
        )
        .expect("forward")
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("diff")
}

fn rel_l2(a: &Tensor, reference: &Tensor) -> f32 {
    let norm = |t: &Tensor| {
        t.sqr()
            .and_then(|t| t.sum_all())
            .and_then(|t| t.to_scalar::<f32>())
            .expect("norm")
            .sqrt()
    };
    norm(&(a - reference).expect("sub")) / norm(reference)
}

#[test]
fn t2v_f32_matches_diffusers() {
    let cases = cases();
    let dit = model("t2v", DType::F32);
    for case in ["t2v_a", "t2v_b", "t2v_tokens"] {
        let out = run(&dit, &cases, case);
        let diff = max_abs_diff(&out, &cases[&format!("{case}.out")]);
        eprintln!("{case}: f32 max |diff| {diff:.2e}");
        assert!(diff <= 1e-4, "{case}: max |diff| {diff}");
    }
}

#[test]
fn i2v_and_flf2v_f32_match_diffusers() {
    let cases = cases();
    for (name, case_names) in [("i2v", &["i2v_a", "i2v_b"][..]), ("flf2v", &["flf2v"][..])] {
        let dit = model(name, DType::F32);
        for case in case_names {
            let out = run(&dit, &cases, case);
            let diff = max_abs_diff(&out, &cases[&format!("{case}.out")]);
            eprintln!("{case}: f32 max |diff| {diff:.2e}");
            assert!(diff <= 1e-4, "{case}: max |diff| {diff}");
        }
    }
}

#[test]
fn official_sharded_layout_gives_identical_outputs() {
    let cases = cases();
    let diffusers = model("t2v", DType::F32);
    let official = model("t2v_official", DType::F32);
    for case in ["t2v_a", "t2v_tokens"] {
        let a = run(&diffusers, &cases, case);
        let b = run(&official, &cases, case);
        assert_eq!(max_abs_diff(&a, &b), 0.0, "{case}");
    }
}

#[test]
fn half_precision_weights_stay_close_to_the_f32_reference() {
    let cases = cases();
    for dtype in [DType::BF16, DType::F16] {
        for (name, case) in [
            ("t2v", "t2v_b"),
            ("t2v_official", "t2v_tokens"),
            ("i2v", "i2v_a"),
        ] {
            let out = run(&model(name, dtype), &cases, case);
            let err = rel_l2(&out, &cases[&format!("{case}.out")]);
            eprintln!("{name} {case} {dtype:?}: relative L2 {err:.2e}");
            assert!(err <= 2e-2, "{name} {case} {dtype:?}: relative L2 {err}");
        }
    }
}
