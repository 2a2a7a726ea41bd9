"""Datasets in every layout, made by the tests; label mapping; scans that resume; bad files; path escapes."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import interp
from interp.datasets import (
    DatasetError,
    DatasetRoot,
    PathEscapeError,
    configured_roots,
    confusion_pairs,
    extract_zip,
    failures,
    load_scan,
    per_class_accuracy,
    prune_uploads,
    read_folder,
    read_imagenet,
    read_openimages,
    safe_child,
    scan,
    summary,
    true_labels,
)
from interp.datasets.readers import imagenet_wnids
from interp.errors import BadSettingError
from tests.conftest import ROOT

WNIDS = imagenet_wnids()


def png(path: Path, colour=(200, 30, 30), size=(40, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


# --- ImageNet, three layouts ---------------------------------------------------------------------------------------


def test_imagenet_folder_per_wnid(tmp_path):
    for wnid, n in ((WNIDS[0], 2), (WNIDS[1], 3)):
        for i in range(n):
            png(tmp_path / wnid / f"{i}.JPEG")
    png(tmp_path / "n99999999" / "x.png")
    (tmp_path / WNIDS[0] / "notes.docx").write_text("x")
    ds = read_imagenet(tmp_path)
    assert ds.label_space == "imagenet" and len(ds) == 5 and len(ds.class_names) == 1000
    assert sorted(i.label for i in ds.items) == [0, 0, 1, 1, 1]
    assert ds.items[0].label != ds.items[1].label  # classes alternate
    assert any("n99999999" in n for n in ds.notes) and any("notes.docx" in n for n in ds.notes)


def test_imagenet_flat_with_loc_solution(tmp_path):
    val = tmp_path / "val"
    for i in (1, 2, 3):
        png(val / f"ILSVRC2012_val_{i:08d}.JPEG")
    (tmp_path / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n"
        f"ILSVRC2012_val_00000001,{WNIDS[281]} 10 10 20 20 {WNIDS[281]} 1 1 5 5\n"
        f"ILSVRC2012_val_00000002,{WNIDS[0]} 1 2 3 4\n"
    )
    ds = read_imagenet(val)
    assert {i.id: i.label for i in ds.items} == {"ILSVRC2012_val_00000001.JPEG": 281, "ILSVRC2012_val_00000002.JPEG": 0}
    assert any("no label" in n for n in ds.notes)  # image 3 is not in the CSV


def test_imagenet_flat_with_devkit_ids_mapped_through_meta(tmp_path):
    """Devkit ids follow the devkit's own order, not timm's: id 1 here is wnid index 278 (kit fox)."""
    from scipy.io import savemat

    val = tmp_path / "val"
    for i in (1, 2):
        png(val / f"ILSVRC2012_val_{i:08d}.JPEG")
    data = tmp_path / "devkit" / "data"
    data.mkdir(parents=True)
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("1\n2\n")
    synsets = np.zeros(3, dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O")])
    synsets[0] = (1, WNIDS[278])
    synsets[1] = (2, WNIDS[0])
    synsets[2] = (1001, "n00001740")  # a non-leaf synset the devkit also lists
    savemat(str(data / "meta.mat"), {"synsets": synsets})
    ds = read_imagenet(val)
    assert [i.label for i in ds.items] == [278, 0]
    assert "kit fox" in ds.items[0].label_name


def test_imagenet_without_labels_says_what_to_add(tmp_path):
    png(tmp_path / "a.jpg")
    with pytest.raises(DatasetError, match="LOC_val_solution.csv"):
        read_imagenet(tmp_path)
    (tmp_path / "ILSVRC2012_validation_ground_truth.txt").write_text("1\n")
    with pytest.raises(DatasetError, match="meta.mat"):
        read_imagenet(tmp_path)


# --- Open Images ---------------------------------------------------------------------------------------------------


def open_images(root: Path, mapping: bool) -> None:
    png(root / "images" / "0001aa.jpg")
    png(root / "images" / "0002bb.jpg")
    png(root / "images" / "0003cc.jpg")
    (root / "oidv7-class-descriptions.csv").write_text("LabelName,DisplayName\n/m/01yrx,Cat\n/m/0bt9lr,Dog\n/m/0k4j,Car\n")
    (root / "validation-annotations-human-imagelabels.csv").write_text(
        "ImageID,Source,LabelName,Confidence\n0001aa,verification,/m/01yrx,1\n0001aa,verification,/m/0bt9lr,0\n"
        "0002bb,verification,/m/0bt9lr,1\n0003cc,verification,/m/0k4j,1\n"
    )
    (root / "validation-annotations-bbox.csv").write_text(
        "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax\n0001aa,human,/m/01yrx,1,0.1,0.6,0.2,0.9\n"
    )
    if mapping:
        (root / "oi_to_imagenet.csv").write_text(f"LabelName,imagenet\n/m/01yrx,281\n/m/0bt9lr,{WNIDS[207]}\n")


def test_open_images_without_mapping_is_browsable_not_scored(tmp_path):
    open_images(tmp_path, mapping=False)
    ds = read_openimages(tmp_path)
    assert ds.label_space == "none" and len(ds) == 3
    first = ds.items[0]
    assert first.id == "0001aa" and first.label_names == ("Cat",) and first.labels == ()  # Dog had confidence 0
    assert first.boxes == (("Cat", 0.1, 0.2, 0.6, 0.9),)
    assert any("not marked right or wrong" in n for n in ds.notes)
    assert ds.label_map(tuple(str(i) for i in range(1000))) is None


def test_open_images_with_a_mapping_is_scored_in_imagenet_indices(tmp_path):
    open_images(tmp_path, mapping=True)
    ds = read_openimages(tmp_path, mapping="oi_to_imagenet.csv")
    assert ds.label_space == "imagenet"
    assert [i.labels for i in ds.items] == [(281,), (207,), ()]
    assert any("1 image has no label" in n for n in ds.notes)
    with pytest.raises(PathEscapeError):
        read_openimages(tmp_path, mapping="../elsewhere.csv")


def test_a_multi_label_image_is_found_under_each_of_its_true_classes():
    """An Open Images photo labelled cat and sofa, called a dog, is a mistake about a sofa as much as about a cat:
    the gallery's true-class filter (and its list of classes) reads every label, not the first only."""
    rows = pd.DataFrame({
        "id": ["a", "b", "c", "d"], "path": ["a", "b", "c", "d"], "label": [281, 207, None, 281],
        "labels": [[281, 831], [207], [], np.array([281, 500, 600, 700])], "label_name": ["tabby"] * 4,
        "pred": [207, 281, 1, 281], "pred_name": ["golden retriever"] * 4, "correct": [False, False, None, True],
        "confidence": [0.9, 0.8, 0.7, 0.95], "error": [None] * 4,
    })  # fmt: skip
    assert [failures(rows, true_class=c)["id"].tolist() for c in (281, 831, 207, 500)] == [["a"], ["a"], ["b"], []]
    assert failures(rows, true_class=831, pred_class=207)["id"].tolist() == ["a"]  # a confusion pair, second label
    classes = true_labels(rows)
    assert sorted(set(classes)) == [207, 281, 500, 600, 700, 831] and set(classes.index) == {0, 1, 3}
    single = rows.drop(columns="labels")  # a scan of one label per image: the label column alone
    assert sorted(set(true_labels(single))) == [207, 281] and failures(single, true_class=207)["id"].tolist() == ["b"]


