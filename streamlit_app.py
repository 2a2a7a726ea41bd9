"""Home: what the app is for, and a first look at what the chosen model sees and predicts."""

import streamlit as st

from dashboard import permalink, resources, views
from dashboard.feedback import attempt
from dashboard.page import PAGES, page_setup
from dashboard.selection import selection_ui

page_setup("Home")
st.title("Look inside an image classifier")
st.markdown(
    "Pick a model and an image in the sidebar. Everything runs here, on this server; "
    "the default model and photos work with no internet at all."
)
with st.expander("What each page does", expanded=False):
    st.markdown("\n".join(f"- **{title}**: {what}" for _, title, what in PAGES))
if note := resources.writable_settings()[1]:
    st.caption(note)

model, image = selection_ui()
if model is not None and image is not None:
    prediction = attempt(lambda: resources.prediction(model, image), "classifying the image")
    if prediction is not None:
        views.prediction_view(model, image, prediction)
permalink.share_ui()
