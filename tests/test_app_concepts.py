"""AppTest of the Concepts page."""

from __future__ import annotations

import json
import re

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT, theme_placeholders


def concepts_page(model: str | None = "shapes_cnn") -> AppTest:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=240)
    if model:
        at.session_state["_keep_model_select"] = model
    return at.switch_page("pages/4_Concepts.py")


def test_demo_concepts_and_a_tcav_run_on_the_shapes_model():
    at = concepts_page().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.main.error, [e.value for e in at.main.error]
    concepts = next(w for w in at.main.multiselect if w.key.startswith("tcav_concepts_"))
    assert set(concepts.options) >= {"stripes", "dots", "checkerboard", "flat colour", "shapes marker", "shapes red"}
    assert concepts.value == ["shapes marker", "shapes red"]
    target = next(w for w in at.main.selectbox if w.key.startswith("tcav_target_"))
    target.set_value(3).run()  # star, the class the marker was planted on
    at.main.slider(key="tcav_runs").set_value(6).run()
    at.main.button(key="tcav_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.main.error, [e.value for e in at.main.error]
    table = at.main.dataframe[0].value
    assert list(table["concept"].unique()) == ["shapes marker", "shapes red"] and len(table) == 4  # 2 concepts × 2 layers
    assert table["verdict"].str.contains("significant").all()
    assert any("6 runs, seed 0" in c.value for c in at.main.caption)
    assert not theme_placeholders(at)
    # the chart marks each significant score above its error bar, where the mark cannot hide behind it
    figure = json.loads(at.main.get("plotly_chart")[0].proto.spec)
    bars = {t["name"]: t for t in figure["data"] if t["type"] == "bar"}
    marks = {t["offsetgroup"]: t for t in figure["data"] if t["type"] == "scatter" and t["mode"] == "text"}
    # each layer's random level sits over its own bars (one line at their mean put a score on the wrong side of one)
    levels = {t["offsetgroup"]: t for t in figure["data"] if t.get("legendgroup") == "random"}
    assert set(levels) == set(table["layer"]) and not figure["layout"].get("shapes")
    for row in table.itertuples():
        level = levels[row.layer]
        assert level["y"][level["x"].index(row.concept)] == pytest.approx(float(row.random), abs=0.006)
    assert set(bars) == set(marks) == set(table["layer"]) and figure["layout"]["scattermode"] == "group"
    assert table["verdict"].str.startswith("significant").any()  # there is a mark to check
    for row in table.itertuples():
        bar, mark = bars[row.layer], marks[row.layer]
        i = bar["x"].index(row.concept)
        significant = row.verdict.startswith("significant")
        assert (mark["text"][i] == "*") == significant, (row, mark)
        if significant:
            assert mark["y"][i] > bar["y"][i] + bar["error_y"]["array"][i]
        assert f"p = {table.loc[row.Index, 'p-value']}" in row.verdict, row  # the same digits twice
        # the whiskers show the spread over runs and stop at 0 and 1, which no score passes
        up, down = bar["error_y"]["array"][i], bar["error_y"]["arrayminus"][i]
        std = float(row.TCAV.split(" ± ")[1])
        assert 0 <= bar["y"][i] - down and bar["y"][i] + up <= 1 + 1e-9
        assert up == pytest.approx(min(std, 1 - bar["y"][i]), abs=0.006) and down == pytest.approx(
            min(std, bar["y"][i]), abs=0.006)  # fmt: skip
    # layer4 feeds the pooled classifier: even random directions send every star the same way there, and the page
    # says what that means for its scores; layer2 is early enough for random directions to split the stars
    alike = [i.value for i in at.main.info if "even random directions score 0 or 1" in i.value]
    assert len(alike) == 1 and alike[0].startswith("At layer4,"), alike
    assert len(at.main.get("image")) >= 12  # most and least aligned class images
    # their values share one number of decimals, three significant digits for the largest (+0.0397 beside +0.0003)
    values = [c.value.rsplit(" · ", 1)[1] for c in at.main.caption if re.search(r" · [+-]\d", c.value)]
    assert len(values) == 12 and len({len(v.split(".")[-1]) for v in values}) == 1, values
    assert len(max(values, key=lambda v: abs(float(v))).lstrip("+-0.")) >= 3, values
    # the sensitivity box offers the report's pairs by name (as options, so another report's pairs are other options,
    # not old names on the same positions); another pair ranks the class images by its own derivatives
    sens = at.main.selectbox(key="tcav_sens")
    assert sens.options == [f"{r.concept} at {r.layer}" for r in table.itertuples()] and sens.value == sens.options[0]
    sens.set_value(sens.options[-1]).run()
    assert [c.value.rsplit(" · ", 1)[1] for c in at.main.caption if re.search(r" · [+-]\d", c.value)] != values
    # the same inputs give the same numbers, and the second run reads activations from the disk cache
    at.main.button(key="tcav_run").click().run()
    assert at.main.dataframe[0].value.equals(table)


def test_saving_and_deleting_a_set():
    at = concepts_page().run()
    at.main.text_input(key="concept_new_name").set_value("my stripes").run()
    at.main.slider(key="concept_new_n").set_value(8).run()
    at.main.button(key="concept_new_save").click().run()
    assert not at.exception
    assert any("Saved 'my stripes' with 8 images" in s.value for s in at.main.success)
    at.run()
    assert "my stripes" in next(w for w in at.main.multiselect if w.key.startswith("tcav_concepts_")).options
    at.main.button(key="concept_delete_my stripes").click().run()
    assert "my stripes" not in next(w for w in at.main.multiselect if w.key.startswith("tcav_concepts_")).options


def _concept_options(at: AppTest) -> list[str]:
    return next(w for w in at.main.multiselect if w.key.startswith("tcav_concepts_")).options


def _save(at: AppTest, name: str, share: bool = False) -> AppTest:
    at.main.text_input(key="concept_new_name").set_value(name).run()
    at.main.slider(key="concept_new_n").set_value(8).run()
    if share:
        at.main.checkbox(key="concept_new_share").check().run()
    at.main.button(key="concept_new_save").click().run()
    assert not at.exception and not at.main.error, [e.value for e in at.main.error]
    return at


def test_a_visitors_sets_are_theirs_and_a_shared_one_is_seen_by_all_but_deleted_only_by_who_shared_it():
    """Two browser sessions on one server: what one saves (images they may have uploaded) the other never sees,
    unless it is shared; a shared set has no Delete button for anyone but the session that shared it."""
    alice, bob = concepts_page().run(), concepts_page().run()
    _save(alice, "alice stripes")
    assert any("Saved 'alice stripes' with 8 images, for you alone." in s.value for s in alice.main.success)
    # the library above the form lists it in the same run (the save happens in the click's callback)
    assert any(m.value.startswith("**alice stripes**  \n8 images · yours") for m in alice.main.markdown)
    # her set downloads as a zip that, uploaded again (another session, another server), gives the same images
    import io
    import os
    from pathlib import Path

    from dashboard.concept_library_ui import _set_zip, read_uploads
    from interp.concepts import ConceptLibrary

    assert "concept_download_alice stripes" in {b.key for b in alice.main.get("download_button")}
    folder = Path(os.environ["INTERP_CACHE_DIR"]) / "concept-visitors" / alice.session_state["_concept_owner"]
    saved = ConceptLibrary(folder).get("alice stripes")
    upload = io.BytesIO(_set_zip(str(saved.folder), saved.files))
    upload.name = "alice-stripes.zip"
    images, notes = read_uploads([upload])
    assert notes == [] and [im.digest for im in images] == [im.digest for im in saved.images()]
    assert "alice stripes" in _concept_options(alice.run())
    assert "alice stripes" not in _concept_options(bob.run())

    _save(alice, "class stripes", share=True)
    assert any("with 8 images, shared with every visitor." in s.value for s in alice.main.success)
    alice.run()
    assert "class stripes" in _concept_options(bob.run())
    keys = {b.key for b in bob.main.button}
    assert "concept_delete_class stripes" not in keys and "concept_delete_stripes" not in keys  # nor the demo sets
    assert any("class stripes**  \n8 images · shared" in m.value for m in bob.main.markdown)
    alice.main.button(key="concept_delete_class stripes").click().run()
    assert "class stripes" not in _concept_options(bob.run())
    assert "alice stripes" in _concept_options(alice)

    # picked for a run, her own set cannot travel in a link, and the share box says how to make it travel
    concepts = next(w for w in alice.main.multiselect if w.key.startswith("tcav_concepts_"))
    concepts.set_value(["alice stripes"]).run()
    box = " ".join(c.value for c in alice.sidebar.caption)
    assert "Your own concept sets (alice stripes) do not travel in a link" in box, box
    alice.main.button(key="concept_share_alice stripes").click().run()
    assert any("Shared the set 'alice stripes'" in s.value for s in alice.main.success)
    assert "do not travel" not in " ".join(c.value for c in alice.sidebar.caption)
    assert "alice stripes" in _concept_options(bob.run())
    assert "concept_delete_alice stripes" in {b.key for b in alice.main.button}  # hers to delete, not bob's
    assert "concept_delete_alice stripes" not in {b.key for b in bob.main.button}


def test_a_server_that_keeps_visitors_sets_to_themselves_offers_no_sharing(monkeypatch):
    from dashboard import resources

    monkeypatch.setenv("INTERP_SHARE_CONCEPTS", "0")
    resources.writable_settings.clear()
    try:
        at = concepts_page().run()
        assert not at.exception
        assert not [c for c in at.main.checkbox if c.key == "concept_new_share"]
        _save(at, "kept to myself")
        assert any("for you alone" in s.value for s in at.main.success)
    finally:
        monkeypatch.delenv("INTERP_SHARE_CONCEPTS")
        resources.writable_settings.clear()


def test_too_few_class_images_gets_a_sentence():
    at = concepts_page(model=None).run()  # the ImageNet model; class images from a saved set with few images
    assert not at.exception, [e.value for e in at.exception]
    at.main.text_input(key="concept_new_name").set_value("two photos").run()
    at.main.radio(key="concept_new_source").set_value("Bundled photos").run()
    at.main.multiselect(key="concept_new_photos").set_value(["chelsea"]).run()
    at.main.button(key="concept_new_save").click().run()
    source = next(w for w in at.main.selectbox if w.key.startswith("tcav_class_images_"))
    source.set_value("Saved set: two photos").run()
    at.main.slider(key="tcav_runs").set_value(2).run()
    at.main.button(key="tcav_run").click().run()
    assert not at.exception
    assert any("at least 2 images of the target class" in e.value for e in at.main.error)


def test_a_shared_link_sets_up_the_same_tcav_run():
    """The set-up travels in the link (concepts and layers repeated, the class by index, the image sources as the
    boxes show them, runs, seed, classifier); what this server or model does not have is named in the share box."""
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=240)
    link = [("model", "shapes_cnn"), ("concepts", "shapes red"), ("concepts", "stripes"), ("layers", "layer2"),
            ("target", "3"), ("random_images", "Random photo crops"), ("tcav_runs", "4"), ("tcav_seed", "7"),
            ("tcav_classifier", "logistic regression")]  # fmt: skip
    for k in dict(link):
        at.query_params[k] = [v for name, v in link if name == k]
    at.switch_page("pages/4_Concepts.py").run()
    assert not at.exception, [e.value for e in at.exception]
    widget = lambda kind, prefix: next(w for w in getattr(at.main, kind) if w.key.startswith(prefix))  # noqa: E731
    assert widget("multiselect", "tcav_concepts_").value == ["shapes red", "stripes"]
    assert widget("multiselect", "tcav_layers_").value == ["layer2"]
    # any module may be picked; each is named with its output for one image (a block's, the classifier's)
    assert widget("multiselect", "tcav_layers_").format_func("layer3.0") == "layer3.0 · 192 × 8 × 8"
    assert widget("multiselect", "tcav_layers_").format_func("fc") == "fc · 6"
    assert widget("selectbox", "tcav_target_").value == 3
    assert widget("selectbox", "tcav_random_images_").value == "Random photo crops"
    assert widget("selectbox", "tcav_class_images_").value == "Generated shapes of the class"  # not in the link
    assert (at.main.slider(key="tcav_runs").value, at.main.number_input(key="tcav_seed").value) == (4, 7)
    assert at.main.selectbox(key="tcav_classifier").value == "logistic"
    assert at.query_params["concepts"] == ["shapes red", "stripes"] and at.query_params["target"] == "3"
    assert not at.sidebar.warning, [w.value for w in at.sidebar.warning]

    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=240)
    for k, v in {"model": "shapes_cnn", "concepts": ["nope", "dots"], "layers": "no.such.layer", "target": "99",
                 "class_images": "Saved set: gone", "tcav_runs": "9999", "tcav_seed": "abc",
                 "tcav_classifier": "svm"}.items():  # fmt: skip
        at.query_params[k] = v
    at.switch_page("pages/4_Concepts.py").run()
    assert not at.exception, [e.value for e in at.exception]
    notes = " ".join(w.value for w in at.sidebar.warning)
    for part in ("concepts nope are not in this server's shared concept library", "layers no.such.layer are not modules",
                 "class 99 is not a class", "“Saved set: gone” are not offered here",
                 "The link's Runs “9999” is not one this page offers (from 2 to 50); showing 10.",
                 "The link's Seed “abc” is not one this page offers (from 0 to 1000000); showing 0.",
                 "The link's Linear classifier “svm” is not one this page offers (SGD (hinge), logistic "
                 "regression, linear SVM); showing SGD (hinge)."):  # fmt: skip
        assert part in notes, notes
    assert widget("multiselect", "tcav_concepts_").value == ["dots"]
    assert widget("multiselect", "tcav_layers_").value == ["layer2", "layer4"]  # none known: the defaults

    # an infinite number: Streamlit's whole-number widgets raised OverflowError reading it, which stopped the page
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=240)
    for k, v in {"model": "shapes_cnn", "tcav_runs": "-inf", "tcav_seed": "inf"}.items():
        at.query_params[k] = v
    at.switch_page("pages/4_Concepts.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert (at.main.slider(key="tcav_runs").value, at.main.number_input(key="tcav_seed").value) == (10, 0)
    notes = " ".join(w.value for w in at.sidebar.warning)
    assert "Runs “-inf” is not one this page offers" in notes
    assert "Seed “inf” is not one this page offers (from 0 to 1000000); showing 0." in notes


def test_a_link_to_shown_results_shows_them_when_opened(monkeypatch):
    """A reviewer given the link sees the table the sender saw, not only the set-up; sessions opening it at once
    run the experiment one at a time (the first stores the activations, the others read them)."""
    from interp.cache import ResultCache

    claimed = []
    real = ResultCache.computing
    monkeypatch.setattr(ResultCache, "computing", lambda self, key: claimed.append(key) or real(self, key))
    at = concepts_page().run()
    at.main.slider(key="tcav_runs").set_value(3).run()
    assert "tcav" not in at.query_params  # no results yet
    at.main.button(key="tcav_run").click().run()
    table = at.main.dataframe[0].value
    assert at.query_params["tcav"] == "1"
    link = dict(at.query_params)
    link["tcav_runs"] = "3"  # a bound widget: the browser puts it in the URL, AppTest's query_params do not show it

    opened = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=240)
    for k, v in link.items():
        opened.query_params[k] = v
    opened.switch_page("pages/4_Concepts.py").run()
    assert not opened.exception, [e.value for e in opened.exception]
    assert opened.main.dataframe and opened.main.dataframe[0].value.equals(table)
    runs = [k for k in claimed if k.startswith("tcav|shapes_cnn@")]
    assert len(runs) == 2 and runs[0] == runs[1]  # the sender's run and the link's, under one key
    opened.main.slider(key="tcav_runs").set_value(4).run()  # another experiment: its results are not shown yet
    assert not opened.main.dataframe and "tcav" not in opened.query_params


