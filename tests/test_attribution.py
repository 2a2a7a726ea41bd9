"""Attribution methods: the contract over every registered method on a tiny CNN and a tiny ViT, and known answers."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_grad_cam import GradCAM as ReferenceGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import interp
from interp.attribution import METHODS, MethodNotApplicable, attribute, cam, get_method, hook_count, method_names
from interp.attribution.base import COMPLETENESS_TOLERANCE
from interp.attribution.display import DisplaySettings, aggregate, grid_png, normalise, overlay
from interp.models import LoadedModel, ModelSpec
from interp.models.loading import WeightsInfo
from tests.conftest import layer_and_gradient
from tests.toy_models import layouts_model, reused_relu_model

ROOT = Path(__file__).resolve().parents[1]
FAST = {"steps": 8, "samples": 4, "channels": 8, "window": 40, "stride": 40, "superpixels": 12}


def fast_params(name: str) -> dict:
    return {k: v for k, v in FAST.items() if k in METHODS[name].defaults()}


@pytest.fixture(scope="module")
def tiny_cnn() -> LoadedModel:
    return interp.load_model("test_resnet", "random")


@pytest.fixture(scope="module")
def tiny_vit() -> LoadedModel:
    return interp.load_model("test_vit", "random")


def state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("which", ["tiny_cnn", "tiny_vit"])
def test_contract(name, which, request):
    model: LoadedModel = request.getfixturevalue(which)
    image = interp.load_sample("chelsea")
    before = state_of(model._module)
    inplace_before = [getattr(m, "inplace", None) for m in model._module.modules()]
    reason = METHODS[name]().applies_to(model)
    if reason:
        with pytest.raises(MethodNotApplicable, match="does not apply"):
            attribute(model, image, name, target=3, **fast_params(name))
        assert which == "tiny_vit" and name in ("deeplift", "guided_backprop", "guided_grad_cam")
        return
    result = attribute(model, image, name, target=3, **fast_params(name))
    _, h, w = model.data_config["input_size"]
    assert result.raw.shape in ((3, h, w), (1, h, w))
    assert np.isfinite(result.raw).all()
    assert np.abs(result.raw).sum() > 0
    assert result.target == 3 and result.method == name and result.seconds > 0
    assert hook_count(model._module) == 0
    assert all(torch.equal(v, before[k]) for k, v in model._module.state_dict().items())
    assert not any(p.requires_grad for p in model._module.parameters())
    assert [getattr(m, "inplace", None) for m in model._module.modules()] == inplace_before


@pytest.mark.parametrize("name", ["grad_cam", "guided_backprop", "deeplift", "score_cam", "occlusion", "smoothgrad"])
def test_no_hook_or_flag_left_after_an_exception(tiny_cnn, name):
    inplace_before = [getattr(m, "inplace", None) for m in tiny_cnn._module.modules()]

    def explode(module, inputs, output):
        raise RuntimeError("forced failure")

    tiny_cnn.forget(cam.KEPT_PASS)  # a CAM layer pass kept from an earlier test would not run fc again
    handle = tiny_cnn._module.fc.register_forward_hook(explode)
    try:
        with pytest.raises(RuntimeError, match="forced failure"):
            attribute(tiny_cnn, interp.load_sample("coffee"), name, target=1, **fast_params(name))
    finally:
        handle.remove()
    assert hook_count(tiny_cnn._module) == 0
    assert [getattr(m, "inplace", None) for m in tiny_cnn._module.modules()] == inplace_before
    assert not tiny_cnn.gate.held()  # the gate was let go
    with tiny_cnn.gate.exclusive():  # and another caller can have it alone
        pass


def test_integrated_gradients_completeness(tiny_cnn):
    result = attribute(tiny_cnn, interp.load_sample("chelsea"), "integrated_gradients", target=7, steps=256)
    gap = result.extras["logit_gap"]
    assert abs(gap) > 1e-3
    assert abs(float(result.raw.sum()) - gap) <= 0.01 * abs(gap)
    assert result.extras["relative_delta"] <= 0.01


def test_the_completeness_sentence_reads_the_error_against_the_score_change_and_flags_above_the_tolerance(tiny_cnn):
    few = attribute(tiny_cnn, interp.load_sample("chelsea"), "integrated_gradients", target=7, steps=2)
    many = attribute(tiny_cnn, interp.load_sample("chelsea"), "integrated_gradients", target=7, steps=256)
    assert few.extras["relative_delta"] > COMPLETENESS_TOLERANCE >= many.extras["relative_delta"]
    assert few.incomplete and not many.incomplete
    rel, gap = many.extras["relative_delta"], many.extras["logit_gap"]
    assert many.completeness() == f"completeness error {many.delta:+.3f} ({rel:.1%} of the {gap:.2f} logit change)"
    assert few.completeness().endswith("raise the steps before trusting this map")
    assert attribute(tiny_cnn, interp.load_sample("chelsea"), "grad_cam", target=7).completeness() is None


def test_enough_steps_doubles_until_the_map_adds_up_and_otherwise_returns_the_closest(tiny_cnn):
    from interp.attribution import enough_steps

    image = interp.load_sample("chelsea")
    tried: list[int] = []
    found = enough_steps(tiny_cnn, image, 7, start=2, most=256, on_try=tried.append)
    assert tried == [2 * 2**i for i in range(len(tried))] and tried[-1] == found.params["steps"] and len(tried) > 1
    assert not found.incomplete
    for steps in tried[:-1]:  # every earlier try missed
        assert attribute(tiny_cnn, image, "integrated_gradients", target=7, steps=steps).incomplete
    # nothing within the tolerance: the closest try comes back
    tries = [attribute(tiny_cnn, image, "integrated_gradients", target=7, steps=s) for s in (2, 4, 8)]
    closest = enough_steps(tiny_cnn, image, 7, start=2, most=8, tolerance=1e-9)
    assert closest.params["steps"] == min(tries, key=lambda r: r.extras["relative_delta"]).params["steps"]
    tried.clear()
    enough_steps(tiny_cnn, image, 7, start=3, most=8, tolerance=1e-9, on_try=tried.append)
    assert tried == [3, 6, 8]  # the last try is at the most allowed, not skipped past
    linear = linear_model(torch.randn(3, 192, generator=torch.Generator().manual_seed(6)))
    tried.clear()
    x = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(7))
    assert enough_steps(linear, x, 0, start=8, on_try=tried.append).params["steps"] == 8
    assert tried == [8]  # exact at once: nothing more is tried
    with pytest.raises(ValueError, match="start"):
        enough_steps(tiny_cnn, image, 7, start=512, most=256)


def test_a_second_target_reuses_the_completeness_pass_and_gets_the_same_delta(tiny_cnn):
    from captum.attr import IntegratedGradients

    from interp.attribution import gradient
    from interp.attribution.baselines import make_baseline

    x = tiny_cnn.preprocess(interp.load_sample("astronaut").image)[None]
    tiny_cnn.forget(gradient.ENDPOINTS)
    batches: list[int] = []
    handle = tiny_cnn._module.register_forward_pre_hook(lambda m, i: batches.append(len(i[0])))
    try:
        attribute(tiny_cnn, x, "integrated_gradients", target=3, steps=8, baseline="black")
        assert batches[-2:] == [8, 2]  # the path in one batch, then input and baseline for the check
        batches.clear()
        second = attribute(tiny_cnn, x, "integrated_gradients", target=5, steps=8, baseline="black")
        assert batches == [8]  # another target: the path only
        other_baseline = attribute(tiny_cnn, x, "integrated_gradients", target=5, steps=8, baseline="white")
        assert batches == [8, 8, 1]  # another baseline: its logits alone
        batches.clear()
        nudged = x.clone()
        nudged[0, 0, 0, 0] += 1e-3
        third = attribute(tiny_cnn, nudged, "integrated_gradients", target=5, steps=8, baseline="black")
        assert batches == [8, 1]  # one pixel differs: another image; the black baseline's logits are kept
    finally:
        handle.remove()
    for image, result in ((x, second), (nudged, third)):
        _, delta = IntegratedGradients(lambda t: tiny_cnn._module(t)[:, 5]).attribute(
            image, baselines=make_baseline("black", image, tiny_cnn), n_steps=8, return_convergence_delta=True
        )
        assert result.delta == pytest.approx(float(delta), abs=1e-4)
    assert other_baseline.delta != pytest.approx(second.delta)


def linear_model(weights: torch.Tensor) -> LoadedModel:
    """A linear classifier on 3×8×8 inputs: its input gradient for class k is exactly weights[k]."""
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(weights.shape[1], weights.shape[0], bias=True))
    with torch.no_grad():
        net[1].weight.copy_(weights)
        net[1].bias.normal_()
    net.eval().requires_grad_(False)
    spec = ModelSpec("linear", "linear", "cnn", "a linear model")
    cfg = {"input_size": (3, 8, 8), "mean": (0.5,) * 3, "std": (0.5,) * 3, "interpolation": "bilinear", "crop_pct": 1.0}
    return LoadedModel(spec, net, WeightsInfo("random", "test", "linear"), cfg, ("a", "b", "c"), torch.device("cpu"))


def test_linear_model_gradient_equals_its_weights():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(3, 192, generator=gen)
    model = linear_model(w)
    x = torch.randn(3, 8, 8, generator=gen)
    for k in range(3):
        grad = attribute(model, x, "saliency", target=k).raw
        np.testing.assert_allclose(grad.reshape(-1), w[k].numpy(), rtol=1e-5, atol=1e-6)
        ixg = attribute(model, x, "input_x_gradient", target=k).raw
        np.testing.assert_allclose(ixg.reshape(-1), (w[k] * x.reshape(-1)).numpy(), rtol=1e-5, atol=1e-6)
        smooth = attribute(model, x, "smoothgrad", target=k, samples=8).raw  # noise cannot change a constant gradient
        np.testing.assert_allclose(smooth.reshape(-1), w[k].numpy(), rtol=1e-4, atol=1e-5)
        assert np.abs(attribute(model, x, "vargrad", target=k, samples=8).raw).max() < 1e-8
        ig = attribute(model, x, "integrated_gradients", target=k, steps=4, baseline="black")
        assert abs(ig.delta) < 1e-4  # exact for a linear model at any step count



def _contributions(w: torch.Tensor, x: torch.Tensor, base: torch.Tensor) -> np.ndarray:
    """A linear model's exact per-element contributions w ⊙ (x - baseline), as a (3, 8, 8) array."""
    return (w.view(3, 8, 8) * (x - base)).numpy()


