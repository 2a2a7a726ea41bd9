"""CAV and TCAV: known directions, random controls, determinism, persistence, bad input, caching."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch

import interp
from interp.concepts import (
    CAV,
    ConceptLibrary,
    LibraryError,
    activations,
    activations_by_layer,
    canonical,
    class_gradients,
    class_gradients_by_layer,
    default_layers,
    generated,
    run_tcav,
    seconds_left,
    tcav,
)
from interp.errors import BadSettingError
from interp.images import image_from_array
from tests.conftest import layer_and_gradient

D = 64
RNG = np.random.default_rng(0)
DIRECTION = np.zeros(D, np.float32)
DIRECTION[3] = 1.0


def gaussian(n: int, seed: int, shift: float = 0.0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, D)).astype(np.float32)
    return x + shift * DIRECTION


def class_grads(n: int = 40) -> np.ndarray:
    """The class logit grows along DIRECTION for every image (plus noise in other directions)."""
    g = np.random.default_rng(99).normal(scale=0.3, size=(n, D)).astype(np.float32)
    g[:, 3] = np.abs(g[:, 3]) + 0.5
    return g


@pytest.mark.parametrize("classifier", ["sgd", "logistic", "svm"])
def test_cav_finds_a_known_direction(classifier):
    cav = CAV(classifier).fit(gaussian(60, 1, shift=6.0), gaussian(60, 2))  # Bayes accuracy Φ(3) = 99.9%
    assert cav.accuracy_ >= 0.95
    assert float(cav.cav_ @ DIRECTION) > 0.8 and np.isclose(np.linalg.norm(cav.cav_), 1.0, atol=1e-5)


def test_a_cav_learns_from_activations_held_as_torch_tensors_as_from_their_numpy_copies():
    """Activations a programmer took with their own hooks are tensors (with a gradient, on the GPU): ``fit`` raised
    torch's "Can't call numpy() on Tensor that requires grad"; it learns the direction the NumPy copies give."""
    concept, random = gaussian(60, 1, shift=6.0), gaussian(60, 2)
    held = CAV().fit(torch.from_numpy(concept).requires_grad_(), torch.from_numpy(random))
    np.testing.assert_array_equal(held.cav_, CAV().fit(concept, random).cav_)
    from interp.concepts import tcav_score

    grads = class_grads()  # and so does the score of class gradients taken in torch
    assert tcav_score(torch.from_numpy(grads).requires_grad_(), torch.from_numpy(held.cav_)) == \
        tcav_score(grads, held.cav_)


def test_tcav_significant_for_a_real_concept_and_not_for_a_random_one():
    randoms = [gaussian(40, 100 + k) for k in range(11)]
    real = tcav(gaussian(40, 1, shift=6.0), randoms, class_grads(), concept_name="real", runs=10)
    assert real.mean > 0.95 and real.significant and float(real.accuracies.mean()) >= 0.9  # 16 held out per run
    fake = tcav(gaussian(40, 7), randoms, class_grads(), concept_name="fake", runs=10)
    assert not fake.significant and "not significant" in fake.verdict
    assert real.sensitivities.shape == (40,) and (real.sensitivities > 0).mean() > 0.9


def test_bonferroni_counts_the_tests():
    randoms = [gaussian(40, 100 + k) for k in range(11)]
    one = tcav(gaussian(40, 1, shift=0.6), randoms, class_grads(), runs=10, tests=1)
    many = tcav(gaussian(40, 1, shift=0.6), randoms, class_grads(), runs=10, tests=10_000)
    assert one.p_value == many.p_value and not many.significant


def test_same_inputs_same_numbers_in_any_order():
    concept, randoms = gaussian(30, 1, shift=1.0), [gaussian(30, 100 + k) for k in range(4)]
    digests = [f"{i:04d}" for i in range(30)]
    a = tcav(canonical(concept, digests), randoms, class_grads(), runs=6, seed=3)
    b = tcav(canonical(concept, digests), randoms, class_grads(), runs=6, seed=3)
    order = np.random.default_rng(5).permutation(30)
    c = tcav(canonical(concept[order], [digests[i] for i in order]), randoms, class_grads(), runs=6, seed=3)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.scores, c.scores)
    assert a.p_value == c.p_value


def test_bad_inputs_say_what_to_do():
    randoms = [gaussian(10, 100 + k) for k in range(3)]
    with pytest.raises(ValueError, match="at least two random sets"):
        tcav(gaussian(10, 1), randoms[:1], class_grads())
    with pytest.raises(ValueError, match="same images as a random set"):
        tcav(randoms[0].copy(), randoms, class_grads())
    with pytest.raises(ValueError, match="at least 2 examples"):
        CAV().fit(gaussian(1, 1), gaussian(5, 2))
    with pytest.raises(ValueError, match="not fitted"):
        CAV().save("x.npz")


