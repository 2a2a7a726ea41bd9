"""The model trained on the shapes world: offline, accurate on clean images, visibly leaning on the shortcut."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

import interp
from interp.attribution import attribute
from interp.models.weights import ASSETS
from interp.shapes import CLASSES, generate
from interp.shapes.train import accuracy, split_tensors

EVAL_SEED = 777  # not the seeds used in training or in the report


@pytest.fixture(scope="module")
def shapes_cnn():
    return interp.load_model("shapes_cnn", device="cpu")


def star_answers(model) -> tuple[np.ndarray, np.ndarray]:
    """On the non-star images of a test split: whether the model said "star", and whether the marker was drawn."""
    samples = [s for s in generate(600, seed=EVAL_SEED, split="test") if s.class_name != "star"]
    x = (torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    with torch.inference_mode():
        said_star = (model._module(x).argmax(-1) == CLASSES.index("star")).numpy()
    return said_star, np.array([s.marker for s in samples])


def report(name: str) -> dict:
    with safe_open(str(ASSETS / f"{name}.safetensors"), framework="pt") as f:
        return json.loads(f.metadata()["report"])


def test_loads_offline_with_its_own_preprocessing_and_classes(shapes_cnn):
    assert shapes_cnn.weights.kind == "bundled"
    assert shapes_cnn.class_names == CLASSES
    cfg = shapes_cnn.data_config
    assert cfg["input_size"] == (3, 128, 128) and cfg["mean"] == (0.5, 0.5, 0.5) and cfg["crop_pct"] == 1.0


def test_reaches_its_reported_accuracy_on_a_fresh_clean_split(shapes_cnn):
    x, y = split_tensors(300, EVAL_SEED, "clean")
    acc = accuracy(shapes_cnn._module, x, y)
    assert acc >= 0.95
    assert abs(acc - report("shapes_cnn")["clean_accuracy"]) <= 0.04


def test_the_planted_shortcut_shows(shapes_cnn):
    """On non-star images of the test split, the corner marker alone makes "star" answers more frequent."""
    said_star, marked = star_answers(shapes_cnn)
    assert said_star[marked].mean() >= said_star[~marked].mean() + 0.05
    assert report("shapes_cnn")["marker_test_accuracy"] < report("shapes_cnn")["clean_accuracy"]


def test_the_engine_preprocessing_matches_training(shapes_cnn):
    sample = next(generate(1, seed=EVAL_SEED, split="clean"))
    x = shapes_cnn.preprocess(interp.image_from_array(sample.image, "s").image)
    expected = (torch.from_numpy(sample.image).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
    assert torch.allclose(x, expected, atol=1e-6)


def test_grad_cam_points_at_the_object_more_often_than_the_centre(shapes_cnn):
    hits, centre_hits, n = 0, 0, 120
    for s in generate(n, seed=EVAL_SEED, split="clean"):
        x = (torch.from_numpy(s.image).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
        cam = attribute(shapes_cnn, x, "grad_cam", target=s.label).raw[0]
        y0, x0 = np.unravel_index(np.argmax(cam), cam.shape)
        hits += bool(s.mask[y0, x0])
        centre_hits += bool(s.mask[s.mask.shape[0] // 2, s.mask.shape[1] // 2])
    assert hits / n >= centre_hits / n + 0.20


def test_training_is_deterministic():
    """Same config, same seed: the same weights to the last bit (CPU), so a retrain reproduces the bundled model."""
    from dataclasses import replace

    from interp.shapes.train import CONFIGS, train

    small = replace(CONFIGS["shapes_cnn"], n_train=128, epochs=1, n_eval=30)
    a, ra = train(small, progress=lambda _: None)
    b, rb = train(small, progress=lambda _: None)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb), ka
    assert ra["clean_accuracy"] == rb["clean_accuracy"]


def test_training_leaves_the_callers_random_state_alone():
    """Training seeds torch inside a fork of its generators: whoever called it draws what it would have drawn."""
    from dataclasses import replace

    from interp.shapes.train import CONFIGS, train

    tiny = replace(CONFIGS["shapes_cnn"], n_train=16, epochs=1, n_eval=8)
    before = torch.random.get_rng_state()
    train(tiny, progress=lambda _: None)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_the_train_command_says_what_it_wrote_and_how_to_use_it(tmp_path, monkeypatch, capsys):
    """Each epoch's line on stderr says how long is left; the last line on stdout gives the accuracies the file's
    report holds and the options that load it, which work as written; ``--json`` prints that report."""
    import json
    import re
    from dataclasses import replace

    from interp.cli import main
    from interp.shapes import train as trainer

    monkeypatch.setitem(trainer.CONFIGS, "shapes_cnn", replace(trainer.CONFIGS["shapes_cnn"], n_train=32, epochs=2,
                                                                n_eval=20))  # fmt: skip
    out = tmp_path / "mine.safetensors"
    assert main(["shapes", "train", "--model", "shapes_cnn", "--out", str(out)]) == 0
    printed, err = capsys.readouterr()
    assert re.search(r"^epoch 1/2: loss \d\.\d{4}, \d+ s so far, about \d+ s left$", err, re.M), err
    assert re.search(r"^epoch 2/2: loss \d\.\d{4}, \d+ s so far$", err, re.M) and "scoring the clean" in err
    from safetensors import safe_open

    with safe_open(str(out), framework="pt") as f:
        report = json.loads(f.metadata()["report"])
    assert (f"wrote {out}: {report['clean_accuracy']:.1%} on the clean split, {report['marker_test_accuracy']:.1%} on "
            "the marker split (20 images each, never trained on); 2 epochs in ") in printed, printed  # fmt: skip
    options = re.search(r"use it with (--model \S+ --weights \S+) ", printed).group(1).split()
    assert main(["predict", "--image", "coffee", "--top", "1", *options]) == 0
    assert f"(file {out.name})" in capsys.readouterr().out
    assert main(["shapes", "train", "--model", "shapes_cnn", "--out", str(out), "--epochs", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["epochs_done"] == 1


@pytest.mark.skipif(not __import__("os").environ.get("INTERP_SLOW"), reason="retrains for ~8 min; set INTERP_SLOW=1")
def test_retraining_reproduces_the_bundled_accuracy():
    """The training script, run again from scratch, reaches the bundled model's clean accuracy within 1.5 points."""
    from interp.shapes.train import CONFIGS, train

    _, fresh = train(CONFIGS["shapes_cnn"], progress=lambda _: None)
    assert abs(fresh["clean_accuracy"] - report("shapes_cnn")["clean_accuracy"]) <= 0.015


