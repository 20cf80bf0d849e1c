//! Video and image outputs: H.264 MP4, GIF, WebP, PNG frames and safetensors tensors.