def test_per_class_accuracy_and_confusion_pairs_count_every_true_class_once():
    """A photo labelled cat and sofa counts for the sofa's accuracy and its confusion pairs too, once each (its first
    label sits in both ``label`` and ``labels``); names come from the model's classes, not the photo's joined names."""
    rows = pd.DataFrame({
        "id": ["a", "b", "c", "d", "e"], "path": list("abcde"), "label": [281, 207, None, 281, 831],
        "labels": [[281, 831], [207], [], [281], [831]],
        "label_name": ["tabby, tabby cat, studio couch", "golden retriever", "unlabelled", "tabby", "studio couch"],
        "pred": [207, 281, 1, 281, 831], "pred_name": ["golden retriever", "tabby", "goldfish", "tabby", "studio couch"],
        "correct": [False, False, None, True, True], "confidence": [0.9, 0.8, 0.7, 0.95, 0.6], "error": [None] * 5,
    })  # fmt: skip
    names = {i: f"name {i}" for i in (1, 207, 281, 831)}
    acc = per_class_accuracy(rows, [names.get(i, "?") for i in range(1000)])
    got = {r.label: (r.label_name, r.images, r.correct) for r in acc.itertuples()}
    assert got == {281: ("name 281", 2, 1), 831: ("name 831", 2, 1), 207: ("name 207", 1, 0)}
    assert acc["accuracy"].is_monotonic_increasing and len(true_labels(rows)) == 5  # a: 281 and 831, once each
    pairs = confusion_pairs(rows)  # names from the rows themselves: predictions and one-label images
    assert {(r.label, r.label_name, r.pred, r.count) for r in pairs.itertuples()} == {
        (281, "tabby", 207, 1), (831, "studio couch", 207, 1), (207, "golden retriever", 281, 1)}
    assert per_class_accuracy(rows)["label_name"].tolist() == ["golden retriever", "tabby", "studio couch"]
    single = rows.drop(columns="labels")  # one label per image: as before, the first label only
    assert per_class_accuracy(single)["images"].sum() == 4 and confusion_pairs(single)["count"].sum() == 2


# --- folders, zips, roots ------------------------------------------------------------------------------------------


