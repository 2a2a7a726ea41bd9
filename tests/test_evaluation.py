"""Trust scores against known answers (#21): deletion and insertion on a linear model are computable by hand."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

import interp
from interp.attribution import attribute
from interp.evaluation import deletion_insertion, random_floor, random_map
from tests.test_attribution import linear_model


@pytest.fixture(scope="module")
def linear():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(3, 192, generator=gen)
    x = torch.randn(3, 8, 8, generator=gen)
    return linear_model(w), w, x


@pytest.mark.parametrize("steps", [4, 16, 64])
def test_deletion_and_insertion_of_w_times_x_equal_their_closed_form(linear, steps):
    """Logit k = w_k·x + b_k. Removing pixel p replaces its 3 values by the replacement's (black: -1 after this
    model's normalisation), so after removing the set R the logit is b + Σ_{p∉R} c_p + Σ_{p∈R} e_p, with c_p the
    pixel's contribution w·x and e_p the replacement's w·(-1); insertion is the mirror image."""
    model, w, x = linear
    target = 1
    contrib = (w[target].view(3, 8, 8) * x).sum(0)  # the map w * x, per pixel
    empty = (w[target].view(3, 8, 8) * -1.0).sum(0)
    bias = float(model._module[1].bias[target])
    curves = deletion_insertion(model, x, contrib.numpy(), target, steps=steps, replacement="black", score="logit")
    order = torch.sort(-contrib.flatten().double(), stable=True).indices
    c, e = contrib.flatten()[order].double(), empty.flatten()[order].double()
    counts = [round(64 * k / steps) for k in range(steps + 1)]
    deletion = [bias + float(c[n:].sum() + e[:n].sum()) for n in counts]
    insertion = [bias + float(c[:n].sum() + e[n:].sum()) for n in counts]
    np.testing.assert_allclose(curves.deletion, deletion, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(curves.insertion, insertion, rtol=1e-5, atol=1e-5)
    fractions = np.asarray(counts) / 64
    assert curves.deletion_auc == pytest.approx(np.trapezoid(deletion, fractions), rel=1e-5, abs=1e-5)
    assert curves.insertion_auc == pytest.approx(np.trapezoid(insertion, fractions), rel=1e-5, abs=1e-5)
    # the faithful map beats random ones: lower deletion, higher insertion
    for seed in range(5):
        floor = deletion_insertion(model, x, random_map((8, 8), seed), target, steps=steps, replacement="black",
                                   score="logit")  # fmt: skip
        assert curves.deletion_auc < floor.deletion_auc and curves.insertion_auc > floor.insertion_auc


@pytest.mark.parametrize("block,steps", [(2, 4), (2, 16), (3, 5)])
def test_deletion_in_squares_equals_its_closed_form(linear, block, steps):
    """The same linear model, with the 8 × 8 input cut into squares of ``block`` pixels (3: the last row and column
    of squares are 2 pixels wide). Squares are ranked by the map's mean over them and removed whole; the curves'
    x axis is the share of pixels removed, so narrower edge squares count for less."""
    model, w, x = linear
    target = 2
    contrib = (w[target].view(3, 8, 8) * x).sum(0).double()
    empty = (w[target].view(3, 8, 8) * -1.0).sum(0).double()
    bias = float(model._module[1].bias[target])
    curves = deletion_insertion(model, x, contrib.float().numpy(), target, steps=steps, replacement="black",
                                score="logit", block=block)  # fmt: skip
    side = -(-8 // block)
    squares = [(r, c) for r in range(side) for c in range(side)]  # row-major: ties keep this order
    pixels = {q: [(i, j) for i in range(8) for j in range(8) if (i // block, j // block) == q] for q in squares}
    means = [float(np.mean([contrib[p] for p in pixels[q]])) for q in squares]
    order = sorted(range(len(squares)), key=lambda k: -means[k])  # Python's sort is stable too
    deletion, insertion, shares = [], [], []
    for k in range(steps + 1):
        gone = {p for q in order[: round(len(squares) * k / steps)] for p in pixels[squares[q]]}
        kept = [p for p in np.ndindex(8, 8) if p not in gone]
        deletion.append(bias + sum(float(contrib[p]) for p in kept) + sum(float(empty[p]) for p in gone))
        insertion.append(bias + sum(float(contrib[p]) for p in gone) + sum(float(empty[p]) for p in kept))
        shares.append(len(gone) / 64)
    np.testing.assert_allclose(curves.deletion, deletion, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(curves.insertion, insertion, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(curves.fractions, shares)
    assert curves.block == block
    assert curves.deletion_auc == pytest.approx(np.trapezoid(deletion, shares), rel=1e-5, abs=1e-5)


def test_the_object_mask_beats_a_random_map_more_often_in_squares():
    """The shapes world knows the answer: a map that is the object's mask is right, so a fair score must rank it
    above a random map. Removing scattered single pixels does so by deletion on 23 of 30 images: blurring random
    pixels all over wrecks the picture as fast as blurring the object. Removing 16-pixel squares, the default, ranks
    the mask first on 28 of 30 (mean deletion 0.270 against the random map's 0.514; single pixels 0.335 against
    0.497)."""
    from PIL import Image

    from interp.evaluation import default_block
    from interp.shapes import mask_in_view
    from interp.shapes.generator import render

    model = interp.load_model("shapes_cnn")
    assert default_block(model.data_config["input_size"][-2:]) == 16
    wins = {1: 0, None: 0}
    for index in range(30):
        sample = render(index, seed=1000, split="test")
        x = model.preprocess(Image.fromarray(sample.image))
        mask = mask_in_view(sample.mask, model.view).astype(np.float32)
        for block in wins:
            right = deletion_insertion(model, x, mask, sample.label, block=block)
            floor = deletion_insertion(model, x, random_map(mask.shape, 0), sample.label, block=block)
            wins[block] += right.deletion_auc < floor.deletion_auc
    assert wins[None] >= 27 and wins[None] > wins[1] + 2, wins


def test_scores_are_deterministic_and_bad_input_is_a_sentence(lite0):
    x = lite0.preprocess(interp.load_sample("chelsea").image)
    cam = attribute(lite0, x, "grad_cam", 282).map
    # The batch is pinned: left to itself it follows the memory free at each call (7, then 8 inputs in one run),
    # and another batch moves a score in its 7th digit, which no reader sees; the cache keeps a page's scores as
    # they were.
    first = deletion_insertion(lite0, x, cam, 282, steps=8, batch=8)
    again = deletion_insertion(lite0, x, cam, 282, steps=8, batch=8)
    np.testing.assert_array_equal(first.deletion, again.deletion)
    np.testing.assert_array_equal(first.insertion, again.insertion)
    auto = deletion_insertion(lite0, x, cam, 282, steps=8)
    np.testing.assert_allclose(auto.deletion, first.deletion, rtol=1e-5, atol=1e-7)
    assert first.deletion[0] == pytest.approx(first.insertion[-1], rel=1e-4)  # both are the untouched image
    assert np.array_equal(random_map((4, 4), 3), random_map((4, 4), 3))
    floor = random_floor(lite0, x, 282, steps=8)
    assert first.block == floor.block == 16 and floor.maps == 5  # 224-pixel input: the default squares
    # Revealing Grad-CAM's region first restores "tiger cat" far sooner than revealing random squares: by more than
    # twice the random maps' spread. By deletion it is within their spread on this photo, whose face fills the frame.
    assert first.insertion_auc > floor.insertion_auc + 2 * floor.insertion_spread
    assert abs(first.deletion_auc - floor.deletion_auc) < 2 * floor.deletion_spread
    # Single pixels are worse than undecided by deletion: scattered random pixels replaced by blur wreck the fur's
    # texture faster than removing the cat does, so every random map "beats" Grad-CAM.
    pixels = random_floor(lite0, x, 282, steps=8, block=1)
    assert deletion_insertion(lite0, x, cam, 282, steps=8, block=1).deletion_auc > pixels.deletion_auc
    for kwargs, says in [
        ({"saliency": np.zeros((7, 7))}, "give a map of the input's size"),
        ({"steps": 0}, "steps must be 1 to 1000"),
        ({"replacement": "purple"}, "not one of blur, mean, black"),
        ({"target": 1000}, "not a class"),
        ({"block": 0}, "block must be 1 to 224 pixels"),
        ({"block": 225}, "block must be 1 to 224 pixels"),
        ({"block": 2.5}, "block must be a whole number of pixels, got 2.5."),  # was truncated to 2 without a word
        ({"steps": 2.5}, "steps must be 1 to 1000 \\(a whole number\\), got 2.5."),  # failed inside the pass
    ]:
        args = {"saliency": cam, "target": 282, **kwargs}
        with pytest.raises(ValueError, match=says):
            deletion_insertion(lite0, x, args.pop("saliency"), args.pop("target"), **args)


def test_the_randomisation_check_flags_guided_backprop_and_passes_saliency_and_grad_cam():
    """Adebayo et al. 2018 on the shapes world: Guided Backprop keeps its map while the network is destroyed layer by
    layer; Saliency and Grad-CAM do not. The shared model is left as it was."""
    from interp.evaluation import cascade_layers, cascading_randomisation

    model = interp.load_model("shapes_cnn")
    assert cascade_layers(model) == ["fc", "layer4", "layer3", "layer2", "layer1", "bn1", "conv1"]
    before = model.weights.fingerprint
    with model.exclusive() as net:
        state = {k: v.clone() for k, v in net.state_dict().items()}
    x = model.preprocess(interp.load_sample("shapes_star").image)
    checks = {m: cascading_randomisation(model, x, m, 3) for m in ("guided_backprop", "saliency", "grad_cam")}
    assert checks["guided_backprop"].flagged and "does not depend" in checks["guided_backprop"].sentence
    assert not checks["saliency"].flagged and not checks["grad_cam"].flagged
    assert checks["saliency"].mean_spearman < 0.35 and checks["grad_cam"].mean_spearman < 0.2
    assert [s.layer for s in checks["saliency"].steps] == cascade_layers(model)
    again = cascading_randomisation(model, x, "saliency", 3)
    assert again.steps == checks["saliency"].steps  # seeded: the same random weights, the same numbers
    with model.exclusive() as net:
        assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    assert interp.load_model("shapes_cnn").weights.fingerprint == before


def test_energy_and_boxes_have_known_answers():
    from interp.evaluation import boxes_mask, centre_hit, energy_inside, pointing

    mask = boxes_mask([("cat", 0.25, 0.5, 0.75, 1.0)], 8, 8)  # x from 2 to 6, y from 4 to 8
    assert mask.sum() == 16 and mask[4:, 2:6].all()
    flat = np.ones((8, 8))
    assert energy_inside(flat, mask) == pytest.approx(16 / 64)  # spread evenly: the object's share of the image
    on = np.zeros((8, 8))
    on[5, 3] = 2.0
    on[0, 0] = -5.0  # negative evidence is not mass
    assert energy_inside(on, mask) == 1.0 and pointing(on, mask)
    # (C, H, W): each pixel counts with its largest |value| over the channels, so the -5 corner is mass: 2 of 2 + 5
    assert energy_inside(np.stack([on, -on, on]), mask) == pytest.approx(2 / 7)
    # one value per pixel (occlusion, LIME, RISE: one channel, or the same in every channel): read like an (H, W)
    # map, so the -5 corner, a region that lowers the score, is neither mass nor the peak
    for one_value in (on[None], np.stack([on, on, on])):
        assert energy_inside(one_value, mask) == 1.0 and pointing(one_value, mask)
    assert not pointing(np.roll(on, -3, axis=0), mask) and pointing(np.roll(on, -1, axis=0), mask, tolerance_px=1)
    assert centre_hit(mask) and not centre_hit(~mask)


def test_a_map_held_as_a_torch_tensor_scores_as_its_numpy_copy(linear):
    """A map a programmer made in torch (with a gradient, in bfloat16; on the GPU alike) raised torch's "Can't call
    numpy() on Tensor that requires grad" in every score; it gives what its NumPy copy gives."""
    from interp.evaluation import boxes_mask, energy_inside, pointing

    model, w, x = linear
    contrib = (w[1].view(3, 8, 8) * x).sum(0)
    held = contrib.clone().requires_grad_()
    numpy = deletion_insertion(model, x, contrib.numpy(), 1, steps=4, replacement="black", score="logit")
    torch_ = deletion_insertion(model, x, held, 1, steps=4, replacement="black", score="logit")
    np.testing.assert_array_equal(torch_.deletion, numpy.deletion)
    mask = boxes_mask([("cat", 0.25, 0.5, 0.75, 1.0)], 8, 8)
    assert energy_inside(held, torch.from_numpy(mask)) == energy_inside(contrib.numpy(), mask)
    assert pointing(held.to(torch.bfloat16), mask) == pointing(contrib.to(torch.bfloat16).float().numpy(), mask)