@pytest.mark.parametrize("baseline, value", [("black", -1.0), ("white", 1.0)])  # pixels 0 and 1, normalised by 0.5
def test_deeplift_on_a_linear_model_is_weights_times_the_difference_from_its_baseline(baseline, value):
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(3, 192, generator=gen)
    model, x = linear_model(w), torch.randn(3, 8, 8, generator=gen)
    result = attribute(model, x, "deeplift", target=2, baseline=baseline)
    np.testing.assert_allclose(result.raw, _contributions(w[2], x, torch.full_like(x, value)), rtol=1e-5, atol=1e-5)
    assert abs(result.delta) < 1e-4


def _timm_activation(name):
    import timm.layers.activations as timm_act

    return getattr(timm_act, name)


@pytest.mark.parametrize("activation", [
    torch.nn.ReLU, torch.nn.ReLU6, torch.nn.SiLU, torch.nn.GELU, torch.nn.Hardswish, torch.nn.Mish,
    lambda: _timm_activation("GELU")(), lambda: _timm_activation("Swish")(), lambda: _timm_activation("HardSwish")(),
], ids=["ReLU", "ReLU6", "SiLU", "GELU", "Hardswish", "Mish", "timm GELU", "timm Swish", "timm HardSwish"])  # fmt: skip
def test_deeplift_sums_to_the_score_change_whatever_the_activation(activation):
    """Summation-to-delta (Shrikumar et al., eq. 1): with the Rescale rule on a network of convolutions, elementwise
    activations and average pooling, the map adds up to logit(x) - logit(baseline), computed here by two plain
    forward passes. Captum's DeepLift knows ReLU but passes a plain gradient through ReLU6, SiLU, GELU and timm's
    own activation classes, whose maps here missed the change by 1.6 to 13 times its size."""
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), activation(), torch.nn.Conv2d(8, 8, 3, padding=1), activation(),
        torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(32, 4),
    ).eval().requires_grad_(False)  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    for param in net.parameters():
        param.copy_(0.5 * torch.randn(param.shape, generator=gen))
    spec = ModelSpec("relu", "relu", "cnn", "convolutions and ReLUs")
    cfg = {"input_size": (3, 16, 16), "mean": (0.5,) * 3, "std": (0.5,) * 3, "interpolation": "bilinear",
           "crop_pct": 1.0}  # fmt: skip
    model = LoadedModel(spec, net, WeightsInfo("random", "test", "relu"), cfg, tuple("abcd"), torch.device("cpu"))
    x = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(1))
    result = attribute(model, x, "deeplift", target=3, baseline="black")
    with torch.no_grad():
        gap = float(net(x[None])[0, 3] - net(torch.full_like(x, -1.0)[None])[0, 3])
    assert abs(gap) > 0.01
    assert float(result.raw.sum()) == pytest.approx(gap, rel=1e-4, abs=1e-5)
    assert abs(result.delta) < 1e-4


def test_deeplift_adds_up_on_the_real_efficientnet_lite0(lite0):
    """The default model's activations are ReLU6: its DeepLIFT map missed the logit change by 104% (its sum was
    -0.4 for a change of 10); with the Rescale rule for every elementwise activation it adds up."""
    result = attribute(lite0, interp.load_sample("chelsea"), "deeplift", target=282)
    assert abs(result.extras["logit_gap"]) > 1
    assert result.extras["relative_delta"] < 1e-3 and not result.incomplete
    assert "⚠" not in result.completeness()


def test_deeplift_on_a_model_that_reuses_an_activation_module_is_refused_and_leaves_nothing_behind():
    """Captum's DeepLift hooks each non-linearity and keeps one input per module: EfficientViT, which runs one ReLU
    at several places, failed with Captum's RuntimeError (shown as "This method failed on this model")."""
    model = reused_relu_model()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    before = model.run(x)
    with pytest.raises(MethodNotApplicable, match="^DeepLIFT does not apply to reused: it runs one activation module"):
        attribute(model, x, "deeplift", target=0)
    assert hook_count(model.structure) == 0 and torch.equal(model.run(x), before)
    assert np.isfinite(attribute(model, x, "integrated_gradients", target=0, steps=4).raw).all()


def test_a_map_that_misses_its_score_change_says_what_to_do_for_its_method():
    """Integrated Gradients' fix is more steps; DeepLIFT has none, and misses where the model multiplies
    activations or divides by their spread, which its rules do not cover."""
    from interp.attribution import Attribution

    def missing(method):
        return Attribution(method, 1, np.zeros((3, 4, 4), np.float32), {}, 0.1, delta=1.0,
                           extras={"logit_gap": 5.0, "relative_delta": 0.2})  # fmt: skip

    assert missing("integrated_gradients").completeness().endswith("raise the steps before trusting this map")
    deeplift = missing("deeplift").completeness()
    assert "raise the steps" not in deeplift and "DeepLIFT's rules do not cover" in deeplift


@pytest.mark.parametrize("window, stride", [(4, 4), (4, 2), (3, 1)])
def test_occlusion_on_a_linear_model_is_each_windows_loss_averaged_over_the_windows_covering_an_element(window, stride):
    """Hiding window W (all channels, filled from the baseline) changes the logit by Σ_W w ⊙ (x - b); Captum gives
    every element the mean of that change over the windows that cover it."""
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(3, 192, generator=gen)
    model, x = linear_model(w), torch.randn(3, 8, 8, generator=gen)
    got = attribute(model, x, "occlusion", target=0, window=window, stride=stride, baseline="black").raw
    c = _contributions(w[0], x, torch.full_like(x, -1.0))
    total, count = np.zeros((8, 8)), np.zeros((8, 8))
    for top in range(0, 8 - window + 1, stride):
        for left in range(0, 8 - window + 1, stride):
            total[top : top + window, left : left + window] += c[:, top : top + window, left : left + window].sum()
            count[top : top + window, left : left + window] += 1
    want = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    np.testing.assert_allclose(got, np.broadcast_to(want, got.shape), rtol=1e-4, atol=1e-4)


