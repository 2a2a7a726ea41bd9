"""Concepts: does the model's class depend on a human concept? CAVs and TCAV with significance."""

import streamlit as st

from dashboard import concept_library_ui as concept_library
from dashboard import concepts_ui as ui
from dashboard import permalink, resources
from dashboard.feedback import attempt
from dashboard.page import page_setup, stop
from dashboard.selection import selection_ui

page_setup("Concepts")
st.title("Concepts")
st.markdown(
    "Does a class depend on a concept a person can name (stripes, a colour, a corner marker)? Give examples of the "
    "concept; TCAV (Kim et al. 2018) measures how often the class score rises along it, against random concepts."
)

model, image = selection_ui()
if model is None:
    stop()
lib = attempt(concept_library.library, "opening the concept library")
if lib is None:
    stop()
concept_library.library_ui(lib)
concept_library.new_set_ui(lib)

predicted = resources.prediction(model, image).top.index if image is not None else 0
choice = ui.setup_ui(model, lib, predicted)
done = ui.run_ui(model, choice, image)
if done is not None:
    report, class_images = done
    ui.results_view(report, class_images)
permalink.share_ui()
