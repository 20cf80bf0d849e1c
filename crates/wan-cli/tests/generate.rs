//! `wan generate` as a user runs it, on the tiny diffusers-layout model `fixtures/tiny-t2v`.
//!
//! Parity reference: diffusers 0.42.1 `WanPipeline(..., latents=..., output_type="np")`
//! (`fixtures/pipeline/`, written by `tools/fixtures/pipeline.py`); tolerance max |diff| <= 1e-3.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{Device, Tensor};

const TOLERANCE: f32 = 1e-3;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn model() -> String {
    fixtures().join("tiny-t2v").display().to_string()
}

fn wan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wan"))
        .arg("generate")
        .args(args)
        .env_remove("WAN_MODEL")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("run wan")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn reference() -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(
        fixtures().join("pipeline/reference.safetensors"),
        &Device::Cpu,
    )
    .expect("reference")
}

fn frames_of(path: &Path) -> Tensor {
    let mut t = candle_core::safetensors::load(path, &Device::Cpu).expect("output safetensors");
    t.remove("frames").expect("tensor `frames`")
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("diff")
}

/// The `cfg` reference case: its prompt and the model's default negative prompt, 48x32, 5 frames,
/// 4 steps, guidance 5.0, the checkpoint's UniPC config, the reference's initial latents.
#[test]
fn frames_match_diffusers_with_the_same_initial_latents() {
    let dir = tempfile::tempdir().expect("tmp");
    let reference = reference();
    let latents_path = dir.path().join("latents.safetensors");
    let latents = reference["cfg.latents"].clone();
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("latents".to_string(), latents)]),
        &latents_path,
    )
    .expect("save latents");
    let output = dir.path().join("x.safetensors");
    let out = wan(&[
        "--model",
        &model(),
        "A red fox runs through fresh snow at dawn, cinematic lighting.",
        "--width",
        "48",
        "--height",
        "32",
        "--frames",
        "5",
        "--steps",
        "4",
        "--guidance",
        "5.0",
        "--init-latents",
        latents_path.to_str().expect("utf-8"),
        "--output",
        output.to_str().expect("utf-8"),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let d = max_diff(&frames_of(&output), &reference["cfg.frames"]);
    assert!(d <= TOLERANCE, "max |diff| {d} > {TOLERANCE}");
}

#[test]
fn same_seed_gives_bit_identical_output_and_the_seed_is_reported() {
    let dir = tempfile::tempdir().expect("tmp");
    let run = |name: &str| {
        let output = dir.path().join(name);
        let out = wan(&[
            "--model",
            &model(),
            "--prompt",
            "一只猫在草地上行走，写实风格。",
            "--width",
            "32",
            "--height",
            "48",
            "--frames",
            "9",
            "--steps",
            "3",
            "--seed",
            "7",
            "--output",
            output.to_str().expect("utf-8"),
            "--json",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
        assert_eq!(summary["seed"], 7);
        for stage in ["load", "encode", "denoise", "decode", "write", "total"] {
            assert!(summary["timings"][stage].as_f64().is_some(), "{stage}");
        }
        assert!(summary["peak_memory_bytes"].as_u64().unwrap_or(0) > 0);
        std::fs::read(output).expect("output")
    };
    assert_eq!(run("a.safetensors"), run("b.safetensors"));

    // Without --seed a random one is drawn, printed and recorded.
    let output = dir.path().join("r.safetensors");
    let out = wan(&[
        "--model",
        &model(),
        "a cat",
        "--width",
        "32",
        "--height",
        "32",
        "--frames",
        "1",
        "--steps",
        "1",
        "--output",
        output.to_str().expect("utf-8"),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(seed "), "{stdout}");
}

#[test]
fn mp4_has_the_requested_frames_size_and_fps() {
    let dir = tempfile::tempdir().expect("tmp");
    let output = dir.path().join("clip.mp4");
    let out = wan(&[
        "--model",
        &model(),
        "a boat on a lake",
        "--width",
        "48",
        "--height",
        "32",
        "--frames",
        "9",
        "--steps",
        "2",
        "--fps",
        "24",
        "--seed",
        "11",
        "--output",
        output.to_str().expect("utf-8"),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-of",
            "json",
            "-show_streams",
            "-show_format",
        ])
        .arg(&output)
        .output();
    let Ok(probe) = probe else {
        eprintln!("ffprobe not installed: the MP4 is checked by wan-video's own decoder test only");
        return;
    };
    assert!(probe.status.success(), "{}", stderr(&probe));
    let info: serde_json::Value = serde_json::from_slice(&probe.stdout).expect("ffprobe json");
    let stream = &info["streams"][0];
    assert_eq!(stream["codec_name"], "h264");
    assert_eq!(stream["pix_fmt"], "yuv420p");
    assert_eq!(
        (stream["width"].as_u64(), stream["height"].as_u64()),
        (Some(48), Some(32))
    );
    assert_eq!(stream["nb_read_frames"], "9");
    assert_eq!(stream["r_frame_rate"], "24/1");
    let tags = &info["format"]["tags"];
    let comment: serde_json::Value =
        serde_json::from_str(tags["comment"].as_str().expect("comment tag")).expect("metadata");
    assert_eq!(comment["prompt"], "a boat on a lake");
    assert_eq!(comment["seed"], 11);
    assert_eq!(comment["steps"], 2);
}

/// Runs a bad command and checks it fails fast, names `needle`, and writes nothing.
fn rejects(args: &[&str], needle: &str) {
    let dir = tempfile::tempdir().expect("tmp");
    let output = dir.path().join("out.mp4");
    let mut all = vec!["--output", output.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    let out = wan(&all);
    let err = stderr(&out);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(
        err.contains(needle),
        "{args:?}: {err:?} does not name {needle:?}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!output.exists(), "{args:?} wrote an output");
}

#[test]
fn each_invalid_setting_is_named() {
    let m = model();
    let base = |extra: &[&'static str]| -> Vec<String> {
        let mut v = vec!["--model".to_string(), m.clone(), "a cat".to_string()];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let cases: &[(&[&str], &str)] = &[
        (
            &["--width", "50"],
            "--width: 50 is not allowed: use a multiple of 16",
        ),
        (
            &["--height", "20"],
            "--height: 20 is not allowed: use a multiple of 16",
        ),
        (&["--frames", "6"], "--frames: 6 is not allowed: use 4k+1"),
        (&["--steps", "0"], "--steps: 0 is not allowed"),
        (&["--guidance", "-1"], "--guidance: -1 is not allowed"),
        (&["--shift", "0"], "--shift: 0 is not allowed"),
        (&["--sampler", "heun"], "--sampler"),
        (&["--fps", "0"], "--fps"),
    ];
    for (extra, needle) in cases {
        let args = base(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        rejects(&args, needle);
    }
}

#[test]
fn missing_model_prompt_output_folder_and_latents_are_named() {
    rejects(&["--model", "/no/such/model", "a cat"], "/no/such/model");
    rejects(&["--model", "not a repo id", "a cat"], "not a repo id");
    rejects(
        &["--model", "Wan-AI/Not-In-The-Cache", "a cat"],
        "Wan-AI/Not-In-The-Cache",
    );
    rejects(&["--model", &model()], "no prompt");
    rejects(&["--model", &model(), "   "], "prompt");

    let out = wan(&[
        "--model",
        &model(),
        "a cat",
        "--output",
        "/no/such/dir/out.mp4",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/no/such/dir"), "{}", stderr(&out));
    let out = wan(&["--model", &model(), "a cat", "--output", "clip.avi"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("clip.avi"), "{}", stderr(&out));

    let dir = tempfile::tempdir().expect("tmp");
    let missing = dir.path().join("missing.safetensors");
    rejects(
        &[
            "--model",
            &model(),
            "a cat",
            "--init-latents",
            missing.to_str().expect("utf-8"),
        ],
        "missing.safetensors: no such file",
    );
    let wrong_name = dir.path().join("noise.safetensors");
    let z = Tensor::zeros((16, 1, 4, 4), candle_core::DType::F32, &Device::Cpu).expect("z");
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("noise".to_string(), z.clone())]),
        &wrong_name,
    )
    .expect("save");
    rejects(
        &[
            "--model",
            &model(),
            "a cat",
            "--init-latents",
            wrong_name.to_str().expect("utf-8"),
        ],
        "no tensor named `latents` (found: noise)",
    );
    let wrong_shape = dir.path().join("latents.safetensors");
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("latents".to_string(), z)]),
        &wrong_shape,
    )
    .expect("save");
    rejects(
        &[
            "--model",
            &model(),
            "a cat",
            "--width",
            "32",
            "--height",
            "32",
            "--frames",
            "5",
            "--init-latents",
            wrong_shape.to_str().expect("utf-8"),
        ],
        "[16, 2, 4, 4]",
    );
}
