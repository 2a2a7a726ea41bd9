"""AppTest of the Concepts page."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT


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
    assert len(at.main.get("image")) >= 12  # most and least aligned class images
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


def test_too_few_class_images_gets_a_sentence():
    at = concepts_page(model=None).run()  # the ImageNet model; class images from a saved set with few images
    assert not at.exception, [e.value for e in at.exception]
    at.main.text_input(key="concept_new_name").set_value("two photos").run()
    at.main.radio(key="concept_new_source").set_value("Bundled photos").run()
    at.main.multiselect(key="concept_new_photos").set_value(["chelsea"]).run()
    at.main.button(key="concept_new_save").click().run()
    source = next(w for w in at.main.selectbox if w.key.startswith("tcav_class_src_"))
    source.set_value("Saved set: two photos").run()
    at.main.slider(key="tcav_runs").set_value(2).run()
    at.main.button(key="tcav_run").click().run()
    assert not at.exception
    assert any("at least 2 images of the target class" in e.value for e in at.main.error)
