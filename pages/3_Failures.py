"""Failures: scan a dataset, then browse the model's most confident mistakes and see why it made them."""

import streamlit as st

from dashboard import gallery_ui as ui
from dashboard import permalink, trust_ui
from dashboard.page import page_setup, stop
from dashboard.selection import selection_ui

page_setup("Failures")
st.title("Failure gallery")
st.markdown("Where is the model confidently wrong? Scan a dataset, then look at its mistakes and what drove them.")

model, _ = selection_ui()
if model is None:
    stop()
source, dataset = ui.dataset_picker_ui()
if dataset is None:
    stop()

gallery, scan, browse, trust = st.tabs(["Gallery", "Scan", "Browse", "Which method to trust"])
with scan:
    ui.scan_view(model, source, dataset)
with gallery:
    ui.gallery_view(model, source, dataset)
with browse:
    ui.browse_view(source, dataset)
with trust:
    trust_ui.trust_view(model, source, dataset)
permalink.share_ui()
