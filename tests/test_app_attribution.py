"""AppTest of the Attribution page."""

from __future__ import annotations

import timm
from safetensors.torch import save
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT


class AttributionPage:
    """The app's entry point switched to the Attribution page, as a visitor reaches it."""

    def __init__(self) -> None:
        self.at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=180)

    def run(self) -> AppTest:
        return self.at.switch_page("pages/1_Attribution.py").run()


def attribution_page() -> AttributionPage:
    return AttributionPage()


def captions(at: AppTest) -> list[str]:
    return [c.value for c in at.main.caption]


def test_default_grid_for_the_prediction():
    at = attribution_page().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.main.error
    assert at.main.multiselect(key="attr_methods").value == ["grad_cam", "saliency", "integrated_gradients"]
    assert {"Grad-CAM", "Saliency (gradients)", "Integrated Gradients"} <= set(captions(at))
    assert any("completeness error" in c for c in captions(at))
    assert not any("⚠" in c for c in captions(at)), captions(at)  # the first view flags nothing it shows
    assert len(at.main.get("image")) == 3
    assert len(at.main.get("plotly_chart")) == 1  # the enlarged cell under "Inspect values"
    assert any("**tiger cat**" in m.value for m in at.main.markdown)


def test_several_targets_and_methods_and_display_controls_do_not_recompute():
    at = attribution_page().run()
    at.main.multiselect(key="attr_methods").set_value(["grad_cam", "layer_cam", "guided_backprop"]).run()
    targets = next(w for w in at.main.multiselect if w.key and w.key.startswith("attr_targets_"))
    targets.set_value(targets.value + [285]).run()  # Egyptian cat, found by index like a typed search
    assert not at.exception
    assert len(at.main.get("image")) == 6
    assert any("Egyptian cat" in m.value for m in at.main.markdown)
    at.main.slider(key="attr_alpha").set_value(0.8).run()
    at.main.selectbox(key="attr_sign").set_value("signed").run()
    assert not at.exception
    timings = [c for c in captions(at) if c.split(" ")[0].replace(".", "").isdigit() and " s" in c]
    assert len(timings) == 6 and all(", cached" in c for c in timings)  # display changes only redraw


def test_methods_that_do_not_apply_say_why():
    vit = timm.create_model("test_vit", pretrained=False)
    blob = save({k: v.contiguous() for k, v in vit.state_dict().items()})
    page = attribution_page()
    page.at.session_state["_keep_model_select"] = "Another timm model…"
    page.at.session_state["_keep_model_other"] = "test_vit"
    page.at.session_state["_weights"] = {"name": "vit.safetensors", "digest": "test-vit-random", "data": blob}
    page.at.session_state["_keep_attr_methods"] = ["grad_cam", "deeplift"]
    at = page.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.main.error, [e.value for e in at.main.error]
    assert any("Not for test_vit" in i.value and "attention" in i.value for i in at.main.info)
    assert len(at.main.get("image")) == 1  # Grad-CAM on the ViT's token grid still draws


def test_downloads_carry_the_maps_and_settings():
    at = attribution_page().run()
    buttons = {b.key: b for b in at.main.get("download_button")}
    assert {"dl_png", "dl_npz", "dl_json"} <= set(buttons)
    assert not at.exception


def test_settings_change_is_a_new_computation():
    at = attribution_page().run()
    at.main.multiselect(key="attr_methods").set_value(["integrated_gradients"]).run()
    at.main.slider(key="attr_steps").set_value(64).run()
    assert not at.exception
    ig = [c for c in captions(at) if "completeness error" in c]
    assert ig and ", cached" not in ig[0]


def test_second_model_side_by_side_with_an_untrained_copy():
    at = attribution_page().run()
    at.main.multiselect(key="attr_methods").set_value(["grad_cam", "saliency"]).run()
    at.main.toggle(key="attr_compare").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.main.selectbox(key="attr_second").value == "Untrained copy (sanity check)"
    headers = [h.value for h in at.main.subheader]
    assert any("bundled package" in h for h in headers) and any("random initialisation" in h for h in headers)
    assert len(at.main.get("image")) == 4  # two methods × two models