def _superpixel_truth(model: LoadedModel, w: torch.Tensor, x: torch.Tensor, superpixels: int) -> np.ndarray:
    """Each superpixel's exact share of a linear model's logit (the sum of its elements' contributions, black
    baseline), spread over its pixels, as the methods report it."""
    from skimage.segmentation import slic

    segments = slic(model.to_display(x), n_segments=superpixels, compactness=10, start_label=0)
    assert segments.max() >= 3  # several regions, or there is nothing to tell apart
    c = _contributions(w, x, torch.full_like(x, -1.0)).sum(axis=0)
    share = np.zeros_like(c)
    for k in np.unique(segments):
        share[segments == k] = c[segments == k].sum()
    return share


def test_kernel_shap_on_a_linear_model_gives_each_superpixel_its_exact_shapley_value():
    """For a model linear in its regions, a region's Shapley value is its own contribution, and the weighted
    regression recovers it from any full set of coalitions."""
    gen = torch.Generator().manual_seed(4)
    w = torch.randn(3, 192, generator=gen)
    model, x = linear_model(w), torch.randn(3, 8, 8, generator=gen)
    raw = attribute(model, x, "kernel_shap", target=1, superpixels=16, samples=200, baseline="black").raw
    truth = _superpixel_truth(model, w[1], x, 16)
    np.testing.assert_allclose(raw, np.broadcast_to(truth, raw.shape), rtol=1e-3, atol=1e-3)


def test_lime_on_a_linear_model_recovers_each_superpixels_contribution_up_to_its_ridge_shrinkage():
    gen = torch.Generator().manual_seed(5)
    w = torch.randn(3, 192, generator=gen)
    model, x = linear_model(w), torch.randn(3, 8, 8, generator=gen)
    raw = attribute(model, x, "lime", target=1, superpixels=16, samples=400, baseline="black").raw[0]
    truth = _superpixel_truth(model, w[1], x, 16)
    scale = np.abs(truth).max()
    np.testing.assert_allclose(raw, truth, atol=0.1 * scale)  # Ridge(alpha=1) shrinks a little toward 0
    assert np.array_equal(np.sign(raw[np.abs(truth) > 0.2 * scale]), np.sign(truth[np.abs(truth) > 0.2 * scale]))

def reference_cam(model: LoadedModel, x: torch.Tensor, target: int, reshape=None) -> np.ndarray:
    """The grad-cam package's map; it back-propagates into the parameters, so they need gradients meanwhile."""
    layer = model._module.get_submodule(model.spec.cam_layer)
    model._module.requires_grad_(True)
    try:
        with ReferenceGradCAM(model=model._module, target_layers=[layer], reshape_transform=reshape) as cam:
            return cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])[0]
    finally:
        model._module.requires_grad_(False)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_grad_cam_equals_the_reference_package_on_the_real_model(lite0):
    image = interp.load_sample("chelsea")
    x = lite0.preprocess(image.image)[None]
    ours = attribute(lite0, x, "grad_cam", target=282).raw[0]
    ref = reference_cam(lite0, x, 282)
    assert _pearson(ours, ref) >= 0.999


def test_grad_cam_equals_the_reference_package_on_a_vit(tiny_vit):
    x = tiny_vit.preprocess(interp.load_sample("astronaut").image)[None]
    rows, cols = tiny_vit.spec.grid

    def reshape(t):
        return t[:, 1:, :].reshape(t.shape[0], rows, cols, t.shape[2]).permute(0, 3, 1, 2)

    ours = attribute(tiny_vit, x, "grad_cam", target=5).raw[0]
    ref = reference_cam(tiny_vit, x, 5, reshape)
    assert _pearson(ours, ref) >= 0.999


def test_grad_cam_records_a_graph_only_after_its_layer(tiny_cnn):
    """The layers before the CAM layer run as for a prediction; those after it record what backward needs. (The
    maps above equal the grad-cam package's, which records everything.)"""
    grad_mode = {}

    def note(name):
        def hook(module, inputs, output):
            grad_mode.setdefault(name, torch.is_grad_enabled())

        return hook

    assert tiny_cnn.spec.cam_layer == "layer4"
    tiny_cnn.forget(cam.KEPT_PASS)
    handles = [tiny_cnn._module.get_submodule(n).register_forward_hook(note(n)) for n in ("layer3", "fc")]
    try:
        attribute(tiny_cnn, interp.load_sample("coffee"), "grad_cam", target=1)
    finally:
        for handle in handles:
            handle.remove()
    assert grad_mode == {"layer3": False, "fc": True}


def test_another_class_or_cam_method_on_the_same_image_reuses_the_layer_pass(tiny_cnn):
    """The grid asks for several classes and CAM methods on one image: one forward pass serves them all, and each
    map equals the one a pass of its own gives."""
    coffee = tiny_cnn.preprocess(interp.load_sample("coffee").image)
    tiny_cnn.forget(cam.KEPT_PASS)
    passes: list[int] = []
    handle = tiny_cnn._module.register_forward_pre_hook(lambda m, i: passes.append(len(i[0])))
    jobs = [("grad_cam", 1), ("grad_cam", 2), ("grad_cam_pp", 1), ("layer_cam", 2), ("guided_grad_cam", 2)]
    try:
        shared = [attribute(tiny_cnn, coffee, m, target=t).raw for m, t in jobs]
        # one layer pass; Guided Grad-CAM's guided backprop is a forward+backward to the input of its own
        assert passes == [1, 1]
        alone = []
        for m, t in jobs:
            tiny_cnn.forget(cam.KEPT_PASS)
            alone.append(attribute(tiny_cnn, coffee, m, target=t).raw)
        assert len(passes) == 2 + len(jobs) + 1
        for a, b in zip(shared, alone):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
        assert not np.allclose(shared[0], shared[1])  # two classes, two maps

        passes.clear()
        attribute(tiny_cnn, coffee, "grad_cam", target=3)
        assert passes == []
        attribute(tiny_cnn, coffee, "grad_cam", target=3, layer="layer3")  # another layer: another pass
        attribute(tiny_cnn, tiny_cnn.preprocess(interp.load_sample("chelsea").image), "grad_cam", target=3)
        assert passes == [1, 1]
    finally:
        handle.remove()
    assert hook_count(tiny_cnn._module) == 0


def test_a_layer_pass_that_records_too_much_is_not_kept(tiny_cnn, monkeypatch):
    monkeypatch.setattr(cam, "KEEP_TAIL_MB", 0)
    tiny_cnn.forget(cam.KEPT_PASS)
    coffee = tiny_cnn.preprocess(interp.load_sample("coffee").image)
    passes: list[int] = []
    handle = tiny_cnn._module.register_forward_pre_hook(lambda m, i: passes.append(len(i[0])))
    try:
        attribute(tiny_cnn, coffee, "grad_cam", target=1, layer="layer1")  # layers 2-4 record their activations
        attribute(tiny_cnn, coffee, "grad_cam", target=2, layer="layer1")
    finally:
        handle.remove()
    assert passes == [1, 1] and tiny_cnn._side.get(cam.KEPT_PASS, {}).get("pass") is None


@pytest.mark.parametrize("layer", ["layer3.0.bn1", "layer3.0.bn2"])
def test_cam_methods_read_a_layer_whose_next_step_writes_into_its_output(layer):
    """In timm's ResNet blocks a ReLU(inplace=True) follows bn1 and `x += shortcut` follows bn2. Every gradient CAM
    method failed on those layers (autograd refuses writes into the activations it differentiates), and the others
    read bn1 after the ReLU had rectified it. (The shapes CNN: trained, so its blocks' last BatchNorm is not zero.)"""
    model = interp.load_model("shapes_cnn")
    x = model.preprocess(interp.load_sample("shapes_star").image)[None]
    target = int(model.run(x).argmax())
    values, grad = layer_and_gradient(model, x, layer, target)
    with model.exclusive() as net:
        model.side(cam.KEPT_PASS, dict).clear()
        module = dict(net.named_modules())[layer]
        act, no_grad, _ = cam.layer_pass(model, module, x, None)
        assert no_grad is None
        torch.testing.assert_close(act, values, rtol=0, atol=0)  # bn1: negative values kept
        act, ours, _ = cam.layer_pass(model, module, x, target)
    torch.testing.assert_close(act, values, rtol=0, atol=0)
    torch.testing.assert_close(ours, grad, rtol=1e-4, atol=1e-7)
    expected = cam.upsampled((grad.mean(dim=(2, 3), keepdim=True) * values).sum(1).clamp(min=0), x)[0].numpy()
    got = attribute(model, x, "grad_cam", target=target, layer=layer).raw
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6 * float(expected.max()))
    assert (values < 0).any() and expected.max() > 0
    for name in [m for m, c in METHODS.items() if c.kind == "cam"]:
        raw = attribute(model, x, name, target=target, layer=layer, **fast_params(name)).raw
        assert np.isfinite(raw).all() and np.abs(raw).max() > 0, name


