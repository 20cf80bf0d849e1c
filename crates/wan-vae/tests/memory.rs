//! Decoding streams latent frames through the causal cache: the working memory of a 21-frame
//! decode (81 video frames) stays within 1.5x of a 5-frame decode (17 video frames).
//!
//! Peak heap is measured by a counting allocator (this test binary only). The returned video
//! itself grows with its length, so the bound is on the peak minus the output's own bytes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{DType, Device, Tensor};
use wan_vae::{VaeConfig, WanVae};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Peak heap above the level before the call, and the output's bytes.
fn decode_peak(vae: &WanVae, latent_frames: usize) -> (usize, usize) {
    let z = Tensor::randn(0f32, 1.0, (1, 16, latent_frames, 4, 4), &Device::Cpu).expect("z");
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let video = vae.decode(&z).expect("decode");
    let peak = PEAK.load(Ordering::Relaxed) - before;
    assert_eq!(video.dims(), [1, 3, 4 * latent_frames - 3, 32, 32]);
    (peak, video.elem_count() * 4)
}

#[test]
fn decode_memory_does_not_grow_with_length() {
    // The Wan2.1 layout (dim_mult [1, 2, 4, 4], 2 res blocks, two time upsamplers) at a sixth of
    // its width, random weights.
    let cfg = VaeConfig {
        base_dim: 16,
        ..VaeConfig::wan21()
    };
    let vae = WanVae::load(wan_core::random_weights(DType::F32, &Device::Cpu), &cfg).expect("vae");
    // A first decode allocates what lives for the whole thread (the convolution's im2col buffer),
    // so that neither measured decode is charged for it.
    decode_peak(&vae, 1);
    let (peak5, out5) = decode_peak(&vae, 5);
    let (peak21, out21) = decode_peak(&vae, 21);
    let (work5, work21) = (peak5 - out5, peak21 - out21);
    eprintln!(
        "peak heap: 5 latent frames {:.1} MB (output {:.1} MB), 21 latent frames {:.1} MB (output {:.1} MB); working {:.2}x",
        peak5 as f64 / 1e6,
        out5 as f64 / 1e6,
        peak21 as f64 / 1e6,
        out21 as f64 / 1e6,
        work21 as f64 / work5 as f64
    );
    assert!(
        work21 as f64 <= 1.5 * work5 as f64,
        "working memory grew from {work5} to {work21} bytes"
    );
}
