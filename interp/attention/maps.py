"""Maps from captured attention: per layer and head, rollout, class-specific relevance, attention from a patch.

Every function takes plain arrays (or an :class:`AttentionCapture`) and returns arrays, so each is checked on
hand-made matrices with known answers. Maps over the image are ``(rows, cols)`` on the patch grid; the display
code scales them to the image.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from interp.attention.capture import CAPTURE, AttentionCapture
from interp.errors import BadSettingError, as_array, expected, real_number, shown, whole_number

HeadFusion = Literal["mean", "max", "min"]
HEAD_FUSIONS: tuple[HeadFusion, ...] = ("mean", "max", "min")


def query_rows(cap: AttentionCapture, attn: np.ndarray) -> np.ndarray:
    """``(..., T)`` the row a classifier reads: the class token's, or for average-pooled ViTs the patch queries' mean.

    Args:
        attn: ``(..., T, T)`` attention or joint attention (query × key).
    """
    if cap.has_cls:
        return attn[..., 0, :]
    return attn[..., cap.prefix_tokens :, :].mean(axis=-2)


def on_grid(cap: AttentionCapture, row: np.ndarray) -> np.ndarray:
    """``(..., rows, cols)`` the patch keys of ``row`` (``(..., T)``), prefix tokens dropped."""
    rows, cols = cap.grid
    return row[..., cap.prefix_tokens :].reshape(*row.shape[:-1], rows, cols)


def cls_maps(cap: AttentionCapture) -> np.ndarray:
    """``(L, H, rows, cols)`` where the class token (or the mean patch query) looks, per layer and head."""
    cap = expected(cap, AttentionCapture, "cls_maps", CAPTURE)
    return on_grid(cap, query_rows(cap, cap.attn))


def patch_maps(cap: AttentionCapture, row: int, col: int) -> np.ndarray:
    """``(L, H, rows, cols)`` where patch ``(row, col)`` looks, per layer and head."""
    cap = expected(cap, AttentionCapture, "patch_maps", CAPTURE)
    rows, cols = cap.grid
    r, c = whole_number(row), whole_number(col)
    if r is None or c is None or not (0 <= r < rows and 0 <= c < cols):
        raise BadSettingError(f"patch ({shown(row)}, {shown(col)}) is outside the {rows}×{cols} grid; rows "
                              f"0–{rows - 1}, columns 0–{cols - 1} (whole numbers).")  # fmt: skip
    query = cap.prefix_tokens + r * cols + c
    return on_grid(cap, cap.attn[:, :, query, :])


def stacked(attn: np.ndarray, grads: np.ndarray | None = None) -> np.ndarray:
    """``attn`` as an array of shape ``(L, H, T, T)``, as a capture holds it, with ``grads`` of the same shape when
    given; other shapes are a sentence (a gradient of another shape was broadcast against the attention)."""
    attn = as_array(attn)  # a transformers model's attentions, stacked: a tensor, perhaps on the GPU
    if attn.ndim != 4 or attn.shape[-1] != attn.shape[-2]:
        raise BadSettingError(f"attention is an array of (layers, heads, tokens, tokens), as capture(...).attn holds "
                              f"it; got shape {attn.shape}.")  # fmt: skip
    if grads is not None and np.shape(grads) != attn.shape:
        raise BadSettingError(f"the gradients' shape {np.shape(grads)} is not the attention's {attn.shape}; give both "
                              "from one capture: cap.attn, cap.grads.")  # fmt: skip
    return attn


def fuse_heads(attn: np.ndarray, how: HeadFusion = "mean") -> np.ndarray:
    """``(L, T, T)`` from ``(L, H, T, T)``: heads averaged, or their maximum or minimum."""
    if how not in HEAD_FUSIONS:
        raise BadSettingError(f"head fusion {shown(how)} is not one of {', '.join(HEAD_FUSIONS)}.")
    # torch reduces the middle axis 4x faster than numpy
    t = torch.from_numpy(stacked(attn).astype(np.float32, copy=False))
    return {"mean": torch.mean, "max": torch.amax, "min": torch.amin}[how](t, dim=1).numpy()


def discard_lowest(fused: np.ndarray, ratio: float) -> np.ndarray:
    """Zero the lowest ``ratio`` of each layer's attention weights, never the class token's own column.

    As in Abnar & Zuidema's rollout as commonly used (jacobgil/vit-explain): it removes the faint, noisy weights.
    Weights tied with the cut-off value go too.

    Args:
        fused: ``(L, T, T)``.
    """
    return _discard_in_place(np.array(fused), ratio)


def _discard_in_place(fused: np.ndarray, ratio: float) -> np.ndarray:
    """:func:`discard_lowest` on ``fused`` itself (an array the caller owns); returns it."""
    value = real_number(ratio)
    if value is None or not 0.0 <= value < 1.0:
        raise BadSettingError(f"discard ratio must be in [0, 1), got {shown(ratio)}.")
    ratio = value
    n = int(fused[0].size * ratio)
    if n == 0:
        return fused
    # the n-th smallest weight of each layer: a partition (linear time), five times faster than a sort or kthvalue
    cut = np.partition(fused.reshape(fused.shape[0], -1), n - 1, axis=1)[:, n - 1]
    first = fused[:, :, 0].copy()  # column 0 stays: what every token keeps of the class token
    fused *= fused > cut[:, None, None]
    fused[:, :, 0] = first
    return fused


def _residual(layers: np.ndarray, weight: float) -> np.ndarray:
    """``(L, T, T)``: each layer as ``weight * A + I``, rows renormalised to sum to 1."""
    out = np.multiply(layers, weight, dtype=np.float32)
    idx = np.arange(out.shape[-1])
    out[:, idx, idx] += 1.0
    out /= out.sum(axis=-1, keepdims=True)
    return out


def _product(mats: np.ndarray) -> np.ndarray:
    """``(T, T)`` ``M_L ⋯ M_1`` of ``(L, T, T)``: the last layer's on the left."""
    joint = np.eye(mats.shape[-1], dtype=np.float64)
    for m in mats.astype(np.float64):
        joint = m @ joint
    return joint.astype(np.float32)