@pytest.mark.parametrize("name", sorted(m for m, c in METHODS.items() if c.kind == "cam"))
def test_a_cam_reads_a_map_held_channels_last_or_in_a_list_as_it_reads_it_channels_first(name):
    """Swin's layers are (B, h, w, C): a 7×7 map of 768 channels was read as 7 channels of 7×768, and the map was
    noise; a CrossViT block returns a list, and every CAM failed on it with an AttributeError."""
    model = layouts_model()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    params = {"channels": 8} if "channels" in METHODS[name].defaults() else {}
    target = int(model.run(x).argmax())
    first = attribute(model, x, name, target=target, layer="nchw", **params).raw
    assert np.abs(first).max() > 0
    for layer in ("mix", "pair"):
        np.testing.assert_allclose(attribute(model, x, name, target=target, layer=layer, **params).raw, first,
                                   rtol=1e-4, atol=1e-6 * float(np.abs(first).max()), err_msg=layer)  # fmt: skip


def test_a_layer_the_class_scores_do_not_depend_on_is_refused_with_a_sentence():
    """PiT's last stage returns (patches, class token) and its head reads only the class token: Grad-CAM at the
    default layer failed with autograd's "element 0 of tensors does not require grad"."""
    pit = interp.load_model("pit_ti_224", "random")
    with pytest.raises(ValueError, match="^the class scores do not depend on what the chosen layer gives first"):
        attribute(pit, torch.zeros(1, 3, 224, 224), "grad_cam", target=1)
    assert attribute(pit, torch.zeros(1, 3, 224, 224), "eigen_cam", target=1).raw.shape == (1, 224, 224)


def test_guided_backprop_equals_captum_on_a_relu_model(tiny_cnn):
    from captum.attr import GuidedBackprop

    x = tiny_cnn.preprocess(interp.load_sample("coffee").image)[None]
    ours = attribute(tiny_cnn, x, "guided_backprop", target=2).raw
    for m in tiny_cnn._module.modules():  # Captum's version needs out-of-place ReLUs, like ours arranges itself
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False
    try:
        ref = GuidedBackprop(tiny_cnn._module).attribute(x.clone().requires_grad_(True), target=2)[0].numpy()
    finally:
        for m in tiny_cnn._module.modules():
            if isinstance(m, torch.nn.ReLU):
                m.inplace = True
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6)


def test_concurrent_sessions_get_serial_results(tiny_cnn):
    image = interp.load_sample("chelsea")
    jobs = [("grad_cam", 1), ("integrated_gradients", 2), ("guided_backprop", 3), ("grad_cam_pp", 4)] * 2
    serial = [attribute(tiny_cnn, image, m, target=t, **fast_params(m)).raw for m, t in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(lambda job: attribute(tiny_cnn, image, job[0], target=job[1], **fast_params(job[0])).raw, jobs))
    for a, b in zip(serial, parallel):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert hook_count(tiny_cnn._module) == 0


def test_results_are_cached_by_everything_that_matters(tiny_cnn, tmp_path):
    cache = interp.ResultCache(tmp_path)
    image = interp.load_sample("coffee")
    first = attribute(tiny_cnn, image, "integrated_gradients", target=1, steps=8, cache=cache)
    again = attribute(tiny_cnn, image, "integrated_gradients", target=1, steps=8, cache=cache)
    assert again.extras.get("cached") and not first.extras.get("cached")
    np.testing.assert_array_equal(first.raw, again.raw)
    assert again.delta == first.delta
    other = attribute(tiny_cnn, image, "integrated_gradients", target=1, steps=9, cache=cache)
    assert not other.extras.get("cached")
    assert len(cache) == 2


def test_bad_settings_say_what_is_allowed(tiny_cnn):
    image = interp.load_sample("coffee")
    with pytest.raises(ValueError, match="settings are steps, baseline"):
        get_method("integrated_gradients", stepz=3)
    with pytest.raises(ValueError, match="baseline is one of black, white"):
        attribute(tiny_cnn, image, "integrated_gradients", target=1, baseline="purple")
    with pytest.raises(ValueError, match="steps takes a whole number from 2 to 1024, got 0"):
        get_method("integrated_gradients", steps=0)
    with pytest.raises(ValueError, match="whole number"):
        get_method("occlusion", window=7.5)
    with pytest.raises(ValueError, match="finite"):
        get_method("smoothgrad", noise=float("nan"))
    with pytest.raises(ValueError, match="not an attribution method"):
        attribute(tiny_cnn, image, "magic", target=1)
    with pytest.raises(ValueError, match="has no layer .layer9.* --layers"):
        attribute(tiny_cnn, image, "grad_cam", target=1, layer="layer9")
    with pytest.raises(ValueError, match="is not a class"):
        attribute(tiny_cnn, image, "saliency", target=5000)


@pytest.mark.parametrize(
    "typed, meant",
    [("ig", "integrated_gradients"), ("Grad-CAM", "grad_cam"), ("gradcam++", "grad_cam_pp"),
     ("smooth-grad", "smoothgrad"), ("Integrated Gradient", "integrated_gradients"), ("DeepLift", "deeplift"),
     ("gbp", "guided_backprop"), ("lrp", None), ("magic", None), ("---", None)],
)
def test_an_unknown_method_name_is_refused_with_the_method_it_most_likely_means(typed, meant):
    with pytest.raises(ValueError) as error:
        method_names(["saliency", typed])
    said = str(error.value)
    assert said.startswith(f"unknown method {typed!r};") and "python -m interp methods" in said
    assert (f"did you mean {meant}?" in said) if meant else ("did you mean" not in said), said
    with pytest.raises(ValueError) as error:
        get_method(typed)
    assert (f"did you mean {meant}?" in str(error.value)) if meant else ("did you mean" not in str(error.value))


def test_method_names_keep_the_order_once_each_and_all_means_every_method():
    assert method_names(["occlusion", "saliency", "occlusion"]) == ["occlusion", "saliency"]
    assert method_names(["saliency", "all"]) == list(METHODS)
    assert method_names([]) == []
    # as people type a list: commas, spaces after them, a trailing comma; a bad name among them is still named
    assert method_names(["grad_cam, saliency,", "occlusion"]) == ["grad_cam", "saliency", "occlusion"]
    assert method_names(["saliency,all"]) == list(METHODS)
    with pytest.raises(ValueError, match="unknown method 'gradcam'; did you mean grad_cam"):
        method_names(["saliency,gradcam"])
    with pytest.raises(ValueError, match="no method was named"):
        method_names([","])


def test_default_target_is_the_prediction(lite0):
    result = attribute(lite0, interp.load_sample("coffee"), "grad_cam")
    assert result.target == 967


@pytest.mark.parametrize("target", [2.0, True, None])
def test_a_target_that_is_not_a_whole_number_is_refused_everywhere_a_class_is_chosen(target):
    """``2.0`` failed deep in Captum (IndexError), ``True`` explained class 1; an integer of any kind (NumPy's from
    an argmax) is taken, and a string is a class's name (the next test)."""
    from interp.attention import capture
    from interp.errors import BadSettingError, check_class
    from interp.evaluation import deletion_insertion

    cnn, vit = interp.load_model("shapes_cnn"), interp.load_model("shapes_vit")
    image = interp.load_sample("chelsea")
    if target is None:  # the integers that are taken: NumPy's and torch's, as their own int
        assert check_class(np.int64(2), 6, "m") == 2 and type(check_class(torch.tensor(3), 6, "m")) is int
        assert attribute(cnn, image, "saliency", target=np.argmax([0, 0, 1])).target == 2
        return
    with pytest.raises(ValueError, match=re.escape(f"top_k must be a whole number, at least 1; got {target!r}.")):
        interp.predict(cnn, image, top_k=target)  # was "'<' not supported" (None) or torch's topk TypeError (2.0)
    said = f"target must be a class index (a whole number from 0 to 5) or a class name, got {target!r}."
    with pytest.raises(BadSettingError, match=re.escape(said)):
        attribute(cnn, image, "saliency", target=target)
    with pytest.raises(BadSettingError, match=re.escape(said)):
        capture(vit, vit.preprocess(image.image)[None], target=target)
    with pytest.raises(BadSettingError, match=re.escape(said)):
        deletion_insertion(cnn, cnn.preprocess(image.image), np.ones((128, 128), np.float32), target=target)


