"""``methods``, ``attribute`` and ``case-study``: attribution from the shell, written to files."""

from __future__ import annotations

import argparse
import base64
import html
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from interp.cli import CLASS_HELP, CLASSES_HELP, DEVICE_HELP, class_index, command, handles, load_cli_model, out_dir
from interp.words import counted, short_label

if TYPE_CHECKING:
    from interp.attribution import Attribution
    from interp.cache import ResultCache
    from interp.images import LoadedImage
    from interp.models import LoadedModel


@command("methods", "list the registered attribution methods with their settings and papers")
def _methods_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a JSON list (each setting's kind, default, range, help)")
    p.add_argument("--model", help="also say which methods apply to this model (loads it)")
    p.add_argument("--weights", help="'hub', 'bundled', 'random', or a weights file (with --model)")


@handles("methods")
def _methods(args: argparse.Namespace) -> int:
    from interp.attribution import method_rows

    model = None
    if args.model:
        from interp.models import load_model

        model = load_model(args.model, args.weights)
    rows = method_rows(model)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['kind']:<12}  {r['title']}: {r['summary']}")
        if r.get("unavailable"):
            print(f"{'':<{width}}  {'':<12}  not for {model.name}: {r['unavailable']}")
        for s in r["settings"]:
            if "when" in s:
                continue  # a wrapped method's settings: listed under that method
            accepted = (f"{s['low']}..{s['high']}" if s["kind"] in ("int", "float")
                        else "|".join(s.get("choices", [])) or "a layer name, or default")  # fmt: skip
            default = "default" if s["default"] is None else s["default"]
            print(f"{'':<{width}}  {'':<12}  --set {r['name']}.{s['name']}={default}  ({accepted})")
        if any("when" in s for s in r["settings"]):
            print(f"{'':<{width}}  {'':<12}  and the wrapped method's, e.g. --set {r['name']}.integrated_gradients.steps=16")
    return 0


EXIT_NOTHING_RAN = 3
"""``attribute``'s exit status when no (image, method, target) could be computed: every method skipped as not
applying to the model, or no image readable. Bad arguments exit 2 before any work."""


@command("attribute", "attribute images with one or more methods and target classes; write overlays, raw maps and a summary")
def _attribute_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="efficientnet_lite0", help="spec name or any timm model name")
    p.add_argument("--image", action="append", default=[], type=Path,
                   help="an image file or a bundled photo's name (repeat for several)")
    p.add_argument("--images", type=Path, help="a folder: every image directly inside it, in name order")
    p.add_argument("--method", "--methods", dest="method", action="append", required=True,
                   help="a method name (repeat, or separate by commas, for several), or 'all'; "
                        "see `python -m interp methods`")  # fmt: skip
    p.add_argument("--target", action="append", default=[],
                   help=f"a class to explain: {CLASS_HELP}; repeat for several")
    p.add_argument("--top-k", type=int, help="explain each image's K most likely classes (default: the top one)")
    p.add_argument("--set", action="append", default=[], metavar="[METHOD.]SETTING=VALUE",
                   help="a method's setting, e.g. integrated_gradients.steps=64 or window=32 (every chosen method "
                   "with that setting); repeat for several")
    p.add_argument("--sign", choices=("positive", "negative", "absolute", "signed"), default="positive",
                   help="which part of each map the overlay PNGs draw (default: positive, the evidence for the class, "
                   "as the page draws; 'signed' shows both around white); the .npz keeps the whole map")
    p.add_argument("--enough-steps", action="store_true",
                   help="Integrated Gradients: double the steps from its setting (32), up to 1024, until the map adds "
                   "up to within 5%% of the logit change")
    p.add_argument("--scores", action="store_true",
                   help="score every map as the page's trust scores do (deletion and insertion beside five random "
                   "maps', 20 steps of squares, blurred) and read each image's scores in a sentence")
    p.add_argument("--weights", help="'hub', 'bundled', 'random', or a weights file")
    p.add_argument("--classes", type=Path, help=CLASSES_HELP)
    p.add_argument("--device", help=DEVICE_HELP)
    p.add_argument("--no-cache", action="store_true",
                   help="compute every map again instead of reading the result cache the app shares ($INTERP_CACHE_DIR)")
    p.add_argument("--out", required=True, type=Path, help="folder for the outputs (created if missing)")


