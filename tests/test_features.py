"""Features: activation maximisation, feature maps and the spectrum, checked against answers known in advance."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import interp
from interp.attribution import attribute
from interp.errors import BadSettingError
from interp.features import (
    Objective,
    VisualiseSettings,
    diversity,
    feature_maps,
    first_filters,
    layer_grid,
    mosaic,
    spectrum,
    visualise,
)
from interp.features.units import default_feature_layer
from interp.images import image_from_array
from interp.models.hooks import hook_count
from interp.models.loading import LoadedModel, WeightsInfo
from interp.models.specs import ModelSpec
from tests.toy_models import layouts_model

STILL = {"jitter": 0, "scale": 0.0, "rotate": 0.0}  # no transformation robustness: the optimum is exact


def _edge() -> torch.Tensor:
    edge = torch.zeros(7, 7)
    edge[:, :3], edge[:, 4:] = -1, 1  # a vertical edge, dark on the left, bright on the right
    return edge


@pytest.fixture(scope="module")
def hand() -> LoadedModel:
    """Channel 0 of ``conv`` is a fixed vertical-edge detector (the same on every colour); channel 1 is red minus
    green. Then ReLU, pooling and a linear head."""
    conv = torch.nn.Conv2d(3, 2, 7, padding=3, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0] = _edge() / _edge().norm() / 3**0.5
        conv.weight[1, 0], conv.weight[1, 1] = 1 / 49, -1 / 49
    net = torch.nn.Sequential()
    for name, module in (("conv", conv), ("relu", torch.nn.ReLU()), ("pool", torch.nn.AdaptiveAvgPool2d(1)),
                         ("flat", torch.nn.Flatten()), ("fc", torch.nn.Linear(2, 2))):  # fmt: skip
        net.add_module(name, module)
    net.eval().requires_grad_(False)
    cfg = {"input_size": (3, 64, 64), "mean": (0.5,) * 3, "std": (0.5,) * 3, "interpolation": "bilinear", "crop_pct": 1.0}
    spec = ModelSpec("hand", "hand", "cnn", "hand-built")
    return LoadedModel(spec, net, WeightsInfo("random", "test", "hand"), cfg, ("edge", "red"), torch.device("cpu"))


@pytest.fixture(scope="module")
def shapes_cnn():
    return interp.load_model("shapes_cnn", device="cpu")


def _centre_correlation(image: np.ndarray) -> float:
    grey = image.astype(float).mean(-1)
    crop = grey[29:36, 29:36]  # the 7×7 receptive field of the centre neuron of a 64×64 map
    return float(np.corrcoef(crop.ravel(), _edge().numpy().ravel())[0, 1])


@pytest.mark.parametrize("param", ["fft", "pixel"])
def test_a_neurons_optimum_is_its_filter_and_the_negative_is_the_opposite_edge(hand, param):
    settings = VisualiseSettings(param=param, steps=128, size=64, **STILL)
    up = visualise(hand, Objective("neuron", 0, "conv"), settings)
    down = visualise(hand, Objective("neuron", 0, "conv", negative=True), settings)
    # measured: 1.000 both ways, both parameterisations
    assert _centre_correlation(up.images[0]) >= 0.95
    assert _centre_correlation(down.images[0]) <= -0.95
    # with jitter (4 px, about half the filter), zoom and rotation the edge must hold wherever the crop lands:
    # measured 0.79-0.80. (At the default 8 px jitter, wider than the filter, the edge smears out of the crop.)
    moved = visualise(hand, Objective("neuron", 0, "conv"), VisualiseSettings(param=param, steps=128, size=64, jitter=4))
    assert _centre_correlation(moved.images[0]) >= 0.6
    assert up.curve[-1] > up.curve[0]


@pytest.mark.parametrize("param", ["fft", "pixel"])
def test_a_colour_channels_optimum_is_its_colour(hand, param):
    settings = VisualiseSettings(param=param, steps=128, size=64)  # with the default transforms
    red = visualise(hand, Objective("channel", 1, "conv"), settings).images[0].reshape(-1, 3).mean(0) / 255
    green = visualise(hand, Objective("channel", 1, "conv", negative=True), settings).images[0].reshape(-1, 3).mean(0) / 255
    # measured: red minus green 0.33 (fft) and 0.47 (pixel); the negative -0.33 and -0.47
    assert red[0] - red[1] >= 0.25
    assert green[1] - green[0] >= 0.25


def test_an_edge_channels_optimum_is_a_grating_of_its_orientation(hand):
    v = visualise(hand, Objective("channel", 0, "conv"), VisualiseSettings(steps=128, size=64))
    grey = v.images[0].astype(float).mean(-1)
    across = np.abs(np.diff(grey, axis=1)).mean()  # change along a row: vertical edges
    along = np.abs(np.diff(grey, axis=0)).mean()
    assert across > 1.3 * along, (across, along)  # measured 1.57


def test_a_unit_that_never_responds_is_called_flat_and_one_that_does_is_not(hand):
    """A channel after a ReLU whose input is below 0 everywhere gives 0 and no gradient, whatever the image: the
    optimiser cannot move it, and the pictures would otherwise pass for what it looks for."""
    conv = torch.nn.Conv2d(3, 1, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_(), conv.bias.fill_(-1.0)
    net = torch.nn.Sequential()
    for name, module in (("conv", conv), ("relu", torch.nn.ReLU()), ("pool", torch.nn.AdaptiveAvgPool2d(1)),
                         ("flat", torch.nn.Flatten()), ("fc", torch.nn.Linear(1, 2))):  # fmt: skip
        net.add_module(name, module)
    dead = LoadedModel(ModelSpec("dead", "dead", "cnn", "a dead channel"), net.eval().requires_grad_(False),
                       WeightsInfo("random", "test", "dead"), hand.data_config, ("a", "b"), torch.device("cpu"))
    v = visualise(dead, Objective("channel", 0, "relu"), VisualiseSettings(steps=8, size=64))
    assert v.flat and v.steps_done == 8
    assert v.flat_note().startswith("Channel 0 of relu stayed at exactly 0 for all 8 steps: it never responded")
    alive = visualise(hand, Objective("channel", 1, "conv"), VisualiseSettings(steps=8, size=64))
    assert not alive.flat and alive.flat_note() == ""


@pytest.mark.parametrize(
    "args, said",
    [
        (("channel", 1.5, "layer2"), "the unit (a channel or class index) is a whole number; got 1.5."),
        (("class", True), "the unit (a channel or class index) is a whole number; got True."),
        (("channel", "3", "layer2"), "the unit (a channel or class index) is a whole number; got '3'."),
        (("neuron", 1, "layer2", (1.5, 2)), "a neuron's position is a whole number; got 1.5."),
        (("neuron", 1, "layer2", (1, 2, 3)), "a neuron's position is (row, column); got (1, 2, 3)."),
        (("neuron", 1, "layer2", 5), "a neuron's position is (row, column); got 5."),  # was len()'s TypeError
    ],
)
def test_an_objective_refuses_a_unit_or_position_that_is_not_whole(args, said):
    """A float unit or position failed deep in the pass (IndexError); a bool unit drove channel 1."""
    kind, unit, *rest = args
    with pytest.raises(BadSettingError, match=re.escape(said)):
        Objective(kind, unit, *rest[:1], **({"position": rest[1]} if len(rest) > 1 else {}))


def test_an_objective_takes_numpy_integers_as_ints(shapes_cnn):
    o = Objective("neuron", np.int64(3), "layer2", position=[np.int32(1), 2])
    assert o.unit == 3 and type(o.unit) is int and o.position == (1, 2) and json.dumps(o.as_dict())
    with pytest.raises(BadSettingError, match="at least one image"):
        layer_grid(shapes_cnn, "layer2", [])
    from interp.features import unit_maps

    image = interp.load_sample("chelsea")
    for model, objective in [(shapes_cnn, Objective("channel", 1, "layer2")), (layouts_model(), Objective("class", 0))]:
        with pytest.raises(BadSettingError, match="batch size must be at least 1, got 0."):  # was range()'s error
            unit_maps(model, objective, [image], batch_size=0)


def test_a_class_objective_takes_the_class_by_name_as_attribute_does(shapes_cnn, tmp_path):
    """``Objective("class", "star")`` raised "the unit … is a whole number" while ``attribute(…, target="star")``
    and the CLI's ``--class star`` took the name: a name (any case, digits too) is read against the model where the
    objective is used, and keys the cache as its index does."""
    star = shapes_cnn.class_names.index("star")
    assert Objective("class", "3").unit == 3 and Objective("probability", " Star ").unit == "Star"
    assert Objective("class", "star").for_model(shapes_cnn) == Objective("class", star)
    assert Objective("class", "star").describe() == "maximise logit of class 'star'"
    with pytest.raises(BadSettingError, match=re.escape("the class 'stra' is not a class name of shapes_cnn; did "
                                                        "you mean 'star'?")):  # fmt: skip
        visualise(shapes_cnn, Objective("class", "stra"), VisualiseSettings(steps=1, batch=1))
    with pytest.raises(BadSettingError, match="the class is an index or a class name; got an empty name."):
        Objective("class", "  ")
    cache = interp.ResultCache(tmp_path / "c")
    by_name = visualise(shapes_cnn, Objective("class", "STAR"), VisualiseSettings(steps=2, batch=1), cache=cache)
    assert by_name.objective == Objective("class", star)
    waited = []
    by_index = visualise(shapes_cnn, Objective("class", star), VisualiseSettings(steps=2, batch=1), cache=cache,
                         on_step=lambda step: waited.append(step))  # fmt: skip
    assert not waited and np.array_equal(by_index.images, by_name.images)  # from the cache: no step was taken
    images = [interp.load_sample("shapes_star"), interp.load_sample("shapes_marked")]
    named = spectrum(shapes_cnn, Objective("probability", "star"), images, per_column=1)
    assert named.objective.unit == star
    np.testing.assert_array_equal(named.values, spectrum(shapes_cnn, Objective("probability", star), images,
                                                         per_column=1).values)  # fmt: skip


@pytest.mark.parametrize(
    "settings, said",
    [
        (dict(steps=1.5), "steps is a whole number from 1 to 4096; got 1.5."),  # range()'s TypeError in the pass
        (dict(size="128"), "size is a whole number from 32 to 512 pixels; got '128'."),  # a str comparison
        (dict(batch=True), "batch is a whole number from 1 to 16 images; got True."),  # one image, read as 1
        (dict(l2=float("nan")), "tv, l2 and diversity are weights of 0 or more; got 0.0, nan, 0.0."),  # NaN images
        (dict(seed=-1), "seed is a whole number of 0 or more; got -1."),
        (dict(rotate=float("inf")), "rotate is from 0 to 45 degrees; got inf."),
    ],
)
def test_visualise_settings_that_would_be_misread_are_refused(settings, said):
    with pytest.raises(BadSettingError, match=re.escape(said)):
        VisualiseSettings(**settings)
    taken = VisualiseSettings(steps=np.int64(8), size=64, seed=np.int32(3))
    assert type(taken.steps) is int and json.loads(json.dumps(taken.as_dict()))["seed"] == 3  # written to JSON


def test_counts_of_channels_and_examples_are_whole_numbers(shapes_cnn):
    image = interp.load_sample("chelsea")
    with pytest.raises(BadSettingError, match="a whole number of at least 1; got 1.5."):  # a slice's TypeError
        feature_maps(shapes_cnn, image, "layer2", top_k=1.5)
    with pytest.raises(BadSettingError, match="per_column must be a whole number, got 1.5."):
        spectrum(shapes_cnn, Objective("channel", 0, "layer2"), [image], per_column=1.5)


def test_an_objective_says_what_is_optimised():
    assert Objective("probability", 3).describe() == "maximise log-probability of class 3"
    assert Objective("class", 1).describe(("cat", "dog")) == "maximise logit of class 1 (dog)"
    assert Objective("class", 3, negative=True).describe() == "minimise logit of class 3"
    assert Objective("channel", 5, "layer2").describe() == "maximise channel 5 of layer2"
    assert Objective("neuron", 5, "layer2", position=(1, 2)).describe() == "maximise neuron 5 of layer2 at (1, 2)"


@pytest.mark.parametrize("kind", ["class", "probability"])
@pytest.mark.parametrize("param", ["fft", "pixel"])
def test_the_star_class_optimum_is_classified_as_star(shapes_cnn, kind, param):
    star = shapes_cnn.class_names.index("star")
    v = visualise(shapes_cnn, Objective(kind, star), VisualiseSettings(param=param))
    top = interp.predict(shapes_cnn, Image.fromarray(v.images[0])).top
    assert top.label == "star" and top.prob >= 0.95, top  # measured 0.97-1.00


def test_the_star_logits_strongest_examples_carry_the_planted_marker(shapes_cnn):
    """In the test split the corner marker is drawn on half the images of every class, so a model that did not use
    it would rank marked and unmarked stars alike. shapes_cnn learnt the shortcut: its top examples all carry it."""
    from interp.shapes import generate

    samples = list(generate(240, seed=7, split="test"))
    images = [image_from_array(s.image, f"t{s.index}.png") for s in samples]
    star = shapes_cnn.class_names.index("star")
    s = spectrum(shapes_cnn, Objective("class", star), images, per_column=12)
    top = [samples[e.index] for e in s.columns["maximum"]]
    stars = [x for x in samples if x.class_name == "star"]
    assert all(x.class_name == "star" for x in top)
    assert np.mean([x.marker for x in top]) >= 0.9  # measured 1.0
    assert np.mean([x.marker for x in stars]) <= 0.7  # the base rate among stars
    assert s.centred_on == "zero"  # logits cross zero
    assert not any(x.class_name == "star" for x in (samples[e.index] for e in s.columns["minimum"]))


def test_the_probability_spectrum_ranks_by_log_probability_not_by_logit(shapes_cnn):
    """The objective is named the log-probability; its spectrum held the logits (values of +9.6 for a
    "log-probability"), which also rank images differently: a logit is high where every class's is."""
    import torch

    from interp.shapes import generate

    images = [image_from_array(s.image, f"t{s.index}.png") for s in generate(24, seed=3, split="test")]
    ring = shapes_cnn.class_names.index("ring")
    logits = torch.cat([shapes_cnn.run(shapes_cnn.batch_of([shapes_cnn.pixels(im.image)])).float().cpu()
                        for im in images])  # fmt: skip
    got = spectrum(shapes_cnn, Objective("probability", ring), images, per_column=2).values
    np.testing.assert_allclose(got, torch.log_softmax(logits, 1)[:, ring].numpy(), rtol=1e-4, atol=1e-4)
    assert (got <= 1e-6).all()
    logit = spectrum(shapes_cnn, Objective("class", ring), images, per_column=2).values
    np.testing.assert_allclose(logit, logits[:, ring].numpy(), rtol=1e-4, atol=1e-4)


