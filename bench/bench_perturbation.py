"""RISE and Ablation-CAM against what they cannot beat and what they replace, measured side by side in one run (on the
model's device: a GPU when there is one; random weights time the same as real).

    python bench/bench_perturbation.py [--models efficientnet_lite0 resnet50 vit_base_patch16_224] [--repeats 3]

1. RISE with N masks ÷ a raw batched forward pass over N masked copies of the image (the same batch size): the least
   any RISE can cost, so the ratio is what making the masks and summing them adds.
2. Ablation-CAM (ours: only the layers after the chosen one run for each ablated channel) ÷ the grad-cam package's
   AblationCAM (the whole model for each channel, batches of 32), over the same channels of the same layer. The
   package's map is checked equal to ours in tests/test_attribution.py.
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

MASKS = 256
TARGET = 282


def measure(name: str, repeats: int) -> dict[str, float]:
    import torch

    import interp
    from interp.attribution import attribute
    from interp.attribution.memory import forward_batch_size

    model = interp.load_model(name, None if name == "efficientnet_lite0" else "random")
    x = model.preprocess(interp.load_sample("chelsea").image).to(model.device)[None]
    chunk = forward_batch_size(model, x, MASKS)
    masks = (torch.rand((chunk, 1, *x.shape[-2:]), generator=torch.Generator().manual_seed(0)) < 0.5).to(x)

    def rise() -> None:
        attribute(model, x[0], "rise", TARGET, masks=MASKS)

    def raw_forward() -> None:
        with model.shared() as net, torch.inference_mode():
            for start in range(0, MASKS, chunk):
                net(x * masks[: min(chunk, MASKS - start)]).softmax(-1)[:, TARGET]

    layer = model.structure.get_submodule(model.spec.cam_layer)

    def ours() -> None:
        attribute(model, x[0], "ablation_cam", TARGET)

    def package() -> None:
        from pytorch_grad_cam import AblationCAM
        from pytorch_grad_cam.ablation_layer import AblationLayer, AblationLayerVit
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        vit = {}
        if model.spec.grid is not None:  # tokens back on the patch grid, and the ViT's ablation layer
            (rows, cols), skip = model.spec.grid, model.spec.prefix_tokens
            vit = {"ablation_layer": AblationLayerVit(), "reshape_transform": lambda t: t[:, skip:, :].reshape(
                t.shape[0], rows, cols, t.shape[2]).permute(0, 3, 1, 2)}  # fmt: skip
        with model.exclusive() as net:
            net.requires_grad_(True)
            try:
                with AblationCAM(model=net, target_layers=[layer], **({"ablation_layer": AblationLayer()} | vit)) as cam:
                    cam(input_tensor=x, targets=[ClassifierOutputTarget(TARGET)])
            finally:
                net.requires_grad_(False)

    best = interleaved_best({"rise": rise, "raw": raw_forward}, repeats)
    best.update(interleaved_best({"ablation_ours": ours, "ablation_package": package}, max(1, repeats // 2)))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite0", "resnet50", "vit_base_patch16_224"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import logging

    logging.disable(logging.WARNING)  # the package prints a progress bar per batch to stderr; its logs are noise here
    print(f"best of interleaved rounds; RISE with {MASKS} masks; Ablation-CAM at each model's default layer")
    print(f"{'model':<22}{'RISE s':>8}{'raw fwd s':>10}{'RISE ÷ raw':>11}{'ablation s':>11}{'package s':>10}"
          f"{'package ÷ ours':>15}")  # fmt: skip
    for name in args.models:
        try:
            r = measure(name, args.repeats)
        except Exception as exc:  # noqa: BLE001 - a model whose weights are not here: say so, measure the others
            print(f"{name:<22}skipped: {exc}")
            continue
        print(f"{name:<22}{r['rise']:8.2f}{r['raw']:10.2f}{r['rise'] / r['raw']:10.2f}×{r['ablation_ours']:11.2f}"
              f"{r['ablation_package']:10.2f}{r['ablation_package'] / r['ablation_ours']:14.1f}×", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