def test_arrays_and_settings_a_cav_cannot_learn_from_are_one_sentence(tmp_path):
    """Each was scikit-learn's, NumPy's or the file system's error: NaN activations, an alpha given as text, a
    held-out share of 2 (taken without a word), gradients of another width than the CAV, a CAV file not there."""
    from interp.concepts import tcav_score

    concept, random = gaussian(10, 1, shift=1.0), gaussian(10, 2)
    for make, said in ((lambda: CAV().fit(np.full_like(concept, np.nan), random), "hold NaN or infinite values"),
                       (lambda: CAV(alpha="x").fit(concept, random), "alpha is the regularisation strength, a "
                                                                      "number above 0; got 'x'"),
                       (lambda: CAV(test_fraction=2).fit(concept, random), "test_fraction is the share held out, "
                                                                           "from 0 to below 1; got 2"),
                       (lambda: tcav_score(class_grads(), np.ones(3)), f"got (40, {D}) and (3,)"),
                       (lambda: tcav(concept, [random, random + 1], class_grads()[:, :3]),
                        f"(N, D) arrays of one layer (one D); got (10, {D}), (10, {D}), (10, {D}), (40, 3)"),
                       (lambda: CAV.load(tmp_path / "none.npz"), "none.npz is missing: a saved CAV is none.npz "
                                                                 "with none.json beside it")):  # fmt: skip
        with pytest.raises(BadSettingError, match=re.escape(said)):
            make()
    cav = CAV().fit(concept, random)
    cav.save(tmp_path / "c.npz")
    (tmp_path / "c.json").write_text("{}")
    with pytest.raises(BadSettingError, match="c.npz is not a CAV that CAV.save wrote"):
        CAV.load(tmp_path / "c.npz")


def test_cav_and_library_round_trip(tmp_path):
    cav = CAV("logistic", random_state=4).fit(gaussian(30, 1, shift=3.0), gaussian(30, 2))
    cav.save(tmp_path / "c.npz", {"layer": "layer4"})
    back = CAV.load(tmp_path / "c.npz")
    np.testing.assert_array_equal(back.cav_, cav.cav_)
    assert back.accuracy_ == cav.accuracy_ and back.get_params() == cav.get_params()

    lib = ConceptLibrary(tmp_path / "lib")
    images = generated.texture_set("stripes", 5)
    saved = lib.save_set("Stripes!", images + images[:2], "zebra-like")  # duplicates stored once
    assert len(saved.files) == 5
    again = ConceptLibrary(tmp_path / "lib")  # as after a restart
    assert [s.name for s in again.sets()] == ["Stripes!"] and len(again.get("Stripes!").images()) == 5
    with pytest.raises(LibraryError, match="exists already"):
        again.save_set("stripes", images)
    cav.save(again.cav_path("Stripes!", "m@1", "layer4"))
    assert len(again.cavs("Stripes!")) == 1
    again.delete("Stripes!")
    assert again.sets() == [] and again.cavs("Stripes!") == []
    with pytest.raises(LibraryError, match="no concept set"):
        again.get("Stripes!")


def test_a_saved_set_is_listed_as_files_without_decoding_and_gives_the_activations_of_its_pictures(tmp_path,
                                                                                                   monkeypatch):
    """A set keeps each stored file's digest and size, so listing it decodes nothing and the server holds no
    pictures; each file is decoded for its pass, to the pixels whose digest was kept; a set saved before digests were
    kept lists the same; a stored file changed since is refused in a sentence."""
    import json

    import interp.images as images_module
    from interp.concepts import activations
    from interp.images import BadImageError, ImageOnDisk, load_image

    photos = generated.random_images(3, seed=2, size=600)  # larger than the stored side: thumbnailed when saved
    lib = ConceptLibrary(tmp_path / "lib")
    saved = lib.save_set("photos", photos + generated.texture_set("dots", 3))
    decoded = []
    real_load = images_module.load_image
    monkeypatch.setattr(images_module, "load_image", lambda *a, **k: decoded.append(a) or real_load(*a, **k))
    listed = ConceptLibrary(tmp_path / "lib").get("photos").images()
    assert decoded == [] and all(isinstance(im, ImageOnDisk) for im in listed)
    pictures = [load_image(saved.folder / f, name=f) for f in saved.files]
    assert [im.digest for im in listed] == [p.digest for p in pictures]
    assert [im.size for im in listed] == [p.size for p in pictures] and max(listed[0].size) == 448
    model = interp.load_model("shapes_cnn")
    np.testing.assert_array_equal(activations(model, "layer3", listed), activations(model, "layer3", pictures))

    meta_path = saved.folder / "set.json"
    meta = json.loads(meta_path.read_text())
    del meta["digests"], meta["sizes"]  # as a set saved before they were kept
    meta_path.write_text(json.dumps(meta))
    older = ConceptLibrary(tmp_path / "lib").get("photos").images()
    assert [im.digest for im in older] == [p.digest for p in pictures]

    pictures[1].image.transpose(0).save(saved.folder / saved.files[1])
    with pytest.raises(BadImageError, match=f"^{saved.files[1]} changed on disk since it was listed"):
        listed[1].image


