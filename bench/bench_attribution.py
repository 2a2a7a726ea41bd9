"""Attribution benchmark: ratios measured side by side in one run (CPU; random weights time the same as real).

    python bench/bench_attribution.py [--models efficientnet_lite0 resnet50 vit_base_patch16_224] [--repeats 3]

Each model is measured in a process of its own, as the CLI runs it: the memory budget that sizes IG's batches
depends on what the process holds (a server holding several models gets smaller batches; see the README).

1. IG-32 (ours, with its completeness check) ÷ the best raw batched forward+backward over the same 32 inputs.
   A sweep over batch sizes 2-32 picks raw's best; then IG and raw at that size run in turn, each IG run between
   two raw runs: the ratio of their best times (each over the same number of runs), and the median of the ratios
   each IG run makes with the raw runs beside it (steadier on a VM whose speed drifts). Repeated runs on one image are
   another target class on it, as on the page: the check's logits of input and baseline are kept; the notes under
   the table give IG on a first target too (of a first image, and of a later one whose baseline's logits are
   kept), IG beside raw in the same chunks as IG's (what our overhead costs, apart from the smaller batches
   the memory budget allows), and IG run again in a thread of its own, as a server's session runs it.
2. The seeds' one-step-at-a-time IG loop (parameters keeping requires_grad, `.backward()` per step) ÷ ours
   (each loop run between two IG runs).
3. A first Grad-CAM on an image ÷ one forward+backward to the input (ratio of bests, and median beside), and beside
   it a forward pass alone ÷ the same: the least a first Grad-CAM can cost, since it needs the whole forward pass
   for the class score. The notes give Grad-CAM of further classes on the same image, which share that pass.
4. Warm rerun of the Attribution page with a 6-method grid, everything cached (AppTest, on the server).
5. Peak RSS of a whole process running IG-32 and SmoothGrad-16 on vit_base_patch16_224, ours vs Captum's default.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def interleaved_best(candidates: dict, rounds: int) -> dict[str, float]:
    """Best time of each candidate over ``rounds``, running them in turn within each round.

    On a shared CPU the speed drifts by tens of percent over minutes; interleaving exposes every candidate to the
    same drift, so the ratios stay meaningful when the absolute times do not.
    """
    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)  # GPU work is asynchronous
    for fn in candidates.values():
        fn()  # warm-up
    best = {name: float("inf") for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def best_seconds(fn, rounds: int) -> float:
    """The shortest of ``rounds`` timed runs of ``fn`` after one that warms up, waiting for the GPU where there is
    one (work launched there counts until it is done)."""
    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    best = float("inf")
    for _ in range(rounds + 1):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def ratios_beside(reference, candidate, rounds: int) -> tuple[list[float], float, float]:
    """Per round, ``reference`` time ÷ ``candidate`` time, the candidate timed between two reference runs (their
    mean): a ratio of moments seconds apart, which the VM's drift over minutes does not reach. The runs form one
    chain, reference, candidate, reference, candidate, …, reference. Both are warmed up first; each is a function
    that does the work and returns nothing.

    Also returns the best time of each over the same number of runs (the reference runs after each candidate
    run): a best over more runs of one than of the other would favour it, by the noise alone.
    """
    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)

    def timed(fn) -> float:
        sync()
        start = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - start

    reference(), candidate()
    before = timed(reference)
    ratios, best_ref, best_cand = [], float("inf"), float("inf")
    for _ in range(rounds):
        took, after = timed(candidate), timed(reference)
        ratios.append((before + after) / 2 / took)
        best_ref, best_cand = min(best_ref, after), min(best_cand, took)
        before = after
    return sorted(ratios), best_ref, best_cand


def ig_ratios(name: str, repeats: int) -> dict[str, float]:
    import torch

    import interp
    from interp.attribution import attribute, cam, gradient
    from interp.attribution.baselines import make_baseline

    model = interp.load_model(name, None if name == "efficientnet_lite0" else "random")
    x = model.preprocess(interp.load_sample("chelsea").image)[None].to(model.device)
    baseline = make_baseline("black", x, model)
    alphas = torch.linspace(0, 1, 32, device=x.device).view(-1, 1, 1, 1)
    path = baseline + alphas * (x - baseline)

    def raw(batch: int) -> None:
        for chunk in path.split(batch):
            inp = chunk.clone().requires_grad_(True)
            torch.autograd.grad(model._module(inp)[:, 282].sum(), inp)

    def loop() -> None:
        # The seeds' loop: one interpolated image at a time, `.backward()` on a model whose parameters keep
        # requires_grad (so every weight gradient is computed too), gradients read from `.grad`.
        model._module.requires_grad_(True)
        try:
            grads = []
            for i in range(32):
                inp = path[i : i + 1].clone().requires_grad_(True)
                model._module.zero_grad(set_to_none=True)
                model._module(inp)[0, 282].backward()
                grads.append(inp.grad)
            (x - baseline) * torch.cat(grads).mean(0, keepdim=True)
        finally:
            model._module.zero_grad(set_to_none=True)
            model._module.requires_grad_(False)

    def fwd_bwd_3() -> None:  # three runs each side, so that one timing is not a few milliseconds
        for _ in range(3):
            inp = x.clone().requires_grad_(True)
            torch.autograd.grad(model._module(inp)[:, 282].sum(), inp)

    def fwd_3() -> None:
        for _ in range(3):
            with torch.no_grad():
                model._module(x)

    def cam_3() -> None:  # a first Grad-CAM on the image: the layer pass kept by the last one is dropped
        for _ in range(3):
            model.forget(cam.KEPT_PASS)
            attribute(model, x[0], "grad_cam", 282)

    def cam_next_3() -> None:  # three more classes on the same image, as the grid's rows ask for them
        for target in (281, 283, 284):
            attribute(model, x[0], "grad_cam", target)

    from interp.attribution.memory import batch_size

    ours_batch = batch_size(model, x, 32)

    def raw_as_ours() -> None:  # raw, in the equal chunks our batch size gives IG
        for chunk in path.tensor_split(-(-32 // ours_batch)):
            inp = chunk.clone().requires_grad_(True)
            torch.autograd.grad(model._module(inp)[:, 282].sum(), inp)

    def ig() -> None:
        attribute(model, x[0], "integrated_gradients", 282, steps=32, baseline="black")  # the reference path's

    def ig_cold() -> None:  # a first target on the first image: no logits kept for the completeness check
        model.forget(gradient.ENDPOINTS)
        ig()

    def ig_new_image() -> None:  # a first target on a later image: the black baseline's logits are kept
        kept = model._side.get(gradient.ENDPOINTS, [])
        kept[:] = [(kx, logits) for kx, logits in kept if not torch.equal(kx, x)]
        ig()

    # The sweep only picks raw's batch size. Each ratio then comes from a chain of its own, the candidate timed
    # between two runs of its reference: timed in one sweep, IG ran after raw's batch of 32 and read up to 10%
    # slower than it does beside raw, and a best over 5 sizes × rounds would favour raw by the noise alone.
    sweep = {b: (lambda b=b: raw(b)) for b in (2, 4, 8, 16, 32)}
    raw_by_batch = interleaved_best(sweep, repeats)
    best_batch = min(raw_by_batch, key=raw_by_batch.get)
    ig_beside, raw_t, ig_t = ratios_beside(sweep[best_batch], ig, repeats)
    same_beside, _, _ = ratios_beside(raw_as_ours, ig, repeats)
    cold_beside, cold_raw_t, cold_t = ratios_beside(sweep[best_batch], ig_cold, repeats)
    new_beside, new_raw_t, new_t = ratios_beside(sweep[best_batch], ig_new_image, repeats)
    loop_beside, _, loop_t = ratios_beside(ig, loop, repeats)
    with ThreadPoolExecutor(1) as session:  # a server session's thread: IG for another class, as a page's row asks
        thread_beside, _, _ = ratios_beside(sweep[best_batch], lambda: session.submit(ig).result(), repeats)
    cam_beside, fwd_bwd, cam_t = ratios_beside(fwd_bwd_3, cam_3, repeats)
    fwd_beside, _, _ = ratios_beside(fwd_bwd_3, fwd_3, repeats)
    attribute(model, x[0], "grad_cam", 282)  # the pass the next classes share
    next_beside, _, _ = ratios_beside(fwd_bwd_3, cam_next_3, repeats)
    return {
        "ig": ig_t, "raw": raw_t, "loop": loop_t, "cam": cam_t / 3, "fwd_bwd": fwd_bwd / 3,
        "ig_beside": 1 / statistics.median(ig_beside), "cam_beside": 1 / statistics.median(cam_beside),
        "loop_beside": 1 / statistics.median(loop_beside), "ig_cold": cold_t,
        "fwd_beside": 1 / statistics.median(fwd_beside), "same_beside": 1 / statistics.median(same_beside),
        "next_beside": 1 / statistics.median(next_beside), "new_ratio": new_t / new_raw_t,
        "new_beside": 1 / statistics.median(new_beside), "thread_beside": 1 / statistics.median(thread_beside),
        "cold_beside": 1 / statistics.median(cold_beside), "cold_raw": cold_raw_t,
        "raw_by_batch": raw_by_batch, "ours_batch": ours_batch, "best_batch": best_batch,
    }  # fmt: skip


def ig_ratios_in_own_process(name: str, repeats: int) -> dict:
    """:func:`ig_ratios` in a fresh Python process holding this model alone."""
    out = subprocess.run(
        [sys.executable, __file__, "--one-model", name, "--repeats", str(repeats)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def warm_grid_rerun(scores: bool = False) -> float:
    """Median rerun of the Attribution page with a 6-method grid (and its trust scores), everything cached."""
    import tempfile

    os.environ["INTERP_CACHE_DIR"] = tempfile.mkdtemp()
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=600)
    at.session_state["_keep_attr_methods"] = [
        "grad_cam", "saliency", "integrated_gradients", "smoothgrad", "guided_backprop", "layer_cam",
    ]  # fmt: skip
    at.session_state["_keep_attr_scores"] = scores
    at.switch_page("pages/1_Attribution.py").run()
    assert len(at.main.get("image")) == 6, "the grid did not draw"
    assert not scores or any("**Scoreboard**" in m.value for m in at.main.markdown), "the scores did not draw"
    times = []
    for _ in range(7):
        start = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


RSS_SCRIPT = """
import os, sys
os.environ["HF_HUB_OFFLINE"] = "1"
import torch, interp
from interp.attribution import attribute
model = interp.load_model("vit_base_patch16_224", "random")
x = model.preprocess(interp.load_sample("chelsea").image).to(model.device)  # where the model runs (a GPU too)
if sys.argv[1] == "captum-default":
    from captum.attr import IntegratedGradients
    IntegratedGradients(lambda t: model._module(t)[:, 282]).attribute(x[None], n_steps=32, return_convergence_delta=True)
