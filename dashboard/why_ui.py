"""The failure gallery's *Why?*: a mistake explained for the class the model chose and for the true one, side by
side, each map drawn as the evidence for its class."""

from __future__ import annotations

import streamlit as st

from dashboard import charts, permalink, resources, sidebar
from dashboard.feedback import attempt
from interp.attribution import METHODS, attribute
from interp.attribution.display import DisplaySettings, overlay
from interp.datasets import DatasetRoot
from interp.models import LoadedModel

CONTRAST_METHODS = ("grad_cam", "integrated_gradients", "saliency", "occlusion")


def why_view(model: LoadedModel, source: DatasetRoot, row) -> None:
    """The chosen mistake explained for the predicted and for the true class, side by side."""
    st.divider()
    heading = st.empty()
    labels = row.get("labels")
    several = labels is not None and len(labels) > 1  # an Open Images photo: which of its classes to explain
    c1, c2 = st.columns(2) if several else (st.container(), None)
    method = permalink.linked(c1.selectbox, "Method", CONTRAST_METHODS, format_func=lambda m: METHODS[m].title,
                              key="gallery_method")
    true = int(row.label)
    if several:
        true = c2.selectbox("True class", [int(i) for i in labels], key=f"gallery_true_of_{row.path}",
                            format_func=lambda i: charts.short_label(model.class_names[i]),
                            help="This image has several true classes; the model's answer is wrong for all of "
                            "them. Pick the one to explain beside the predicted class.")  # fmt: skip
    heading.markdown(f"**Why {charts.md(charts.short_label(row.pred_name))} and not "
                     f"{charts.md(charts.short_label(model.class_names[true]))}?** {charts.md(row.path)}")
    image = attempt(lambda: resources.dataset_image(source, row.path), f"reading {row.path}")
    if image is None:
        return
    base = resources.model_view(model.key, image.digest, model, image)
    # the evidence for each class: a signed map's positive part (|value| would mix in what speaks against the class)
    display = DisplaySettings(alpha=0.5, sign="positive")
    cols = st.columns(3)
    cols[0].image(base, caption=f"{row.path} as the model sees it", width="stretch")
    for col, (target, label) in zip(cols[1:], ((int(row.pred), "predicted"), (true, "true"))):
        result = attempt(lambda t=target: attribute(model, image, method, t, cache=resources.result_cache()),
                         f"explaining class {target}")  # fmt: skip
        if result is not None:
            caption = f"{label}: {charts.short_label(model.class_names[target])} · {result.seconds:.2f} s"
            completeness = result.completeness()  # Integrated Gradients: does the map add up to its logit change?
            if completeness:
                caption += f" · {completeness}"
            col.image(overlay(base, result.raw, display), width="stretch", caption=caption)
    st.caption("Each map shows the evidence for its class: where it is high, the pixels raise that class's score"
               + (" (the positive part of a signed map; what lowers the score is not drawn)."
                  if METHODS[method].signed else "."))  # fmt: skip
    st.button("Open this image on the other pages", key="gallery_open", on_click=sidebar.send_to_pages,
              args=(source, row.path))  # fmt: skip