def test_a_visitors_own_sets_are_theirs_alone_and_shared_sets_are_deleted_only_by_who_shared_them(tmp_path):
    import os
    import time

    from interp.concepts import VisitorLibrary
    from interp.concepts.library import prune_visitors, touch

    shared = ConceptLibrary(tmp_path / "shared")
    alice = VisitorLibrary(ConceptLibrary(tmp_path / "visitors" / "a"), shared)
    bob = VisitorLibrary(ConceptLibrary(tmp_path / "visitors" / "b"), shared)
    stripes, dots = generated.texture_set("stripes", 4), generated.texture_set("dots", 4)
    alice.save_set("my photos", stripes)
    assert [s.name for s in alice.sets()] == ["my photos"] and alice.is_own("my photos")
    assert bob.sets() == []  # what one visitor uploads, another never sees
    with pytest.raises(LibraryError, match="no concept set named 'my photos'"):
        bob.get("my photos")

    class_set = alice.save_set("for the class", dots, share=True)
    alice = VisitorLibrary(alice.own, shared, frozenset({class_set.name}))  # the session remembers what it shared
    assert [s.name for s in bob.sets()] == ["for the class"] and not bob.deletable("for the class")
    with pytest.raises(LibraryError, match="not yours to delete"):
        bob.delete("for the class")
    for taken in ("For the Class", "my photos"):  # a name either library holds, whatever its case, is refused
        with pytest.raises(LibraryError, match="exists already"):
            alice.save_set(taken, dots)
    bob.save_set("my photos", dots)  # another visitor's own name is free: nobody else sees it
    assert len(bob.get("my photos").images()) == 4 and len(alice.get("my photos").files) == 4

    assert alice.deletable("for the class")
    alice.delete("for the class")
    assert [s.name for s in bob.sets()] == ["my photos"]

    moved = alice.share("my photos")  # one's own set, shared later: gone from their own, the same images for all
    assert not alice.is_own("my photos") and alice.get("my photos").folder == moved.folder
    assert [im.digest for im in moved.images()] == [im.digest for im in stripes]
    with pytest.raises(LibraryError, match="shared set named 'my photos' exists already"):
        bob.share("my photos")
    shared.delete("my photos")

    # a shared set that later takes the name of a visitor's own set stays behind it for that visitor
    VisitorLibrary(ConceptLibrary(tmp_path / "visitors" / "c"), shared).save_set("my photos", dots, share=True)
    assert [s.folder for s in bob.sets()] == [bob.own.get("my photos").folder] == [bob.get("my photos").folder]
    touch(tmp_path / "visitors" / "c")

    # visitors' folders not used for a day go; the one in use and recent ones stay
    old = time.time() - 2 * 86_400
    os.utime(tmp_path / "visitors" / "b", (old, old))
    os.utime(tmp_path / "visitors" / "a", (old, old))
    deleted = prune_visitors(tmp_path / "visitors", keep=tmp_path / "visitors" / "a", max_age_s=86_400)
    assert deleted == [tmp_path / "visitors" / "b"]
    assert sorted(p.name for p in (tmp_path / "visitors").iterdir()) == ["a", "c"]
    assert prune_visitors(tmp_path / "nowhere", keep=tmp_path, max_age_s=0) == []


def test_activations_match_a_hook_and_are_cached(tmp_path):
    model = interp.load_model("shapes_cnn")
    images = generated.shapes_concept("marker", 6)
    cache = interp.ResultCache(tmp_path / "cache")
    later = []  # the forward pass ends at the layer: nothing after it runs
    handle = model._module.layer4.register_forward_pre_hook(lambda m, i: later.append(1))
    try:
        acts = activations(model, "layer3", images, cache=cache, batch_size=4)
    finally:
        handle.remove()
    assert later == []
    with torch.inference_mode():
        x = torch.stack([model.preprocess(im.image) for im in images])
        expected = model._module.layer3(model._module.layer2(model._module.layer1(model._module.maxpool(
            model._module.act1(model._module.bn1(model._module.conv1(x)))))))  # fmt: skip
    np.testing.assert_allclose(acts, expected.reshape(6, -1).numpy(), rtol=1e-4, atol=1e-5)
    calls = []
    handle = model._module.register_forward_pre_hook(lambda m, i: calls.append(len(i[0])))
    try:
        again = activations(model, "layer3", images, cache=cache)
    finally:
        handle.remove()
    assert calls == [] and np.array_equal(again, acts)


def test_class_gradients_match_autograd_through_the_head():
    model = interp.load_model("shapes_cnn")
    images = generated.shapes_backgrounds(3)
    grads = class_gradients(model, "layer4", images, target=3)
    x = torch.stack([model.preprocess(im.image) for im in images])
    net = model._module
    with torch.enable_grad():
        feats = net.forward_features(x).detach().requires_grad_(True)
        (g,) = torch.autograd.grad(net.forward_head(feats)[:, 3].sum(), feats)
    np.testing.assert_allclose(grads, g.reshape(3, -1).numpy(), rtol=1e-4, atol=1e-6)


def test_a_layer_read_beside_a_deeper_one_is_read_as_it_left_the_layer():
    """A ReLU(inplace=True) follows a ResNet block's bn1: read together with layer4, bn1 came out rectified (its
    negative half zeroed) where read alone it did not; `x += shortcut` follows bn2, and its gradient must be bn2's."""
    model = interp.load_model("shapes_cnn")
    images = generated.shapes_concept("marker", 3)
    x = torch.stack([model.preprocess(im.image) for im in images])
    bn1, _ = layer_and_gradient(model, x, "layer3.0.bn1", 2)
    _, bn2_grad = layer_and_gradient(model, x, "layer3.0.bn2", 2)
    both = activations_by_layer(model, ["layer3.0.bn1", "layer4"], images)
    np.testing.assert_allclose(both["layer3.0.bn1"], bn1.reshape(3, -1).numpy(), rtol=1e-5, atol=1e-6)
    assert (both["layer3.0.bn1"] < 0).mean() > 0.1
    grads = class_gradients_by_layer(model, ["layer3.0.bn2", "layer4"], images, 2)
    np.testing.assert_allclose(grads["layer3.0.bn2"], bn2_grad.reshape(3, -1).numpy(), rtol=1e-4, atol=1e-7)
    assert np.abs(grads["layer3.0.bn2"]).max() > 0


def _batches_run(model):
    """A list that fills with the size of every batch the whole model is called on, and the hook's handle."""
    batches: list[int] = []
    return batches, model._module.register_forward_pre_hook(lambda m, i: batches.append(len(i[0])))


