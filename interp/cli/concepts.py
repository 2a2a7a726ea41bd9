"""``tcav`` and ``cav-features``: concept tests and activation extraction from folders of images."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from interp.cli import (
    CLASS_HELP,
    CLASSES_HELP,
    DEVICE_HELP,
    LAYER_HELP,
    class_index,
    command,
    handles,
    load_cli_model,
    out_dir,
)
from interp.words import counted, joined


def _images(folder: Path, what: str):
    """Every readable image under ``folder`` (sorted) as :class:`~interp.images.ImageOnDisk`: each file is decoded
    once here (threads, one per core) for its digest, and again only when its activations are not cached, so a folder
    takes memory for its names, not its pictures. Unreadable files are skipped and named on stderr."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    from interp.datasets.base import image_files
    from interp.errors import InterpError
    from interp.images import ImageOnDisk

    if not folder.is_dir():
        raise ValueError(f"{what} {folder} is not a folder of images.")
    files, _ = image_files(folder)

    def read(rel: str):
        try:
            return ImageOnDisk.read(folder / rel, name=rel)
        except (InterpError, OSError) as exc:
            return f"{rel} ({exc})"

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        read_all = list(pool.map(read, files))
    images = [r for r in read_all if not isinstance(r, str)]
    bad = [r for r in read_all if isinstance(r, str)]
    if bad:
        print(f"note: skipped {counted(len(bad), 'unreadable file')} in {folder}: {'; '.join(bad[:3])}",
              file=sys.stderr)
    if not images:
        raise ValueError(f"{what} {folder} holds no readable images.")
    return images


@contextlib.contextmanager
def _progress_line():
    """A ``progress(what, fraction)`` that rewrites one line on stderr, at most every 2 s, with the time left at the
    pace so far (stdout stays the results); the line is ended when the block ends, also before an error's sentence."""
    from interp.concepts import seconds_left

    start, last = time.monotonic(), [0.0]

    def progress(what: str, fraction: float) -> None:
        if time.monotonic() - last[0] > 2 or what == "done" or fraction >= 1:
            last[0] = time.monotonic()
            left = seconds_left(start, fraction)
            eta = f", about {left:.0f} s left" if left is not None else ""
            print(f"\r{fraction:4.0%} {what}{eta}".ljust(79), end="", file=sys.stderr, flush=True)

    try:
        yield progress
    finally:
        if last[0]:
            print(file=sys.stderr)


@command("tcav", "TCAV: does a class depend on a concept? scores over random runs, p-values, verdicts")
def _tcav_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="spec name or any timm model name")
    p.add_argument("--layer", action="append", required=True, help=f"{LAYER_HELP}; repeat for several")
    p.add_argument("--concept", action="append", required=True, type=Path, help="folder of concept images (repeat)")
    p.add_argument("--random", action="append", required=True, type=Path,
                   help="folder of random images (repeat; at least two, or one folder of sub-folders)")  # fmt: skip
    p.add_argument("--class-images", required=True, type=Path, help="folder of images of the target class")
    p.add_argument("--target", required=True, help=f"the class: {CLASS_HELP}")
    p.add_argument("--runs", type=int, default=10,
                   help="CAVs per concept and layer, each against another random set; the p-value compares them "
                        "with random-vs-random CAVs (default 10)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0,
                   help="seeds every CAV's split and fit: same seed, same numbers (default 0)")
    p.add_argument("--classifier", default="sgd", choices=("sgd", "logistic", "svm"),
                   help="the linear classifier whose normal is the CAV (default sgd, as in Kim et al.)")
    p.add_argument("--weights", help="'hub', 'bundled', 'random', or a weights file")
    p.add_argument("--classes", type=Path, help=CLASSES_HELP)
    p.add_argument("--device", help=DEVICE_HELP)
    p.add_argument("--json", action="store_true", help="print JSON: one row per concept and layer")


@handles("tcav")
def _tcav(args: argparse.Namespace) -> int:
    from interp.cache import ResultCache
    from interp.cli import writable_settings
    from interp.concepts import run_tcav

    model = load_cli_model(args)
    target = class_index(args.target, model.class_names, "--target", model.name)
    randoms = []
    for folder in args.random:
        subs = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        randoms += [_images(s, "random folder") for s in subs] if len(args.random) == 1 and subs else [_images(folder, "random folder")]
    if len(randoms) < 2:
        raise ValueError(f"--random {args.random[0]} is one set of random images and TCAV needs at least two (one to "
                         "train each CAV against, one for the test): repeat --random with another folder, or give one "
                         "folder whose sub-folders are the sets.")  # fmt: skip
    concepts = {c.name: _images(c, "concept folder") for c in args.concept}
    with _progress_line() as progress:
        report = run_tcav(model, args.layer, concepts, randoms, _images(args.class_images, "class folder"), target,
                          runs=args.runs, seed=args.seed, classifier=args.classifier,
                          cache=ResultCache.from_settings(writable_settings()), progress=progress)  # fmt: skip
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


@command("cav-features", "write a layer's activations for a folder of images to an .npz (for your own CAV work)")
def _features_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="spec name or any timm model name")
    p.add_argument("--layer", required=True, help=LAYER_HELP)
    p.add_argument("--images", required=True, type=Path, help="a folder: every image in it and its sub-folders")
    p.add_argument("--out", required=True, type=Path, help="an .npz file: activations (N, D), names (N,)")
    p.add_argument("--weights", help="'hub', 'bundled', 'random', or a weights file")
    p.add_argument("--device", help=DEVICE_HELP)
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16; on a GPU try 256)")
    p.add_argument("--precision", choices=("fp32", "tf32", "bf16"), help="fp32 (default on the CPU), tf32 (default on a GPU) or bf16")
    p.add_argument("--workers", type=int,
                   help="image-decoding processes, as for scan (default on a GPU: one per spare core, at most 4; on "
                        "the CPU: none, threads read each batch between passes)")  # fmt: skip
    p.add_argument("--decode", choices=("auto", "cpu", "gpu"), default="auto",
                   help="as for scan: auto (default) decodes JPEGs on the GPU where the model runs on one, cpu with "
                        "Pillow's pixels everywhere, gpu as auto but refused without a GPU")  # fmt: skip


