"""Attention: where a vision transformer's heads look, layer by layer, and what reaches its class token."""

import streamlit as st

from dashboard import attention_stats_ui, permalink, resources
from dashboard import attention_ui as ui
from dashboard.feedback import attempt
from dashboard.page import page_setup, stop
from dashboard.selection import selection_ui

page_setup("Attention")
st.title("Attention")
st.markdown("Where does each head of a vision transformer look, and what reaches the class token?")

model, image = selection_ui()
if not ui.vit_check_ui(model) or image is None:
    stop()
prediction = attempt(lambda: resources.prediction(model, image), "classifying the image")
if prediction is None:
    stop()

target = ui.target_ui(model, prediction)
capture = ui.capture_ui(model, image, target)
if capture is None:
    stop()
ui.summary_caption(model, capture)
base = resources.model_view(model.key, image.digest, model, image)
ident = f"{model.key}|{image.digest}|{target}"

heads, rollout, patch, matrix, stats = permalink.linked_tabs(
    ["Layers × heads", "Rollout and class relevance", "From a patch", "Token matrix", "Head statistics"],
    key="attn_view",
)
with heads:
    ui.heads_view(ident, capture, base)
with rollout:
    maps = ui.rollout_view(model, capture, base)
with patch:
    ui.patch_view(ident, capture, base)
with matrix:
    ui.matrix_view(capture)
with stats:
    attention_stats_ui.stats_view(ident, capture, base)
ui.downloads_ui(model, image, capture, base, maps)
permalink.share_ui()