def test_spectrum_maxima_are_the_largest_activations_of_a_direct_pass_and_stable(lite0, tmp_path):
    images = [interp.load_sample(n) for n in interp.sample_names()]
    objective = Objective("channel", 5, "blocks.3")
    cache = interp.ResultCache(tmp_path / "c")
    first = spectrum(lite0, objective, images, per_column=3, cache=cache)
    direct = layer_grid(lite0, "blocks.3", images)[:, 5].mean(dim=(1, 2)).numpy()
    np.testing.assert_allclose(first.values, direct, rtol=1e-4, atol=1e-4)
    order = np.argsort(direct)
    shown = {c: [e.index for e in first.columns[c]] for c in first.columns}
    assert shown["maximum"] == list(order[len(order) - len(shown["maximum"]) :]) and shown["maximum"]
    assert shown["minimum"] == list(order[: len(shown["minimum"])]) and shown["minimum"]
    assert all(e.value < first.centre for c in ("minimum", "slightly negative") for e in first.columns[c])
    assert all(e.value >= first.centre for c in ("slightly positive", "maximum") for e in first.columns[c])
    every = [i for column in shown.values() for i in column]
    assert len(every) == len(set(every))  # no photo in two columns
    again = spectrum(lite0, objective, images, per_column=3, cache=cache)  # from the disk cache
    fresh = spectrum(lite0, objective, images, per_column=3)
    assert again.columns == first.columns == fresh.columns
    for e in first.columns["maximum"]:  # a crop around where the channel is strongest, inside the view
        x0, y0, x1, y1 = e.box
        assert 0 <= x0 < x1 <= 224 and 0 <= y0 < y1 <= 224 and x1 - x0 == y1 - y0