def test_two_layers_come_from_one_pass_that_ends_at_the_deeper(tmp_path):
    model = interp.load_model("shapes_cnn")
    images = generated.shapes_concept("marker", 6)
    alone = {layer: activations(model, layer, images, batch_size=4) for layer in ("layer2", "layer3")}
    cache = interp.ResultCache(tmp_path / "cache")
    batches, handle = _batches_run(model)
    later = []
    after = model._module.layer4.register_forward_pre_hook(lambda m, i: later.append(1))
    try:
        both = activations_by_layer(model, ["layer3", "layer2"], images, cache=cache, batch_size=4)
    finally:
        handle.remove(), after.remove()
    assert batches == [4, 2] and later == []  # one pass per batch, not one per layer; nothing after layer3 ran
    assert list(both) == ["layer3", "layer2"]
    for layer, acts in alone.items():
        np.testing.assert_allclose(both[layer], acts, rtol=1e-5, atol=1e-6)
    batches, handle = _batches_run(model)
    try:  # each (image, layer) was cached on its own
        again = activations(model, "layer2", images, cache=cache)
    finally:
        handle.remove()
    assert batches == [] and np.array_equal(again, both["layer2"])


def test_a_layer_cached_for_some_images_runs_only_the_rest(tmp_path):
    model = interp.load_model("shapes_cnn")
    images = generated.shapes_concept("marker", 6)
    cache = interp.ResultCache(tmp_path / "cache")
    activations(model, "layer3", images[:4], cache=cache)
    batches, handle = _batches_run(model)
    try:
        both = activations_by_layer(model, ["layer2", "layer3"], images, cache=cache)
        again = activations_by_layer(model, ["layer2", "layer3"], images, cache=cache)
    finally:
        handle.remove()
    assert batches == [6]  # layer2 is new for all six; the second call runs nothing
    for layer in ("layer2", "layer3"):
        np.testing.assert_allclose(both[layer], activations(model, layer, images), rtol=1e-5, atol=1e-6)
        assert np.array_equal(again[layer], both[layer])


def test_a_batchs_rows_are_let_go_once_copied_into_the_result():
    """Rows went into a list, each a view of its batch's output, and were stacked at the end: every batch's output
    lived until then, beside the stacked copy (on Lite0's ``bn2``, 250 KB an image). Each batch's output is now
    copied into one array per layer and let go: at most the last batch's is held while the next one is computed."""
    import gc
    import weakref

    from interp.concepts.activations import _rows_by_layer

    model = interp.load_model("shapes_cnn")
    images = generated.shapes_concept("marker", 16)
    outputs: list[list[weakref.ref]] = []

    def compute(x, wanted):
        gc.collect()
        alive = [ref for batch in outputs[:-1] for ref in batch if ref() is not None]
        assert not alive, f"{len(alive)} outputs of batches before the last are still held"
        # numpy-backed, so that a weak reference follows the memory itself, whichever views of it are kept
        arrays = [np.arange(len(x) * 5, dtype=np.float32).reshape(len(x), 5) + len(outputs) * 100 for _ in wanted]
        outputs.append([weakref.ref(a) for a in arrays])
        return [torch.from_numpy(a) for a in arrays]

    got = _rows_by_layer(model, ["a", "b"], images, "test", "t", {}, compute, None, 4, None)
    assert len(outputs) == 4 and set(got) == {"a", "b"}
    for layer in ("a", "b"):
        assert got[layer].shape == (16, 5) and got[layer].dtype == np.float32
        expected = np.concatenate([np.arange(20, dtype=np.float32).reshape(4, 5) + 100 * k for k in range(4)])
        assert np.array_equal(got[layer], expected)


def test_a_batchs_rows_are_filed_after_the_next_pass_is_launched_and_kept_when_a_later_batch_fails(tmp_path):
    """From a GPU a batch's rows come over while the next batch's pass runs: filing them (into the result and the
    cache) waits until that pass is launched. A batch that fails must not lose the rows computed before it: the
    first two batches' rows are in the cache, and a second run computes only the rest."""
    from interp.concepts.activations import _rows_by_layer

    model = interp.load_model("shapes_cnn")
    images = generated.shapes_concept("marker", 12)
    cache = interp.ResultCache(tmp_path / "cache")
    events: list[str] = []

    def compute(x, wanted):
        events.append(f"pass {len(x)}")
        if events.count("pass 4") == 3:
            raise RuntimeError("the third batch fails")
        return [x.mean(dim=(2, 3))]

    def progress(done, total):
        events.append(f"filed {done}")

    with pytest.raises(RuntimeError, match="third batch"):
        _rows_by_layer(model, ["a"], images, "test", "t", {}, compute, cache, 4, progress)
    assert events == ["filed 0", "pass 4", "pass 4", "filed 4", "pass 4", "filed 8"]
    ran: list[int] = []

    def counted(x, wanted):
        ran.append(len(x))
        return [x.mean(dim=(2, 3))]

    got = _rows_by_layer(model, ["a"], images, "test", "t", {}, counted, cache, 4, None)["a"]
    assert ran == [4]  # the 8 rows filed before the failure came from the cache
    expected = torch.stack([model.preprocess(im.image) for im in images]).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    cache.close()


