"""CAM methods sharing their forward pass: a grid of 3 classes × Grad-CAM, Grad-CAM++ and Layer-CAM on one image,
with the layer pass shared (as the Attribution page computes it) ÷ a pass per cell, measured side by side (CPU
unless a GPU is there; random weights time the same as real).

    python bench/bench_cam_grid.py [--models efficientnet_lite0 resnet50 vit_base_patch16_224] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench_attribution import interleaved_best  # noqa: E402

CLASSES = (282, 281, 285)
CAMS = ("grad_cam", "grad_cam_pp", "layer_cam")


def measure(name: str, repeats: int) -> dict[str, float]:
    import interp
    from interp.attribution import attribute, cam

    model = interp.load_model(name, None if name == "efficientnet_lite0" else "random")
    x = model.preprocess(interp.load_sample("chelsea").image).to(model.device)

    def first() -> None:
        model.forget(cam.KEPT_PASS)
        attribute(model, x, "grad_cam", CLASSES[0])

    def next_class() -> None:  # runs after first(), whose pass it shares
        attribute(model, x, "grad_cam", CLASSES[1])

    def shared() -> None:
        model.forget(cam.KEPT_PASS)
        for target in CLASSES:
            for method in CAMS:
                attribute(model, x, method, target)

    def unshared() -> None:
        for target in CLASSES:
            for method in CAMS:
                model.forget(cam.KEPT_PASS)
                attribute(model, x, method, target)

    return interleaved_best({"first": first, "next": next_class, "shared": shared, "unshared": unshared}, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite0", "resnet50", "vit_base_patch16_224"])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"best of {args.repeats} interleaved rounds; grid: {len(CLASSES)} classes × {', '.join(CAMS)}")
    print(f"{'model':<22}{'first ms':>9}{'next ms':>9}{'grid shared ms':>15}{'a pass per cell ms':>19}{'speed-up':>9}")
    for name in args.models:
        r = measure(name, args.repeats)
        print(f"{name:<22}{r['first'] * 1e3:9.1f}{r['next'] * 1e3:9.1f}{r['shared'] * 1e3:15.1f}"
              f"{r['unshared'] * 1e3:19.1f}{r['unshared'] / r['shared']:8.1f}×", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