@pytest.mark.parametrize(
    ("values", "per_column", "expected"),
    [
        # enough on each side: the extremes and the images nearest zero, each image once
        ([-9, -8, -7, -6, -5, -4, 1, 2, 3, 4, 5, 6], 3, ([0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11])),
        # 3 below zero (the 16 bundled photos on a Lite0 channel): the minimum takes 2, the slightly negative the third
        ([-5, -3, -1, 1, 2, 3, 4, 5, 6, 7], 3, ([0, 1], [2], [3, 4, 5], [7, 8, 9])),
        ([-5, 1, 2, 3], 3, ([0], [], [1], [2, 3])),  # one image below zero: the inner column is empty
        ([3, -1, 2, -2], 1, ([3], [1], [2], [0])),  # indices follow the order given, lowest value first in a column
    ],
)
def test_spectrum_columns_never_repeat_an_image(values, per_column, expected):
    from interp.features.spectrum import COLUMNS, pick_columns

    picks = pick_columns(np.asarray(values, dtype=np.float32), 0.0, per_column)
    assert tuple(picks[c] for c in COLUMNS) == expected


def test_spectrum_after_a_relu_is_centred_on_the_median(shapes_cnn):
    images = [image_from_array(s.image, f"{s.index}.png") for s in __import__("interp.shapes", fromlist=["generate"]).generate(30)]
    s = spectrum(shapes_cnn, Objective("channel", 3, "layer2"), images, per_column=2)
    assert s.values.min() >= 0 and s.centred_on == "median"
    assert s.label("slightly negative") == "Just below the median"