def test_folder_labels_match_model_classes_by_name(tmp_path):
    for cls in ("star", "circle"):
        png(tmp_path / cls / "a.png")
    ds = read_folder(tmp_path)
    assert ds.class_names == ("circle", "star") and ds.label_space == "own"
    assert ds.label_map(("circle", "square", "triangle", "star")) == {0: 0, 1: 3}
    assert ds.label_map(("dog", "cat")) is None


def test_zip_upload_skips_what_it_cannot_use(tmp_path):
    buf = io.BytesIO()
    image = io.BytesIO()
    Image.new("RGB", (8, 8)).save(image, "PNG")
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("shapes/star/a.png", image.getvalue())
        z.writestr("shapes/circle/b.png", image.getvalue())
        z.writestr("shapes/readme.docx", b"hello")
        z.writestr("../evil.png", image.getvalue())
        z.writestr("__MACOSX/shapes/._a.png", b"junk")
    folder, skipped = extract_zip(buf.getvalue(), tmp_path)
    assert folder.name == "shapes" and sorted(skipped) == ["../evil.png", "__MACOSX/shapes/._a.png", "shapes/readme.docx"]
    assert not (tmp_path.parent / "evil.png").exists()
    assert read_folder(folder).class_names == ("circle", "star")
    with pytest.raises(DatasetError, match="not a zip"):
        extract_zip(b"not a zip", tmp_path)


def test_old_unpacked_zips_are_deleted_beyond_the_disk_cap(tmp_path):
    def unpacked(name: str, kb: int, hours_ago: float) -> Path:
        folder = tmp_path / name
        (folder / "cls").mkdir(parents=True)
        (folder / "cls" / "a.png").write_bytes(b"x" * kb * 1024)
        when = time.time() - hours_ago * 3600
        os.utime(folder, (when, when))
        return folder

    oldest, old, recent, current = unpacked("a", 40, 5), unpacked("b", 40, 3), unpacked("c", 40, 0.1), unpacked("d", 40, 0)
    deleted = prune_uploads(tmp_path, keep=current, keep_bytes=100 * 1024)
    # 160 KB > 100 KB: the oldest goes; then 120 KB is still over, but "b" is the next oldest; "c" is in use (< 1 h)
    assert deleted == [oldest, old] and recent.exists() and current.exists()
    assert prune_uploads(tmp_path, keep=current, keep_bytes=10 * 1024) == []  # only folders in use are left


def test_unpacking_a_zip_prunes_older_uploads(tmp_path, monkeypatch):
    monkeypatch.setattr("interp.datasets.readers.UPLOADS_KEEP_BYTES", 5000)
    stale = tmp_path / "0123456789abcdef"
    (stale / "cls").mkdir(parents=True)
    (stale / "cls" / "a.png").write_bytes(b"x" * 10_000)  # with the new zip, over the cap: the stale one goes
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    image, buf = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (8, 8)).save(image, "PNG")
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("circle/a.png", image.getvalue())
        z.writestr("star/b.png", image.getvalue())
    folder, _ = extract_zip(buf.getvalue(), tmp_path)
    assert not stale.exists() and read_folder(folder).class_names == ("circle", "star")


def test_path_escapes_are_refused(tmp_path):
    root = tmp_path / "root"
    png(root / "cls" / "a.png")
    outside = png(tmp_path / "secret.png")
    os.symlink(outside, root / "cls" / "link.png")
    os.symlink(tmp_path, root / "up")
    for bad in ("../secret.png", "/etc/passwd", "cls/../../secret.png", "cls/link.png", "up/secret.png"):
        with pytest.raises(PathEscapeError):
            safe_child(root, bad)
    assert safe_child(root, "cls/a.png") == (root / "cls" / "a.png").resolve()
    ds = read_folder(root)
    assert [i.path for i in ds.items] == ["cls/a.png"] and any("link.png" in n for n in ds.notes)


def test_configured_roots_from_env_json_and_toml(tmp_path):
    toml = tmp_path / "datasets.toml"
    toml.write_text('[[datasets]]\nname = "val"\nkind = "imagenet"\nroot = "/data/val"\n')
    names = [r.name for r in configured_roots(tmp_path, environ={"INTERP_DATASETS": str(toml)})]
    assert names == ["Shapes world · test split", "val"]
    inline = json.dumps([{"name": "oi", "kind": "openimages", "root": "/data/oi", "mapping": "m.csv"}])
    roots = configured_roots(tmp_path, [{"name": "mine", "kind": "folder", "root": "/x"}], {"INTERP_DATASETS": inline})
    assert [(r.name, r.mapping) for r in roots][1:] == [("oi", "m.csv"), ("mine", None)]
    with pytest.raises(DatasetError, match="kind"):
        configured_roots(tmp_path, [{"name": "x", "kind": "hdf5", "root": "/x"}], {})
    with pytest.raises(DatasetError, match="does not exist"):
        DatasetRoot("gone", "folder", tmp_path / "gone").open()
    (tmp_path / "photo.png").write_bytes(b"")  # an image named where its folder was meant: not "does not exist"
    for kind in ("folder", "imagenet"):
        with pytest.raises(DatasetError, match=f"folder {tmp_path / 'photo.png'} is a file, not a folder; name the"):
            DatasetRoot("one", kind, tmp_path / "photo.png").open()


