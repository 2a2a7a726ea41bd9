"""Scan benchmark: a whole scan (decode JPEGs, preprocess, forward, Parquet) against a bare batched forward pass over
tensors already preprocessed in memory, same model, same images, same batch size, measured in one run.

    python bench/bench_scan.py [--model efficientnet_lite0] [--images 128] [--batch-size 32] [--workers 0 1 2] [--rounds 3]
                               [--decode auto|cpu|device] [--precision fp32|tf32|bf16]
                               [--stages] [--no-reading]
    python bench/bench_scan.py --held [--model efficientnet_lite0] [--images 2048 --batch-size 256 --decode device]
    python bench/bench_scan.py --model vit_base_patch16_224 --bf16-vs-fp32 [--images 1024 --batch-size 256]
    python bench/bench_scan.py --ray [--images 4096]

The images are ImageNet-sized JPEGs (500×375) cut from the bundled photos; the model runs on the GPU when there is
one. Targets: scan ÷ bare ≥ 0.9 on the CPU, ≥ 0.8 on a GPU (where ``--decode auto`` decodes the JPEGs there, with
nvJPEG; ``--decode cpu`` shows what Pillow in the loader workers reaches). With ``--bf16-vs-fp32``: a bf16 scan ÷
an fp32 scan of the same model (target on a GPU for ViT-B/16: ≥ 5).
With ``--ray``: the Ray Data scan (a local cluster on this machine's cores, started once and kept warm; Ray tasks
decode, one actor classifies) ÷ the in-process scan as ``scan`` runs it here, on the same images.
Target on a 2-core machine: ≥ 0.7 (Ray's overhead made visible). Ray's start (7-8 s there) is paid once per scan, so
the ratio grows with the number of images: 0.56 on 1,024, 0.76 on 4,096.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.bench_attribution import ratios_beside
from bench.scan_stages import held_batches, stages


def make_images(folder: Path, n: int) -> None:
    """``n`` JPEGs, 500×375, in four class folders: crops of the bundled photos at seeded offsets, written by one
    thread per core (Pillow lets go of the GIL to resize and encode), so that thousands of them take seconds."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    import interp

    rng = np.random.default_rng(0)
    photos = [interp.load_sample(s).image for s in ("chelsea", "coffee", "astronaut", "rocket", "motorcycle", "horse")]
    for c in range(min(n, 4)):
        (folder / f"class_{c}").mkdir(parents=True, exist_ok=True)
    corners = [(rng.random(), rng.random()) for _ in range(n)]

    def write(i: int) -> None:
        im = photos[i % len(photos)]
        w, h = im.size
        x, y = int(corners[i][0] * max(1, w // 4)), int(corners[i][1] * max(1, h // 4))
        crop = im.crop((x, y, x + 3 * w // 4, y + 3 * h // 4)).resize((500, 375))
        crop.save(folder / f"class_{i % 4}" / f"{i:05d}.jpg", quality=90)

    with ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(write, range(n)))


def preloaded(model, ds):
    """Every image of ``ds`` decoded and preprocessed as the model's data config says, stacked where the model runs:
    the bare pass's input, which copies nothing. One thread per core."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    import interp

    with ThreadPoolExecutor(os.cpu_count()) as pool:
        pixels = list(pool.map(lambda it: model.preprocess(interp.load_image(ds.path_of(it)).image), ds.items))
    return torch.stack(pixels).to(model.device)


def reading_beside_pillow(model, ds, rounds: int) -> None:
    """What reading an image costs a scan's CPU path (read the file, decode, resize, crop: ``read_pixels``, which
    decodes plain JPEGs without Pillow) against decoding it with Pillow (``load_rgb`` then the same resize), in one
    thread and in two (a scan's reading threads share the GIL): every file once per run, per image."""
    from concurrent.futures import ThreadPoolExecutor

    from interp.datasets.batches import read_pixels
    from interp.images import load_rgb

    paths = [(ds.path_of(it), it.path) for it in ds.items]
    ours = lambda pair: read_pixels(*pair, model.transform)  # noqa: E731
    pillow = lambda pair: model.transform.pixels(load_rgb(pair[0], name=pair[1]))  # noqa: E731
    for threads in (1, 2):
        with ThreadPoolExecutor(threads) as pool:
            ratios, best_pillow, best_ours = ratios_beside(lambda f=pillow: list(pool.map(f, paths)),
                                                           lambda f=ours: list(pool.map(f, paths)), rounds)  # fmt: skip
        print(f"reading an image, {threads} thread{'s' if threads > 1 else ''}: {best_ours / len(paths) * 1e3:.2f} ms "
              f"(Pillow's decoding {best_pillow / len(paths) * 1e3:.2f} ms; Pillow ÷ ours median "
              f"{statistics.median(ratios):.2f})")  # fmt: skip


def writer_share(model, bare_rate: float, rounds: int) -> None:
    """What a scan's rows cost the process that writes them, for 1,000 classes whatever the model's: scoring a
    batch's logits on the model's device (``score``: softmax, entropy, top 5, the true class's probability, the
    numbers leaving the device), building its rows (``scored_rows``; on Ray this is all the driver does per image)
    and writing one Parquet part a second, per image; and the share of a scan's time they take at the bare pass's
    rate. The per-image code that rows were built with before (a full sort of every row) is timed beside them."""
    import numpy as np
    import torch

    from interp.datasets.base import Item
    from interp.datasets.rows import label_matrix, model_labels, score, scored_rows
    from interp.datasets.scan_files import _write_part

    n, classes, batch = 4096, 1000, 256
    logits = torch.randn(n, classes, generator=torch.Generator().manual_seed(0)).mul(3).to(model.device)
    items = [Item(id=f"n0/{i:08d}.JPEG", path=f"n0/{i:08d}.JPEG", labels=(i % classes,)) for i in range(n)]
    mapping, names = {c: c for c in range(classes)}, [f"class {c}" for c in range(classes)]
    labels = model_labels(items, mapping)
    done: dict[str, float] = {}

    def timed(name, fn) -> None:
        best = float("inf")
        for _ in range(max(rounds, 3)):  # a first call pays for imports and allocations: at least three
            start = time.perf_counter()
            fn()
            if model.device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        done[name] = best / n

    chunks = list(zip(logits.split(batch), [labels[i : i + batch] for i in range(0, n, batch)],
                      [items[i : i + batch] for i in range(0, n, batch)], strict=True))  # fmt: skip
    scores = [score(x, label_matrix(lab)) for x, lab, _ in chunks]
    timed("score", lambda: [score(x, label_matrix(lab)) for x, lab, _ in chunks])
    rows = [scored_rows(it, lab, s, names) for (_, lab, it), s in zip(chunks, scores, strict=True)]
    timed("rows", lambda: [scored_rows(it, lab, s, names) for (_, lab, it), s in zip(chunks, scores, strict=True)])
    with tempfile.TemporaryDirectory() as folder:
        timed("part", lambda: _write_part(Path(folder) / "part-00000.parquet", rows))

    def per_image() -> None:
        probs = logits.softmax(-1).cpu().numpy()
        for item, p in zip(items, probs, strict=True):
            top = np.argsort(-p)[:5]
            _ = ([int(i) for i in top], [float(p[i]) for i in top], float(-(p * np.log(np.clip(p, 1e-12, None))).sum()),
                 item.id, [mapping[c] for c in item.labels])  # fmt: skip

    timed("per image", per_image)
    total, writer = done["score"] + done["rows"] + done["part"], done["rows"] + done["part"]
    print(f"a scan's rows, 1,000 classes, per image: scoring on {model.device.type} {done['score'] * 1e6:.1f} µs, "
          f"rows {done['rows'] * 1e6:.1f} µs, Parquet {done['part'] * 1e6:.1f} µs (a per-image loop, as rows were "
          f"built before: {done['per image'] * 1e6:.1f} µs); one writer keeps up with {1 / writer:,.0f} images/s; "
          f"at the bare pass's rate they take {total * bare_rate:.1%} of a scan")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ray", action="store_true", help="compare the Ray Data scan with the in-process scan")
    parser.add_argument("--decode", default="auto", choices=("auto", "cpu", "device"))
    parser.add_argument("--precision", default="fp32", choices=("fp32", "tf32", "bf16"))
    parser.add_argument("--bf16-vs-fp32", action="store_true", help="compare a bf16 scan with an fp32 scan")
    parser.add_argument("--stages", action="store_true",
                        help="also time the loader processes alone and the batches ready for the model, without it")
    parser.add_argument("--held", action="store_true",
                        help="time only the device path over the loader's batches held in memory: each step of "
                        "preparing a batch, the passes alone, both together, and which step runs beside the passes")
    parser.add_argument("--no-reading", action="store_true",
                        help="skip timing the CPU path's reading of each image against Pillow's (minutes for "
                        "thousands)")
    args = parser.parse_args()
    import torch

    import interp
    from interp.datasets import read_folder, scan

    tmp = Path(tempfile.mkdtemp(prefix="bench_scan_"))
    try:
        make_images(tmp / "data", args.images)
        ds = read_folder(tmp / "data")
        model = interp.load_model(args.model, None if args.model == "efficientnet_lite0" else "random")
        if args.held:
            print(f"{args.model} on {model.device}, {len(ds)} JPEGs 500×375, batch {args.batch_size}, "
                  f"{max(args.workers)} loader workers, {args.rounds} rounds")  # fmt: skip
            held_batches(model, ds, args.batch_size, max(args.workers), args.decode, args.rounds)
            return
        tensors = None if args.bf16_vs_fp32 or args.ray else preloaded(model, ds)

        def bare() -> None:
            with torch.inference_mode():
                for chunk in tensors.split(args.batch_size):
                    model._module(chunk).softmax(-1).cpu().numpy()

        def scanned(workers: int, precision: str = args.precision) -> None:
            marks.clear()
            start = time.perf_counter()
            out = scan(model, ds, Path(tempfile.mkdtemp(dir=tmp)), batch_size=args.batch_size, workers=workers,
                       decode=args.decode, precision=precision,
                       progress=lambda p: marks.append((time.perf_counter() - start, p.done)))  # fmt: skip
            on_device[0] = out.decoded_on_device

        def steady() -> str:
            """The last scan's start (to its first batch done) and its rate after that batch."""
            (t0, n0), (t1, n1) = marks[0], marks[-1]
            rate = (n1 - n0) / (t1 - t0) if t1 > t0 else float("nan")
            return f"first batch after {t0:.2f} s, then {rate:,.0f} images/s"

        on_device, marks = [0], []
        where = torch.cuda.get_device_name(model.device) if model.device.type == "cuda" else "CPU"
        if args.bf16_vs_fp32:
            import interp.datasets.scanner as scanner

            scanner.PRECISION_SAMPLE = 0  # time the scans alone, not the agreement check that follows a bf16 one
            w = max(args.workers)
            ratios, best_fp32, best_bf16 = ratios_beside(lambda: scanned(w, "fp32"), lambda: scanned(w, "bf16"),
                                                         args.rounds)  # fmt: skip
            n = len(ds)
            print(f"{args.model} on {where}, {n} JPEGs 500×375, batch {args.batch_size}, {w} loader workers, "
                  f"decode {args.decode} ({on_device[0]} on the device)")  # fmt: skip
            print(f"fp32 scan: {n / best_fp32:7.1f} images/s (best); bf16 scan: {n / best_bf16:7.1f} images/s; "
                  f"bf16 ÷ fp32 median {statistics.median(ratios):.2f} (range {ratios[0]:.2f}-{ratios[-1]:.2f}); "
                  "target on a GPU for ViT-B/16: ≥ 5")  # fmt: skip
            print(f"the last bf16 scan: {steady()}")
            return

        if args.ray:
            import ray

            from interp.datasets.ray_scan import RUNTIME_ENV, scan_ray

            ray.init(include_dashboard=False, log_to_driver=False, runtime_env=RUNTIME_ENV)
            try:
                from interp.datasets.batches import default_workers

                workers = default_workers(model)  # what `scan` does on this machine

                marks: list[tuple[float, int]] = []

                def on_ray() -> None:
                    marks.clear()
                    start = time.perf_counter()
                    scan_ray(model, ds, Path(tempfile.mkdtemp(dir=tmp)), batch_size=args.batch_size,
                             progress=lambda p: marks.append((time.perf_counter() - start, p.done)))  # fmt: skip

                ratios, best_local, best_ray = ratios_beside(lambda: scanned(workers), on_ray, args.rounds)
                n = len(ds)
                print(f"{args.model}, {n} JPEGs 500×375, batch {args.batch_size}, {os.cpu_count()} cores, "
                      f"{args.rounds} rounds")  # fmt: skip
                print(f"in-process scan, {workers} loader workers: {n / best_local:6.1f} images/s (best)")
                print(f"Ray Data scan (warm local cluster):       {n / best_ray:6.1f} images/s; Ray ÷ in-process "
                      f"median {statistics.median(ratios):.2f} (range {ratios[0]:.2f}-{ratios[-1]:.2f}); target ≥ 0.7")  # fmt: skip
                (t0, n0), (t1, n1) = marks[0], marks[-1]
                steady = (n1 - n0) / (t1 - t0)
                print(f"  of which: first batch after {t0:.1f} s (the actor starting and loading the model), then "
                      f"{steady:.1f} images/s, {steady / (n / best_local):.2f} of the in-process scan's rate")  # fmt: skip
            finally:
                ray.shutdown()
            return

        per_round: dict[int, list[float]] = {}
        best = {"bare": float("inf")}
        starts: dict[int, str] = {}
        for w in args.workers:
            # each scan between two bare passes, so that the VM's drift over the minutes of a run cancels out
            ratios, best_bare, best[f"scan w={w}"] = ratios_beside(bare, lambda w=w: scanned(w), args.rounds)
            per_round[w], best["bare"], starts[w] = ratios, min(best["bare"], best_bare), steady()
        n = len(ds)
        print(f"{args.model} on {where}, {n} JPEGs 500×375, batch {args.batch_size}, torch threads "
              f"{torch.get_num_threads()}, {args.rounds} rounds, {args.precision}, decode {args.decode} "
              f"({on_device[0]} of the last scan's images decoded on the device)")  # fmt: skip
        print(f"bare batched forward over preloaded tensors: {n / best['bare']:6.1f} images/s (best)")
        for w in args.workers:
            rate = n / best[f"scan w={w}"]
            ratios = per_round[w]
            print(f"scan, {w} loader workers:                     {rate:6.1f} images/s  ratio of bests "
                  f"{rate / (n / best['bare']):.2f}; beside its own bare passes: median {statistics.median(ratios):.2f} "
                  f"(range {ratios[0]:.2f}-{ratios[-1]:.2f})")  # fmt: skip
            print(f"  its last scan: {starts[w]}")
        print("target: ratio ≥ 0.9 on the CPU, ≥ 0.8 on a GPU")
        writer_share(model, n / best["bare"], args.rounds)
        if args.stages:
            stages(model, ds, args.batch_size, max(args.workers), args.decode, args.rounds, n / best["bare"])
        if not args.no_reading:
            reading_beside_pillow(model, ds, args.rounds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