else:
    attribute(model, x, "integrated_gradients", 282, steps=32)
    attribute(model, x, "smoothgrad", 282, samples=16)
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child would report its parent's peak.
print(int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 2**20)
"""


def peak_rss(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", RSS_SCRIPT, mode], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite0", "resnet50", "vit_base_patch16_224"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--skip-app", action="store_true", help="skip the warm page rerun (needs Streamlit)")
    parser.add_argument("--one-model", help=argparse.SUPPRESS)  # the child process of ig_ratios_in_own_process
    args = parser.parse_args()
    if args.one_model:
        print(json.dumps(ig_ratios(args.one_model, args.repeats)))
        return
    import torch

    from interp.config import resolve_device

    device = resolve_device(None)  # where load_model puts the models: INTERP_DEVICE, else a GPU when there is one
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, 224×224, batch 1, {args.repeats} interleaved rounds, "
          "one process per model; 'beside': median of ratios each timed between two reference runs")  # fmt: skip
    print(f"\n{'model':<22}{'IG-32 s':>8}{'raw s':>7}{'IG÷raw':>7}{'beside':>7}{'loop÷IG':>8}{'beside':>7}"
          f"{'CAM s':>7}{'f+b s':>7}{'CAM÷f+b':>8}{'beside':>7}{'fwd÷f+b':>8}")  # fmt: skip
    notes = []
    for name in args.models:
        r = ig_ratios_in_own_process(name, args.repeats)
        print(f"{name:<22}{r['ig']:8.2f}{r['raw']:7.2f}{r['ig'] / r['raw']:7.3f}{r['ig_beside']:7.3f}"
              f"{r['loop'] / r['ig']:8.2f}{r['loop_beside']:7.2f}{r['cam']:7.3f}{r['fwd_bwd']:7.3f}"
              f"{r['cam'] / r['fwd_bwd']:8.2f}{r['cam_beside']:7.2f}{r['fwd_beside']:8.2f}", flush=True)  # fmt: skip
        by_batch = ", ".join(f"{b}: {t:.2f}" for b, t in r["raw_by_batch"].items())
        notes.append(f"  {name}: raw by batch size (s) {by_batch}; best {r['best_batch']}; ours by {r['ours_batch']}; "
                     f"IG ÷ raw in IG's chunks, beside {r['same_beside']:.3f}; "
                     f"IG on a first target (no logits kept for the check) {r['ig_cold']:.2f} s, "
                     f"÷raw {r['ig_cold'] / r['cold_raw']:.3f}, beside {r['cold_beside']:.3f}; "
                     f"on a first target of a later image (the baseline's logits kept) ÷raw {r['new_ratio']:.3f}, "
                     f"beside {r['new_beside']:.3f}; "
                     f"in a session's thread (IG again, as for another class of a page's row) ÷raw, beside "
                     f"{r['thread_beside']:.3f}; "
                     f"Grad-CAM of another class on the same image ÷ f+b, beside {r['next_beside']:.3f}")  # fmt: skip
    print("\n".join(notes))
    if not args.skip_app:
        warm = warm_grid_rerun()
        print(f"\nwarm rerun of the Attribution page, 6 methods all cached: {warm * 1000:.0f} ms (median of 7)")
    if not args.skip_rss:
        ours, captum = peak_rss("ours"), peak_rss("captum-default")
        print(f"peak RSS, vit_base IG-32 + SmoothGrad-16, whole process: ours {ours:.2f} GB; "
              f"Captum default IG-32 alone {captum:.2f} GB")  # fmt: skip


if __name__ == "__main__":
    main()
