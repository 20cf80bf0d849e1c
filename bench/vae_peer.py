"""PyTorch peer of `wan bench vae`: times diffusers `AutoencoderKLWan.decode` with the real Wan2.1 VAE
configuration (base_dim 96, dim_mult [1, 2, 4, 4], 2 res blocks; random weights) on latents for
`--frames` video frames of `--height` x `--width` pixels. Prints one JSON line with `seconds` (median) last.
"""

import argparse
import json
import statistics
import time

import torch
from diffusers import AutoencoderKLWan


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--height", type=int, default=128)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if (args.frames - 1) % 4 != 0 or args.height % 8 != 0 or args.width % 8 != 0:
        raise SystemExit("frames must be 1 + 4k and height/width multiples of 8")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    vae = AutoencoderKLWan().eval().to(dtype)
    latent_frames = 1 + (args.frames - 1) // 4
    z = torch.randn(1, 16, latent_frames, args.height // 8, args.width // 8, dtype=dtype)
    times = []
    with torch.inference_mode():
        vae.decode(z)
        for _ in range(max(args.repeats, 1)):
            start = time.perf_counter()
            out = vae.decode(z).sample
            times.append(time.perf_counter() - start)
    result = {
        "case": f"vae-decode f{args.frames} {args.height}x{args.width}",
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "shape": list(out.shape),
        "seconds": statistics.median(times),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
