"""What each head does: statistics over its attention and the pattern they name; rollout; and Integrated
Gradients over the token embeddings for the prediction."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from interp.attention.maps import rollout
from interp.errors import BadSettingError, check_class, expected, real_number, shown, whole_number
from interp.text.capture import TEXT_CAPTURE, TextAttention
from interp.text.model import Encoded, TextModel, text_model

PATTERNS = ("previous token", "next token", "self", "to [CLS]/[SEP]", "to one token", "local", "broad", "mixed")
DOMINANT = 0.5
"""A head is named by a pattern when at least half its attention (mean over query tokens) follows it. "to one token":
the queries look at the same word, one that is not special (a head that finds the "not" from every token); its
:meth:`HeadStats.label` names the word."""


@dataclass(frozen=True)
class HeadStats:
    """Per layer and head, ``(L, H)`` each: the mean over query tokens of

    Attributes:
        entropy: the attention row's entropy in nats (0: one token; ``log T``: uniform).
        distance: the mean distance in tokens from query to key.
        special: the share of attention on special tokens ([CLS], [SEP]…).
        previous: the share on the token just before (queries after the first).
        next: the share on the token just after (queries before the last).
        self_: the share on the query token itself.
        focus: the share on the one word (not special) the queries look at most together.
        focus_token: ``(L, H)`` that word's position (-1 where every token is special).
        patterns: ``(L, H)`` the dominant pattern's name (one of :data:`PATTERNS`).
        tokens: the tokens, to name a "to one token" head's word.
    """

    entropy: np.ndarray
    distance: np.ndarray
    special: np.ndarray
    previous: np.ndarray
    next: np.ndarray
    self_: np.ndarray
    focus: np.ndarray
    focus_token: np.ndarray
    patterns: np.ndarray
    max_entropy: float
    tokens: tuple[str, ...] = ()

    def label(self, layer: int, head: int) -> str:
        """The head's pattern, naming the word of a "to one token" head: ``to “not”``."""
        pattern = str(self.patterns[layer, head])
        at = int(self.focus_token[layer, head])
        if pattern == "to one token" and 0 <= at < len(self.tokens):
            return f"to “{self.tokens[at]}”"
        return pattern

    def rows(self) -> list[dict]:
        layers, heads = self.entropy.shape
        return [{"layer": l, "head": h, "pattern": self.label(l, h), "entropy": float(self.entropy[l, h]),
                 "distance": float(self.distance[l, h]), "special": float(self.special[l, h]),
                 "previous": float(self.previous[l, h]), "next": float(self.next[l, h]),
                 "self": float(self.self_[l, h]), "one token": float(self.focus[l, h])}
                for l in range(layers) for h in range(heads)]  # fmt: skip


def head_stats(cap: TextAttention, queries: Sequence[int] | None = None) -> HeadStats:
    """Each head's statistics, averaged over every query token, or over ``queries`` alone (positions in
    ``cap.tokens``): what a head does *at* a token, e.g. at every "not"."""
    cap = expected(cap, TextAttention, "head_stats", TEXT_CAPTURE)
    a = cap.attn.astype(np.float64)  # (L, H, T, T)
    t = a.shape[-1]
    given = [queries] if whole_number(queries) is not None or isinstance(queries, str) else queries
    positions = None if queries is None else [whole_number(q) for q in given]
    if positions is not None and (not positions or any(q is None or not 0 <= q < t for q in positions)):
        raise BadSettingError(f"queries are token positions, whole numbers from 0 to {t - 1}; got {shown(queries)}.")
    rows = np.arange(t) if positions is None else np.asarray(sorted(set(positions)), dtype=int)
    idx = np.arange(t)
    part = a[..., rows, :]  # (L, H, Q, T)
    entropy = -(part * np.log(np.clip(part, 1e-12, None))).sum(-1).mean(-1)
    distance = (part * np.abs(rows[:, None] - idx[None, :])).sum(-1).mean(-1)
    special = part[..., np.asarray(cap.special, bool)].sum(-1).mean(-1)
    before, after = rows[rows >= 1], rows[rows < t - 1]
    previous = a[..., before, before - 1].mean(-1) if before.size else np.zeros(a.shape[:2])
    nxt = a[..., after, after + 1].mean(-1) if after.size else np.zeros(a.shape[:2])
    self_ = a[..., rows, rows].mean(-1)
    together = part.mean(-2)  # (L, H, T): what each key receives, on average over the queries
    together[..., np.asarray(cap.special, bool)] = -1.0  # special tokens have their own pattern
    most = together.max(-1)
    focus_token = np.where(most < 0, -1, together.argmax(-1))
    focus = np.clip(most, 0.0, None)
    max_entropy = float(np.log(t))
    patterns = np.empty(a.shape[:2], dtype=object)
    for l in range(a.shape[0]):
        for h in range(a.shape[1]):
            # on a tie the first wins: over one query, the word after it is "next token" before "to one token"
            shares = {"previous token": previous[l, h], "next token": nxt[l, h], "self": self_[l, h],
                      "to [CLS]/[SEP]": special[l, h], "to one token": focus[l, h]}  # fmt: skip
            best = max(shares, key=shares.get)
            if shares[best] >= DOMINANT:
                patterns[l, h] = best
            elif distance[l, h] <= 1.5:
                patterns[l, h] = "local"
            elif max_entropy > 0 and entropy[l, h] >= 0.8 * max_entropy:
                patterns[l, h] = "broad"
            else:
                patterns[l, h] = "mixed"
    return HeadStats(entropy.astype(np.float32), distance.astype(np.float32), special.astype(np.float32),
                     previous.astype(np.float32), nxt.astype(np.float32), self_.astype(np.float32),
                     focus.astype(np.float32), focus_token, patterns, max_entropy, tuple(cap.tokens))  # fmt: skip