def test_grad_cam_on_shapes_cnn_points_at_the_object_more_often_than_the_centre():
    """The known answer of the shapes world: the object's mask. 40 test images (seed 1000, as the app's split)."""
    from PIL import Image

    from interp.evaluation import centre_hit, energy_inside, pointing
    from interp.shapes import mask_in_view
    from interp.shapes.generator import render

    model = interp.load_model("shapes_cnn")
    hits, centre, energy, share = [], [], [], []
    for index in range(40):
        sample = render(index, seed=1000, split="test")
        image = Image.fromarray(sample.image)
        mask = mask_in_view(sample.mask, model.view)
        cam = attribute(model, model.preprocess(image), "grad_cam", sample.label).raw
        hits.append(pointing(cam, mask, tolerance_px=3))
        centre.append(centre_hit(mask, tolerance_px=3))
        energy.append(energy_inside(cam, mask))
        share.append(mask.mean())
    assert np.mean(hits) > np.mean(centre) + 0.1, (np.mean(hits), np.mean(centre))
    assert np.mean(energy) > 1.5 * np.mean(share)  # more of the map on the object than an even spread puts there


def test_per_dataset_scores_rank_methods_resume_and_refuse_other_settings(tmp_path):
    from interp.config import Settings
    from interp.datasets import SHAPES_DATASET, DatasetError, find_root
    from interp.evaluation import evaluate_dataset, load_scores

    dataset = find_root(SHAPES_DATASET, Settings.from_env().cache_dir).open()
    model = interp.load_model("shapes_cnn")
    seen = []
    summary = evaluate_dataset(model, dataset, ["grad_cam", "saliency"], tmp_path, n=8, steps=8,
                               progress=seen.append)  # fmt: skip
    assert [p.done for p in seen] == list(range(1, 9)) and seen[-1].eta_s == 0
    assert set(summary["method"]) == {"grad_cam", "saliency"} and (summary["images"] == 8).all()
    assert summary.iloc[0]["method"] == "grad_cam"  # on shapes_cnn, Grad-CAM's margin over a random map is the largest
    assert (summary["insertion_auc_ci95"] > 0).all()
    rows = load_scores(tmp_path)
    assert len(rows) == 16 and not rows.duplicated(["id", "method"]).any()
    seen.clear()
    again = evaluate_dataset(model, dataset, ["grad_cam", "saliency"], tmp_path, n=12, steps=8, progress=seen.append)
    assert len(seen) == 4 and (again["images"] == 12).all()  # only the 4 new images were scored
    assert len(load_scores(tmp_path)) == 24
    with pytest.raises(DatasetError, match=r"other settings \(steps 8 there, 9 asked\); choose another"):
        evaluate_dataset(model, dataset, ["grad_cam", "saliency"], tmp_path, n=12, steps=9)
    with pytest.raises(DatasetError, match=r"\(block 16 there, 1 asked\)"):  # single pixels are not the squares
        evaluate_dataset(model, dataset, ["grad_cam", "saliency"], tmp_path, n=12, steps=8, block=1)
    with pytest.raises(DatasetError, match=r"\(replacement blur there, black asked; methods grad_cam, saliency there, "
                                           r"saliency asked\)"):  # fmt: skip
        evaluate_dataset(model, dataset, ["saliency"], tmp_path, n=12, steps=8, replacement="black")
    with pytest.raises(ValueError, match="block must be 1 to 128 pixels"):
        evaluate_dataset(model, dataset, ["grad_cam"], tmp_path / "big", n=2, block=129)
    assert not (tmp_path / "big").exists()  # refused before anything was written
    for settings, said in ((dict(n=1.5), "the number of images must be 1 to 100,000 (a whole number), got 1.5."),
                           (dict(n=True), "got True."),  # one image, read as 1
                           (dict(steps=2.5), "steps must be 1 to 1000 (a whole number), got 2.5."),
                           (dict(replacement="purple"), "replacement 'purple' is not one of"),
                           (dict(params={"gradcam": {"layer": "layer2"}}),
                            "settings are given for gradcam, which is not among the methods (grad_cam).")):  # fmt: skip
        with pytest.raises(ValueError, match=re.escape(said)):
            evaluate_dataset(model, dataset, ["grad_cam"], tmp_path / "odd", **{"n": 2, **settings})
    assert not (tmp_path / "odd").exists()
    (tmp_path / "a file").write_text("notes")
    with pytest.raises(DatasetError, match="a file; the evaluation is written to a folder"):  # was FileExistsError
        evaluate_dataset(model, dataset, ["grad_cam"], tmp_path / "a file", n=2)
    with pytest.raises(ValueError, match="none of deeplift applies"):
        evaluate_dataset(interp.load_model("shapes_vit"), dataset, ["deeplift"], tmp_path / "vit", n=2)


