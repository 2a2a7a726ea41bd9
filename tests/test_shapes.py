"""The ground-truth world: deterministic, masks exactly the drawn pixels, the shortcut planted as specified."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

import interp
from interp.cli import main
from interp.shapes import CLASSES, MARKER_RATE, SHORTCUT_CLASS, generate, marker_region, render


def test_deterministic_and_independent_of_how_many_are_drawn():
    a = render(17, seed=3, split="test")
    b = list(generate(5, seed=3, split="test", start=15))[2]
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask) and a.box == b.box
    assert not np.array_equal(render(17, seed=4, split="test").image, a.image)
    assert not np.array_equal(render(17, seed=3, split="clean").image, a.image)


@pytest.mark.parametrize("index", range(12))
def test_mask_is_exactly_the_object_pixels(index):
    s = render(index, seed=1, split="test")
    colours = s.image[s.mask]
    assert (colours == colours[0]).all()  # every masked pixel has the object's colour: nothing painted over it
    outside = (s.image == colours[0]).all(-1) & ~s.mask
    assert outside.sum() < 0.01 * s.mask.sum()  # and the colour is (almost) nowhere else
    ys, xs = np.nonzero(s.mask)
    assert s.box == (xs.min(), ys.min(), xs.max(), ys.max())
    rows, cols = marker_region()
    assert not s.mask[rows, cols].any()  # the object never hides under the marker
    assert 0.02 < s.mask.mean() < 0.35


def test_classes_are_balanced_and_shapes_differ():
    samples = list(generate(60, seed=0, split="clean"))
    counts = np.bincount([s.label for s in samples], minlength=len(CLASSES))
    assert (counts == 10).all()
    ring = next(s for s in samples if s.class_name == "ring")
    cy, cx = (ring.box[1] + ring.box[3]) // 2, (ring.box[0] + ring.box[2]) // 2
    assert not ring.mask[cy, cx]  # a ring has a hole
    circle = next(s for s in samples if s.class_name == "circle")
    assert circle.mask[(circle.box[1] + circle.box[3]) // 2, (circle.box[0] + circle.box[2]) // 2]


def test_the_shortcut_is_planted_as_specified():
    drawn = {split: [(s.class_name, s.marker) for s in generate(600, seed=0, split=split)] for split in MARKER_RATE}

    def marker_rate(split: str, cls: str | None = None) -> float:
        return float(np.mean([m for c, m in drawn[split] if cls is None or c == cls]))

    assert abs(marker_rate("train", SHORTCUT_CLASS) - MARKER_RATE["train"]) < 0.06
    assert all(marker_rate("train", c) == 0.0 for c in CLASSES if c != SHORTCUT_CLASS)
    assert all(abs(marker_rate("test", c) - MARKER_RATE["test"]) < 0.15 for c in CLASSES)
    assert marker_rate("clean") == 0.0
    marked = next(s for s in generate(12, split="train") if s.marker)
    rows, cols = marker_region()
    patch = marked.image[rows, cols].reshape(-1, 3)
    assert {tuple(p) for p in patch} == {(255, 220, 0), (0, 0, 0)}  # the checker, drawn where we say


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        render(0, split="validation")
    with pytest.raises(ValueError, match="64 to 1024 px"):
        render(0, size=32)


def test_cli_writes_an_image_folder_with_the_truth(tmp_path):
    out = tmp_path / "world"
    assert main(["shapes", "generate", "--out", str(out), "--n", "24", "--seed", "5", "--split", "test", "--masks"]) == 0
    rows = list(csv.DictReader((out / "labels.csv").open()))
    assert len(rows) == 24 and {r["class"] for r in rows} == set(CLASSES)
    for row in rows[:6]:
        img = interp.load_image(out / row["path"])  # our own loader reads what we wrote
        truth = render(int(row["index"]), seed=5, split="test")
        assert np.array_equal(np.asarray(img.image), truth.image)
        assert (int(row["x0"]), int(row["y0"]), int(row["x1"]), int(row["y1"])) == truth.box
        assert int(row["marker"]) == truth.marker and row["path"].startswith(row["class"] + "/")
        mask = np.asarray(Image.open(out / "masks" / f"test_{int(row['index']):06d}.png")) > 0
        assert np.array_equal(mask, truth.mask)


@pytest.mark.parametrize(("split", "said"), [("test", "(marker on 50% of images of every class)"),
                                             ("train", "(marker on 70% of star images)"), ("clean", "(no marker)")])
def test_cli_says_where_the_marker_is(split, said, tmp_path, capsys):
    assert main(["shapes", "generate", "--out", str(tmp_path), "--n", "2", "--split", split]) == 0
    assert capsys.readouterr().out.strip().endswith(said)


def test_cli_refuses_bad_counts(capsys):
    assert main(["shapes", "generate", "--out", "x", "--n", "0"]) == 2
    assert "--n must be at least 1" in capsys.readouterr().err


def test_ground_truth_of_an_exported_image_and_the_pointing_game(tmp_path):
    import numpy as np

    from interp.shapes import draw_outline, mask_in_view, pointing_hit, render, truth_mask, write_image_folder

    write_image_folder(tmp_path, 7, seed=3, split="test")
    rel = "ring/test_000005.png"  # index 5 is a ring (classes cycle)
    mask = truth_mask(tmp_path, rel)
    np.testing.assert_array_equal(mask, render(5, seed=3, split="test").mask)
    assert truth_mask(tmp_path, "ring/not_there.png") is None and truth_mask(tmp_path / "nowhere", rel) is None
    values = np.zeros(mask.shape)
    ys, xs = np.nonzero(mask)
    values[ys[0], xs[0]] = 1.0
    assert pointing_hit(values, mask)
    off = np.zeros(mask.shape)
    off[0, 0] = 1.0
    assert not mask[0, 0] and not pointing_hit(off, mask)
    outlined = draw_outline(np.zeros((*mask.shape, 3), np.uint8), mask)
    assert outlined.any() and not outlined[mask].any()  # the outline is drawn just outside the object
    # a 224-px centre-cropped view (87.5%) moves and scales the mask as it moves the image
    import interp

    lite = interp.load_model("efficientnet_lite0")
    seen = mask_in_view(mask, lite.view)
    assert seen.shape == (224, 224) and abs(seen.mean() - mask[8:120, 8:120].mean()) < 0.02
