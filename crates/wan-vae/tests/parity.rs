//! Parity with diffusers 0.42.1 `AutoencoderKLWan` (torch 2.15.0, fp32) on the tiny random
//! checkpoints made by `tools/fixtures/vae.py`: decode and encode (posterior mean) must agree to
//! max |diff| <= 1e-4.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use wan_core::WeightFiles;
use wan_vae::{VaeConfig, WanVae};

/// Tolerance of every f32 comparison against the reference.
const TOL: f32 = 1e-4;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/vae")
}

fn load(name: &str) -> WanVae {
    WanVae::from_path(&fixtures().join(name), DType::F32, &Device::Cpu).expect("load tiny vae")
}

fn io(name: &str) -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join(name).join("io.safetensors"), &Device::Cpu)
        .expect("io")
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape");
    let a = a.to_dtype(DType::F32).expect("f32");
    let b = b.to_dtype(DType::F32).expect("f32");
    (a - b)
        .expect("sub")
        .abs()
        .expect("abs")
        .flatten_all()
        .expect("flat")
        .max(0)
        .expect("max")
        .to_scalar::<f32>()
        .expect("scalar")
}

fn check_all(name: &str, vae: &WanVae, tol: f32) {
    let io = io(name);
    let mut cases: Vec<&String> = io
        .keys()
        .filter(|k| k.ends_with(".z") || k.ends_with(".video") && k.starts_with("encode"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 6, "{name}: fixture cases");
    for key in cases {
        let (case, _) = key.rsplit_once('.').expect("case");
        let (got, want) = if case.starts_with("decode") {
            (
                vae.decode(&io[key]).expect("decode"),
                &io[&format!("{case}.video")],
            )
        } else {
            (
                vae.encode(&io[key]).expect("encode"),
                &io[&format!("{case}.mean")],
            )
        };
        let diff = max_abs_diff(&got, want);
        println!("{name} {case}: max |diff| = {diff:.3e}");
        assert!(diff <= tol, "{name} {case}: max |diff| {diff} > {tol}");
    }
}

#[test]
fn tiny_a_matches_diffusers() {
    check_all("tiny_a", &load("tiny_a"), TOL);
}

#[test]
fn tiny_b_matches_diffusers() {
    check_all("tiny_b", &load("tiny_b"), TOL);
}

#[test]
fn official_layout_pth_matches_diffusers_layout() {
    let cfg = VaeConfig::from_json_file(&fixtures().join("tiny_a/config.json")).expect("config");
    let pth = WeightFiles::from_file(&fixtures().join("tiny_a_official.pth")).expect("pth");
    let official =
        WanVae::from_weights(&pth, &cfg, DType::F32, &Device::Cpu).expect("load official");
    let diffusers = load("tiny_a");
    let io = io("tiny_a");
    let z = &io["decode_b1_t2.z"];
    let a = official.decode(z).expect("decode official");
    let b = diffusers.decode(z).expect("decode diffusers");
    assert_eq!(
        max_abs_diff(&a, &b),
        0.0,
        "official vs diffusers layout decode"
    );
    let x = &io["encode_b1_f5.video"];
    let a = official.encode(x).expect("encode official");
    let b = diffusers.encode(x).expect("encode diffusers");
    assert_eq!(
        max_abs_diff(&a, &b),
        0.0,
        "official vs diffusers layout encode"
    );
    check_all("tiny_a", &official, TOL);
}
