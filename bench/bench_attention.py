"""Attention benchmark: ratios measured side by side in one run (CPU; random weights time the same as real ones).

    python bench/bench_attention.py [--models vit_small_patch16_224 vit_base_patch16_224] [--rounds 15]

1. Capturing every layer's attention (fused attention off, hooks on every layer, arrays copied out) ÷ a plain forward
   pass of the same model with its default (fused) attention. Target: ≤ 1.2.
2. Rollout (mean fusion, discard 0.9) and head statistics (entropy, mean distance) ÷ that plain forward pass: what
   the views add. Target: ≤ 0.1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.bench_attribution import interleaved_best


def ratios(name: str, rounds: int) -> dict[str, float]:
    import torch

    import interp
    from interp.attention import capture, head_stats, rollout_map

    model = interp.load_model(name, "random")
    x = model.preprocess(interp.load_sample("chelsea").image)[None].to(model.device)
    cap = capture(model, x)

    def forward() -> None:
        with torch.inference_mode():
            model._module(x)

    def capture_all() -> None:
        capture(model, x)

    def views() -> None:
        rollout_map(cap, "mean", 0.9)
        head_stats(cap)

    best = interleaved_best({"forward": forward, "capture": capture_all, "views": views}, rounds)
    return {
        "forward_ms": best["forward"] * 1e3,
        "capture_ms": best["capture"] * 1e3,
        "views_ms": best["views"] * 1e3,
        "capture_ratio": best["capture"] / best["forward"],
        "views_ratio": best["views"] / best["forward"],
        "shape": "x".join(map(str, cap.attn.shape)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["shapes_vit", "vit_small_patch16_224", "vit_base_patch16_224"])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; best of {args.rounds} interleaved rounds")
    print(f"{'model':<24} {'attention':>16} {'forward':>9} {'capture':>9} {'ratio':>6} {'views':>8} {'ratio':>6}")
    for name in args.models:
        start = time.perf_counter()
        r = ratios(name, args.rounds)
        print(f"{name:<24} {r['shape']:>16} {r['forward_ms']:7.1f}ms {r['capture_ms']:7.1f}ms {r['capture_ratio']:6.2f} "
              f"{r['views_ms']:6.1f}ms {r['views_ratio']:6.3f}   ({time.perf_counter() - start:.0f} s)")  # fmt: skip
    print("targets: capture ratio ≤ 1.2, views ratio ≤ 0.1")


if __name__ == "__main__":
    main()
