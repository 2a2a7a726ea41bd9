"""``visualize`` and ``spectrum``: what a unit responds to, as optimised images and as dataset examples."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from PIL import Image

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
from interp.errors import shown
from interp.words import counted

OBJECTIVES = ("channel", "neuron", "class", "probability")


def _unit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a spec name (efficientnet_lite0, shapes_cnn…) or any timm name")
    p.add_argument("--objective", default="channel", choices=OBJECTIVES,
                   help="channel: a channel's mean over its map; neuron: one position of it; class: a logit; "
                   "probability: a class's log-probability (default: channel)")  # fmt: skip
    p.add_argument("--layer", help=f"{LAYER_HELP}; default: a layer halfway through the network")
    p.add_argument("--channel", type=int, help="the channel of --layer (channel and neuron objectives)")
    p.add_argument("--class", dest="klass", help=f"the class of the class and probability objectives: {CLASS_HELP}")
    p.add_argument("--position", help="ROW,COL on the layer's grid for a neuron (default: the centre)")
    p.add_argument("--weights", help="'hub', 'bundled', 'random', or a weights file")
    p.add_argument("--classes", type=Path, help=CLASSES_HELP)
    p.add_argument("--device", help=DEVICE_HELP)


def _objective(args: argparse.Namespace, model, negative: bool = False):
    from interp.features import Objective, default_feature_layer

    if args.objective in ("channel", "neuron"):
        if args.channel is None:
            raise ValueError(f"--objective {args.objective} needs --channel N.")
        position = None
        if args.position:
            try:
                row, col = (int(v) for v in args.position.split(","))
            except ValueError:
                raise ValueError(f"--position is ROW,COL (two whole numbers); got {shown(args.position)}.") from None
            position = (row, col)
        layer = args.layer or default_feature_layer(model)
        return Objective(args.objective, args.channel, layer, position, negative)
    if args.klass is None:
        raise ValueError(f"--objective {args.objective} needs --class N.")
    return Objective(args.objective, class_index(args.klass, model.class_names, "--class", model.name),
                     negative=negative)


@command("visualize", "activation maximisation: the images that drive a channel, neuron or class hardest (PNGs + "
                      "summary.json)")  # fmt: skip
def _visualize_args(p: argparse.ArgumentParser) -> None:
    from interp.features.settings import VisualiseSettings

    d = VisualiseSettings()
    _unit_args(p)
    p.add_argument("--negative", action="store_true", help="minimise instead: what the unit is most against")
    p.add_argument("--param", default=d.param, choices=("fft", "pixel"), help=f"parameterisation (default {d.param})")
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimiser steps (default {d.steps})")
    p.add_argument("--size", type=int, default=d.size, help=f"image side in pixels (default {d.size})")
    p.add_argument("--batch", type=int, default=d.batch, help=f"images at once (default {d.batch})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"Adam's step size (default {d.lr})")
    p.add_argument("--jitter", type=int, default=d.jitter, help=f"largest shift per step, px (default {d.jitter})")
    p.add_argument("--scale", type=float, default=d.scale, help=f"largest relative zoom per step (default {d.scale})")
    p.add_argument("--rotate", type=float, default=d.rotate, help=f"largest rotation per step, degrees (default {d.rotate})")
    p.add_argument("--tv", type=float, default=d.tv, help="total-variation penalty weight (default 0)")
    p.add_argument("--l2", type=float, default=d.l2, help="L2 penalty weight, distance from grey (default 0)")
    p.add_argument("--diversity", type=float, default=d.diversity, help="diversity weight for --batch > 1 (default 0)")
    p.add_argument("--no-decorrelate", action="store_true", help="optimise plain RGB, not decorrelated colour")
    p.add_argument("--seed", type=int, default=d.seed,
                   help=f"seeds the starting image and every transform (default {d.seed})")
    p.add_argument("--no-cache", action="store_true", help="compute again even when the result is cached")
    p.add_argument("--out", required=True, type=Path, help="folder for the outputs (created if missing)")


@handles("visualize")
def _visualize(args: argparse.Namespace) -> int:
    from interp.cache import ResultCache
    from interp.cli import writable_settings
    from interp.features import Step, VisualiseSettings, visualise

    settings = VisualiseSettings(param=args.param, steps=args.steps, size=args.size, batch=args.batch, lr=args.lr,
                                 jitter=args.jitter, scale=args.scale, rotate=args.rotate, tv=args.tv, l2=args.l2,
                                 diversity=args.diversity, decorrelate=not args.no_decorrelate, seed=args.seed)  # fmt: skip
    out_dir(args.out)
    model = load_cli_model(args)
    objective = _objective(args, model, args.negative)
    cache = None if args.no_cache else ResultCache.from_settings(writable_settings())
    tty = sys.stderr.isatty()

    def progress(step: Step) -> None:
        if tty or step.step == step.total:
            left = f", about {step.seconds_left:.0f} s left" if step.seconds_left is not None else ""
            print(f"\rstep {step.step}/{step.total}: objective {step.value:.3f} on transformed copies{left}   ", end="",
                  file=sys.stderr)

    v = visualise(model, objective, settings, cache=cache, on_step=progress)
    if tty or v.steps_done:
        print(file=sys.stderr)
    names = []
    for i, image in enumerate(v.images):
        name = f"{args.param}_{i}.png"
        Image.fromarray(image).save(args.out / name)
        names.append(name)
    summary = {"model": model.name, "weights": model.weights.source, **v.summary(), "images": names}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    values = ", ".join(f"{x:.3f}" for x in v.values)
    print(f"{model.name}: {objective.describe(model.class_names)} — {v.steps_done} steps in {v.seconds:.1f} s; "
          f"the final image gives {values}")
    print(f"wrote {counted(len(names), 'PNG')} and summary.json to {args.out}")
    if v.flat:
        print(f"warning: {v.flat_note()}", file=sys.stderr)
    return 0


@command("spectrum", "dataset examples across a unit's spectrum: the minimum, slightly negative, slightly positive and "
                     "maximum activating images (PNGs + spectrum.json)")  # fmt: skip
def _spectrum_args(p: argparse.ArgumentParser) -> None:
    _unit_args(p)
    p.add_argument("--images", type=Path, help="a folder: every image in it and its sub-folders")
    p.add_argument("--dataset", help="a configured dataset's name, or a kind (folder, zip, imagenet…) with --root")
    p.add_argument("--root", type=Path, help="the dataset's folder, with --dataset KIND")
    p.add_argument("--n", type=int, default=500,
                   help="at most this many images, drawn across the folder or dataset (default 500)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the draw of the images (default 0: the Features page's draw of as many images)")
    p.add_argument("--per-column", type=int, default=4, help="examples per column (default 4)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--out", required=True, type=Path, help="folder for the outputs (created if missing)")


def _spectrum_paths(args: argparse.Namespace) -> list[tuple[Path, str]]:
    """The drawn images' paths, each with its name: its path inside the folder or dataset (``star/0001.png``)."""
    from interp.cli import dataset_root
    from interp.cli.concepts import _image_files

    if (args.images is None) == (args.dataset is None):
        raise ValueError("give the images with --images DIR or --dataset NAME (not both).")
    if args.n < 1:
        raise ValueError(f"--n is at least 1; got {args.n}.")
    if args.images is not None:
        ds = _image_files(args.images, "--images")
    else:
        ds = dataset_root(args.dataset, args.root).open()
    return [(ds.path_of(item), item.path) for item in ds.draw(args.n, args.seed)]