def test_visualise_is_seeded_cached_and_stops_when_asked(hand, tmp_path):
    objective = Objective("channel", 0, "conv")
    settings = VisualiseSettings(steps=20, size=48)
    a, b = visualise(hand, objective, settings), visualise(hand, objective, settings)
    np.testing.assert_array_equal(a.images, b.images)
    other = visualise(hand, objective, VisualiseSettings(steps=20, size=48, seed=1))
    assert not np.array_equal(a.images, other.images)

    cache = interp.ResultCache(tmp_path / "c")
    seen = []
    stopped = visualise(hand, objective, settings, cache=cache, on_step=lambda s: seen.append(s) or s.step == 5)
    assert stopped.steps_done == 5 and stopped.stopped and len(stopped.curve) == 5
    assert len(cache) == 0  # a stopped run is not kept
    full = visualise(hand, objective, settings, cache=cache, snapshot_every=4, on_step=seen.append)
    assert [s.images is not None for s in seen[5:]] == [(i % 4 == 0 or i == 20) for i in range(1, 21)]
    assert len(cache) == 1
    again = visualise(hand, objective, settings, cache=cache, on_step=lambda s: pytest.fail("ran again"))
    np.testing.assert_array_equal(again.images, full.images)
    np.testing.assert_array_equal(again.curve, full.curve)
    assert hook_count(hand._module) == 0


@pytest.mark.parametrize("first_stops", [False, True])
def test_sessions_asking_for_one_visualisation_at_once_compute_it_once(hand, tmp_path, first_stops):
    """A class opening the teacher's link: the second session waits for the first run (told so through ``on_wait``)
    and reads its result; when the first is stopped (not stored), the second computes it itself."""
    import threading

    cache = interp.ResultCache(tmp_path / "c")
    objective, settings = Objective("channel", 0, "conv"), VisualiseSettings(steps=12, size=48)
    started, second_waits = threading.Event(), threading.Event()
    first_steps, second_steps, results = [], [], {}

    def first_step(step) -> bool:
        first_steps.append(step)
        if step.step == 1:
            started.set()
            assert second_waits.wait(60), "the second session never waited"
        return first_stops and step.step == 5

    worker = threading.Thread(target=lambda: results.setdefault(
        "first", visualise(hand, objective, settings, cache=cache, on_step=first_step)))  # fmt: skip
    worker.start()
    assert started.wait(60)
    second = visualise(hand, objective, settings, cache=cache, on_step=second_steps.append, on_wait=second_waits.set)
    worker.join(60)
    assert second_waits.is_set()
    if first_stops:
        assert results["first"].stopped and len(first_steps) == 5 and len(second_steps) == 12
        assert second.steps_done == 12
    else:
        assert len(first_steps) == 12 and second_steps == []  # one optimisation; the second read what it stored
        np.testing.assert_array_equal(second.images, results["first"].images)
    assert len(cache) == 1 and hook_count(hand._module) == 0