def _residual_row_product(start: np.ndarray, layers: np.ndarray) -> np.ndarray:
    """``(T,)`` ``start · M_L ⋯ M_1`` with ``M = A + I`` rows renormalised (:func:`_residual` with weight 1) for
    ``layers`` ``A`` ``(L, T, T)``, without forming any ``M``: with ``d`` the row sums of ``A + I`` and ``u = v / d``,
    ``v · M = u · A + u``. Rollout then reads each layer's attention once."""
    denominators = layers.sum(axis=-1, dtype=np.float32) + np.float32(1.0)
    row = start.astype(np.float32)
    for layer, d in zip(layers[::-1], denominators[::-1], strict=True):
        u = row / d
        row = u @ layer + u
    return row


def _row_product(start: np.ndarray, mats: np.ndarray) -> np.ndarray:
    """``(T,)`` ``start · M_L ⋯ M_1``: one row of :func:`_product` for the cost of L vector products (float32:
    a row of a product of row-stochastic matrices stays a probability vector, no error builds up over L ≤ 48)."""
    row = start.astype(np.float32)
    for m in mats[::-1]:
        row = row @ m
    return row


def rollout(attn: np.ndarray, head_fusion: HeadFusion = "mean", discard_ratio: float = 0.0) -> np.ndarray:
    """Attention rollout: ``(T, T)`` joint attention from the input tokens to the last layer's output tokens.

    Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020. Each layer's head-fused attention
    gets the residual connection, ``0.5 * A + 0.5 * I``, rows renormalised to sum to 1, and the layers are
    multiplied from the first up. Rows of the result sum to 1.

    Args:
        attn: ``(L, H, T, T)``.
    """
    return _product(rollout_layers(attn, head_fusion, discard_ratio))


def rollout_layers(attn: np.ndarray, head_fusion: HeadFusion = "mean", discard_ratio: float = 0.0) -> np.ndarray:
    """``(L, T, T)`` the per-layer matrices that :func:`rollout` multiplies."""
    return _residual(discard_lowest(fuse_heads(attn, head_fusion), discard_ratio), 1.0)


