"""``scan`` and ``failures``: classify a whole dataset into Parquet, then list where the model is confidently wrong."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from interp.cli import CLASSES_HELP, DEVICE_HELP, command, dataset_root, handles, load_cli_model, out_dir
from interp.words import counted, short_label


@command("scan", "classify a dataset into Parquet (resumable: run it again to continue); the dashboard reads it")
def _scan_args(p: argparse.ArgumentParser) -> None:
    from interp.datasets import kinds

    p.add_argument("--model", required=True, help="spec name or any timm model name")
    p.add_argument("--dataset", required=True,
                   help=f"a configured dataset's name (as the app lists it; see $INTERP_DATASETS), or with --root a "
                   f"kind: {', '.join(kinds())}")  # fmt: skip
    p.add_argument("--root", type=Path, help="the dataset folder, when --dataset is a kind")
    p.add_argument("--out", type=Path, help="scan folder (created; a second run resumes it). Default: the folder the "
                   "Failures page reads for this model and dataset, under the cache folder ($INTERP_CACHE_DIR)")
    p.add_argument("--limit", type=int, help="scan only the first N images (classes alternate, so N spans them)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--workers", type=int,
                   help="image-decoding processes (default on a GPU: one per spare core, at most 4; on the CPU: "
                        "none, threads read each batch between passes: there a process takes cores from the model, "
                        "and on 2 cores one made a scan 2.5 times slower)")  # fmt: skip
    p.add_argument("--mapping", help="Open Images: CSV (LabelName,imagenet) inside --root mapping labels to ImageNet")
    p.add_argument("--weights", help="'hub', 'bundled', 'random', or a weights file")
    p.add_argument("--classes", type=Path, help=CLASSES_HELP)
    p.add_argument("--device", help=DEVICE_HELP)
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process with loader workers (default); ray: Ray Data, Ray tasks decode and an "
                   "actor pool classifies, on a local cluster or the one --address names (pip install \"ray[data]\")")  # fmt: skip
    p.add_argument("--address", help="with --engine ray: a running cluster (auto, ray://HOST:10001); default: start a "
                   "local one on this machine")  # fmt: skip
    p.add_argument("--actors", type=int, help="with --engine ray: classifying actors (default: one per GPU, else 1)")
    p.add_argument("--precision", choices=("fp32", "tf32", "bf16"),
                   help="fp32 (default on the CPU), tf32 (default on a GPU) or bf16; in reduced precision the first "
                   "512 images are re-run in fp32 and the top-1 agreement is recorded in scan.json")  # fmt: skip
    p.add_argument("--decode", choices=("auto", "cpu", "gpu"), default="auto",
                   help="auto (default): on a GPU, JPEGs are decoded there in batches (nvJPEG), other files by "
                   "Pillow in the loader workers; elsewhere Pillow for all. cpu: Pillow for all. gpu: as auto, "
                   "refused without a GPU")  # fmt: skip


@handles("scan")
def _scan(args: argparse.Namespace) -> int:
    from interp.cli import writable_settings
    from interp.datasets import scan_folder

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}.")
    settings = writable_settings()
    root = dataset_root(args.dataset, args.root, args.mapping)
    dataset = root.open()
    for note in dataset.notes:
        print(f"note: {note}", file=sys.stderr)
    model = load_cli_model(args)
    out = args.out if args.out is not None else scan_folder(settings.cache_dir, model.key, root)
    last = [0.0]

    def progress(p) -> None:
        now = time.monotonic()
        if now - last[0] > 2 or p.done == p.total:
            last[0] = now
            eta = f", {p.eta_s:.0f} s left" if p.eta_s is not None else ""
            print(f"\r{p.done}/{p.total} images, {p.images_per_s:.1f} images/s{eta}   ", end="", file=sys.stderr, flush=True)

    if args.decode == "gpu" and model.device.type != "cuda":
        raise ValueError(f"--decode gpu needs the model on a GPU; it is on {model.device}. Use --decode auto or cpu.")
    if args.engine == "ray" and args.decode != "auto":
        raise ValueError("--engine ray decodes in Ray's CPU tasks; leave out --decode.")
    if args.engine == "ray" and args.precision not in (None, "fp32"):
        raise ValueError("--engine ray scans in fp32 for now; leave out --precision.")
    folder = out_dir(out)
    try:
        summary = _run(args, model, dataset, folder, progress)
    except KeyboardInterrupt:  # what is scored is on disk (the scans flush on the way out): say how to go on
        from interp.datasets.scanner import existing_ids

        kept = len(existing_ids(folder))
        print(f"\ninterrupted: {counted(kept, 'image')} scored in {out}; run the same command again to score the rest.",
              file=sys.stderr)  # fmt: skip
        return 130
    if last[0]:  # end the progress line
        print(file=sys.stderr)
    scored = "" if summary.scored else " (labels not comparable with this model's classes: not marked right or wrong)"
    if summary.written or not summary.complete:
        print(f"{summary.rows}/{summary.total} images in {out}; {summary.written} new this run, "
              f"{summary.skipped} unreadable, {summary.images_per_s:.1f} images/s{scored}")  # fmt: skip
    else:
        print(f"{summary.rows}/{summary.total} images in {out}, every one scanned before: nothing new to "
              f"score{scored}")  # fmt: skip
    if summary.decoded_on_device:
        from interp.jpeg import decoder_name

        print(f"{summary.decoded_on_device} JPEGs decoded on {model.device} by {decoder_name(model.device)}, the rest "
              "by Pillow")  # fmt: skip
    if summary.scored:
        from interp.datasets import failures, load_scan
        from interp.datasets import summary as counts

        # what the counts read: 7 MB of the whole scan's 93 for 200,000 rows, in 0.05 s of 0.72
        rows = load_scan(out, columns=["error", "correct", "confidence"])[1]
        c, sure = counts(rows), len(failures(rows, 0.5))
        print(f"accuracy {c['accuracy']:.1%} on {counted(c['scored'], 'image')}, {counted(c['mistakes'], 'mistake')}"
              + (f"; {sure} at confidence ≥ 50%: `python -m interp failures --scan {out}` lists them"
                 if sure else ""))  # fmt: skip
    from interp.datasets.scanner import read_meta

    meta = read_meta(out)
    check = meta.get("precision_check")
    if check and check.get("top1_agreement") is not None:
        first = counted(check["images"], "image")
        print(f"{meta['precision']}: top-1 agreement with fp32 on the first {first}: "
              f"{check['top1_agreement']:.2%}")  # fmt: skip
    return 0


def _run(args: argparse.Namespace, model, dataset, out: Path, progress):
    """The scan itself, in process or on Ray, as the arguments ask."""
    if args.engine == "ray":
        from interp.datasets.ray_scan import scan_ray

        if args.actors is not None and args.actors < 1:
            raise ValueError(f"--actors must be at least 1, got {args.actors}.")
        weights = args.weights if args.weights in (None, "hub", "bundled", "random") else str(Path(args.weights).resolve())
        return scan_ray(model, dataset, out, weights=weights, address=args.address, batch_size=args.batch_size,
                        limit=args.limit, actors=args.actors, progress=progress)  # fmt: skip
    if args.address or args.actors:
        raise ValueError("--address and --actors go with --engine ray.")
    from interp.datasets import scan
    from interp.models.precision import default_precision

    return scan(model, dataset, out, batch_size=args.batch_size, limit=args.limit, workers=args.workers,
                progress=progress, precision=args.precision or default_precision(model.device),
                decode={"gpu": "device"}.get(args.decode, args.decode))  # fmt: skip


@command("failures", "list a scan's high-confidence misclassifications, most confident first")
def _failures_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scan", required=True, type=Path, help="a folder written by `scan`")
    p.add_argument("--min-confidence", type=float, default=0.5,
                   help="only mistakes made with at least this probability, 0 to 1 (default 0.5)")
    p.add_argument("--top", type=int, default=50, help="at most this many (default 50)")
    p.add_argument("--json", action="store_true", help="print JSON: one object per mistake")


@handles("failures")
def _failures(args: argparse.Namespace) -> int:
    from interp.datasets import class_names_of, damaged_note, failures, load_scan, several_labels, summary, true_names

    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}.")
    listed = ["path", "label", "labels", "label_name", "pred", "pred_name", "confidence", "true_prob"]
    meta, rows = load_scan(args.scan, columns=[*listed, "correct", "error"])  # not the top-5 lists: half the memory
    note = damaged_note(meta.get("damaged_parts", []))
    if note:
        print(f"warning: {note}", file=sys.stderr)
    if 1 < args.min_confidence <= 100:
        raise ValueError(f"--min-confidence is a probability from 0 to 1; for {args.min_confidence:g}% write "
                         f"{args.min_confidence / 100:g}.")  # fmt: skip
    every = failures(rows, args.min_confidence)
    wrong = every.head(args.top)
    many = bool(several_labels(wrong).any())
    cols = ["id", *(c for c in listed if c != "labels" or many)]
    if args.json:
        print(json.dumps({"meta": meta, "summary": summary(rows), "failures": wrong[cols].to_dict("records")}, indent=2,
                         default=lambda x: x.tolist() if hasattr(x, "tolist") else float(x)))  # fmt: skip
        return 0
    s = summary(rows)
    if not s["scored"]:
        print(f"{meta['dataset']} by {meta['model']}: {counted(s['images'], 'image')}, none with labels comparable "
              "with the model's classes, so none is marked wrong.")  # fmt: skip
        return 0
    print(f"{meta['dataset']} by {meta['model']}: accuracy {s['accuracy']:.1%} on {counted(s['scored'], 'image')}; "
          f"{counted(len(every), 'mistake')} at confidence ≥ {args.min_confidence:.0%}"
          + (f", the {len(wrong)} most confident shown" if len(wrong) < len(every) else ""))  # fmt: skip
    name = class_names_of(rows, meta.get("class_names"))
    for r in wrong.itertuples():
        true = true_names(r.labels if many else None, r.label_name, name)  # every class of an Open Images photo
        print(f"{r.confidence:6.1%}  {short_label(r.pred_name):<24} true: {true:<24} {r.path}")
    return 0
