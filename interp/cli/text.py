"""``text-attention`` and ``text-train``: a BERT-like model's heads for one sentence; the bundled text model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from interp.cli import class_index, command, handles, out_dir


@command("text-attention", "a BERT-like text model's attention for one sentence: a PNG per layer, attention.npz and "
                           "heads.json (statistics and patterns), with Integrated Gradients per token")  # fmt: skip
def _text_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="text_bert", help="text_bert (bundled), a Hugging Face name or a local folder")
    p.add_argument("--text", required=True, help="the sentence")
    p.add_argument("--target", help="class for Integrated Gradients, by index or name (default: the prediction)")
    p.add_argument("--steps", type=int, default=64, help="Integrated Gradients steps (default 64)")
    p.add_argument("--out", required=True, type=Path, help="folder for the outputs (created if missing)")


@handles("text-attention")
def _text_attention(args: argparse.Namespace) -> int:
    from interp.text import capture, head_stats, load_text_model, token_ig
    from interp.text.report import report_files

    model = load_text_model(args.model, allow_paths=True)
    encoded = model.encode(args.text)
    cap = capture(model, encoded)
    stats = head_stats(cap)
    target = cap.predicted
    if args.target is not None:
        target = class_index(args.target, cap.class_names, "--target", model.name)
    ig = token_ig(model, encoded, target, args.steps)
    out_dir(args.out)
    for name, data in report_files(model, args.text, cap, ig).items():
        (args.out / name).write_bytes(data)
    print(f"{model.name}: {cap.class_names[cap.predicted]} ({cap.probs[cap.predicted]:.1%}); {len(cap.tokens)} tokens, "
          f"{cap.layers} layers × {cap.heads} heads")  # fmt: skip
    for layer in range(cap.layers):
        print(f"layer {layer}: " + ", ".join(f"head {h} {stats.label(layer, h)}" for h in range(cap.heads)))
    top = sorted(zip(ig.scores, ig.tokens), reverse=True)[:3]
    print(f"Integrated Gradients for {cap.class_names[target]}: " + ", ".join(f"{t} {s:+.3f}" for s, t in top)
          + f" (completeness error {ig.delta:+.4f})")
    print(f"wrote {cap.layers} layer PNGs, rollout.png, attention.npz and heads.json to {args.out}")
    return 0


@command("text-train", "train the bundled text model on the text world (reproducible; writes a Hugging Face folder)")
def _train_args(p: argparse.ArgumentParser) -> None:
    from interp.text.train_config import TextTrainConfig

    d = TextTrainConfig()
    p.add_argument("--out", type=Path, default=None, help="folder (default: assets/text_bert)")
    p.add_argument("--sentences", type=int, default=d.sentences,
                   help=f"training sentences drawn (default {d.sentences})")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"passes over them (default {d.epochs})")
    p.add_argument("--seed", type=int, default=d.seed,
                   help=f"seeds the sentences and the initialisation: same seed, same weights (default {d.seed})")


@handles("text-train")
def _train(args: argparse.Namespace) -> int:
    from interp.text.model import ASSETS, BUNDLED
    from interp.text.train import TextTrainConfig, train

    for option, value in (("--sentences", args.sentences), ("--epochs", args.epochs)):
        if value < 1:
            raise ValueError(f"{option} must be at least 1, got {value}.")
    out = out_dir(args.out or ASSETS / BUNDLED["text_bert"])  # a file in the way is said before the training
    report = train(TextTrainConfig(sentences=args.sentences, epochs=args.epochs, seed=args.seed), out,
                   log=lambda line: print(line, file=sys.stderr, flush=True))  # progress on stderr, as every command's
    print(f"wrote {out}: {report['test_accuracy']:.1%} right on {report['config']['test_sentences']:,} fresh "
          "sentences")  # fmt: skip
    return 0
