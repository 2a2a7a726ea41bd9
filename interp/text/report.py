"""The files of a sentence's reading: one PNG per layer (its heads side by side), the rollout, the raw arrays and a
JSON report. What ``python -m interp text-attention`` writes and the Text page's download holds."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING

import numpy as np

from interp.text.capture import TextAttention
from interp.text.heads import TokenAttribution, head_stats, text_rollout
from interp.text.model import TextModel

if TYPE_CHECKING:
    from matplotlib.figure import Figure

HEADS_PER_ROW = 4


def matrices_figure(matrices: list[np.ndarray], titles: list[str], tokens: tuple[str, ...], heading: str, *,
                    vmax: float | None = 1.0) -> Figure:
    """Token × token matrices side by side (:data:`HEADS_PER_ROW` to a row), each token named along both axes as
    ``i:token`` (rows the tokens that look, columns the tokens looked at, as on the Text page), with a colour bar from
    0 to ``vmax`` (``None``: the largest value). Drawn with matplotlib's object API, no pyplot, so two threads may
    draw at once."""
    from matplotlib.figure import Figure

    labels = [f"{i}:{t}" for i, t in enumerate(tokens)]
    n, count = len(labels), len(matrices)
    cols = min(count, HEADS_PER_ROW)
    rows = -(-count // cols)
    panel = max(2.4, 0.2 * n + 1.0)  # inches: a token's row stays readable at 8 pt
    fig = Figure(figsize=(max(cols * panel + 1.2, 6.0), rows * panel + 0.9), dpi=100, layout="constrained")
    fig.suptitle(heading, fontsize=11)
    axes = fig.subplots(rows, cols, squeeze=False)
    top = float(max(m.max() for m in matrices)) if vmax is None else vmax
    for k, ax in enumerate(axes.flat):
        if k >= count:
            ax.set_axis_off()
            continue
        image = ax.imshow(matrices[k], cmap="viridis", vmin=0, vmax=top or 1.0, interpolation="nearest")
        ax.set_title(titles[k], fontsize=9)
        ax.set_xticks(range(n), labels, rotation=90, fontsize=8)
        ax.set_yticks(range(n), labels if k % cols == 0 else [], fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.8, label="attention")
    return fig


def matrices_png(*args, **kwargs) -> bytes:
    """:func:`matrices_figure` as PNG bytes."""
    buf = io.BytesIO()
    matrices_figure(*args, **kwargs).savefig(buf, format="png")
    return buf.getvalue()


def report_files(model: TextModel, text: str, cap: TextAttention, ig: TokenAttribution) -> dict[str, bytes]:
    """``layer_NN.png`` per layer, ``rollout.png``, ``attention.npz`` (attention, logits, rollout, tokens, IG scores)
    and ``heads.json`` (the prediction, every head's statistics and pattern, IG per token)."""
    stats = head_stats(cap)
    rollout = text_rollout(cap)
    files = {}
    for layer in range(cap.layers):
        files[f"layer_{layer:02d}.png"] = matrices_png(
            list(cap.attn[layer]), [f"head {h} · {stats.label(layer, h)}" for h in range(cap.heads)], cap.tokens,
            f"{model.name}, layer {layer}: rows are the tokens that look, columns the tokens they look at")
    files["rollout.png"] = matrices_png([rollout], ["rows: each output token; columns: what it draws from"],
                                        cap.tokens, "Attention rollout over the layers (Abnar & Zuidema 2020)", vmax=None)
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
