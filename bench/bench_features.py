"""Features benchmark, measured side by side in one run (inputs on the model's device: CPU or GPU).

    python bench/bench_features.py [--model efficientnet_lite0] [--steps 64] [--size 128] [--images 256]

1. Activation maximisation of N steps (a class objective, so every step runs the whole network; and a channel of the
   default layer, whose passes end at the layer) ÷ a bare loop of N forward+backward passes through the same model
   at the same image size, for the FFT and the pixel parameterisations. Target: ≤ 1.25.
2. The default visualisation a dashboard user waits for (the defaults of ``VisualiseSettings``), wall time, and the
   process's peak resident memory. Target on 2 CPU cores: ~20 s at most, memory within the app's 2 GB.
3. Spectrum extraction (decoded images → the unit's values, through the concept lab's extraction) ÷ a bare batched
   forward pass over preprocessed tensors on the device. Target: ≥ 0.9.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.bench_attribution import ratios_beside


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import torch

    import interp
    from interp.concepts import generated
    from interp.features import Objective, VisualiseSettings, default_feature_layer, spectrum, visualise
    from interp.features.optimise import _model_input

    model = interp.load_model(args.model, None if args.model == "efficientnet_lite0" else "random")
    layer = default_feature_layer(model)
    print(f"{args.model} on {model.device}, torch threads {torch.get_num_threads()}, {args.rounds} rounds")

    side = args.size if model.spec.family != "vit" else model.data_config["input_size"][1]
    x = torch.rand(1, 3, side, side, device=model.device, requires_grad=True)

    def bare() -> None:  # N forward+backward passes, the input's gradient: the floor of gradient ascent
        with model.exclusive() as net, torch.enable_grad():
            for _ in range(args.steps):
                net(_model_input(model, x))[0, 0].backward()

    for objective in (Objective("class", 0), Objective("channel", 0, layer)):
        for param in ("fft", "pixel"):
            settings = VisualiseSettings(param=param, steps=args.steps, size=args.size)

            def optimise() -> None:
                visualise(model, objective, settings)

            ratios, best_bare, best_am = ratios_beside(bare, optimise, args.rounds)
            print(f"activation maximisation, {objective.kind:7s} {param:5s}, {args.steps} steps at {args.size} px: "
                  f"{best_am:.2f} s; bare loop {best_bare:.2f} s; AM ÷ bare: median "
                  f"{statistics.median(1 / r for r in ratios):.2f} (range {1 / ratios[-1]:.2f}-{1 / ratios[0]:.2f}) "
                  "(target ≤ 1.25)")  # fmt: skip

    for param in ("fft", "pixel"):
        start = time.perf_counter()
        v = visualise(model, Objective("channel", 0, layer), VisualiseSettings(param=param))
        took = time.perf_counter() - start
        d = v.settings
        print(f"default visualisation ({param}, {d.steps} steps at {d.size} px, batch {d.batch}, {layer}): {took:.1f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of this process so far: {peak:.0f} MB (the app's bound: 2048 MB)")

    images = generated.random_images(args.images, seed=3)
    tensors = torch.stack([model.preprocess(im.image) for im in images]).to(model.device)

    def bare_forward() -> None:
        with model.shared() as net, torch.inference_mode():
            for chunk in tensors.split(32):
                net(chunk)

    def extract() -> None:
        spectrum(model, Objective("channel", 0, layer), images, batch_size=32)

    ratios, best_bare, best_spec = ratios_beside(bare_forward, extract, args.rounds)
    n = len(images)
    print(f"spectrum of {layer} over {n} decoded images: {n / best_spec:.0f} images/s; bare batched forward over "
          f"preprocessed tensors {n / best_bare:.0f} images/s; spectrum ÷ bare (speed) median "
          f"{statistics.median(ratios):.2f} (range {ratios[0]:.2f}-{ratios[-1]:.2f}) (target ≥ 0.9)")  # fmt: skip


if __name__ == "__main__":
    main()
