"""Text transformers: a BERT-like model's attention heads, what each does, rollout and Integrated Gradients over
the tokens; a small text world with known answers and a bundled model trained on it.

    >>> from interp.text import load_text_model, capture, head_stats, token_ig
    >>> model = load_text_model("text_bert")                       # bundled; any Hugging Face BERT-like name
    >>> enc = model.encode("the plot was not good")
    >>> cap = capture(model, enc)                                 # cap.attn: (layers, heads, tokens, tokens)
    >>> head_stats(cap).patterns                                  # "previous token", "to [CLS]/[SEP]", …
    >>> token_ig(model, enc, target=cap.predicted).scores         # one score per token

Needs ``transformers`` (``pip install transformers``); nothing here imports Streamlit.
"""

from interp.text.capture import TextAttention, capture, projections
from interp.text.heads import PATTERNS, HeadStats, TokenAttribution, head_stats, text_rollout, token_ig
from interp.text.model import (
    BUNDLED,
    DEFAULT_TEXT_MODEL,
    BadTextError,
    Encoded,
    TextModel,
    TextUnavailableError,
    downloads,
    from_parts,
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
    "load_text_model",
    "projections",
    "text_rollout",
    "token_ig",
]
