"""Per-head statistics of captured attention: entropy, mean attention distance, and the share on the prefix tokens."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from interp.attention.capture import CAPTURE, AttentionCapture
from interp.errors import expected


@dataclass(frozen=True)
class HeadStats:
    """Statistics of every head.

    Attributes:
        entropy: ``(L, H)`` mean over query tokens of the entropy of their attention row, in nats. Uniform attention
            over ``T`` tokens has ``log T``; attention on one token has 0.
        max_entropy: ``log T``, the largest possible value, for scale.
        distance_px: ``(L, H)`` mean attention distance in pixels of the model's input: for each patch query, the
            distance to the patch keys weighted by its attention to them (renormalised over patches), averaged over
            the queries. The measure of Figure 7 in Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021.
        uniform_distance_px: what ``distance_px`` reads for a head that spreads its attention evenly over the patches
            (the mean distance between two patches of the grid), for scale: a head well below it looks locally.
        prefix_share: ``(L, H)`` mean over the patch queries of the attention on the prefix tokens (the class token,
            registers). Trained ViTs have heads that send most of it there, a "sink" that reads as no look at the
            image (Darcet et al., "Vision Transformers Need Registers", ICLR 2024); ``distance_px`` leaves it out, so
            a head with a large share has its distance measured on the little that is left. Zeros without a prefix.
    """

    entropy: np.ndarray
    max_entropy: float
    distance_px: np.ndarray
    uniform_distance_px: float
    prefix_share: np.ndarray

    def rows(self) -> list[dict[str, float | int]]:
        """One record per head: layer, head, entropy, distance, prefix share (for tables, JSON and charts)."""
        layers, heads = self.entropy.shape
        return [
            {
                "layer": layer,
                "head": head,
                "entropy": round(float(self.entropy[layer, head]), 5),
                "distance_px": round(float(self.distance_px[layer, head]), 3),
                "prefix_share": round(float(self.prefix_share[layer, head]), 4),
            }
            for layer in range(layers)
            for head in range(heads)
        ]


def entropy(attn: np.ndarray) -> np.ndarray:
    """``(L, H)`` mean row entropy in nats of ``(L, H, T, T)`` attention."""
    p = _tensor(attn)
    plogp = p.clamp_min(1e-30)  # log(0) would give 0 * -inf; the clamp makes it 0 * -69
    plogp.log_()
    plogp.mul_(p)  # in place: twice as fast as torch.special.entr, which allocates and is not vectorised
    return (-plogp.sum(-1).mean(-1)).double().numpy()


def _tensor(a: np.ndarray) -> torch.Tensor:
    """A float32 tensor over ``a``'s memory where numpy allows it (a copy for other types or read-only arrays)."""
    if a.dtype != np.float32 or not a.flags.writeable or any(st < 0 for st in a.strides):
        a = np.array(a, dtype=np.float32)
    return torch.from_numpy(a)


@functools.lru_cache(maxsize=16)
def patch_distances(grid: tuple[int, int], patch_px: tuple[float, float]) -> np.ndarray:
    """``(P, P)`` distances in pixels between the centres of the ``P = rows * cols`` patches (read-only)."""
    rows, cols = grid
    r, c = np.divmod(np.arange(rows * cols), cols)
    y, x = r * patch_px[0], c * patch_px[1]
    out = np.hypot(y[:, None] - y[None, :], x[:, None] - x[None, :])
    out.setflags(write=False)
    return out


def mean_distance(attn: np.ndarray, prefix_tokens: int, grid: tuple[int, int], patch_px: tuple[float, float]) -> np.ndarray:
    """``(L, H)`` mean attention distance in pixels (see :class:`HeadStats`) of attention whose rows sum to 1."""
    full = _tensor(attn)
    patches = full[:, :, prefix_tokens:, prefix_tokens:]  # a view: no copy of the attention
    mass = 1.0 - full[:, :, prefix_tokens:, :prefix_tokens].sum(-1)  # rows sum to 1: what is not on the prefix
    distances = torch.from_numpy(patch_distances(tuple(grid), tuple(patch_px)).astype(np.float32))
    weighted = torch.einsum("lhij,ij->lhi", patches, distances)  # no (L, H, P, P) temporary
    per_query = torch.where(mass > 0, weighted / mass.clamp(min=1e-30), torch.zeros_like(weighted))
    return per_query.mean(-1).double().numpy()


def head_stats(cap: AttentionCapture) -> HeadStats:
    """Entropy, mean attention distance and prefix share of every head of one capture."""
    cap = expected(cap, AttentionCapture, "head_stats", CAPTURE)
    return HeadStats(
        entropy=entropy(cap.attn),
        max_entropy=float(np.log(cap.tokens)),
        distance_px=mean_distance(cap.attn, cap.prefix_tokens, cap.grid, cap.patch_px),
        uniform_distance_px=float(patch_distances(tuple(cap.grid), tuple(cap.patch_px)).mean()),
        prefix_share=prefix_share(cap.attn, cap.prefix_tokens),
    )


def prefix_share(attn: np.ndarray, prefix_tokens: int) -> np.ndarray:
    """``(L, H)`` mean over the patch queries of the attention on the first ``prefix_tokens`` tokens."""
    full = _tensor(attn)
    return full[:, :, prefix_tokens:, :prefix_tokens].sum(-1).mean(-1).double().numpy()
