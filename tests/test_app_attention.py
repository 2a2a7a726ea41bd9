"""AppTest of the Attention page."""

from __future__ import annotations

import json
import re

import numpy as np
import timm
import torch
from safetensors.torch import save
from streamlit.testing.v1 import AppTest

from interp.words import percent
from tests.conftest import ROOT, theme_placeholders


def attention_page(model: str | None = "test_vit") -> AppTest:
    """The Attention page as a visitor reaches it; ``model`` is a timm ViT given random weights as an upload."""
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=180)
    if model is not None:
        torch.manual_seed(0)
        net = timm.create_model(model, pretrained=False)
        at.session_state["_keep_model_select"] = "Another timm model…"
        at.session_state["_keep_model_other"] = model
        at.session_state["_weights"] = {
            "name": "vit.safetensors",
            "digest": f"{model}-random",
            "data": save({k: v.contiguous() for k, v in net.state_dict().items()}),
        }
    return at.switch_page("pages/2_Attention.py")


def test_every_view_draws_for_a_vit():
    at = attention_page().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.main.error, [e.value for e in at.main.error]
    assert [t.label for t in at.main.tabs] == [
        "Layers × heads", "Rollout and class relevance", "From a patch", "Token matrix", "Head statistics",
    ]  # fmt: skip
    net = timm.create_model("test_vit", pretrained=False)
    rows, cols = net.patch_embed.grid_size
    expected = f"{len(net.blocks)} layers × {net.blocks[0].attn.num_heads} heads, {1 + rows * cols} tokens"
    assert any(expected in c.value for c in at.main.caption), [c.value for c in at.main.caption]
    assert len(at.main.get("image")) == 3  # depth strip, heads grid, patch strip
    titles = " ".join(str(p.proto.spec) for p in at.main.get("plotly_chart"))
    assert "rollout (mean, discard 0.90)" in titles and "Chefer relevance" in titles and "gradient rollout" in titles
    # enlarged, rollout ×3, click image, matrix, stats ×2 and the maps of the most local and most global heads
    assert len(at.main.get("plotly_chart")) == 1 + 3 + 1 + 1 + 2 + 2
    assert len(at.main.get("download_button")) == 3
    assert not theme_placeholders(at)  # the token matrix's Inferno began at #000004, which Streamlit showed pink


def test_settings_and_patch_choice_redraw_without_a_new_capture():
    at = attention_page().run()
    at.main.radio(key="attn_fusion").set_value("max").run()
    at.main.slider(key="attn_discard").set_value(0.0).run()
    at.main.number_input(key="attn_row").set_value(1).run()
    at.main.number_input(key="attn_col").set_value(2).run()
    at.main.selectbox(key="attn_head").set_value(0).run()
    assert not at.exception, [e.value for e in at.exception]
    titles = " ".join(str(p.proto.spec) for p in at.main.get("plotly_chart"))
    assert "rollout (max, discard 0.00)" in titles and "layer" in titles
    assert any("Where patch (1, 2) attends" in m.value for m in at.main.markdown)


def test_head_statistics_show_the_picked_heads_maps_and_ranks():
    """No head picked: the most local and most global heads' maps. A picked head (the enlarged one, which a click on a
    dot sets): its distance and entropy with their ranks among all heads, which the table's numbers must bear out."""
    at = attention_page().run()
    titles = " ".join(str(p.proto.spec) for p in at.main.get("plotly_chart"))
    assert "most local: layer" in titles and "most global: layer" in titles
    assert any("Click a dot to see one head" in m.value for m in at.main.markdown)
    table = at.main.dataframe[-1].value
    assert {"layer", "head", "distance_px", "entropy", "prefix_share"} <= set(table.columns)

    at.main.selectbox(key="attn_layer").set_value(0).run()
    at.main.selectbox(key="attn_head").set_value(1).run()
    assert not at.exception, [e.value for e in at.exception]
    said = next(m.value for m in at.main.markdown if m.value.startswith("**Layer 0, head 1**"))
    row = table[(table["layer"] == 0) & (table["head"] == 1)].iloc[0]
    assert f"looks {row.distance_px:.1f} px away" in said and f"entropy is {row.entropy:.2f} nats" in said
    assert f"Its patches send {percent(row.prefix_share)} of their attention to the class token" in said, said
    closer = int((table.distance_px < row.distance_px).sum())
    farther = int((table.distance_px > row.distance_px).sum())
    n = len(table)
    if closer == 0:
        assert f"the most local of {n} heads" in said
    elif farther == 0:
        assert f"the most global of {n} heads" in said
    else:
        rank = min(closer, farther) + 1
        nth = f"{rank}{ {2: 'nd', 3: 'rd'}.get(rank, 'th')}"  # 2nd, 3rd, 4th… (rank 1 is "the most")
        assert f"{nth} most {'local' if closer <= farther else 'global'} of {n}" in said, said
    titles = " ".join(str(p.proto.spec) for p in at.main.get("plotly_chart"))
    assert "where the class token looks" in titles and "where patch (" in titles and "most local: layer" not in titles
    distance_chart = next(p for p in at.main.get("plotly_chart") if "mean attention distance" in str(p.proto.spec))
    spec = json.loads(distance_chart.proto.spec)
    assert any(s.get("line", {}).get("dash") == "dash" for s in spec["layout"]["shapes"])  # the evenly-spread line
    # its label sits right of the last layer's dots, where nothing is drawn
    assert spec["layout"]["xaxis"]["range"][1] >= table["layer"].max() + 1.0
    assert spec["layout"]["xaxis"]["tickvals"] == list(range(int(table["layer"].max()) + 1))  # no tick for no layer