def test_batches_prepared_ahead_as_on_a_gpu_equal_those_prepared_in_turn():
    """The GPU's route for extraction (whole pictures sent over once per picture size, resized and normalised by a
    thread of its own ahead of the pass) run here on the CPU: same batches, in order, as the CPU's route, within
    the GPU resize's 2 grey levels; pictures of several sizes (a grey one among them), and a last batch shorter
    than the rest."""
    from interp.concepts.activations import _moved, _prefetched, _whole_pixels

    model = interp.load_model("efficientnet_lite0")
    assert model.transform.pixels_on_device_ok  # the route that resizes where the model runs
    photo = interp.load_sample("coffee").image
    pictures = [photo, photo.convert("L"), photo.resize((97, 300)), photo.resize((300, 240)), photo.rotate(90)]
    images = [image_from_array(np.asarray(p), f"p{k}") for k, p in enumerate(pictures * 2)]  # RGB, as every one is
    chunks = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    in_turn = list(_prefetched(model, images, chunks, ahead=False))
    ahead = list(_prefetched(model, images, chunks, ahead=True))
    assert [len(b) for b in ahead] == [4, 4, 2]
    level = float(model.transform.scale.max())  # one grey level, normalised
    for a, b in zip(ahead, in_turn, strict=True):
        assert a.shape == b.shape and a.dtype == torch.float32
        assert float((a - b).abs().max()) <= 2 * level + 1e-6
    whole = [_whole_pixels(images[i].image) for i in range(5)]
    moved = _moved(whole, torch.device("cpu"))
    assert all(np.array_equal(m.permute(1, 2, 0).numpy(), w) for m, w in zip(moved, whole, strict=True))


