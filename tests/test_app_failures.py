"""AppTest of the Failures page on the built-in shapes world, with the shapes CNN."""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT, one_photo_open_images, plotly_array


@pytest.fixture(autouse=True)
def fresh_scans():
    """Scans are shared by every session of a server (and the browser tests scan too): start each test from none."""
    from dashboard import gallery_ui

    shutil.rmtree(Path(os.environ["INTERP_CACHE_DIR"]) / "scans", ignore_errors=True)
    gallery_ui._scan_rows.clear()
    yield


def failures_page(model: str = "shapes_cnn") -> AppTest:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=240)
    at.session_state["_keep_model_select"] = model
    return at.switch_page("pages/3_Failures.py")


def test_scan_then_gallery_then_why():
    at = failures_page().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.main.selectbox(key="gallery_dataset").value == "Shapes world · test split"
    assert any("No scan of" in i.value for i in at.main.info)
    assert any("INTERP_DATASETS" in c.value for c in at.main.caption)  # says how to add ImageNet / Open Images
    at.main.number_input(key="scan_limit_Shapes world · test split").set_value(240).run()
    at.main.button(key="scan_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.main.error, [e.value for e in at.main.error]
    metrics = {m.label: m.value for m in at.main.metric}
    assert metrics["Images scanned"] == "240" and metrics["Accuracy"].endswith("%")
    assert metrics["Already scanned"] == "240 / 600"  # updated when the scan is done, not left at 0
    mistakes = int(metrics["Mistakes"])
    assert mistakes > 0  # the planted marker makes the CNN call marked shapes "star"
    assert any("**Top confusion pairs**" in m.value for m in at.main.markdown)
    pairs = next(d.value for d in at.main.dataframe if "predicted" in d.value.columns)
    assert list(pairs.columns) == ["true", "predicted", "count", "confidence"]
    assert pairs["count"].sum() <= mistakes and (pairs["confidence"] > 50).all()  # percent, not a 0-1 fraction
    bars = next(json.loads(p.proto.spec) for p in at.main.get("plotly_chart") if "Per-class accuracy" in p.proto.spec)
    assert bars["data"][0]["texttemplate"] == "%{x:.0%}" and 1 in bars["layout"]["xaxis"]["tickvals"]  # 100% shows
    why = [b for b in at.main.button if b.key and b.key.startswith("why_")]
    assert why, "mistakes at confidence ≥ 50% are shown as thumbnails"
    assert all("· true" in c.value for c in at.main.caption if "%" in c.value and "true" in c.value)
    why[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(m.value.startswith("**Why ") for m in at.main.markdown)
    captions = [c for img in at.main.get("image") for c in (img.proto.imgs[0].caption,) if c]
    assert any(c.startswith("predicted: ") for c in captions) and any(c.startswith("true: ") for c in captions)
    at.main.button(key="gallery_open").click().run()
    assert at.session_state["_image"]["kind"] == "dataset"
    assert any(c.value.startswith("From Shapes world") for c in at.sidebar.caption)


def test_a_second_scan_resumes_and_filters_narrow_the_gallery():
    """Scans are shared by every session (one folder per model and dataset), so start from what is there."""
    at = failures_page().run()
    before = int(next(m.value for m in at.main.metric if m.label == "Already scanned").split(" / ")[0])
    limit = at.main.number_input(key="scan_limit_Shapes world · test split")
    limit.set_value(before + 30).run()
    at.main.button(key="scan_start").click().run()
    assert {m.label: m.value for m in at.main.metric}["Images scanned"] == str(before + 30)
    at.main.number_input(key="scan_limit_Shapes world · test split").set_value(before + 60).run()
    at.main.button(key="scan_start").click().run()
    assert not at.exception
    assert {m.label: m.value for m in at.main.metric}["Images scanned"] == str(before + 60)
    at.main.slider(key="gallery_conf").set_value(0.95).run()
    high = [m.value for m in at.main.markdown if "** at confidence" in m.value]
    assert high and "≥ 95%" in high[0]


def _red_png() -> bytes:
    image = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(image, "PNG")
    return image.getvalue()


def _upload_zip(at: AppTest, entries: dict[str, bytes]) -> AppTest:
    """``entries`` (name in the zip: bytes) as ``mine.zip``, through the page's uploader and its handler."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return at.main.file_uploader(key="gallery_zip").set_value(("mine.zip", buf.getvalue(), "application/zip")).run()


def test_zip_upload_with_junk_becomes_a_dataset():
    """The zip goes through the page's uploader and its handler (tests/browser uploads one through Chromium)."""
    png = _red_png()
    at = failures_page().run()
    _upload_zip(at, {"mine/star/a.png": png, "mine/circle/b.png": png, "mine/notes.txt": b"x", "../../evil.png": png})
    assert not at.exception, [e.value for e in at.exception]
    assert not at.main.error
    assert at.main.selectbox(key="gallery_dataset").value == "Upload · mine.zip"
    assert at.session_state["gallery_zip_open"] is False  # the popover closes on the new dataset
    assert "Skipped 2 entries of mine.zip (not images, or unsafe names): mine/notes.txt, ../../evil.png" in [
        c.value for c in at.main.caption]  # fmt: skip
    assert len([b for b in at.main.button if b.key and b.key.startswith("browse_")]) == 2
    assert at.main.selectbox(key="browse_class_Upload · mine.zip").options == ["all classes", "circle", "star"]


def test_browse_sends_an_image_to_the_other_pages():
    at = failures_page().run()
    first = next(b for b in at.main.button if b.key and b.key.startswith("browse_"))
    first.click().run()
    assert at.session_state["_image"]["kind"] == "dataset"
    at.switch_page("pages/1_Attribution.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.main.error
    assert len(at.main.get("image")) == 3
    # a shapes-world image has a known answer: every map says whether its peak is on the object
    captions = [c.value for c in at.main.caption]
    assert sum("peak on the object" in c or "peak off the object" in c for c in captions) == 3
    assert any(c.startswith("Ground truth (white outline") and "of 3 maps" in c for c in captions)


def test_gallery_selection_becomes_a_concept_set():
    at = failures_page().run()
    limit = at.main.number_input(key="scan_limit_Shapes world · test split")
    if int(next(m.value for m in at.main.metric if m.label == "Already scanned").split(" / ")[0]) < 120:
        limit.set_value(120).run()
        at.main.button(key="scan_start").click().run()
    at.main.slider(key="gallery_conf").set_value(0.0).run()
    picked = at.session_state["_gallery_selection"]
    assert picked["paths"] and "mistakes of shapes_cnn" in picked["what"]
    at.switch_page("pages/4_Concepts.py").run()
    at.main.text_input(key="concept_new_name").set_value("confident mistakes").run()
    at.main.radio(key="concept_new_source").set_value("The failure gallery's selection").run()
    at.main.button(key="concept_new_save").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Saved 'confident mistakes'" in s.value for s in at.main.success)


def test_a_model_that_cannot_score_the_shapes_world_says_so_before_scanning_and_offers_one_that_can():
    at = failures_page(model="efficientnet_lite0").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("will find no mistakes" in i.value for i in at.main.info), [i.value for i in at.main.info]
    assert at.main.button(key="gallery_switch_model")  # the Gallery tab says it too, before a scan is spent
    at.main.button(key="scan_switch_model").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.sidebar.selectbox(key="model_select").value == "shapes_cnn"
    assert not any("will find no mistakes" in i.value for i in at.main.info)


def test_a_command_line_scan_is_what_the_gallery_shows():
    """The CLI's scan of a configured dataset, without --out, writes the folder the page reads (one owner of scan
    folders: interp.datasets.scan_folder), so an operator can scan a large dataset in the shell for visitors."""
    from interp.cli import main

    assert main(["scan", "--model", "shapes_cnn", "--dataset", "Shapes world · test split", "--limit", "90"]) == 0
    at = failures_page().run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.main.metric}
    assert metrics["Images scanned"] == "90" and metrics["Already scanned"] == "90 / 600"


def test_a_command_line_scan_of_weights_with_class_names_is_what_the_gallery_shows_for_that_upload(tmp_path):
    """An operator scans a fine-tune in the shell (``--weights`` and ``--classes``); a visitor who uploads the same
    file and names sees that scan, not an empty one: the same model key on both sides."""
    from interp.cli import main
    from interp.shapes.generator import CLASSES

    weights = ROOT / "assets" / "shapes_cnn.safetensors"
    names = list(reversed(CLASSES))
    (tmp_path / "names.txt").write_text("\n".join(names), encoding="utf-8")
    assert main(["scan", "--model", "shapes_cnn", "--dataset", "Shapes world · test split", "--limit", "70",
                 "--weights", str(weights), "--classes", str(tmp_path / "names.txt")]) == 0  # fmt: skip
    at = failures_page().run()
    assert next(m.value for m in at.main.metric if m.label == "Already scanned") == "0 / 600"  # not the bundled one's
    at.sidebar.file_uploader(key="classes_upload").set_value(("names.txt", "\n".join(names).encode(), "text/plain"))
    at.sidebar.file_uploader(key="weights_upload").set_value(("mine.safetensors", weights.read_bytes(),
                                                              "application/octet-stream"))  # fmt: skip
    at.run()
    assert not at.exception and not at.main.error, [e.value for e in [*at.exception, *at.main.error]]
    metrics = {m.label: m.value for m in at.main.metric}
    assert metrics["Images scanned"] == "70" and metrics["Already scanned"] == "70 / 600"


def _scan(at: AppTest, n: int = 120) -> AppTest:
    at.main.number_input(key="scan_limit_Shapes world · test split").set_value(n).run()
    return at.main.button(key="scan_start").click().run()


def test_the_class_filters_keep_their_class_by_name_on_a_model_with_other_classes():
    """The True and Predicted class boxes hold an index: on weights whose class names come in another order, the
    chosen *star* became *triangle* without a word. A class the new model offers stays chosen, else the box goes back
    to any. (Those weights are the bundled ones: their scan was the first one's, read with the other names, until the
    names became part of the model's key.)"""
    from interp.shapes.generator import CLASSES

    at = _scan(failures_page().run())
    at.main.selectbox(key="gallery_true").set_value(CLASSES.index("star")).run()
    at.main.selectbox(key="gallery_pred").select_index(1).run()  # the first class the model mistook something for

    def shown(key: str) -> str:
        box = at.main.selectbox(key=key)
        return "any" if box.value is None else box.options[box.index]

    predicted = shown("gallery_pred")
    assert shown("gallery_true") == "star" and predicted in CLASSES

    def upload(names: list[str]) -> AppTest:
        """The shapes CNN's own weights, with class names of the visitor's (a new model to the app: a new scan)."""
        blob = (ROOT / "assets" / "shapes_cnn.safetensors").read_bytes()
        at.sidebar.file_uploader(key="classes_upload").set_value(("names.txt", "\n".join(names).encode(), "text/plain"))
        at.sidebar.file_uploader(key="weights_upload").set_value(("mine.safetensors", blob, "application/octet-stream"))
        _scan(at.run())
        assert not at.exception and not at.main.error, [e.value for e in [*at.exception, *at.main.error]]
        assert at.main.selectbox(key="gallery_true").options[1:] == [n for n in names if n in set(
            at.main.selectbox(key="gallery_true").options)]  # the new model's classes, in its order  # fmt: skip
        return at

    upload(list(reversed(CLASSES)))
    assert shown("gallery_true") == "star"
    assert shown("gallery_pred") in (predicted, "any")  # the same class, or any where nothing is mistaken for it
    assert at.main.selectbox(key="gallery_true").value == list(reversed(CLASSES)).index("star")
    assert all("· true star" in c.value for c in at.main.caption if "· true " in c.value)  # filtered by the same
    # the same weights with other names are another model to the scans: its rows name and match labels by them
    assert len(list((Path(os.environ["INTERP_CACHE_DIR"]) / "scans").glob("shapes_cnn@*/*/scan.json"))) == 2


def test_a_reduced_precision_scan_shows_its_agreement_with_fp32():
    from interp.cli import main

    assert main(["scan", "--model", "shapes_cnn", "--dataset", "Shapes world · test split", "--limit", "40",
                 "--precision", "bf16"]) == 0  # fmt: skip
    at = failures_page().run()
    assert not at.exception, [e.value for e in at.exception]
    captions = " ".join(c.value for c in at.main.caption)
    assert "Scanned in bf16; its top-1 class agrees with fp32 on" in captions and "of the first 40 images" in captions


def test_a_scan_that_decoded_jpegs_on_a_gpu_says_its_pixels_differ_a_little():
    """nvJPEG's pixels are not Pillow's, which every other page decodes with: a reviewer comparing the gallery's
    probability with the Attribution page's is told why they can differ (the scan here runs on the CPU; its
    scan.json then says what a GPU scan's would)."""
    from dashboard import gallery_ui
    from interp.cli import main

    assert main(["scan", "--model", "shapes_cnn", "--dataset", "Shapes world · test split", "--limit", "20"]) == 0
    at = failures_page().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not any("decoded on the GPU" in c.value for c in at.main.caption)
    (meta_path,) = (Path(os.environ["INTERP_CACHE_DIR"]) / "scans").glob("*/*/scan.json")
    meta = json.loads(meta_path.read_text())
    meta["device_decoding"] = {"images": 20, "decoder": "TorchCodec", "device": "cuda"}
    meta_path.write_text(json.dumps(meta))
    gallery_ui._scan_rows.clear()
    at = failures_page().run()
    assert not at.exception, [e.value for e in at.exception]
    captions = " ".join(c.value for c in at.main.caption)
    assert "20 JPEGs of this scan were decoded on the GPU (nvJPEG, through TorchCodec)" in captions
    assert "--decode cpu" in captions


def test_which_method_to_trust_scores_methods_on_the_dataset():
    at = failures_page().run()
    at.main.multiselect(key="trust_methods").set_value(["grad_cam", "saliency"]).run()
    at.main.number_input(key="trust_n_Shapes world · test split").set_value(6).run()
    at.main.select_slider(key="trust_steps").set_value(5).run()
    assert at.main.select_slider(key="trust_block").value == 16  # the shapes world's 128-pixel input: 8 × 8 squares
    assert at.main.selectbox(key="trust_replacement").value == "blur"
    at.main.button(key="trust_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.main.error, [e.value for e in at.main.error]
    reading = next(m.value for m in at.main.markdown if "gains the most over a random map" in m.value)
    assert "over 6 images" in reading
    table = at.main.dataframe[-1].value
    assert set(table["method"]) == {"Grad-CAM", "Saliency (gradients)"} and (table["images"] == 6).all()
    assert list(table.columns) == ["method", "images", "insertion gain", "deletion gain", "insertion", "deletion",
                                   "pointing game", "mass on object"]  # the shapes world knows where objects are
    assert table["pointing game"].str.fullmatch(r"\d+% ± \d+%").all(), table
    assert table["mass on object"].str.fullmatch(r"\d+% ± \d+%").all(), table
    assert "Where the object is known (6 images)" in reading  # and the answer reads them
    assert {"trust_csv", "trust_parquet"} <= {b.key for b in at.main.get("download_button")}
    other = failures_page()  # another visitor choosing the same sees the scores at once, without scoring again
    other.session_state["_keep_trust_methods"] = ["grad_cam", "saliency"]
    other.run()
    other.main.number_input(key="trust_n_Shapes world · test split").set_value(6).run()
    other.main.select_slider(key="trust_steps").set_value(5).run()
    assert any("gains the most over a random map" in m.value for m in other.main.markdown)
    other.main.select_slider(key="trust_block").set_value(1).run()  # single pixels: scores of their own, none yet
    assert not other.exception and not any("gains the most" in m.value for m in other.main.markdown)
    assert any("Nothing scored yet" in c.value for c in other.main.caption)
    other.main.select_slider(key="trust_block").set_value(16).run()
    other.main.selectbox(key="trust_replacement").set_value("noisy_linear").run()  # ROAD's imputation: the same
    assert not any("gains the most" in m.value for m in other.main.markdown)
    other.main.number_input(key="trust_n_Shapes world · test split").set_value(2).run()
    other.main.button(key="trust_start").click().run()
    assert not other.exception and not other.main.error, [e.value for e in other.main.error]
    reading = next(m.value for m in other.main.markdown if "gains the most over a random map" in m.value)
    assert "over 2 images" in reading


def test_an_image_of_the_dataset_that_cannot_be_read_is_left_out_of_the_trust_scores_and_said():
    """A zip's file named like a picture that is not one: the scores rest on the others, and the page says so."""
    png = _red_png()
    at = failures_page().run()
    _upload_zip(at, {"mine/star/a.png": png, "mine/circle/b.png": png, "mine/circle/broken.png": b"not a picture"})
    at.main.multiselect(key="trust_methods").set_value(["grad_cam"]).run()
    at.main.number_input(key="trust_n_Upload · mine.zip").set_value(3).run()
    at.main.select_slider(key="trust_steps").set_value(5).run()
    at.main.button(key="trust_start").click().run()
    assert not at.exception and not at.main.error, [e.value for e in at.main.error]
    assert (at.main.dataframe[-1].value["images"] == 2).all()
    said = [c.value for c in at.main.caption if "could not be read" in c.value]
    assert len(said) == 1 and said[0].startswith("1 image could not be read and is left out: broken.png"), said

    # two files, one of them broken: the scores rest on one image, which gives no interval, and nothing says "± nan"
    one = failures_page().run()
    _upload_zip(one, {"one/star/a.png": png, "one/circle/broken.png": b"not a picture"})
    one.main.multiselect(key="trust_methods").set_value(["grad_cam"]).run()
    one.main.select_slider(key="trust_steps").set_value(5).run()
    one.main.button(key="trust_start").click().run()
    assert not one.exception and not one.main.error, [e.value for e in one.main.error]
    table = one.main.dataframe[-1].value
    assert (table["images"] == 1).all() and not table.astype(str).apply(lambda c: c.str.contains("nan")).any().any()
    answer = next(m.value for m in one.main.markdown if "gains the most" in m.value)
    assert "on 1 image, which gives no interval" in answer and "nan" not in answer


def test_scores_of_an_older_engine_are_not_shown_as_this_ones(monkeypatch):
    """After an upgrade (a fixed method), the page scores the methods again instead of showing what the old code
    measured: the scores are kept per engine (:func:`interp.cache.engine_fingerprint`)."""
    import interp.cache

    def choose(at):
        at.main.multiselect(key="trust_methods").set_value(["saliency"]).run()
        at.main.number_input(key="trust_n_Shapes world · test split").set_value(2).run()
        at.main.select_slider(key="trust_steps").set_value(5).run()
        return at

    at = choose(failures_page().run())
    at.main.button(key="trust_start").click().run()
    assert any("gains the most over a random map" in m.value for m in at.main.markdown)
    assert any("gains the most over a random map" in m.value for m in choose(failures_page().run()).main.markdown)
    monkeypatch.setattr(interp.cache, "engine_fingerprint", lambda: "an upgraded engine")
    upgraded = choose(failures_page().run())
    assert not upgraded.exception
    assert not any("gains the most" in m.value for m in upgraded.main.markdown)
    assert any("Nothing scored yet" in c.value for c in upgraded.main.caption)


def test_a_shared_link_opens_the_same_gallery_filters_and_explanation():
    """The Failures page's choices travel in its link: the dataset, the filters, the contrastive method and
    the mistake being explained; parts this server cannot honour are named in the share box."""
    from interp.cli import main
    from interp.datasets import failures, load_scan
    from interp.shapes.generator import CLASSES

    assert main(["scan", "--model", "shapes_cnn", "--dataset", "Shapes world · test split", "--limit", "120"]) == 0
    (folder,) = [p.parent for p in (Path(os.environ["INTERP_CACHE_DIR"]) / "scans").glob("*/*/scan.json")]
    wrong = failures(load_scan(folder)[1], 0.6)
    assert len(wrong) > 1
    pick = wrong.iloc[1]  # not the first: the link, not a default, chooses it
    true_name = CLASSES[int(pick.label)]

    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=240)
    link = {"model": "shapes_cnn", "data": "Shapes world · test split", "gallery_conf": "0.6",
            "gallery_true": true_name, "gallery_method": "Occlusion", "why": pick.path}
    for k, v in link.items():
        at.query_params[k] = v
    at.switch_page("pages/3_Failures.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.main.slider(key="gallery_conf").value == 0.6
    assert at.main.selectbox(key="gallery_true").value == int(pick.label)
    assert at.main.selectbox(key="gallery_method").value == "occlusion"  # bound widgets carry their labels
    assert any(m.value.startswith("**Why ") for m in at.main.markdown)
    assert at.session_state["_gallery_pick"] == pick.path
    assert at.query_params["why"] == pick.path and "data" not in at.query_params  # the first dataset: the default
    assert not at.sidebar.warning, [w.value for w in at.sidebar.warning]
    # Integrated Gradients' two maps say whether they add up to their logit changes, as on the Attribution page
    at.main.selectbox(key="gallery_method").set_value("integrated_gradients").run()
    said = [c for im in at.main.get("image") for c in im.captions if "completeness error" in c]
    assert [c.split(":")[0] for c in said] == ["predicted", "true"], said
    assert any("positive part of a signed map" in c.value for c in at.main.caption)

    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=240)
    for k, v in {"model": "shapes_cnn", "data": "Upload · gone.zip", "why": "star/nowhere.png"}.items():
        at.query_params[k] = v
    at.switch_page("pages/3_Failures.py").run()
    assert not at.exception, [e.value for e in at.exception]
    notes = " ".join(w.value for w in at.sidebar.warning)
    assert "“Upload · gone.zip” is not available here" in notes and "star/nowhere.png" in notes
    assert not any(m.value.startswith("**Why ") for m in at.main.markdown)


def test_the_trust_answer_says_when_the_ranking_is_not_settled():
    """The best method is named with its interval; the sentence says when that interval reaches a random map's
    level (zero gain) and which methods overlap it."""
    import pandas as pd

    from dashboard import charts
    from interp.evaluation import verdict

    def trust_sentence(summary, dataset):  # as the page writes it: names escaped for Markdown, the best one bold
        return verdict(summary, dataset, name=charts.md, strong=lambda text: f"**{text}**")

    def summary(*rows):
        return pd.DataFrame([{"method": m, "images": n, "insertion_gain": g, "insertion_gain_ci95": h}
                             for m, n, g, h in rows])  # fmt: skip

    clear = trust_sentence(summary(("Grad-CAM", 50, 0.24, 0.05), ("Saliency", 50, 0.02, 0.04)), "Shapes")
    assert "**Grad\\-CAM** gains the most over a random map by insertion (0.240 ± 0.050 over 50 images)." in clear
    assert "not clearly above" not in clear and "told apart" not in clear
    overlap = trust_sentence(summary(("IG", 6, 0.25, 0.19), ("Grad-CAM", 6, 0.21, 0.22), ("Saliency", 6, -0.05, 0.26)),
                             "Shapes")  # fmt: skip
    assert "Grad\\-CAM and Saliency cannot be told apart from it yet" in overlap  # upper ends 0.43, 0.21 reach 0.06
    unsure = trust_sentence(summary(("IG", 4, 0.05, 0.08)), "Shapes")
    assert "not clearly above a random map yet: score more images" in unsure
    one = trust_sentence(summary(("IG", 1, 0.3, float("nan"))), "Shapes")
    assert "score more images" in one and "(0.300 on 1 image, which gives no interval)" in one and "nan" not in one


def test_confusion_pairs_name_classes_as_the_thumbnails_do():
    """ImageNet names carry their synonyms; the half-page table shows the first, as the captions and chart do."""
    import pandas as pd

    from dashboard.gallery_ui import confusion_table

    pit_bull = "American Staffordshire terrier, Staffordshire terrier, American pit bull terrier, pit bull terrier"
    bull = "Staffordshire bullterrier, Staffordshire bull terrier"
    tabby = "tabby, tabby cat"
    rows = pd.DataFrame({"id": ["a", "b", "c"], "label": [180, 180, 281], "label_name": [pit_bull, pit_bull, tabby],
                         "pred": [179, 179, 281], "pred_name": [bull, bull, tabby], "correct": [False, False, True],
                         "confidence": [0.9, 0.7, 0.8], "error": [None] * 3})  # fmt: skip
    assert confusion_table(rows, 0.5).to_dict("records") == [
        {"true": "American Staffordshire terrier", "predicted": "Staffordshire bullterrier", "count": 2,
         "confidence": pytest.approx(80.0)}]  # fmt: skip


def test_thumbnails_name_every_true_class_of_a_multi_label_image():
    from interp.datasets import true_names

    name = lambda i: f"class {i}, synonym"  # noqa: E731
    assert true_names([281], "tabby, tabby cat", name) == "tabby"  # one label: its own name, first synonym
    assert true_names([], "tabby, tabby cat", name) == "tabby"
    assert true_names([281, 831], "tabby, tabby cat", name) == "class 281 / class 831"
    assert true_names(np.array([1, 2, 3, 4, 5]), "x", name, most=3) == "class 1 / class 2 / class 3 +2 more"
    assert true_names(np.array([1, 2, 3, 4]), "x", name) == "class 1 / class 2 / class 3 / class 4"  # the CLI's


def test_a_wrong_dataset_setting_is_said_and_the_other_datasets_stay(tmp_path, monkeypatch):
    """An entry of an unknown kind left the page with nothing but the error (the shapes world and the good entries
    gone); now it is one warning above the picker, which keeps the rest."""
    from dashboard import resources

    (tmp_path / "mine" / "star").mkdir(parents=True)
    Image.new("RGB", (32, 32), "red").save(tmp_path / "mine" / "star" / "a.png")
    entries = [{"name": "typo", "kind": "imagefolder", "root": "/x"},
               {"name": "mine", "kind": "folder", "root": str(tmp_path / "mine")}]
    monkeypatch.setenv("INTERP_DATASETS", json.dumps(entries))
    resources.dataset_settings.clear()
    try:
        at = failures_page().run()
        assert not at.exception and not at.main.error, [e.value for e in [*at.exception, *at.main.error]]
        assert at.main.selectbox(key="gallery_dataset").options == ["Shapes world · test split", "mine"]
        (warning,) = [w.value for w in at.main.warning if "settings" in w.value]
        assert warning == ("A dataset in this server's settings could not be read: Dataset 'typo' has kind "
                           "'imagefolder'; use one of imagenet, openimages, folder. Whoever runs the app can correct "
                           "it; the other datasets work.")  # fmt: skip
        at.main.selectbox(key="gallery_dataset").set_value("mine").run()
        assert not at.exception and any("No scan of" in i.value for i in at.main.info)
    finally:
        resources.dataset_settings.clear()


def test_an_open_images_photo_with_two_labels_is_named_and_filtered_by_both(tmp_path, monkeypatch):
    """Open Images gives an image several labels: the gallery's thumbnail names all of them and the true-class filter
    finds the mistake under the second label too (it used to know only the first)."""
    from dashboard import resources

    root = one_photo_open_images(tmp_path / "oi")  # Chelsea labelled tabby and golden retriever
    monkeypatch.setenv("INTERP_DATASETS", json.dumps(
        [{"name": "OI sample", "kind": "openimages", "root": str(root), "mapping": "oi_to_imagenet.csv"}]))
    resources.dataset_settings.clear()
    try:
        at = failures_page("efficientnet_lite0").run()
        at.main.selectbox(key="gallery_dataset").set_value("OI sample").run()
        assert not at.exception, [e.value for e in at.exception]  # a one-image dataset crashed the trust tab
        assert any("needs at least 2 images; OI sample has 1 image" in i.value for i in at.main.info)
        # Browse names both classes as the gallery does, not as one comma list of names and synonyms
        assert "tabby / golden retriever" in [c.value for c in at.main.caption], [c.value for c in at.main.caption]
        at.main.button(key="scan_start").click().run()
        assert not at.exception, [e.value for e in at.exception]
        at.main.slider(key="gallery_conf").set_value(0.3).run()
        captions = [c.value for c in at.main.caption if "· true" in c.value]
        assert len(captions) == 1 and captions[0].startswith("tiger cat "), captions  # Lite0 on Chelsea: about 39%
        assert captions[0].endswith(" · true tabby / golden retriever"), captions
        chart = json.loads(next(c.proto.spec for c in at.main.get("plotly_chart")
                                if "Per-class accuracy" in c.proto.spec))  # fmt: skip
        assert sorted(chart["data"][0]["y"]) == ["golden retriever ", "tabby "]  # each label a class of its own
        assert plotly_array(chart["data"][0]["customdata"]).tolist() == [[1, 0], [1, 0]]  # (images, right) per class
        assert chart["data"][0]["textposition"] == ["outside", "outside"]  # a 0% bar's value beside it, not hidden
        at.main.selectbox(key="gallery_true").set_value(207).run()  # the second label
        assert not at.exception and any("**1 mistake**" in m.value for m in at.main.markdown)
        # why: explained beside whichever true class the visitor picks (the first, until they pick another)
        next(b for b in at.main.button if b.key and b.key.startswith("why_")).click().run()
        true_box = at.main.selectbox(key="gallery_true_of_images/0001aa.jpg")
        assert true_box.options == ["tabby", "golden retriever"] and true_box.value == 281
        assert any(m.value.startswith("**Why tiger cat and not tabby?**") for m in at.main.markdown)
        true_box.set_value(207).run()
        assert not at.exception, [e.value for e in at.exception]
        assert any(m.value.startswith("**Why tiger cat and not golden retriever?**") for m in at.main.markdown)
        captions = [c for img in at.main.get("image") for c in (img.proto.imgs[0].caption,) if c]
        assert any(c.startswith("true: golden retriever · ") for c in captions), captions
    finally:
        resources.dataset_settings.clear()


def test_a_thumbnail_is_read_at_its_size_without_the_full_size_cache(tmp_path, monkeypatch):
    """A gallery page of 48 thumbnails decoded each photo at full size into the cache of 32 full-size dataset images,
    pushing out the one a visitor had opened; a thumbnail is now read at its own size (JPEGs at a reduced scale)."""
    from skimage import data

    from dashboard import resources
    from interp.datasets import DatasetRoot

    (tmp_path / "cats").mkdir()
    Image.fromarray(data.chelsea()).resize((2048, 1536)).save(tmp_path / "cats" / "big.jpg", quality=90)
    (tmp_path / "cats" / "broken.jpg").write_bytes(b"not a picture")
    root = DatasetRoot("Big photos", "folder", str(tmp_path))

    def full_size(*args):
        raise AssertionError("a thumbnail read the full-size picture")

    monkeypatch.setattr(resources, "dataset_image", full_size)
    thumb = Image.open(io.BytesIO(resources.dataset_thumbnail(root, "cats/big.jpg")))
    assert thumb.format == "JPEG" and thumb.size == (resources.THUMBNAIL_SIDE, resources.THUMBNAIL_SIDE * 3 // 4)
    reference = Image.fromarray(data.chelsea()).resize(thumb.size, Image.Resampling.LANCZOS)
    assert np.abs(np.asarray(thumb, dtype=float) - np.asarray(reference, dtype=float)).mean() < 8  # the same picture
    assert resources.dataset_thumbnail(root, "cats/broken.jpg") is None
