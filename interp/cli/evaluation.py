"""``evaluate``: how far to trust each method's map on an image (#21: deletion, insertion, their random floor, the
randomisation check, and the pointing game and energy where a mask gives the answer)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from interp.cli import (
    CLASS_HELP,
    CLASSES_HELP,
    DEVICE_HELP,
    class_index,
    command,
    dataset_root,
    handles,
    load_cli_model,
)
from interp.words import counted


@command("evaluate", "score attribution maps of an image, or of N images of a dataset (which method to trust)")
def _evaluate_args(p: argparse.ArgumentParser) -> None:
    from interp.evaluation.choices import REPLACEMENTS

    p.add_argument("--model", default="efficientnet_lite0", help="spec name or any timm model name")
    p.add_argument("--image", type=Path, help="score the maps of this image (a file, or a bundled photo's name)")
    p.add_argument("--dataset", help="or of N images of a dataset: a configured dataset's name, or with --root a kind")
    p.add_argument("--root", type=Path, help="the dataset folder, when --dataset is a kind")
    p.add_argument("--n", type=int, default=50, help="with --dataset: how many images (default 50)")
    p.add_argument("--out", type=Path, help="with --dataset: folder for scores.parquet and summary.json (a second "
                   "run continues it)")
    p.add_argument("--method", "--methods", dest="method", action="append", required=True,
                   help="a method name (repeat, or separate by commas, for several), or 'all'")
    p.add_argument("--target", help=f"the class to explain: {CLASS_HELP}; default: the top prediction")
    p.add_argument("--set", action="append", default=[], metavar="[METHOD.]SETTING=VALUE",
                   help="a method's setting, as for `attribute`")  # fmt: skip
    p.add_argument("--steps", type=int, default=20, help="deletion/insertion steps (default 20)")
    p.add_argument("--replacement", default="blur", choices=REPLACEMENTS,
                   help="what removed pixels become (default blur: it keeps the image closest to real ones)")
    p.add_argument("--block", type=int, help="side of the square regions removed together, in input pixels: 1 "
                   "removes single pixels; default 16 (less on inputs under 128 pixels)")
    p.add_argument("--sanity", action="store_true",
                   help="also run the cascading model-randomisation check (one method run per layer step)")
    p.add_argument("--mask", type=Path, help="an object mask (image file, white = object, the photo's size): adds "
                   "the pointing game and the energy inside the object")
    p.add_argument("--weights", help="'hub', 'bundled', 'random', or a weights file")
    p.add_argument("--classes", type=Path, help=CLASSES_HELP)
    p.add_argument("--device", help=DEVICE_HELP)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


@handles("evaluate")
def _evaluate(args: argparse.Namespace) -> int:
    if (args.image is None) == (args.dataset is None):
        raise ValueError("give --image FILE (one image's maps) or --dataset (N images), not both or neither.")
    if args.block is not None and args.block < 1:
        raise ValueError(f"--block is a region's side in pixels, 1 or more (1: single pixels), got {args.block}.")
    if args.dataset is not None:
        return _evaluate_dataset(args)
    return _evaluate_image(args)


def _evaluate_dataset(args: argparse.Namespace) -> int:
    import time

    from interp.attribution import METHODS, method_names
    from interp.attribution.settings import parse_assignments
    from interp.evaluation import evaluate_dataset, load_failures, load_unreadable, verdict
    from interp.words import percent_plus_minus, plus_minus

    if args.out is None:
        raise ValueError("with --dataset, give --out DIR for the scores (a second run continues them).")
    if args.sanity or args.mask is not None or args.target is not None:
        raise ValueError("--sanity, --mask and --target are for one image (--image); a dataset explains each "
                         "image's prediction.")  # fmt: skip
    methods = method_names(args.method)
    params = parse_assignments(args.set, methods, {m: METHODS[m].schema() for m in methods}, METHODS)
    dataset = dataset_root(args.dataset, args.root).open()
    model = load_cli_model(args)
    last = [0.0]

    def progress(p) -> None:
        now = time.monotonic()
        if now - last[0] > 2 or p.done == p.total:
            last[0] = now
            eta = f", about {p.eta_s:.0f} s left" if p.eta_s is not None else ""
            print(f"\r{p.done}/{p.total} images{eta}   ", end="", file=sys.stderr, flush=True)

    summary = evaluate_dataset(model, dataset, methods, args.out, n=args.n, steps=args.steps,
                               replacement=args.replacement, block=args.block, params=params,
                               progress=progress)  # fmt: skip
    print(file=sys.stderr)
    if args.json:
        print(summary.to_json(orient="records", indent=2))
        return 0
    print(f"{model.name} on {dataset.name}: mean ± 95% interval over the images; gains are the margins over a random "
          "map (higher is better)")  # fmt: skip
    print(f"{'method':<24}{'images':>7}{'deletion':>16}{'insertion':>16}{'insertion gain':>18}{'deletion gain':>17}")
    def pm(mean: float, half: float) -> str:  # the mean alone where there is no interval, kept in its column
        return plus_minus(mean, half).ljust(len(f"{mean:.3f} ± 0.000"))

    for r in summary.to_dict("records"):
        print(f"{r['method']:<24}{r['images']:>7}{pm(r['deletion_auc'], r['deletion_auc_ci95']):>16}"
              f"{pm(r['insertion_auc'], r['insertion_auc_ci95']):>16}"
              f"{pm(r['insertion_gain'], r['insertion_gain_ci95']):>18}"
              f"{pm(r['deletion_gain'], r['deletion_gain_ci95']):>17}")  # fmt: skip
    if (summary["images"] < 2).any():
        print("(a method scored on one image has no interval; score more images with --n)")
    if "located" in summary and summary["located"].notna().any():  # the shapes world's masks, Open Images' boxes
        located = summary[summary["located"].notna()]
        print(f"where the object is known ({counted(int(located['located'].max()), 'image')}): how often the map's "
              f"peak falls on it (the pointing game) and the share of its mass there; a map spread at random scores "
              f"the object's share of the view on both, {float(located['object_share'].mean()):.0%}")  # fmt: skip
        print(f"{'method':<24}{'images':>7}{'pointing':>16}{'mass on object':>18}")
        for r in located.to_dict("records"):
            print(f"{r['method']:<24}{int(r['located']):>7}{percent_plus_minus(r['pointing'], r['pointing_ci95']):>16}"
                  f"{percent_plus_minus(r['energy_inside'], r['energy_inside_ci95']):>18}")  # fmt: skip
    print(verdict(summary, dataset.name))
    for method, why in load_failures(args.out).items():
        first = next(iter(why.values()))
        print(f"note: {method} could not be scored on {counted(len(why), 'image')} (first: {first})", file=sys.stderr)
    if unreadable := load_unreadable(args.out):  # the sentence names its file; an id where it does not
        first, why = next(iter(unreadable.items()))
        said = why if Path(first).name in why else f"{first}: {why}"
        verb = "is" if len(unreadable) == 1 else "are"
        print(f"note: {counted(len(unreadable), 'image')} could not be read and {verb} left out (first: {said})",
              file=sys.stderr)  # fmt: skip
    print(f"wrote {args.out / 'scores.parquet'} and {args.out / 'summary.json'}")
    return 0


def _evaluate_image(args: argparse.Namespace) -> int:
    import numpy as np

    from interp.attribution import METHODS, attribute, get_method, method_names
    from interp.attribution.memory import forward_batch_size
    from interp.attribution.settings import parse_assignments
    from interp.cli import read_image
    from interp.evaluation import (
        cascading_randomisation,
        deletion_insertion,
        energy_inside,
        pointing,
        random_floor,
        scoreboard,
        scoreboard_sentence,
    )
    from interp.evaluation.faithfulness import model_block
    from interp.images import load_rgb

    methods = method_names(args.method)
    params = parse_assignments(args.set, methods, {m: METHODS[m].schema() for m in methods}, METHODS)
    if not 1 <= args.steps <= 1000:
        raise ValueError(f"--steps must be 1 to 1000, got {args.steps}.")
    image = read_image(args.image)
    mask = None
    if args.mask is not None:
        m = load_rgb(args.mask, name=f"--mask {args.mask.name}")  # any mode; a missing or broken file in one sentence
        if m.size != image.image.size:
            (w, h), (iw, ih) = m.size, image.image.size
            raise ValueError(f"--mask is {w}×{h} but the image is {iw}×{ih}; give a mask of the photo's size.")
        raw_mask = np.asarray(m.convert("L")) > 127
    model = load_cli_model(args)
    chosen = None if args.target is None else class_index(args.target, model.class_names, "--target", model.name)
    if args.mask is not None:
        from interp.shapes import mask_in_view

        mask = mask_in_view(raw_mask, model.view)
    block = model_block(model, args.block)
    x = model.preprocess(image.image)
    target = chosen if chosen is not None else int(model.run(x[None]).argmax(-1))
    batch = forward_batch_size(model, x[None], 2 * (args.steps + 1))  # the memory budget read once for every map
    floor = random_floor(model, x, target, steps=args.steps, replacement=args.replacement, block=block, batch=batch)
    rows, scored = [], []
    for name in methods:
        reason = get_method(name, **params[name]).applies_to(model)
        if reason:
            rows.append({"method": name, "skipped": reason})
            continue
        result = attribute(model, x, name, target, **params[name])
        curves = deletion_insertion(model, x, result.map, target, steps=args.steps, replacement=args.replacement,
                                    block=block, batch=batch)  # fmt: skip
        scored.append((name, model.class_names[target], curves, floor))
        row = {"method": name, "deletion_auc": curves.deletion_auc, "insertion_auc": curves.insertion_auc,
               "deletion": curves.deletion.tolist(), "insertion": curves.insertion.tolist()}  # fmt: skip
        if mask is not None:
            row.update(pointing=pointing(result.raw, mask), energy_inside=energy_inside(result.raw, mask))
        if args.sanity:
            check = cascading_randomisation(model, x, name, target, params=params[name])
            row.update(sanity_mean_spearman=check.mean_spearman, sanity_flagged=check.flagged,
                       sanity=[{"layer": s.layer, "spearman": s.spearman, "ssim": s.ssim} for s in check.steps])  # fmt: skip
        rows.append(row)
    report = {"model": model.name, "image": str(args.image), "target": target, "label": model.class_names[target],
              "steps": args.steps, "replacement": args.replacement, "block": block,
              "random_floor": {"deletion_auc": floor.deletion_auc, "insertion_auc": floor.insertion_auc,
                               "maps": floor.maps, "deletion_spread": floor.deletion_spread,
                               "insertion_spread": floor.insertion_spread},
              "object_share": float(mask.mean()) if mask is not None else None, "methods": rows,
              "verdict": scoreboard_sentence(scoreboard(scored), block) if scored else None}  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    regions = "single pixels" if block == 1 else f"{block}×{block}-pixel squares"
    print(f"{model.name} on {args.image.name}, class {target} ({model.class_names[target]}); {args.steps} steps of "
          f"{regions}, {args.replacement} replacement. Lower deletion and higher insertion are better.")  # fmt: skip
    print(f"{'method':<24}{'deletion':>10}{'insertion':>11}")
    print(f"{f'random maps (floor, {floor.maps})':<24}{floor.deletion_auc:>10.3f}{floor.insertion_auc:>11.3f}"
          f"  spread ± {floor.deletion_spread:.3f}, ± {floor.insertion_spread:.3f}")  # fmt: skip
    for row in rows:
        if "skipped" in row:
            print(f"{row['method']:<24}  skipped: {row['skipped']}")
            continue
        extra = ""
        if mask is not None:
            extra += f"  pointing {'hit' if row['pointing'] else 'miss'}, energy {row['energy_inside']:.2f}"
        if args.sanity:
            extra += f"  sanity {row['sanity_mean_spearman']:.2f}" + (" FLAGGED" if row["sanity_flagged"] else "")
        print(f"{row['method']:<24}{row['deletion_auc']:>10.3f}{row['insertion_auc']:>11.3f}{extra}")
    if report["verdict"]:
        print(report["verdict"])  # the Attribution page's scoreboard sentence
    return 0
