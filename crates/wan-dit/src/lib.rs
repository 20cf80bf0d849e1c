//! The Wan diffusion transformer (WanTransformer3DModel / WanModel) in candle.
