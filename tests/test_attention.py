"""Attention capture and the maps built from it: known answers, shared-model safety, concurrency."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest
import torch

import interp
from interp.attention import (
    NotAViTError,
    attention_modules,
    capture,
    chefer_relevance,
    class_maps,
    cls_maps,
    gradient_rollout,
    head_stats,
    patch_maps,
    rollout,
    rollout_map,
)
from interp.attention.maps import discard_lowest
from interp.attention.stats import entropy, mean_distance, prefix_share
from interp.models.hooks import hook_count


@pytest.fixture(scope="module")
def vit() -> interp.LoadedModel:
    return interp.load_model("test_vit", "random")


@pytest.fixture(scope="module")
def x(vit) -> torch.Tensor:
    return vit.preprocess(interp.load_sample("chelsea").image)[None]


def test_capture_shapes_rows_and_unchanged_output(vit, x):
    flags = [m.fused_attn for m in attention_modules(vit._module)]
    cap = capture(vit, x)
    assert [m.fused_attn for m in attention_modules(vit._module)] == flags
    depth, heads = len(vit._module.blocks), vit._module.blocks[0].attn.num_heads
    rows, cols = vit._module.patch_embed.grid_size
    assert cap.attn.shape == (depth, heads, 1 + rows * cols, 1 + rows * cols)
    np.testing.assert_allclose(cap.attn.sum(-1), 1.0, atol=1e-5)
    assert cap.has_cls and cap.prefix_tokens == 1 and cap.grid == (rows, cols) and cap.grads is None
    with torch.inference_mode():
        fused = vit._module(x)[0].numpy()
    np.testing.assert_allclose(cap.logits, fused, atol=1e-4)


def test_capture_matches_attention_computed_by_hand(vit, x):
    """Layer 0's attention recomputed from the patch embedding and the qkv weights."""
    cap = capture(vit, x)
    net = vit._module
    with torch.inference_mode():
        tokens = net._pos_embed(net.patch_embed(x))
        block = net.blocks[0]
        h = block.norm1(tokens)
        b, n, c = h.shape
        qkv = block.attn.qkv(h).reshape(b, n, 3, block.attn.num_heads, c // block.attn.num_heads).permute(2, 0, 3, 1, 4)
        q, k = qkv[0], qkv[1]
        expected = ((q @ k.transpose(-2, -1)) * block.attn.scale).softmax(-1)[0].numpy()
    np.testing.assert_allclose(cap.attn[0], expected, atol=1e-5)


def test_flags_and_hooks_restored_after_an_exception(vit, x):
    mods = attention_modules(vit._module)
    before = [m.fused_attn for m in mods]
    hooks = hook_count(vit._module)

    def boom(module, inputs, output):
        raise RuntimeError("boom")

    handle = vit._module.blocks[2].register_forward_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            capture(vit, x, target=1)
    finally:
        handle.remove()
    assert [m.fused_attn for m in mods] == before
    assert hook_count(vit._module) == hooks


def test_concurrent_captures_equal_serial_ones(vit):
    images = [vit.preprocess(interp.load_sample(n).image)[None] for n in ("chelsea", "coffee", "astronaut", "rocket")]
    serial = [capture(vit, im, target=i) for i, im in enumerate(images)]
    results: list = [None] * len(images)

    def run(i: int) -> None:
        results[i] = capture(vit, images[i], target=i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(serial, results, strict=True):
        np.testing.assert_allclose(a.attn, b.attn, atol=1e-6)
        np.testing.assert_allclose(a.grads, b.grads, atol=1e-6)


def test_gradients_match_finite_differences(vit, x):
    """The captured gradient predicts how the logit moves when one layer's attention is nudged along a direction."""
    from interp.attention import unfused_attention

    target, layer = 2, 1
    cap = capture(vit, x, target=target)
    assert cap.grads is not None and cap.grads.shape == cap.attn.shape
    direction = torch.from_numpy(np.random.default_rng(0).standard_normal(cap.attn.shape[1:]).astype(np.float32))[None]
    eps = 1e-2

    def logit_with(shift: float) -> float:
        handle = vit._module.blocks[layer].attn.attn_drop.register_forward_hook(lambda m, i, o: o + shift * direction)
        try:
            with unfused_attention(attention_modules(vit._module)), torch.inference_mode():
                return float(vit._module(x)[0, target])
        finally:
            handle.remove()

    numeric = (logit_with(eps) - logit_with(-eps)) / (2 * eps)
    analytic = float((cap.grads[layer] * direction[0].numpy()).sum())
    assert numeric == pytest.approx(analytic, rel=2e-2, abs=1e-4)


def test_inputs_the_model_cannot_read_are_refused_in_a_sentence(vit, x):
    """A 50×50 input failed in the position embedding ("size of tensor a (10) must match…"), a NaN input gave NaN
    attention without a word, an array failed on ``.dim()``, and a patch at row 1.5 in NumPy's indexing."""
    with pytest.raises(ValueError, match="takes 160×160 images with 3 channels, got \\(3, 50, 50\\); prepare"):
        capture(vit, torch.zeros(1, 3, 50, 50))
    with pytest.raises(ValueError, match="takes 160×160 images with 3 channels, got \\(3, 64, 96\\)"):
        capture(vit, torch.zeros(1, 3, 64, 96))  # whole patches, but not the grid the maps are laid out on
    with pytest.raises(ValueError, match="NaN or infinite"):
        capture(vit, torch.full_like(x, float("nan")))
    cap = capture(vit, x.numpy())
    assert np.array_equal(cap.attn, capture(vit, x).attn)
    with pytest.raises(ValueError, match="patch \\(1.5, 0\\) is outside"):
        patch_maps(cap, 1.5, 0)
    assert np.array_equal(patch_maps(cap, np.int64(2), 3), patch_maps(cap, 2, 3))
    with pytest.raises(ValueError, match="patch \\('1', 0\\) is outside"):  # it said "patch (1, 0)" of the text "1"
        patch_maps(cap, "1", 0)


def test_maps_of_arrays_of_other_shapes_or_a_ratio_as_text_are_refused_in_a_sentence(vit, x):
    """Gradients of another shape were broadcast against the attention, giving a map without a word; a discard
    ratio given as text failed on ``<=``."""
    cap = capture(vit, x, target=1)
    for make, part in ((gradient_rollout, cap.grads[:1]), (chefer_relevance, cap.grads[:, :1])):
        with pytest.raises(ValueError, match=re.escape(f"the gradients' shape {part.shape} is not the attention's "
                                                       f"{cap.attn.shape}; give both from one capture")):  # fmt: skip
            make(cap.attn, part)
    with pytest.raises(ValueError, match=re.escape("(layers, heads, tokens, tokens), as capture(...).attn holds it; "
                                                   f"got shape {cap.attn[0].shape}")):  # fmt: skip
        rollout(cap.attn[0])
    for ratio in ("0.5", None, float("nan")):
        with pytest.raises(ValueError, match=re.escape(f"discard ratio must be in [0, 1), got {ratio!r}")):
            rollout_map(cap, discard_ratio=ratio)
    assert np.array_equal(rollout_map(cap, discard_ratio=np.float32(0.5)), rollout_map(cap, discard_ratio=0.5))


def test_cnn_refused_with_a_sentence():
    with pytest.raises(NotAViTError, match="not a vision transformer"):
        capture(interp.load_model("test_resnet", "random"), torch.zeros(1, 3, 160, 160))


def test_class_attention_alone_is_refused_with_a_sentence():
    """CaiT's patch-to-patch layers use talking heads, which cannot be read; only its two class-attention layers
    (one query, 197 keys) could, and the head statistics failed on them deep in an einsum."""
    cait = interp.load_model("cait_xxs24_224", "random")
    with pytest.raises(NotAViTError, match="attend from 1 tokens to 197, not from every token to every token"):
        capture(cait, torch.zeros(1, 3, 224, 224), target=1)


def test_register_tokens_and_no_class_token_laid_out_right():
    reg = interp.load_model("vit_little_patch16_reg4_gap_256", "random")
    cap = capture(reg, torch.zeros(1, 3, 256, 256))
    assert cap.prefix_tokens == 4 and not cap.has_cls and cap.grid == (16, 16)
    assert cls_maps(cap).shape == (len(reg._module.blocks), reg._module.blocks[0].attn.num_heads, 16, 16)
    np.testing.assert_allclose(cls_maps(cap)[0, 0], cap.attn[0, 0, 4:, 4:].mean(0).reshape(16, 16), atol=1e-6)
    assert rollout_map(cap).shape == (16, 16)


# --- maps on hand-made attention with known answers -------------------------------------------------------------


def uniform(layers: int, heads: int, tokens: int) -> np.ndarray:
    return np.full((layers, heads, tokens, tokens), 1.0 / tokens, dtype=np.float32)


@pytest.mark.parametrize("layers", [1, 2, 5])
def test_rollout_of_uniform_attention(layers):
    """M = (U + I) / 2 with U idempotent, so M^L = I / 2^L + (1 - 2^-L) U."""
    tokens = 7
    joint = rollout(uniform(layers, 3, tokens))
    expected = np.eye(tokens) / 2**layers + (1 - 2.0**-layers) / tokens
    np.testing.assert_allclose(joint, expected, atol=1e-6)
    np.testing.assert_allclose(joint.sum(-1), 1.0, atol=1e-6)


def test_rollout_of_identity_attention_is_identity():
    attn = np.broadcast_to(np.eye(5, dtype=np.float32), (4, 2, 5, 5)).copy()
    np.testing.assert_allclose(rollout(attn), np.eye(5), atol=1e-7)


def test_rollout_composes_layers_in_order():
    """Layer 1 moves everything to token 1, layer 2 moves token 1 to token 2: the class token ends up reading token 1
    via layer 2's rows; the product must be A2 @ A1, not A1 @ A2."""
    t = 3
    a1 = np.zeros((t, t)); a1[:, 1] = 1.0
    a2 = np.zeros((t, t)); a2[:, 2] = 1.0
    attn = np.stack([a1, a2])[:, None].astype(np.float32)
    m1, m2 = 0.5 * a1 + 0.5 * np.eye(t), 0.5 * a2 + 0.5 * np.eye(t)
    np.testing.assert_allclose(rollout(attn), m2 @ m1, atol=1e-6)
    assert not np.allclose(m2 @ m1, m1 @ m2)


def test_head_fusions():
    attn = np.zeros((1, 2, 2, 2), dtype=np.float32)
    attn[0, 0] = [[1, 0], [0, 1]]
    attn[0, 1] = [[0, 1], [1, 0]]
    # max: all ones, so 0.5 * 1 + 0.5 * I = [[1, .5], [.5, 1]], rows renormalised to [2/3, 1/3]
    np.testing.assert_allclose(rollout(attn, "max"), [[2 / 3, 1 / 3], [1 / 3, 2 / 3]], atol=1e-6)
    # min: all zeros, so only the residual is left
    np.testing.assert_allclose(rollout(attn, "min"), np.eye(2), atol=1e-7)
    # mean: 0.5 everywhere, so [[.75, .25], [.25, .75]]
    np.testing.assert_allclose(rollout(attn, "mean"), [[0.75, 0.25], [0.25, 0.75]], atol=1e-6)
    with pytest.raises(ValueError, match="head fusion"):
        rollout(attn, "median")


def test_discard_keeps_the_class_column_and_drops_the_rest():
    fused = np.arange(16, dtype=np.float32).reshape(1, 4, 4) / 16
    out = discard_lowest(fused, 0.5)
    assert (out[0, :, 0] == fused[0, :, 0]).all()  # column 0 kept even where lowest
    dropped = (out == 0) & (fused != 0)
    assert dropped.sum() == 8 - 2  # the 8 lowest minus the two in column 0 (0 was 0 already)
    assert out.max() == fused.max()


def test_chefer_relevance_with_unit_gradients_on_uniform_attention():
    """Ā = U every layer: R_L = I + (2^L - 1) U."""
    for layers in (1, 3):
        attn = uniform(layers, 2, 6)
        rel = chefer_relevance(attn, np.ones_like(attn))
        np.testing.assert_allclose(rel, np.eye(6) + (2**layers - 1) * attn[0, 0], atol=1e-5)


def test_class_maps_ignore_negatively_weighted_attention():
    attn = uniform(2, 1, 5)
    grads = -np.ones_like(attn)
    np.testing.assert_allclose(chefer_relevance(attn, grads), np.eye(5), atol=1e-7)
    np.testing.assert_allclose(gradient_rollout(attn, grads), np.eye(5), atol=1e-7)


def test_attention_held_as_torch_tensors_gives_the_maps_of_its_numpy_copy(vit, x):
    """A transformers model's ``output_attentions``, stacked, is a tensor (with a gradient where the caller wants
    one, on the GPU alike): rollout and the class maps raised torch's "Can't call numpy() on Tensor that requires
    grad"; they give what the NumPy copies give."""
    cap = capture(vit, x, target=1)
    attn, grads = torch.from_numpy(cap.attn).requires_grad_(), torch.from_numpy(cap.grads).requires_grad_()
    np.testing.assert_array_equal(rollout(attn, "max", 0.5), rollout(cap.attn, "max", 0.5))
    np.testing.assert_array_equal(gradient_rollout(attn, grads), gradient_rollout(cap.attn, cap.grads))
    np.testing.assert_array_equal(chefer_relevance(attn, grads), chefer_relevance(cap.attn, cap.grads))


def test_class_maps_on_the_vit_differ_between_classes(vit, x):
    a = class_maps(capture(vit, x, target=0))
    b = class_maps(capture(vit, x, target=5))
    assert set(a) == {"gradient rollout", "Chefer relevance"}
    assert a["Chefer relevance"].shape == tuple(vit._module.patch_embed.grid_size)
    assert not np.allclose(a["Chefer relevance"], b["Chefer relevance"])
    with pytest.raises(ValueError, match="target class"):
        class_maps(capture(vit, x))


def test_maps_are_the_class_row_of_the_full_products(vit, x):
    """The maps are computed as one row (L vector products); they must equal that row of the full matrices."""
    cap = capture(vit, x, target=4)
    attn, grads = cap.attn.copy(), cap.grads.copy()
    np.testing.assert_allclose(rollout_map(cap, "max", 0.5).ravel(), rollout(cap.attn, "max", 0.5)[0, 1:], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(rollout_map(cap, "mean", 0.9).ravel(), rollout(cap.attn, "mean", 0.9)[0, 1:], rtol=1e-4, atol=1e-7)
    maps = class_maps(cap, 0.3)
    assert (cap.attn == attn).all() and (cap.grads == grads).all()  # the maps work in place on their own copies only
    np.testing.assert_allclose(maps["gradient rollout"].ravel(), gradient_rollout(cap.attn, cap.grads, 0.3)[0, 1:],
                               rtol=1e-4, atol=1e-7)  # fmt: skip
    np.testing.assert_allclose(maps["Chefer relevance"].ravel(), chefer_relevance(cap.attn, cap.grads)[0, 1:],
                               rtol=1e-4, atol=1e-7)  # fmt: skip


def test_patch_maps_read_the_query_row(vit, x):
    cap = capture(vit, x)
    rows, cols = cap.grid
    maps = patch_maps(cap, 1, 2)
    np.testing.assert_array_equal(maps[3, 0].ravel(), cap.attn[3, 0, 1 + 1 * cols + 2, 1:])
    with pytest.raises(ValueError, match="outside"):
        patch_maps(cap, rows, 0)


# --- statistics ---------------------------------------------------------------------------------------------------


def test_entropy_of_uniform_and_one_hot():
    np.testing.assert_allclose(entropy(uniform(2, 3, 10)), np.log(10), atol=1e-6)
    one_hot = np.broadcast_to(np.eye(4, dtype=np.float32), (1, 1, 4, 4))
    np.testing.assert_allclose(entropy(one_hot), 0.0, atol=1e-9)


def test_mean_distance_known_values():
    """2×2 grid of 16-px patches, no prefix. Attending to oneself: 0 px. Attending to the right/left neighbour: 16.
    Uniform over the 4 patches: (0 + 16 + 16 + 16√2) / 4 for every query."""
    grid, px = (2, 2), (16, 16)
    self_attn = np.eye(4)[None, None]
    assert mean_distance(self_attn, 0, grid, px)[0, 0] == 0.0
    neighbour = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=float)[None, None]
    assert mean_distance(neighbour, 0, grid, px)[0, 0] == pytest.approx(16.0)
    uni = np.full((1, 1, 4, 4), 0.25)
    assert mean_distance(uni, 0, grid, px)[0, 0] == pytest.approx((32 + 16 * np.sqrt(2)) / 4)
    with_cls = np.zeros((1, 1, 5, 5)); with_cls[0, 0, 1:, 0] = 0.5; with_cls[0, 0, 1:, 1:] = 0.5 * np.eye(4)
    with_cls[0, 0, 0, 0] = 1.0
    assert mean_distance(with_cls, 1, grid, px)[0, 0] == 0.0  # renormalised over patches: attention to CLS ignored
    assert prefix_share(with_cls, 1)[0, 0] == pytest.approx(0.5)  # what the distance left out is reported beside it
    assert prefix_share(with_cls, 0)[0, 0] == 0.0 and prefix_share(uni, 0)[0, 0] == 0.0


def test_head_stats_of_a_capture(vit, x):
    cap = capture(vit, x)
    stats = head_stats(cap)
    assert stats.entropy.shape == stats.distance_px.shape == (len(vit._module.blocks), vit._module.blocks[0].attn.num_heads)
    assert (stats.entropy >= 0).all() and (stats.entropy <= stats.max_entropy + 1e-6).all()
    assert (stats.distance_px >= 0).all() and len(stats.rows()) == stats.entropy.size
    np.testing.assert_allclose(stats.prefix_share, cap.attn[:, :, 1:, 0].mean(-1), rtol=1e-5)  # one class token
    assert stats.rows()[0]["prefix_share"] == pytest.approx(stats.prefix_share[0, 0], abs=1e-4)
    uniform_attn = np.full_like(cap.attn[:1, :1], 1.0 / cap.tokens)  # evenly over every token, prefix included
    spread = mean_distance(uniform_attn, cap.prefix_tokens, cap.grid, cap.patch_px)[0, 0]
    assert stats.uniform_distance_px == pytest.approx(spread, rel=1e-5)  # the scale the charts draw