def test_per_dataset_scores_localise_each_map_where_the_object_is_known(tmp_path):
    """On the shapes world each image's row also holds the pointing game, the share of the map's mass on the object
    and the object's share of the view, equal to the one-image functions on its exact mask; the summary averages them
    and the verdict reads them. A folder with no truth (or a labels.csv of another kind, which raised KeyError in
    truth_mask), and scores written before localisation was recorded, have none and say nothing of it."""
    import shutil

    from interp.datasets import DatasetRoot
    from interp.evaluation import energy_inside, evaluate_dataset, load_scores, pointing, summarise, verdict
    from interp.shapes import mask_in_view, truth_mask, write_image_folder

    write_image_folder(tmp_path / "w", 6, seed=5, split="test")
    ds = DatasetRoot("w", "folder", str(tmp_path / "w")).open()
    model = interp.load_model("shapes_cnn")
    summary = evaluate_dataset(model, ds, ["grad_cam", "saliency"], tmp_path / "o", n=6, steps=4)
    rows = load_scores(tmp_path / "o")
    assert len(rows) == 12
    for row in rows.itertuples():
        seen = mask_in_view(truth_mask(ds.root, row.path), model.view)
        raw = attribute(model, interp.load_image(ds.path_of(row.path)), row.method, row.target).raw
        assert row.pointing == float(pointing(raw, seen)), row
        assert row.energy_inside == pytest.approx(energy_inside(raw, seen)) and row.object_share == seen.mean()
    for r in summary.itertuples():
        group = rows[rows.method == r.method]
        assert r.located == 6 and r.pointing == pytest.approx(group.pointing.mean()), r
        assert r.energy_inside == pytest.approx(group.energy_inside.mean()) and r.pointing_ci95 > 0
    said = verdict(summary, ds.name)
    assert "Where the object is known (6 images), the peak" in said, said
    share = f"{rows.object_share.mean():.0%}"
    assert f"a map spread at random scores the object's share of the view on both, {share}" in said

    assert "located" not in summarise(rows.drop(columns=["pointing", "energy_inside", "object_share"]))
    shutil.copytree(tmp_path / "w", tmp_path / "plain")
    (tmp_path / "plain" / "labels.csv").write_text("path,note\n" + f"{rows.path[0]},a user's own column\n")
    plain = DatasetRoot("plain", "folder", str(tmp_path / "plain")).open()
    summary = evaluate_dataset(model, plain, ["saliency"], tmp_path / "p", n=3, steps=4)
    assert load_scores(tmp_path / "p")["pointing"].isna().all() and "located" not in summary
    assert "object is known" not in verdict(summary, plain.name)


