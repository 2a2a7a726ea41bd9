"""Every head's attention for one sentence, read from the query and key projections during a plain forward pass.

The capture hooks each layer's query and key projections and computes ``softmax(Q Kᵀ / √d)`` per head itself, so
the model keeps its fused attention kernel (with ``transformers``' SDPA attention, ``output_attentions`` returns
nothing). One sentence, no padding: no mask enters the softmax. The result equals ``output_attentions=True`` of the
eager implementation (``tests/test_text.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from interp.errors import InterpError
from interp.models.hooks import hooked
from interp.text.model import Encoded, TextModel, text_model

TEXT_CAPTURE = "interp.text.capture(model, text)"
"""What makes a :class:`TextAttention`, as the head statistics' and rollout's sentences name it."""


@dataclass(frozen=True)
class TextAttention:
    """What one pass gave.

    Attributes:
        tokens: ``(T,)`` the tokens, specials included.
        special: ``(T,)`` which are special tokens ([CLS], [SEP]…).
        attn: ``(L, H, T, T)`` float32, rows (queries) sum to 1.
        logits: ``(C,)``.
        class_names: the model's classes.
    """

    tokens: tuple[str, ...]
    special: tuple[bool, ...]
    attn: np.ndarray
    logits: np.ndarray
    class_names: tuple[str, ...]

    @property
    def layers(self) -> int:
        return self.attn.shape[0]

    @property
    def heads(self) -> int:
        return self.attn.shape[1]

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.logits))

    @property
    def probs(self) -> np.ndarray:
        e = np.exp(self.logits - self.logits.max())
        return e / e.sum()


_PAIRS = (("query", "key"), ("q_lin", "k_lin"))


def projections(model: TextModel) -> list[tuple[torch.nn.Module, torch.nn.Module]]:
    """``[(query, key)]`` per layer, in order."""
    model = text_model(model, "projections")
    modules = dict(model.structure.named_modules())
    found = []
    for name in modules:
        for q, k in _PAIRS:
            if re.search(rf"\.{q}$", name) and name[: -len(q)] + k in modules:
                found.append((modules[name], modules[name[: -len(q)] + k]))
    if not found:
        raise InterpError(f"{model.name} has no query and key projections this capture knows; it reads BERT-like "
                          "encoders.")  # fmt: skip
    return found


def capture(model: TextModel, encoded: Encoded | str) -> TextAttention:
    """Every head's attention and the logits, from one forward pass (holding the model's gate alone); a sentence
    given as text is encoded first (:meth:`TextModel.encode`)."""
    model = text_model(model, "capture")
    encoded = model.as_encoded(encoded)
    pairs = projections(model)
    heads = int(model.config.num_attention_heads)
    outputs: dict[int, torch.Tensor] = {}

    def keep(slot: int):
        def hook(module, inputs, output):
            outputs[slot] = output.detach()

        return hook

    with model.exclusive() as net, torch.inference_mode(), hooked() as handles:
        for i, (q, k) in enumerate(pairs):
            handles.append(q.register_forward_hook(keep(2 * i)))
            handles.append(k.register_forward_hook(keep(2 * i + 1)))
        logits = net(input_ids=encoded.ids).logits[0]
    attn = []
    for i in range(len(pairs)):
        q, k = outputs[2 * i][0], outputs[2 * i + 1][0]  # (T, D)
        t, d = q.shape
        q = q.view(t, heads, d // heads).transpose(0, 1).float()
        k = k.view(t, heads, d // heads).transpose(0, 1).float()
        attn.append(torch.softmax(q @ k.transpose(1, 2) / (d // heads) ** 0.5, dim=-1))
    return TextAttention(encoded.tokens, encoded.special, torch.stack(attn).cpu().numpy(),
                         logits.float().cpu().numpy(), model.class_names)  # fmt: skip
