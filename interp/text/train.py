"""Train the bundled text model on the text world, reproducibly: ``python -m interp text-train``.

A small BERT (2 layers × 4 heads, 64 wide) from ``transformers``, trained from a seeded initialisation on
generated reviews; saved as a Hugging Face folder (``config.json``, ``model.safetensors``, the tokenizer's
``vocab.txt``) that ``load_text_model("text_bert")`` and ``AutoModelForSequenceClassification`` both read, with
``report.json`` (accuracy on a seed the training never saw).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from interp.text.model import transformers_module
from interp.text.train_config import TextTrainConfig
from interp.text.world import CLASSES, MAX_WORDS, VOCAB, reviews
from interp.words import epoch_line


def tokenizer_in(folder: Path):
    """The world's word-level tokenizer (every word is in the vocabulary; a word outside it reads as [UNK])."""
    transformers = transformers_module()
    folder.mkdir(parents=True, exist_ok=True)
    return transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(VOCAB)}, do_lower_case=True,
                                          model_max_length=MAX_WORDS + 6)  # fmt: skip


def _batch(tokenizer, texts: list[str]) -> dict[str, torch.Tensor]:
    return tokenizer(texts, padding=True, return_tensors="pt")


def _dropped(review, rate: float, gen: torch.Generator) -> str:
    words = review.words
    planted = {review.keyword, review.keyword - 1} if review.negated else {review.keyword}
    drop = torch.rand(len(words), generator=gen) < rate
    return " ".join("[MASK]" if d and i not in planted else w for i, (w, d) in enumerate(zip(words, drop.tolist())))


def accuracy(net, tokenizer, seed: int, n: int) -> float:
    data = list(reviews(n, seed=seed))
    right = 0
    with torch.inference_mode():
        for s in range(0, n, 256):
            part = data[s : s + 256]
            logits = net(**_batch(tokenizer, [r.text for r in part])).logits
            right += int((logits.argmax(1) == torch.tensor([r.label for r in part])).sum())
    return right / n


def train(config: TextTrainConfig, out: Path, log=print) -> dict:
    transformers = transformers_module()
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = tokenizer_in(Path(tmp))
        bert = transformers.BertConfig(
            vocab_size=len(VOCAB), hidden_size=config.hidden, num_hidden_layers=config.layers,
            num_attention_heads=config.heads, intermediate_size=config.intermediate,
            max_position_embeddings=MAX_WORDS + 6, num_labels=len(CLASSES), hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0, id2label=dict(enumerate(CLASSES)),
            label2id={c: i for i, c in enumerate(CLASSES)}, pad_token_id=0,
        )  # fmt: skip
        with torch.random.fork_rng(devices=[]):  # the initialisation is seeded without touching the caller's RNG
            torch.manual_seed(config.seed)
            net = transformers.BertForSequenceClassification(bert)
        gen = torch.Generator().manual_seed(config.seed)
        data = list(reviews(config.sentences, seed=config.seed))
        labels = torch.tensor([r.label for r in data])
        optimiser = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=0.01)
        steps = config.epochs * -(-len(data) // config.batch)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.lr, total_steps=steps)
        start = time.monotonic()
        net.train()
        for epoch in range(config.epochs):
            order = torch.randperm(len(data), generator=gen)
            total = 0.0
            for s in range(0, len(data), config.batch):
                idx = order[s : s + config.batch]
                texts = [_dropped(data[i], config.word_dropout, gen) for i in idx]
                out_ = net(**_batch(tokenizer, texts), labels=labels[idx])
                optimiser.zero_grad()
                out_.loss.backward()
                optimiser.step()
                schedule.step()
                total += float(out_.loss.detach()) * len(idx)
            log(epoch_line(epoch + 1, config.epochs, total / len(data), time.monotonic() - start))
        net.eval()
        acc = accuracy(net, tokenizer, config.test_seed, config.test_sentences)
        log(f"accuracy on {config.test_sentences} fresh sentences (seed {config.test_seed}): {acc:.4f}")
        out.mkdir(parents=True, exist_ok=True)
        net.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
    report = {"config": asdict(config), "test_accuracy": acc, "seconds": round(time.monotonic() - start, 1)}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report