def text_rollout(cap: TextAttention) -> np.ndarray:
    """``(T, T)`` attention rollout over the layers (Abnar & Zuidema 2020; the same as the ViT page's)."""
    cap = expected(cap, TextAttention, "text_rollout", TEXT_CAPTURE)
    return rollout(cap.attn)


@dataclass(frozen=True)
class TokenAttribution:
    """Integrated Gradients of one class over the token embeddings.

    Attributes:
        tokens: the tokens.
        scores: ``(T,)`` each token's attribution (summed over the embedding).
        target: the class explained.
        delta: completeness error, the scores' sum minus (logit at the input − logit at the baseline).
        steps: the path's steps.
    """

    tokens: tuple[str, ...]
    scores: np.ndarray
    target: int
    delta: float
    steps: int


TOLERANCE = 0.05
"""Integrated Gradients doubles its steps (up to 1024) until the completeness error is within this share of the
logit's change: on the bundled model a negated sentence needed 256 steps where most need 32."""
MAX_STEPS = 1024


def token_ig(model: TextModel, encoded: Encoded | str, target: int, steps: int = 64, baseline_token: str | None = None,
             tolerance: float = TOLERANCE) -> TokenAttribution:  # fmt: skip
    """Integrated Gradients (Sundararajan et al. 2017) through the word-embedding layer, with Captum's
    ``LayerIntegratedGradients``. The baseline keeps the special tokens and puts ``baseline_token`` (default: the
    tokenizer's mask token, else its padding token) everywhere else, so the path moves the words alone. Starting at ``steps``, the steps double until
    the completeness error is within ``tolerance`` of the logit's change (or reach 1024); ``steps`` of the result
    says how many were used."""
    model = text_model(model, "token_ig")
    from captum.attr import LayerIntegratedGradients

    encoded = model.as_encoded(encoded)
    target = check_class(target, len(model.class_names), model.name, model.class_names)
    if not 2 <= (whole_number(steps) or 0) <= MAX_STEPS:
        raise BadSettingError(f"steps is a whole number from 2 to {MAX_STEPS}; got {shown(steps)}.")
    if not 0 < (real_number(tolerance) or 0) < math.inf:
        raise BadSettingError(f"tolerance is a share of the logit's change, a number above 0; got {shown(tolerance)}.")
    tokenizer = model.tokenizer
    if baseline_token is None:
        baseline_token = tokenizer.mask_token or tokenizer.pad_token
    elif not isinstance(baseline_token, str):
        raise BadSettingError(f"the baseline token is one token of {model.name}'s vocabulary as text, such as "
                              f"{tokenizer.mask_token or tokenizer.pad_token!r}; got "
                              f"{shown(baseline_token)}.")  # fmt: skip
    pad = tokenizer.convert_tokens_to_ids(baseline_token) if baseline_token is not None else 0
    if baseline_token is not None and pad == tokenizer.unk_token_id and baseline_token != tokenizer.unk_token:
        raise BadSettingError(f"the baseline token {shown(baseline_token)} is not in {model.name}'s vocabulary; use "
                              f"one it has, such as {tokenizer.mask_token or tokenizer.pad_token!r}.")  # fmt: skip
    special = torch.tensor(encoded.special, device=encoded.ids.device)
    baseline = torch.where(special[None], encoded.ids, torch.full_like(encoded.ids, pad))
    embeddings = model.structure.get_input_embeddings()
    with model.exclusive() as net, torch.enable_grad():

        def forward(ids: torch.Tensor) -> torch.Tensor:
            return net(input_ids=ids).logits

        with torch.no_grad():
            change = float((forward(encoded.ids) - forward(baseline))[0, target])
        lig = LayerIntegratedGradients(forward, embeddings)
        while True:
            attr, delta = lig.attribute(encoded.ids, baselines=baseline, target=target, n_steps=steps,
                                        internal_batch_size=min(steps, 256), return_convergence_delta=True)  # fmt: skip
            if abs(float(delta[0])) <= tolerance * max(abs(change), 1e-6) or steps >= MAX_STEPS:
                break
            steps = min(2 * steps, MAX_STEPS)
    scores = attr[0].sum(-1).detach().float().cpu().numpy()
    return TokenAttribution(encoded.tokens, scores, target, float(delta[0]), steps)
