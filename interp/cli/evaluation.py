"""``evaluate``: how far to trust each method's map on an image (#21: deletion, insertion, their random floor, the
randomisation check, and the pointing game and energy where a mask gives the answer)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from interp.cli import DEVICE_HELP, command, handles


@command("evaluate", "score attribution maps of an image: deletion/insertion AUC against a random map, sanity check")
def _evaluate_args(p: argparse.ArgumentParser) -> None:
    from interp.evaluation import REPLACEMENTS

    p.add_argument("--model", default="efficientnet_lite0", help="spec name or any timm model name")
    p.add_argument("--image", required=True, type=Path)
    p.add_argument("--method", action="append", required=True, help="a method name (repeat for several), or 'all'")
    p.add_argument("--target", type=int, help="class index to explain (default: the top prediction)")
    p.add_argument("--set", action="append", default=[], metavar="[METHOD.]SETTING=VALUE",
                   help="a method's setting, as for `attribute`")  # fmt: skip
    p.add_argument("--steps", type=int, default=20, help="deletion/insertion steps (default 20)")
    p.add_argument("--replacement", default="blur", choices=REPLACEMENTS,
                   help="what removed pixels become (default blur: it keeps the image closest to real ones)")
    p.add_argument("--sanity", action="store_true",
                   help="also run the cascading model-randomisation check (one method run per layer step)")
    p.add_argument("--mask", type=Path, help="an object mask (image file, white = object, the photo's size): adds "
                   "the pointing game and the energy inside the object")
    p.add_argument("--weights", help="'hub', 'bundled', 'random', or a weights file")
    p.add_argument("--device", help=DEVICE_HELP)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


@handles("evaluate")
def _evaluate(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from interp.attribution import METHODS, attribute, get_method
    from interp.attribution.settings import parse_assignments
    from interp.evaluation import (
        cascading_randomisation,
        deletion_insertion,
        energy_inside,
        pointing,
        random_map,
    )
    from interp.images import load_image
    from interp.models import load_model

    methods = list(METHODS) if args.method == ["all"] else list(dict.fromkeys(args.method))
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r}; see `python -m interp methods`.")
    params = parse_assignments(args.set, methods, {m: METHODS[m].schema() for m in methods}, METHODS)
    if not 1 <= args.steps <= 1000:
        raise ValueError(f"--steps must be 1 to 1000, got {args.steps}.")
    image = load_image(args.image)
    mask = None
    if args.mask is not None:
        with Image.open(args.mask) as m:
            if m.size != image.image.size:
                raise ValueError(f"--mask is {m.size[0]}×{m.size[1]} but the image is "
                                 f"{image.image.size[0]}×{image.image.size[1]}; give a mask of the photo's size.")  # fmt: skip
            raw_mask = np.asarray(m.convert("L")) > 127
    model = load_model(args.model, args.weights, device=args.device)
    if args.target is not None and not 0 <= args.target < model.num_classes:
        raise ValueError(f"--target {args.target} is not a class of {model.name} (0 to {model.num_classes - 1}).")
    if args.mask is not None:
        from interp.shapes import mask_in_view

        mask = mask_in_view(raw_mask, model.view)
    x = model.preprocess(image.image)
    target = args.target if args.target is not None else int(model.run(x[None]).argmax(-1))
    floor = deletion_insertion(model, x, random_map(tuple(x.shape[-2:]), 0), target, steps=args.steps,
                               replacement=args.replacement)  # fmt: skip
    rows = []
    for name in methods:
        reason = get_method(name, **params[name]).applies_to(model)
        if reason:
            rows.append({"method": name, "skipped": reason})
            continue
        result = attribute(model, x, name, target, **params[name])
        curves = deletion_insertion(model, x, result.map, target, steps=args.steps, replacement=args.replacement)
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
              "steps": args.steps, "replacement": args.replacement,
              "random_floor": {"deletion_auc": floor.deletion_auc, "insertion_auc": floor.insertion_auc},
              "object_share": float(mask.mean()) if mask is not None else None, "methods": rows}  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{model.name} on {args.image.name}, class {target} ({model.class_names[target]}); {args.steps} steps, "
          f"{args.replacement} replacement. Lower deletion and higher insertion are better.")  # fmt: skip
    print(f"{'method':<24}{'deletion':>10}{'insertion':>11}")
    print(f"{'random map (floor)':<24}{floor.deletion_auc:>10.3f}{floor.insertion_auc:>11.3f}")
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
    return 0