def test_a_prepared_tensor_the_model_cannot_read_is_a_sentence_before_any_pass(tiny_cnn, tiny_vit):
    """``attribute(vit, torch.rand(3, 64, 64), …)`` failed inside the position embedding ("The size of tensor a (17)
    must match…"), a batch of two explained its first image without a word, and integers failed in a convolution;
    the faithfulness scores and the randomisation check took the same tensors. Each is one sentence now, and a CNN
    and a ViT built for any size still read a prepared tensor of another size."""
    from interp.errors import BadSettingError
    from interp.evaluation import cascading_randomisation, deletion_insertion, random_floor

    vit = interp.load_model("shapes_vit")  # its position embedding is for its grid alone
    c, h, w = vit.data_config["input_size"]
    cases = [
        (vit, torch.rand(c, h // 2, w), f"shapes_vit takes {h}×{w} images with 3 channels, got (3, {h // 2}, {w})"),
        (tiny_cnn, torch.rand(1, 1, 64, 64), "test_resnet takes images with 3 channels, got (1, 64, 64)"),
        (tiny_cnn, torch.rand(2, 3, 64, 64), "a prepared image is one (3, H, W) tensor, got shape (2, 3, 64, 64)"),
        (tiny_cnn, torch.zeros(3, 64, 64, dtype=torch.uint8), "a prepared image holds normalised floats, not "
         "torch.uint8"),
    ]  # fmt: skip
    for model, x, said in cases:
        for call in (lambda: attribute(model, x, "saliency", target=0),
                     lambda: deletion_insertion(model, x, np.ones(x.shape[-2:], np.float32), 0),
                     lambda: random_floor(model, x, 0, maps=1),
                     lambda: cascading_randomisation(model, x, "saliency", 0)):  # fmt: skip
            with pytest.raises(BadSettingError, match=re.escape(said)):
                call()
    assert attribute(tiny_cnn, torch.rand(1, 3, 48, 40), "saliency", target=0).raw.shape == (3, 48, 40)
    assert attribute(vit, torch.rand(1, c, h, w), "saliency", target=0).raw.shape == (c, h, w)
    assert attribute(tiny_vit, torch.rand(3, 80, 160), "saliency", target=0).raw.shape == (3, 80, 160)  # timm's
    # dynamic_img_size: a ViT built to read any size of whole patches still does


def test_the_api_takes_a_class_by_its_name_as_the_cli_does():
    """``target="tiger cat"`` was refused by every API function ("must be a class index") while the CLI's
    ``--target "tiger cat"`` worked; now both read a name, a synonym or digits the same way, and a misspelt name
    offers the nearest."""
    from interp.attention import capture
    from interp.concepts import class_gradients, generated, run_tcav
    from interp.errors import BadSettingError
    from interp.evaluation import deletion_insertion, map_curves

    cnn, vit = interp.load_model("shapes_cnn"), interp.load_model("shapes_vit")
    image = interp.load_sample("shapes_star")
    star = cnn.class_names.index("star")
    for given in ("star", "  STAR ", str(star)):
        assert attribute(cnn, image, "saliency", target=given).target == star
    assert capture(vit, image, target="star").target == star
    x, ones = cnn.preprocess(image.image), np.ones((128, 128), np.float32)
    assert deletion_insertion(cnn, x, ones, target="star").deletion_auc == deletion_insertion(
        cnn, x, ones, target=star).deletion_auc  # fmt: skip
    grads = class_gradients(cnn, "layer2", [image], "star")
    assert np.array_equal(grads, class_gradients(cnn, "layer2", [image], star))
    stripes, randoms = generated.texture_set("stripes", 4), [generated.random_images(4, seed=s) for s in (0, 1)]
    report = run_tcav(cnn, ["layer2"], {"stripes": stripes}, randoms, [image, image], "Star", runs=2)
    assert report.target == star and type(report.target) is int  # the report names the class by its index
    assert map_curves(cnn, image, None, "star").deletion_auc == map_curves(cnn, image, None, star).deletion_auc
    with pytest.raises(BadSettingError, match=re.escape("target 'stra' is not a class name of shapes_cnn; did you "
                                                        "mean 'star'?")):  # fmt: skip
        attribute(cnn, image, "saliency", target="stra")
    with pytest.raises(BadSettingError, match=re.escape("target 9 is not a class of shapes_cnn (0 to 5).")):
        attribute(cnn, image, "saliency", target="9")
    lite0 = interp.load_model("efficientnet_lite0")  # a synonym, in any case: ImageNet's "tabby, tabby cat"
    assert attribute(lite0, interp.load_sample("chelsea"), "saliency", target="Tabby").target == 281


def test_a_map_of_nan_is_a_sentence_not_a_picture_a_score_or_a_cache_entry(tmp_path):
    """A model whose scores are finite but whose gradient is NaN: its map was drawn (blank), ranked for the trust
    scores and cached; the page and the CLI now say the method failed on this image."""
    from interp.attribution import MapNotFinite
    from interp.evaluation import deletion_insertion, energy_inside
    from tests.toy_models import nan_gradient_model

    model = nan_gradient_model()
    image = interp.image_from_array(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8), "noise")
    cache = interp.ResultCache(tmp_path / "cache")
    with pytest.raises(MapNotFinite, match=r"Saliency \(gradients\) gave NaN or infinite values for class 1 of "):
        attribute(model, image, "saliency", target=1, cache=cache)
    assert not list((tmp_path / "cache").rglob("*.npz")) and hook_count(model._module) == 0
    assert attribute(model, image, "occlusion", target=1, window=8, stride=8).raw.shape == (3, 32, 32)  # no gradient
    nan_map = np.full((32, 32), np.nan, np.float32)
    with pytest.raises(ValueError, match="the map holds NaN or infinite values"):  # a map of one's own, scored
        deletion_insertion(model, model.preprocess(image.image), nan_map, 1, steps=4)
    with pytest.raises(ValueError, match=r"a mask is True/False \(or 0/1\) per pixel"):
        energy_inside(np.ones((32, 32)), np.linspace(0, 1, 32 * 32).reshape(32, 32))
    assert energy_inside(np.ones((32, 32)), np.eye(32, dtype=np.uint8)) == pytest.approx(1 / 32)  # 0/1 is a mask


def test_display_transforms():
    raw = np.stack([np.array([[1.0, -2.0], [3.0, 0.0]])] * 3).astype(np.float32)
    np.testing.assert_allclose(aggregate(raw, "sum"), [[3, -6], [9, 0]])
    np.testing.assert_allclose(aggregate(raw, "max_abs"), [[1, 2], [3, 0]])
    np.testing.assert_allclose(aggregate(raw, "l2"), np.sqrt(3) * np.array([[1, 2], [3, 0]]), rtol=1e-6)
    signed = normalise(aggregate(raw), "signed", 100)
    assert signed.min() == pytest.approx(-6 / 9) and signed.max() == 1.0
    assert normalise(aggregate(raw), "negative", 100)[0, 1] == 1.0
    assert normalise(aggregate(raw), "positive", 100)[0, 1] == 0.0
    base = np.full((2, 2, 3), 100, np.uint8)
    assert np.array_equal(overlay(base, raw, DisplaySettings(alpha=0.0)), base)
    assert not np.array_equal(overlay(base, raw, DisplaySettings(alpha=0.7)), base)
    png = grid_png(["tiger cat"], ["Grad-CAM", "IG"], [[base, None]], cell=32)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_grid_titles_are_readable_and_stay_in_their_place():
    """The grid PNG (the page's download, the case study, the Attention page's layers × heads) sets its titles in a
    scalable font; a long class name wraps within the title column and a long column title is cut with "…"."""
    from PIL import ImageDraw, ImageFont

    from interp.attribution.display import _fit, _font, _wrap

    font = _font(14)
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    assert isinstance(font, ImageFont.FreeTypeFont) and draw.textlength("tiger cat", font=font) > 50  # bitmap: 37 px
    # a user's class names: accents, ×, Cyrillic have glyphs (Pillow's Aileron draws a box for each of them)
    missing = font.getmask("\uffff").getbbox()  # what the font draws for a character it lacks
    assert all(font.getmask(ch).getbbox() != missing for ch in "éßñ×—Жλ…")
    name = "American Staffordshire terrier, Staffordshire terrier, American pit bull terrier, pit bull terrier (39.3%)"
    lines = _wrap(draw, name, font, 158)
    assert len(lines) == 3 and all(draw.textlength(t, font=font) <= 158 for t in lines) and lines[-1].endswith("…")
    assert _wrap(draw, "layer 0", font, 158) == ["layer 0"] and _fit(draw, "Grad-CAM", font, 224) == "Grad-CAM"
    cut = _fit(draw, "Integrated Gradients with SmoothGrad noise tunnel", font, 120)
    assert cut.endswith("…") and draw.textlength(cut, font=font) <= 120
    black = np.zeros((8, 8, 3), np.uint8)
    short, long = (Image.open(io.BytesIO(grid_png([t], ["IG"], [[black]], cell=224))) for t in ("layer 0", name))
    assert short.width < long.width <= 176 + 236 and short.height == long.height  # the title column fits its titles


def test_gradient_shap_is_reproducible_and_exact_on_a_linear_model():
    """With no noise, one sample of a linear model's GradientSHAP is exactly w ⊙ (x - b) for one of the four
    references b, whatever point of the path was drawn; the seed decides which, and the same seed gives the same map."""
    from interp.attribution.baselines import make_baseline

    gen = torch.Generator().manual_seed(1)
    w = torch.randn(3, 192, generator=gen)
    model = linear_model(w)
    x = torch.randn(3, 8, 8, generator=gen)
    first = attribute(model, x, "gradient_shap", target=1, samples=16, seed=3).raw
    np.testing.assert_array_equal(first, attribute(model, x, "gradient_shap", target=1, samples=16, seed=3).raw)
    assert not np.allclose(first, attribute(model, x, "gradient_shap", target=1, samples=16, seed=4).raw)
    chosen = set()
    for seed in range(8):
        raw = attribute(model, x, "gradient_shap", target=1, samples=1, noise=0.0, seed=seed).raw
        refs = {k: make_baseline(k, x[None], model, seed=seed)[0] for k in ("black", "white", "blur", "noise")}
        exact = [k for k, b in refs.items() if np.allclose(raw, (w[1].view(3, 8, 8) * (x - b)).numpy(), atol=1e-5)]
        assert len(exact) == 1, exact
        chosen.add(exact[0])
    assert len(chosen) >= 2  # the reference really is drawn


def test_on_a_gpu_the_batch_budget_is_a_share_of_its_free_memory(tiny_cnn, monkeypatch):
    """On a GPU the steps of IG should run in one or few batches: the CPU's 2 GB process ceiling does not apply."""
    from dataclasses import replace

    from interp.attribution import memory

    on_gpu = replace(tiny_cnn, device=torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8 * 2**30, 80 * 2**30))
    assert memory.activation_budget_mb(on_gpu) == 8 * 1024 * memory.GPU_SHARE
    assert memory.activation_budget_mb(tiny_cnn) < memory.PROCESS_CEILING_MB
    x = tiny_cnn.preprocess(interp.load_sample("coffee").image)[None]
    assert memory.batch_size(on_gpu, x, 32) == 32
    assert memory.batch_size(on_gpu, x, 32, budget_mb=1) == 1