def test_diversity_pushes_a_batch_apart(hand):
    same = torch.rand(1, 2, 5, 5).repeat(3, 1, 1, 1)
    assert float(diversity(same)) == pytest.approx(-1.0, abs=1e-5)
    assert float(diversity(torch.rand(1, 2, 5, 5))) == 0.0

    def similarity(weight: float) -> tuple[float, np.ndarray]:  # the Gram matrices' mean cosine, 1: same style
        v = visualise(hand, Objective("channel", 1, "conv"), VisualiseSettings(steps=64, size=48, batch=3, diversity=weight))
        grid = layer_grid(hand, "conv", [image_from_array(im, f"{i}.png") for i, im in enumerate(v.images)])
        return -float(diversity(grid)), v.values

    alike, _ = similarity(0.0)
    apart, values = similarity(0.5)
    assert alike >= 0.99 and apart <= 0.6, (alike, apart)  # measured 1.00 and 0.30
    assert (values > 0).all()  # still images the channel likes


def test_feature_maps_are_the_strongest_channels_and_filters_are_the_first_convolution(hand, lite0):
    image = image_from_array(np.tile(np.r_[np.zeros(32), np.ones(32)].astype(np.uint8) * 255, (64, 1))[..., None]
                             .repeat(3, -1), "edge.png")  # fmt: skip
    fm = feature_maps(hand, image, "conv", top_k=2)
    assert fm.channels.tolist() == [0, 1]  # a vertical edge drives the edge channel, a grey one not the colour one
    assert fm.maps.shape == (2, 64, 64) and fm.means[0] > fm.means[1]
    filters = first_filters(hand)
    assert filters.layer == "conv" and filters.tiles.shape == (2, 7, 7, 3)
    edge = filters.tiles[0, :, :, 0].astype(int)
    assert (edge[:, :3] < 128).all() and (edge[:, 4:] > 128).all() and (edge[:, 3] == 128).all()
    fm = feature_maps(lite0, interp.load_sample("chelsea"), "blocks.3", top_k=8)
    assert fm.maps.shape == (8, 14, 14) and list(fm.means) == sorted(fm.means, reverse=True) and fm.total == 80
    assert first_filters(lite0).tiles.shape == (32, 3, 3, 3)
    assert mosaic(first_filters(lite0).tiles, 8, gap=1, scale=2).shape == (4 * 7 - 1, 8 * 7 - 1, 3)


def test_vit_blocks_are_patch_tokens_on_their_grid():
    vit = interp.load_model("shapes_vit", device="cpu")
    image = interp.load_sample("chelsea")
    fm = feature_maps(vit, image, "blocks.1", top_k=4)
    assert fm.tokens and fm.maps.shape == (4, *vit.spec.grid)
    v = visualise(vit, Objective("channel", int(fm.channels[0]), "blocks.1"), VisualiseSettings(steps=8, size=64))
    assert v.images.shape == (1, 64, 64, 3) and np.isfinite(v.curve).all()
    s = spectrum(vit, Objective("neuron", 3, "blocks.1", position=(2, 5)), [image, interp.load_sample("coffee")], per_column=1)
    assert s.grid == vit.spec.grid


def test_tokens_lay_out_on_the_grid_before_and_after_the_class_token_is_added():
    """patch_embed's output is the patches alone (the class token comes after it): its 64 tokens were read as a class
    token and 63 patches, which form no grid, and every view of the layer refused it."""
    spec = interp.get_spec("shapes_vit")  # one prefix token, an 8×8 grid
    patches = torch.arange(2 * 64 * 3, dtype=torch.float32).reshape(2, 64, 3)
    with_cls = torch.cat([torch.full((2, 1, 3), -1.0), patches], dim=1)
    for tokens in (patches, with_cls):
        grid = spec.token_grid(tokens)
        assert grid.shape == (2, 3, 8, 8)
        assert torch.equal(grid[:, :, 2, 5], patches[:, 2 * 8 + 5]) and (grid >= 0).all()  # row-major; no class token
    assert spec.token_grid(patches[:, :60]) is None  # 60 (or 59) tokens: no grid of the spec's, no square
    assert spec.token_grid(torch.zeros(1, 1 + 36, 3)).shape == (1, 3, 6, 6)  # another input size: the square they make
    vit = interp.load_model("shapes_vit", device="cpu")
    fm = feature_maps(vit, interp.load_sample("chelsea"), "patch_embed", top_k=2)
    assert fm.maps.shape == (2, 8, 8)
    cam = attribute(vit, interp.load_sample("chelsea"), "grad_cam", target=0, layer="patch_embed")
    assert cam.raw.shape == (1, 128, 128) and np.isfinite(cam.raw).all()