def test_a_wrong_dataset_setting_costs_only_itself(tmp_path):
    """One entry of an unknown kind (or a misspelt settings path) took every dataset away, the shapes world too: the
    Failures page showed only the error, and the CLI refused to scan any dataset. The others are kept now, and each
    wrong source or entry is a sentence."""
    from interp.datasets import find_root, read_roots

    good = {"name": "val", "kind": "imagenet", "root": "/data/val"}
    entries = [good, {"name": "x", "kind": "hdf5", "root": "/x"}, "just a string", {"name": "no root"}]
    read = read_roots(tmp_path, environ={"INTERP_DATASETS": json.dumps(entries)})
    assert [r.name for r in read.roots] == ["Shapes world · test split", "val"]
    assert read.problems == ["dataset 'x' has kind 'hdf5'; use one of imagenet, openimages, folder.",
                             "a dataset entry is a table with name, kind and root; got 'just a string'.",
                             "a dataset entry needs name, kind and root; got {'name': 'no root'}."]  # fmt: skip
    with pytest.raises(DatasetError, match="kind 'hdf5'"):  # the strict reading, for the API, still refuses
        configured_roots(tmp_path, environ={"INTERP_DATASETS": json.dumps(entries)})
    environ = {"INTERP_DATASETS": json.dumps(entries)}
    assert find_root("val", tmp_path, environ).root == Path("/data/val")  # the CLI scans a good one
    with pytest.raises(DatasetError, match=r"no dataset is configured as 'x';.* Not read from the settings: dataset "
                       r"'x' has kind 'hdf5'"):  # fmt: skip
        find_root("x", tmp_path, environ)
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00[")
    toml = tmp_path / "empty.toml"
    toml.write_text('title = "no datasets here"\n')
    for value, said in [(str(tmp_path / "nowhere.toml"), "which is not a file"),
                        ('{"a": 1}', 'INTERP_DATASETS has no "datasets" list'),
                        (str(toml), 'empty.toml has no "datasets" list of entries (TOML: [[datasets]] tables)'),
                        ("[1, 2", "INTERP_DATASETS is not valid JSON"),
                        ('{"datasets": 3}', "INTERP_DATASETS does not list datasets"),
                        (str(tmp_path / "binary.json"), "binary.json, which cannot be read as text")]:  # fmt: skip
        read = read_roots(tmp_path, [good], {"INTERP_DATASETS": value})
        assert [r.name for r in read.roots] == ["Shapes world · test split", "val"], value  # the secrets' entry too
        assert len(read.problems) == 1 and said in read.problems[0], (value, read.problems)


def test_a_dataset_name_is_found_whatever_its_case_and_a_near_miss_says_which_one_it_means(tmp_path):
    from interp.datasets import find_root

    configured = [{"name": "ImageNet val", "kind": "imagenet", "root": "/data/val"},
                  {"name": "ImageNet train", "kind": "imagenet", "root": "/data/t"}]  # fmt: skip
    environ = {"INTERP_DATASETS": json.dumps(configured)}
    assert find_root("imagenet VAL ", tmp_path, environ).name == "ImageNet val"
    assert find_root("shapes world · test split", tmp_path, environ).kind == "shapes"
    for typed, meant in [("shapes", "Shapes world · test split"), ("Imagenet vla", "ImageNet val")]:
        with pytest.raises(DatasetError, match=f"no dataset is configured as '{typed}'; did you mean '{meant}'"):
            find_root(typed, tmp_path, environ)
    with pytest.raises(DatasetError) as said:  # two datasets it could mean: both listed, neither guessed
        find_root("imagenet", tmp_path, environ)
    assert "did you mean" not in str(said.value) and "'ImageNet val', 'ImageNet train'" in str(said.value)


# --- scans ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes_folder(tmp_path_factory) -> Path:
    from interp.shapes import write_image_folder

    root = tmp_path_factory.mktemp("shapes")
    write_image_folder(root, 48, seed=7, split="test")
    (root / "circle" / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "star" / "empty.jpg").write_bytes(b"")
    return root


def test_scan_rows_labels_and_unreadable_files(shapes_folder, tmp_path):
    model = interp.load_model("shapes_cnn")
    ds = read_folder(shapes_folder)
    result = scan(model, ds, tmp_path / "s", batch_size=16, workers=0)
    assert result.complete and result.scored and result.rows == 50 and result.skipped == 2
    meta, rows = load_scan(tmp_path / "s")
    assert meta["model"] == "shapes_cnn" and len(rows) == 50 and rows["id"].is_unique
    errors = rows[rows["error"].notna()]
    assert sorted(errors["path"]) == ["circle/broken.png", "star/empty.jpg"]
    ok = rows[rows["error"].isna()].iloc[0]
    assert model.class_names[ok["label"]] == ok["label_name"]  # folder index → model index by name
    assert ok["pred"] == ok["top5"][0] and abs(ok["confidence"] - ok["top5_prob"][0]) < 1e-6
    assert np.isclose(ok["loss"], -np.log(ok["true_prob"]), atol=1e-5) and ok["correct"] == (ok["pred"] == ok["label"])
    s = summary(rows)
    assert s["scored"] == 48 and s["unreadable"] == 2
    wrong = failures(rows, 0.0)
    assert (wrong["correct"] == False).all() and wrong["confidence"].is_monotonic_decreasing
    pairs = confusion_pairs(rows)
    assert pairs["count"].sum() == len(wrong)
    acc = per_class_accuracy(rows)
    assert acc["images"].sum() == 48 and acc["accuracy"].is_monotonic_increasing
    # the columns a count needs, read alone: the same rows, the same counts and the same mistakes
    _, few = load_scan(tmp_path / "s", columns=["error", "correct", "confidence"])
    assert list(few.columns) == ["id", "error", "correct", "confidence"]
    assert few["id"].tolist() == rows["id"].tolist() and summary(few) == s
    assert failures(few, 0.0)["id"].tolist() == wrong["id"].tolist()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "scan.json").write_text(json.dumps({"model": "shapes_cnn"}))
    assert list(load_scan(empty, columns=["id", "correct"])[1].columns) == ["id", "correct"]


