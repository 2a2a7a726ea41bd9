"""``methods``, ``attribute`` and ``case-study``: attribution from the shell, written to files."""

from __future__ import annotations

import argparse
import base64
import html
import json
from pathlib import Path

import numpy as np
from PIL import Image

from interp.cli import DEVICE_HELP, command, handles, out_dir


@command("methods", "list the registered attribution methods with their settings and papers")
def _methods_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")


@handles("methods")
def _methods(args: argparse.Namespace) -> int:
    from interp.attribution import method_rows

    rows = method_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items()) or "-"
        print(f"{r['name']:<{width}}  {r['kind']:<12}  {r['title']}: {r['summary']}")
        print(f"{'':<{width}}  {'':<12}  settings: {settings}")
    return 0


@command("attribute", "attribute one image with one or more methods; write overlay PNGs, raw .npz and summary.json")
def _attribute_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="efficientnet_lite0", help="spec name or any timm model name")
    p.add_argument("--image", required=True, type=Path)
    p.add_argument("--method", action="append", required=True, help="a method name (repeat for several)")
    p.add_argument("--target", type=int, help="class index to explain (default: the top prediction)")
    p.add_argument("--steps", type=int, help="Integrated Gradients steps (default 32)")
    p.add_argument("--weights", help="'hub', 'bundled', 'random', or a weights file")
    p.add_argument("--device", help=DEVICE_HELP)
    p.add_argument("--out", required=True, type=Path, help="folder for the outputs (created if missing)")


@handles("attribute")
def _attribute(args: argparse.Namespace) -> int:
    from interp.attribution import METHODS, attribute
    from interp.attribution.display import overlay
    from interp.images import load_image
    from interp.models import load_model

    unknown = [m for m in args.method if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r}; see `python -m interp methods`.")
    image = load_image(args.image)
    model = load_model(args.model, args.weights, device=args.device)
    if args.target is not None and not 0 <= args.target < model.num_classes:
        raise ValueError(f"--target {args.target} is not a class of {model.name} (0 to {model.num_classes - 1}).")
    out_dir(args.out)
    base = model.view(image.image)
    summary = {"model": model.name, "weights": model.weights.source, "image": str(args.image), "methods": []}
    for name in args.method:
        params = {"steps": args.steps} if args.steps is not None and "steps" in METHODS[name].defaults else {}
        result = attribute(model, image, name, args.target, **params)
        Image.fromarray(overlay(base, result.raw, _display_for(name))).save(args.out / f"{name}.png")
        np.savez_compressed(args.out / f"{name}.npz", raw=result.raw, input=base)
        summary["methods"].append(
            {
                "name": name,
                "target": result.target,
                "label": model.class_names[result.target],
                "seconds": round(result.seconds, 4),
                "delta": result.delta,
                "relative_delta": result.extras.get("relative_delta"),
                "params": result.params,
            }
        )
        delta = f", completeness error {result.delta:+.4f}" if result.delta is not None else ""
        print(f"{name}: {model.class_names[result.target]} in {result.seconds:.2f} s{delta}")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {len(args.method)} overlays, raw maps and summary.json to {args.out}")
    return 0


CASE_METHODS = ("grad_cam", "integrated_gradients", "occlusion")
CASE_SAMPLES = ("chelsea", "coffee", "camera", "motorcycle")


@command("case-study", "the default model on the bundled photos with three methods, as a small HTML report")
def _case_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, type=Path, help="folder for report.html and its images")
    p.add_argument("--model", default="efficientnet_lite0")


@handles("case-study")
def _case_study(args: argparse.Namespace) -> int:
    from interp.attribution import METHODS, attribute
    from interp.attribution.display import grid_png, overlay
    from interp.models import load_model
    from interp.predict import predict
    from interp.samples import SAMPLES, load_sample

    model = load_model(args.model)
    out_dir(args.out)
    rows, cells, notes = [], [], []
    for sample in CASE_SAMPLES:
        image = load_sample(sample)
        top = predict(model, image).top
        base = model.view(image.image)
        row = [base]
        for name in CASE_METHODS:
            result = attribute(model, image, name, top.index)
            row.append(overlay(base, result.raw, _display_for(name)))
            if result.delta is not None:
                notes.append(f"{sample}: {METHODS[name].title} completeness error {result.extras['relative_delta']:.1%}")
        rows.append(f"{sample}: {top.label.split(',')[0]} {top.prob:.0%}")
        cells.append(row)
        print(f"{sample}: {top.label} ({top.prob:.1%})")
    png = grid_png(rows, ["input"] + [METHODS[m].title for m in CASE_METHODS], cells)
    (args.out / "grid.png").write_bytes(png)
    items = "".join(
        f"<li><b>{html.escape(METHODS[m].title)}</b>: {html.escape(METHODS[m].summary)} "
        f"<i>{html.escape(METHODS[m].paper)}</i></li>"
        for m in CASE_METHODS
    )
    captions = "".join(f"<li>{html.escape(SAMPLES[s].caption)}</li>" for s in CASE_SAMPLES)
    report = f"""<!doctype html><html><head><meta charset="utf-8"><title>Case study: {html.escape(model.name)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.45}}img{{max-width:100%}}</style>
</head><body><h1>What does {html.escape(model.name)} look at?</h1>
<p>Model: {html.escape(model.spec.description)}; weights: {html.escape(model.weights.source)}.
Each row is a bundled photo with the model's top class; each column explains that class with one method.</p>
<ul>{items}</ul>
<img alt="attribution grid" src="data:image/png;base64,{base64.b64encode(png).decode()}">
<h2>Photos</h2><ul>{captions}</ul>
<h2>How far to trust the path method</h2><ul>{"".join(f"<li>{html.escape(n)}</li>" for n in notes)}</ul>
<p>Made with <code>python -m interp case-study</code>.</p></body></html>"""
    (args.out / "report.html").write_text(report, encoding="utf-8")
    print(f"wrote {args.out / 'report.html'}")
    return 0


def _display_for(method: str):
    from interp.attribution import METHODS
    from interp.attribution.display import DisplaySettings

    return DisplaySettings(alpha=0.5, sign="positive" if not METHODS[method].signed else "absolute")