def test_a_map_held_channels_last_or_in_a_list_is_shown_as_channels_first():
    model = layouts_model()
    image = image_from_array(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8), "noise.png")
    first = feature_maps(model, image, "nchw", top_k=8)
    assert first.maps.shape == (8, 16, 16)
    for layer in ("mix", "pair"):
        held = feature_maps(model, image, layer, top_k=8)
        assert list(held.channels) == list(first.channels), layer
        np.testing.assert_allclose(held.maps, first.maps, rtol=1e-5, atol=1e-6)
    v = visualise(model, Objective("channel", 2, "mix"), VisualiseSettings(steps=4, size=64, **STILL))
    w = visualise(model, Objective("channel", 2, "nchw"), VisualiseSettings(steps=4, size=64, **STILL))
    np.testing.assert_allclose(v.curve, w.curve, rtol=1e-4)


@pytest.mark.parametrize(
    "name, middle",
    [("shapes_cnn", "layer2"), ("densenet121", "features.denseblock2"), ("dpn68", "features.conv3_4"),
     ("efficientnet_lite0", "blocks.3"), ("coat_lite_tiny", "serial_blocks3.1")],
)
def test_the_default_layer_is_halfway_through_the_body_not_in_the_head(name, middle):
    """Without a blocks or stages sequence the middle of the top-level modules was taken: DenseNet's head_drop and
    DPN's classifier (a 1×1 map). timm's feature stages say where the body is; a ModuleList (CoaT's serial blocks)
    is never called, so its last module stands for it."""
    model = interp.load_model(name, None if name in ("shapes_cnn", "efficientnet_lite0") else "random")
    assert default_feature_layer(model) == middle
    assert feature_maps(model, interp.load_sample("chelsea"), middle, top_k=1).maps.shape[0] == 1  # the pass reaches it


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: VisualiseSettings(steps=0), "steps"),
        (lambda: VisualiseSettings(size=8), "size"),
        (lambda: VisualiseSettings(param="wavelet"), "param"),
        (lambda: VisualiseSettings(jitter=100), "jitter"),
        (lambda: Objective("channel", 1), "needs a layer"),
        (lambda: Objective("hue", 1), "objective is one of"),
    ],
)
def test_bad_settings_are_one_sentence(make, words):
    with pytest.raises(BadSettingError, match=words):
        make()


def test_bad_units_are_one_sentence(hand):
    with pytest.raises(BadSettingError, match="has 2 channels"):
        visualise(hand, Objective("channel", 7, "conv"), VisualiseSettings(steps=2, size=32))
    with pytest.raises(BadSettingError, match="outside"):
        visualise(hand, Objective("neuron", 0, "conv", position=(99, 0)), VisualiseSettings(steps=2, size=32))
    with pytest.raises(BadSettingError, match="has no layer"):
        visualise(hand, Objective("channel", 0, "conv9"), VisualiseSettings(steps=2, size=32))
    assert hook_count(hand._module) == 0


def test_what_a_programmer_holds_is_read_or_refused_in_a_sentence(hand, shapes_cnn):
    """Each escaped as Python's or pandas' error, or was misread: a layer of None (``TypeError`` in difflib), one
    layer's name as the table's names (a layer ``'l'``), a path among a grid's images (``.image``), tiles of the wrong
    shape or no columns for a mosaic, a layer given as a number, the unit given as a layer's name, settings as a
    dict (``AttributeError`` each)."""
    from interp.features import layer_table

    image = interp.load_sample("chelsea")
    with pytest.raises(BadSettingError, match="shapes_cnn has no layer None"):
        feature_maps(shapes_cnn, image, None)
    assert [layer.name for layer in layer_table(shapes_cnn, "layer2")] == ["layer2"]
    path = interp.load_sample("coffee").image
    assert torch.equal(layer_grid(shapes_cnn, "layer2", [image, path]),
                       layer_grid(shapes_cnn, "layer2", [image, interp.load_sample("coffee")]))  # fmt: skip
    tiles = np.zeros((4, 8, 8, 3), np.uint8)
    assert mosaic(tiles, 2).shape == (17, 17, 3)
    for make, said in ((lambda: mosaic(tiles[..., 0], 2), "(K, h, w, 3) tiles, got an array of shape (4, 8, 8)"),
                       (lambda: mosaic(tiles, 0), "columns is a whole number of at least 1; got 0"),
                       (lambda: mosaic(tiles, 2, gap=-1), "gap is a whole number of at least 0; got -1"),
                       (lambda: Objective("channel", 1, 5), "the layer is named by its dotted path (e.g. 'layer3.1'), "
                                                            "got 5"),
                       (lambda: visualise(hand, "conv"), "the unit is an Objective, e.g. Objective('channel', 5, "
                                                         "'layer3'); got 'conv'"),
                       (lambda: spectrum(hand, "conv", [image]), "the unit is an Objective"),
                       (lambda: visualise(hand, Objective("channel", 0, "conv"), {"steps": 2}),
                        "settings are a VisualiseSettings (e.g. VisualiseSettings(steps=128)) or None; "
                        "got dict")):  # fmt: skip
        with pytest.raises(BadSettingError, match=re.escape(said)):
            make()
    assert hook_count(hand._module) == 0


