"""Concept benchmark, measured side by side in one run.

    python bench/bench_concepts.py [--model efficientnet_lite0] [--layer bn2] [--images 96] [--stages]
        [--files N [--workers W] [--decode auto|cpu|device]]

1. Activation extraction (preprocess each decoded image, forward with a hook, flatten, copy out) ÷ a bare batched
   forward pass over tensors already preprocessed (and already on the model's device), each extraction timed between
   two bare passes. Target: ≥ 0.9.
2. The model's two default TCAV layers from one forward pass per batch (what the Concepts page does) ÷ one call per
   layer, each pass ending at its layer (what it did before).
3. The same two layers (batches of ``--batch-size``) with the result cache, as the Concepts page runs them: into an
   empty cache (every row stored, a file and an index entry per image and layer) ÷ without a cache; and again over
   the full cache (every row read, no pass) ÷ without.
4. A second TCAV run at a cached layer with a new target class: forward passes over the concept and random sets
   (target: none; only the class images are run, for their gradients), and its time against the first run (no
   CAV is fitted again: they are cached by the activations they were fitted on).
5. With ``--files N``: extraction from N JPEG files of 500×375 (``cav-features``' path: read, decoded and resized by
   a scan's reader, JPEGs decoded on the GPU where the model runs on one) ÷ a bare batched forward over the same
   images preprocessed, each beside the other. Target: ≥ 0.8 on a GPU, 0.9 on the CPU (where it decodes too, as a
   scan does: compare ``bench_scan.py``).
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.bench_attribution import best_seconds, ratios_beside


def stages(model, layer: str, images, tensors, batch_size: int, rounds: int, bare_rate: float) -> None:
    """Where extraction's time goes: the batches prepared alone (pictures out of Pillow, to the model's device,
    resized and normalised there or on the CPU), and the hooked pass to the layer with its output copied out, over the
    preprocessed tensors, each beside the bare pass's rate; then how fast a Python thread counts beside preparing,
    and beside copying pictures out of Pillow (the preparing pool's work on a GPU), as a share of its speed alone
    (``scan_stages.gil_share``: low where the work holds the GIL, which the model's passes need to be launched)."""
    import torch

    from bench.scan_stages import gil_share
    from interp.concepts.activations import _copied_out, _forward_to, _prefetched, _whole_pixels, resolve_layer

    n = len(images)
    chunks = [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]
    module = {layer: resolve_layer(model, layer)}

    def rate(fn) -> float:
        return n / best_seconds(fn, rounds)

    def prepared() -> None:
        for _ in _prefetched(model, images, chunks):
            pass

    def hooked() -> None:  # each batch's rows waited for once the next pass is launched, as extraction does
        waiting = None
        for chunk in tensors.split(batch_size):
            copied = _copied_out([_forward_to(model, module, chunk)[layer]], len(chunk))
            if waiting is not None:
                waiting()
            waiting = copied
        if waiting is not None:
            waiting()

    sync = torch.cuda.synchronize if model.device.type == "cuda" else (lambda: None)
    beside_copies = gil_share(lambda: [_whole_pixels(im.image) for im in images])
    print(f"stages: bare forward {bare_rate:,.0f} images/s; batches prepared alone {rate(prepared):,.0f}; the hooked "
          f"pass with its output copied out {rate(hooked):,.0f}; a Python thread beside preparing counts at "
          f"{gil_share(prepared, sync):.2f} of its speed alone, beside copying pictures out of Pillow "
          f"{beside_copies:.2f}")  # fmt: skip


def from_files(model, layer: str, n: int, batch_size: int, workers: int | None, decode: str, rounds: int) -> None:
    """Part 5: extraction from JPEG files ÷ a bare forward over them preprocessed, side by side."""
    import tempfile

    import torch

    from bench.bench_scan import make_images, preloaded
    from interp.concepts.from_files import file_activations
    from interp.datasets.readers import read_folder

    with tempfile.TemporaryDirectory(prefix="bench_concepts_files_") as tmp:
        make_images(Path(tmp), n)
        dataset = read_folder(Path(tmp))
        tensors = preloaded(model, dataset)
        got: list = []

        def bare() -> None:
            with torch.inference_mode():
                for chunk in tensors.split(batch_size):
                    model._module(chunk)

        def files() -> None:
            got[:] = [file_activations(model, [layer], dataset, batch_size=batch_size, workers=workers, decode=decode)]

        ratios, best_bare, best_files = ratios_beside(bare, files, rounds)
    readers = workers if workers is not None else "default"
    print(f"from {n} JPEG files (500×375; batch {batch_size}, workers {readers}, decode {decode}: "
          f"{got[0].decoded_on_device} decoded on {model.device}): {n / best_files:,.1f} images/s, bare forward "
          f"{n / best_bare:,.1f}; ratio of bests {best_bare / best_files:.2f}; beside: median "
          f"{statistics.median(ratios):.2f} (range {ratios[0]:.2f}-{ratios[-1]:.2f})  (target ≥ 0.8 on a GPU)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--layer", default="bn2")
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16, help="images per pass (on a GPU try 256)")
    parser.add_argument("--stages", action="store_true",
                        help="also time the batches prepared alone and the hooked pass over preprocessed tensors")
    parser.add_argument("--files", type=int, metavar="N", help="also extract from N JPEG files (part 5)")
    parser.add_argument("--workers", type=int, help="with --files: loader processes (default: as a scan's)")
    parser.add_argument("--decode", default="auto", choices=("auto", "cpu", "device"), help="with --files")
    args = parser.parse_args()
    import tempfile

    import torch

    import interp
    from interp.concepts import activations, activations_by_layer, default_layers, generated, run_tcav

    model = interp.load_model(args.model, None if args.model == "efficientnet_lite0" else "random")
    images = generated.random_images(args.images, seed=1)
    tensors = torch.stack([model.preprocess(im.image) for im in images]).to(model.device)

    def bare() -> None:
        with torch.inference_mode():
            for chunk in tensors.split(args.batch_size):
                model._module(chunk)

    def extract() -> None:
        activations(model, args.layer, images, batch_size=args.batch_size)

    ratios, best_bare, best_extract = ratios_beside(bare, extract, args.rounds)
    n = len(images)
    print(
        f"{args.model}:{args.layer} on {model.device}, {n} images, batch {args.batch_size}, torch threads {torch.get_num_threads()}, "
        f"{args.rounds} rounds"
    )
    print(f"bare batched forward (preprocessed tensors): {n / best_bare:6.1f} images/s (best)")
    print(f"activation extraction (from decoded images): {n / best_extract:6.1f} images/s  ratio of bests "
          f"{best_bare / best_extract:.2f}; beside its own bare passes: median {statistics.median(ratios):.2f} "
          f"(range {ratios[0]:.2f}-{ratios[-1]:.2f})  (target ≥ 0.9)")  # fmt: skip

    if args.stages:
        stages(model, args.layer, images, tensors, args.batch_size, args.rounds, n / best_bare)
    if args.files:
        from_files(model, args.layer, args.files, args.batch_size, args.workers, args.decode, args.rounds)

    layers = default_layers(model)

    def one_pass() -> None:
        activations_by_layer(model, layers, images, batch_size=16)

    def pass_per_layer() -> None:
        for layer in layers:
            activations(model, layer, images, batch_size=16)

    ratios, best_each, best_one = ratios_beside(pass_per_layer, one_pass, args.rounds)
    print(f"layers {', '.join(layers)} from one pass per batch: {n / best_one:6.1f} images/s; one pass per layer: "
          f"{n / best_each:6.1f}; speed-up by bests {best_each / best_one:.2f}×, beside: median "
          f"{statistics.median(ratios):.2f}× (range {ratios[0]:.2f}-{ratios[-1]:.2f})")  # fmt: skip

    scratch = Path(tempfile.mkdtemp(prefix="bench_concepts_"))
    fresh = itertools.count()

    def extract_layers(cache: interp.ResultCache | None = None) -> None:
        activations_by_layer(model, layers, images, cache=cache, batch_size=args.batch_size)

    def into_empty_cache() -> None:
        cache = interp.ResultCache(scratch / f"empty{next(fresh)}")
        extract_layers(cache)
        cache.close()

    full = interp.ResultCache(scratch / "full")
    extract_layers(full)
    ratios, best_plain, best_storing = ratios_beside(extract_layers, into_empty_cache, args.rounds)
    rows = n * len(layers)
    print(f"the same into an empty result cache (the Concepts page's first run; {rows} rows stored): "
          f"{n / best_storing:6.1f} images/s, {best_storing / best_plain:.2f}× the time without a cache by bests, "
          f"beside: median {1 / statistics.median(ratios):.2f}× "
          f"(range {1 / ratios[-1]:.2f}-{1 / ratios[0]:.2f})")  # fmt: skip
    ratios, best_plain, best_reading = ratios_beside(extract_layers, lambda: extract_layers(full), args.rounds)
    print(f"the same from the full cache (no pass; {rows} rows read): {n / best_reading:6.1f} images/s, "
          f"{best_plain / best_reading:.1f}× as fast as computing them by bests, beside: median "
          f"{statistics.median(ratios):.1f}× (range {ratios[0]:.1f}-{ratios[-1]:.1f})")  # fmt: skip

    cache = interp.ResultCache(scratch / "tcav")
    concepts = {"stripes": generated.texture_set("stripes", 30), "dots": generated.texture_set("dots", 30)}
    randoms = [generated.random_images(30, seed=100 + k) for k in range(6)]
    klass = generated.random_images(20, seed=999)
    start = time.perf_counter()
    run_tcav(model, [args.layer], concepts, randoms, klass, 0, runs=5, cache=cache)
    first = time.perf_counter() - start
    seen: list[int] = []
    handle = model._module.register_forward_pre_hook(lambda m, i: seen.append(len(i[0])))
    try:
        start = time.perf_counter()
        run_tcav(model, [args.layer], concepts, randoms, klass, 1, runs=5, cache=cache)
        second = time.perf_counter() - start
    finally:
        handle.remove()
    sets = sum(len(v) for v in concepts.values()) + sum(len(r) for r in randoms)
    print(f"TCAV, 2 concepts + 6 random sets ({sets} images), 20 class images, 5 runs: first {first:.1f} s; "
          f"second with a new target {second:.1f} s ({second / first:.2f}×)")  # fmt: skip
    print(f"images forwarded in the second run: {sum(seen)} (the {len(klass)} class images, for their gradients; "
          f"concept and random sets: {sum(seen) - len(klass)})")  # fmt: skip
    cache.close()
    full.close()
    shutil.rmtree(scratch, ignore_errors=True)  # a cache per round: with --images 1024, 640 MB each


if __name__ == "__main__":
    main()