def test_a_cnn_gets_a_sentence_and_a_way_to_a_vit():
    at = attention_page(model=None).run()  # the default model, a CNN
    assert not at.exception
    info = " ".join(i.value for i in at.main.info)
    assert "not a vision transformer" in info and "shapes_vit" in info and "weights file" in info
    at.main.button(key="attn_switch").click().run()  # the switch brings an image the toy ViT knows, not the cat
    assert not at.exception, [e.value for e in at.exception]
    assert at.sidebar.selectbox(key="model_select").value == "shapes_vit"
    assert at.session_state["_image"] == {"kind": "sample", "name": "shapes_star"}
    target = at.main.selectbox[0]
    assert target.format_func(target.value).startswith("star"), target.format_func(target.value)
    labels = [target.format_func(i) for i in range(6)]  # 6 classes: each with its probability, none by its index
    assert all(re.fullmatch(r".+ \(\d+\.\d%\)", label) for label in labels), labels


def test_a_hub_vit_out_of_reach_offers_the_bundled_one():
    """Offline, a link to a hub ViT cannot load it: the page says why and offers the ViT that ships with the app."""
    at = attention_page(model=None)
    at.query_params["model"] = "vit_base_patch16_224"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("not in the local hub cache" in e.value for e in at.main.error)
    at.main.button(key="attn_switch").click().run()
    assert not at.exception and not at.main.error, [e.value for e in at.main.error]
    assert at.sidebar.selectbox(key="model_select").value == "shapes_vit"
    assert all(b.key != "attn_switch" for b in at.main.button)  # no offer to switch to the model already shown
    assert at.main.tabs, "the attention views are drawn"


def test_a_link_whose_vit_name_is_mistyped_says_so_on_a_page_that_cannot_go_on():
    """The mistyped name falls back to the default model, a CNN, and the page stops at its sentence; what the link
    dropped is still said (a notification and the share box), not only on the next page that runs to its end."""
    at = attention_page(model=None)
    at.query_params["model"] = "vit_base_patch16_244"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("not a vision transformer" in i.value for i in at.main.info)
    assert "did you mean vit_base_patch16_224?" in at.toast[0].value
    assert any("vit_base_patch16_244" in w.value for w in at.sidebar.warning)


def test_register_tokens_without_a_class_token():
    at = attention_page("vit_little_patch16_reg4_gap_256").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.main.error
    assert any("4 prefix" in c.value and "no class token" in c.value for c in at.main.caption)