def test_the_object_of_an_image_comes_from_its_boxes_or_the_shapes_worlds_mask(tmp_path):
    from interp.datasets import Dataset, DatasetRoot, Item
    from interp.evaluation import boxes_mask, object_mask
    from interp.shapes import truth_mask, write_image_folder

    boxes = (("Cat", 0.1, 0.2, 0.5, 0.6), ("Dog", 0.7, 0.0, 1.0, 0.3))
    ds = Dataset("oi", "openimages", tmp_path, (Item("a", "a.jpg", boxes=boxes), Item("b", "b.jpg")), (), "none")
    assert np.array_equal(object_mask(ds, ds.items[0], (80, 40)), boxes_mask(boxes, 40, 80))  # (width, height)
    assert object_mask(ds, ds.items[1], (80, 40)) is None  # no boxes, no labels.csv: nothing known
    write_image_folder(tmp_path / "w", 2, seed=1, split="test")
    world = DatasetRoot("w", "folder", str(tmp_path / "w")).open()
    item = world.items[0]
    size = interp.load_image(world.path_of(item)).image.size
    assert np.array_equal(object_mask(world, item, size), truth_mask(world.root, item.path))
    assert object_mask(world, item, (size[0] * 2, size[1])) is None  # a file of another size than its mask


def test_the_verdict_names_ties_and_overlaps_in_localisation():
    import math

    import pandas as pd

    from interp.evaluation import verdict

    def row(method, gain, hits, mass):
        return {"method": method, "images": 20, "insertion_gain": gain, "insertion_gain_ci95": 0.05,
                "located": 20, "pointing": hits, "pointing_ci95": 0.1, "energy_inside": mass,
                "energy_inside_ci95": 0.02, "object_share": 0.1}  # fmt: skip

    summary = pd.DataFrame([row("ig", 0.4, 0.5, 0.2), row("gbp", 0.0, 0.9, 0.6), row("sal", -0.1, 0.9, 0.3),
                            row("cam", -0.2, 0.75, math.nan)])  # fmt: skip
    assert verdict(summary, "d").endswith(
        "Where the object is known (20 images), the peaks of gbp and sal fall on it most often (90% ± 10%; cam "
        "overlaps them), and gbp puts the most of its mass there (60% ± 2%); a map spread at random scores the "
        "object's share of the view on both, 10%. Pointing at the object and following the model are different "
        "questions: a map can outline the object without showing what the model used, and the model can use what "
        "lies off the object.")  # ig, the most faithful, is neither (nor within their intervals)
    summary.loc[0, "energy_inside"] = 0.59  # ig's mass overlaps gbp's: no longer a different answer
    said = verdict(summary, "d")
    assert "(60% ± 2%; ig overlaps it)" in said and "different questions" not in said