@pytest.mark.parametrize("workers", [0, 1])
def test_a_folders_files_streamed_through_the_scans_reader_give_the_rows_of_the_decoded_images(tmp_path, workers):
    """cav-features' path: each file read, decoded and resized by a scan's reader (threads, or a loader process),
    a batch at a time. Its rows equal activations_by_layer's of the same pictures decoded whole (the same pixels: a
    plain JPEG decoded without Pillow is Pillow's), in the folder's order; an unreadable file is named, with why,
    and has no row (the rows after it move up)."""
    from interp.concepts.from_files import file_activations
    from interp.datasets.base import Dataset, Item
    from interp.images import load_image

    model = interp.load_model("shapes_cnn")
    photo = interp.load_sample("coffee").image
    pictures = {"a.jpg": photo, "b.png": photo.convert("L").resize((90, 140)), "d.jpg": photo.resize((150, 100)),
                "e.png": photo.resize((64, 64)), "f.jpg": photo.rotate(90, expand=True)}  # fmt: skip
    for name, picture in pictures.items():
        picture.save(tmp_path / name)
    (tmp_path / "c.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    names = sorted([*pictures, "c.jpg"])
    dataset = Dataset("t", "folder", tmp_path, tuple(Item(n, n) for n in names), (), "none")
    seen: list[tuple[int, int]] = []
    got = file_activations(model, ["layer2", "layer4"], dataset, batch_size=2, workers=workers, decode="cpu",
                           progress=lambda done, n: seen.append((done, n)))  # fmt: skip
    assert got.names == sorted(pictures) and got.decoded_on_device == 0
    assert [path for path, _ in got.failed] == ["c.jpg"] and got.failed[0][1]
    assert list(got.rows) == ["layer2", "layer4"] and seen[0] == (0, 6) and seen[-1] == (6, 6)
    decoded = [load_image(tmp_path / n, name=n) for n in got.names]
    want = activations_by_layer(model, ["layer2", "layer4"], decoded, batch_size=3)
    for layer in ("layer2", "layer4"):
        assert got.rows[layer].shape == want[layer].shape
        np.testing.assert_allclose(got.rows[layer], want[layer], rtol=1e-5, atol=1e-5)


def test_rows_of_files_that_failed_are_moved_up_in_place():
    from interp.concepts.from_files import _compacted

    a = np.arange(24, dtype=np.float32).reshape(8, 3)
    keep = np.array([0, 2, 3, 7])
    np.testing.assert_array_equal(_compacted(a.copy(), keep), a[keep])
    np.testing.assert_array_equal(_compacted(a.copy(), np.arange(8)), a)
    few = _compacted(a.copy(), np.array([5]))
    np.testing.assert_array_equal(few, a[[5]])
    assert few.base is None  # fewer than half kept: the rest of the array is let go


def test_a_layer_the_forward_pass_never_reaches_says_so():
    model = interp.load_model("shapes_cnn")
    model._module.add_module("unused", torch.nn.Identity())
    try:
        with pytest.raises(ValueError, match="unused of shapes_cnn is not run by its forward pass"):
            activations_by_layer(model, ["layer2", "unused"], generated.shapes_concept("marker", 2))
        with pytest.raises(ValueError, match="is not run by its forward pass"):
            class_gradients_by_layer(model, ["layer2", "unused"], generated.shapes_concept("marker", 2), 0)
    finally:
        del model._module.unused
    assert not model._module._forward_hooks and not model._module.layer2._forward_hooks


def test_class_gradients_at_two_layers_from_one_backward():
    model = interp.load_model("shapes_cnn")
    images = generated.shapes_backgrounds(5)
    alone = {layer: class_gradients(model, layer, images, target=3) for layer in ("layer3", "layer4")}
    batches, handle = _batches_run(model)
    try:
        both = class_gradients_by_layer(model, ["layer3", "layer4"], images, target=3, batch_size=4)
    finally:
        handle.remove()
    assert batches == [4, 1]
    for layer, grads in alone.items():
        np.testing.assert_allclose(both[layer], grads, rtol=1e-4, atol=1e-7)


def test_tcav_at_two_layers_runs_each_image_once(tmp_path):
    model = interp.load_model("shapes_cnn")
    concept = {"marker": generated.shapes_concept("marker", 8)}
    randoms = [generated.shapes_backgrounds(8, seed=s) for s in range(3)]
    klass = [image_from_array(s.image, f"s{s.index}") for s in interp.shapes.generate(6, seed=2, split="clean")]
    batches, handle = _batches_run(model)
    try:
        report = run_tcav(model, ["layer3", "layer4"], concept, randoms, klass, 3, runs=3)
    finally:
        handle.remove()
    assert sum(batches) == 8 + 3 * 8 + len(klass)
    assert [(r.concept, r.layer) for r in report.results] == [("marker", "layer3"), ("marker", "layer4")]
    alone = run_tcav(model, ["layer4"], concept, randoms, klass, 3, runs=3)
    np.testing.assert_allclose(report.results[1].scores, alone.results[0].scores)


def test_run_tcav_errors_and_layer_check():
    model = interp.load_model("shapes_cnn")
    few = generated.shapes_concept("red", 3)
    randoms = [generated.shapes_backgrounds(6, seed=s) for s in range(3)]
    with pytest.raises(ValueError, match="at least 4"):
        run_tcav(model, ["layer4"], {"red": few}, randoms, few, 3)
    with pytest.raises(ValueError, match="no layer 'layer9'"):
        run_tcav(model, ["layer9"], {"red": few}, randoms, few, 3)
    with pytest.raises(ValueError, match="same images as a random set"):
        run_tcav(model, ["layer4"], {"bg": randoms[0]}, randoms, randoms[1], 3)


def test_run_tcav_reads_sets_as_a_programmer_holds_them_and_says_so_of_the_rest(tmp_path):
    """Pictures or paths in a set failed on ``.digest``; a list of concept sets (no names) on ``.items``; one
    random set given flat, or no class images, on ``len()``; a concept set given as a folder's path on ``.digest``."""
    model = interp.load_model("shapes_cnn")
    concept = generated.shapes_concept("red", 6)
    randoms = [generated.shapes_backgrounds(6, seed=s) for s in range(3)]
    files = []
    for k, image in enumerate(concept):
        image.image.save(tmp_path / f"{k}.png")
        files.append(tmp_path / f"{k}.png")
    given = run_tcav(model, "layer4", {"red": concept}, randoms, randoms[2], 3, runs=2)
    for held in ([im.image for im in concept], files):
        assert run_tcav(model, "layer4", {"red": held}, randoms, randoms[2], 3, runs=2).rows() == given.rows()
    for args, said in ((([concept], randoms, randoms[2]), "concepts map each concept's name to its images"),
                       (({"red": str(tmp_path)}, randoms, randoms[2]), "the concept set 'red': a list of images is "
                                                                       "taken"),
                       (({"red": concept}, randoms[0], randoms[2]), "random set 1 (the random sets are a list of "
                                                                    "sets, each a list of images)"),
                       (({"red": concept}, None, randoms[2]), "the random sets are a list of lists of images"),
                       (({"red": concept}, randoms, None),
                        "the target class's images: a list of images is taken")):  # fmt: skip
        with pytest.raises(ValueError, match=re.escape(said)):
            run_tcav(model, "layer4", *args, 3, runs=2)
    library = ConceptLibrary(tmp_path / "library")
    assert len(library.save_set("from files", files).files) == len(library.save_set("pictures", concept).files)
    with pytest.raises(ValueError, match="the set 'one': a list of images is taken"):
        library.save_set("one", concept[0])
    with pytest.raises(BadSettingError, match="concepts must be a name or a list of names"):
        generated.write_folders(tmp_path / "sets", 5, n=2, random_sets=2)
    assert "red" in generated.write_folders(tmp_path / "sets", "red", n=2, random_sets=2)  # not 'r', 'e', 'd'


@pytest.mark.parametrize(
    "setting, said",
    [
        ({"runs": 2.5}, "at least 2 runs to test significance (a whole number); got 2.5."),  # was a TypeError
        ({"seed": -1}, "seed must be a whole number of 0 or more (below 2**63), got -1."),  # was NumPy's "expected non-negative integer"
        ({"alpha": 2}, "alpha is between 0 and 1"),  # was taken: every concept called significant
        ({"alpha": 0.0}, "alpha is between 0 and 1"),
        ({"classifier": "forest"}, "classifier 'forest' is not one of sgd, logistic, svm."),
    ],
)
def test_run_tcav_refuses_settings_it_cannot_run_with_before_any_pass(setting, said):
    model = interp.load_model("shapes_cnn")
    concept = {"red": generated.shapes_concept("red", 6)}
    randoms = [generated.shapes_backgrounds(6, seed=s) for s in range(3)]
    passes: list[int] = []
    handle = model._module.register_forward_pre_hook(lambda m, i: passes.append(1))
    try:
        with pytest.raises(BadSettingError, match=re.escape(said)):
            run_tcav(model, ["layer4"], concept, randoms, randoms[2], 3, **setting)
    finally:
        handle.remove()
    assert not passes


def test_a_layer_named_twice_is_tested_once():
    model = interp.load_model("shapes_cnn")
    concept = {"red": generated.shapes_concept("red", 6)}
    randoms = [generated.shapes_backgrounds(6, seed=s) for s in range(3)]
    klass = [image_from_array(s.image, f"s{s.index}") for s in interp.shapes.generate(4, seed=2, split="clean")]
    report = run_tcav(model, ["layer4", "layer4"], concept, randoms, klass, 3, runs=2)
    assert [(r.concept, r.layer) for r in report.results] == [("red", "layer4")]
    assert report.results[0].tests == 1  # the Bonferroni correction counts it once


def test_second_target_reuses_cached_concept_activations(tmp_path):
    """A new target class computes class gradients only: no forward pass over concept or random sets."""
    model = interp.load_model("shapes_cnn")
    cache = interp.ResultCache(tmp_path / "c")
    concept = {"marker": generated.shapes_concept("marker", 8)}
    randoms = [generated.shapes_backgrounds(8, seed=s) for s in range(3)]
    klass = [image_from_array(s.image, f"s{s.index}") for s in interp.shapes.generate(6, seed=2, split="clean")]
    run_tcav(model, ["layer4"], concept, randoms, klass, 3, runs=3, cache=cache)
    batches: list[int] = []
    handle = model._module.register_forward_pre_hook(lambda m, i: batches.append(len(i[0])))
    try:
        run_tcav(model, ["layer4"], concept, randoms, klass, 0, runs=3, cache=cache)
    finally:
        handle.remove()
    assert sum(batches) == len(klass)  # only the class images, for their gradients


def _counting_fits(monkeypatch) -> list[int]:
    fits: list[int] = []
    real = CAV.fit

    def fit(self, concept, random):
        fits.append(1)
        return real(self, concept, random)

    monkeypatch.setattr(CAV, "fit", fit)
    return fits


def test_cavs_are_fitted_once_and_reused_for_another_class(tmp_path, monkeypatch):
    """No CAV depends on the class: a second target fits none, and two concepts share the random-vs-random nulls."""
    model = interp.load_model("shapes_cnn")
    cache = interp.ResultCache(tmp_path / "c")
    concepts = {"marker": generated.shapes_concept("marker", 8), "red": generated.shapes_concept("red", 8)}
    randoms = [generated.shapes_backgrounds(8, seed=s) for s in range(4)]
    klass = [image_from_array(s.image, f"s{s.index}") for s in interp.shapes.generate(6, seed=2, split="clean")]
    uncached = run_tcav(model, ["layer4"], concepts, randoms, klass, 0, runs=3)
    fits = _counting_fits(monkeypatch)
    run_tcav(model, ["layer4"], concepts, randoms, klass, 3, runs=3, cache=cache)
    assert len(fits) == 3 * (2 + 1)  # per run: one CAV per concept, one null shared by both (was 3 * 2 * 2)
    fits.clear()
    second = run_tcav(model, ["layer4"], concepts, randoms, klass, 0, runs=3, cache=cache)
    assert fits == []
    for got, want in zip(second.results, uncached.results, strict=True):  # a cached CAV is the one a fit gives
        np.testing.assert_array_equal(got.scores, want.scores)
        np.testing.assert_array_equal(got.random_scores, want.random_scores)
        np.testing.assert_array_equal(got.accuracies, want.accuracies)
        np.testing.assert_array_equal(got.sensitivities, want.sensitivities)
        assert got.p_value == want.p_value


def test_a_unanimous_concept_the_test_cannot_call_asks_for_more_runs():
    nulls = np.array([0.0, 1.0] * 5)  # random-vs-random scores are often all or nothing
    few = tcav_with(scores=np.ones(10), nulls=nulls, tests=4)
    assert not few.significant and few.needs_more_runs
    many = tcav_with(scores=np.ones(20), nulls=np.tile(nulls, 2), tests=4)
    assert many.significant and not many.needs_more_runs  # what the advice promises
    near = tcav_with(scores=np.full(10, 0.6), nulls=nulls, tests=4)
    assert not near.needs_more_runs  # 0.6 against 0.5: no strong effect to decide


def test_class_gradients_that_point_one_way_are_flagged_not_a_concept_that_drives_every_image():
    """Next to the classifier every class image's gradient is (nearly) the class's weight row: any direction, a random
    one too, sends them all the same way, so every run scores 0 or 1. A strong concept over varied gradients can also
    score 1 in every run; random directions still split those images, and only the first case is flagged."""
    randoms = [gaussian(40, 100 + k) for k in range(11)]
    weight_row = np.random.default_rng(5).normal(size=D).astype(np.float32)
    jitter = np.random.default_rng(6).normal(scale=1e-3, size=(30, D)).astype(np.float32)
    linear_head = np.tile(weight_row, (30, 1)) + jitter
    flat = tcav(gaussian(40, 7), randoms, linear_head, concept_name="anything", runs=10)
    assert set(flat.scores) <= {0.0, 1.0} and set(flat.random_scores) <= {0.0, 1.0} and flat.alike_gradients
    assert flat.row()["alike_gradients"] is True
    real = tcav(gaussian(40, 1, shift=6.0), randoms, class_grads(), concept_name="real", runs=10)
    assert set(real.scores) == {1.0}  # every run, every image: the concept drives them all
    assert not set(real.random_scores) <= {0.0, 1.0} and not real.alike_gradients
    one_image = tcav(gaussian(40, 7), randoms, class_grads(1), concept_name="one", runs=10)
    assert not one_image.alike_gradients  # one image always scores 0 or 1: nothing to say about the layer


def tcav_with(scores: np.ndarray, nulls: np.ndarray, tests: int):
    """A ConceptScore with the p-value tcav() computes (Welch's t-test) for these scores."""
    from scipy import stats

    from interp.concepts import ConceptScore

    with warnings.catch_warnings():  # a constant side makes scipy warn about precision, as in tcav()
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_ind(scores, nulls, equal_var=False).pvalue)
    return ConceptScore("c", "l", scores, nulls, np.ones(len(scores)), p, 0.05, tests)


