"""Per-head statistics of captured attention: entropy and mean attention distance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from interp.attention.capture import AttentionCapture


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
    """

    entropy: np.ndarray
    max_entropy: float
    distance_px: np.ndarray

    def rows(self) -> list[dict[str, float | int]]:
        """One record per head: layer, head, entropy, distance (for tables, JSON and charts)."""
        layers, heads = self.entropy.shape
        return [
            {
                "layer": layer,
                "head": head,
                "entropy": round(float(self.entropy[layer, head]), 5),
                "distance_px": round(float(self.distance_px[layer, head]), 3),
            }
            for layer in range(layers)
            for head in range(heads)
        ]


def entropy(attn: np.ndarray) -> np.ndarray:
    """``(L, H)`` mean row entropy in nats of ``(L, H, T, T)`` attention."""
    p = _tensor(attn)
    return torch.special.entr(p).sum(-1).mean(-1).double().numpy()


def _tensor(a: np.ndarray) -> torch.Tensor:
    """A float32 tensor over ``a``'s memory where numpy allows it (a copy for read-only or strided arrays)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    return torch.from_numpy(a if a.flags.writeable else a.copy())


def patch_distances(grid: tuple[int, int], patch_px: tuple[float, float]) -> np.ndarray:
    """``(P, P)`` distances in pixels between the centres of the ``P = rows * cols`` patches."""
    rows, cols = grid
    r, c = np.divmod(np.arange(rows * cols), cols)
    y, x = r * patch_px[0], c * patch_px[1]
    return np.hypot(y[:, None] - y[None, :], x[:, None] - x[None, :])


def mean_distance(attn: np.ndarray, prefix_tokens: int, grid: tuple[int, int], patch_px: tuple[float, float]) -> np.ndarray:
    """``(L, H)`` mean attention distance in pixels (see :class:`HeadStats`)."""
    patches = _tensor(attn[:, :, prefix_tokens:, prefix_tokens:])
    mass = patches.sum(-1)
    weighted = (patches * torch.from_numpy(patch_distances(grid, patch_px).astype(np.float32))).sum(-1)
    per_query = torch.where(mass > 0, weighted / mass.clamp(min=1e-30), torch.zeros_like(weighted))
    return per_query.mean(-1).double().numpy()


def head_stats(cap: AttentionCapture) -> HeadStats:
    """Entropy and mean attention distance of every head of one capture."""
    return HeadStats(
        entropy=entropy(cap.attn),
        max_entropy=float(np.log(cap.tokens)),
        distance_px=mean_distance(cap.attn, cap.prefix_tokens, cap.grid, cap.patch_px),
    )