def test_cached_scores_are_kept_apart_by_their_squares(tmp_path, monkeypatch):
    """The page's scores come from the result cache: the same squares are read back (with their side), other squares
    are computed afresh."""
    import interp.evaluation.api as api
    from interp.evaluation import map_curves

    model = interp.load_model("shapes_cnn")
    image = interp.load_sample("shapes_star")
    result = attribute(model, image, "grad_cam", 3)
    cache = interp.ResultCache(tmp_path)
    squares = map_curves(model, image, result, 3, steps=5, cache=cache)
    pixels = map_curves(model, image, result, 3, steps=5, block=1, cache=cache)
    assert squares.block == 16 and pixels.block == 1 and not np.array_equal(squares.deletion, pixels.deletion)

    def computed(*args, **kwargs):
        raise AssertionError("scored again instead of read from the cache")

    monkeypatch.setattr(api, "deletion_insertion", computed)
    for block, first in ((None, squares), (16, squares), (1, pixels)):
        again = map_curves(model, image, result, 3, steps=5, block=block, cache=cache)
        assert again.block == first.block and np.array_equal(again.deletion, first.deletion)
        assert again.deletion_auc == first.deletion_auc


@pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")  # numpy on torch inside the reference
def test_noisy_linear_imputation_matches_the_reference_implementation():
    """ROAD's noisy linear imputation (Rong et al. 2022): without noise, the filled pixels equal those of
    pytorch-grad-cam's implementation of it; kept pixels are untouched; the noise is seeded and has the stated size."""
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    from interp.evaluation.imputation import NOISE, noisy_linear

    x = torch.rand(3, 40, 30, generator=torch.Generator().manual_seed(0))
    removed = np.random.default_rng(0).random((40, 30)) < 0.6
    removed[:8, :8] = True  # a hole whose inner pixels have no kept neighbour
    ours = noisy_linear(x, removed, noise=0)
    reference = NoisyLinearImputer(noise=0)(x, torch.from_numpy(~removed).float())  # its mask: 1 = kept
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)
    kept = torch.from_numpy(~removed)
    assert torch.equal(ours[:, kept], x[:, kept])
    noisy = [noisy_linear(x, removed, generator=torch.Generator().manual_seed(s)) for s in (5, 5, 6)]
    assert torch.equal(noisy[0], noisy[1]) and not torch.equal(noisy[0], noisy[2])
    assert torch.equal(noisy[0][:, kept], x[:, kept])
    shake = (noisy[0] - ours)[:, ~kept]
    assert abs(float(shake.std()) - NOISE) < 0.1 * NOISE and abs(float(shake.mean())) < 0.1 * NOISE
    everything = noisy_linear(x, np.ones((40, 30), bool), noise=0)  # nothing left to fill from: the mean colour
    torch.testing.assert_close(everything, x.mean(dim=(1, 2), keepdim=True).expand_as(x))
    with pytest.raises(ValueError, match="the mask is"):
        noisy_linear(x, removed[:, :10])