def test_a_shared_link_opens_the_same_tab_layer_head_patch_and_class():
    """The Attention page's choices travel in its link (the bundled shapes ViT, which a link can name); a patch or a
    class the model does not have is named in the share box and the page shows its defaults."""
    link = {"model": "shapes_vit", "image": "shapes_star", "attn_view": "From a patch", "attn_layer": "1",
            "attn_head": "2", "attn_fusion": "max", "attn_discard": "0.5", "patch": "2,3", "target": "1",
            "attn_matrix_layer": "1", "attn_matrix_head": "3"}  # fmt: skip
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=180)
    for k, v in link.items():
        at.query_params[k] = v
    at.switch_page("pages/2_Attention.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["attn_view"] == "From a patch"
    assert (at.main.selectbox(key="attn_layer").value, at.main.selectbox(key="attn_head").value) == (1, 2)
    assert (at.main.radio(key="attn_fusion").value, at.main.slider(key="attn_discard").value) == ("max", 0.5)
    assert (at.main.number_input(key="attn_row").value, at.main.number_input(key="attn_col").value) == (2, 3)
    assert any("Where patch (2, 3) attends" in m.value for m in at.main.markdown)
    assert at.main.selectbox[0].value == 1  # the class for the class-specific maps
    titles = " ".join(str(p.proto.spec) for p in at.main.get("plotly_chart"))
    assert "rollout (max, discard 0.50)" in titles and "layer 1, head 2" in titles
    assert (at.main.selectbox(key="attn_matrix_layer").value, at.main.selectbox(key="attn_matrix_head").value) == (1, 3)
    assert at.query_params["patch"] == "2,3" and at.query_params["target"] == "1"
    assert not at.sidebar.warning, [w.value for w in at.sidebar.warning]

    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=180)
    wrong = {"patch": "99,0", "target": "5000", "attn_layer": "99", "attn_head": "x", "attn_discard": "5",
             "attn_view": "Rollout"}
    for k, v in {"model": "shapes_vit", "image": "shapes_star", **wrong}.items():
        at.query_params[k] = v
    at.switch_page("pages/2_Attention.py").run()
    assert not at.exception, [e.value for e in at.exception]
    notes = " ".join(w.value for w in at.sidebar.warning)
    assert "patch “99,0” is not a row and a column" in notes and "class 5000 is not a class of shapes_vit" in notes
    # the widgets Streamlit binds to the URL drop what they cannot take; the page says so, once, as it opens
    last = at.main.selectbox(key="attn_layer").value
    assert f"The link's Layer “99” is not one this page offers (0, 1, 2, 3); showing {last}." in notes
    assert "The link's Head “x” is not one this page offers (mean, 0, 1, 2, 3); showing mean." in notes
    assert "The link's Discard ratio “5” is not one this page offers (from 0 to 0.99); showing 0.9." in notes
    assert "The link's tab “Rollout” is not one this page offers (Layers × heads, Rollout and class " in notes
    assert sorted(t.value for t in at.toast) == sorted(w.value for w in at.sidebar.warning)
    assert not at.run().toast
    rows = at.main.number_input(key="attn_row")
    assert rows.value == (rows.max + 1) // 2 and "patch" not in at.query_params and "target" not in at.query_params


def test_a_heads_rank_reads_from_the_nearer_end():
    from dashboard.attention_stats_ui import _rank

    values = np.array([[10.0, 20.0, 30.0], [40.0, 50.0, 20.0]])
    assert _rank(values, 10.0, "local", "global") == "the most local of 6 heads"
    assert _rank(values, 50.0, "local", "global") == "the most global of 6 heads"
    assert _rank(values, 20.0, "local", "global") == "2nd most local of 6"  # a tie shares the better rank
    assert _rank(values, 40.0, "local", "global") == "2nd most global of 6"
    assert _rank(np.arange(30.0), 22.0, "local", "global") == "8th most global of 30"
    assert _rank(np.arange(30.0), 20.0, "local", "global") == "10th most global of 30"
    assert _rank(np.arange(50.0), 21.0, "local", "global") == "22nd most local of 50"


def test_a_head_that_sends_most_of_its_attention_to_the_prefix_is_called_a_sink():
    from types import SimpleNamespace

    from dashboard.attention_stats_ui import _prefix_sentence
    from interp.attention import AttentionCapture

    def capture_with(**fields) -> SimpleNamespace:  # what the sentence reads of a capture
        cap = SimpleNamespace(**fields)
        cap.prefix_name = AttentionCapture.prefix_name.fget(cap)
        return cap

    cls = capture_with(prefix_tokens=1, has_cls=True)
    assert _prefix_sentence(cls, 0.12) == " Its patches send 12% of their attention to the class token."
    assert "(a sink); its distance is measured on the rest" in _prefix_sentence(cls, 0.8)
    assert "to the 5 prefix tokens" in _prefix_sentence(capture_with(prefix_tokens=5, has_cls=True), 0.3)
    assert _prefix_sentence(cls, 0.001) == " Its patches send less than 1% of their attention to the class token."
    assert _prefix_sentence(capture_with(prefix_tokens=0, has_cls=False), 0.0) == ""  # no prefix: nothing to say


def test_a_sink_is_an_open_circle_on_the_head_charts():
    import pandas as pd

    from dashboard.attention_stats_ui import _scatter

    table = pd.DataFrame({"layer": [0, 0, 1, 1], "head": [0, 1, 0, 1], "distance_px": [40.0, 60.0, 50.0, 70.0],
                          "entropy": [2.0, 3.0, 2.5, 1.0], "prefix_share": [0.0, 0.2, 0.5, 0.9]})  # fmt: skip
    dots = _scatter(table, "distance_px", "distance", 66.0, picked=(1, 1)).data[0]
    assert list(dots.marker.symbol) == ["circle", "circle", "circle-open", "circle-open"]
    assert list(dots.marker.size) == [9, 9, 9, 15]  # the picked head, ringed and larger, whatever its symbol
    assert "to the prefix" in dots.hovertemplate and dots.customdata[3][1] == 0.9
    # one colour: head 1 of layer 0 and head 1 of layer 1 are unrelated, and a colour scale by head said otherwise
    assert isinstance(dots.marker.color, str) and not dots.marker.showscale