def test_where_the_os_does_not_say_the_budget_counts_the_runtime_and_the_weights(tiny_cnn, monkeypatch):
    from interp.attribution import memory

    monkeypatch.setattr(memory, "resident_mb", lambda: None)
    monkeypatch.setattr(memory, "container_limit_mb", lambda: None)  # wherever the tests run
    monkeypatch.delenv("INTERP_MEMORY_LIMIT_MB", raising=False)
    weights = sum(p.numel() * p.element_size() for p in [*tiny_cnn._module.parameters(), *tiny_cnn._module.buffers()])
    expected = memory.PROCESS_CEILING_MB - memory.RUNTIME_MB - weights / 2**20
    assert memory.activation_budget_mb(tiny_cnn) == max(memory.MIN_BUDGET_MB, int(expected))


def test_the_cpu_budget_follows_a_container_and_the_setting(tiny_cnn, monkeypatch):
    """A container allowing 1 GB was killed by the kernel during IG on Lite0 (its 2 GB ceiling did not fit). Against a
    limit, what counts is what the process cannot give back (tensors and heap), not the libraries' pages."""
    from interp.attribution import memory

    monkeypatch.delenv("INTERP_MEMORY_LIMIT_MB", raising=False)
    monkeypatch.setattr(memory, "resident_mb", lambda: 700.0)  # VmRSS, the libraries' code included
    monkeypatch.setattr(memory, "anonymous_mb", lambda: 300.0)
    monkeypatch.setattr(memory, "container_limit_mb", lambda: None)
    assert memory.activation_budget_mb(tiny_cnn) == memory.PROCESS_CEILING_MB - 700
    monkeypatch.setattr(memory, "container_limit_mb", lambda: 8192.0)  # a roomier container keeps the 2 GB ceiling
    assert memory.activation_budget_mb(tiny_cnn) == memory.PROCESS_CEILING_MB - 700
    monkeypatch.setattr(memory, "container_limit_mb", lambda: 1000.0)
    assert memory.activation_budget_mb(tiny_cnn) == 1000 - memory.HEADROOM_MB - 300
    monkeypatch.setattr(memory, "anonymous_mb", lambda: None)  # where the OS does not say, the resident size
    assert memory.activation_budget_mb(tiny_cnn) == 1000 - memory.HEADROOM_MB - 700
    monkeypatch.setattr(memory, "container_limit_mb", lambda: 600.0)  # less than the process holds: the floor
    assert memory.activation_budget_mb(tiny_cnn) == memory.MIN_BUDGET_MB
    monkeypatch.setattr(memory, "anonymous_mb", lambda: 300.0)
    monkeypatch.setenv("INTERP_MEMORY_LIMIT_MB", "4000")  # the person running the app knows best, either way
    assert memory.activation_budget_mb(tiny_cnn) == 4000 - memory.HEADROOM_MB - 300
    x = tiny_cnn.preprocess(interp.load_sample("coffee").image)[None]
    big = memory.batch_size(tiny_cnn, x, 10_000)
    monkeypatch.setenv("INTERP_MEMORY_LIMIT_MB", "700")
    assert memory.activation_budget_mb(tiny_cnn) == 700 - memory.HEADROOM_MB - 300
    assert memory.batch_size(tiny_cnn, x, 10_000) < big


