"""Read-only views of engine results, shared by pages."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping

import streamlit as st

from dashboard import charts, resources
from interp.images import LoadedImage
from interp.models import LoadedModel
from interp.predict import Prediction


def preprocessing_caption(model: LoadedModel) -> str:
    cfg = model.data_config
    _, h, w = cfg["input_size"]
    mean = ", ".join(f"{m:.3g}" for m in cfg["mean"])
    std = ", ".join(f"{s:.3g}" for s in cfg["std"])
    return (
        f"As {model.name} sees it: {cfg['interpolation']} resize, {cfg.get('crop_mode', 'center')} crop "
        f"{cfg['crop_pct']:.1%} to {w}×{h}, normalised with mean ({mean}) and std ({std})."
    )


def prediction_view(model: LoadedModel, image: LoadedImage, prediction: Prediction) -> None:
    """The photo, the model's input after preprocessing, and the top-k bar chart."""
    original, seen, chart = st.columns([1, 1, 2], gap="medium")
    with original:
        st.image(image.image, caption=f"{image.name} · {image.size[0]}×{image.size[1]}", width="stretch")
    with seen:
        seen_by_model = resources.model_view(model.key, image.digest, model, image)
        st.image(seen_by_model, caption=preprocessing_caption(model), width="stretch")
    with chart:
        top = prediction.top
        st.markdown(f"**{charts.md(charts.short_label(top.label))}** · {top.prob:.1%}")
        st.plotly_chart(charts.topk_bar(prediction), key="topk_chart", config={"displayModeBar": False})
        st.caption(f"Weights: {model.weights.source} · classified in {prediction.seconds * 1000:.0f} ms on {model.device}")
    if image.notes:
        st.caption("While loading the image we " + "; ".join(image.notes) + ".")


def zipped(files: Mapping[str, bytes]) -> bytes:
    """``files`` (name → bytes) as one zip, for a download button."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()
