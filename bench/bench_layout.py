"""Memory layout benchmark: each CNN in channels-last (NHWC) against the same network in PyTorch's default NCHW
layout, same weights, same inputs, measured side by side in one run, where the model runs (a GPU when there is one).

    python bench/bench_layout.py [--models efficientnet_lite0 resnet50 ...] [--batch-size 32] [--rounds 3]

First what a visitor waits for on the first model (a prediction, Integrated Gradients), then two workloads per
model: a batched forward pass without autograd (predictions, scans, concept activations) and a forward+backward pass
to the input for 4 images (what gradient attributions, Grad-CAM and activation maximisation do). Each line prints
NCHW time ÷ channels-last time (above 1: channels-last is faster) and the largest difference between the two
outputs, relative to the largest output. ``interp.load_model`` keeps a network channels-last where
:func:`interp.models.loading.channels_last_pays` says so (CNNs on a CPU); the last column says which layout it chose
here. Models other than the bundled ones run with random weights (no download): speed does not depend on the
weights' values.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.bench_attribution import ratios_beside


def load(name: str):
    """``name`` with the weights that ship with the app, else random ones (no download)."""
    import interp
    from interp.models.weights import BUNDLED

    return interp.load_model(name, None if name in BUNDLED else "random")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite0", "resnet50", "mobilenetv3_large_100"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import torch

    from interp.models.loading import channels_last_pays

    gen = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ratio = NCHW time ÷ channels-last time")
    user_facing(args.models[0], args.rounds)
    for name in args.models:
        model = load(name)
        net = model._module
        nchw = copy.deepcopy(net).to(memory_format=torch.contiguous_format)
        nhwc = copy.deepcopy(net).to(memory_format=torch.channels_last)
        size = tuple(model.data_config["input_size"])
        x = torch.randn(args.batch_size, *size, generator=gen).to(model.device)
        small = x[:4].clone()

        def forward(module: torch.nn.Module) -> None:
            with torch.inference_mode():
                module(x)

        def backward(module: torch.nn.Module) -> None:
            inp = small.clone().requires_grad_(True)
            module(inp)[:, 0].sum().backward()

        with torch.inference_mode():
            a, b = nchw(x[:8]).float(), nhwc(x[:8]).float()
        apart = ((a - b).abs().max() / a.abs().max().clamp_min(1e-12)).item()
        chosen = "channels-last" if channels_last_pays(model.spec, model.device) else "NCHW"
        for label, work in (("forward", forward), ("forward+backward", backward)):
            ratios, _, _ = ratios_beside(lambda w=work: w(nchw), lambda w=work: w(nhwc), args.rounds)
            batch = args.batch_size if label == "forward" else 4
            print(f"{name:24s} on {model.device.type}, {label:16s} batch {batch:3d}: ratio median "
                  f"{statistics.median(ratios):.2f} (range {ratios[0]:.2f}-{ratios[-1]:.2f}); outputs apart "
                  f"{apart:.1e}; load_model uses {chosen}")  # fmt: skip


def user_facing(name: str, rounds: int) -> None:
    """What a visitor waits for, with the model as ``load_model`` gives it and with ``INTERP_CHANNELS_LAST=0``: a
    prediction of one photo and Integrated Gradients on it (the method's default settings), no result cache."""
    import interp
    from interp.attribution import attribute

    chosen = load(name)
    os.environ["INTERP_CHANNELS_LAST"] = "0"
    try:
        nchw = load(name)
    finally:
        del os.environ["INTERP_CHANNELS_LAST"]
    image = interp.load_sample("chelsea").image
    x = chosen.batch_of([chosen.pixels(image)])

    def predict(model) -> None:
        for _ in range(10):
            model.run(x)

    def integrated_gradients(model) -> None:
        attribute(model, image, "integrated_gradients")

    for label, work in (("prediction", predict), ("Integrated Gradients", integrated_gradients)):
        ratios, best_nchw, best_chosen = ratios_beside(lambda w=work: w(nchw), lambda w=work: w(chosen), rounds)
        scale = 10 if label == "prediction" else 1
        print(f"{name}, {label} of one photo: {best_chosen / scale * 1e3:.1f} ms as loaded, "
              f"{best_nchw / scale * 1e3:.1f} ms in NCHW; ratio median {statistics.median(ratios):.2f} "
              f"(range {ratios[0]:.2f}-{ratios[-1]:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