def gradient_rollout(attn: np.ndarray, grads: np.ndarray, discard_ratio: float = 0.0) -> np.ndarray:
    """Class-specific rollout: ``(T, T)``, each layer's attention weighted by its gradient for the class.

    Per layer, heads are fused as the mean of ``attention × gradient`` with negative values set to 0 (the gradient
    rollout of jacobgil/vit-explain), then rolled out as in :func:`rollout`.

    Args:
        attn, grads: ``(L, H, T, T)``.
    """
    return _product(gradient_rollout_layers(attn, grads, discard_ratio))


def gradient_rollout_layers(attn: np.ndarray, grads: np.ndarray, discard_ratio: float = 0.0) -> np.ndarray:
    """``(L, T, T)`` the per-layer matrices that :func:`gradient_rollout` multiplies."""
    return _residual(_weighted_heads(attn, grads, discard_ratio), 1.0)


def _weighted_heads(attn: np.ndarray, grads: np.ndarray, discard_ratio: float) -> np.ndarray:
    """``(L, T, T)`` heads fused as the mean of ``attention × gradient``, negatives set to 0, lowest discarded."""
    grads = as_array(grads)
    weighted = np.clip((stacked(attn, grads) * grads).mean(axis=1), 0.0, None)
    return _discard_in_place(weighted, discard_ratio)


def chefer_relevance(attn: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Class-specific relevance of Chefer et al.: ``(T, T)`` relevance of each input token for each output token.

    Chefer, Gur & Wolf, "Transformer Interpretability Beyond Attention Visualization", CVPR 2021, propagate
    ``R = R + Ā·R`` from ``R = I`` through the layers with ``Ā = E_h[(∇A ⊙ R(A))⁺]``. We use the rule of their
    follow-up (Chefer et al., "Generic Attention-model Explainability…", ICCV 2021), which takes the attention ``A``
    itself for its LRP relevance ``R(A)``, needs no LRP rules for every layer, and works on any timm ViT.

    Args:
        attn, grads: ``(L, H, T, T)``.
    """
    return _product(chefer_layers(attn, grads))


def chefer_layers(attn: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """``(L, T, T)`` the per-layer matrices ``I + Ā`` whose product is :func:`chefer_relevance`."""
    grads = as_array(grads)
    out = np.clip(stacked(attn, grads) * grads, 0.0, None).mean(axis=1)
    idx = np.arange(out.shape[-1])
    out[:, idx, idx] += 1.0
    return out


def rollout_map(cap: AttentionCapture, head_fusion: HeadFusion = "mean", discard_ratio: float = 0.0) -> np.ndarray:
    """``(rows, cols)`` rollout read from the class token (or the patches' mean)."""
    cap = expected(cap, AttentionCapture, "rollout_map", CAPTURE)
    fused = _discard_in_place(fuse_heads(cap.attn, head_fusion), discard_ratio)  # fuse_heads returns a new array
    return on_grid(cap, _residual_row_product(start_row(cap), fused))


def class_maps(cap: AttentionCapture, discard_ratio: float = 0.0) -> dict[str, np.ndarray]:
    """``{"gradient rollout": (rows, cols), "Chefer relevance": (rows, cols)}`` for ``cap.target``."""
    cap = expected(cap, AttentionCapture, "class_maps", CAPTURE)
    if cap.grads is None:
        raise BadSettingError("class-specific maps need a capture with a target class: capture(model, x, target=k).")
    start = start_row(cap)
    return {
        "gradient rollout": on_grid(cap, _residual_row_product(start, _weighted_heads(cap.attn, cap.grads, discard_ratio))),
        "Chefer relevance": on_grid(cap, _row_product(start, chefer_layers(cap.attn, cap.grads))),
    }


def start_row(cap: AttentionCapture) -> np.ndarray:
    """``(T,)`` the query weights :func:`query_rows` takes: one-hot on the class token, or uniform on the patches."""
    row = np.zeros(cap.tokens, dtype=np.float32)
    if cap.has_cls:
        row[0] = 1.0
    else:
        row[cap.prefix_tokens :] = 1.0 / (cap.tokens - cap.prefix_tokens)
    return row