@handles("attribute")
def _attribute(args: argparse.Namespace) -> int:
    from interp.attribution import METHODS, MethodNotApplicable, attribute, enough_steps, get_method, method_names
    from interp.attribution.display import DisplaySettings, overlay
    from interp.attribution.settings import parse_assignments
    from interp.cache import ResultCache
    from interp.cli import read_image, writable_settings
    from interp.errors import InterpError
    from interp.predict import predict

    methods = method_names(args.method)
    params = parse_assignments(args.set, methods, {m: METHODS[m].schema() for m in methods}, METHODS)
    for m in methods:
        get_method(m, **params[m])  # every value checked before any work
    if args.top_k is not None and args.top_k < 1:
        raise ValueError(f"--top-k must be at least 1, got {args.top_k}.")
    if args.top_k is not None and args.target:
        raise ValueError("give --target or --top-k, not both.")
    paths = _image_paths(args.image, args.images)
    model = load_cli_model(args)
    chosen = [class_index(t, model.class_names, "--target", model.name) for t in args.target]
    if args.top_k is not None and args.top_k > model.num_classes:
        raise ValueError(f"--top-k {args.top_k} is more than {model.name}'s {model.num_classes} classes.")
    out_dir(args.out)
    skipped = {}
    for m in methods:
        reason = get_method(m, **params[m]).applies_to(model)
        if reason:
            skipped[m] = reason
            print(f"warning: {m} skipped: {METHODS[m].title} does not apply to {model.name}: {reason}", file=sys.stderr)
    runnable = [m for m in methods if m not in skipped]
    cache = None if args.no_cache else ResultCache.from_settings(writable_settings())
    summary = {"model": model.name, "weights": model.weights.source, "settings": params, "skipped_methods": skipped,
               "images": [], "unreadable": {}, "failed": []}  # fmt: skip
    stems: set[str] = set()
    done = 0
    started = time.perf_counter()
    for i, path in enumerate(paths):
        try:
            image = read_image(path)
        except (InterpError, ValueError, OSError) as exc:
            summary["unreadable"][str(path)] = str(exc)
            print(f"warning: {path} skipped: {exc}", file=sys.stderr)
            continue
        stem = _unique(path.stem, stems)
        folder = args.out / stem if len(paths) > 1 else args.out
        folder.mkdir(exist_ok=True)
        base = model.view(image.image)
        if args.target:
            targets = list(dict.fromkeys(chosen))
        else:
            targets = [s.index for s in predict(model, image, top_k=args.top_k or 1).scores]
        entry = {"image": str(path), "folder": str(folder), "results": []}
        results = []
        for target in targets:
            for name in runnable:
                try:
                    if name == "integrated_gradients" and args.enough_steps:
                        start = int(get_method(name, **params[name]).params["steps"])
                        result = enough_steps(model, image, target, start=start, most=max(start, 1024), cache=cache,
                                              **params[name])  # fmt: skip
                    else:
                        result = attribute(model, image, name, target, cache=cache, **params[name])
                except (MethodNotApplicable, InterpError, ValueError) as exc:
                    summary["failed"].append({"image": str(path), "method": name, "target": target, "reason": str(exc)})
                    print(f"warning: {name} on {path.name} for class {target}: {exc}", file=sys.stderr)
                    continue
                file = f"{name}.png" if len(targets) == 1 else f"{name}__{target}.png"
                shown = overlay(base, result.raw, DisplaySettings(alpha=0.5, sign=args.sign))
                Image.fromarray(shown).save(folder / file)
                np.savez_compressed(folder / file.replace(".png", ".npz"), raw=result.raw, input=base)
                entry["results"].append({
                    "method": name, "target": result.target, "label": model.class_names[result.target],
                    "file": file, "seconds": round(result.seconds, 4), "cached": bool(result.extras.get("cached")),
                    "delta": result.delta,
                    "relative_delta": result.extras.get("relative_delta"), "params": result.params,
                })  # fmt: skip
                results.append(result)
                done += 1
                completeness = result.completeness()
                delta = f", {completeness}" if completeness else ""
                took = "cached" if result.extras.get("cached") else f"in {result.seconds:.2f} s"
                if name == "integrated_gradients" and args.enough_steps:
                    took += f" at {result.params['steps']} steps"
                print(f"{path.name} [{i + 1}/{len(paths)}] {name}: {model.class_names[result.target]} {took}{delta}")
        if args.scores and results:
            _scores(model, image, path.name, results, entry, cache)
        summary["images"].append(entry)
    summary["maps"] = done
    summary["seconds"] = round(time.perf_counter() - started, 3)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"wrote {counted(done, 'map')} for {len(summary['images'])} of {counted(len(paths), 'image')} in "
          f"{summary['seconds']:.1f} s to {args.out}; {counted(len(skipped), 'method')} skipped, "
          f"{counted(len(summary['unreadable']), 'image')} unreadable, {counted(len(summary['failed']), 'map')} failed "
          "(details in summary.json)")  # fmt: skip
    if done == 0:
        print("error: nothing was computed; see the warnings above.", file=sys.stderr)
        return EXIT_NOTHING_RAN
    return 0