def test_time_left_waits_for_a_pace_then_extrapolates_it():
    assert seconds_left(100.0, 0.5, now=101.0) is None  # under 2 s: no pace yet
    assert seconds_left(100.0, 0.01, now=110.0) is None  # under 5% done
    assert seconds_left(100.0, 0.25, now=110.0) == pytest.approx(30.0)
    assert seconds_left(100.0, 1.0, now=110.0) is None


def test_tcav_progress_rises_to_done_through_the_cav_training():
    model = interp.load_model("shapes_cnn")
    seen: list[tuple[str, float]] = []
    run_tcav(model, ["layer3", "layer4"], {"marker": generated.shapes_concept("marker", 6)},
             [generated.shapes_backgrounds(6, seed=s) for s in range(3)], generated.shapes_concept("red", 4), 3,
             runs=2, progress=lambda what, f: seen.append((what, f)))  # fmt: skip
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and seen[-1][0] == "done"
    training = [f for what, f in seen if what.startswith("training CAVs for marker at layer")]
    assert training and min(training) > 0.5  # extraction is 5 of 9 units; the CAVs 2 per concept and layer


def test_shapes_marker_concept_drives_the_star_class():
    """The shortcut planted in the shapes world: TCAV finds that the corner marker raises 'star' (#7)."""
    model = interp.load_model("shapes_cnn")
    star = model.class_names.index("star")
    stars = [image_from_array(s.image, f"s{s.index}") for s in interp.shapes.generate(150, seed=21, split="clean")
             if s.label == star][:20]  # fmt: skip
    report = run_tcav(model, ["layer4"], {"marker": generated.shapes_concept("marker", 30)},
                      [generated.shapes_backgrounds(30, seed=s) for s in range(21)], stars, star, runs=20)  # fmt: skip
    (result,) = report.results
    assert result.mean > float(result.random_scores.mean()) and result.significant, result.row()
    assert float(result.accuracies.mean()) > 0.95