def _spectrum_images(paths: list[tuple[Path, str]], model, progress=None) -> tuple[list, list[str]]:
    """The images, each held at the size the model resizes it to (the same pixels for it: 5,000 photos of Open
    Images in 1.2 GB, not 11), and the names of those that could not be read."""
    from interp.errors import InterpError
    from interp.images import load_image
    from interp.models.preprocess import model_sized

    images, skipped = [], []
    for done, (path, name) in enumerate(paths, 1):
        try:
            images.append(model_sized(model.transform, load_image(path, name=name)))
        except InterpError:
            skipped.append(name)
        if progress is not None:
            progress(done, len(paths))
    if not images:
        raise ValueError("none of the images could be read.")
    return images, skipped


@handles("spectrum")
def _spectrum(args: argparse.Namespace) -> int:
    from interp.cache import ResultCache
    from interp.cli import writable_settings
    from interp.cli.concepts import _progress_line
    from interp.features import spectrum
    from interp.features.spectrum import spectrum_files

    paths = _spectrum_paths(args)
    out_dir(args.out)
    model = load_cli_model(args)
    objective = _objective(args, model)
    start = time.monotonic()
    with _progress_line() as line:  # reading 1,000 photos takes a while too (16 s at 2048×1536)
        images, skipped = _spectrum_images(paths, model, lambda done, n: line(f"{done}/{n} images read", done / n))
    if skipped:  # after the progress line has ended
        print(f"warning: skipped {counted(len(skipped), 'unreadable file')}: {', '.join(skipped[:5])}", file=sys.stderr)
    with _progress_line() as line:
        s = spectrum(model, objective, images, per_column=args.per_column, batch_size=args.batch_size,
                     cache=ResultCache.from_settings(writable_settings()),
                     progress=lambda done, n: line(f"{done}/{n} images ranked", done / max(n, 1)))  # fmt: skip
    for name, data in spectrum_files(model, s, images).items():
        (args.out / name).write_bytes(data)
    unit = objective.describe(model.class_names).removeprefix("maximise ")
    print(f"{model.name}: {unit} over {counted(len(images), 'image')} in {time.monotonic() - start:.1f} s; "
          f"centred on {s.centred_on} ({s.centre:.3f})"
          + (f"; effective receptive field {s.field} px, " + (f"crops {s.crop} px" if s.crop else "whole images")
             if s.field else ""))  # fmt: skip
    for column, examples in s.columns.items():
        print(f"{s.label(column):>22}: " + (", ".join(f"{e.name} ({e.value:.2f})" for e in examples)
                                             or "none (each image appears in one column only)"))  # fmt: skip
    print(f"wrote the examples and spectrum.json to {args.out}")
    return 0
