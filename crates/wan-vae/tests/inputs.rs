//! Bad checkpoints and bad inputs give errors that name the problem; half-precision weights load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use wan_vae::WanVae;

fn tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/vae/tiny_a")
}

fn weights() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(
        tiny().join("diffusion_pytorch_model.safetensors"),
        &Device::Cpu,
    )
    .expect("weights")
}

/// Writes `tensors` with the tiny config into a fresh `vae/` folder.
fn folder(dir: &Path, tensors: &HashMap<String, Tensor>) -> PathBuf {
    let vae = dir.join("vae");
    std::fs::create_dir_all(&vae).expect("mkdir");
    std::fs::copy(tiny().join("config.json"), vae.join("config.json")).expect("config");
    candle_core::safetensors::save(tensors, vae.join("diffusion_pytorch_model.safetensors"))
        .expect("save");
    vae
}

fn load_err(path: &Path) -> String {
    WanVae::from_path(path, DType::F32, &Device::Cpu)
        .expect_err("must fail")
        .to_string()
}

#[test]
fn missing_folder_file_and_key_are_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let missing = dir.path().join("nowhere");
    assert!(
        load_err(&missing).contains("nowhere"),
        "{}",
        load_err(&missing)
    );

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let err = load_err(&empty);
    assert!(err.contains("empty"), "{err}");

    let mut tensors = weights();
    let key = "decoder.conv_in.weight";
    tensors.remove(key).expect("key present");
    let err = load_err(&folder(&dir.path().join("a"), &tensors));
    assert!(err.contains(key), "{err}");
}

#[test]
fn wrong_shape_and_dtype_are_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let key = "decoder.conv_in.bias";
    let mut tensors = weights();
    tensors.insert(
        key.into(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).expect("z"),
    );
    let err = load_err(&folder(&dir.path().join("shape"), &tensors));
    assert!(
        err.contains(key) && err.contains("expected: [16], got: [3]"),
        "{err}"
    );

    let mut tensors = weights();
    tensors.insert(
        key.into(),
        Tensor::zeros(1, DType::I64, &Device::Cpu).expect("z"),
    );
    let err = load_err(&folder(&dir.path().join("dtype"), &tensors));
    assert!(err.contains(key) && err.contains("I64"), "{err}");
}

#[test]
fn half_precision_weights_load_and_decode_close_to_f32() {
    let dir = tempfile::tempdir().expect("tmp");
    let z = Tensor::randn(0f32, 1.0, (1, 16, 2, 3, 4), &Device::Cpu).expect("z");
    let f32_vae = WanVae::from_path(&tiny(), DType::F32, &Device::Cpu).expect("f32 vae");
    let f32_out = f32_vae.decode(&z).expect("f32");
    for dtype in [DType::F16, DType::BF16] {
        let tensors: HashMap<String, Tensor> = weights()
            .into_iter()
            .map(|(k, v)| (k, v.to_dtype(dtype).expect("cast")))
            .collect();
        let path = folder(&dir.path().join(format!("{dtype:?}")), &tensors);
        // Stored in half precision, computed in f32: only the weights' rounding differs.
        let vae = WanVae::from_path(&path, DType::F32, &Device::Cpu).expect("half weights");
        let out = vae.decode(&z).expect("half-weight decode");
        let rel = ((&out - &f32_out).and_then(|d| d.sqr()?.sum_all()?.sqrt()))
            .and_then(|n| n.to_scalar::<f32>())
            .expect("norm")
            / f32_out
                .sqr()
                .and_then(|s| s.sum_all()?.sqrt()?.to_scalar::<f32>())
                .expect("norm");
        assert!(rel < 2e-2, "{dtype:?}: relative L2 {rel}");

        // Asked for in half precision: computed in f32 on the CPU (its matmul has no half
        // types), returned in the dtype asked for.
        let vae = WanVae::from_path(&path, dtype, &Device::Cpu).expect("half-precision vae");
        let out = vae
            .decode(&z.to_dtype(dtype).expect("z"))
            .expect("half-precision decode");
        assert_eq!(out.dtype(), dtype);
        let out = out.to_dtype(DType::F32).expect("widen");
        let rel = ((&out - &f32_out).and_then(|d| d.sqr()?.sum_all()?.sqrt()))
            .and_then(|n| n.to_scalar::<f32>())
            .expect("norm")
            / f32_out
                .sqr()
                .and_then(|s| s.sum_all()?.sqrt()?.to_scalar::<f32>())
                .expect("norm");
        assert!(rel < 3e-2, "{dtype:?} compute: relative L2 {rel}");
    }
}

#[test]
fn bad_latents_and_frame_counts_are_named() {
    let vae = WanVae::from_path(&tiny(), DType::F32, &Device::Cpu).expect("vae");
    let dev = Device::Cpu;
    let err = vae
        .decode(&Tensor::zeros((1, 4, 2, 3, 4), DType::F32, &dev).expect("z"))
        .expect_err("channels")
        .to_string();
    assert!(
        err.contains("4 channels") && err.contains("expected 16"),
        "{err}"
    );
    let err = vae
        .decode(&Tensor::zeros((16, 2, 3, 4), DType::F32, &dev).expect("z"))
        .expect_err("rank")
        .to_string();
    assert!(err.contains("5 dims"), "{err}");
    let err = vae
        .encode(&Tensor::zeros((1, 3, 6, 16, 16), DType::F32, &dev).expect("x"))
        .expect_err("frames")
        .to_string();
    assert!(err.contains("6 frames") && err.contains("1 + 4k"), "{err}");
}
