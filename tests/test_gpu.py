"""On a GPU the engine gives the CPU's answers: every method, the attention capture, the ViT's statistics.

Skipped where there is no CUDA device (CI); run on a machine with one: ``python -m pytest tests/test_gpu.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import interp
from interp.attribution import METHODS, MethodNotApplicable, attribute
from interp.shapes import generate

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(np.corrcoef(a, b)[0, 1])


@pytest.fixture(scope="module", params=["shapes_cnn", "shapes_vit"])
def pair(request):
    return interp.load_model(request.param, device="cpu"), interp.load_model(request.param, device="cuda")


@pytest.fixture(scope="module")
def image():
    return interp.image_from_array(next(generate(1, seed=5, split="clean")).image, "shape")


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_gives_the_cpu_map(pair, image, method):
    cpu, gpu = pair
    try:
        a = attribute(cpu, image, method)
    except MethodNotApplicable:
        with pytest.raises(MethodNotApplicable):
            attribute(gpu, image, method)
        return
    b = attribute(gpu, image, method)
    assert a.target == b.target
    assert np.isfinite(b.raw).all()
    assert pearson(a.raw, b.raw) >= 0.99


def test_attention_capture_gives_the_cpu_attention(image):
    from interp.attention import capture, head_stats, rollout_map

    cpu, gpu = interp.load_model("shapes_vit", device="cpu"), interp.load_model("shapes_vit", device="cuda")
    x = cpu.preprocess(image.image)[None]
    a, b = capture(cpu, x, 0), capture(gpu, x.cuda(), 0)
    np.testing.assert_allclose(np.asarray(a.attn), np.asarray(b.attn), atol=1e-3)
    assert pearson(rollout_map(a, "mean", 0.9), rollout_map(b, "mean", 0.9)) >= 0.999
    np.testing.assert_allclose(head_stats(a).entropy, head_stats(b).entropy, atol=1e-2)