def test_noisy_linear_scores_are_seeded_and_leave_a_flat_image_as_it_was(linear):
    """A one-colour image filled from its own pixels is the same image: whatever is removed, the linear model's logit
    stays where it was up to the noise (w·noise: standard deviation 0.01·|w| at most). The noise is seeded per image,
    so the batch size does not change the scores, and another seed does."""
    from interp.evaluation.imputation import NOISE

    model, w, _ = linear
    flat = torch.full((3, 8, 8), 0.3)
    curves = deletion_insertion(model, flat, random_map((8, 8), 1), 0, steps=8, replacement="noisy_linear",
                                score="logit")  # fmt: skip
    assert np.abs(curves.deletion - curves.deletion[0]).max() < 4 * NOISE * float(w[0].norm()), curves.deletion
    assert np.abs(curves.deletion - curves.deletion[0]).max() > 0  # the noise is there
    model = interp.load_model("shapes_cnn")
    x = model.preprocess(interp.load_sample("shapes_star").image)
    saliency = attribute(model, x, "grad_cam", 3).map
    one = deletion_insertion(model, x, saliency, 3, steps=5, replacement="noisy_linear")
    again = deletion_insertion(model, x, saliency, 3, steps=5, replacement="noisy_linear", batch=3)
    other = deletion_insertion(model, x, saliency, 3, steps=5, replacement="noisy_linear", seed=1)
    np.testing.assert_allclose(one.deletion, again.deletion, atol=1e-5)
    assert not np.allclose(one.deletion, other.deletion, atol=1e-5)
    assert one.replacement == "noisy_linear"


def test_with_noisy_linear_imputation_the_object_mask_beats_a_random_map_too():
    """The shapes world's known answer under ROAD's imputation (16-pixel squares): the object's mask removes the
    class faster than a random map on every one of the first 10 test images (29 of 30 measured)."""
    from PIL import Image

    from interp.shapes import mask_in_view
    from interp.shapes.generator import render

    model = interp.load_model("shapes_cnn")
    wins = 0
    for index in range(10):
        sample = render(index, seed=1000, split="test")
        x = model.preprocess(Image.fromarray(sample.image))
        mask = mask_in_view(sample.mask, model.view).astype(np.float32)
        right, floor = (deletion_insertion(model, x, m, sample.label, steps=10, replacement="noisy_linear")
                        for m in (mask, random_map(mask.shape, 0)))  # fmt: skip
        wins += right.deletion_auc < floor.deletion_auc
    assert wins >= 9, wins


def test_the_floor_averages_several_random_maps_and_reports_their_spread():
    """One random map is a noisy floor; the floor is the point-by-point mean of several, each seeded, with the
    standard deviation of their areas."""
    model = interp.load_model("shapes_cnn")
    x = model.preprocess(interp.load_sample("shapes_star").image)
    each = [deletion_insertion(model, x, random_map((128, 128), seed), 3, steps=6) for seed in range(3)]
    floor = random_floor(model, x, 3, maps=3, steps=6)
    np.testing.assert_allclose(floor.deletion, np.mean([c.deletion for c in each], axis=0), rtol=1e-6)
    np.testing.assert_allclose(floor.insertion, np.mean([c.insertion for c in each], axis=0), rtol=1e-6)
    assert floor.deletion_auc == pytest.approx(np.mean([c.deletion_auc for c in each]))
    assert floor.deletion_spread == pytest.approx(np.std([c.deletion_auc for c in each], ddof=1))
    assert floor.insertion_spread == pytest.approx(np.std([c.insertion_auc for c in each], ddof=1))
    assert floor.maps == 3 and floor.deletion_spread > 0
    one = random_floor(model, x, 3, maps=1, steps=6)
    assert one.deletion_spread == 0 and one.deletion_auc == pytest.approx(each[0].deletion_auc)
    with pytest.raises(ValueError, match="maps must be 1 to 100"):
        random_floor(model, x, 3, maps=0)
    for maps in ("3", 2.5, None):  # "3" was int()'s ValueError, 2.5 two maps without a word
        with pytest.raises(ValueError, match=re.escape(f"maps must be 1 to 100, got {maps!r}.")):
            random_floor(model, x, 3, maps=maps)
    with pytest.raises(ValueError, match=re.escape("seed must be a whole number of 0 or more (below 2**63), got 'a'")):
        random_floor(model, x, 3, seed="a")
    with pytest.raises(TypeError, match="random_floor"):  # a misspelt setting names the function it was given to
        random_floor(model, x, 3, step=6)