@pytest.mark.parametrize("name", ["efficientnet_lite0", "shapes_cnn", "shapes_vit"])
def test_default_layers_are_one_halfway_and_one_late(name):
    model = interp.load_model(name)
    names = [n for n, _ in model._module.named_modules()]
    layers = default_layers(model)
    assert len(layers) == 2  # EfficientNet's used to collapse to one: its "halfway" top-level module was bn2
    mid, late = (names.index(n) for n in layers)
    assert 0.2 < mid / len(names) < 0.8 and mid < late


def test_generated_sets_and_set_names_refuse_what_is_not_a_count_or_a_name(tmp_path):
    """1.5 images failed in range(), -1 gave an empty set without a word, a negative seed failed in NumPy's seeding
    and a name of None on ``.strip``."""
    from interp.concepts import ConceptLibrary, LibraryError, generated

    for make in (lambda **k: generated.texture_set("stripes", **k), lambda **k: generated.shapes_concept("red", **k),
                 lambda **k: generated.random_images(**k)):  # fmt: skip
        with pytest.raises(BadSettingError, match="the number of images must be a whole number, got 1.5."):
            make(n=1.5)
        with pytest.raises(BadSettingError, match="the number of images must be at least 0, got -1."):
            make(n=-1)
        with pytest.raises(BadSettingError, match=re.escape("seed must be a whole number of 0 or more (below 2**63), "
                                                            "got -2.")):  # fmt: skip
            make(n=2, seed=-2)
        assert len(make(n=np.int64(2))) == 2
    with pytest.raises(LibraryError, match="needs a name with at least one letter or digit"):
        ConceptLibrary(tmp_path).save_set(None, generated.texture_set("dots", 1))


def test_run_tcav_takes_any_seed_numpy_and_torch_take():
    """Each run's CAV is fitted with ``seed * 1000 + run`` as scikit-learn's random_state, which stops at 2**32: a
    seed of 2**40 failed inside scikit-learn. The same seed gives the same report."""
    model = interp.load_model("shapes_cnn")
    concept = {"red": generated.shapes_concept("red", 6)}
    randoms = [generated.shapes_backgrounds(6, seed=s) for s in range(3)]
    runs = [run_tcav(model, ["layer4"], concept, randoms, randoms[2], 3, runs=2, seed=2**40).rows() for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) == 1


def test_the_random_sets_of_the_largest_seed_are_written_and_drawn_again_the_same(tmp_path):
    """Random set k of seed s is seeded ``s * 1000 + k`` (the page's and ``concept-images``' alike), kept below
    2**63: every seed below 2**63 gives sets, and the folder holds what the page would draw."""
    from PIL import Image

    largest = 2**63 - 1
    assert generated.random_set_seed(2, 1) == 2001 and 0 <= generated.random_set_seed(largest, 1) < 2**63
    folders = generated.write_folders(tmp_path, "stripes", n=2, random_sets=2, seed=largest)
    for k in range(2):
        made = generated.random_images(2, seed=generated.random_set_seed(largest, k))
        written = sorted(folders[f"random/set_{k:02d}"].iterdir())
        assert [np.asarray(Image.open(p)).tolist() for p in written] == [np.asarray(m.image).tolist() for m in made]
    with pytest.raises(BadSettingError, match=re.escape("seed must be a whole number of 0 or more (below 2**63), "
                                                        "got -1.")):  # fmt: skip
        generated.write_folders(tmp_path / "again", "stripes", n=2, random_sets=2, seed=-1)