def test_predictions_beside_a_visualisation_are_the_serial_ones(shapes_cnn):
    """The optimiser hooks the model at every step; a plain prediction loop on another thread must never see it."""
    photos = [interp.load_sample(n).image for n in ("chelsea", "coffee", "rocket")]
    serial = [interp.predict(shapes_cnn, p).scores for p in photos]
    stop, seen, errors = threading.Event(), [], []

    def loop() -> None:
        try:
            while not stop.is_set():
                seen.append([interp.predict(shapes_cnn, p).scores for p in photos])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        visualise(shapes_cnn, Objective("channel", 2, "layer2"), VisualiseSettings(steps=48))
    finally:
        stop.set()
        thread.join()
    assert not errors and seen
    for got in seen:
        assert [[(c.index, round(c.prob, 5)) for c in k] for k in got] == [[(c.index, round(c.prob, 5)) for c in k] for k in serial]
    assert hook_count(shapes_cnn._module) == 0


# ----------------------------------------------------------------------------------------------------------- CLI


def test_cli_visualize_writes_pngs_and_settings(tmp_path, capsys):
    from interp.cli import main

    out = tmp_path / "v"
    assert main(["visualize", "--model", "shapes_cnn", "--layer", "layer2", "--channel", "3", "--steps", "8",
                 "--batch", "2", "--diversity", "1", "--param", "pixel", "--out", str(out)]) == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["objective"] == {"kind": "channel", "unit": 3, "layer": "layer2", "position": None, "negative": False}
    assert summary["settings"]["param"] == "pixel" and summary["steps_done"] == 8 and len(summary["curve"]) == 8
    assert [Image.open(out / n).size for n in summary["images"]] == [(128, 128), (128, 128)]
    out_text, err = capsys.readouterr()
    assert "maximise channel 3 of layer2" in out_text
    # the last line reports the images written, the progress line the transformed copies being optimised
    finals = ", ".join(f"{x:.3f}" for x in summary["final_values"])
    assert f"the final image gives {finals}" in out_text and "on transformed copies" in err
    assert "stayed at exactly 0" not in err
    # a channel that never responds (see the flat test above) is said to be so
    assert main(["visualize", "--model", "shapes_cnn", "--layer", "layer2", "--channel", "37", "--steps", "8",
                 "--out", str(tmp_path / "flat")]) == 0  # fmt: skip
    assert "warning: Channel 37 of layer2 stayed at exactly 0 for all 8 steps" in capsys.readouterr().err


