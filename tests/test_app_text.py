"""AppTest of the Text page."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT, theme_placeholders

pytest.importorskip("transformers")


def text_page() -> AppTest:
    return AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=300).switch_page("pages/6_Text.py")


def test_every_view_draws_for_the_bundled_model():
    at = text_page().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.main.error and not at.main.warning
    assert [t.label for t in at.main.tabs] == ["Layers × heads", "From a token", "Rollout", "Head statistics",
                                               "Integrated Gradients"]  # fmt: skip
    assert any("Prediction: negative" in m.value and "7 tokens, 2 layers × 4 heads" in m.value for m in at.main.markdown)
    assert len(at.main.get("plotly_chart")) == 4  # small multiples, one head, lines, rollout
    table = at.main.dataframe[0].value
    assert len(table) == 8 and {"pattern", "entropy", "previous", "special", "one token"} <= set(table.columns)
    ig = next(m.value for m in at.main.markdown if m.value.startswith("<span") and "title=\"+" in m.value
              and "not</span>" in m.value and "rgba(214" in m.value)  # fmt: skip
    assert "completeness error" in " ".join(c.value for c in at.main.caption).lower()
    del ig
    import json

    grid = json.loads(at.main.get("plotly_chart")[0].proto.spec)["layout"]  # 2 layers × 4 heads of small multiples
    labelled = {name for name, axis in grid.items() if name[1:5] == "axis" and axis.get("showticklabels")}
    assert labelled == {"yaxis", "yaxis5", "xaxis5", "xaxis6", "xaxis7", "xaxis8"}  # the left column, the bottom row
    titles = [a["text"] for a in grid["annotations"]]  # every head of the last layer reads "not" here
    assert titles[4:] == [f"L1 H{h} · to “not”" for h in range(4)], titles
    plot_px = grid["height"] - grid["margin"]["t"] - grid["margin"]["b"]
    upper, lower = sorted({tuple(grid[f"yaxis{n}"]["domain"]) for n in ("", "5")}, reverse=True)
    assert 24 <= (upper[0] - lower[1]) * plot_px <= 28  # room for the lower row's titles (15 px with 0.04 of it)
    lines = json.loads(at.main.get("plotly_chart")[2].proto.spec)["data"]
    words = {t["x"][0]: t["textposition"] for t in lines if t.get("mode") == "text"}
    assert words == {0: "middle left", 1: "middle right"}  # the words sit outside the lines' ends, not under them
    one = json.loads(at.main.get("plotly_chart")[1].proto.spec)["data"][0]
    assert one["type"] == "heatmap" and len(one["x"]) == 7
    # each cell reads its weight to two decimals, formatted by plotly (text rounded with numpy stayed float32 and
    # was printed as 0.12999999523162842)
    assert one.get("texttemplate") == "%{z:.2f}" and "text" not in one
    assert not theme_placeholders(at)
    assert [d.proto.label for d in at.main.get("download_button")] == [
        "Download the reading (layer PNGs, rollout, attention.npz, heads.json; zip)"]  # fmt: skip


def test_statistics_at_one_word_name_the_negation_head():
    at = text_page().run()
    at.main.selectbox(key="text_stats_over").set_value("not").run()
    table = at.main.dataframe[0].value
    assert "next token" in set(table[table.layer == 0].pattern)  # at "not", a layer-0 head reads the next word


def test_a_new_sentence_an_example_and_bad_input():
    at = text_page().run()
    at.main.text_input(key="text_input").set_value("the music was great").run()
    assert any("Prediction: positive" in m.value for m in at.main.markdown)
    assert at.query_params["text"] == "the music was great"
    at.main.text_input(key="text_input").set_value(" ").run()
    assert not at.exception
    assert "empty" in " ".join(w.value for w in at.main.warning)
    at.main.text_input(key="text_input").set_value(" ".join(["dull"] * 30)).run()
    assert "at most 20" in " ".join(w.value for w in at.main.warning)
    example = at.main.selectbox(key="text_example").options[4]
    at.main.selectbox(key="text_example").set_value(example).run()
    assert at.main.text_input(key="text_input").value == example and not at.main.warning
    assert at.main.selectbox(key="text_example").value is None  # a menu: the sentence box holds the choice
    at.main.text_input(key="text_input").set_value(example + " film").run()  # edited after: the box is not stale
    assert at.main.text_input(key="text_input").value == example + " film"


def test_an_unknown_hub_model_offline_is_a_sentence_and_the_page_goes_on():
    at = text_page().run()
    at.main.selectbox(key="text_model").set_value("Another Hugging Face model…").run()
    at.main.text_input(key="text_model_other").set_value("someone/no-such-model").run()
    assert not at.exception
    errors = " ".join(e.value for e in at.main.error)
    assert "not in the local Hugging Face cache" in errors and "text_bert" in errors
    at.main.text_input(key="text_model_other").set_value("the sentiment model").run()  # not a name at all
    assert not at.exception
    errors = " ".join(e.value for e in at.main.error)
    assert "'the sentiment model' is not a Hugging Face model name" in errors and "no such folder" not in errors
    at.main.text_input(key="text_model_other").set_value("efficientnet_lite0").run()  # an image model: the wrong page
    errors = " ".join(e.value for e in at.main.error)
    assert not at.exception and "is an image classifier, not a text model" in errors and "cache" not in errors
    # a link's model name that no hub can have (longer than any file name stopped the page once, with "File name
    # too long" from a folder check; a path) opens the bundled model and says so, as the image pages do with a name
    # that is not timm's; a name the hub may have is tried (offline: the sentence above, under the model box)
    for name in ("x" * 3000, "../../etc/passwd"):
        linked = text_page()
        linked.query_params["tmodel"] = name
        linked.run()
        assert not linked.exception, [e.value[:200] for e in linked.exception]
        assert not linked.main.error and any("Prediction" in m.value for m in linked.main.markdown)
        assert linked.main.selectbox(key="text_model").value == "text_bert"
        notes = [w.value for w in linked.sidebar.warning]
        assert len(notes) == 1 and "is not a Hugging Face model name" in notes[0] and "showing text_bert" in notes[0]
        quoted = f"“{name[:60]}…” (3,000 characters)" if len(name) > 80 else f"“{name}”"  # its start and length
        assert quoted in notes[0] and len(notes[0]) < 250, notes[0]
        assert "tmodel" not in linked.query_params  # the default model: the link no longer names the bad one
    linked = text_page()
    linked.query_params["tmodel"] = "someone/no-such-model"
    linked.run()
    assert any("not in the local Hugging Face cache" in e.value for e in linked.main.error)
    assert not linked.sidebar.warning
    at.main.selectbox(key="text_model").set_value("text_bert").run()
    assert not at.main.error and any("Prediction" in m.value for m in at.main.markdown)


def test_a_link_opens_its_sentence():
    at = text_page()
    at.query_params["text"] = "i thought the film was not dull"
    at.run()
    assert at.main.text_input(key="text_input").value == "i thought the film was not dull"
    assert any("Prediction: positive" in m.value for m in at.main.markdown)


def test_a_shared_link_opens_the_same_sentence_tab_heads_and_class():
    """The Text page's own choices travel in its link beside the sentence: the tab, the enlarged layer and head, the
    token the lines start from, the statistics' word and the class Integrated Gradients explains."""
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=300)
    link = {"text": "the film was not bad", "text_view": "From a token", "text_layer": "1", "text_from": "5: bad",
            "text_from_layer": "1", "text_from_head": "3", "text_stats_over": "not", "text_ig_target": "negative",
            "text_ig_steps": "64"}  # fmt: skip
    for k, v in link.items():
        at.query_params[k] = v
    at.switch_page("pages/6_Text.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.text_input(key="text_input").value == "the film was not bad"
    assert not at.sidebar.warning, [w.value for w in at.sidebar.warning]  # every value was one the page offers
    assert at.session_state["text_view"] == "From a token"
    assert at.main.selectbox(key="text_layer").value == 1
    chosen = [at.main.selectbox(key=k).value for k in ("text_from", "text_from_layer", "text_from_head")]
    assert chosen == ["5: bad", 1, 3]
    assert at.main.selectbox(key="text_stats_over").value == "not"
    assert at.main.select_slider(key="text_ig_steps").value == 64
    target = at.main.selectbox(key="text_ig_target")
    assert target.options[target.index] == "negative"
    assert "negative" in " ".join(c.value for c in at.main.caption if "Integrated Gradients" in c.value)
    target.set_value("positive").run()  # the classes by name, as options
    assert "red raises positive" in " ".join(c.value for c in at.main.caption if "Integrated Gradients" in c.value)
