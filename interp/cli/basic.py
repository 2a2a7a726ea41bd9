"""``models`` and ``predict``: list the registry, classify one image."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from interp.cli import CLASSES_HELP, DEVICE_HELP, command, handles, load_cli_model


@command("models", "list the model registry with where each model's weights come from and whether they can be had")
def _models_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.add_argument("--timm", metavar="PATTERN",
                   help="list timm's architectures whose names match PATTERN instead (* and ?; without them, names "
                   "that contain it), with the tags of their pretrained weights, the default first")  # fmt: skip
    p.add_argument("--layers", metavar="MODEL",
                   help="list MODEL's layers instead: the names --layer takes (tcav, cav-features, visualize, "
                   "spectrum, attribute's CAM methods), with each one's output shape for one image")  # fmt: skip
    p.add_argument("--all", action="store_true",
                   help="with --layers: every module, not only the top-level ones and the blocks of the body")
    p.add_argument("--weights",
                   help="with --layers: 'hub', 'bundled' or a weights file (default: random, as the layers' names and "
                   "shapes do not depend on the weights; a file can change the classifier's classes)")  # fmt: skip


@handles("models")
def _models(args: argparse.Namespace) -> int:
    from interp.models import SPECS, describe
    from interp.models.weights import OFFLINE_OPTIONS

    if args.timm is not None and args.layers is not None:
        raise ValueError("--timm and --layers list different things; give one of them.")
    if (args.all or args.weights) and args.layers is None:
        raise ValueError(f"{'--all' if args.all else '--weights'} goes with --layers MODEL.")
    if args.timm is not None:
        return _timm_names(args.timm, args.json)
    if args.layers is not None:
        return _layers(args.layers, args.weights or "random", args.all, args.json)
    rows = [describe(name) for name in SPECS]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        state = "available" if r["available"] else "unavailable"
        print(f"{r['name']:<{width}}  {r['family']:<3}  {r['params'] / 1e6:6.1f}M  {r['load_mb']:>5,} MB to load  "
              f"{state:<11}  {r['weights']}")  # fmt: skip
        if not r["available"]:
            print(f"{'':<{width}}  why: {r['reason']}")
    if not all(r["available"] for r in rows):
        print(f"\nWithout the hub: {OFFLINE_OPTIONS}.")
    return 0


def _timm_names(pattern: str, as_json: bool) -> int:
    from dataclasses import asdict

    from interp.models.specs import timm_names
    from interp.words import counted

    names = timm_names(pattern)
    if as_json:
        print(json.dumps([asdict(n) for n in names], indent=2))
        return 0
    width = max(len(n.name) for n in names)
    for n in names:
        if not n.pretrained:
            weights = "no pretrained weights (random, or your own)"
        else:
            more = len(n.pretrained) - 4
            shown = ", ".join(n.pretrained[:4]) + (f" and {more} more" if more > 0 else "")
            weights = f"{len(n.pretrained)} pretrained: {shown}"
        print(f"{n.name:<{width}}  {weights}")
    with_weights = sum(bool(n.pretrained) for n in names)
    print(f"\n{counted(len(names), 'name')}, {with_weights:,} with pretrained weights: `--model NAME` loads the first "
          "tag's, `--model NAME.TAG` another's (from the hub).")  # fmt: skip
    return 0


def _layers(name: str, weights: str, every: bool, as_json: bool) -> int:
    from dataclasses import asdict

    from interp.features import feature_layers, layer_table
    from interp.models import load_model
    from interp.words import counted

    model = load_model(name, weights)
    names = set(model.layer_names() if every else [*feature_layers(model), model.spec.cam_layer])
    table = layer_table(model, [n for n in model.layer_names() if n in names])
    if as_json:
        print(json.dumps([asdict(layer) for layer in table], indent=2))
        return 0
    rows = [(layer.name + (" *" if layer.name == model.spec.cam_layer else ""), layer.kind,
             " × ".join(map(str, layer.output)) if layer.output is not None else "not run",
             f"{layer.params:,}" if layer.params else "")
            for layer in table]  # fmt: skip
    header = ("layer", "kind", "output", "parameters")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    c, h, w = model.data_config["input_size"]
    built = {"random": "random weights (names and shapes do not depend on them)", "hub": "its weights from the hub",
             "bundled": "its bundled weights"}.get(weights, f"the weights in {weights}")  # fmt: skip
    modules = counted(len(model.layer_names()), "module")
    shown = "every module" if every else f"{counted(len(table), 'layer')} of {modules}"
    print(f"{model.name} on a {c} × {h} × {w} input, built with {built}; {shown}:")
    for r in [header, *rows]:
        print(f"  {r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]:>{widths[3]}}")
    notes = []
    if model.spec.cam_layer in model.layer_names():
        notes.append("* the CAM methods' default layer")
    if not every:
        notes.append("--all lists every module")
    if model.spec.family == "vit":
        notes.append("a block's output is tokens × width; where a map is drawn, its patch tokens are laid out on "
                     "their grid")  # fmt: skip
    print("\n" + "; ".join(notes) + ".")
    return 0


@command("predict", "classify one image and print the top-k classes")
def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="efficientnet_lite0", help="spec name or any timm model name")
    p.add_argument("--image", required=True, type=Path,
                   help="image file (JPEG, PNG, WebP, BMP, TIFF, GIF), or a bundled photo: chelsea, coffee, …")
    p.add_argument("--top", type=int, default=5, help="how many classes to print (default 5)")
    p.add_argument(
        "--weights", help="'hub', 'bundled', 'random', or a .safetensors / .pth file (default: the model's own)"
    )
    p.add_argument("--classes", type=Path, help=CLASSES_HELP)
    p.add_argument("--device", help=DEVICE_HELP)
    p.add_argument("--json", action="store_true", help="print JSON: {model, predictions: [{index, label, prob}]}")


@handles("predict")
def _predict(args: argparse.Namespace) -> int:
    from interp.cli import read_image

    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}.")
    image = read_image(args.image)  # before the model (and torch): a bad path fails fast
    from interp.predict import predict

    model = load_cli_model(args)
    result = predict(model, image, top_k=args.top)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print(f"{model.name} ({model.weights.source}) on {image.name}:")
    for s in result.scores:
        print(f"  {s.prob:7.2%}  {s.label}  [{s.index}]")
    return 0


