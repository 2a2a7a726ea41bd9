"""The Failures page's "Which method to trust" tab: deletion and insertion of each chosen method's map on N images
of the dataset, each beside a random map's, as mean ± 95% interval per method (``interp.evaluation``)."""

from __future__ import annotations

import io
import time

import plotly.graph_objects as go
import streamlit as st

from dashboard import charts, resources, state
from dashboard.feedback import attempt
from interp.attribution import METHODS
from interp.datasets import Dataset, DatasetRoot, ScanBusy
from interp.models import LoadedModel

DEFAULT = ["grad_cam", "saliency", "integrated_gradients"]


def trust_view(model: LoadedModel, source: DatasetRoot, ds: Dataset) -> None:
    from interp.evaluation import evaluate_dataset, load_scores, summarise

    st.markdown("Which explanation method can you trust for this model? Each method explains the model's prediction "
                "on the first N images; its map's deletion and insertion scores are compared with a random map's. "
                "Higher gains are better.")  # fmt: skip
    usable = [m for m in METHODS if METHODS[m]().applies_to(model) is None]
    state.restore("trust_methods", [m for m in DEFAULT if m in usable])
    c1, c2, c3 = st.columns([3, 1, 1])
    methods = c1.multiselect("Methods", usable, key="trust_methods", format_func=lambda m: METHODS[m].title,
                             on_change=state.keep, args=("trust_methods",))  # fmt: skip
    n = c2.number_input("Images", 2, min(len(ds), 2000), min(50, len(ds)), key=f"trust_n_{source.name}")
    steps = c3.select_slider("Steps", [5, 10, 20, 40], 20, key="trust_steps")
    if not methods:
        st.info("Pick at least one method.")
        return
    out = (resources.settings().cache_dir / "evaluations" / source.slug /
           f"{model.key}-{'-'.join(sorted(methods))}-{steps}".replace("/", "_"))  # fmt: skip
    done = load_scores(out) if out.exists() else None
    if st.button("Score the methods", type="primary", key="trust_start"):
        bar = st.progress(0.0, text="Starting…")
        start = time.monotonic()

        def progress(p) -> None:
            eta = f", about {p.eta_s:.0f} s left" if p.eta_s is not None else ""
            bar.progress(p.done / p.total, text=f"{p.done} / {p.total} images{eta}")

        def run():
            try:
                return evaluate_dataset(model, ds, methods, out, n=int(n), steps=int(steps), progress=progress)
            except ScanBusy:
                st.info("Another visitor is scoring these methods on this dataset right now; try again in a moment.")
                return None

        if attempt(run, "scoring the methods") is not None:
            bar.progress(1.0, text=f"Done in {time.monotonic() - start:.0f} s.")
        done = load_scores(out)
    if done is None or done.empty:
        st.caption("Nothing scored yet for these methods and steps. Scores are kept: a second click continues where "
                   "the first stopped, and anyone else choosing the same shows them at once.")  # fmt: skip
        return
    summary = summarise(done)
    summary["method"] = [METHODS[m].title for m in summary["method"]]
    best = summary.iloc[0]
    st.markdown(f"On {charts.md(ds.name)}, **{charts.md(best['method'])}** gains the most over a random map by "
                f"insertion ({best['insertion_gain']:.3f} ± {best['insertion_gain_ci95']:.3f} over "
                f"{int(best['images'])} images).")  # fmt: skip
    shown = summary[["method", "images"]].copy()
    for col, name in (("deletion_auc", "deletion"), ("insertion_auc", "insertion"), ("insertion_gain", "insertion gain"),
                      ("deletion_gain", "deletion gain")):  # fmt: skip
        shown[name] = [f"{m:.3f} ± {c:.3f}" for m, c in zip(summary[col], summary[f"{col}_ci95"])]
    left, right = st.columns([3, 2])
    left.dataframe(shown, hide_index=True)
    right.plotly_chart(_figure(summary), key="trust_chart", config={"displayModeBar": False})
    buf = io.BytesIO()
    done.to_parquet(buf, index=False)
    d1, d2 = st.columns(2)
    d1.download_button("Scores (CSV)", done.to_csv(index=False), "scores.csv", "text/csv", key="trust_csv")
    d2.download_button("Scores (Parquet)", buf.getvalue(), "scores.parquet", key="trust_parquet")


def _figure(summary) -> go.Figure:
    fig = go.Figure()
    for col, name in (("insertion_gain", "insertion gain"), ("deletion_gain", "deletion gain")):
        fig.add_bar(x=[charts.plot_text(m) for m in summary["method"]], y=summary[col], name=name,
                    error_y={"type": "data", "array": summary[f"{col}_ci95"]})  # fmt: skip
    fig.update_layout(height=300, barmode="group", margin={"l": 0, "r": 0, "t": 10, "b": 0},
                      yaxis_title="better than a random map (AUC)", legend={"orientation": "h", "y": -0.25})  # fmt: skip
    return fig