@handles("cav-features")
def _features(args: argparse.Namespace) -> int:
    from interp.concepts.from_files import file_activations
    from interp.models.precision import default_precision

    if args.out.suffix != ".npz":
        raise ValueError(f"--out must end in .npz, got {args.out.name}.")
    if args.out.is_dir():
        raise ValueError(f"--out {args.out} is a folder; name the .npz file to write.")
    out_dir(args.out.parent)  # before the extraction, not after it
    dataset = _image_files(args.images, "image folder")
    model = load_cli_model(args)
    if args.decode == "gpu" and model.device.type != "cuda":
        raise ValueError(f"--decode gpu needs the model on a GPU; it is on {model.device}. Use --decode auto or cpu.")
    precision = args.precision or default_precision(model.device)
    with _progress_line() as progress:
        got = file_activations(model, [args.layer], dataset, batch_size=args.batch_size, workers=args.workers,
                               decode={"gpu": "device"}.get(args.decode, args.decode), precision=precision,
                               progress=lambda done, n: progress(f"{done}/{n} images", done / n))  # fmt: skip
    if got.failed:
        shown = "; ".join(f"{path} ({why})" for path, why in got.failed[:3])
        print(f"note: skipped {counted(len(got.failed), 'unreadable file')} in {args.images}: {shown}", file=sys.stderr)
    if not got.names:
        raise ValueError(f"image folder {args.images} holds no readable images.")
    acts = got.rows[args.layer]
    np.savez_compressed(args.out, activations=acts, names=np.array(got.names), layer=args.layer, model=model.name,
                        precision=precision, decoded_on_device=got.decoded_on_device)  # fmt: skip
    print(f"wrote {acts.shape[0]} × {acts.shape[1]} activations of {model.name}:{args.layer} to {args.out}")
    if got.decoded_on_device:
        from interp.jpeg import decoder_name

        print(f"{got.decoded_on_device} JPEGs decoded on {model.device} by {decoder_name(model.device)}, the rest by "
              "the CPU (--decode cpu gives Pillow's pixels, as the dashboard decodes them)")  # fmt: skip
    return 0


def _image_files(folder: Path, what: str):
    """The image files in ``folder`` and its sub-folders as a dataset (sorted; none decoded yet)."""
    from interp.datasets.base import Dataset, Item, image_files

    if not folder.is_dir():
        raise ValueError(f"{what} {folder} is not a folder of images.")
    files, skipped = image_files(folder)
    if not files:
        from interp.datasets.base import IMAGE_SUFFIXES, skipped_note

        found = f"; {skipped_note(skipped)}" if skipped else ""
        raise ValueError(f"{what} {folder} holds no image files ({', '.join(IMAGE_SUFFIXES)}){found}.")
    return Dataset(folder.name, "folder", folder, tuple(Item(f, f) for f in files), (), "none")


@command("concept-images", "write the built-in concept sets (textures; the shapes world's marker, striped, red) and "
                           "random sets as folders of PNGs, ready for tcav")  # fmt: skip
def _concept_images_args(p: argparse.ArgumentParser) -> None:
    from interp.concepts.generated import CONCEPTS, folder_name

    names = ", ".join(map(folder_name, CONCEPTS))
    p.add_argument("--out", required=True, type=Path,
                   help="folder to write: OUT/<concept>/ and OUT/random/set_00, set_01 … (created if missing)")
    p.add_argument("--concept", action="append", help=f"{names} (repeat, or by commas; default: all)")
    p.add_argument("--n", type=int, default=30, help="images per set (default 30, as the Concepts page)")
    p.add_argument("--random-sets", type=int, default=11,
                   help="random sets (default 11: one per run of tcav's default 10, and one for the null)")
    p.add_argument("--random", choices=("photos", "shapes"),
                   help="photos: crops of the bundled photos; shapes: the shapes world's backgrounds (default: shapes "
                        "when every concept is the shapes world's, else photos)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="same seed, same images (default 0)")


@handles("concept-images")
def _concept_images(args: argparse.Namespace) -> int:
    from interp.concepts import generated

    concepts = [c.strip() for given in args.concept or [] for c in given.split(",") if c.strip()]
    concepts = concepts or [generated.folder_name(c) for c in generated.CONCEPTS]
    shapes_only = all(c in generated.SHAPES_CONCEPTS for c in concepts)
    source = args.random or ("shapes" if shapes_only else "photos")

    def progress(done: int, total: int) -> None:
        print(f"\r{done}/{total} folders", end="" if done < total else "\n", file=sys.stderr, flush=True)

    folders = generated.write_folders(out_dir(args.out), concepts, n=args.n, random_sets=args.random_sets,
                                      random_source=source, seed=args.seed, progress=progress)  # fmt: skip
    written = [name for name in folders if not name.startswith("random/")]
    what = "crops of the bundled photos" if source == "photos" else "shapes-world backgrounds"
    print(f"wrote {counted(len(written), 'concept set')} ({joined(written)}) and "
          f"{counted(args.random_sets, 'random set')} ({what}) of {args.n} images each to {args.out}")  # fmt: skip
    print(f"next: python -m interp tcav --model MODEL --layer LAYER --concept {folders[written[0]]} "
          f"--random {args.out / 'random'} --class-images FOLDER --target CLASS")  # fmt: skip
    return 0