def test_a_map_that_cannot_be_scored_on_one_image_is_noted_and_the_rest_go_on(tmp_path, monkeypatch):
    """A method whose map is NaN on an image stopped the whole dataset's evaluation; it is now noted per method and
    image (in evaluation.json and summary.json), not retried when the evaluation continues, and the rest is scored."""
    from interp.datasets import read_folder
    from interp.evaluation import dataset as evaluation_dataset
    from interp.evaluation import evaluate_dataset, load_failures
    from tests.toy_models import nan_gradient_model

    rng = np.random.default_rng(0)
    for i in range(3):
        (tmp_path / "data" / "a").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "data" / "a" / f"{i}.png")
    model, ds, out = nan_gradient_model(), read_folder(tmp_path / "data"), tmp_path / "eval"
    summary = evaluate_dataset(model, ds, ["saliency", "occlusion"], out, n=3, steps=4,
                               params={"occlusion": {"window": 8, "stride": 8}})  # fmt: skip
    assert summary["method"].tolist() == ["occlusion"] and summary["images"].tolist() == [3]
    failed = load_failures(out)
    assert list(failed) == ["saliency"] and len(failed["saliency"]) == 3
    assert "gave NaN or infinite values" in next(iter(failed["saliency"].values()))
    assert json.loads((out / "summary.json").read_text())["failed"] == {"saliency": 3}
    calls = []
    monkeypatch.setattr(evaluation_dataset, "deletion_insertion", lambda *a, **k: calls.append(1))
    evaluate_dataset(model, ds, ["saliency", "occlusion"], out, n=3, steps=4,
                     params={"occlusion": {"window": 8, "stride": 8}})  # fmt: skip
    assert not calls  # nothing scored again, nothing retried


def test_a_setting_no_image_can_take_stops_the_dataset_scores_with_its_sentence(tmp_path):
    """A bad setting is the same for every image: the run stops with its sentence, and no image is noted as failed
    (a map of NaN on one image is noted and skipped). The engine's checks now raise ``BadSettingError``, an
    ``InterpError``; the per-image catch of ``InterpError`` must not take them for one image's failure: a Grad-CAM
    layer that is not a map would have "failed" on every image and the run ended with no score."""
    from interp.config import Settings
    from interp.datasets import SHAPES_DATASET, find_root
    from interp.errors import BadSettingError
    from interp.evaluation import evaluate_dataset, load_scores

    dataset = find_root(SHAPES_DATASET, Settings.from_env().cache_dir).open()
    model = interp.load_model("shapes_cnn")
    for method, params, said in (("integrated_gradients", {"steps": 0}, "steps"),
                                 ("grad_cam", {"layer": "fc"}, "not a spatial map")):  # fmt: skip
        out = tmp_path / method
        with pytest.raises(BadSettingError, match=said):
            evaluate_dataset(model, dataset, [method], out, n=4, steps=4, params={method: params})
        meta = json.loads((out / "evaluation.json").read_text()) if (out / "evaluation.json").exists() else {}
        assert not meta.get("failed") and len(load_scores(out)) == 0


def test_the_page_functions_read_an_image_as_a_programmer_holds_it_and_say_so_of_the_rest(tmp_path):
    """A picture or a path where the pages pass a loaded image failed on ``.digest``; a method's name where its
    map is taken on ``.method``; one map where a list is taken was not iterable; settings as text, a seed as text
    and no output folder escaped as Python's errors; an empty scoreboard or summary failed on argmax and iloc."""
    import pandas as pd

    from interp.evaluation import (
        cascading_randomisation,
        evaluate_dataset,
        grid_curves,
        map_curves,
        map_randomisation,
        scoreboard,
        scoreboard_sentence,
        verdict,
    )

    model = interp.load_model("shapes_cnn")
    image = interp.load_sample("shapes_star")
    result = attribute(model, image, "saliency", 3)
    loaded = map_curves(model, image, result, 3, steps=4)
    assert map_curves(model, image.image, result, 3, steps=4).deletion_auc == loaded.deletion_auc
    floors, maps = grid_curves(model, image.image, result, steps=4)  # one map, not in a list
    assert list(floors) == [3] and maps[0].deletion_auc == loaded.deletion_auc
    said = re.escape("a map is scored from what attribute(model, image, method, target) returns; got str.")
    for call in (lambda: map_curves(model, image, "saliency", 3), lambda: grid_curves(model, image, ["saliency"]),
                 lambda: map_randomisation(model, image, "saliency")):  # fmt: skip
        with pytest.raises(ValueError, match=said):
            call()
    for kwargs, words in (({"params": "steps=4"}, "params are the method's settings by name"),
                          ({"seed": "x"}, "seed must be a whole number of 0 or more (below 2**63), got 'x'")):  # fmt: skip
        with pytest.raises(ValueError, match=re.escape(words)):
            cascading_randomisation(model, image, "saliency", 3, **kwargs)
    (tmp_path / "photos" / "star").mkdir(parents=True)
    image.image.save(tmp_path / "photos" / "star" / "a.png")
    with pytest.raises(ValueError, match=re.escape("the settings of saliency are a mapping of names to values")):
        evaluate_dataset(model, tmp_path / "photos", ["saliency"], tmp_path / "out", params={"saliency": 5})
    for out in (None, " "):
        with pytest.raises(ValueError, match=re.escape(f"the evaluation folder is a path (text or a Path); got "
                                                       f"{out!r}")):  # fmt: skip
            evaluate_dataset(model, tmp_path / "photos", ["saliency"], out)
    assert scoreboard_sentence(scoreboard([])) == "No map is scored on this image yet, so there is nothing to compare."
    assert verdict(pd.DataFrame(), "shapes") == "Nothing is scored on shapes yet: score the methods on some images " \
                                                "first."


