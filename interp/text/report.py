"""The files of a sentence's reading: one PNG per layer (its heads side by side), the rollout, the raw arrays and a
JSON report. What ``python -m interp text-attention`` writes and the Text page's download holds."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from interp.attribution.display import colorize, grid_png
from interp.text.capture import TextAttention
from interp.text.heads import TokenAttribution, head_stats, text_rollout
from interp.text.model import TextModel


def heatmap(matrix: np.ndarray, side: int) -> np.ndarray:
    """A tokens × tokens matrix as a ``side``-pixel viridis square, scaled to its maximum."""
    norm = matrix / max(float(matrix.max()), 1e-12)
    rgb = colorize(norm.astype(np.float32), "viridis")
    return np.asarray(Image.fromarray(rgb).resize((side, side), Image.Resampling.NEAREST))


def report_files(model: TextModel, text: str, cap: TextAttention, ig: TokenAttribution) -> dict[str, bytes]:
    """``layer_NN.png`` per layer, ``rollout.png``, ``attention.npz`` (attention, logits, rollout, tokens, IG scores)
    and ``heads.json`` (the prediction, every head's statistics and pattern, IG per token)."""
    stats = head_stats(cap)
    rollout = text_rollout(cap)
    side = max(96, 12 * len(cap.tokens))
    files = {}
    for layer in range(cap.layers):
        cells = [[heatmap(cap.attn[layer, h], side) for h in range(cap.heads)]]
        columns = [f"head {h} · {stats.label(layer, h)}" for h in range(cap.heads)]
        files[f"layer_{layer:02d}.png"] = grid_png([f"layer {layer}"], columns, cells, side)
    buf = io.BytesIO()
    Image.fromarray(heatmap(rollout, side)).save(buf, "PNG")
    files["rollout.png"] = buf.getvalue()
    buf = io.BytesIO()
    np.savez_compressed(buf, attn=cap.attn, logits=cap.logits, rollout=rollout, tokens=np.asarray(cap.tokens),
                        ig=ig.scores)  # fmt: skip
    files["attention.npz"] = buf.getvalue()
    report = {
        "model": model.name, "source": model.source, "text": text, "tokens": list(cap.tokens),
        "prediction": {"index": cap.predicted, "label": cap.class_names[cap.predicted],
                       "probs": {c: float(p) for c, p in zip(cap.class_names, cap.probs)}},
        "layers": cap.layers, "heads": cap.heads, "max_entropy": stats.max_entropy, "per_head": stats.rows(),
        "integrated_gradients": {"target": ig.target, "label": cap.class_names[ig.target], "steps": ig.steps,
                                 "delta": ig.delta, "per_token": [{"token": t, "score": float(s)}
                                                                  for t, s in zip(ig.tokens, ig.scores)]},
    }  # fmt: skip
    files["heads.json"] = json.dumps(report, indent=2).encode()
    return files
