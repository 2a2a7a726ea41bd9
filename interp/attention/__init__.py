"""Vision transformer attention: capture every layer and head, roll it out, relate it to a class, summarise heads.

    >>> from interp.attention import capture, rollout_map, head_stats
    >>> cap = capture(model, model.preprocess(image), target=3)   # one forward (+ one backward with a target)
    >>> rollout_map(cap, head_fusion="mean", discard_ratio=0.9)   # (rows, cols) on the patch grid
"""

from interp.attention.capture import AttentionCapture, NotAViTError, attention_modules, capture, unfused_attention
from interp.attention.maps import (
    HEAD_FUSIONS,
    chefer_relevance,
    class_maps,
    cls_maps,
    gradient_rollout,
    patch_maps,
    rollout,
    rollout_map,
)
from interp.attention.stats import HeadStats, head_stats

__all__ = [
    "HEAD_FUSIONS",
    "AttentionCapture",
    "HeadStats",
    "NotAViTError",
    "attention_modules",
    "capture",
    "chefer_relevance",
    "class_maps",
    "cls_maps",
    "gradient_rollout",
    "head_stats",
    "patch_maps",
    "rollout",
    "rollout_map",
    "unfused_attention",
]