def test_a_set_from_a_dataset_class_is_read_once_not_on_every_rerun(monkeypatch):
    """The page read the class's images again on every rerun (any click), through a cache of 32 images: 40 images
    were 40 decodes a click, seconds for large photos."""
    import interp.images

    decode, calls = interp.images._decode, []
    monkeypatch.setattr(interp.images, "_decode", lambda *a, **k: calls.append(a[1]) or decode(*a, **k))
    at = concepts_page().run()
    at.main.radio(key="concept_new_source").set_value("A class of a dataset").run()
    at.main.slider(key="concept_new_class_n").set_value(40).run()
    assert not at.exception and any("40 images ready." in c.value for c in at.main.caption)
    before = len(calls)
    at.main.text_input(key="concept_new_name").set_value("squares").run()
    at.main.button(key="concept_new_save").click().run()
    assert not at.exception and any("Saved 'squares' with 40 images" in s.value for s in at.main.success)
    assert calls[before:] == []


def test_a_saved_set_says_how_many_repeated_pictures_it_left_out():
    """A zip of 300 files holding 7 pictures said "300 images ready", then "Saved … with 7 images" and no why."""

    def script():
        import streamlit as st

        import interp
        from dashboard.concept_library_ui import _save_new

        photo, other = interp.load_sample("chelsea"), interp.load_sample("coffee")
        _save_new("repeats", [photo, other, photo, photo], False)
        st.write(st.session_state["_concept_new_msg"][1])

    at = AppTest.from_function(script, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.markdown[0].value == "Saved 'repeats' with 2 images (2 repeated pictures left out), for you alone."


def test_a_session_keeps_small_copies_of_the_class_images_beside_its_results():
    """The session kept every class image at full size beside its report (24 crops of a 2048×1536 upload: 113 MB
    per visitor, for twelve pictures shown 120 px wide); it keeps copies of at most 256 px."""
    at = concepts_page()
    at.session_state["_image"] = {"kind": "sample", "name": "astronaut"}  # 512×512: its crops are 307 to 512 px
    at.run()
    next(w for w in at.main.selectbox if w.key.startswith("tcav_class_images")).set_value(
        "Crops of the sidebar image").run()  # fmt: skip
    at.main.slider(key="tcav_runs").set_value(2).run()
    at.main.button(key="tcav_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.main.error, [e.value for e in at.main.error]
    [(report, kept)] = [v for k, v in at.session_state.items() if k.startswith("_tcav_")]
    assert len(kept) == 24 and all(max(picture.size) == 256 for _, picture in kept)
    assert [name for name, _ in kept] == [f"crop_{i}.png" for i in range(24)]
    shown = [c.value for c in at.main.caption if c.value.startswith("crop_")]
    assert len(shown) == 12 and len(at.main.get("image")) >= 12


def test_a_set_whose_file_went_since_it_was_listed_gets_a_sentence_and_the_page_keeps_running():
    """Saved sets are held as files (their pictures are not kept in memory): a file deleted from the server's disk
    after the set was listed stops a run that needs its pixels with one sentence, not a traceback, and without the
    server's path."""
    import os
    from pathlib import Path

    at = _save(concepts_page().run(), "vanishing")
    concepts = next(w for w in at.main.multiselect if w.key.startswith("tcav_concepts_"))
    concepts.set_value(["vanishing"]).run()
    at.main.slider(key="tcav_runs").set_value(2).run()
    folder = Path(os.environ["INTERP_CACHE_DIR"]) / "concept-visitors" / at.session_state["_concept_owner"] / "sets"
    folder = folder / "vanishing"
    gone = sorted(folder.glob("*.png"))[0]
    gone.unlink()
    at.main.button(key="tcav_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.main.error]
    assert errors == [f"{gone.name} can no longer be read: it was changed, moved or deleted since it was listed; run "
                      "again."], errors  # fmt: skip
    assert os.environ["INTERP_CACHE_DIR"] not in errors[0] and at.main.button(key="tcav_run")
    # the library lists the set with what is left: its thumbnails (a missing one raised in Streamlit's image element,
    # a traceback on the page) and its zip
    import io
    import zipfile

    from dashboard.concept_library_ui import _set_zip

    names = tuple(sorted(p.name for p in folder.glob("*.png")) + [gone.name])
    assert sorted(zipfile.ZipFile(io.BytesIO(_set_zip(str(folder), names))).namelist()) == sorted(names[:-1])
