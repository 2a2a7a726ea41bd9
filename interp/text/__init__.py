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

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
