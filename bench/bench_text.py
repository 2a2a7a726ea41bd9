"""Text attention benchmark, measured side by side in one run (on the model's device).

    python bench/bench_text.py [--layers 12] [--hidden 768] [--tokens 64]

A BERT-base-sized encoder from a config (random weights: no download) and the bundled text_bert:
1. Capturing every head (hooks on the query and key projections, softmax per head) ÷ a plain forward pass.
   Target ≤ 1.2.
2. Every view of one capture (head statistics over all tokens and at one word, rollout, the lines from one token)
   ÷ a plain forward pass. Target ≤ 0.1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.bench_attribution import ratios_beside


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import tempfile

    import torch
    import transformers

    from interp.config import resolve_device
    from interp.text import capture, from_parts, head_stats, load_text_model, text_rollout
    from interp.text.train import tokenizer_in
    from interp.text.world import FILLER

    device = resolve_device(None)
    config = transformers.BertConfig(vocab_size=56, hidden_size=args.hidden, num_hidden_layers=args.layers,
                                     num_attention_heads=max(1, args.hidden // 64), intermediate_size=4 * args.hidden,
                                     max_position_embeddings=max(512, args.tokens + 2))  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = transformers.BertForSequenceClassification(config)
    big = from_parts("bert_base_random", "config", net, tokenizer_in(Path(tempfile.mkdtemp())), device)
    big = type(big)(**{**big.__dict__, "max_length": args.tokens + 2})
    small = load_text_model("text_bert", device)
    print(f"on {device}, torch threads {torch.get_num_threads()}, {args.rounds} rounds")
    for model, words in ((big, args.tokens), (small, 12)):
        text = " ".join(FILLER[i % len(FILLER)] for i in range(words))
        enc = model.encode(text)

        def plain() -> None:
            with model.shared() as m, torch.inference_mode():
                m(input_ids=enc.ids)

        def captured() -> None:
            capture(model, enc)

        ratios, best_plain, best_cap = ratios_beside(plain, captured, args.rounds)
        cap = capture(model, enc)

        def views() -> None:
            head_stats(cap)
            head_stats(cap, queries=[3])
            text_rollout(cap)
            cap.attn[-1].mean(0)[1]

        vr, _, best_views = ratios_beside(plain, views, args.rounds)
        size = f"{model.config.num_hidden_layers} layers × {model.config.num_attention_heads} heads, {len(enc.tokens)} tokens"
        print(f"{model.name} ({size}): plain forward {best_plain * 1e3:.1f} ms; capture {best_cap * 1e3:.1f} ms, "
              f"capture ÷ plain median {statistics.median(1 / r for r in ratios):.2f} (target ≤ 1.2); every view "
              f"{best_views * 1e3:.2f} ms, ÷ plain median {statistics.median(1 / r for r in vr):.3f} (target ≤ 0.1)")  # fmt: skip


if __name__ == "__main__":
    main()
