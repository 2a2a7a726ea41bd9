"""A shared server: one model, many sessions at once. Every use of a model goes through its gate.

The tests that matter run a plain prediction loop (one visitor's Home page) beside each operation that hooks the
model or flips a flag on it (other visitors' Attention, Concepts and Attribution pages): hooks fire on every
thread's forward pass, so a prediction that slipped past the gate would feed the hooks its tensors or be ended by
them. Each result must equal the one computed alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest
import torch

import interp
from interp.attribution import METHODS, attribute
from interp.models import GateMisuse, ModelGate
from interp.models.hooks import hook_count

# ---------------------------------------------------------------------------------------------------------------
# The gate itself.


def _started(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_plain_passes_share_the_gate_and_an_exclusive_one_waits_for_them():
    gate = ModelGate()
    inside = threading.Barrier(2, timeout=5)
    release = threading.Event()
    exclusive_in = threading.Event()

    def reader() -> None:
        with gate.shared():
            inside.wait()  # both readers are inside at once, or this times out
            release.wait(5)

    def writer() -> None:
        with gate.exclusive():
            exclusive_in.set()

    readers = [_started(reader), _started(reader)]
    time.sleep(0.2)
    w = _started(writer)
    assert not exclusive_in.wait(0.3)  # the readers hold the gate
    release.set()
    assert exclusive_in.wait(5)
    for t in [*readers, w]:
        t.join(5)


def test_an_exclusive_holder_keeps_plain_passes_out_until_it_is_done():
    gate = ModelGate()
    entered, leave, reader_in = threading.Event(), threading.Event(), threading.Event()

    def writer() -> None:
        with gate.exclusive():
            entered.set()
            leave.wait(5)

    def reader() -> None:
        with gate.shared():
            reader_in.set()

    w = _started(writer)
    assert entered.wait(5)
    r = _started(reader)
    assert not reader_in.wait(0.3)
    leave.set()
    assert reader_in.wait(5)
    w.join(5), r.join(5)


def test_first_come_first_served_so_a_stream_of_predictions_cannot_starve_attribution():
    gate = ModelGate()
    order: list[str] = []
    first_in, release = threading.Event(), threading.Event()

    def first_reader() -> None:
        with gate.shared():
            first_in.set()
            release.wait(5)
            order.append("reader 1")

    def writer() -> None:
        with gate.exclusive():
            order.append("writer")

    def late_reader() -> None:
        with gate.shared():
            order.append("reader 2")

    threads = [_started(first_reader)]
    assert first_in.wait(5)
    threads.append(_started(writer))
    time.sleep(0.2)
    threads.append(_started(late_reader))  # came after the writer: waits behind it, though a reader is inside
    time.sleep(0.2)
    release.set()
    for t in threads:
        t.join(5)
    assert order == ["reader 1", "writer", "reader 2"]


def test_the_gate_is_reentrant_and_refuses_an_upgrade_that_could_deadlock():
    gate = ModelGate()
    with gate.exclusive():
        with gate.exclusive(), gate.shared():
            assert gate.held_exclusive()
    assert not gate.held()
    with gate.shared():
        with gate.shared():
            assert gate.held() and not gate.held_exclusive()
        with pytest.raises(GateMisuse, match="take exclusive"):
            with gate.exclusive():
                pass
    assert not gate.held()
    with gate.exclusive():  # nothing was left held by the refused upgrade
        pass


def test_a_new_way_into_the_model_cannot_bypass_the_gate(shapes_cnn):
    with pytest.raises(GateMisuse, match="outside its gate"):
        shapes_cnn.model(torch.zeros(1, 3, 128, 128))
    with shapes_cnn.shared() as net:
        assert net is shapes_cnn.model
    with pytest.raises(GateMisuse):
        shapes_cnn.side("anything", dict)


# ---------------------------------------------------------------------------------------------------------------
# A prediction loop beside every operation that hooks the model.


@pytest.fixture(scope="module")
def shapes_cnn():
    return interp.load_model("shapes_cnn", device="cpu")


@pytest.fixture(scope="module")
def shapes_vit():
    return interp.load_model("shapes_vit", device="cpu")


@pytest.fixture(scope="module")
def world():
    from interp.shapes import generator

    return [interp.image_from_array(generator.render(i, split="test", seed=7).image, f"w{i}.png") for i in range(6)]


def _beside_predictions(model, images, operation: Callable[[], object], runs: int) -> tuple[list, list]:
    """Run ``operation`` ``runs`` times while another thread predicts in a loop; returns (results, predictions)."""
    stop = threading.Event()
    predictions: list = []
    errors: list[BaseException] = []

    def predict_loop() -> None:
        i = 0
        try:
            while not stop.is_set():
                image = images[i % len(images)]
                predictions.append((i % len(images), interp.predict(model, image, top_k=3)))
                i += 1
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    loop = _started(predict_loop)
    try:
        while len(predictions) < 2 and loop.is_alive():  # the loop is running before the operation starts
            time.sleep(0.01)
        results = [operation() for _ in range(runs)]
    finally:
        stop.set()
        loop.join(30)
    assert not errors, f"the prediction loop raised {errors[0]!r}"
    return results, predictions


def _check_predictions(model, images, predictions) -> None:
    alone = [interp.predict(model, im, top_k=3) for im in images]
    assert len(predictions) >= 3
    for i, p in predictions:
        assert [s.index for s in p.scores] == [s.index for s in alone[i].scores]
        np.testing.assert_allclose([s.prob for s in p.scores], [s.prob for s in alone[i].scores], atol=1e-5)


def test_attention_capture_beside_a_prediction_loop(shapes_vit, world):
    from interp.attention import capture

    x = shapes_vit.preprocess(world[0].image)[None]
    alone = capture(shapes_vit, x, target=3)
    hooks = hook_count(shapes_vit._module)
    results, predictions = _beside_predictions(shapes_vit, world, lambda: capture(shapes_vit, x, target=3), runs=8)
    for cap in results:
        np.testing.assert_allclose(cap.attn, alone.attn, atol=1e-6)
        np.testing.assert_allclose(cap.grads, alone.grads, atol=1e-6)
    _check_predictions(shapes_vit, world, predictions)
    assert hook_count(shapes_vit._module) == hooks
    assert all(m.fused_attn == f for m, f in zip(interp.attention.attention_modules(shapes_vit._module),
                                                 [True] * 4))  # fmt: skip


def test_activations_with_the_early_stop_beside_a_prediction_loop(shapes_cnn, world):
    from interp.concepts import activations_by_layer

    layers = ["layer1", "layer2"]  # early layers: the pass ends at layer2 by raising from a hook
    alone = activations_by_layer(shapes_cnn, layers, world, batch_size=3)
    results, predictions = _beside_predictions(
        shapes_cnn, world, lambda: activations_by_layer(shapes_cnn, layers, world, batch_size=3), runs=6
    )
    for got in results:
        for layer in layers:
            np.testing.assert_allclose(got[layer], alone[layer], atol=1e-5)
    _check_predictions(shapes_cnn, world, predictions)
    assert hook_count(shapes_cnn._module) == 0


def test_layer_shapes_beside_a_prediction_loop(shapes_cnn, world):
    """The layer boxes' and `models --layers`' blank pass hooks every module it lists: a prediction beside it is
    untouched, and the shapes are those it gives alone."""
    from interp.features import layer_table

    names = shapes_cnn.layer_names()
    alone = layer_table(shapes_cnn, names)
    results, predictions = _beside_predictions(shapes_cnn, world, lambda: layer_table(shapes_cnn, names), runs=6)
    assert all(got == alone for got in results) and alone[-1].output == (6,)
    _check_predictions(shapes_cnn, world, predictions)
    assert hook_count(shapes_cnn._module) == 0


def test_activations_of_files_beside_a_prediction_loop(shapes_cnn, world, tmp_path):
    """cav-features' path (files read by a scan's reader, the pass ended at its layer by a hook) beside plain
    predictions: the same rows as alone, the predictions untouched, no hook left."""
    from interp.concepts import file_activations
    from interp.datasets.base import Dataset, Item

    for im in world:
        im.image.save(tmp_path / im.name)
    names = sorted(im.name for im in world)
    files = Dataset("w", "folder", tmp_path, tuple(Item(n, n) for n in names), (), "none")

    def extract():
        return file_activations(shapes_cnn, ["layer1", "layer2"], files, batch_size=4, workers=0)

    alone = extract()
    results, predictions = _beside_predictions(shapes_cnn, world, extract, runs=4)
    for got in results:
        assert got.names == names
        for layer in ("layer1", "layer2"):
            np.testing.assert_allclose(got.rows[layer], alone.rows[layer], atol=1e-5)
    _check_predictions(shapes_cnn, world, predictions)
    assert hook_count(shapes_cnn._module) == 0


def test_cam_with_its_kept_pass_beside_a_prediction_loop(shapes_cnn, world):
    from interp.attribution import cam

    def grid() -> list[np.ndarray]:
        shapes_cnn.forget(cam.KEPT_PASS)  # the first cell runs the layer pass, the others reuse it
        return [attribute(shapes_cnn, im.image, m, target=t).raw
                for im in world[:2] for t in (0, 3) for m in ("grad_cam", "grad_cam_pp", "layer_cam")]  # fmt: skip

    alone = grid()
    results, predictions = _beside_predictions(shapes_cnn, world, grid, runs=6)
    for maps in results:
        for got, want in zip(maps, alone, strict=True):
            np.testing.assert_allclose(got, want, atol=1e-5)
    _check_predictions(shapes_cnn, world, predictions)
    assert hook_count(shapes_cnn._module) == 0


@pytest.mark.parametrize("method", ["integrated_gradients", "deeplift", "guided_backprop", "occlusion"])
def test_attribution_beside_a_prediction_loop(shapes_cnn, world, method):
    """IG with its kept logits, and the methods that hook the model (DeepLIFT, Guided Backprop) or flip its
    in-place activations; occlusion runs many plain passes of its own."""
    settings = {"steps": 16} if method == "integrated_gradients" else {}
    with shapes_cnn.shared() as net:
        inplace = [getattr(m, "inplace", None) for m in net.modules()]
    alone = attribute(shapes_cnn, world[1].image, method, target=3, **settings)
    results, predictions = _beside_predictions(
        shapes_cnn, world, lambda: attribute(shapes_cnn, world[1].image, method, target=3, **settings), runs=3
    )
    for r in results:
        np.testing.assert_allclose(r.raw, alone.raw, rtol=1e-4, atol=1e-6)
    _check_predictions(shapes_cnn, world, predictions)
    with shapes_cnn.shared() as net:
        assert hook_count(net) == 0
        assert [getattr(m, "inplace", None) for m in net.modules()] == inplace


def test_a_scan_beside_attention_capture(shapes_vit, tmp_path):
    """A scan's batches are plain passes too: beside captures, its rows equal a scan alone."""
    from interp.attention import capture
    from interp.datasets import load_scan, read_folder, scan
    from interp.shapes.export import write_image_folder

    write_image_folder(tmp_path / "world", 24, seed=3, split="test")
    ds = read_folder(tmp_path / "world")
    scan(shapes_vit, ds, tmp_path / "alone", batch_size=4, workers=0)
    x = shapes_vit.preprocess(interp.load_sample("chelsea").image)[None]
    stop, errors = threading.Event(), []

    def captures() -> None:
        try:
            while not stop.is_set():
                capture(shapes_vit, x, target=1)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    t = _started(captures)
    try:
        scan(shapes_vit, ds, tmp_path / "beside", batch_size=4, workers=0)
    finally:
        stop.set()
        t.join(30)
    assert not errors
    _, alone = load_scan(tmp_path / "alone")
    _, beside = load_scan(tmp_path / "beside")
    alone, beside = alone.sort_values("id").reset_index(drop=True), beside.sort_values("id").reset_index(drop=True)
    assert list(alone["pred"]) == list(beside["pred"])
    np.testing.assert_allclose(np.stack(alone["top5_prob"]), np.stack(beside["top5_prob"]), atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# Randomness comes from generators seeded per request, never from torch's global state.


@pytest.mark.parametrize("method", sorted(METHODS))
def test_no_method_touches_torchs_global_random_state(shapes_cnn, world, method):
    settings = {"samples": 8} if method in ("lime", "kernel_shap", "smoothgrad", "vargrad", "gradient_shap") else {}
    if method == "integrated_gradients":
        settings = {"steps": 8}
    if method == "rise":
        settings = {"masks": 100}
    image = world[2].image
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = attribute(shapes_cnn, image, method, target=3, **settings)
    assert torch.equal(torch.get_rng_state(), before), f"{method} drew from or reseeded torch's global generator"
    torch.manual_seed(999)  # another session's draws in between change nothing
    torch.rand(10)
    again = attribute(shapes_cnn, image, method, target=3, **settings)
    np.testing.assert_array_equal(first.raw, again.raw)


def test_looking_at_a_models_structure_does_not_wait_behind_another_visitors_attribution(shapes_cnn, shapes_vit):
    """Pages read layer names, which methods apply and a ViT's grid on every rerun; another session holding the
    model alone for a long attribution must not stall them."""
    from interp.attention.capture import check_vit
    from interp.attribution import METHODS, get_method
    from interp.concepts import default_layers

    holding, release = threading.Event(), threading.Event()

    def hold(model) -> None:
        with model.exclusive():
            holding.set()
            release.wait(10)

    for model in (shapes_cnn, shapes_vit):
        holding.clear(), release.clear()
        t = _started(lambda: hold(model))
        assert holding.wait(5)
        start = time.perf_counter()
        try:
            for name in METHODS:
                get_method(name).applies_to(model)
                get_method(name).resolved_params(model)
            default_layers(model)
            if model is shapes_vit:
                check_vit(model)
            took = time.perf_counter() - start
        finally:
            release.set()
            t.join(5)
        assert took < 2, f"reading {model.name}'s structure waited {took:.1f} s behind an exclusive holder"


def test_an_untrained_copy_is_the_same_network_while_other_sessions_load_models():
    """timm draws initial weights from torch's global generator; a seeded untrained build interleaved with another
    session's build drew from the same stream (measured before the lock: 4 different "untrained copies" in 6)."""
    from interp.models import load_model

    stop = threading.Event()

    def keep_loading() -> None:
        while not stop.is_set():
            load_model("test_vit", "random")  # any build draws from the generator, a seeded one included
            load_model("efficientnet_lite0", device="cpu")

    t = _started(keep_loading)
    try:
        prints = {load_model("test_resnet", "random").weights.fingerprint for _ in range(6)}
    finally:
        stop.set()
        t.join(60)
    assert len(prints) == 1


@pytest.mark.parametrize("method", ["ablation_cam", "rise"])
def test_the_new_explainers_beside_a_prediction_loop(shapes_cnn, world, method):
    """Ablation-CAM replaces a layer's output from a hook; RISE runs many plain passes of its own."""
    settings = {"masks": 100} if method == "rise" else {}
    alone = attribute(shapes_cnn, world[1].image, method, target=3, **settings)
    results, predictions = _beside_predictions(
        shapes_cnn, world, lambda: attribute(shapes_cnn, world[1].image, method, target=3, **settings), runs=3
    )
    for r in results:
        np.testing.assert_allclose(r.raw, alone.raw, rtol=1e-4, atol=1e-6)
    _check_predictions(shapes_cnn, world, predictions)
    with shapes_cnn.shared() as net:
        assert hook_count(net) == 0


def test_trust_scores_beside_a_prediction_loop(shapes_cnn, world):
    """Deletion/insertion run plain passes through the gate; the randomisation check copies the model inside it and
    works on the copy. Neither disturbs nor is disturbed by another session's predictions."""
    from interp.evaluation import cascading_randomisation, deletion_insertion

    x = shapes_cnn.preprocess(world[1].image)
    saliency = attribute(shapes_cnn, x, "saliency", 3).map

    def scores():
        curves = deletion_insertion(shapes_cnn, x, saliency, 3, steps=8)
        check = cascading_randomisation(shapes_cnn, x, "saliency", 3)
        return curves.deletion, curves.insertion, [s.spearman for s in check.steps]

    alone = scores()
    results, predictions = _beside_predictions(shapes_cnn, world, scores, runs=3)
    for got in results:
        for a, b in zip(got, alone, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-6)
    _check_predictions(shapes_cnn, world, predictions)
    with shapes_cnn.shared() as net:
        assert hook_count(net) == 0


def test_effective_field_and_enough_steps_beside_a_prediction_loop(shapes_cnn, world):
    """The spectrum's receptive field hooks a layer and back-propagates to the image; the enough-steps search runs
    Integrated Gradients again and again. Neither disturbs, nor is disturbed by, another session's predictions."""
    from interp.attribution import enough_steps
    from interp.features import Objective
    from interp.features.spectrum import effective_field

    def both():
        field = effective_field(shapes_cnn, Objective("channel", 3, "layer2"), world[:2], (16, 16))
        found = enough_steps(shapes_cnn, world[1].image, 3, start=4, most=16)
        return field, found.params["steps"], found.raw

    alone = both()
    results, predictions = _beside_predictions(shapes_cnn, world, both, runs=3)
    for field, steps, raw in results:
        assert (field, steps) == alone[:2]
        np.testing.assert_allclose(raw, alone[2], rtol=1e-4, atol=1e-6)
    _check_predictions(shapes_cnn, world, predictions)
    with shapes_cnn.shared() as net:
        assert hook_count(net) == 0


# ---------------------------------------------------------------------------------------------------------------
# Decoded images kept for every session (dashboard.resources.held).


def _grey_images(n: int, side: int = 100) -> list:
    from interp.images import image_from_array

    return [image_from_array(np.full((side, side, 3), i, np.uint8), f"{i}.png") for i in range(n)]


@pytest.fixture
def one_mib_of_images(monkeypatch):
    from dashboard import resources

    monkeypatch.setattr(resources, "HELD_IMAGES_MB", 1)
    resources._held_images.clear()
    yield resources
    resources._held_images.clear()


def test_images_kept_for_other_sessions_stay_within_their_byte_budget(one_mib_of_images):
    """Each page's cache of decoded images was bounded in entries only (32 uploads, 16 concept sets of up to 500
    images, two spectra of 1,000…): together several gigabytes. They now share one budget in bytes."""
    resources = one_mib_of_images
    reads: list[str] = []

    def read(key: str, n: int):
        return lambda: reads.append(key) or _grey_images(n)

    a = resources.held(("a",), read("a", 20))  # 800,000 bytes of pixels (Pillow holds RGB in 4 bytes a pixel)
    assert resources.held(("a",), read("a", 20)) is a and reads == ["a"]  # read once, the same images for all
    resources.held(("b",), read("b", 20))  # 1.6 MB together: a, the least recently used, goes
    assert resources.held(("a",), read("a", 20)) is not a and reads == ["a", "b", "a"]
    big = resources.held(("c",), read("c", 40))  # 1.6 MB alone, over the whole budget: given, not kept
    assert len(big) == 40 and resources.held(("c",), read("c", 40)) is not big
    assert reads == ["a", "b", "a", "c", "c"]
    from interp.cache import _FLIGHTS

    cache, _ = resources._held_images()
    assert cache.currsize == 800_000 and list(cache) == [("a",)] and not _FLIGHTS
    assert resources.image_bytes((_grey_images(2, 10), ["x"], 3)) == 800  # images inside tuples and lists


def test_the_images_budget_is_a_share_of_the_memory_limit(monkeypatch):
    """512 MB of images beside a server holding 560 MB before any work would leave a 750 MB container nothing for a
    model's pass: under a memory limit the images get a quarter of it, never more than the 512 MB."""
    import interp.runtime
    from dashboard import resources

    monkeypatch.setattr(interp.runtime, "container_limit_mb", lambda: None)
    monkeypatch.delenv("INTERP_MEMORY_LIMIT_MB", raising=False)
    assert resources.held_images_mb() == resources.HELD_IMAGES_MB == 512  # no limit: the whole budget
    monkeypatch.setattr(interp.runtime, "container_limit_mb", lambda: 750.0)
    assert resources.held_images_mb() == 187  # a container's limit
    monkeypatch.setenv("INTERP_MEMORY_LIMIT_MB", "1000")
    assert resources.held_images_mb() == 250  # the setting replaces the container's
    monkeypatch.setenv("INTERP_MEMORY_LIMIT_MB", "16000")
    assert resources.held_images_mb() == 512
    monkeypatch.setenv("INTERP_MEMORY_LIMIT_MB", "1000")
    resources._held_images.clear()
    try:
        cache, _ = resources._held_images()
        assert cache.maxsize == 250 * 2**20  # the cache the pages share is built with it
    finally:
        resources._held_images.clear()


def test_sessions_asking_for_the_same_images_at_once_read_them_once(one_mib_of_images):
    resources = one_mib_of_images
    reads, got, failures = [], [], []
    gate = threading.Event()

    def slow_read():
        reads.append(1)
        gate.wait(5)
        return _grey_images(3)

    threads = [_started(lambda: got.append(resources.held(("same",), slow_read))) for _ in range(4)]
    time.sleep(0.3)
    gate.set()
    for t in threads:
        t.join(10)
    assert len(reads) == 1 and len(got) == 4 and all(g is got[0] for g in got)

    def failing():
        failures.append(1)
        raise ValueError("unreadable")

    with pytest.raises(ValueError):
        resources.held(("bad",), failing)
    with pytest.raises(ValueError):
        resources.held(("bad",), failing)  # a failed read is not kept: the next visitor tries again
    from interp.cache import _FLIGHTS

    assert len(failures) == 2 and not _FLIGHTS


def test_visitors_unpacking_the_same_zip_at_once_each_get_every_image_whole(tmp_path, monkeypatch):
    """A class handed one zip uploads it at once: each unpacking writes its own temporary files (one name per
    process wrote the same file from four threads: images skipped, and files on disk mixed from two writes that
    later uploads of that zip then trusted)."""
    import io
    import os
    import zipfile

    from interp.datasets import extract_zip, zips

    monkeypatch.setattr(zips, "_CHUNK", 1 << 16)  # many writes a member, so that the threads interleave
    members = {f"class_{i % 2}/{i}.png": os.urandom(1 << 20) for i in range(8)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    data = buffer.getvalue()
    for attempt in range(3):
        dest, start, results, errors = tmp_path / f"uploads{attempt}", threading.Barrier(4), [], []

        def unpack(dest=dest, start=start, results=results, errors=errors) -> None:
            start.wait()
            try:
                results.append(extract_zip(data, dest, "class.zip"))
            except Exception as exc:  # noqa: BLE001  (said by the assertion below)
                errors.append(repr(exc))

        for thread in [_started(unpack) for _ in range(4)]:
            thread.join(60)
        assert not errors and len(results) == 4, errors
        assert all(skipped == [] for _, skipped in results), [s for _, s in results]
        folder = results[0][0]
        assert all(f == folder for f, _ in results)
        assert {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*.png")} == members
        assert not [p.name for p in folder.rglob("*") if p.is_file() and p.suffix != ".png"]  # no temporary left


def test_measuring_the_uploads_skips_files_another_visitor_renames_meanwhile(tmp_path, monkeypatch):
    """Each upload first measures the unpacked zips (to prune the oldest), while other visitors' unpacking renames
    its temporary files there: a file listed and gone when it is measured counts nothing (it raised, under load)."""
    import os

    from interp.datasets import zips

    (tmp_path / "class_0").mkdir()
    (tmp_path / "class_0" / "a.png").write_bytes(b"x" * 10)
    (tmp_path / "class_0" / "link.png").symlink_to(tmp_path / "class_0" / "a.png")  # a link: not counted again
    walk = os.walk

    def listing_a_file_gone_since(top, *args, **kwargs):
        for here, folders, files in walk(top, *args, **kwargs):
            yield here, folders, [*files, ".unpacking-renamed.part"]

    monkeypatch.setattr(zips.os, "walk", listing_a_file_gone_since)
    assert zips.folder_bytes(tmp_path) == 10


def test_two_visitors_sharing_a_set_under_one_name_at_once_do_not_erase_each_other(tmp_path):
    """A class told to save and share a set named "stripes": both pass the name check while their images are being
    stored; one set is kept whole and the other visitor is told that the name was taken (the second used to delete
    the first's set, which its visitor had just been told was saved)."""
    from interp.concepts import ConceptLibrary, LibraryError, VisitorLibrary, generated

    shared = ConceptLibrary(tmp_path / "shared")
    sets = {"alice": generated.texture_set("stripes", 40), "bob": generated.texture_set("dots", 40)}
    start, saved, refused = threading.Barrier(2), {}, {}

    def save(who: str) -> None:
        visitor = VisitorLibrary(ConceptLibrary(tmp_path / who), shared)
        start.wait()
        try:
            saved[who] = visitor.save_set("stripes", sets[who], share=True)
        except LibraryError as exc:
            refused[who] = str(exc)

    for thread in [_started(lambda who=who: save(who)) for who in sets]:
        thread.join(60)
    assert len(saved) == 1 and len(refused) == 1, (saved, refused)
    (winner, kept), said = next(iter(saved.items())), next(iter(refused.values()))
    assert "stripes" in said and "another name" in said
    stored = shared.get("stripes")
    assert stored.files == kept.files and len(stored.images()) == len(kept.files)
    assert {im.digest[:16] for im in sets[winner]} == {f.removesuffix(".png") for f in stored.files}
    assert [p.name for p in (tmp_path / "shared" / "sets").iterdir()] == ["stripes"]  # no staging folder left