@pytest.mark.parametrize("table", [failures, summary, confusion_pairs, per_class_accuracy])
def test_the_tables_take_a_scans_rows_and_say_so_of_anything_else(table, tmp_path):
    """A DataFrame without a scan's columns was pandas' ``KeyError: 'error'``; the pair load_scan returns, passed
    whole, an ``AttributeError``. The columns a table reads alone still do (a count reads three)."""
    pairs = pd.DataFrame({"a": [1]}), ({"model": "m"}, pd.DataFrame({"id": [1]})), [1, 2]
    for wrong, said in zip(pairs, ["these rows have no ", "meta, rows = load_scan(folder), then pass rows",
                                   "got [1, 2]"], strict=True):  # fmt: skip
        with pytest.raises(BadSettingError, match=re.escape(said)):
            table(wrong)
    few = pd.DataFrame({"id": [1, 2], "error": [None, None], "correct": [True, False], "confidence": [0.9, 0.8]})
    assert failures(few)["id"].tolist() == [2] and summary(few)["mistakes"] == 1
    with pytest.raises(BadSettingError, match="these rows have no label column"):
        failures(few, true_class=3)


def _row_by_definition(item, p: np.ndarray, mapping: dict, names) -> dict:
    """A scan's row for one image, straight from each column's definition (the per-image code scans ran before)."""
    top = np.argsort(-p, kind="stable")[:5]
    labels = [mapping[label] for label in item.labels if label in mapping]
    pred = int(top[0])
    true_prob = float(max(p[i] for i in labels)) if labels else None
    return {"id": item.id, "path": item.path, "label": labels[0] if labels else None, "labels": labels,
            "label_name": item.label_name, "pred": pred, "pred_name": names[pred], "top5": top.tolist(),
            "top5_prob": [float(p[i]) for i in top], "confidence": float(p[pred]), "true_prob": true_prob,
            "loss": -np.log(max(true_prob, 1e-12)) if labels else None,
            "entropy": float(-(p * np.log(np.clip(p, 1e-12, None))).sum()),
            "correct": pred in labels if labels else None, "error": None}  # fmt: skip


def check_rows_by_definition(classes: int, device: str) -> None:
    """Rows computed for a whole batch, scored on ``device``, equal each row by its definition."""
    import pyarrow as pa
    import torch

    from interp.datasets.base import Item
    from interp.datasets.rows import label_matrix, model_labels, score, scored_rows

    rng = np.random.default_rng(classes)
    n = 120
    logits = torch.tensor(rng.normal(size=(n, classes)) * rng.choice([1, 30, 300], size=(n, 1)), dtype=torch.float32)
    logits[:15] = logits[:15].round()  # ties
    logits[15:20] = 0.0  # every class tied
    drawn = [rng.choice(classes + 2, rng.integers(0, 3), replace=False) for _ in range(n)]
    items = [Item(id=f"i{i}", path=f"d/{i}.jpg", labels=tuple(int(c) for c in cs)) for i, cs in enumerate(drawn)]
    mapping = {c: (c * 7) % classes for c in range(classes)}  # classes and classes + 1: labels the model lacks
    names = [f"class {c}" for c in range(classes)]
    labels = model_labels(items, mapping)
    scores = score(logits.to(device), label_matrix(labels))
    batch = pa.Table.from_batches([scored_rows(items, labels, scores, names)]).to_pylist()
    probs = logits.softmax(-1).numpy()
    assert any(len(row) > 1 for row in labels) and any(not row for row in labels)
    for got, item, p in zip(batch, items, probs, strict=True):
        want = _row_by_definition(item, p, mapping, names)
        assert got.keys() == want.keys()
        for key, value in want.items():
            if isinstance(value, float) or key == "top5_prob":
                np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-6, err_msg=f"{item.id} {key}")
            else:
                assert got[key] == value, (item.id, key, got[key], value)


