"""Text: a BERT-like model's attention heads for one sentence, what each head does, and which words decided."""

import streamlit as st

from dashboard import permalink
from dashboard import text_ui as ui
from dashboard.page import page_setup, stop

page_setup("Text")
st.title("Text")
st.markdown(
    "How does a text transformer read a sentence? Every head of every layer over the tokens, where one token looks, "
    "what each head does, and which words decided the prediction. The bundled model was trained here on reviews "
    "whose label is planted in two words: a sentiment word, flipped by a *not* right before it."
)

model = ui.model_ui()
if model is None:
    stop()
text = ui.text_ui()
cap = ui.capture_ui(model, text)
if cap is None:
    stop()
ident = f"{model.key}|{hash(text)}"
heads, lines, roll, stats, ig = permalink.linked_tabs(
    ["Layers × heads", "From a token", "Rollout", "Head statistics", "Integrated Gradients"],
    key="text_view",
)
with heads:
    ui.heads_view(cap, ident)
with lines:
    ui.from_token_view(cap, ident)
with roll:
    ui.rollout_view(cap, ident)
with stats:
    ui.stats_view(cap)
with ig:
    explained = ui.ig_view(model, cap, text)
if explained is not None:
    ui.download_ui(model, text, cap, explained)
permalink.share_ui()
