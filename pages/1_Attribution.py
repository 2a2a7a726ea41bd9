"""Attribution: what different methods say about which pixels drove the prediction, side by side."""

import streamlit as st

from dashboard import attribution_ui as ui
from dashboard import method_settings_ui, permalink, resources, trust_ui
from dashboard.feedback import attempt
from dashboard.page import page_setup, stop
from dashboard.selection import selection_ui

page_setup("Attribution")
st.title("Attribution")
st.markdown("Which pixels made the model say what it said? Each row is a class, each column a method.")

model, image = selection_ui()
if model is None or image is None:
    stop()
prediction = attempt(lambda: resources.prediction(model, image), "classifying the image")
if prediction is None:
    stop()

methods = ui.method_picker_ui(model)
targets = ui.target_picker_ui(model, prediction)
settings = method_settings_ui.settings_ui(model, methods)
second = ui.second_model_ui(model)
if not methods or not targets:
    st.info("Pick at least one method and one target class.")
    stop()

choice = ui.AttributionChoice(tuple(methods), tuple(targets), settings)
display = ui.display_ui()
cells = ui.compute(model, image, choice)
scores = trust_ui.scores_ui(model, image, choice, cells)
truth = ui.ground_truth(model)
if second is None:
    overlays = ui.grid_view(model, image, choice, cells, display, truth=truth, scores=scores)
else:
    second_cells = ui.compute(second, image, choice)
    left, right = st.columns(2, gap="large")
    with left:
        st.subheader(f"{model.name} · {model.weights.source}")
        overlays = ui.grid_view(model, image, choice, cells, display, truth=truth, scores=scores,
                                per_row=ui.HALF_GRID_COLUMNS)
    with right:
        st.subheader(f"{second.name} · {second.weights.source}")
        ui.grid_view(second, image, choice, second_cells, display, key="second", truth=ui.ground_truth(second),
                     per_row=ui.HALF_GRID_COLUMNS)
        if scores is not None:
            st.caption(f"Trust scores are computed for {model.name} ({model.weights.source}), the sidebar's model, "
                       "not for this one.")  # fmt: skip
trust_ui.scoreboard_view(model, choice, scores)
ui.inspect_ui(model, image, choice, cells, display, scores)
ui.downloads_ui(model, image, choice, cells, display, overlays)
permalink.share_ui()