@pytest.mark.parametrize("classes", [3, 6, 1000])
def test_a_batch_of_rows_equals_each_row_by_its_definition(classes):
    """Rows are computed for a whole batch (the top classes on the model's device, only a few numbers an image
    leaving it); each must equal the row by definition, also where classes tie (the lower index first; tied at the
    fifth place too), where probabilities underflow to 0, for images with several true classes, one the model does
    not have, or none. (On a GPU: ``tests/test_gpu.py``.)"""
    check_rows_by_definition(classes, "cpu")


def test_a_scan_faster_than_a_part_a_second_writes_a_part_a_second_not_one_a_batch(shapes_folder, tmp_path,
                                                                                     monkeypatch):  # fmt: skip
    """At a GPU's speed a part every 256 rows was forty files a second; a part now waits for
    ``FLUSH_MIN_SECONDS`` as well as ``FLUSH_ROWS``."""
    from interp.datasets import scanner

    model = interp.load_model("shapes_cnn")
    monkeypatch.setattr(scanner, "FLUSH_ROWS", 8)
    monkeypatch.setattr(scanner, "FLUSH_MIN_SECONDS", 3600.0)
    scan(model, read_folder(shapes_folder), tmp_path / "slow_parts", batch_size=8, workers=0)
    assert len(list((tmp_path / "slow_parts").glob("part-*.parquet"))) == 1
    monkeypatch.setattr(scanner, "FLUSH_MIN_SECONDS", 0.0)
    scan(model, read_folder(shapes_folder), tmp_path / "parts", batch_size=8, workers=0)
    assert len(list((tmp_path / "parts").glob("part-*.parquet"))) == 7  # 50 images, 8 a batch
    assert len(load_scan(tmp_path / "parts")[1]) == len(load_scan(tmp_path / "slow_parts")[1]) == 50


def test_scan_stops_when_asked_and_resumes_without_duplicates(shapes_folder, tmp_path):
    model = interp.load_model("shapes_cnn")
    ds = read_folder(shapes_folder)
    calls = []
    first = scan(model, ds, tmp_path / "s", batch_size=8, workers=0, should_stop=lambda: calls.append(1) or len(calls) >= 2)
    assert not first.complete and first.rows == 16
    second = scan(model, ds, tmp_path / "s", batch_size=8, workers=0)
    assert second.complete and second.written == 50 - 16
    _, rows = load_scan(tmp_path / "s")
    assert len(rows) == 50 and rows["id"].is_unique


