//! Parity with diffusers 0.42.1 (torch 2.15.0, numpy 2.3.5; fixtures/video/versions.json) on the 8-bit conversions:
//! `VideoProcessor.postprocess_video` (denormalise + clamp, float32), `numpy_to_pil` (round half to even) and
//! `export_to_video` (truncation). Tolerance: exact (bit-for-bit floats, equal bytes).

use safetensors::SafeTensors;
use wan_video::{Frames, Rounding};

fn fixture() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/video/postprocess.safetensors"
    );
    std::fs::read(path).expect("fixture fixtures/video/postprocess.safetensors")
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn conversions_match_diffusers_exactly() {
    let bytes = fixture();
    let tensors = SafeTensors::deserialize(&bytes).expect("safetensors");
    let decoded = tensors.tensor("decoded").expect("decoded");
    let shape = decoded.shape();
    assert_eq!(shape.len(), 5);
    let (f, h, w) = (shape[2], shape[3], shape[4]);

    let frames = Frames::from_decoder_output(&f32s(decoded.data()), f, h, w, 16).expect("frames");
    let expected = f32s(tensors.tensor("frames").expect("frames").data());
    assert_eq!(frames.data().len(), expected.len());
    for (i, (a, b)) in frames.data().iter().zip(&expected).enumerate() {
        assert_eq!(
            a.to_bits(),
            b.to_bits(),
            "postprocess_video differs at {i}: {a} vs {b}"
        );
    }

    for (rounding, name) in [
        (Rounding::Nearest, "pil_rgb8"),
        (Rounding::Truncate, "video_rgb8"),
    ] {
        let reference = tensors.tensor(name).expect(name);
        let frame_len = h * w * 3;
        for index in 0..f {
            let ours = frames.frame_rgb8(index, rounding).expect("frame");
            let theirs = &reference.data()[index * frame_len..(index + 1) * frame_len];
            assert_eq!(ours, theirs, "{name}: frame {index} differs");
        }
    }
}