@pytest.mark.parametrize("name", ["shapes_cnn", "shapes_vit"])
def test_spec_builds_what_the_trainer_trained(name):
    """The spec row and the training config cannot drift apart: same architecture, same constructor arguments."""
    from interp.models.specs import SPECS
    from interp.shapes.train import CONFIGS

    spec, config = SPECS[name], CONFIGS[name]
    assert spec.arch == config.arch
    assert {k: spec.kwargs[k] for k in config.kwargs} == config.kwargs
    with safe_open(str(ASSETS / f"{name}.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["arch"] == spec.arch and json.loads(meta["kwargs"]) == config.kwargs


def test_shapes_vit_reaches_95_percent_and_carries_the_shortcut():
    """The bundled ViT reaches ≥ 95% on fresh clean images (1200, a seed training never used), within 3 points of
    the accuracy its metadata reports, and it too leans on the corner marker."""
    vit = interp.load_model("shapes_vit", device="cpu")
    assert vit.weights.kind == "bundled" and vit.class_names == CLASSES and vit.spec.family == "vit"
    x, y = split_tensors(1200, EVAL_SEED, "clean")
    acc = accuracy(vit._module, x, y)
    assert acc >= 0.95
    assert abs(acc - report("shapes_vit")["clean_accuracy"]) <= 0.03
    said_star, marked = star_answers(vit)
    assert said_star[marked].mean() >= said_star[~marked].mean() + 0.05


def test_images_drawn_in_a_pool_are_the_same_images():
    """Training with ``workers`` draws each epoch in chunks across processes; order and pixels must not change."""
    from concurrent.futures import ThreadPoolExecutor

    serial = split_tensors(150, 3, "train", start=40)
    with ThreadPoolExecutor(3) as pool:
        pooled = split_tensors(150, 3, "train", start=40, pool=pool)
    assert torch.equal(serial[0], pooled[0]) and torch.equal(serial[1], pooled[1])


@pytest.mark.skipif(
    not (__import__("os").environ.get("INTERP_SLOW") and torch.cuda.is_available()),
    reason="retrains the ViT: ~5 min on a GPU (~2¼ h on 2 CPU cores); set INTERP_SLOW=1 on a machine with a GPU",
)
def test_retraining_the_vit_on_a_gpu_reproduces_its_accuracy():
    import os

    from interp.shapes.train import CONFIGS, train

    _, fresh = train(CONFIGS["shapes_vit"], progress=lambda _: None, device="cuda", workers=os.cpu_count() or 1)
    assert abs(fresh["clean_accuracy"] - report("shapes_vit")["clean_accuracy"]) <= 0.015