def test_scan_resumes_after_a_kill(shapes_folder, tmp_path):
    """A scan process killed with SIGKILL mid-way leaves whole parts only; the next run finishes the rest."""
    out = tmp_path / "killed"
    script = f"""
import time, interp
import interp.datasets.scanner as S
from interp.datasets import read_folder, scan
S.FLUSH_ROWS, S.FLUSH_MIN_SECONDS = 4, 0.0
model = interp.load_model("shapes_cnn")
def slow(p):
    print(p.done, flush=True)
    time.sleep(0.3)
scan(model, read_folder(__import__("pathlib").Path({str(shapes_folder)!r})), __import__("pathlib").Path({str(out)!r}),
     batch_size=4, workers=0, progress=slow)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    for line in proc.stdout:
        if int(line) >= 20:
            proc.kill()
            break
    proc.wait()
    written = len(list(out.glob("part-*.parquet")))
    assert 0 < written < 13
    result = scan(interp.load_model("shapes_cnn"), read_folder(shapes_folder), out, batch_size=8, workers=0)
    assert result.complete
    _, rows = load_scan(out)
    assert len(rows) == 50 and rows["id"].is_unique and not list(out.glob("*.tmp-*"))


def test_scan_refuses_a_folder_of_another_model(shapes_folder, tmp_path):
    ds = read_folder(shapes_folder)
    scan(interp.load_model("shapes_cnn"), ds, tmp_path / "s", limit=4, workers=0)
    with pytest.raises(DatasetError, match="choose another output folder"):
        scan(interp.load_model("test_resnet", "random"), ds, tmp_path / "s", limit=4, workers=0)


def test_scan_with_loader_workers_equals_in_process(shapes_folder, tmp_path):
    model = interp.load_model("shapes_cnn")
    ds = read_folder(shapes_folder)
    scan(model, ds, tmp_path / "a", batch_size=16, workers=0)
    scan(model, ds, tmp_path / "b", batch_size=16, workers=2)
    a, b = load_scan(tmp_path / "a")[1].set_index("id"), load_scan(tmp_path / "b")[1].set_index("id")
    assert (a.loc[b.index, "pred"].fillna(-1) == b["pred"].fillna(-1)).all()


# ------------------------------------------------------------------------------- one dataset type, readers by kind


def test_a_new_layout_is_one_reader_class(tmp_path, monkeypatch):
    """A reader registered under a new kind opens DatasetRoots of that kind and becomes a kind the settings accept."""
    from interp.datasets import READERS, Dataset, DatasetRoot, Item, Reader, configured_roots, kinds, reader

    monkeypatch.setattr("interp.datasets.roots.READERS", dict(READERS))  # registered for this test only
    from interp.datasets import roots

    @reader
    class ListReader(Reader):
        kind = "list"
        describe = "a text file listing image paths"

        def open(self, root, progress=None):
            paths = (root.root / "list.txt").read_text().split()
            return Dataset(root.name, self.kind, root.root, tuple(Item(p, p) for p in paths), (), "none")

    assert roots.READERS["list"].__class__ is ListReader and "list" in kinds()
    (tmp_path / "list.txt").write_text("a.png b.png")
    ds = DatasetRoot("mine", "list", tmp_path).open()
    assert [it.path for it in ds.items] == ["a.png", "b.png"]
    entry = {"name": "mine", "kind": "list", "root": str(tmp_path)}
    assert configured_roots(tmp_path / "cache", [entry], environ={})[-1].kind == "list"
    with pytest.raises(DatasetError, match="use one of imagenet, openimages, folder"):
        DatasetRoot("odd", "odd", tmp_path).open()


def test_the_scan_folder_depends_on_the_data_not_the_name(tmp_path):
    from interp.datasets import DatasetRoot, scan_folder

    a = scan_folder(tmp_path, "m@1", DatasetRoot("ImageNet val", "imagenet", tmp_path / "val"))
    renamed = scan_folder(tmp_path, "m@1", DatasetRoot("ImageNet (validation)", "imagenet", tmp_path / "val"))
    other = scan_folder(tmp_path, "m@1", DatasetRoot("ImageNet val", "imagenet", tmp_path / "val2"))
    model = scan_folder(tmp_path, "m@2", DatasetRoot("ImageNet val", "imagenet", tmp_path / "val"))
    assert a == renamed and len({a, other, model}) == 3
    assert a.is_relative_to(tmp_path / "scans")


def test_a_reduced_precision_scan_records_its_agreement_with_fp32_and_keeps_its_precision(tmp_path):
    import interp
    from interp.datasets import load_scan, read_folder, scan
    from interp.shapes.export import write_image_folder

    write_image_folder(tmp_path / "world", 24, seed=5, split="test")
    ds = read_folder(tmp_path / "world")
    model = interp.load_model("shapes_cnn", device="cpu")
    out = tmp_path / "bf16"
    scan(model, ds, out, workers=0, batch_size=8, precision="bf16")
    meta, rows = load_scan(out)
    assert meta["precision"] == "bf16"
    check = meta["precision_check"]
    assert check["images"] == 24 and 0.9 <= check["top1_agreement"] <= 1.0  # bf16 rarely flips a top-1 class
    scan(model, ds, tmp_path / "fp32", workers=0, batch_size=8)
    _, reference = load_scan(tmp_path / "fp32")
    same = (rows.sort_values("id").pred.to_numpy() == reference.sort_values("id").pred.to_numpy()).mean()
    assert check["top1_agreement"] == pytest.approx(same)  # the recorded agreement is the real one
    assert "precision_check" not in load_scan(tmp_path / "fp32")[0]
    with pytest.raises(DatasetError, match="holds a scan in bf16"):
        scan(model, ds, out, workers=0, precision="fp32")
    with pytest.raises(Exception, match="precision is one of"):
        scan(model, ds, tmp_path / "x", precision="fp8")


def test_precision_scope_leaves_nothing_behind():
    import torch

    from interp.models.precision import default_precision, precision_scope

    assert default_precision("cpu") == "fp32"
    x = torch.randn(4, 8)
    w = torch.randn(8, 8)
    with precision_scope("cpu", "bf16"):
        assert (x @ w).dtype == torch.bfloat16
    assert (x @ w).dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
    with precision_scope("cpu", "tf32"):  # TF32 is a GPU format: on the CPU, fp32
        assert (x @ w).dtype == torch.float32


@pytest.mark.parametrize("ahead", [False, True])
def test_threaded_reading_yields_every_batch_once_in_order(ahead):
    """A scan without loader processes reads with threads, one batch ahead on a GPU: every item once, in order."""
    from interp.datasets.batches import _threaded

    class Items:
        def __len__(self):
            return 23

        def __getitem__(self, i):
            time.sleep(0.001 * (i % 3))  # finishing out of order must not reorder
            return i

    batches = list(_threaded(Items(), list, 5, ahead))
    assert batches == [list(range(s, min(s + 5, 23))) for s in range(0, 23, 5)]


def test_map_together_computes_each_item_once_in_order_on_every_thread():
    """A scan's reading (and a Ray actor's on a CPU node): this thread and the pool's helpers take items in turn;
    every item is computed once, the results come back in order, and an error reaches the caller."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from interp.runtime import map_together

    calls, lock, here, both = [], threading.Lock(), threading.get_ident(), threading.Event()

    def slow_square(x: int) -> int:
        with lock:
            calls.append((x, threading.get_ident()))
            if here in {t for _, t in calls} and len({t for _, t in calls}) >= 2:
                both.set()
        both.wait(timeout=10)  # each thread holds its first item until this one and a helper have taken one
        return x * x

    with ThreadPoolExecutor(3) as pool:
        assert map_together(slow_square, list(range(40)), pool, 3) == [x * x for x in range(40)]
        assert sorted(x for x, _ in calls) == list(range(40))
        threads = {t for _, t in calls}
        assert threading.get_ident() in threads and len(threads) >= 2
        assert map_together(slow_square, [], pool, 3) == []
        with pytest.raises(ZeroDivisionError):
            map_together(lambda x: 1 // x, [3, 2, 1, 0, 5, 6], pool, 2)
    calls.clear()
    assert map_together(slow_square, [1, 2, 3], None, 0) == [1, 4, 9]
    assert {t for _, t in calls} == {threading.get_ident()}


def test_the_api_takes_a_dataset_as_a_root_or_a_folders_path_too(tmp_path):
    """``scan(model, "photos/", out)`` failed on ``'str' object has no attribute 'name'``, a :class:`DatasetRoot`
    on ``len()``, and ``DatasetRoot("val", "imagenet", "/data/val")`` (the README's own example, a string root) on
    ``str / str`` once opened. Each names the same images as the opened dataset now; anything else is a sentence."""
    from interp.concepts import file_activations
    from interp.datasets import as_dataset, find_root, read_folder, scan
    from interp.evaluation import evaluate_dataset

    for c in ("a", "b"):
        (tmp_path / "photos" / c).mkdir(parents=True)
        Image.fromarray(np.full((40, 40, 3), 60 if c == "a" else 200, np.uint8)).save(tmp_path / "photos" / c / "x.png")
    opened = read_folder(tmp_path / "photos")
    root = DatasetRoot("mine", "folder", str(tmp_path / "photos"))  # a string, as people write it
    assert root.root == tmp_path / "photos" and root == DatasetRoot("mine", "folder", tmp_path / "photos")
    for given in (opened, root, str(tmp_path / "photos"), tmp_path / "photos"):
        assert [i.path for i in as_dataset(given).items] == [i.path for i in opened.items] == ["a/x.png", "b/x.png"]
    model = interp.load_model("shapes_cnn")
    forms = (opened, root, tmp_path / "photos")
    summaries = [scan(model, given, tmp_path / f"scan{k}") for k, given in enumerate(forms)]
    assert {(s.rows, s.total) for s in summaries} == {(2, 2)}
    by_path = file_activations(model, "layer2", str(tmp_path / "photos"))
    assert by_path.names == file_activations(model, ["layer2"], opened).names and not by_path.failed
    table = evaluate_dataset(model, root, "saliency", tmp_path / "eval", n=1, steps=4)
    assert list(table["method"]) == ["saliency"]
    with pytest.raises(DatasetError, match="^a dataset is a Dataset, a DatasetRoot or a folder's path, not list.$"):
        scan(model, ["a/x.png"], tmp_path / "scan9")
    with pytest.raises(DatasetError, match="^dataset 'x' names no folder \\(root None\\); give the folder"):
        DatasetRoot("x", "folder", None)
    # a path of None or blank text: Python's TypeError, or this folder ("" read as ".") where a scan was written
    meta, rows = load_scan(tmp_path / "scan0", columns="confidence")  # one column's name: not 'c', 'o', 'n'…
    assert list(rows.columns) == ["id", "confidence"] and len(rows) == 2
    for call, what in ((lambda: read_folder(None), "the dataset folder"), (lambda: load_scan(None), "the scan folder"),
                       (lambda: scan(model, opened, " "), "the scan folder"),
                       (lambda: opened.path_of(None), "an image of the dataset")):  # fmt: skip
        with pytest.raises(DatasetError, match=f"^{what} is a path \\(text or a Path\\); got "):
            call()
    with pytest.raises(DatasetError, match="^a dataset is named by text, one of .*; got None.$"):
        find_root(None, tmp_path)
