//! The causal 3D Wan-VAE (Wan 2.1, z=16, 8x8x4) in candle.