def test_the_same_work_asked_again_reads_its_budget_once_while_the_heap_holds_what_it_held(tiny_cnn, monkeypatch):
    """A budget read hands the heap's free pages back to the OS and the next pass faults them in again: an IG-32 on
    Lite0 took 0.79 s beside a raw batched pass's 0.53 s (0.60 s without the hand-back). IG for another class reuses
    what the last pass freed, so a thread reads its budget once; memory taken or given back since, other work (and
    the same work again after it), another step count or another limit read it again, and so does a plain prediction
    on another thread between two maps (a server's other session)."""
    import interp.runtime
    from interp.attribution import memory

    if interp.runtime.heap_in_use() is None:
        pytest.skip("glibc's mallinfo2 is not here")
    reads = []
    read = memory.activation_budget_mb
    monkeypatch.setattr(memory, "activation_budget_mb", lambda m: reads.append(1) or read(m))
    monkeypatch.delenv("INTERP_MEMORY_LIMIT_MB", raising=False)
    memory._budgets.__dict__.clear()
    image = interp.load_sample("coffee")
    for target in (0, 1, 2, 0):
        attribute(tiny_cnn, image, "integrated_gradients", target)
    assert len(reads) == 1
    held = torch.ones(3 * memory.REREAD_MB * 2**20 // 4)  # another session's tensors
    attribute(tiny_cnn, image, "integrated_gradients", 1)
    assert len(reads) == 2
    attribute(tiny_cnn, image, "integrated_gradients", 2)
    assert len(reads) == 2
    del held  # given back: the budget grows again
    attribute(tiny_cnn, image, "integrated_gradients", 1)
    assert len(reads) == 3
    attribute(tiny_cnn, image, "integrated_gradients", 1, steps=16)
    attribute(tiny_cnn, image, "gradient_shap", 1)
    attribute(tiny_cnn, image, "gradient_shap", 2)
    assert len(reads) == 5
    # the same work after other work in this thread reads again: the pages the other work freed stay resident, and
    # its own budget would not count them (GradientSHAP after thirteen other methods took Lite0's process to 2 GB)
    attribute(tiny_cnn, image, "integrated_gradients", 1, steps=16)
    assert len(reads) == 6
    attribute(tiny_cnn, image, "rise", 1, masks=64)  # forward passes alone read every time (see repeated_budget_mb)
    attribute(tiny_cnn, image, "rise", 2, masks=64)
    assert len(reads) == 8
    attribute(tiny_cnn, image, "integrated_gradients", 1, steps=16)
    assert len(reads) == 9
    monkeypatch.setenv("INTERP_MEMORY_LIMIT_MB", "1500")
    attribute(tiny_cnn, image, "integrated_gradients", 1)
    assert len(reads) == 10
    # a server's session runs on a thread of its own (its own heap): its first map reads, the next ones reuse, until
    # another session runs the model (whose freed pages stay in its thread's heap: six visitors took the server past
    # 3.3 GB when one budget served every thread)
    import threading
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        for target in (0, 1, 2):
            pool.submit(attribute, tiny_cnn, image, "integrated_gradients", target).result()
        assert len(reads) == 11
        visitor = threading.Thread(target=interp.predict, args=(tiny_cnn, image.image))
        visitor.start()
        visitor.join()
        pool.submit(attribute, tiny_cnn, image, "integrated_gradients", 1).result()
        assert len(reads) == 12
        pool.submit(attribute, tiny_cnn, image, "integrated_gradients", 2).result()
        assert len(reads) == 12
    attribute(tiny_cnn, image, "integrated_gradients", 0)  # the main thread's budget: the other threads ran since
    assert len(reads) == 13


PEAK_SCRIPT = """
import os, sys
import interp
from interp.attribution import attribute
model = interp.load_model("vit_base_patch16_224", "random")
x = model.preprocess(interp.load_sample("chelsea").image)
attribute(model, x, "integrated_gradients", 282, steps=32)
attribute(model, x, "smoothgrad", 282, samples=16)
# VmHWM, the process's own peak (ru_maxrss would carry the parent's peak across exec)
print(int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 2**10)
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc")
def test_ig_and_smoothgrad_on_vit_base_stay_under_2_gb_for_the_whole_process(tmp_path):
    """The issue's bound, measured as the OS sees it: Captum's default batching peaks at 4.3 GB here."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "INTERP_CACHE_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    peak_mb = float(out.stdout.strip().splitlines()[-1])
    assert 1000 < peak_mb < 2000  # above the model and runtime alone (so the measure is real), under the bound


def test_integrated_gradients_equals_captum(tiny_cnn):
    from captum.attr import IntegratedGradients

    from interp.attribution.baselines import make_baseline

    x = tiny_cnn.preprocess(interp.load_sample("coffee").image)[None]
    for baseline in ("black", "blur"):
        ours = attribute(tiny_cnn, x, "integrated_gradients", target=4, steps=20, baseline=baseline)
        ref, delta = IntegratedGradients(lambda t: tiny_cnn._module(t)[:, 4]).attribute(
            x, baselines=make_baseline(baseline, x, tiny_cnn), n_steps=20, return_convergence_delta=True
        )
        ref = ref[0].numpy()
        np.testing.assert_allclose(ours.raw, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
        assert ours.delta == pytest.approx(float(delta), abs=1e-4)


# ------------------------------------------------------------------------------------------------ settings schema


def test_every_setting_is_declared_once_with_a_valid_default_and_help():
    from interp.attribution.settings import Setting

    for name, cls in METHODS.items():
        rows = cls.schema()
        assert len({r.name for r in rows}) == len(rows), name
        for row in rows:
            assert isinstance(row, Setting) and row.label and row.help, (name, row.name)
            assert row.check(row.default, name) == row.default, (name, row.name)  # the default passes its own check
            if row.kind in ("int", "float"):
                assert row.low <= row.default <= (row.page_high or row.high) <= row.high, (name, row.name)
        assert cls().params == cls.defaults(), name


def test_text_values_are_parsed_and_checked_as_the_cli_and_links_give_them():
    m = get_method("integrated_gradients", steps="64", baseline=" black ")
    assert m.params == {"steps": 64, "baseline": "black"}
    assert get_method("grad_cam", layer="default").params["layer"] is None
    assert get_method("smoothgrad", noise="0.2").params["noise"] == 0.2


def test_smoothgrad_exposes_the_wrapped_methods_settings_and_uses_them(tiny_cnn):
    names = {r.name for r in METHODS["smoothgrad"].schema()}
    assert {"integrated_gradients.steps", "integrated_gradients.baseline", "deeplift.baseline",
            "gradient_shap.samples"} <= names  # fmt: skip
    x = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(0))
    fast = {"base": "integrated_gradients", "samples": 2}
    coarse = attribute(tiny_cnn, x, "smoothgrad", 1, **fast, **{"integrated_gradients.steps": 2})
    fine = attribute(tiny_cnn, x, "smoothgrad", 1, **fast, **{"integrated_gradients.steps": 8})
    assert coarse.params["integrated_gradients.steps"] == 2 and fine.params["integrated_gradients.steps"] == 8
    assert not np.allclose(coarse.raw, fine.raw)  # the wrapped setting reaches the wrapped method
    # by hand: the same noisy copies through IG with 8 steps, averaged
    sm = get_method("smoothgrad", **fast, **{"integrated_gradients.steps": 8})
    sigma = 0.15 * float(x.max() - x.min())
    noise = torch.randn((2, *x.shape), generator=torch.Generator().manual_seed(0)) * sigma
    by_hand = np.mean([attribute(tiny_cnn, x + n, "integrated_gradients", 1, steps=8).raw for n in noise], axis=0)
    np.testing.assert_allclose(fine.raw, by_hand, rtol=1e-4, atol=1e-6)
    # only the chosen method's settings are part of the result's identity (the cache key)
    assert "deeplift.baseline" not in sm.resolved_params(tiny_cnn)
    assert get_method("smoothgrad").resolved_params(tiny_cnn) == get_method(
        "smoothgrad", **{"deeplift.baseline": "white"}).resolved_params(tiny_cnn)  # fmt: skip


def test_assignments_round_trip_and_reject_what_does_not_apply():
    from interp.attribution.settings import SettingError, format_assignments, parse_assignments

    chosen = ["integrated_gradients", "occlusion", "smoothgrad", "grad_cam"]
    schemas = {m: METHODS[m].schema() for m in chosen}
    got = parse_assignments(
        ["integrated_gradients.steps=64", "baseline=white", "smoothgrad.base=integrated_gradients",
         "smoothgrad.integrated_gradients.steps=16", "grad_cam.layer=layer4"], chosen, schemas)  # fmt: skip
    assert got["integrated_gradients"] == {"steps": 64, "baseline": "white"}
    assert got["occlusion"] == {"baseline": "white"}  # a bare name: every chosen method that has it
    assert got["smoothgrad"] == {"base": "integrated_gradients", "integrated_gradients.steps": 16}
    text = format_assignments(got, schemas)
    assert parse_assignments(text, chosen, schemas) == got
    assert "occlusion.window=32" not in format_assignments({"occlusion": {"window": 32}}, schemas)  # defaults omitted
    # a wrapped method's setting is dropped from a link when another method is wrapped
    assert format_assignments({"smoothgrad": {"deeplift.baseline": "white"}}, schemas) == []
    for bad, says in [
        (["steps"], "not SETTING=VALUE"),
        (["lime.samples=5"], "not among the chosen"),
        (["superpixels=5"], "none of the chosen methods"),
        (["integrated_gradients.stepz=5"], r"no setting 'stepz' \(did you mean 'steps'\?\); its settings are steps, "),
        # Captum's names for them: the nearest of ours is offered, and the chosen methods' settings are listed
        (["n_steps=5"], r"has a setting 'n_steps' \(did you mean 'steps'\?\); theirs are steps, baseline, window, "),
        (["nt_samples=5"], r"has a setting 'nt_samples' \(did you mean 'samples'\?\)"),
        (["stdevs=0.2"], r"has a setting 'stdevs' \(did you mean 'noise'\?\)"),  # not 'steps', the closest spelling
        (["sliding_window_shapes=5"], r"has a setting 'sliding_window_shapes' \(did you mean 'window'\?\)"),
        (["colour=5"], r"has a setting 'colour'; theirs are "),  # nothing near: no guess
        (["integrated_gradients.steps=ten"], "is a number"),
    ]:
        with pytest.raises(SettingError, match=says):
            parse_assignments(bad, chosen, schemas, METHODS)


# ------------------------------------------------------------------------------ the CAM variants and RISE (#26)


def _package_cam(kind, model: LoadedModel, x: torch.Tensor, target: int, layer: str, **kwargs) -> np.ndarray:
    layer_module = model._module.get_submodule(layer)
    model._module.requires_grad_(True)
    try:
        with kind(model=model._module, target_layers=[layer_module], **kwargs) as cam:
            return cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])[0]
    finally:
        model._module.requires_grad_(False)


