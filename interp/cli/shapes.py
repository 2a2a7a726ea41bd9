"""``shapes generate``: write a split of the ground-truth world as an ImageFolder with a CSV of the truth."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from interp.cli import DEVICE_HELP, command, handles, out_dir


@command("shapes", "the synthetic shapes world with known answers (see `shapes generate --help`)")
def _shapes_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=type(p),
                           help="generate images, or train a model on them")
    gen = sub.add_parser("generate", help="write N images in an ImageFolder layout plus labels.csv",
                         description="write N images of the shapes world in an ImageFolder layout (one folder per "
                         "class) plus labels.csv: each image's class, box, marker and where it came from")  # fmt: skip
    gen.add_argument("--out", required=True, type=Path, help="folder to write (created if missing)")
    gen.add_argument("--n", required=True, type=int, help="how many images")
    gen.add_argument("--seed", type=int, default=0, help="same seed, same images (default 0)")
    gen.add_argument("--split", choices=("train", "test", "clean"), default="train",
                     help="train: one class usually carries the corner marker; test: every class at random; clean: none")  # fmt: skip
    gen.add_argument("--size", type=int, default=128, help="image side in pixels, 64 to 1024 (default 128)")
    gen.add_argument("--masks", action="store_true", help="also write the object masks under masks/")
    tr = sub.add_parser("train", help="train shapes_cnn or shapes_vit from scratch and save safetensors + report",
                        description="train shapes_cnn or shapes_vit on fresh images of the shapes world each epoch, "
                        "then score it on a clean and a marker split it never saw; writes a .safetensors file with "
                        "the report in its metadata")  # fmt: skip
    tr.add_argument("--model", required=True, choices=("shapes_cnn", "shapes_vit"), help="which of the two to train")
    tr.add_argument("--out", required=True, type=Path, help="the .safetensors file to write")
    tr.add_argument("--continue-from", type=Path, help="start from these weights (e.g. the bundled file) and train on")
    tr.add_argument("--epochs", type=int, help="override the model's configured number of epochs")
    tr.add_argument("--device", help=DEVICE_HELP)
    tr.add_argument("--workers", type=int, default=0,
                    help="processes that draw the images (0: in this process); the images are the same either way")  # fmt: skip
    tr.add_argument("--json", action="store_true", help="print the training report (also in the file's metadata) as "
                    "JSON instead of a sentence")  # fmt: skip


@handles("shapes")
def _shapes(args: argparse.Namespace) -> int:
    from interp.shapes import MARKER_RATE, SHORTCUT_CLASS, write_image_folder
    from interp.shapes.generator import MAX_SIZE

    if args.action == "train":
        return _train(args)
    if args.n < 1:
        raise ValueError(f"--n must be at least 1, got {args.n}.")
    if not 64 <= args.size <= MAX_SIZE:
        raise ValueError(f"--size is from 64 to {MAX_SIZE} pixels, got {args.size}.")
    if args.seed < 0:
        raise ValueError(f"--seed is 0 or more, got {args.seed}.")

    def progress(done: int, total: int) -> None:
        if done % 100 == 0 or done == total:
            print(f"\r{done}/{total} images", end="" if done < total else "\n", file=sys.stderr, flush=True)

    csv_path = write_image_folder(
        out_dir(args.out), args.n, seed=args.seed, split=args.split, size=args.size, masks=args.masks, progress=progress
    )
    rate = MARKER_RATE[args.split]
    who = f"{SHORTCUT_CLASS} images" if args.split == "train" else "images of every class"
    print(f"wrote {args.n} {args.split} images to {args.out} and the truth to {csv_path} "
          f"({f'marker on {rate:.0%} of {who}' if rate else 'no marker'})")  # fmt: skip
    return 0


def _train(args: argparse.Namespace) -> int:
    import json
    from dataclasses import replace

    from interp.config import resolve_device
    from interp.shapes.train import CONFIGS, save, train
    from interp.words import counted, duration

    if args.out.suffix != ".safetensors":
        raise ValueError(f"--out must end in .safetensors, got {args.out.name}.")
    config = CONFIGS[args.model]
    if args.epochs is not None:
        if args.epochs < 1:
            raise ValueError(f"--epochs must be at least 1, got {args.epochs}.")
        config = replace(config, epochs=args.epochs)
    if args.workers < 0:
        raise ValueError(f"--workers must be 0 or more, got {args.workers}.")
    if args.out.is_dir():
        raise ValueError(f"--out {args.out} is a folder; name the .safetensors file to write.")
    out_dir(args.out.parent)  # before the training, not after it
    device = str(resolve_device(args.device))
    model, report = train(config, progress=lambda line: print(line, file=sys.stderr, flush=True),
                          init_from=args.continue_from, device=device, workers=args.workers)  # fmt: skip
    save(model, args.out, args.model, config, report)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"wrote {args.out}: {report['clean_accuracy']:.1%} on the clean split, {report['marker_test_accuracy']:.1%} "
          f"on the marker split ({counted(config.n_eval, 'image')} each, never trained on); "
          f"{counted(config.epochs, 'epoch')} in {duration(report['seconds'])} on {report['device']}")  # fmt: skip
    print(f"use it with --model {args.model} --weights {args.out} (the report is in its metadata; --json prints it)")
    return 0