def _scores(model: LoadedModel, image: LoadedImage, name: str, results: list[Attribution], entry: dict,
            cache: ResultCache | None) -> None:  # fmt: skip
    """``--scores``: each map's deletion and insertion beside its class's random floor, as the page computes them
    (through the same cache), into the summary's rows and one line each, then the image's scoreboard sentence. Scores
    that cannot be computed are a warning (and ``scores_failed`` in the summary); the maps stay written."""
    from interp.errors import InterpError
    from interp.evaluation import grid_curves, score_line, scoreboard, scoreboard_sentence
    from interp.evaluation.faithfulness import model_block

    try:
        floors, scored = grid_curves(model, image, results, cache=cache)
    except (InterpError, ValueError) as exc:
        entry["scores_failed"] = str(exc)
        print(f"warning: no scores for {name}: {exc}", file=sys.stderr)
        return
    for result, curves, row in zip(results, scored, entry["results"], strict=True):
        floor = floors[result.target]
        row["scores"] = {"deletion_auc": curves.deletion_auc, "insertion_auc": curves.insertion_auc,
                         "random_deletion_auc": floor.deletion_auc, "random_insertion_auc": floor.insertion_auc,
                         "random_deletion_spread": floor.deletion_spread,
                         "random_insertion_spread": floor.insertion_spread}  # fmt: skip
        label = short_label(model.class_names[result.target])
        print(f"{name} {result.method} for {label}: {score_line(curves, floor)}")
    table = scoreboard((r.method, short_label(model.class_names[r.target]), c, floors[r.target])
                       for r, c in zip(results, scored, strict=True))  # fmt: skip
    entry["verdict"] = scoreboard_sentence(table, model_block(model))
    print(entry["verdict"])


def _image_paths(files: list[Path], folder: Path | None) -> list[Path]:
    from interp.datasets.base import IMAGE_SUFFIXES

    paths = list(files)
    if folder is not None:
        if not folder.is_dir():
            raise ValueError(f"--images {folder} is not a folder; name a folder of images, or use --image for a file.")
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not found:
            below = sorted(p.name for p in folder.iterdir() if p.is_dir())
            named = ", ".join(below[:3]) + (" …" if len(below) > 3 else "")
            hint = (f" It has {counted(len(below), 'sub-folder')} ({named}), which --images does not read: name one, "
                    f"as --images {folder / below[0]}." if below else "")  # fmt: skip
            raise ValueError(f"--images {folder} holds no image files ({', '.join(IMAGE_SUFFIXES)}).{hint}")
        paths += found
    if not paths:
        raise ValueError("give an image with --image FILE or a folder with --images DIR.")
    return paths


def _unique(stem: str, taken: set[str]) -> str:
    name, n = stem, 1
    while name in taken:
        n += 1
        name = f"{stem}_{n}"
    taken.add(name)
    return name


CASE_METHODS = ("grad_cam", "integrated_gradients", "occlusion")
CASE_SAMPLES = ("chelsea", "coffee", "camera", "motorcycle")
CASE_MOST_STEPS = 1024  # Integrated Gradients' steps are doubled up to this many until its map adds up


def _trust_html(sample: str, table, reading: str) -> str:
    """One photo's scoreboard in the case study: its sentence, then each map's areas beside the random maps'."""
    cells = "".join(
        f"<tr><td>{html.escape(r['method'])}</td><td>{r['insertion']:.3f}</td><td>{r['random insertion']:.3f} ± "
        f"{r['insertion spread']:.3f}</td><td>{r['deletion']:.3f}</td><td>{r['random deletion']:.3f} ± "
        f"{r['deletion spread']:.3f}</td></tr>" for _, r in table.iterrows())  # fmt: skip
    return (f"<h3>{html.escape(sample)}</h3><p>{html.escape(reading)}</p><table><tr><th>method</th><th>insertion</th>"
            f"<th>random maps</th><th>deletion</th><th>random maps</th></tr>{cells}</table>")  # fmt: skip


@command("case-study", "the default model on the bundled photos with three methods, as a small HTML report")
def _case_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, type=Path, help="folder for report.html and its images")
    p.add_argument("--model", default="efficientnet_lite0",
                   help="spec name or any timm model name (default efficientnet_lite0)")


