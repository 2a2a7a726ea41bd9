"""``attention``: a ViT's attention for one image, written as rollout and per-layer maps, raw arrays and statistics."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from interp.cli import CLASS_HELP, CLASSES_HELP, DEVICE_HELP, class_index, command, handles, load_cli_model, out_dir
from interp.words import percent, short_label


@command("attention", "a ViT's attention for one image: rollout and per-layer maps (PNG + .npz) and stats.json")
def _attention_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a ViT: spec name (shapes_vit) or any timm ViT/DeiT name")
    p.add_argument("--image", required=True, type=Path,
                   help="image file (JPEG, PNG, WebP, BMP, TIFF, GIF), or a bundled photo: chelsea, coffee, …")
    p.add_argument("--out", required=True, type=Path, help="folder for the outputs (created if missing)")
    p.add_argument("--target",
                   help=f"the class for gradient rollout and Chefer relevance: {CLASS_HELP}; default: the top one")
    p.add_argument("--head-fusion", default="mean", choices=("mean", "max", "min"),
                   help="how rollout combines a layer's heads (default mean)")
    p.add_argument("--discard-ratio", type=float, default=0.9, help="lowest share of weights dropped (default 0.9)")
    p.add_argument("--weights", help="'hub', 'bundled', 'random', or a weights file")
    p.add_argument("--classes", type=Path, help=CLASSES_HELP)
    p.add_argument("--device", help=DEVICE_HELP)


@handles("attention")
def _attention(args: argparse.Namespace) -> int:
    from interp.attention import capture, class_maps, cls_maps, head_stats, rollout_map
    from interp.attention.capture import check_vit
    from interp.attention.render import draw, heads_grid
    from interp.attribution.display import grid_png
    from interp.cli import read_image

    if not 0.0 <= args.discard_ratio < 1.0:
        raise ValueError(f"--discard-ratio must be in [0, 1), got {args.discard_ratio}.")
    image = read_image(args.image)
    model = load_cli_model(args)
    check_vit(model)
    x = model.preprocess(image.image)[None].to(model.device)
    target = None if args.target is None else class_index(args.target, model.class_names, "--target", model.name)
    if target is None:
        target = int(np.argmax(capture(model, x).logits))
    cap = capture(model, x, target)
    base = model.to_display(x[0])
    out_dir(args.out)

    maps = {"rollout": rollout_map(cap, args.head_fusion, args.discard_ratio)}
    by_class = class_maps(cap, args.discard_ratio)
    class_maps_names = list(by_class)
    maps.update({k.replace(" ", "_").lower(): v for k, v in by_class.items()})
    layers = cls_maps(cap)
    for name, m in maps.items():
        Image.fromarray(draw(base, m)).save(args.out / f"{name}.png")
    for layer, m in enumerate(layers.mean(axis=1)):
        Image.fromarray(draw(base, m)).save(args.out / f"layer_{layer:02d}.png")
    # the same maps, titled, in one picture each, as the page's downloads give them
    label = short_label(model.class_names[target])
    titles = [f"rollout ({args.head_fusion}, discard {args.discard_ratio:.2f})",
              *(f"{k} · {label}" for k in class_maps_names)]
    (args.out / "maps.png").write_bytes(grid_png([""], titles, [[draw(base, m) for m in maps.values()]], cell=256))
    (args.out / "heads.png").write_bytes(grid_png(*heads_grid(layers, base), cell=112))
    np.savez_compressed(args.out / "attention.npz", attn=cap.attn, grads=cap.grads, logits=cap.logits, input=base,
                        cls_maps=layers, **maps)  # fmt: skip
    stats = head_stats(cap)
    (args.out / "stats.json").write_text(
        json.dumps(
            {
                "model": model.name,
                "weights": model.weights.source,
                "image": str(args.image),
                "target": target,
                "label": model.class_names[target],
                "layers": cap.layers,
                "heads": cap.heads,
                "tokens": cap.tokens,
                "prefix_tokens": cap.prefix_tokens,
                "grid": list(cap.grid),
                "patch_px": list(cap.patch_px),
                "max_entropy": stats.max_entropy,
                "uniform_distance_px": stats.uniform_distance_px,
                "per_head": stats.rows(),
                "per_layer": [
                    {"layer": l, "entropy": float(stats.entropy[l].mean()),
                     "distance_px": float(stats.distance_px[l].mean()),
                     "prefix_share": float(stats.prefix_share[l].mean())}
                    for l in range(cap.layers)
                ],
            },
            indent=2,
        )
    )  # fmt: skip
    print(f"{model.name}: {cap.layers} layers × {cap.heads} heads; class {target} ({model.class_names[target]})")
    for l in range(cap.layers):
        share = f", {percent(stats.prefix_share[l].mean())} to {cap.prefix_name}" if cap.prefix_tokens else ""
        print(f"layer {l:2d}: entropy {stats.entropy[l].mean():.3f} nats, "
              f"mean distance {stats.distance_px[l].mean():.1f} px{share}")  # fmt: skip
    print(f"evenly  : entropy {stats.max_entropy:.3f} nats, mean distance {stats.uniform_distance_px:.1f} px "
          "(a head that spreads its attention over every token)")  # fmt: skip
    print(f"wrote rollout, class maps, {cap.layers} layer maps, maps.png and heads.png (titled), attention.npz and "
          f"stats.json to {args.out}")
    return 0
