"""AppTest of the Features page: filters, feature maps, a visualisation and the spectrum, as a visitor uses them."""

from __future__ import annotations

import base64
import io
import json
import zipfile

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from interp.shapes import generator
from tests.conftest import ROOT, plotly_array, theme_placeholders


def features_page(model: str = "shapes_cnn", image: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=300)
    at.session_state["_keep_model_select"] = model
    if image is not None:
        at.session_state["_image"] = {"kind": "sample", "name": image}
    return at.switch_page("pages/5_Features.py")


def _captions(at: AppTest) -> str:
    return " | ".join(c.value for c in at.main.caption)


def test_maps_visualisation_and_spectrum_on_the_shapes_model():
    at = features_page().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.main.error, [e.value for e in at.main.error]
    assert "layer2 has 48 channels; each map is a 16×16 grid" in _captions(at)
    pills = at.main.get("button_group")
    assert pills, "the channel picker under the maps"
    assert at.main.expander[0].label == "Filters of the first convolution"
    assert len(at.main.expander[0].children) == 1  # the filters mosaic

    at.main.slider(key="feat_steps").set_value(32).run()
    at.main.number_input(key="feat_seed").set_value(11).run()
    at.main.button(key="feat_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.main.error, [e.value for e in at.main.error]
    assert _captions(at).count("32 steps in") == 2  # pixels and FFT side by side
    assert at.run().main.button(key="feat_run").disabled  # finished: kept in the result cache, nothing to run
    assert at.main.button(key="feat_stop").disabled  # nor to stop
    downloads = at.main.get("download_button")
    assert len(downloads) == 2

    source = at.main.selectbox(key="feat_source")
    assert source.value.name == "Shapes world · test split"  # a model of shapes: its own world first, not photos
    source.set_value("Bundled photos").run()
    at.main.button(key="feat_spectrum_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert "16 images; the unit's values go from" in _captions(at)
    labels = [m.value for m in at.main.markdown if m.value.startswith("**")]
    for title in ("Negative optimised", "Minimum", "Maximum", "Positive optimised"):
        assert any(title in label for label in labels), labels
    # the positive column reuses the optimisation above; the negative one offers to run it
    assert any("Not optimised yet" in c for c in _captions(at).split(" | "))
    at.main.button(key="feat_spectrum_opt_True").click().run()
    assert not at.exception, [e.value for e in at.exception]


def test_a_unit_that_never_responds_draws_both_runs_and_says_so():
    """Channel 37 of the shapes CNN's layer2 stays at 0 from the start: both parameterisations drew the same flat
    curve at the same step, which stopped the page with Streamlit's duplicate-element error (found by random
    clicking). Both now finish, and the page says why their pictures show nothing."""
    at = features_page().run()
    channel = next(n for n in at.main.number_input if n.key.startswith("feat_channel_"))
    channel.set_value(37).run()
    at.main.slider(key="feat_steps").set_value(32).run()
    at.main.button(key="feat_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.main.error, [e.value for e in at.main.error]
    assert _captions(at).count("32 steps in") == 2
    flat = [w.value for w in at.main.warning if "stayed at exactly 0" in w.value]
    assert len(flat) == 2 and flat[0].startswith("Channel 37 of layer2 stayed at exactly 0 for all 32 steps"), flat


def _cells(spec: dict) -> dict[tuple[int, int], float]:
    """What hovering says in the first map: (row, column) -> value."""
    heat = next(t for t in spec["data"] if t["type"] == "heatmap")
    z, cells = plotly_array(heat["z"]), plotly_array(heat["customdata"])
    return {(int(r), int(c)): float(v) for v, (r, c) in zip(z.ravel(), cells.reshape(-1, 2), strict=True)}


def test_maps_over_the_image_and_alone_hover_the_same_cells():
    at = features_page().run()
    assert at.main.radio(key="feat_maps_view").value == "over the image"
    over = json.loads(at.main.get("plotly_chart")[0].proto.spec)
    images = [t for t in over["data"] if t["type"] == "image"]
    assert len(images) == 12 and all(t["source"].startswith("data:image/jpeg;base64,") for t in images)
    assert len(over["data"]) == 24  # each map: the tinted image, and an invisible grid on it for hovering
    assert len(at.main.get("plotly_chart")[0].proto.spec) < 400_000  # 12 photos as JPEG, not 12 PNGs (0.5 MB)
    at.main.radio(key="feat_maps_view").set_value("alone").run()
    alone = json.loads(at.main.get("plotly_chart")[0].proto.spec)
    assert {t["type"] for t in alone["data"]} == {"heatmap"} and len(alone["data"]) == 12
    assert _cells(alone) == _cells(over) and len(_cells(over)) == 16 * 16  # row 0 is the top row in both
    assert not theme_placeholders(at)
    linked = features_page()
    linked.query_params["feat_maps_view"] = "alone"  # a link opens the same view
    assert linked.run().main.radio(key="feat_maps_view").value == "alone"


def test_a_map_is_laid_over_the_image_the_right_way_up():
    """A map hot in its top-left cell only tints the top-left of the image; the hover grid puts row 0 on top."""
    from PIL import Image

    from dashboard.features_ui import _maps_figure
    from interp.features import FeatureMaps

    m = np.zeros((4, 4), np.float32)
    m[0, 0] = 5.0
    fm = FeatureMaps("layer", np.array([7]), np.array([m.mean()]), m[None], total=10, tokens=False)
    base = np.full((64, 64, 3), 128, np.uint8)
    image, grid = json.loads(_maps_figure(fm, base).to_json())["data"]
    tinted = np.asarray(Image.open(io.BytesIO(base64.b64decode(image["source"].split(",", 1)[1]))).convert("RGB"))
    h, w = tinted.shape[:2]
    corner, far = tinted[: h // 8, : w // 8].reshape(-1, 3), tinted[-h // 4 :, -w // 4 :].reshape(-1, 3)
    assert np.abs(corner.mean(0) - far.mean(0)).max() > 40  # the hot cell stands out where it is
    assert far.std(0).max() < 2  # the rest is one tint (up to JPEG's noise)
    y = plotly_array(grid["y"])
    first_cell = tuple(plotly_array(grid["customdata"])[0, 0])
    assert plotly_array(grid["z"])[0, 0] == 5.0 and y[0] < y[-1] and first_cell == (0, 0)


def test_a_class_objective_starts_at_the_predicted_class_and_is_in_the_link():
    at = features_page(image="shapes_star").run()
    at.main.radio(key="feat_kind").set_value("class").run()
    assert not at.exception, [e.value for e in at.exception]
    klass = at.main.selectbox(key="feat_class_" + next(k for k in at.session_state if k.startswith("feat_class_"))
                              .removeprefix("feat_class_"))  # fmt: skip
    assert klass.format_func(klass.value).startswith("star")
    assert at.query_params["objective"] == "class" and at.query_params["unit"] == str(klass.value)
    assert "layer" not in at.query_params


def test_a_link_sets_layer_unit_and_sign_and_bad_parts_are_named():
    at = features_page()
    at.query_params.update({"layer": "layer3", "objective": "neuron", "unit": "7", "negative": "1"})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.main.radio(key="feat_kind").value == "neuron"
    assert at.main.toggle(key="feat_negative").value is True
    assert "layer3 has" in _captions(at)
    assert any(n.value == 7 for n in at.main.number_input)
    bad = features_page()
    bad.query_params.update({"layer": "nowhere", "objective": "hue"})
    bad.run()
    assert not bad.exception
    warnings = " ".join(w.value for w in bad.sidebar.warning)
    assert "nowhere" in warnings and "hue" in warnings


def test_a_links_unit_beyond_the_layer_or_the_classes_is_named():
    at = features_page()
    at.query_params.update({"layer": "layer3", "objective": "channel", "unit": "999999", "negative": "maybe"})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    channel = next(n for n in at.main.number_input if n.label.startswith("Channel of layer3"))
    last = int(channel.label.rsplit(" ", 1)[1].rstrip(")"))
    assert channel.value == last  # the last channel the layer has, as the sentence says
    warnings = " ".join(w.value for w in at.sidebar.warning)
    assert f"The link's unit 999999 is not a channel of layer3 (0 to {last}); showing channel {last}." in warnings
    assert "The link's negative “maybe” is not 1 or 0" in warnings
    at.run()  # said once, not on every rerun
    assert " ".join(w.value for w in at.sidebar.warning).count("unit 999999") == 1
    klass = features_page()
    klass.query_params.update({"objective": "class", "unit": "12"})
    klass.run()
    warnings = " ".join(w.value for w in klass.sidebar.warning)
    last_class = len(generator.CLASSES) - 1
    said = f"The link's unit 12 is not a class of shapes_cnn (0 to {last_class}); showing the predicted class."
    assert said in warnings
    negative = features_page()
    negative.query_params.update({"objective": "neuron", "unit": "-5"})
    negative.run()
    assert "is not a channel or class number" in " ".join(w.value for w in negative.sidebar.warning)
    fine = features_page()
    fine.query_params.update({"layer": "layer3", "objective": "channel", "unit": "3"})
    fine.run()
    assert not fine.sidebar.warning


def test_the_classifier_layer_is_a_map_of_one_cell_per_class():
    at = features_page().run()
    key = next(k for k in at.session_state if k.startswith("feat_layer_"))
    box = at.main.selectbox(key=key)
    # each layer is offered with its output for one image, which the caption below confirms once it is picked
    assert box.format_func("layer2") == "layer2 · 48 × 16 × 16" and box.format_func("fc") == "fc · 6"
    box.set_value("fc").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.main.error, [e.value for e in at.main.error]
    assert "fc has 6 channels; each map is a 1×1 grid" in _captions(at)  # a pooled (N, D) output
    at.main.radio(key="feat_kind").set_value("neuron").run()  # one position: no slider of 0 to 0 (that failed)
    assert not at.main.error, [e.value for e in at.main.error]
    assert "fc has one position (a 1×1 grid): a neuron there is the whole channel." in _captions(at)
    assert not [s for s in at.main.slider if s.key and s.key.startswith(("feat_row_", "feat_col_"))]


def test_downloads_hold_pngs_and_the_settings():
    import interp
    from dashboard.features_ui import download_files
    from interp.features import Objective, VisualiseSettings, visualise

    model = interp.load_model("shapes_cnn", device="cpu")
    objective = Objective("channel", 2, "layer2")
    done = {p: visualise(model, objective, VisualiseSettings(param=p, steps=4, batch=2)) for p in ("fft", "pixel")}
    zipped, text = download_files(model, objective, done)
    with zipfile.ZipFile(io.BytesIO(zipped)) as z:
        assert sorted(z.namelist()) == ["fft_0.png", "fft_1.png", "pixel_0.png", "pixel_1.png", "settings.json"]
        assert json.loads(z.read("settings.json")) == json.loads(text)
    summary = json.loads(text)
    assert summary["objective"]["layer"] == "layer2" and summary["runs"]["pixel"]["settings"]["batch"] == 2
    assert len(summary["runs"]["fft"]["curve"]) == 4


def test_a_link_to_shown_spectrum_examples_shows_them_when_opened(monkeypatch):
    from interp.cache import ResultCache

    claimed = []
    real = ResultCache.computing
    monkeypatch.setattr(ResultCache, "computing", lambda self, key: claimed.append(key) or real(self, key))
    at = features_page().run()
    assert "spectrum" not in at.query_params
    at.main.slider(key="feat_per_column").set_value(2).run()
    at.main.button(key="feat_spectrum_run").click().run()
    assert "200 images; the unit's values go from" in _captions(at)  # the shapes world, a model of shapes' default
    assert at.query_params["spectrum"] == "1"
    assert [d.proto.label for d in at.main.get("download_button")] == [
        "Download the examples (PNG crops and spectrum.json, zip)"]  # fmt: skip
    link = dict(at.query_params)
    link["feat_per_column"] = "2"  # a bound widget: the browser puts it in the URL, AppTest's query_params do not

    opened = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=300)
    for k, v in link.items():
        opened.query_params[k] = v
    opened.switch_page("pages/5_Features.py").run()
    assert not opened.exception, [e.value for e in opened.exception]
    assert opened.main.slider(key="feat_per_column").value == 2
    ranked = [k for k in claimed if k.startswith("spectrum|")]
    assert len(ranked) == 2 and ranked[0] == ranked[1]  # one view, one key: opened at once, ranked one at a time
    captions = _captions(opened)
    assert "200 images; the unit's values go from" in captions and "Press “Find the examples”" not in captions
    assert _captions(opened).split(" | ") == _captions(at).split(" | ")  # the same examples, the same values
    opened.main.slider(key="feat_per_column").set_value(3).run()  # other examples, not found yet
    assert "Press “Find the examples”" in _captions(opened) and "spectrum" not in opened.query_params


def test_a_spectrum_of_large_photos_holds_them_at_the_models_size(tmp_path):
    """Up to 1,000 dataset images are ranked; held at full size they filled a shared cache (1,000 photos of Open
    Images: 2.2 GB), and each session kept all it had ranked. They are now held at the size the model resizes them
    to, and a session keeps only those it shows; the ranking is that of the full-size photos."""
    import interp
    from interp.datasets import DatasetRoot
    from interp.features import spectrum

    folder = tmp_path / "photos"
    names = ["chelsea", "coffee", "rocket", "astronaut", "horse", "camera", "clock", "motorcycle"]
    for i, name in enumerate(names):
        (folder / ("a" if i % 2 else "b")).mkdir(parents=True, exist_ok=True)
        interp.load_sample(name).image.resize((800, 600)).save(folder / ("a" if i % 2 else "b") / f"{name}.png")
    (folder / "a" / "broken.jpg").write_bytes(b"not a picture")
    at = features_page()
    at.session_state["_zip_datasets"] = [DatasetRoot("Large photos", "folder", str(folder))]
    at.run()
    at.main.selectbox(key="feat_source").set_value(DatasetRoot("Large photos", "folder", str(folder))).run()
    at.main.slider(key="feat_per_column").set_value(1).run()
    at.main.button(key="feat_spectrum_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert "8 images; the unit's values go from" in _captions(at) and "Skipped 1 unreadable image." in _captions(at)
    [(result, shown, bad)] = [v for k, v in at.session_state.items() if k.startswith("('_feat_spectrum'")]
    assert bad == 1 and set(shown) == {e.index for ex in result.columns.values() for e in ex} and len(shown) == 4
    assert all(im.image.size == (170, 128) for im in shown.values())  # the shapes model resizes to 128 px
    ds = DatasetRoot("Large photos", "folder", str(folder)).open()
    full = []
    for item in ds.items:  # the page's draw of 16 from 9 files takes them all, in the dataset's order
        if not item.path.endswith("broken.jpg"):
            full.append(interp.load_image(ds.path_of(item.path)))
    again = spectrum(interp.load_model("shapes_cnn"), result.objective, full, per_column=1)
    assert np.array_equal(again.values, result.values) and again.columns == result.columns


def test_reading_a_spectrums_images_reports_its_progress(tmp_path):
    """Reading 1,000 photos takes seconds (16 s at 2048×1536) before the ranking's own progress starts; the bar
    said "Reading the images…" without moving. It now counts them, and a second reading is served from memory."""
    import interp
    from dashboard import resources
    from dashboard.spectrum_ui import _dataset_images
    from interp.datasets import DatasetRoot

    for i in range(40):
        interp.load_sample("coffee").image.save(tmp_path / f"{i:02d}.jpg")
    root = DatasetRoot("Forty", "folder", str(tmp_path))
    model = interp.load_model("shapes_cnn")
    heard: list[tuple[int, int]] = []
    resources._held_images.clear()
    images, bad = _dataset_images(root, 32, model, lambda done, total: heard.append((done, total)))
    assert (len(images), bad) == (32, 0) and heard == [(0, 32), (16, 32), (32, 32)]
    again, _ = _dataset_images(root, 32, model, lambda done, total: heard.append((done, total)))
    assert again is images and len(heard) == 3  # held: nothing read, nothing to report


@pytest.mark.parametrize("channels", [7, 24, 60])
def test_rows_of_maps_are_the_same_distance_apart_whatever_their_number(channels):
    """A fixed fraction of the height put a two-row grid's titles onto the row above (18 px for a title's 14) and
    spread a tall one's rows 90 px apart: the gap is now a number of pixels."""
    from dashboard.features_ui import _maps_figure
    from interp.features import FeatureMaps

    maps = np.random.default_rng(0).random((channels, 4, 4), dtype=np.float32)
    fm = FeatureMaps("layer", np.arange(channels), maps.mean((1, 2)), maps, total=channels, tokens=False)
    layout = json.loads(_maps_figure(fm).to_json())["layout"]
    plot_px = layout["height"] - layout["margin"]["t"] - layout["margin"]["b"]
    bottoms = sorted({tuple(v["domain"]) for k, v in layout.items() if k.startswith("yaxis")}, reverse=True)
    gaps = [(upper[0] - lower[1]) * plot_px for upper, lower in zip(bottoms, bottoms[1:])]
    assert len(gaps) == -(-channels // 6) - 1 and all(24 <= g <= 28 for g in gaps), gaps