@handles("case-study")
def _case_study(args: argparse.Namespace) -> int:
    from interp.attribution import METHODS, attribute, enough_steps, get_method
    from interp.attribution.base import COMPLETENESS_TOLERANCE
    from interp.attribution.display import DisplaySettings, grid_png, overlay
    from interp.evaluation import grid_curves, scoreboard, scoreboard_sentence
    from interp.evaluation.faithfulness import model_block
    from interp.models import load_model
    from interp.predict import predict
    from interp.samples import SAMPLES, load_sample

    model = load_model(args.model)
    out_dir(args.out)
    rows, cells, notes, trust = [], [], [], []
    for sample in CASE_SAMPLES:
        image = load_sample(sample)
        top = predict(model, image).top
        base = model.view(image.image)
        row, ig_note, results = [base], "", []
        for name in CASE_METHODS:
            if name == "integrated_gradients":  # a report shows the map that adds up, as `attribute --enough-steps`
                start = int(get_method(name).params["steps"])
                result = enough_steps(model, image, top.index, start=start, most=CASE_MOST_STEPS)
                ig_note = f"Integrated Gradients at {result.params['steps']} steps, {result.completeness()}"
                notes.append(f"{sample}: {ig_note}")
            else:
                result = attribute(model, image, name, top.index)
            results.append(result)
            row.append(overlay(base, result.raw, DisplaySettings(alpha=0.5)))  # the evidence for the class (positive)
        floors, scored = grid_curves(model, image, results)  # the Attribution page's trust scores, as it computes them
        table = scoreboard((METHODS[r.method].title, short_label(top.label), c, floors[r.target])
                           for r, c in zip(results, scored, strict=True))  # fmt: skip
        trust.append((sample, table, scoreboard_sentence(table, model_block(model))))
        rows.append(f"{sample}: {short_label(top.label)} {top.prob:.0%}")
        cells.append(row)
        print(f"{sample}: {top.label} ({top.prob:.1%}); {ig_note}")
    png = grid_png(rows, ["input"] + [METHODS[m].title for m in CASE_METHODS], cells)
    (args.out / "grid.png").write_bytes(png)
    items = "".join(
        f"<li><b>{html.escape(METHODS[m].title)}</b>: {html.escape(METHODS[m].summary)} "
        f"<i>{html.escape(METHODS[m].paper)}</i></li>"
        for m in CASE_METHODS
    )
    captions = "".join(f"<li>{html.escape(SAMPLES[s].caption)}</li>" for s in CASE_SAMPLES)
    report = f"""<!doctype html><html><head><meta charset="utf-8"><title>Case study: {html.escape(model.name)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.45}}img{{max-width:100%}}
td,th{{padding:.2em .8em;text-align:right}}td:first-child,th:first-child{{text-align:left}}</style>
</head><body><h1>What does {html.escape(model.name)} look at?</h1>
<p>Model: {html.escape(model.spec.description)}; weights: {html.escape(model.weights.source)}.
Each row is a bundled photo with the model's top class; each column explains that class with one method. The
colours show where a map is high, from dark blue (low) through green to red (high), over the photo at half strength:
the positive part of each map, the evidence for the class, scaled to its own 99th percentile.</p>
<ul>{items}</ul>
<img alt="attribution grid" src="data:image/png;base64,{base64.b64encode(png).decode()}">
<h2>Photos</h2><ul>{captions}</ul>
<h2>How far to trust each map</h2>
<p>Each map's top squares ({model_block(model)}×{model_block(model)} pixels) are removed from the photo (deletion) or
revealed on a blurred copy (insertion) in 20 steps while the class probability is followed; the areas under those
curves are set beside five random maps' (their mean ± spread). A faithful map makes the probability fall fast (low
deletion) and rise fast (high insertion); it beats the random maps only by more than twice their spread (Petsiuk et
al., RISE, 2018). The Attribution page's trust scores give the same numbers.</p>
{"".join(_trust_html(*t) for t in trust)}
<h2>How far to trust the path method</h2>
<p>Integrated Gradients' map should add up to the change in the class's logit between the baseline and the photo.
Its steps were doubled until the map missed that change by at most {COMPLETENESS_TOLERANCE:.0%} (or
{CASE_MOST_STEPS} steps were reached, flagged ⚠ below).</p>
<ul>{"".join(f"<li>{html.escape(n)}</li>" for n in notes)}</ul>
<p>Made with <code>python -m interp case-study</code>.</p></body></html>"""
    (args.out / "report.html").write_text(report, encoding="utf-8")
    print(f"wrote {args.out / 'report.html'}")
    return 0


