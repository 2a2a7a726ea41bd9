"""What ``interp.text`` offers, read by type checkers and, at run time, by ``lazy_loader`` (``__init__.py``)."""

from .capture import TextAttention, capture, projections
from .heads import PATTERNS, HeadStats, TokenAttribution, head_stats, text_rollout, token_ig
from .model import (
    BUNDLED,
    DEFAULT_TEXT_MODEL,
    BadTextError,
    Encoded,
    TextModel,
    TextUnavailableError,
    downloads,
    from_parts,
    is_hub_name,
    load_text_model,
)

__all__ = [
    "BUNDLED",
    "DEFAULT_TEXT_MODEL",
    "PATTERNS",
    "BadTextError",
    "Encoded",
    "HeadStats",
    "TextAttention",
    "TextModel",
    "TextUnavailableError",
    "TokenAttribution",
    "capture",
    "downloads",
    "from_parts",
    "head_stats",
    "is_hub_name",
    "load_text_model",
    "projections",
    "text_rollout",
    "token_ig",
]