def test_the_tables_and_sentences_of_scores_refuse_what_is_not_theirs_in_a_sentence():
    """What a programmer holds beside the right thing: the curves list ``grid_curves`` returns where scoreboard's
    (method, class, curves, floor) rows go (``cannot unpack``), a list or a scan's rows where a table goes
    (``'list' object has no attribute 'empty'``, pandas' ``KeyError``), ``None`` where curves go, short boxes."""
    import pandas as pd

    from interp.evaluation import Curves, boxes_mask, score_line, scoreboard, scoreboard_sentence, summarise, verdict

    line = np.linspace(0, 1, 5)
    curves = Curves(line, line[::-1], line, 0.3, 0.6, "probability", "blur")
    floor = Curves(line, line[::-1], line, 0.4, 0.5, "probability", "blur", maps=5, deletion_spread=0.01,
                   insertion_spread=0.02)
    assert score_line(curves, floor).startswith("deletion 0.300, insertion 0.600 (random maps 0.400 ± 0.010")
    for wrong in ((None, floor), (curves, None), (curves, "floor")):
        with pytest.raises(ValueError, match="score_line reads what deletion_insertion or grid_curves returns, not"):
            score_line(*wrong)
    table = scoreboard([("IG", "star", curves, floor)])
    assert list(table["method"]) == ["IG"]
    for wrong in ([curves, floor], [("IG", "star", curves)], None, [("IG", "star", curves, None)]):
        with pytest.raises(ValueError, match=re.escape("scoreboard takes one (method, class, the map's curves, its "
                                                       "class's floor) for each map")):  # fmt: skip
            scoreboard(wrong)
    scan_rows = pd.DataFrame({"path": ["a.png"], "pred": [3]})
    for fn, reads, good in ((scoreboard_sentence, "scoreboard_sentence reads the table scoreboard(maps) returns",
                             table),
                            (summarise, "summarise reads the scores' rows, the DataFrame load_scores(folder) returns",
                             None),
                            (lambda t: verdict(t, "shapes"), "verdict reads the table summarise(rows) returns",
                             None)):  # fmt: skip
        if good is not None:
            assert fn(good).startswith("On this image, ")
        with pytest.raises(ValueError, match=re.escape(f"{reads}; got [1, 2].")):
            fn([1, 2])
        with pytest.raises(ValueError, match="these rows have no method") as err:
            fn(scan_rows)
        assert str(err.value).endswith(f"{reads} (all its columns).")
    assert boxes_mask(("cat", 0.25, 0.5, 0.75, 1.0), 8, 8).sum() == 16  # one box alone is that box
    for boxes in ([("cat", 0.25, 0.5, 0.75)], "cat", None, [("cat", "a", 0, 1, 1)]):
        with pytest.raises(ValueError, match=re.escape("boxes are (label, x0, y0, x1, y1) with fractions")):
            boxes_mask(boxes, 8, 8)
    with pytest.raises(ValueError, match="the mask's height and width are whole numbers of pixels; got 8.5, 8"):
        boxes_mask([], 8.5, 8)


def test_every_seed_of_the_scores_is_one_range_and_its_largest_works():
    """A seed is a whole number from 0 to 2**63 - 1 everywhere: -1 was NumPy's "expected non-negative integer" in
    random_floor and taken by cascading_randomisation; a large seed reached torch as ``seed * 10007`` and failed
    with "Overflow when unpacking long"; ``"x"`` in deletion_insertion was multiplied as text."""
    from interp.evaluation import cascading_randomisation, map_randomisation

    model = interp.load_model("shapes_cnn")
    image = interp.load_sample("shapes_star")
    result = attribute(model, image, "saliency", 3)
    calls = {"deletion_insertion": lambda s: deletion_insertion(model, image, result.map, 3, steps=4, seed=s,
                                                                replacement="noisy_linear"),
             "random_floor": lambda s: random_floor(model, image, 3, maps=2, steps=4, seed=s),
             "cascading_randomisation": lambda s: cascading_randomisation(model, image, "saliency", 3, seed=s),
             "map_randomisation": lambda s: map_randomisation(model, image, result, seed=s),
             "random_map": lambda s: random_map((4, 4), s)}  # fmt: skip
    for name, call in calls.items():
        for seed in (-1, 2**63, "x", 1.5, None):
            with pytest.raises(ValueError, match=re.escape(f"seed must be a whole number of 0 or more (below 2**63), "
                                                           f"got {seed!r}.")):  # fmt: skip
                call(seed)
    largest = 2**63 - 1
    a, b = calls["deletion_insertion"](largest), calls["deletion_insertion"](largest)
    assert np.array_equal(a.deletion, b.deletion)  # the noise of the largest seed, drawn again the same
    assert calls["random_floor"](largest).maps == 2 and calls["random_map"](np.int64(largest)).shape == (4, 4)
