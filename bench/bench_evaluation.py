"""Deletion + insertion scores ÷ the raw batched forward passes they cannot avoid, measured side by side in one run
(on the model's device: a GPU when there is one; random weights time the same as real). The target (#21) is ≤ 1.15.

    python bench/bench_evaluation.py [--models efficientnet_lite0 resnet50 vit_base_patch16_224] [--steps 20]

Raw: the same 2·(steps + 1) perturbed inputs, made beforehand, through the model in the same batch sizes. "One map"
reads the memory budget as a lone call does; "in a run" is given the batch, as a dataset run reads it once.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench_attribution import interleaved_best, warm_grid_rerun  # noqa: E402

TARGET = 282


def measure(name: str, steps: int, repeats: int, with_imputation: bool = False) -> dict[str, float]:
    import torch

    import interp
    from interp.attribution import attribute
    from interp.attribution.memory import forward_batch_size
    from interp.evaluation import deletion_insertion

    model = interp.load_model(name, None if name == "efficientnet_lite0" else "random")
    x = model.preprocess(interp.load_sample("chelsea").image).to(model.device)[None]
    saliency = attribute(model, x[0], "grad_cam", TARGET).map
    n = 2 * (steps + 1)
    chunk = forward_batch_size(model, x, n)
    inputs = x.expand(n, *x.shape[1:]) * torch.linspace(0, 1, n, device=x.device).view(-1, 1, 1, 1)

    def ours() -> None:  # one map, with its own read of the memory budget
        deletion_insertion(model, x, saliency, TARGET, steps=steps)

    def ours_batched() -> None:  # as a dataset run scores its maps: the budget read once, the batch passed
        deletion_insertion(model, x, saliency, TARGET, steps=steps, batch=chunk)

    def raw() -> None:
        for start in range(0, n, chunk):
            model.run(inputs[start : start + chunk]).softmax(-1)[:, TARGET].cpu()

    def imputed() -> None:  # ROAD's noisy linear imputation: one sparse solve per perturbed input, on the CPU
        deletion_insertion(model, x, saliency, TARGET, steps=steps, batch=chunk, replacement="noisy_linear")

    runs = {"ours": ours, "batched": ours_batched, "raw": raw}
    return interleaved_best({**runs, "imputed": imputed} if with_imputation else runs, repeats)


CASCADE_RSS = """
import os
os.environ["HF_HUB_OFFLINE"] = "1"
import interp
from interp.evaluation import cascading_randomisation
model = interp.load_model("vit_base_patch16_224", "random")
x = model.preprocess(interp.load_sample("chelsea").image).to(model.device)
check = cascading_randomisation(model, x, "saliency", 282)
print(len(check.steps), int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 2**20)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite0", "resnet50", "vit_base_patch16_224"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-app", action="store_true", help="skip the warm page rerun with scores")
    parser.add_argument("--skip-rss", action="store_true", help="skip the cascade's peak memory on ViT-B/16")
    args = parser.parse_args()
    print(f"best of {args.repeats} interleaved rounds; deletion + insertion with {args.steps} steps "
          f"({2 * (args.steps + 1)} forward inputs)")  # fmt: skip
    print(f"{'model':<22}{'one map s':>10}{'in a run s':>11}{'raw fwd s':>10}{'one ÷ raw':>10}{'run ÷ raw':>10}")
    imputation = []
    for name in args.models:
        r = measure(name, args.steps, args.repeats, with_imputation=name == args.models[0])
        print(f"{name:<22}{r['ours']:10.3f}{r['batched']:11.3f}{r['raw']:10.3f}{r['ours'] / r['raw']:9.2f}×"
              f"{r['batched'] / r['raw']:9.2f}×", flush=True)  # fmt: skip
        if "imputed" in r:
            imputation.append(f"{name}, noisy linear imputation (ROAD) in a run: {r['imputed']:.3f} s a map, "
                              f"{r['imputed'] / r['batched']:.1f}× the blurred replacement (the sparse solves are "
                              "the cost; the page offers it as an option)")  # fmt: skip
    print(*imputation, sep="\n")
    if not args.skip_rss:
        out = subprocess.run([sys.executable, "-c", CASCADE_RSS], capture_output=True, text=True, check=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
        steps, gb = out.stdout.split()[-2:]
        print(f"cascading randomisation of saliency on vit_base_patch16_224 ({steps} steps, one copy of the model): "
              f"peak {float(gb):.2f} GB for the whole process (the bound: 2 GB)", flush=True)  # fmt: skip
    if not args.skip_app:
        print(f"warm rerun of a 6-method grid with its trust scores, all cached: "
              f"{warm_grid_rerun(scores=True) * 1e3:.0f} ms (median of 7; the target: ≤ 100 ms)")  # fmt: skip


if __name__ == "__main__":
    main()
