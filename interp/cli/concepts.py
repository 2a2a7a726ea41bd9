"""``tcav`` and ``cav-features``: concept tests and activation extraction from folders of images."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from interp.cli import DEVICE_HELP, command, handles, out_dir
from interp.words import counted


def _images(folder: Path, what: str):
    """Every readable image under ``folder`` (sorted); unreadable ones are skipped and named on stderr."""
    from interp.datasets.base import image_files
    from interp.errors import InterpError
    from interp.images import load_image

    if not folder.is_dir():
        raise ValueError(f"{what} {folder} is not a folder of images.")
    files, _ = image_files(folder)
    images, bad = [], []
    for rel in files:
        try:
            images.append(load_image(folder / rel, name=rel))
        except (InterpError, OSError) as exc:
            bad.append(f"{rel} ({exc})")
    if bad:
        print(f"note: skipped {counted(len(bad), 'unreadable file')} in {folder}: {'; '.join(bad[:3])}",
              file=sys.stderr)
    if not images:
        raise ValueError(f"{what} {folder} holds no readable images.")
    return images


@command("tcav", "TCAV: does a class depend on a concept? scores over random runs, p-values, verdicts")
def _tcav_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="spec name or any timm model name")
    p.add_argument("--layer", action="append", required=True, help="module name (repeat for several)")
    p.add_argument("--concept", action="append", required=True, type=Path, help="folder of concept images (repeat)")
    p.add_argument("--random", action="append", required=True, type=Path,
                   help="folder of random images (repeat; at least two, or one folder of sub-folders)")  # fmt: skip
    p.add_argument("--class-images", required=True, type=Path, help="folder of images of the target class")
    p.add_argument("--target", required=True, help="class index or name")
    p.add_argument("--runs", type=int, default=10,
                   help="CAVs per concept and layer, each against another random set; the p-value compares them "
                        "with random-vs-random CAVs (default 10)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0,
                   help="seeds every CAV's split and fit: same seed, same numbers (default 0)")
    p.add_argument("--classifier", default="sgd", choices=("sgd", "logistic", "svm"),
                   help="the linear classifier whose normal is the CAV (default sgd, as in Kim et al.)")
    p.add_argument("--weights", help="'hub', 'bundled', 'random', or a weights file")
    p.add_argument("--device", help=DEVICE_HELP)
    p.add_argument("--json", action="store_true", help="print JSON: one row per concept and layer")


@handles("tcav")
def _tcav(args: argparse.Namespace) -> int:
    from interp.cache import ResultCache
    from interp.cli import writable_settings
    from interp.concepts import run_tcav, seconds_left
    from interp.models import load_model

    model = load_model(args.model, args.weights, device=args.device)
    target = _target(model, args.target)
    randoms = []
    for folder in args.random:
        subs = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        randoms += [_images(s, "random folder") for s in subs] if len(args.random) == 1 and subs else [_images(folder, "random folder")]
    if len(randoms) < 2:
        raise ValueError(f"--random {args.random[0]} is one set of random images and TCAV needs at least two (one to "
                         "train each CAV against, one for the test): repeat --random with another folder, or give one "
                         "folder whose sub-folders are the sets.")  # fmt: skip
    concepts = {c.name: _images(c, "concept folder") for c in args.concept}
    start, last = time.monotonic(), [0.0]

    def progress(what: str, fraction: float) -> None:  # on stderr, at most every 2 s: stdout stays the results
        if time.monotonic() - last[0] > 2 or what == "done":
            last[0] = time.monotonic()
            left = seconds_left(start, fraction)
            eta = f", about {left:.0f} s left" if left is not None else ""
            print(f"\r{fraction:4.0%} {what}{eta}".ljust(79), end="", file=sys.stderr, flush=True)

    try:
        report = run_tcav(model, args.layer, concepts, randoms, _images(args.class_images, "class folder"), target,
                          runs=args.runs, seed=args.seed, classifier=args.classifier,
                          cache=ResultCache.from_settings(writable_settings()), progress=progress)  # fmt: skip
    finally:
        if last[0]:  # end the progress line, also before an error's sentence
            print(file=sys.stderr)
    if args.json:
        print(json.dumps({"model": model.name, "target": target, "label": model.class_names[target],
                          "runs": args.runs, "seed": args.seed,
                          "results": [{**r.row(), "scores": r.scores.tolist(), "random_scores": r.random_scores.tolist(),
                                       "verdict": r.verdict} for r in report.results]}, indent=2))  # fmt: skip
        return 0
    print(f"{model.name}, class {target} ({model.class_names[target]}), {args.runs} runs, seed {args.seed}")
    for r in report.results:
        print(f"{r.concept:<16} {r.layer:<14} TCAV {r.mean:.3f} ± {r.std:.3f} (random {r.random_scores.mean():.3f}), "
              f"CAV accuracy {r.accuracies.mean():.2f}, p = {r.p_value:.3g}: {r.verdict}")  # fmt: skip
    alike = list(dict.fromkeys(r.layer for r in report.results if r.alike_gradients))
    if alike:
        print(f"note: at {', '.join(alike)} even random directions score 0 or 1 (the class images' gradients point "
              "nearly the same way: a layer next to the classifier, or class images that are alike); TCAV there says "
              "little about how many images use a concept.")  # fmt: skip
    return 0


def _target(model, value: str) -> int:
    if value.strip().lstrip("-").isdigit():
        index = int(value)
        if not 0 <= index < model.num_classes:
            raise ValueError(f"--target {index} is not a class of {model.name} (0 to {model.num_classes - 1}).")
        return index
    wanted = value.strip().lower()
    for i, name in enumerate(model.class_names):
        if wanted in [n.strip().lower() for n in name.split(",")]:
            return i
    raise ValueError(f"--target {value!r} is not a class name of {model.name}; give an index or an exact name.")


@command("cav-features", "write a layer's activations for a folder of images to an .npz (for your own CAV work)")
def _features_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="spec name or any timm model name")
    p.add_argument("--layer", required=True, help="module name (blocks.3, layer4…)")
    p.add_argument("--images", required=True, type=Path, help="a folder: every image directly inside it")
    p.add_argument("--out", required=True, type=Path, help="an .npz file: activations (N, D), names (N,)")
    p.add_argument("--weights", help="'hub', 'bundled', 'random', or a weights file")
    p.add_argument("--device", help=DEVICE_HELP)
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    p.add_argument("--precision", choices=("fp32", "tf32", "bf16"), help="fp32 (default on the CPU), tf32 (default on a GPU) or bf16")


@handles("cav-features")
def _features(args: argparse.Namespace) -> int:
    from interp.concepts import activations_by_layer
    from interp.models import load_model
    from interp.models.precision import default_precision

    if args.out.suffix != ".npz":
        raise ValueError(f"--out must end in .npz, got {args.out.name}.")
    if args.out.is_dir():
        raise ValueError(f"--out {args.out} is a folder; name the .npz file to write.")
    out_dir(args.out.parent)  # before the extraction, not after it
    model = load_model(args.model, args.weights, device=args.device)
    images = _images(args.images, "image folder")
    precision = args.precision or default_precision(model.device)
    acts = activations_by_layer(model, [args.layer], images, batch_size=args.batch_size, precision=precision)[args.layer]
    np.savez_compressed(args.out, activations=acts, names=np.array([im.name for im in images]),
                        digests=np.array([im.digest for im in images]), layer=args.layer, model=model.name,
                        precision=precision)  # fmt: skip
    print(f"wrote {acts.shape[0]} × {acts.shape[1]} activations of {model.name}:{args.layer} to {args.out}")
    return 0