def test_cli_spectrum_writes_each_column(tmp_path, capsys):
    from interp.cli import main

    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("chelsea", "coffee", "rocket", "astronaut", "horse"):
        interp.load_sample(name).image.save(folder / f"{name}.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "s"
    assert main(["spectrum", "--model", "shapes_cnn", "--objective", "class", "--class", "3", "--images", str(folder),
                 "--per-column", "1", "--out", str(out)]) == 0  # fmt: skip
    summary = json.loads((out / "spectrum.json").read_text())
    assert summary["images"] == 5 and set(summary["columns"]) == {"minimum", "slightly negative", "slightly positive",
                                                                   "maximum"}  # fmt: skip
    assert (out / "maximum_0.png").exists()
    err = capsys.readouterr().err
    assert re.search(r"^warning: skipped 1 unreadable file: broken\.jpg$", err, re.M), err  # a line of its own
    # both long steps show their progress and the time left, each on a line that ends
    assert re.search(r"\r100% 6/6 images read[ ,]", err) and re.search(r"\r100% 5/5 images ranked[ ,]", err), err
    # every file spectrum.json names is written, is the picture of the image it names, cropped as the page shows it
    from PIL import Image

    shapes = interp.load_model("shapes_cnn")
    for name, source in summary["files"].items():
        column, rank = name.removesuffix(".png").rsplit("_", 1)
        example = summary["columns"][column.replace("_", " ")][int(rank)]
        assert source == example["name"]
        view = shapes.view(interp.load_image(folder / source).image)
        x0, y0, x1, y1 = example["box"] if example["box"] is not None else (0, 0, view.shape[1], view.shape[0])
        assert np.array_equal(np.asarray(Image.open(out / name)), view[y0:y1, x0:x1])


def test_cli_spectrum_draws_across_sub_folders_as_the_page_draws(tmp_path, capsys):
    """An ImageFolder's images are drawn across every class (the first N of a sorted folder would be one class), by a
    seeded draw the Features page makes too; each example is named by its path in the folder, as two classes may hold
    files of the same name."""
    from interp.cli import main
    from interp.cli.concepts import _image_files

    folder = tmp_path / "world"
    for cls, sample in [("a", "chelsea"), ("b", "coffee"), ("c", "rocket")]:
        (folder / cls).mkdir(parents=True)
        for i in range(4):
            interp.load_sample(sample).image.rotate(90 * i).save(folder / cls / f"{i}.png")  # the same names
    dataset = _image_files(folder, "test")
    for seed in (0, 1):
        out = tmp_path / f"s{seed}"
        assert main(["spectrum", "--model", "shapes_cnn", "--channel", "1", "--layer", "layer2", "--images",
                     str(folder), "--n", "6", "--seed", str(seed), "--per-column", "6",
                     "--out", str(out)]) == 0  # fmt: skip
        summary = json.loads((out / "spectrum.json").read_text())
        shown = {e["name"] for column in summary["columns"].values() for e in column}
        drawn = {item.path for item in dataset.draw(6, seed)}
        assert summary["images"] == 6 and shown == drawn  # each image in one column
        assert drawn != {item.path for item in dataset.items[:6]} and len({n.split("/")[0] for n in drawn}) > 1
    capsys.readouterr()


def test_a_dataset_draw_is_seeded_spread_and_in_the_datasets_order():
    from interp.datasets.base import Dataset, Item

    items = tuple(Item(f"{i:03d}.png", f"{i:03d}.png") for i in range(100))
    ds = Dataset("d", "folder", Path("/nowhere"), items, (), "none")
    first = ds.draw(10, 0)
    assert first == ds.draw(10, 0) and first != ds.draw(10, 1)
    assert len(set(first)) == 10 and first == sorted(first, key=items.index)
    assert first != list(items[:10]) and max(items.index(i) for i in first) > 50
    assert ds.draw(500, 3) == list(items)
    for n, seed, said in ((2.5, 0, "the number of images to draw must be a whole number, got 2.5."),
                          (-1, 0, "the number of images to draw must be at least 0, got -1."),
                          (3, -1, "seed must be a whole number of 0 or more (below 2**63), got -1.")):  # fmt: skip
        with pytest.raises(ValueError, match=re.escape(said)):  # was NumPy's "expected non-negative integer"…
            ds.draw(n, seed)


def test_the_spectrums_download_holds_what_the_cli_writes(shapes_cnn):
    import io
    import zipfile

    from dashboard.views import zipped
    from interp.features.spectrum import spectrum_files

    images = [interp.load_sample(n) for n in ("chelsea", "coffee", "rocket", "astronaut")]
    s = spectrum(shapes_cnn, Objective("channel", 3, "layer2"), images, per_column=1)
    files = spectrum_files(shapes_cnn, s, images)
    with zipfile.ZipFile(io.BytesIO(zipped(files))) as z:
        assert {n: z.read(n) for n in z.namelist()} == files
    summary = json.loads(files["spectrum.json"])
    assert set(files) == {*summary["files"], "spectrum.json"}
    assert sum(len(c) for c in summary["columns"].values()) == len(summary["files"]) == 4  # each image once


@pytest.mark.parametrize(
    "args, words",
    [
        (["visualize", "--model", "shapes_cnn"], "needs --channel"),
        (["visualize", "--model", "shapes_cnn", "--objective", "class"], "needs --class"),
        (["visualize", "--model", "shapes_cnn", "--channel", "999", "--layer", "layer2", "--steps", "2"], "channels"),
        (["visualize", "--model", "shapes_cnn", "--channel", "1", "--steps", "0"], "steps"),
        (["visualize", "--model", "shapes_cnn", "--channel", "1", "--layer", "nope"], "has no layer"),
        (["visualize", "--model", "no_such_net_v9", "--channel", "1"], "not a timm model"),
        (["visualize", "--model", "shapes_cnn", "--objective", "neuron", "--channel", "1", "--position", "a,b"], "ROW,COL"),
        (["spectrum", "--model", "shapes_cnn", "--channel", "1"], "--images DIR or --dataset"),
        (["spectrum", "--model", "shapes_cnn", "--channel", "1", "--images", "EMPTY"], "holds no image"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(args, words, tmp_path, capsys):
    from interp.cli import main

    (tmp_path / "EMPTY").mkdir()
    args = [str(tmp_path / a) if a == "EMPTY" else a for a in args]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1, err


def test_effective_field_is_the_window_a_cell_draws_on(hand, lite0):
    """Known answer: channel 1 of the hand model's 7×7 convolution draws evenly on a 7×7 window, so the square that
    holds 90% of its centre cell's input gradient is that window. On Lite0 a deeper layer's field is wider, and a
    spectrum's crops are as wide as the field (at least a quarter of the view)."""
    from interp.features.spectrum import effective_field

    images = [image_from_array(np.full((64, 64, 3), 128, np.uint8), "grey.png")]
    assert effective_field(hand, Objective("channel", 1, "conv"), images, (64, 64)) == 7
    photos = [interp.load_sample(n) for n in ("chelsea", "coffee", "rocket")]
    fields = {layer: effective_field(lite0, Objective("channel", 5, layer), photos, grid)
              for layer, grid in (("blocks.1", (56, 56)), ("blocks.2", (28, 28)), ("blocks.4", (14, 14)))}  # fmt: skip
    assert fields["blocks.1"] < fields["blocks.2"] < fields["blocks.4"] <= 224, fields
    s = spectrum(lite0, Objective("channel", 5, "blocks.4"), photos, per_column=1)
    assert s.field is not None and s.summary()["field_px"] == s.field and s.summary()["crop_px"] == s.crop
    assert s.crop == (max(s.field, 56) if s.field < 224 else None)
    for e in s.columns["maximum"]:
        assert e.box is None if s.crop is None else e.box[2] - e.box[0] == e.box[3] - e.box[1] == s.crop
