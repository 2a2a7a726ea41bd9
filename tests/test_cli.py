"""``python -m interp``: the JSON shapes, and bad input ending with status 2 and one line, no traceback."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import interp
from interp.cli import build_parser, main
from tests.conftest import ROOT, one_photo_open_images
from tests.corpus import bad_files


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "interp", *args], capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def coffee_jpg(tmp_path_factory):
    from skimage import data

    path = tmp_path_factory.mktemp("img") / "coffee.jpg"
    Image.fromarray(data.coffee()).save(path, quality=95)
    return path


def test_models_json_lists_the_registry(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in rows}
    assert by_name["efficientnet_lite0"]["available"] is True
    assert by_name["resnet50"]["available"] is False and by_name["resnet50"]["reason"]
    assert {"name", "arch", "family", "params", "load_mb", "weights", "available", "reason"} <= set(rows[0])
    # what loading takes, the check that refuses a model too large uses the same estimate: weights read from the hub
    # are held twice while they are copied in
    vit = by_name["vit_base_patch16_224"]
    assert vit["load_mb"] == round(2 * vit["params"] * 4 / 2**20 + 64)
    assert main(["models"]) == 0
    assert f"{vit['load_mb']:,} MB to load" in capsys.readouterr().out


def test_models_layers_lists_the_names_layer_options_take_with_their_output_shapes(capsys):
    """Where a user finds what ``--layer`` takes: the model's layers in the network's order, each with its kind, its
    output for one image (read from a real pass: the same shape the layer's activations have) and its parameters;
    the CAM layer starred even where it is not a top-level layer or block (a ViT's last ``norm1``)."""
    from interp.features import layer_grid

    assert main(["models", "--layers", "shapes_cnn", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    model = interp.load_model("shapes_cnn")
    names = [r["name"] for r in rows]
    order = model.layer_names()
    assert names == sorted(names, key=order.index) and {"layer2", "layer4", "fc"} <= set(names)
    by_name = {r["name"]: r for r in rows}
    image = interp.load_sample("coffee")
    assert tuple(by_name["layer4"]["output"]) == tuple(layer_grid(model, "layer4", [image]).shape[1:])
    assert by_name["fc"]["output"] == [6] and by_name["fc"]["kind"] == "Linear"
    fc = model.layer("fc")
    assert by_name["fc"]["params"] == fc.weight.numel() + fc.bias.numel()
    assert main(["models", "--layers", "shapes_cnn"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  layer4 \*\s+Sequential\s+96 × 4 × 4\s+[\d,]+$", out, re.M), out
    assert "random weights" in out and "* the CAM methods' default layer" in out
    assert main(["models", "--layers", "shapes_cnn", "--all", "--json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == list(order)
    assert main(["models", "--layers", "shapes_vit"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  blocks\.3\.norm1 \*\s+LayerNorm\s+65 × 128 ", out, re.M), out
    assert "tokens × width" in out
    assert main(["models", "--layers", "shapes_cnn", "--weights", "bundled"]) == 0
    assert "shapes_cnn on a 3 × 128 × 128 input, built with its bundled weights;" in capsys.readouterr().out
    for args, words in [(["--layers", "no_such_net_v9"], "not a timm model"), (["--all"], "--all goes with --layers"),
                        (["--layers", "text_bert"], "'text_bert' is the bundled text model, not an image classifier"),
                        (["--timm", "vit", "--layers", "shapes_cnn"], "give one of them")]:  # fmt: skip
        assert main(["models", *args]) == 2
        assert words in capsys.readouterr().err


def test_a_layer_the_model_lacks_names_close_ones_or_where_to_find_them(capsys):
    shapes = interp.load_model("shapes_cnn")
    close = r"no layer 'layr4'\. Did you mean layer4, layer4\.0 or layer3\? `python"
    with pytest.raises(interp.InterpError, match=close):
        shapes.layer("layr4")
    with pytest.raises(interp.InterpError, match=r"Its top-level layers are conv1, bn1, .* `python -m interp models "
                       r"--layers shapes_cnn` lists them"):  # fmt: skip
        shapes.layer("qqqqqq")
    with pytest.raises(interp.InterpError, match="has no layer ''"):  # not the whole network
        shapes.layer("")
    # every command with --layer says so, and the command it names works as written
    assert main(["cav-features", "--model", "shapes_cnn", "--layer", "qqqqqq", "--images", str(ROOT / "assets"),
                 "--out", "unused.npz"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    command = re.search(r"`python -m interp (models --layers shapes_cnn)`", err).group(1).split()
    assert main(command) == 0 and "layer4" in capsys.readouterr().out


def test_models_timm_lists_timms_names_with_their_pretrained_tags(capsys):
    """Where a person who typed an unknown name finds the right one: timm's registry by pattern, each name with its
    pretrained tags, timm's default (what ``--model NAME`` loads) first; a pattern without wildcards is a part of
    the name; no match is one sentence; nothing is downloaded."""
    from timm.models import get_pretrained_cfg

    assert main(["models", "--timm", "resnet5?", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["resnet50"]
    assert rows[0]["pretrained"][0] == get_pretrained_cfg("resnet50").tag and len(rows[0]["pretrained"]) > 4
    assert main(["models", "--timm", "vit_small_patch16"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^vit_small_patch16_224\s+\d+ pretrained: augreg_in21k_ft_in1k, ", out, re.M)
    lines = [line for line in out.splitlines() if line and not line.startswith(" ")]
    assert all("vit_small_patch16" in line for line in lines[:-1])
    assert re.search(r"^\d+ names, \d+ with pretrained weights", lines[-1])
    assert main(["models", "--timm", "*"]) == 0  # every name: both counts written alike, with a thousands comma
    assert re.search(r"^\d,\d{3} names, \d,\d{3} with pretrained weights", capsys.readouterr().out.splitlines()[-1])
    assert main(["models", "--timm", "zz_no_such"]) == 2
    assert "no timm model name matches 'zz_no_such'" in capsys.readouterr().err
    assert main(["models", "--timm", "convnxt_t*"]) == 2  # a misspelt pattern is offered the names it was near
    assert "no timm model name matches 'convnxt_t*' (patterns" in (err := capsys.readouterr().err)
    assert "; did you mean convnext_tiny, convnext_" in err and err.rstrip().endswith("?"), err  # (timm's list grows)
    # the hint an unknown name gives points here, and works as written
    with pytest.raises(interp.InterpError, match=r"python -m interp models --timm PATTERN"):
        interp.get_spec("qqqqqqqqqqqq")


def test_predict_json(coffee_jpg, capsys):
    assert main(["predict", "--image", str(coffee_jpg), "--top", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "efficientnet_lite0"
    assert [set(p) for p in out["predictions"]] == [{"index", "label", "prob"}] * 3
    assert out["predictions"][0]["label"] == "espresso" and out["predictions"][0]["index"] == 967
    probs = [p["prob"] for p in out["predictions"]]
    assert probs == sorted(probs, reverse=True)


def test_image_names_a_file_or_else_a_bundled_photo(tmp_path, monkeypatch, capsys):
    """The README's commands can be tried before one has photos: ``--image coffee`` is the bundled photo where no file
    has that name; a file of that name comes first, and a path that names neither lists the bundled names."""
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "--image", "coffee", "--top", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["predictions"][0]["label"] == "espresso"
    interp.load_sample("chelsea").image.save(tmp_path / "coffee", format="PNG")  # a file named like a sample wins
    assert main(["predict", "--image", "coffee", "--top", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["predictions"][0]["label"] == "tiger cat"
    assert main(["predict", "--image", "coffee.jpg"]) == 2
    assert capsys.readouterr().err.strip() == "error: there is no file at coffee.jpg; for the bundled photo, write " \
        "--image coffee."
    assert main(["evaluate", "--image", "photos/cat.jpg", "--method", "grad_cam"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: there is no file at photos/cat.jpg; check the path, or name a bundled photo: ")
    assert all(name in err for name in interp.sample_names())
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")  # a file that exists keeps its own sentence
    assert main(["predict", "--image", "broken.jpg"]) == 2
    assert "broken.jpg is not an image we can read" in capsys.readouterr().err
    out = tmp_path / "maps"
    assert main(["attribute", "--image", "shapes_star", "--image", "chelsea", "--method", "grad_cam",
                 "--model", "shapes_cnn", "--out", str(out)]) == 0  # fmt: skip
    assert (out / "shapes_star" / "grad_cam.png").is_file() and (out / "chelsea" / "grad_cam.png").is_file()


def test_every_command_with_weights_takes_their_class_names(tmp_path, capsys):
    """``--classes`` names the outputs of ``--weights`` on every command that loads a model for its classes (only
    ``predict`` took it): the names label the predictions, a target is found by them, and a file that cannot name
    the outputs is one sentence."""
    from interp.shapes.generator import CLASSES

    weights = str(ROOT / "assets" / "shapes_cnn.safetensors")
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"my {c}" for c in CLASSES) + "\n\n", encoding="utf-8")
    parser = build_parser()
    with_weights = sorted(n for n, sub in parser._subparsers._group_actions[0].choices.items()
                          if any("--weights" in a.option_strings for a in sub._actions))  # fmt: skip
    with_classes = sorted(n for n, sub in parser._subparsers._group_actions[0].choices.items()
                          if any("--classes" in a.option_strings for a in sub._actions))  # fmt: skip
    assert set(with_weights) - set(with_classes) == {"cav-features", "methods", "models"}, with_classes  # no classes
    assert main(["predict", "--model", "shapes_cnn", "--image", "shapes_star", "--weights", weights, "--classes",
                 str(names), "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["predictions"][0]["label"] == "my star"
    out = tmp_path / "maps"
    assert main(["attribute", "--model", "shapes_cnn", "--image", "shapes_star", "--weights", weights, "--classes",
                 str(names), "--method", "grad_cam", "--target", "my circle", "--out", str(out)]) == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert [(r["target"], r["label"]) for r in summary["images"][0]["results"]] == [(0, "my circle")]
    capsys.readouterr()
    (tmp_path / "five.txt").write_text("\n".join(CLASSES[:5]), encoding="utf-8")
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00star")
    said = {}
    for bad in ("five.txt", "empty.txt", "binary.txt", "missing.txt"):
        assert main(["scan", "--model", "shapes_cnn", "--dataset", "Shapes world · test split", "--weights", weights,
                     "--classes", str(tmp_path / bad), "--out", str(tmp_path / "scan")]) == 2  # fmt: skip
        said[bad] = capsys.readouterr().err.strip().splitlines()
    assert said["five.txt"] == ["error: 5 class names were given but the model has 6 outputs; give one name per "
                                "output."]  # fmt: skip
    assert said["empty.txt"] == [f"error: {tmp_path / 'empty.txt'} has no class names; write one name per line."]
    assert said["binary.txt"] == [f"error: {tmp_path / 'binary.txt'} is not UTF-8 text; save it as plain text, one "
                                  "class name a line."]  # fmt: skip
    assert len(said["missing.txt"]) == 1 and "cannot read the class names file" in said["missing.txt"][0]


def test_predict_text_output(coffee_jpg):
    result = run_cli("predict", "--image", str(coffee_jpg))
    assert result.returncode == 0, result.stderr
    assert "espresso" in result.stdout and "[967]" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["predict", "--image", "/no/such/file.jpg"],
        ["predict", "--image", "{bad}"],
        ["predict", "--model", "resnet5O", "--image", "{coffee}"],
        ["predict", "--model", "resnet50", "--image", "{coffee}"],
        ["predict", "--image", "{coffee}", "--top", "0"],
        ["predict", "--image", "{coffee}", "--weights", "/no/such/weights.safetensors"],
        ["predict", "--image", "{coffee}", "--device", "cuda:7"],
        ["predict"],
        ["frobnicate"],
    ],
)
def test_bad_input_exits_2_with_one_line(args, coffee_jpg, tmp_path):
    bad = tmp_path / "half.jpg"
    bad.write_bytes(bad_files()["truncated_jpeg"][1])
    args = [a.replace("{bad}", str(bad)).replace("{coffee}", str(coffee_jpg)) for a in args]
    result = run_cli(*args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_methods_json_lists_every_method(capsys):
    from interp.attribution import METHODS

    assert main(["methods", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(METHODS)
    assert all(r["paper"] and r["summary"] for r in rows)


def test_attribute_with_enough_steps_doubles_ig_until_its_map_adds_up(tmp_path, capsys):
    """On the shapes_star photo, Lite0's IG misses by 9% at 32 steps: flagged without the option, found with it."""
    import interp

    path = tmp_path / "star.png"
    interp.load_sample("shapes_star").image.save(path)
    args = ["attribute", "--image", str(path), "--method", "integrated_gradients", "--no-cache"]
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0
    assert "⚠ above 5%" in capsys.readouterr().out
    assert main([*args, "--enough-steps", "--out", str(tmp_path / "enough")]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "integrated_gradients:" in x)
    (result,) = json.loads((tmp_path / "enough" / "summary.json").read_text())["images"][0]["results"]
    steps = result["params"]["steps"]
    assert steps in (64, 128, 256, 512, 1024) and f"at {steps} steps" in line and "⚠" not in line
    assert result["relative_delta"] <= 0.05


def test_a_cache_folder_that_cannot_be_written_is_said_and_the_results_go_to_the_users_temporary_one(
    coffee_jpg, tmp_path, monkeypatch, capsys
):
    (tmp_path / "a-file").write_text("in the way")
    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path / "a-file" / "cache"))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    args = ["attribute", "--image", str(coffee_jpg), "--method", "saliency", "--out", str(tmp_path / "maps")]
    assert main(args) == 0
    first = capsys.readouterr()
    assert f"the cache folder {tmp_path / 'a-file' / 'cache'} cannot be written (Not a directory)" in first.err
    assert "saliency: espresso" in first.out and "cached" not in first.out
    assert main(args) == 0
    assert "saliency: espresso cached" in capsys.readouterr().out  # kept in the temporary folder
    assert [p.name for p in tmp_path.glob("interp-*")], list(tmp_path.iterdir())


@pytest.mark.parametrize("sign", ["positive", "signed"])
def test_attribute_draws_the_part_of_the_map_asked_for(coffee_jpg, tmp_path, sign):
    """The overlay PNG is the stored map drawn with --sign (default: positive, the evidence for the class, as the
    page draws it); the .npz keeps the whole signed map either way."""
    from interp.attribution.display import DisplaySettings, overlay

    out = tmp_path / sign
    extra = [] if sign == "positive" else ["--sign", sign]
    assert main(["attribute", "--image", str(coffee_jpg), "--method", "integrated_gradients", "--set", "steps=16",
                 *extra, "--out", str(out)]) == 0  # fmt: skip
    with np.load(out / "integrated_gradients.npz") as npz:
        raw, base = npz["raw"], npz["input"]
    assert raw.min() < 0 < raw.max()
    drawn = np.asarray(Image.open(out / "integrated_gradients.png"))
    np.testing.assert_array_equal(drawn, overlay(base, raw, DisplaySettings(alpha=0.5, sign=sign)))


def test_attribute_writes_overlays_raw_maps_and_summary(coffee_jpg, tmp_path, capsys):
    out = tmp_path / "attr"
    code = main(["attribute", "--image", str(coffee_jpg), "--method", "grad_cam", "--method", "integrated_gradients",
                 "--set", "steps=16", "--out", str(out)])  # fmt: skip
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    (entry,) = summary["images"]
    by_name = {r["method"]: r for r in entry["results"]}
    assert set(by_name) == {"grad_cam", "integrated_gradients"}
    assert by_name["grad_cam"]["target"] == 967 and by_name["grad_cam"]["delta"] is None
    assert by_name["integrated_gradients"]["params"]["steps"] == 16
    ig = by_name["integrated_gradients"]
    assert isinstance(ig["delta"], float)
    # the IG line reads its error against the score change, as the page's caption does
    line = next(x for x in capsys.readouterr().out.splitlines() if "integrated_gradients:" in x)
    assert f"completeness error {ig['delta']:+.3f} ({ig['relative_delta']:.1%} of the" in line
    for name in by_name:
        assert Image.open(out / f"{name}.png").size == (224, 224)
        with np.load(out / f"{name}.npz") as npz:
            assert npz["raw"].shape[-2:] == (224, 224)
    # a rerun reads the result cache the app shares; --no-cache computes again
    assert main(["attribute", "--image", str(coffee_jpg), "--method", "integrated_gradients", "--set", "steps=16",
                 "--out", str(out)]) == 0  # fmt: skip
    (again,) = json.loads((out / "summary.json").read_text())["images"][0]["results"]
    assert again["cached"] and again["delta"] == by_name["integrated_gradients"]["delta"]
    assert main(["attribute", "--image", str(coffee_jpg), "--method", "integrated_gradients", "--set", "steps=16",
                 "--no-cache", "--out", str(out)]) == 0  # fmt: skip
    assert not json.loads((out / "summary.json").read_text())["images"][0]["results"][0]["cached"]


def test_attribute_batch_folder_targets_settings_and_a_method_that_does_not_apply(tmp_path, capsys):
    """A folder of images (one unreadable), two targets, a setting, and a method the model cannot take: the others
    run, the skip and the unreadable file are warnings, and the summary counts them."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("coffee", "chelsea"):
        interp.load_sample(name).image.save(folder / f"{name}.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "notes.txt").write_text("ignored: not an image")
    out = tmp_path / "batch"
    code = main(["attribute", "--model", "test_vit", "--weights", "random", "--images", str(folder),
                 "--method", "grad_cam", "--method", "deeplift", "--method", "occlusion", "--target", "1",
                 "--target", "2", "--set", "occlusion.window=64", "--set", "stride=64", "--out", str(out)])  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    assert "deeplift skipped" in err and "broken.jpg skipped" in err
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["skipped_methods"]) == {"deeplift"} and len(summary["unreadable"]) == 1
    assert summary["maps"] == 2 * 2 * 2  # 2 images × 2 targets × 2 methods
    for entry in summary["images"]:
        assert {(r["method"], r["target"]) for r in entry["results"]} == {
            (m, t) for m in ("grad_cam", "occlusion") for t in (1, 2)}  # fmt: skip
        occ = next(r for r in entry["results"] if r["method"] == "occlusion")
        assert occ["params"]["window"] == 64 and occ["params"]["stride"] == 64
        assert (Path(entry["folder"]) / "occlusion__2.png").is_file()
    # a folder of class folders holds no image directly: the sentence names them and the option that reads one
    assert main(["attribute", "--images", str(tmp_path), "--method", "saliency", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"It has 2 sub-folders (batch, imgs), which --images does not read: name one, as --images {out}." in err


def test_attribute_scores_every_map_as_the_page_does(tmp_path, capsys):
    """--scores: each map's deletion and insertion beside its class's random floor, the numbers the page's trust
    scores give (grid_curves with its defaults), a line each and the image's scoreboard sentence last."""
    from interp.evaluation import grid_curves, score_line, scoreboard, scoreboard_sentence

    out = tmp_path / "scored"
    assert main(["attribute", "--model", "shapes_cnn", "--image", "shapes_star", "--method", "grad_cam,saliency",
                 "--target", "3", "--target", "0", "--scores", "--no-cache", "--out", str(out)]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    (entry,) = json.loads((out / "summary.json").read_text())["images"]
    model, image = interp.load_model("shapes_cnn"), interp.load_sample("shapes_star")
    results = [interp.attribution.attribute(model, image, r["method"], r["target"]) for r in entry["results"]]
    floors, curves = grid_curves(model, image, results)
    for row, result, c in zip(entry["results"], results, curves, strict=True):
        floor = floors[result.target]
        assert row["scores"]["insertion_auc"] == pytest.approx(c.insertion_auc, abs=1e-6)
        assert row["scores"]["random_deletion_spread"] == pytest.approx(floor.deletion_spread, abs=1e-6)
        name = model.class_names[result.target]
        assert f"shapes_star {result.method} for {name}: {score_line(c, floor)}" in lines
    table = scoreboard((r.method, model.class_names[r.target], c, floors[r.target]) for r, c in zip(results, curves))
    assert entry["verdict"] == scoreboard_sentence(table, 16) and lines[-2] == entry["verdict"]  # then "wrote …"
    assert main(["attribute", "--image", "chelsea", "--method", "saliency", "--out", str(tmp_path / "plain")]) == 0
    (plain,) = json.loads((tmp_path / "plain" / "summary.json").read_text())["images"]
    assert "verdict" not in plain and "scores" not in plain["results"][0]  # only when asked: each costs 42 passes


def test_attribute_scores_that_cannot_be_computed_are_a_warning_and_the_maps_stay(tmp_path, capsys, monkeypatch):
    import interp.evaluation as scoring
    from interp.errors import BadSettingError

    def refuse(*args, **kwargs):
        raise BadSettingError("the map holds NaN or infinite values, so it ranks no pixels and cannot be scored.")

    monkeypatch.setattr(scoring, "grid_curves", refuse)
    out = tmp_path / "o"
    assert main(["attribute", "--model", "shapes_cnn", "--image", "shapes_star", "--method", "saliency", "--scores",
                 "--out", str(out)]) == 0  # fmt: skip
    assert "warning: no scores for shapes_star: the map holds NaN" in capsys.readouterr().err
    (entry,) = json.loads((out / "summary.json").read_text())["images"]
    assert entry["scores_failed"].startswith("the map holds NaN") and (out / "saliency.png").is_file()


def test_attribute_top_k_explains_each_images_top_classes(coffee_jpg, tmp_path):
    out = tmp_path / "topk"
    assert main(["attribute", "--image", str(coffee_jpg), "--method", "saliency", "--top-k", "3", "--out", str(out)]) == 0
    (entry,) = json.loads((out / "summary.json").read_text())["images"]
    top3 = [s.index for s in interp.predict(interp.load_model("efficientnet_lite0"), interp.load_image(coffee_jpg), 3).scores]
    assert [r["target"] for r in entry["results"]] == top3


def test_attribute_exits_3_when_nothing_ran(coffee_jpg, tmp_path):
    result = run_cli("attribute", "--model", "test_vit", "--weights", "random", "--image", str(coffee_jpg),
                     "--method", "deeplift", "--method", "guided_backprop", "--out", str(tmp_path / "o"))  # fmt: skip
    assert result.returncode == 3
    assert "deeplift skipped" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("attribute", "--image", "/dev/zero", "--method", "grad_cam", "--out", str(tmp_path / "o2"))
    assert result.returncode == 3 and "Traceback" not in result.stderr


def test_attribute_deeplift_prints_its_line_and_no_library_noise(coffee_jpg, tmp_path):
    """DeepLIFT on the default model: one line with a map that adds up, and nothing of Captum's on stderr (it warns
    on every call that it hooks the activations)."""
    result = run_cli("attribute", "--image", str(coffee_jpg), "--method", "deeplift", "--out", str(tmp_path / "o"),
                     "--no-cache")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "deeplift: espresso" in result.stdout and "(0.0% of the" in result.stdout
    assert result.stderr.strip() == "", result.stderr


@pytest.mark.slow
def test_case_study_writes_a_report(tmp_path):
    out = tmp_path / "case"
    assert main(["case-study", "--out", str(out)]) == 0
    report = (out / "report.html").read_text()
    assert "Grad-CAM" in report and "data:image/png;base64," in report
    assert Image.open(out / "grid.png").size[0] > 800
    # each photo's Integrated Gradients map adds up to its logit change: steps were raised where 32 left 15-32%
    notes = re.findall(r"<li>(\w+): Integrated Gradients at (\d+) steps, completeness error \S+ \(([\d.]+)% of", report)
    assert [n[0] for n in notes] == ["chelsea", "coffee", "camera", "motorcycle"], notes
    assert all(float(share) <= 5 for _, _, share in notes) and "⚠" not in report.split("<ul>")[-1], notes
    assert {int(steps) for _, steps, _ in notes} > {32}, notes  # the camera needed more than the default
    # how far to trust each map: per photo the page's scoreboard sentence and the three maps beside random maps'
    trust = report.split("<h2>How far to trust each map</h2>")[1].split("<h2>")[0]
    assert re.findall(r"<h3>(\w+)</h3><p>On this image, ", trust) == ["chelsea", "coffee", "camera", "motorcycle"]
    scores = re.findall(r"<tr><td>([\w\- ]+)</td><td>([\d.]+)</td><td>([\d.]+) ± ([\d.]+)</td>", trust)
    assert len(scores) == 12 and {m for m, *_ in scores} == {"Grad-CAM", "Integrated Gradients", "Occlusion"}
    assert all(0 <= float(x) <= 1 for _, *values in scores for x in values)
    camera = trust.split("<h3>camera</h3>")[1].split("<h3>")[0]
    assert "Grad-CAM brings back tripod fastest" in camera  # its insertion far above the floor (0.86 against 0.36)


@pytest.mark.parametrize(
    "args",
    [
        ["attribute", "--image", "{coffee}", "--method", "magic", "--out", "{out}"],
        ["attribute", "--image", "{coffee}", "--method", "grad_cam", "--target", "1000", "--out", "{out}"],
        ["attribute", "--image", "{coffee}", "--out", "{out}"],
        ["attribute", "--image", "{coffee}", "--method", "integrated_gradients", "--set", "steps=0", "--out", "{out}"],
        ["attribute", "--image", "{coffee}", "--method", "integrated_gradients", "--set", "integrated_gradients.steps=1e5",
         "--out", "{out}"],
        ["attribute", "--image", "{coffee}", "--method", "grad_cam", "--set", "steps=8", "--out", "{out}"],
        ["attribute", "--image", "{coffee}", "--method", "grad_cam", "--set", "occlusion.window=8", "--out", "{out}"],
        ["attribute", "--image", "{coffee}", "--method", "occlusion", "--set", "window", "--out", "{out}"],
        ["attribute", "--image", "{coffee}", "--method", "lime", "--set", "baseline=purple", "--out", "{out}"],
        ["attribute", "--image", "{coffee}", "--method", "grad_cam", "--top-k", "0", "--out", "{out}"],
        ["attribute", "--images", "{coffee}", "--method", "grad_cam", "--out", "{out}"],
        ["attribute", "--image", "{coffee}", "--method", "grad_cam", "--out", "{file}"],
    ],
)
def test_attribute_bad_input_exits_2(args, coffee_jpg, tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    args = [a.replace("{coffee}", str(coffee_jpg)).replace("{out}", str(tmp_path / "o"))
            .replace("{file}", str(tmp_path / "a_file")) for a in args]  # fmt: skip
    result = run_cli(*args)
    assert result.returncode == 2
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1, result.stderr


def test_attention_writes_maps_arrays_and_stats(coffee_jpg, tmp_path):
    out = tmp_path / "attn"
    assert main(["attention", "--model", "test_vit", "--weights", "random", "--image", str(coffee_jpg), "--target", "3",
                 "--out", str(out)]) == 0  # fmt: skip
    stats = json.loads((out / "stats.json").read_text())
    layers, heads = stats["layers"], stats["heads"]
    assert stats["target"] == 3 and len(stats["per_head"]) == layers * heads and len(stats["per_layer"]) == layers
    assert all(0 <= h["entropy"] <= stats["max_entropy"] + 1e-6 for h in stats["per_head"])
    (rows, cols), (py, px) = stats["grid"], stats["patch_px"]
    diagonal = ((rows - 1) ** 2 * py**2 + (cols - 1) ** 2 * px**2) ** 0.5
    assert 0 < stats["uniform_distance_px"] < diagonal
    for name in ("rollout", "gradient_rollout", "chefer_relevance", *(f"layer_{i:02d}" for i in range(layers))):
        assert Image.open(out / f"{name}.png").size == (160, 160)
    import numpy as np

    with np.load(out / "attention.npz") as npz:
        assert npz["attn"].shape == (layers, heads, stats["tokens"], stats["tokens"])
        np.testing.assert_allclose(npz["attn"].sum(-1), 1.0, atol=1e-5)
        assert npz["rollout"].shape == tuple(stats["grid"])
        shares = npz["attn"][:, :, 1:, 0].mean(-1)  # (layers, heads): the patches' attention on the class token
    for l, layer in enumerate(stats["per_layer"]):
        assert layer["prefix_share"] == pytest.approx(shares[l].mean(), abs=1e-5)
    assert [h["prefix_share"] for h in stats["per_head"]] == pytest.approx(shares.ravel(), abs=1e-4)
    # the titled pictures: the three maps side by side, and the page's grid of every head of every layer with each
    # layer's mean (rows: layers; columns: heads, then the mean), drawn by the function the page draws it with
    from interp.attention import capture, cls_maps
    from interp.attention.render import heads_grid
    from interp.attribution.display import grid_png

    model = interp.load_model("test_vit", "random")
    x = model.preprocess(Image.open(coffee_jpg).convert("RGB"))[None].to(model.device)
    cap = capture(model, x, 3)
    rows_, cols_, _ = heads_grid(cls_maps(cap), model.to_display(x[0]))
    assert rows_ == [f"layer {i}" for i in range(layers)] and cols_ == [*(f"head {h}" for h in range(heads)), "mean"]
    assert (out / "heads.png").read_bytes() == grid_png(*heads_grid(cls_maps(cap), model.to_display(x[0])), cell=112)
    maps_png = Image.open(out / "maps.png")
    assert maps_png.width > 3 * 256 and 256 < maps_png.height < 256 + 60


@pytest.mark.parametrize(
    "args",
    [
        ["attention", "--model", "efficientnet_lite0", "--image", "{coffee}", "--out", "{out}"],
        ["attention", "--model", "test_vit", "--weights", "random", "--image", "{coffee}", "--target", "5000", "--out", "{out}"],
        ["attention", "--model", "test_vit", "--weights", "random", "--image", "{coffee}", "--discard-ratio", "1.5",
         "--out", "{out}"],
    ],
)  # fmt: skip
def test_attention_bad_input_exits_2(args, coffee_jpg, tmp_path):
    args = [a.replace("{coffee}", str(coffee_jpg)).replace("{out}", str(tmp_path / "o")) for a in args]
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1, result.stderr


def test_scan_then_failures(tmp_path):
    from interp.shapes import write_image_folder

    root = tmp_path / "shapes"
    write_image_folder(root, 60, seed=3, split="test")
    (root / "star" / "bad.png").write_bytes(b"nope")
    out = tmp_path / "scan"
    result = run_cli("scan", "--model", "shapes_cnn", "--dataset", "folder", "--root", str(root), "--out", str(out),
                     "--limit", "40", "--batch-size", "8", "--workers", "0")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "40/40 images" in result.stdout and "images/s" in result.stderr
    again = run_cli("scan", "--model", "shapes_cnn", "--dataset", "folder", "--root", str(root), "--out", str(out),
                    "--workers", "0")  # fmt: skip
    assert again.returncode == 0 and "61/61 images" in again.stdout and "21 new this run" in again.stdout
    listed = run_cli("failures", "--scan", str(out), "--min-confidence", "0", "--json")
    data = json.loads(listed.stdout)
    assert data["summary"]["images"] == 61 and data["summary"]["unreadable"] == 1
    confidences = [f["confidence"] for f in data["failures"]]
    assert confidences == sorted(confidences, reverse=True) and all(f["pred"] != f["label"] for f in data["failures"])
    text = run_cli("failures", "--scan", str(out))
    assert text.returncode == 0 and "accuracy" in text.stdout
    # the scan's last line is the verdict the failures list opens with, and names the command that lists them
    s = data["summary"]
    sure = sum(f["confidence"] >= 0.5 for f in data["failures"])
    verdict = f"accuracy {s['accuracy']:.1%} on {s['scored']} images, {s['mistakes']} mistake"
    assert verdict in again.stdout and f"accuracy {s['accuracy']:.1%} on {s['scored']} images" in text.stdout
    assert (f"; {sure} at confidence ≥ 50%: `python -m interp failures --scan {out}` lists them" in again.stdout) == (
        sure > 0), again.stdout
    # a scan with nothing left to do says so, without a rate of nothing and without an empty line
    done = run_cli("scan", "--model", "shapes_cnn", "--dataset", "folder", "--root", str(root), "--out", str(out),
                   "--workers", "0")  # fmt: skip
    assert done.returncode == 0 and "61/61 images" in done.stdout and "every one scanned before" in done.stdout
    assert "images/s" not in done.stdout + done.stderr and verdict in done.stdout
    # the list says how many mistakes there are when it shows fewer; a percentage for a probability gets the number
    top = run_cli("failures", "--scan", str(out), "--min-confidence", "0", "--top", "1")
    assert f"{s['mistakes']} mistakes at confidence ≥ 0%, the 1 most confident shown" in top.stdout, top.stdout
    percent = run_cli("failures", "--scan", str(out), "--min-confidence", "50")
    assert percent.returncode == 2 and "for 50% write 0.5" in percent.stderr


def test_failures_name_every_true_class_of_an_open_images_photo(tmp_path):
    """A photo labelled Cat and Dog, called a tiger cat: the list says both true classes (it said the first), and
    the JSON carries every label the scan compared with."""
    root = one_photo_open_images(tmp_path / "oi")
    out = tmp_path / "scan"
    result = run_cli("scan", "--model", "efficientnet_lite0", "--dataset", "openimages", "--root", str(root),
                     "--mapping", "oi_to_imagenet.csv", "--out", str(out), "--workers", "0")  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = run_cli("failures", "--scan", str(out), "--min-confidence", "0.3")
    (line,) = [x for x in text.stdout.splitlines() if "true:" in x]
    assert "tiger cat" in line and "true: tabby / golden retriever" in line, text.stdout
    (mistake,) = json.loads(run_cli("failures", "--scan", str(out), "--min-confidence", "0.3", "--json").stdout)[
        "failures"]
    assert mistake["labels"] == [281, 207] and mistake["label"] == 281


@pytest.mark.parametrize(
    "args",
    [
        ["scan", "--model", "shapes_cnn", "--dataset", "folder", "--root", "{missing}", "--out", "{out}"],
        ["scan", "--model", "shapes_cnn", "--dataset", "imagenet", "--root", "{empty}", "--out", "{out}"],
        ["scan", "--model", "shapes_cnn", "--dataset", "folder", "--root", "{empty}", "--out", "{out}", "--limit", "0"],
        ["scan", "--model", "shapes_cnn", "--dataset", "imagenet"],  # a kind needs its folder
        ["scan", "--model", "shapes_cnn", "--dataset", "No such dataset"],  # not a configured name
        ["scan", "--model", "shapes_cnn", "--dataset", "zip", "--root", "{empty}"],  # not a kind one may name
        ["failures", "--scan", "{empty}"],
    ],
)
def test_scan_bad_input_exits_2(args, tmp_path):
    (tmp_path / "empty").mkdir()
    subs = {"{missing}": str(tmp_path / "missing"), "{empty}": str(tmp_path / "empty"), "{out}": str(tmp_path / "o")}
    result = run_cli(*[subs.get(a, a) for a in args])
    assert result.returncode == 2, result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1, result.stderr


@pytest.mark.parametrize(
    "args, said",
    [
        (["scan", "--model", "shapes_cnn", "--dataset", "Shapes world · test split", "--mapping", "m.csv"],
         "--mapping is for"),
        (["scan", "--model", "shapes_cnn", "--dataset", "folder", "--root", "{tmp}", "--mapping", "m.csv"],
         "--mapping is for"),
        (["failures", "--scan", "{tmp}", "--top", "0"], "--top must be at least 1, got 0."),
        (["failures", "--scan", "{tmp}", "--top", "-1"], "--top must be at least 1, got -1."),
    ],
)  # fmt: skip
def test_an_option_the_command_would_ignore_or_misread_is_refused(args, said, tmp_path, capsys):
    """``--mapping`` beside a dataset that takes none was dropped without a word; ``failures --top -1`` listed all
    but the last failure (a Python slice)."""
    assert main([a.replace("{tmp}", str(tmp_path)) for a in args]) == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "scan.json").exists()


@pytest.mark.parametrize(
    "args, said",
    [
        (["shapes", "generate", "--out", "{tmp}/g", "--n", "2", "--size", "100000"],
         "--size is from 64 to 1024 pixels"),
        (["shapes", "generate", "--out", "{tmp}/g", "--n", "2", "--seed", "-1"], "--seed is 0 or more, got -1."),
        (["shapes", "train", "--model", "shapes_cnn", "--out", "{tmp}/m.safetensors", "--continue-from",
          "{tmp}/junk.safetensors"], "junk.safetensors is not a valid safetensors file"),
        (["shapes", "train", "--model", "shapes_cnn", "--out", "{tmp}/m.safetensors", "--continue-from",
          "{tmp}/gone.safetensors"], "there is no weights file at"),
        (["shapes", "train", "--model", "shapes_cnn", "--out", "{tmp}/m.safetensors", "--continue-from",
          str(ROOT / "assets" / "shapes_vit.safetensors")],
         "shapes_vit.safetensors does not fit timm's test_resnet: 92 tensors missing"),
        (["text-train", "--out", "{tmp}/t", "--sentences", "0"], "--sentences must be at least 1, got 0."),
        (["text-train", "--out", "{tmp}/t", "--epochs", "-1"], "--epochs must be at least 1, got -1."),
        (["text-train", "--out", "{tmp}/junk.safetensors", "--sentences", "8"], "is a file, not a folder"),
        (["shapes", "generate", "--out", "{tmp}/junk.safetensors/g", "--n", "2"],
         "junk.safetensors/g cannot be made (not a directory); name a folder you can write to."),  # was [Errno 20]
        (["shapes", "train", "--model", "shapes_cnn", "--out", "{tmp}/junk.safetensors/m.safetensors"],
         "junk.safetensors is a file, not a folder"),  # said after the training
        (["cav-features", "--model", "shapes_cnn", "--layer", "layer2", "--images", "{tmp}", "--out",
          "{tmp}/junk.safetensors/a.npz"], "junk.safetensors is a file, not a folder"),  # said after the extraction
        (["shapes", "generate", "--out", "/proc", "--n", "2"],
         "--out /proc takes no files (no such file or directory); name a folder you can write to."),
        (["cav-features", "--model", "shapes_cnn", "--layer", "layer2", "--images", "{tmp}", "--out",
          "/proc/a.npz"], "--out /proc takes no files"),  # was "[Errno 2] …" after the extraction
    ],
)  # fmt: skip
def test_training_and_generating_refuse_what_would_fail_later(args, said, tmp_path, capsys):
    """A 100,000-pixel side ran out of memory (224 GB); weights to continue from that were damaged or of the other
    model ended in safetensors' or torch's traceback; text-train with no sentences failed in torch's scheduler, and
    with --out on a file only after training."""
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    assert main([a.replace("{tmp}", str(tmp_path)) for a in args]) == 2
    err = capsys.readouterr().err
    assert said in err and "epoch 1/" not in err, err
    assert not (tmp_path / "g").exists() and not (tmp_path / "m.safetensors").exists()


def test_scan_decode_choices_are_checked(tmp_path):
    from interp.shapes import write_image_folder

    write_image_folder(tmp_path / "shapes", 4, seed=3, split="test")
    base = ["scan", "--model", "shapes_cnn", "--dataset", "folder", "--root", str(tmp_path / "shapes"), "--out",
            str(tmp_path / "o"), "--device", "cpu"]  # fmt: skip
    gpu = run_cli(*base, "--decode", "gpu")
    assert gpu.returncode == 2 and "--decode gpu needs the model on a GPU" in gpu.stderr, gpu.stderr
    ray = run_cli(*base, "--engine", "ray", "--decode", "cpu")
    assert ray.returncode == 2 and "leave out --decode" in ray.stderr, ray.stderr
    for option, value, said in (("--batch-size", "0", "batch size must be at least 1, got 0."),
                                ("--workers", "-1", "workers must be 0 (threads read each batch) or more, got -1.")):
        bad = run_cli(*base, option, value)  # torch's own words were "num_workers option should be non-negative…"
        assert bad.returncode == 2 and bad.stderr.strip() == f"error: {said}", bad.stderr
    ok = run_cli(*base, "--decode", "cpu")
    assert ok.returncode == 0 and "4/4 images" in ok.stdout and "decoded on" not in ok.stdout, ok.stderr



def test_an_interrupted_scan_says_what_it_kept_and_how_to_go_on(tmp_path, monkeypatch, capsys):
    """Ctrl-C during a scan: exit 130, one sentence with the images already scored (they are on disk), and the same
    command then scores only the rest."""
    import interp.datasets.scanner as scanner
    from interp.shapes import write_image_folder

    write_image_folder(tmp_path / "shapes", 20, seed=3, split="test")
    args = ["scan", "--model", "shapes_cnn", "--dataset", "folder", "--root", str(tmp_path / "shapes"), "--out",
            str(tmp_path / "o"), "--device", "cpu", "--batch-size", "4", "--workers", "0"]  # fmt: skip
    real, calls = scanner.scored_rows, []

    def rows(items, *a):
        calls.append(len(items))
        if len(calls) == 4:  # Ctrl-C while the fourth batch of 4 is being scored
            raise KeyboardInterrupt
        return real(items, *a)

    monkeypatch.setattr(scanner, "scored_rows", rows)
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "interrupted: 12 images scored in" in err and "run the same command again" in err, err
    monkeypatch.setattr(scanner, "scored_rows", real)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "20/20 images" in out and "8 new this run" in out and sum(calls) == 16


def test_a_scan_of_a_good_dataset_goes_on_beside_a_wrong_setting_and_notes_it(tmp_path, monkeypatch, capsys):
    """A wrong entry in $INTERP_DATASETS refused every ``--dataset``; now the named one is scanned and the operator
    reads, on stderr, which entry was not read and why."""
    monkeypatch.setenv("INTERP_DATASETS", json.dumps([{"name": "typo", "kind": "imagefolder", "root": "/x"}]))
    assert main(["scan", "--model", "shapes_cnn", "--dataset", "Shapes world · test split", "--limit", "8",
                 "--out", str(tmp_path / "o")]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "note: not read from the dataset settings: dataset 'typo' has kind 'imagefolder'; use one of" in err, err
    assert main(["scan", "--model", "shapes_cnn", "--dataset", "typo", "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no dataset is configured as 'typo';") and "Not read from the settings: " in err


@pytest.fixture(scope="module")
def concept_folders(tmp_path_factory):
    from interp.concepts import generated
    from interp.shapes import generate

    root = tmp_path_factory.mktemp("concepts")

    def write(folder, images):
        folder.mkdir(parents=True)
        for im in images:
            im.image.save(folder / f"{im.name}.png" if not im.name.endswith(".png") else folder / im.name)

    write(root / "marker", generated.shapes_concept("marker", 12))
    for s in range(3):
        write(root / "random" / f"r{s}", generated.shapes_backgrounds(12, seed=s))
    stars = [s for s in generate(60, seed=4, split="clean") if s.class_name == "star"][:6]
    (root / "stars").mkdir()
    for s in stars:
        Image.fromarray(s.image).save(root / "stars" / f"{s.index}.png")
    (root / "stars" / "broken.png").write_bytes(b"not a png")
    return root


def test_tcav_cli_reports_scores_and_p_values(concept_folders):
    r = concept_folders
    result = run_cli("tcav", "--model", "shapes_cnn", "--layer", "layer4", "--concept", str(r / "marker"),
                     "--random", str(r / "random"), "--class-images", str(r / "stars"), "--target", "star",
                     "--runs", "4", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "skipped 1 unreadable" in result.stderr
    assert "100% done" in result.stderr  # progress goes to stderr; stdout is the JSON alone
    data = json.loads(result.stdout)
    (row,) = data["results"]
    assert data["label"] == "star" and row["concept"] == "marker" and len(row["scores"]) == 4
    assert 0 <= row["p_value"] <= 1 and row["verdict"]
    alike = set(row["random_scores"]) <= {0.0, 1.0}  # layer4 is next to the classifier: random CAVs score 0 or 1
    assert row["alike_gradients"] is alike
    text = run_cli("tcav", "--model", "shapes_cnn", "--layer", "layer4", "--concept", str(r / "marker"),
                   "--random", str(r / "random" / "r0"), "--random", str(r / "random" / "r1"),
                   "--class-images", str(r / "stars"), "--target", "3", "--runs", "3")  # fmt: skip
    assert text.returncode == 0 and "TCAV" in text.stdout and "p =" in text.stdout
    assert ("note: at layer4 even random directions score 0 or 1" in text.stdout) is alike


def test_tcav_reads_its_folders_as_files_and_scores_as_with_the_pictures_held(concept_folders):
    """The tcav command holds each folder as file names and digests (ImageOnDisk), decoding a file again only for
    its pass; TCAV then gives exactly what it gives with every picture decoded and held."""
    from interp.cli.concepts import _images
    from interp.concepts import run_tcav
    from interp.images import ImageOnDisk, load_image

    r = concept_folders
    model = interp.load_model("shapes_cnn")

    def held(folder):
        return [load_image(p, name=p.relative_to(folder).as_posix()) for p in sorted(folder.rglob("*.png"))
                if p.name != "broken.png"]  # fmt: skip

    folders = [r / "marker", r / "random" / "r0", r / "random" / "r1", r / "random" / "r2", r / "stars"]
    on_disk = [_images(f, "folder") for f in folders]
    assert all(isinstance(im, ImageOnDisk) for images in on_disk for im in images)
    pictures = [held(f) for f in folders]
    assert [[im.digest for im in s] for s in on_disk] == [[im.digest for im in s] for s in pictures]
    got, expected = (run_tcav(model, ["layer3"], {"marker": sets[0]}, sets[1:4], sets[4], 3, runs=3, seed=1)
                     for sets in (on_disk, pictures))  # fmt: skip
    (a,), (b,) = got.results, expected.results
    assert np.array_equal(a.scores, b.scores) and a.p_value == b.p_value
    np.testing.assert_array_equal(a.sensitivities, b.sensitivities)


def test_cav_features_writes_activations(concept_folders, tmp_path):
    out = tmp_path / "f.npz"
    assert main(["cav-features", "--model", "shapes_cnn", "--layer", "layer3", "--images",
                 str(concept_folders / "marker"), "--out", str(out)]) == 0  # fmt: skip

    with np.load(out) as data:
        assert data["activations"].shape[0] == 12 and data["names"].shape == (12,) and str(data["layer"]) == "layer3"
        assert list(data["names"]) == sorted(p.name for p in (concept_folders / "marker").iterdir())
        assert int(data["decoded_on_device"]) == 0


def test_cav_features_streams_a_folder_and_names_what_it_could_not_read(concept_folders, tmp_path):
    """Sub-folders count, a broken file and a text file do not stop it: the broken one is named on stderr, with a
    progress line; the rows are those of the readable files, in sorted order, equal to one image's activations."""
    import shutil

    from interp.concepts import activations
    from interp.images import load_image

    folder = tmp_path / "set"
    shutil.copytree(concept_folders / "marker", folder / "inner")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (folder / "readme.txt").write_text("not an image")
    out = tmp_path / "f.npz"
    result = run_cli("cav-features", "--model", "shapes_cnn", "--layer", "layer3", "--images", str(folder), "--out",
                     str(out), "--workers", "1", "--batch-size", "5")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "note: skipped 1 unreadable file in" in result.stderr and "broken.png (" in result.stderr
    assert "100% 13/13 images" in result.stderr and "wrote 12 × " in result.stdout
    with np.load(out) as data:
        names = list(data["names"])
        assert names == sorted(f"inner/{p.name}" for p in (concept_folders / "marker").iterdir())
        model = interp.load_model("shapes_cnn")
        first = activations(model, "layer3", [load_image(folder / names[4], name=names[4])])
        np.testing.assert_allclose(data["activations"][4], first[0], rtol=1e-5, atol=1e-5)


def test_cav_features_decode_gpu_needs_a_gpu(concept_folders, tmp_path, capsys):
    assert main(["cav-features", "--model", "shapes_cnn", "--layer", "layer3", "--images",
                 str(concept_folders / "marker"), "--out", str(tmp_path / "a.npz"), "--decode", "gpu"]) == 2
    assert "--decode gpu needs the model on a GPU; it is on cpu" in capsys.readouterr().err


def test_tcav_with_one_random_set_says_how_to_give_two(concept_folders, capsys):
    r = concept_folders
    assert main(["tcav", "--model", "shapes_cnn", "--layer", "layer4", "--concept", str(r / "marker"), "--random",
                 str(r / "random" / "r0"), "--class-images", str(r / "stars"), "--target", "star"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert f"--random {r / 'random' / 'r0'} is one set of random images and TCAV needs at least two" in err
    assert "repeat --random" in err and "sub-folders are the sets" in err


def test_cav_features_refuses_a_batch_of_no_images(concept_folders, tmp_path, capsys):
    assert main(["cav-features", "--model", "shapes_cnn", "--layer", "layer4", "--images",
                 str(concept_folders / "marker"), "--out", str(tmp_path / "a.npz"), "--batch-size", "0"]) == 2
    assert "batch size must be at least 1, got 0." in capsys.readouterr().err
    assert not (tmp_path / "a.npz").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["tcav", "--model", "shapes_cnn", "--layer", "layer9", "--concept", "{r}/marker", "--random", "{r}/random",
         "--class-images", "{r}/stars", "--target", "star"],
        ["tcav", "--model", "shapes_cnn", "--layer", "layer4", "--concept", "{r}/marker", "--random", "{r}/random",
         "--class-images", "{r}/stars", "--target", "unicorn"],
        ["tcav", "--model", "shapes_cnn", "--layer", "layer4", "--concept", "{r}/random/r0", "--random", "{r}/random",
         "--class-images", "{r}/stars", "--target", "star"],
        ["tcav", "--model", "shapes_cnn", "--layer", "layer4", "--concept", "{r}/nowhere", "--random", "{r}/random",
         "--class-images", "{r}/stars", "--target", "star"],
        ["cav-features", "--model", "shapes_cnn", "--layer", "layer4", "--images", "{r}/marker", "--out", "{r}/x.txt"],
    ],
)  # fmt: skip
def test_concept_cli_bad_input_exits_2(args, concept_folders):
    result = run_cli(*[a.replace("{r}", str(concept_folders)) for a in args])
    assert result.returncode == 2, result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip() and not line.startswith("note:")]) == 1, result.stderr


def test_concept_images_writes_the_pages_sets_as_folders_that_tcav_reads(tmp_path, capsys):
    """The README's TCAV recipe from nothing: the built-in sets as folders (the same pictures the Concepts page makes
    from the seed), shapes-world backgrounds as the random sets when every concept is the shapes world's."""
    from interp.concepts import generated
    from interp.shapes import generate

    out = tmp_path / "concepts"
    args = ["concept-images", "--out", str(out), "--concept", "marker", "--n", "8", "--random-sets", "3", "--seed", "2"]
    assert main(args) == 0
    said = capsys.readouterr()
    assert "1 concept set (marker) and 3 random sets (shapes-world backgrounds)" in said.out
    assert f"--concept {out / 'marker'} --random {out / 'random'}" in said.out
    assert sorted(p.name for p in (out / "random").iterdir()) == ["set_00", "set_01", "set_02"]

    def pixels(folder):
        return [np.asarray(Image.open(p)) for p in sorted(folder.iterdir())]

    for got, made in zip(pixels(out / "marker"), generated.shapes_concept("marker", 8, seed=2), strict=True):
        assert np.array_equal(got, np.asarray(made.image))
    for k in range(3):  # the page's random set k of seed s is seeded s * 1000 + k
        made = generated.shapes_backgrounds(8, seed=2000 + k)
        assert all(np.array_equal(a, np.asarray(b.image)) for a, b in zip(pixels(out / "random" / f"set_{k:02d}"), made,
                                                                            strict=True))  # fmt: skip
    stars = tmp_path / "stars"
    stars.mkdir()
    for s in [s for s in generate(40, seed=4, split="clean") if s.class_name == "star"][:4]:
        Image.fromarray(s.image).save(stars / f"{s.index}.png")
    assert main(["tcav", "--model", "shapes_cnn", "--layer", "layer3", "--concept", str(out / "marker"), "--random",
                 str(out / "random"), "--class-images", str(stars), "--target", "star", "--runs", "3", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["results"]
    assert row["concept"] == "marker" and len(row["scores"]) == 3

    drawn = []  # the same settings again: the same files, so allowed; each set drawn once, to compare and to write
    draw = generated.shapes_backgrounds
    counting = lambda n, seed: drawn.append(seed) or draw(n, seed)  # noqa: E731
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(generated, "shapes_backgrounds", counting)
        assert main(args) == 0
    assert drawn == [2000, 2001, 2002]
    capsys.readouterr()
    before = {p: p.read_bytes() for p in out.rglob("*.png")}
    assert main([*args[:-1], "3"]) == 2  # another seed would mix two sets in one folder: refused, nothing written
    assert "already holds files this would not write" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*.png")} == before


def test_concept_images_of_textures_take_photo_crops_as_random_sets(tmp_path, capsys):
    from interp.concepts import generated

    assert main(["concept-images", "--out", str(tmp_path), "--concept", "flat-colour,stripes", "--n", "3",
                 "--random-sets", "2"]) == 0  # fmt: skip
    assert "2 concept sets (flat-colour and stripes) and 2 random sets (crops of the bundled photos)" in \
        capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "flat-colour").iterdir()) == [f"flat-colour_00{i}.png" for i in range(3)]
    got = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "random" / "set_01").iterdir())]
    assert all(np.array_equal(a, np.asarray(b.image)) for a, b in zip(got, generated.random_images(3, seed=1),
                                                                        strict=True))  # fmt: skip


@pytest.mark.parametrize(("extra", "said"), [
    (["--concept", "zebra"], "concept 'zebra' is not one of stripes, dots"),
    (["--n", "1"], "the number of images per set must be at least 2"),
    (["--random-sets", "1"], "the number of random sets must be at least 2"),
])  # fmt: skip
def test_concept_images_bad_settings_exit_2_before_writing(extra, said, tmp_path, capsys):
    assert main(["concept-images", "--out", str(tmp_path / "c"), *extra]) == 2
    assert said in capsys.readouterr().err
    assert not any((tmp_path / "c").rglob("*.png"))


def test_a_class_option_takes_an_index_or_any_of_a_classs_names():
    from timm.data import ImageNetInfo

    from interp.cli import class_index

    info = ImageNetInfo("imagenet-1k")
    names = [info.index_to_description(i) for i in range(1000)]
    assert names[281] == "tabby, tabby cat" and names[282] == "tiger cat"
    for given, index in [("282", 282), ("tiger cat", 282), ("  Tiger   CAT ", 282), ("tabby", 281),
                         ("TABBY CAT", 281), ("tabby, tabby cat", 281), (967, 967)]:  # fmt: skip
        assert class_index(given, names, "--target", "m") == index, given
    with pytest.raises(ValueError, match=r"--target 'tigre cat' is not a class name of m; did you mean 'tiger cat'"):
        class_index("tigre cat", names, "--target", "m")
    with pytest.raises(ValueError, match=r"give an index or an exact name\.$"):
        class_index("zzzz", names, "--target", "m")
    with pytest.raises(ValueError, match=r"^--target 'Crane' names 2 classes of m, 134 \(crane\) and 517 \(crane\); "
                                         r"give the index\.$"):  # a bird and a machine
        class_index("Crane", names, "--target", "m")
    assert class_index("134", names, "--target", "m") == 134
    for wrong in ("1000", "-1"):
        with pytest.raises(ValueError, match=r"is not a class of m \(0 to 999\)\."):
            class_index(wrong, names, "--target", "m")


def test_every_class_option_takes_a_name(tmp_path, capsys):
    """tcav's --target took a class name; the other commands' class options took only an index ("argument --class:
    invalid int value: 'star'")."""
    assert main(["visualize", "--model", "shapes_cnn", "--objective", "class", "--class", "Star", "--steps", "2",
                 "--out", str(tmp_path / "v")]) == 0  # fmt: skip
    assert json.loads((tmp_path / "v" / "summary.json").read_text())["objective"]["unit"] == 3
    assert main(["attribute", "--model", "shapes_cnn", "--image", "shapes_star", "--method", "grad_cam", "--target",
                 "ring", "--target", "3", "--out", str(tmp_path / "a")]) == 0  # fmt: skip
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert [r["target"] for r in summary["images"][0]["results"]] == [5, 3]
    assert main(["attention", "--model", "shapes_vit", "--image", "shapes_star", "--target", "CROSS",
                 "--out", str(tmp_path / "t")]) == 0  # fmt: skip
    assert json.loads((tmp_path / "t" / "stats.json").read_text())["target"] == 4
    capsys.readouterr()
    assert main(["evaluate", "--model", "shapes_cnn", "--image", "shapes_star", "--method", "grad_cam",
                 "--target", "rign"]) == 2  # fmt: skip
    assert "--target 'rign' is not a class name of shapes_cnn; did you mean 'ring'?" in capsys.readouterr().err


def test_evaluate_scores_maps_against_the_floor_and_the_mask(tmp_path, capsys):
    from interp.shapes.generator import render

    sample = render(9, seed=1000, split="test")
    Image.fromarray(sample.image).save(tmp_path / "shape.png")
    Image.fromarray(sample.mask.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    code = main(["evaluate", "--model", "shapes_cnn", "--image", str(tmp_path / "shape.png"), "--method", "grad_cam",
                 "--method", "guided_backprop", "--target", str(sample.label), "--mask", str(tmp_path / "mask.png"),
                 "--sanity", "--steps", "8", "--json"])  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["target"] == sample.label and 0 < report["object_share"] < 0.5 and report["block"] == 16
    rows = {r["method"]: r for r in report["methods"]}
    for row in rows.values():
        assert len(row["deletion"]) == 9 and 0 <= row["energy_inside"] <= 1 and isinstance(row["pointing"], bool)
        assert [s["layer"] for s in row["sanity"]][0] == "fc"
    assert rows["guided_backprop"]["sanity_flagged"] and not rows["grad_cam"]["sanity_flagged"]
    assert rows["grad_cam"]["insertion_auc"] > report["random_floor"]["insertion_auc"]
    assert report["random_floor"]["maps"] == 5 and report["random_floor"]["insertion_spread"] > 0
    # the verdict is the page's scoreboard sentence, read from these numbers; printed last without --json
    from interp.evaluation import Curves, scoreboard, scoreboard_sentence

    def curves(row: dict, spread: bool = False) -> Curves:
        return Curves(np.zeros(1), np.zeros(1), np.zeros(1), row["deletion_auc"], row["insertion_auc"], "probability",
                      "blur", 16, 1, row["deletion_spread"] if spread else 0.0,
                      row["insertion_spread"] if spread else 0.0)  # fmt: skip

    floor = curves(report["random_floor"], spread=True)
    label = report["label"]
    table = scoreboard((m, label, curves(rows[m]), floor) for m in ("grad_cam", "guided_backprop"))
    assert report["verdict"] == scoreboard_sentence(table, 16) and report["verdict"].startswith("On this image, ")
    assert list(table["method"]) == sorted(rows, key=lambda m: -rows[m]["insertion_auc"])  # best gain first
    assert main(["evaluate", "--model", "shapes_cnn", "--image", str(tmp_path / "shape.png"), "--method", "grad_cam",
                 "--method", "guided_backprop", "--target", str(sample.label), "--steps", "8"]) == 0  # fmt: skip
    assert capsys.readouterr().out.strip().splitlines()[-1] == report["verdict"]


@pytest.mark.parametrize(
    "extra",
    [["--method", "magic"], ["--method", "grad_cam", "--steps", "0"], ["--method", "grad_cam", "--mask", "{small}"],
     ["--method", "grad_cam", "--target", "5000"], ["--method", "grad_cam", "--replacement", "purple"],
     ["--method", "grad_cam", "--block", "0"], ["--method", "grad_cam", "--block", "300"]],
)
def test_evaluate_bad_input_exits_2(extra, coffee_jpg, tmp_path):
    Image.new("L", (10, 10)).save(tmp_path / "small.png")
    result = run_cli("evaluate", "--image", str(coffee_jpg), *[a.replace("{small}", str(tmp_path / "small.png")) for a in extra])
    assert result.returncode == 2, result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1, result.stderr


def test_a_mask_that_is_missing_or_not_an_image_is_said_in_our_words(coffee_jpg, tmp_path, capsys):
    (tmp_path / "notes.png").write_text("not a picture")
    for mask, said in [(tmp_path / "gone.png", f"there is no file at {tmp_path / 'gone.png'}; check the path."),
                       (tmp_path / "notes.png", "--mask notes.png is not an image we can read")]:  # fmt: skip
        assert main(["evaluate", "--image", str(coffee_jpg), "--method", "grad_cam", "--mask", str(mask)]) == 2
        assert said in capsys.readouterr().err


def test_evaluate_a_dataset_writes_scores_and_a_summary(tmp_path, capsys):
    out = tmp_path / "eval"
    result = run_cli("evaluate", "--model", "shapes_cnn", "--dataset", "Shapes world · test split", "--n", "4",
                     "--steps", "4", "--method", "grad_cam", "--method", "saliency", "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "grad_cam" in result.stdout and "±" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert {m["method"] for m in summary["methods"]} == {"grad_cam", "saliency"}
    # both gains in the table, and the page's answer in words under it, naming the best method and its interval
    from interp.evaluation import load_scores, summarise, verdict

    assert re.search(r"^method\s+images\s+deletion\s+insertion\s+insertion gain\s+deletion gain$", result.stdout, re.M)
    ranked = summarise(load_scores(out))
    best = ranked.iloc[0]
    assert f"{best['deletion_gain']:.3f} ± {best['deletion_gain_ci95']:.3f}" in result.stdout
    sentence = verdict(ranked, "Shapes world · test split")
    assert sentence.startswith(f"On Shapes world · test split, {best['method']} gains the most over a random map")
    assert sentence in result.stdout.splitlines()
    assert (out / "scores.parquet").is_file()
    # the shapes world knows where each object is: the pointing game and the mass on it, per method, as the summary
    assert re.search(r"^method\s+images\s+pointing\s+mass on object$", result.stdout, re.M)
    assert "where the object is known (4 images)" in result.stdout and "Where the object is known" in sentence
    for r in ranked.itertuples():
        assert re.search(rf"^{r.method}\s+4\s+{r.pointing:.0%} ± {r.pointing_ci95:.0%}\s+{r.energy_inside:.0%} ± "
                         rf"{r.energy_inside_ci95:.0%}$", result.stdout, re.M), result.stdout  # fmt: skip
    # the same command on a folder of one image: scores without an interval, not "± nan"
    (tmp_path / "one" / "star").mkdir(parents=True)
    interp.load_sample("shapes_star").image.save(tmp_path / "one" / "star" / "a.png")
    (tmp_path / "one" / "star" / "b.png").write_bytes(b"not a picture")  # left out, and said so
    assert main(["evaluate", "--model", "shapes_cnn", "--dataset", "folder", "--root", str(tmp_path / "one"),
                 "--steps", "4", "--method", "saliency", "--out", str(tmp_path / "eval1")]) == 0  # fmt: skip
    printed = capsys.readouterr()
    said = printed.out
    assert "nan" not in said and "saliency" in said and "one image has no interval" in said, said
    # summary.json is JSON a browser reads: no interval is null, not NaN (which JSON does not have)
    def strict(text):
        raise ValueError(f"{text} in summary.json")

    (method,) = json.loads((tmp_path / "eval1" / "summary.json").read_text(), parse_constant=strict)["methods"]
    assert method["insertion_gain_ci95"] is None and "located" not in method  # a folder of its own: no truth
    assert "note: 1 image could not be read and is left out (first: b.png is not an image" in printed.err, printed.err


@pytest.mark.parametrize(
    "args",
    [["--method", "grad_cam"], ["--image", "{coffee}", "--dataset", "x", "--method", "grad_cam"],
     ["--dataset", "Shapes world · test split", "--method", "grad_cam"],
     ["--dataset", "Shapes world · test split", "--method", "grad_cam", "--sanity", "--out", "{out}"],
     ["--dataset", "Shapes world · test split", "--method", "grad_cam", "--block", "129", "--out", "{out}"]],
)
def test_evaluate_dataset_bad_input_exits_2(args, coffee_jpg, tmp_path):
    result = run_cli("evaluate", "--model", "shapes_cnn",
                     *[a.replace("{coffee}", str(coffee_jpg)).replace("{out}", str(tmp_path / "o")) for a in args])
    assert result.returncode == 2, result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1, result.stderr


def _commands(parser: argparse.ArgumentParser, prefix: str = ""):
    yield prefix or "python -m interp", parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, f"{prefix} {name}".strip())


def test_every_option_of_every_command_says_what_it_does_in_help():
    bare = [f"{name}: {action.option_strings or action.dest}" for name, parser in _commands(build_parser())
            for action in parser._actions if not action.help and not isinstance(action, argparse._HelpAction)]
    assert bare == []
    commands = [name for name, _ in _commands(build_parser())]
    assert "shapes generate" in commands and "scan" in commands
    # and every command's --help opens with what it does
    assert [name for name, parser in _commands(build_parser()) if not parser.description] == []
    # every --layer option says where a model's layer names are listed
    layers = {name: action.help for name, parser in _commands(build_parser()) for action in parser._actions
              if "--layer" in action.option_strings}  # fmt: skip
    assert {"tcav", "cav-features", "visualize", "spectrum"} <= set(layers)
    assert all("python -m interp models --layers MODEL" in h for h in layers.values()), layers


def test_methods_are_named_with_method_or_methods():
    """The option takes several (commas or repeats), so a visitor types --methods as often as --method."""
    for command in (["attribute", "--out", "o"], ["evaluate"]):
        args = build_parser().parse_args([*command, "--methods", "grad_cam,saliency", "--method", "occlusion"])
        assert args.method == ["grad_cam,saliency", "occlusion"], command


@pytest.mark.parametrize(
    "args, said",
    [
        (["shapes", "generate", "--out", "w", "--n", "2", "--sede", "3"],
         "python -m interp shapes generate: unrecognized arguments: --sede 3; did you mean --seed?"),
        (["scan", "--model", "m", "--dataset", "d", "--batchsize", "8"],
         "python -m interp scan: unrecognized arguments: --batchsize 8; did you mean --batch-size?"),
        (["predict", "--image", "x.jpg", "extra"], "python -m interp predict: unrecognized arguments: extra (see"),
        (["visualize", "--model", "m", "--out", "o", "--unit", "c"],
         "visualize: unrecognized arguments: --unit c (see"),  # nothing near enough to name
        # a value argparse refuses: quoted whole when short, by its start and length when long (600 characters were
        # printed whole)
        (["predict", "--image", "x.jpg", "--top", "7x"], "predict: argument --top: invalid int value: '7x' (see"),
        (["predict", "--image", "x.jpg", "--top", "7x" * 300],
         f"predict: argument --top: invalid int value: '{'7x' * 30}'… (600 characters) (see --help)"),
    ],
)
def test_an_unknown_option_is_said_by_its_command_with_the_nearest_one(args, said, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) == 1, err


def test_help_a_mistyped_option_and_a_missing_image_are_answered_without_loading_torch(tmp_path):
    """`import interp` and its packages are lazy (their __init__.pyi) and the parser builds only the named command's
    options: these took 7 s on 2 cores, importing torch and timm first (`scan`, `evaluate`, `visualize` and
    `text-train --help` still did 4-7 s, their defaults sitting in modules that import torch)."""
    code = """
import contextlib, io, sys
from interp.cli import _COMMANDS, build_parser, main
build_parser()
every = [[name, "--help"] for name in _COMMANDS] + [["shapes", action, "--help"] for action in ("generate", "train")]
assert len(every) > 15, every
for argv in [["--help"], ["predict", "--jsn"], *every]:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(argv)
        except SystemExit:
            pass
with contextlib.redirect_stderr(io.StringIO()) as err:
    code = main(["predict", "--image", "no/such.jpg"])
print(code, "torch" in sys.modules, "timm" in sys.modules, err.getvalue().strip())
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=ROOT)  # fmt: skip
    said = "error: there is no file at no/such.jpg; check the path, or name a bundled photo: chelsea, coffee, "
    assert result.stdout.strip().split(None, 3)[:3] == ["2", "False", "False"], result.stderr
    assert result.stdout.strip().split(None, 3)[3].startswith(said), result.stdout
