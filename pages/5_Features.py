"""Features: what a unit of the network responds to. Filters, feature maps, activation maximisation and dataset
examples across the unit's spectrum."""

import streamlit as st

from dashboard import features_ui as ui
from dashboard import permalink, resources, spectrum_ui
from dashboard.feedback import attempt
from dashboard.page import page_setup, stop
from dashboard.selection import selection_ui

page_setup("Features")
st.title("Features")
st.markdown(
    "Attribution says which pixels mattered; this page asks what a unit of the network looks for. Pick a layer and "
    "a channel from the image's feature maps, then draw the image that drives it hardest (activation maximisation, "
    "Olah et al. 2017) and the dataset's images across its range, from the most negative to the most positive."
)

model, image = selection_ui()
if model is None:
    stop()

with st.expander("Filters of the first convolution"):
    ui.filters_view(model)

st.subheader("Feature maps")
layer = ui.layer_ui(model)
maps = ui.maps_view(model, image, layer) if image is not None else None
prediction = attempt(lambda: resources.prediction(model, image), "classifying the image") if image is not None else None

st.subheader("Activation maximisation")
objective = attempt(lambda: ui.objective_ui(model, layer, prediction.top.index if prediction else 0, maps),
                    "reading the objective")  # fmt: skip
if objective is None:
    stop()
plan = ui.settings_ui()
ui.optimise_ui(model, objective, plan)

st.subheader("Dataset examples across the spectrum")
spectrum_ui.spectrum_ui(model, objective, plan)
permalink.share_ui()
