"""PyTorch peer of `wan bench dit`: times one forward of diffusers `WanTransformer3DModel` at a
release preset's real widths (`--layers` blocks, random weights) on the same latent and text sizes.
Prints one JSON line with `seconds` (median) last.
"""

import argparse
import json
import statistics
import time

import torch
from diffusers import WanTransformer3DModel

# heads (x128 head dim), FFN width, in/out channels, VAE pixels per latent cell
PRESETS = {
    "1.3b": (12, 8960, 16, 8),
    "14b": (40, 13824, 16, 8),
    "5b": (24, 14336, 48, 16),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", choices=sorted(PRESETS), default="1.3b")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--height", type=int, default=160)
    ap.add_argument("--width", type=int, default=272)
    ap.add_argument("--text-len", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    heads, ffn, channels, cell = PRESETS[args.preset]
    torch.manual_seed(0)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    model = WanTransformer3DModel(
        num_attention_heads=heads,
        attention_head_dim=128,
        in_channels=channels,
        out_channels=channels,
        text_dim=4096,
        ffn_dim=ffn,
        num_layers=args.layers,
        cross_attn_norm=True,
    ).eval().to(dtype)
    latent = (1, channels, (args.frames - 1) // 4 + 1, args.height // cell, args.width // cell)
    x = torch.randn(latent, dtype=dtype)
    text = torch.randn(1, args.text_len, 4096, dtype=dtype)
    t = torch.tensor([500.0])
    times = []
    with torch.inference_mode():
        model(x, t, text, return_dict=False)
        for _ in range(max(args.repeats, 1)):
            start = time.perf_counter()
            model(x, t, text, return_dict=False)
            times.append(time.perf_counter() - start)
    print(json.dumps({
        "case": f"dit {args.preset} L{args.layers} f{args.frames} {args.height}x{args.width}",
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "seconds": statistics.median(times),
    }))


if __name__ == "__main__":
    main()