@pytest.mark.parametrize("layer", ["layer2", "layer4"])
@pytest.mark.parametrize("name", ["hires_cam", "xgrad_cam", "ablation_cam"])
def test_cam_variants_equal_the_reference_package(tiny_cnn, name, layer):
    """At layer2 the gradient varies over the map, so HiResCAM and XGrad-CAM differ from Grad-CAM there (at the last
    layer before a pooled linear head they equal it, as Draelos & Carin show)."""
    from pytorch_grad_cam import AblationCAM, HiResCAM, XGradCAM

    kind = {"hires_cam": HiResCAM, "xgrad_cam": XGradCAM, "ablation_cam": AblationCAM}[name]
    x = tiny_cnn.preprocess(interp.load_sample("chelsea").image)[None]
    ours = attribute(tiny_cnn, x, name, target=2, layer=layer).raw[0]  # a class with a positive logit (see Ablation-CAM)
    ref = _package_cam(kind, tiny_cnn, x, 2, layer)
    assert ours.max() > 0 and ref.max() > 0
    assert _pearson(ours, ref) >= 0.999
    if layer == "layer2" and name != "ablation_cam":
        grad = attribute(tiny_cnn, x, "grad_cam", target=2, layer=layer).raw[0]
        assert np.abs(ours / ours.max() - grad / grad.max()).max() > 0.02  # not Grad-CAM under another name


def test_guided_grad_cam_is_guided_backprop_masked_by_grad_cam(tiny_cnn):
    """Selvaraju et al.'s definition: the element-wise product of the two maps (each tested against a reference)."""
    x = tiny_cnn.preprocess(interp.load_sample("chelsea").image)[None]
    guided = attribute(tiny_cnn, x, "guided_backprop", target=2).raw
    cam = attribute(tiny_cnn, x, "grad_cam", target=2).raw
    both = attribute(tiny_cnn, x, "guided_grad_cam", target=2).raw
    assert both.shape == guided.shape and cam.shape == (1, *guided.shape[1:])
    np.testing.assert_allclose(both, guided * cam, rtol=1e-5, atol=1e-7)
    assert cam.std() > 0.1 * cam.mean() and np.abs(guided).max() > 0  # neither factor is a constant or zero


def test_eigen_cam_is_the_first_principal_component_like_the_reference(lite0):
    from pytorch_grad_cam import EigenCAM as ReferenceEigenCAM

    x = lite0.preprocess(interp.load_sample("chelsea").image)[None]
    ours = attribute(lite0, x, "eigen_cam", target=282).raw[0]
    assert np.array_equal(ours, attribute(lite0, x, "eigen_cam", target=1).raw[0])  # no class in it
    ref = _package_cam(ReferenceEigenCAM, lite0, x, 282, lite0.spec.cam_layer)
    # the component's sign is arbitrary: the package keeps SVD's, we orient it towards the active part
    layer = lite0._module.get_submodule(lite0.spec.cam_layer)
    flipped = _package_cam(ReferenceEigenCAM, lite0, x, 282, lite0.spec.cam_layer,
                           reshape_transform=lambda t: -t) if layer is not None else None  # fmt: skip
    assert max(_pearson(ours, ref), _pearson(ours, flipped)) >= 0.999


def test_ablation_cam_on_a_vit_and_with_fewer_channels(tiny_vit):
    x = tiny_vit.preprocess(interp.load_sample("astronaut").image)[None]
    full = attribute(tiny_vit, x, "ablation_cam", target=5)
    few = attribute(tiny_vit, x, "ablation_cam", target=5, channels=4)
    assert full.raw.shape == few.raw.shape == (1, *x.shape[-2:])
    assert not np.allclose(full.raw, few.raw)


def test_rise_finds_the_region_a_model_reads():
    """A model whose class-0 logit is 10 × (the mean of the image's top-left quarter - 0.5) and whose class-1 logit
    is 0: RISE's expected probability given a visible pixel must be highest on that quarter, and its map must not
    depend on anything but the seed."""
    class QuarterModel(torch.nn.Module):
        def forward(self, x):
            h, w = x.shape[-2] // 2, x.shape[-1] // 2
            score = 10 * (x[:, :, :h, :w].mean(dim=(1, 2, 3)) - 0.5)
            return torch.stack([score, torch.zeros_like(score)], dim=1)

    net = QuarterModel().eval()
    spec = ModelSpec("quarter", "quarter", "cnn", "reads the top-left quarter")
    cfg = {"input_size": (3, 32, 32), "mean": (0.0,) * 3, "std": (1.0,) * 3, "interpolation": "bilinear", "crop_pct": 1.0}
    model = LoadedModel(spec, net, WeightsInfo("random", "test", "quarter"), cfg, ("quarter", "none"), torch.device("cpu"))
    x = torch.ones(3, 32, 32)
    result = attribute(model, x, "rise", target=0, masks=400, cells=4)
    m = result.raw[0]
    inside, outside = m[:16, :16].mean(), np.concatenate([m[16:, :].ravel(), m[:16, 16:].ravel()]).mean()
    assert inside > outside + 0.08, (inside, outside)  # by hand: one more visible cell of four moves p by ~0.13
    assert np.unravel_index(m.argmax(), m.shape)[0] < 16 and np.unravel_index(m.argmax(), m.shape)[1] < 16
    assert np.array_equal(m, attribute(model, x, "rise", target=0, masks=400, cells=4).raw[0])
    assert not np.array_equal(m, attribute(model, x, "rise", target=0, masks=400, cells=4, seed=1).raw[0])
    # centred: a pixel the model never reads is 0 up to the masks' noise, one it reads is clearly above
    assert abs(m[16:, 16:].mean()) < 0.02 and m[:16, :16].mean() > 0.08
    paper = attribute(model, x, "rise", target=0, masks=400, cells=4, scores="raw").raw[0]
    assert paper.min() > 0  # the paper's map: probabilities, on the masks' mean probability
    assert (paper - m).mean() == pytest.approx(result.extras["mean_probability"], abs=0.02)


def test_rise_of_a_model_that_ignores_its_input_is_zero_not_the_masks_noise():
    """Every mask scores the same, so no pixel matters: the centred map is 0 everywhere. The paper's formula gives
    p · (how often each pixel happened to be visible) / keep, which varies from pixel to pixel by chance alone."""
    class Constant(torch.nn.Module):
        def forward(self, x):
            return torch.tensor([[1.0, 0.0]]).expand(x.shape[0], 2) + 0 * x.sum()

    spec = ModelSpec("constant", "constant", "cnn", "ignores its input")
    cfg = {"input_size": (3, 32, 32), "mean": (0.0,) * 3, "std": (1.0,) * 3, "interpolation": "bilinear", "crop_pct": 1.0}
    model = LoadedModel(spec, Constant().eval(), WeightsInfo("random", "test", "constant"), cfg, ("a", "b"),
                        torch.device("cpu"))  # fmt: skip
    x = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    centred = attribute(model, x, "rise", target=0, masks=200, cells=4).raw[0]
    np.testing.assert_allclose(centred, 0.0, atol=1e-6)
    paper = attribute(model, x, "rise", target=0, masks=200, cells=4, scores="raw").raw[0]
    p = 1 / (1 + np.exp(-1.0))  # softmax of (1, 0)
    assert paper.mean() == pytest.approx(p, rel=0.05) and paper.std() > 0.02  # visibility noise, nothing else
