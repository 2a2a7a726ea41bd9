"""Widgets and views of the Text page: a BERT-like model's heads for one sentence. One capture per (model, text)
feeds every view, so picking a head or a token redraws from memory."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from dashboard import charts, permalink, state
from dashboard.feedback import attempt, guarded, quoted, sentence
from dashboard.selection import loading
from dashboard.views import zipped
from interp.errors import InterpError
from interp.text import (
    BUNDLED,
    DEFAULT_TEXT_MODEL,
    TextAttention,
    TextModel,
    TokenAttribution,
    capture,
    downloads,
    head_stats,
    is_hub_name,
    load_text_model,
    text_rollout,
    token_ig,
)
from interp.text.report import report_files
from interp.text.world import reviews

OTHER = "Another Hugging Face model…"
EXAMPLES = ("the plot was not good", "i thought the film was dull", "not the best but the music was not bad",
            *(r.text for r in reviews(6, seed=2026)))  # fmt: skip


@st.cache_resource(max_entries=2, show_spinner="Loading the text model…")
def text_model(name: str) -> TextModel:
    return load_text_model(name)


@st.cache_data(max_entries=64, show_spinner=False)
def _capture(model_key: str, text: str, _model: TextModel) -> TextAttention:
    return capture(_model, _model.encode(text))


@st.cache_data(max_entries=64, show_spinner="Integrated Gradients…")
def _ig(model_key: str, text: str, target: int, steps: int, _model: TextModel) -> TokenAttribution:
    return token_ig(_model, _model.encode(text), target, steps)


def model_ui() -> TextModel | None:
    options = [*BUNDLED, OTHER]
    from_url = permalink.take_one("tmodel")
    if from_url and from_url not in BUNDLED and not is_hub_name(from_url):  # as the image pages do with a non-timm name
        permalink.note(f"The link's text model {quoted(from_url)} is not a Hugging Face model name (such as "
                       f"bert-base-uncased or owner/name); showing {DEFAULT_TEXT_MODEL}.")  # fmt: skip
        from_url = DEFAULT_TEXT_MODEL
    if from_url:
        state.put("text_model", from_url if from_url in BUNDLED else OTHER)
        if from_url not in BUNDLED:
            state.put("text_model_other", from_url)
    state.restore("text_model", DEFAULT_TEXT_MODEL)
    state.restore("text_model_other", "")
    c1, c2 = st.columns([1, 2])
    choice = c1.selectbox("Text model", options, key="text_model", on_change=state.keep, args=("text_model",),
                          help="text_bert is trained here on the text world and works offline; any BERT-like "
                          "classifier from Hugging Face works online or from a filled hub cache.")  # fmt: skip
    name = choice
    if choice == OTHER:
        name = c2.text_input("Hugging Face name", key="text_model_other", on_change=state.keep,
                             args=("text_model_other",), placeholder="e.g. textattack/bert-base-uncased-SST-2",
                             max_chars=state.NAME_CHARS).strip()  # fmt: skip
        if not name:
            st.info("Type a model's name, e.g. textattack/bert-base-uncased-SST-2.")
            return None
    notice = None
    if downloads(name):
        notice = (f"Downloading {name} from the Hugging Face hub. This happens once on this server (a minute or more "
                  "for a large model); the next visitor's load reads it from its disk.")  # fmt: skip
    model = loading(name, lambda: text_model(name), notice)
    if model is not None:
        permalink.publish(tmodel=None if name == DEFAULT_TEXT_MODEL else name)
        c2.caption(f"{model.source}; {model.config.num_hidden_layers} layers × {model.config.num_attention_heads} heads; "
                   f"classes: {', '.join(model.class_names)}; at most {model.max_length} tokens.")  # fmt: skip
    return model


def text_ui() -> str:
    from_url = permalink.take_one("text")
    if from_url:
        state.put("text_input", from_url)
    state.restore("text_input", EXAMPLES[0])
    st.selectbox("Examples", EXAMPLES, index=None, key="text_example", on_change=_use_example,
                 placeholder="Pick an example to put in the sentence box, or type your own there",
                 help="Sentences of the text world (one sentiment word, perhaps negated by the word before it).")  # fmt: skip
    text = st.text_input("Sentence", key="text_input", on_change=state.keep, args=("text_input",), max_chars=2000)
    permalink.publish(text=text if text != EXAMPLES[0] else None)
    return text


@guarded("using the example")
def _use_example() -> None:
    if st.session_state.get("text_example"):
        state.put("text_input", st.session_state["text_example"])
        st.session_state["text_example"] = None  # a menu: the sentence box shows the choice, which it may then edit


def capture_ui(model: TextModel, text: str) -> TextAttention | None:
    try:
        cap = _capture(model.key, text, model)
    except InterpError as exc:
        st.warning(sentence(str(exc)))
        return None
    except Exception:  # noqa: BLE001 - logged by attempt's twin below
        return attempt(lambda: _capture(model.key, text, model), "reading the attention")
    probs = ", ".join(f"{c} {p:.1%}" for c, p in zip(cap.class_names, cap.probs))
    st.markdown(f"**Prediction: {html.escape(cap.class_names[cap.predicted])}** ({probs}) · {len(cap.tokens)} tokens, "
                f"{cap.layers} layers × {cap.heads} heads")  # fmt: skip
    return cap


def _label(tokens: tuple[str, ...]) -> list[str]:
    return [f"{i}:{t}" for i, t in enumerate(tokens)]


def heads_view(cap: TextAttention, key: str) -> None:
    stats = head_stats(cap)
    height = max(260, 170 * cap.layers) + 40
    fig = make_subplots(rows=cap.layers, cols=cap.heads, horizontal_spacing=0.01,
                        vertical_spacing=charts.row_gap(height, 30, cap.layers),
                        subplot_titles=[f"L{l} H{h} · {stats.label(l, h)}" for l in range(cap.layers)
                                        for h in range(cap.heads)])  # fmt: skip
    labels = _label(cap.tokens)
    for l in range(cap.layers):
        for h in range(cap.heads):
            fig.add_trace(go.Heatmap(z=cap.attn[l, h], x=labels, y=labels, coloraxis="coloraxis",
                                     hovertemplate=f"layer {l} head {h}<br>%{{y}} → %{{x}}<br>%{{z:.3f}}<extra></extra>"),
                          row=l + 1, col=h + 1)  # fmt: skip
    fig.update_xaxes(showticklabels=False, ticks="")
    fig.update_yaxes(showticklabels=False, ticks="", autorange="reversed")
    small = dict(size=9 if len(labels) <= 24 else 7)
    fig.update_yaxes(showticklabels=True, tickfont=small, col=1)  # tokens along the left edge and the bottom row only
    fig.update_xaxes(showticklabels=True, tickfont=small, tickangle=-90, row=cap.layers)
    fig.update_layout(height=height, coloraxis=dict(colorscale="Viridis", cmin=0, cmax=1),
                      margin=dict(l=0, r=0, t=30, b=0))  # fmt: skip
    fig.update_annotations(font_size=10)
    st.caption("Every head of every layer: rows are the tokens that look (queries), columns the tokens they look at.")
    st.plotly_chart(fig, key=f"text_heads_{key}", config={"displayModeBar": False})
    c1, c2 = st.columns(2)
    layer = permalink.linked(c1.selectbox, "Layer", range(cap.layers), key="text_layer")
    # the head's pattern is in the chart's title, not the box: a label that changes with the sentence or the layer
    # stays stale in Streamlit's box and no longer matches its own value, which then falls back to head 0
    head = permalink.linked(c2.selectbox, "Head", range(cap.heads), key="text_head")
    one = go.Figure(go.Heatmap(z=cap.attn[layer, head], x=labels, y=labels, colorscale="Viridis", zmin=0, zmax=1,
                               texttemplate="%{z:.2f}" if len(labels) <= 16 else None,
                               hovertemplate="%{y} → %{x}<br>%{z:.3f}<extra></extra>"))  # fmt: skip
    one.update_yaxes(autorange="reversed")
    one.update_layout(height=120 + 28 * len(labels), margin=dict(l=0, r=0, t=30, b=0),
                      title=f"Layer {layer}, head {head}: {stats.label(layer, head)}")  # fmt: skip
    st.plotly_chart(one, key=f"text_one_{key}", config={"displayModeBar": False})


def from_token_view(cap: TextAttention, key: str) -> None:
    c1, c2, c3 = st.columns(3)
    # the options are the labels themselves ("5: bad"): another sentence's tokens are other options, not old labels
    # on the same positions, which Streamlit's box kept showing
    labels = [f"{i}: {t}" for i, t in enumerate(cap.tokens)]
    token = labels.index(permalink.linked(c1.selectbox, "From the token", labels, key="text_from",
                                          index=min(1, len(cap.tokens) - 1)))
    layer = permalink.linked(c2.selectbox, "Layer ", range(cap.layers), key="text_from_layer")
    head = permalink.linked(c3.selectbox, "Head ", ["mean", *range(cap.heads)], key="text_from_head")
    row = cap.attn[layer].mean(0)[token] if head == "mean" else cap.attn[layer, head, token]
    st.plotly_chart(_lines_figure(cap.tokens, token, row), key=f"text_lines_{key}", config={"displayModeBar": False})
    st.caption("Lines from the chosen token (left) to every token (right), thicker and darker for more attention.")


def _lines_figure(tokens: tuple[str, ...], source: int, weights: np.ndarray) -> go.Figure:
    n = len(tokens)
    fig = go.Figure()
    top = float(weights.max()) or 1.0
    for j, w in enumerate(weights):
        if w < 0.01:
            continue
        fig.add_trace(go.Scatter(x=[0, 1], y=[source, j], mode="lines", hoverinfo="text",
                                 text=f"{tokens[source]} → {tokens[j]}: {w:.3f}",
                                 line=dict(width=1 + 9 * w / top, color=f"rgba(31, 119, 180, {0.15 + 0.85 * w / top:.2f})")))  # fmt: skip
    for x, anchor in ((0, "left"), (1, "right")):  # each word outside its end of the lines, not under them
        fig.add_trace(go.Scatter(x=[x] * n, y=list(range(n)), mode="text", text=list(tokens), hoverinfo="skip",
                                 textposition=f"middle {anchor}", textfont=dict(size=13)))  # fmt: skip
    fig.update_xaxes(visible=False, range=[-0.6, 1.6])
    fig.update_yaxes(visible=False, autorange="reversed")
    fig.update_layout(height=60 + 26 * n, showlegend=False, margin=dict(l=0, r=0, t=10, b=0))
    return fig


def rollout_view(cap: TextAttention, key: str) -> None:
    roll = text_rollout(cap)
    labels = _label(cap.tokens)
    fig = go.Figure(go.Heatmap(z=roll, x=labels, y=labels, colorscale="Viridis",
                               hovertemplate="%{y} ← %{x}<br>%{z:.3f}<extra></extra>"))  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=120 + 28 * len(labels), margin=dict(l=0, r=0, t=30, b=0),
                      title="Attention rollout over the layers (Abnar & Zuidema 2020): what each output token draws "
                      "from each input token")  # fmt: skip
    st.plotly_chart(fig, key=f"text_rollout_{key}", config={"displayModeBar": False})
    st.markdown("From the first token: " + tokens_html(cap.tokens, roll[0], signed=False), unsafe_allow_html=True)


def stats_view(cap: TextAttention) -> None:
    words = sorted(set(cap.tokens))
    over = permalink.linked(st.selectbox, "Statistics over", ["every token", *words], key="text_stats_over",
                            help="Average over every query token, or only over the tokens equal to one word: what a "
                            "head does at that word.")  # fmt: skip
    queries = None if over == "every token" else [i for i, t in enumerate(cap.tokens) if t == over]
    stats = head_stats(cap, queries)
    table = pd.DataFrame(stats.rows())
    numbers = ("entropy", "distance", "special", "previous", "next", "self", "one token")
    st.dataframe(table.style.format({c: "{:.3f}" for c in numbers}), hide_index=True)
    st.caption(f"Entropy in nats (uniform over {len(cap.tokens)} tokens: {stats.max_entropy:.2f}); distance in tokens; "
               "special, previous, next, self and one token (the word the queries look at most together) are shares "
               "of the attention. A head is named by a pattern when at least half its attention follows "
               "it.")  # fmt: skip


def ig_view(model: TextModel, cap: TextAttention, text: str) -> TokenAttribution | None:
    c1, c2 = st.columns(2)
    names = list(cap.class_names)  # the names as options: another model's classes are other options, not old names
    target = names.index(permalink.linked(c1.selectbox, "Class to explain", names, index=cap.predicted,
                                          key="text_ig_target"))
    steps = permalink.linked(c2.select_slider, "Steps (at least)", (16, 32, 64, 128, 256), value=32,
                             key="text_ig_steps",
                             help="Doubled until the completeness error is within 5% of the logit's change.")
    ig = attempt(lambda: _ig(model.key, text, int(target), int(steps), model), "running Integrated Gradients")
    if ig is None:
        return None
    st.markdown(tokens_html(ig.tokens, ig.scores, signed=True), unsafe_allow_html=True)
    base = model.tokenizer.mask_token or model.tokenizer.pad_token or "token 0"
    st.caption(f"Integrated Gradients (Sundararajan et al. 2017) over the word embeddings, from a baseline of {base} "
               f"in place of every word; red raises {cap.class_names[int(target)]}, blue lowers it. {ig.steps} steps; "
               f"completeness error {ig.delta:+.4f} (the scores' sum against the logit's change).")  # fmt: skip
    return ig


def download_ui(model: TextModel, text: str, cap: TextAttention, ig: TokenAttribution) -> None:
    """Every layer's heads, the rollout, the arrays and the report, as the CLI's ``text-attention`` writes them."""
    st.download_button("Download the reading (layer PNGs, rollout, attention.npz, heads.json; zip)",
                       lambda: zipped(report_files(model, text, cap, ig)), f"{model.name}_text.zip", "application/zip",
                       key="text_dl", on_click="ignore")  # fmt: skip


def tokens_html(tokens, scores: np.ndarray, signed: bool) -> str:
    top = float(np.abs(scores).max()) or 1.0
    spans = []
    for t, s in zip(tokens, scores):
        a = min(1.0, abs(float(s)) / top)
        colour = (f"rgba(214, 39, 40, {a:.2f})" if s >= 0 else f"rgba(31, 119, 180, {a:.2f})") if signed else f"rgba(255, 170, 0, {a:.2f})"
        spans.append(f'<span title="{float(s):+.3f}" style="background:{colour};padding:2px 4px;margin:1px;'
                     f'border-radius:3px;display:inline-block">{html.escape(t)}</span>')  # fmt: skip
    return "".join(spans)
