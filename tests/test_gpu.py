"""On a GPU the engine gives the CPU's answers: every method, the attention capture, the ViT's statistics.

Skipped where there is no CUDA device (CI); run on a machine with one: ``python -m pytest tests/test_gpu.py``.
"""

from __future__ import annotations

import io

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


@pytest.fixture
def full_fp32():
    """cuDNN's convolutions in full fp32 for one test (by default they round inputs to TF32, so a batch of 18 and
    one of 2 read logits 0.2% apart, more than an off-by-one row would move them)."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_integrated_gradients_checks_completeness_inside_the_path_batch(pair, image, full_fp32):
    """On a GPU a first target's input and baseline ride in the path's batch: no separate pass, and the logit gap
    it reads is the one a separate pass gives."""
    from interp.attribution import gradient
    from interp.attribution.baselines import make_baseline

    _, gpu = pair
    gpu.forget(gradient.ENDPOINTS)
    batches: list[int] = []
    handle = gpu._module.register_forward_pre_hook(lambda m, i: batches.append(len(i[0])))
    try:
        first = attribute(gpu, image, "integrated_gradients", 1, steps=16, baseline="black")
        assert batches[-1:] == [18]  # 16 path points, input, baseline; no separate pass
        batches.clear()
        second = attribute(gpu, image, "integrated_gradients", 2, steps=16, baseline="black")
        assert batches == [16]
    finally:
        handle.remove()
    x = gpu.preprocess(image.image)[None].cuda()
    with torch.no_grad():
        logits = gpu._module(torch.cat([x, make_baseline("black", x, gpu)])).double().cpu()
    scale = float(logits.abs().max())
    for result in (first, second):
        gap = float(logits[0, result.target] - logits[1, result.target])
        # The path point nearest the input (alpha 0.995) moves the gap by about 0.5%: a wrong row would show.
        assert result.extras["logit_gap"] == pytest.approx(gap, abs=1e-4 * scale)


def test_concept_extraction_on_a_gpu_normalises_there_and_gets_the_cpu_inputs():
    """On a GPU, whole pictures go over as uint8 and are resized, cropped and normalised on the card (``batch_of``
    of CPU-made pixels, the other route, must equal the CPU's preprocessing bit for bit); the activations must match
    the CPU's."""
    from interp.concepts import activations, generated

    cpu = interp.load_model("efficientnet_lite0", device="cpu")
    gpu = interp.load_model("efficientnet_lite0", device="cuda")
    images = generated.random_images(40, seed=3)
    photo = interp.load_sample("coffee").image
    odd = [photo, photo.convert("L"), photo.resize((97, 300))]
    batch = gpu.batch_of([gpu.pixels(im) for im in odd])
    assert batch.device.type == "cuda" and batch.dtype == torch.float32
    assert torch.equal(batch.cpu(), torch.stack([cpu.preprocess(im) for im in odd]))
    a = activations(cpu, "bn2", images, batch_size=16)
    b = activations(gpu, "bn2", images, batch_size=16)
    assert a.shape == b.shape
    np.testing.assert_allclose(b, a, atol=2e-2 * float(np.abs(a).max()))
    assert min(pearson(x, y) for x, y in zip(a, b, strict=True)) >= 0.999


def test_trust_scores_are_the_cpu_scores(pair, image):
    """Deletion/insertion of the same map, and the randomisation cascade (seeded on the CPU), on both devices."""
    from interp.evaluation import cascading_randomisation, deletion_insertion

    cpu, gpu = pair
    x = cpu.preprocess(image.image)
    saliency = attribute(cpu, image, "saliency").map
    a = deletion_insertion(cpu, x, saliency, 3, steps=10)
    b = deletion_insertion(gpu, x, saliency, 3, steps=10)
    np.testing.assert_allclose(a.deletion, b.deletion, atol=2e-3)
    np.testing.assert_allclose(a.insertion, b.insertion, atol=2e-3)
    for block in (1, None):  # single pixels and the default squares, with ROAD's imputation (solved on the CPU)
        a = deletion_insertion(cpu, x, saliency, 3, steps=5, block=block, replacement="noisy_linear")
        b = deletion_insertion(gpu, x, saliency, 3, steps=5, block=block, replacement="noisy_linear")
        np.testing.assert_allclose(a.deletion, b.deletion, atol=2e-3)
        np.testing.assert_allclose(a.insertion, b.insertion, atol=2e-3)
    c, g = cascading_randomisation(cpu, x, "saliency", 3), cascading_randomisation(gpu, x, "saliency", 3)
    assert [s.layer for s in c.steps] == [s.layer for s in g.steps]
    np.testing.assert_allclose([s.spearman for s in c.steps], [s.spearman for s in g.steps], atol=0.05)


def test_features_on_the_gpu_give_the_cpus_curve_and_spectrum(pair, image):
    """The optimiser starts from the same seeded noise and takes the same random transforms on either device; the
    first steps' objective agrees to float tolerance (later ones drift as kernels round differently)."""
    from interp.features import Objective, VisualiseSettings, spectrum, visualise

    cpu, gpu = pair
    unit = Objective("channel", 2, "layer2" if cpu.spec.family == "cnn" else "blocks.1")
    settings = VisualiseSettings(steps=8, size=64)
    a, b = visualise(cpu, unit, settings), visualise(gpu, unit, settings)
    np.testing.assert_allclose(a.curve[:3], b.curve[:3], rtol=1e-3, atol=1e-3)
    images = [image, interp.load_sample("coffee"), interp.load_sample("rocket")]
    sa, sb = spectrum(cpu, unit, images, per_column=1), spectrum(gpu, unit, images, per_column=1)
    np.testing.assert_allclose(sa.values, sb.values, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("library", ["torchcodec", "nvimagecodec", "torchvision"])
def test_jpegs_decoded_and_resized_on_the_gpu_are_the_cpu_paths_pixels(library, monkeypatch, request):
    """nvJPEG decodes a little differently from libjpeg-turbo: its inverse DCT, and above all its upsampling of the
    colour that JPEGs store at half resolution (libjpeg-turbo's is a smoothing filter). So the GPU path is not within
    the CPU path's 2 grey levels of timm's pixels: on an H200 (torch 2.11, TorchCodec 0.16), decoded then resized and
    cropped on the GPU, these 16 photos' model input was a mean of 0.46 levels from the CPU path's, 0.26% of values
    off by more than 8, up to 42 at sharp colour edges. Bounds: a mean of 1 level, 1% of values off by more than 8,
    none by more than 64. What the model makes of it: the top class's probability moved by up to 0.020, and the top
    class changed for one photo, a near tie on the CPU path (the rocket at 375×500: drilling platform 0.180, missile
    0.175). Bounds: the top class's probability within 0.05; the same top class wherever it leads the next by more
    than 0.1, and for at least 14 of the 16. Each decoder :envvar:`INTERP_JPEG_DECODER` can name is held to them;
    TorchCodec (in ``requirements.txt``) must decode here, the others are skipped where they are not installed."""
    import interp.jpeg as jpeg_module
    from interp.jpeg import decode_on, decoder_name

    monkeypatch.setenv("INTERP_JPEG_DECODER", library)
    jpeg_module._decoder_on.cache_clear()
    request.addfinalizer(jpeg_module._decoder_on.cache_clear)  # later tests probe with the setting they find
    used = decoder_name("cuda")
    if used is None and library != "torchcodec":
        pytest.skip(f"{library} is not installed or does not decode JPEGs on this GPU (see bench/bench_jpeg.py)")
    assert used is not None, "TorchCodec does not decode JPEGs on this GPU (see bench/bench_jpeg.py)"
    model = interp.load_model("efficientnet_lite0", device="cuda")
    blobs, expected = [], []
    for name in ("chelsea", "coffee", "astronaut", "rocket"):
        photo = interp.load_sample(name).image
        for size in ((500, 375), (375, 500), (640, 427), (224, 224)):
            buf = io.BytesIO()
            photo.resize(size).save(buf, "JPEG", quality=90)
            blobs.append(torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8))
            expected.append(model.pixels(interp.load_image(buf.getvalue()).image))
    decoded = decode_on(blobs, "cuda")
    assert all(d is not None and d.device.type == "cuda" for d in decoded)
    got = model.transform.pixels_on_device(decoded)
    cpu = torch.stack(expected).to("cuda")
    apart = (got.int() - cpu.int()).abs().float()
    over = (apart > 8).float().mean().item()
    print(f"nvJPEG ({used}) + GPU resize vs the CPU path: mean {apart.mean():.3f} levels, max {apart.max():.0f}, "
          f"{over:.2%} of values off by more than 8")  # fmt: skip
    with torch.inference_mode():
        p_gpu = model._module(model.transform.normalize(got)).softmax(-1)
        p_cpu = model._module(model.transform.normalize(cpu)).softmax(-1)
    first, second = p_cpu.topk(2, -1).values.unbind(-1)
    top = p_cpu.argmax(-1)
    gap = (p_gpu.gather(1, top[:, None]) - p_cpu.gather(1, top[:, None])).abs().max().item()
    same = p_gpu.argmax(-1) == top
    print(f"top class the same for {int(same.sum())} of {len(top)} (leads of those that changed: "
          f"{[round(float(m), 4) for m in (first - second)[~same]]}); its probability within {gap:.4f}")  # fmt: skip
    assert apart.mean() <= 1.0 and over <= 0.01 and apart.max() <= 64
    assert gap <= 0.05 and same[first - second > 0.1].all() and int(same.sum()) >= 14


def test_a_gpu_scan_decodes_plain_jpegs_there_and_gives_the_cpu_rows(tmp_path):
    """Plain JPEGs decoded by nvJPEG, everything else by Pillow in the loader workers: the same files, each once,
    the same errors and the same top-1 classes as a scan on the CPU."""
    from interp.datasets import read_folder, scan
    from tests.corpus import assert_same_scan_rows, mixed_folder

    n_plain = mixed_folder(tmp_path / "data")
    ds = read_folder(tmp_path / "data")
    cpu = scan(interp.load_model("efficientnet_lite0", device="cpu"), ds, tmp_path / "cpu", batch_size=8, workers=2)
    gpu = scan(interp.load_model("efficientnet_lite0", device="cuda"), ds, tmp_path / "gpu", batch_size=8, workers=2)
    assert cpu.decoded_on_device == 0 and gpu.decoded_on_device == n_plain
    assert_same_scan_rows(tmp_path / "cpu", tmp_path / "gpu", 0.05)


def test_cav_features_path_decodes_plain_jpegs_on_the_gpu_and_gets_the_cpu_rows(tmp_path):
    """``file_activations`` (cav-features) on a GPU: plain JPEGs decoded by nvJPEG, the rest by Pillow in the loader
    workers, the same files read and the same ones refused as on the CPU, each row close to the CPU's. nvJPEG's
    pixels are a little apart from Pillow's (the test above), so rows are compared by correlation; the bound, 0.99
    for every image, is not yet measured on a GPU (the rows it prints are the first measurement)."""
    from interp.concepts import file_activations
    from interp.datasets import read_folder
    from tests.corpus import mixed_folder

    n_plain = mixed_folder(tmp_path / "data")
    ds = read_folder(tmp_path / "data")
    a = file_activations(interp.load_model("efficientnet_lite0", device="cpu"), ["bn2"], ds, batch_size=8, workers=0)
    b = file_activations(interp.load_model("efficientnet_lite0", device="cuda"), ["bn2"], ds, batch_size=8, workers=2)
    assert a.decoded_on_device == 0 and b.decoded_on_device == n_plain
    assert a.names == b.names and [p for p, _ in a.failed] == [p for p, _ in b.failed]
    r = [pearson(x, y) for x, y in zip(a.rows["bn2"], b.rows["bn2"], strict=True)]
    print(f"rows decoded on the GPU vs the CPU: correlation min {min(r):.5f}, median {np.median(r):.5f}")
    assert min(r) >= 0.99


@pytest.mark.parametrize("classes", [6, 1000])
def test_rows_scored_on_the_gpu_equal_each_row_by_its_definition(classes):
    """On a GPU the top classes come from a stable sort there (the CPU mends ties after a top-k instead): the same
    rows by definition, ties and underflow included."""
    from tests.test_datasets import check_rows_by_definition

    check_rows_by_definition(classes, "cuda")


def test_scores_wait_for_their_own_copy_and_not_for_passes_launched_after():
    """``score_async`` returns without waiting for the pass that made the logits (so a scan builds the last batch's
    rows while the next pass runs: a copy from pageable memory would wait); ``result`` waits for its copies, queued
    here behind matrix products, and a pass launched after them does not change it."""
    from interp.datasets.rows import label_matrix, score, score_async

    logits = torch.randn(256, 1000, generator=torch.Generator().manual_seed(0)) * 3
    labels = label_matrix([[i % 1000] for i in range(256)])
    want = score(logits, labels)
    big, on_gpu = torch.randn(4096, 4096, device="cuda"), logits.cuda()
    torch.cuda.synchronize()
    slow = big
    for _ in range(50):  # tens of milliseconds of work queued ahead of the scores
        slow = slow @ big / 64.0
    pending = score_async(on_gpu + 0.0 * slow[:256, :1000], labels)
    assert not torch.cuda.current_stream().query(), "score_async waited for the work queued before it"
    later = big @ big  # a pass launched after the scores
    got = pending.result()
    del later
    np.testing.assert_array_equal(got.top, want.top)
    for name in ("top_prob", "entropy", "true_prob"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("library", ["torchcodec", "nvimagecodec", "torchvision"])
def test_decoding_on_the_gpu_never_writes_into_memory_that_queued_work_still_reads(library, monkeypatch, request):
    """nvJPEG's hardware engine writes a batch's pictures when it is called, not when its stream gets there, into
    memory the stream's allocator may just have taken back from tensors that queued kernels still read (TorchCodec
    pull request 1634, torchvision 9606: wrong results in 134 of 200 tries on an H100). :func:`decode_on` decodes on
    a stream of its own and keeps each picture from reuse until the caller's stream is done with it. Here, 20 times
    each: (1) a picture-sized tensor of ones is summed behind ~25 ms of queued work and freed before that sum has run,
    then a batch of baseline JPEGs (the hardware path) is decoded; (2) a decoded batch is summed behind queued work and
    freed, then another photo of the same size is decoded. Every sum must be what it was before. The library's own
    call on the caller's stream, for (1), is printed, not asserted (it depends on the card and the library)."""
    import interp.jpeg as jpeg_module
    from interp.jpeg import decode_on, decoder_name

    monkeypatch.setenv("INTERP_JPEG_DECODER", library)
    jpeg_module._decoder_on.cache_clear()
    request.addfinalizer(jpeg_module._decoder_on.cache_clear)
    if decoder_name("cuda") is None:
        if library == "torchcodec":
            pytest.fail("TorchCodec does not decode JPEGs on this GPU (see bench/bench_jpeg.py)")
        pytest.skip(f"{library} is not installed or does not decode JPEGs on this GPU")

    def batch(sample: str) -> list[torch.Tensor]:
        buf = io.BytesIO()
        interp.load_sample(sample).image.resize((500, 375)).save(buf, "JPEG", quality=90)
        return [torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)] * 8

    coffee, chelsea = batch("coffee"), batch("chelsea")
    raw = dict(jpeg_module.CANDIDATES)[decoder_name("cuda")]()

    def freed_then_decoded(decode) -> int:
        wrong = 0
        for _ in range(20):
            ones = torch.ones((3, 375, 500), dtype=torch.uint8, device="cuda")
            torch.cuda._sleep(50_000_000)
            total = ones.sum(dtype=torch.int64)
            del ones  # its block is free for the stream's next allocation before the sum has read it
            decode(coffee)
            wrong += int(total.item() != 3 * 375 * 500)
        return wrong

    def decoded_then_decoded_again() -> int:
        wrong = 0
        for _ in range(20):
            first = decode_on(coffee, "cuda")
            expected = [int(p.sum(dtype=torch.int64)) for p in first]
            torch.cuda._sleep(50_000_000)
            totals = [p.sum(dtype=torch.int64) for p in first]
            del first
            decode_on(chelsea, "cuda")
            wrong += sum(int(t.item() != e) for t, e in zip(totals, expected, strict=True))
        return wrong

    undrained = freed_then_decoded(lambda d: raw(d, torch.device("cuda")))
    ours, again = freed_then_decoded(lambda d: decode_on(d, "cuda")), decoded_then_decoded_again()
    print(f"{library}: wrong sums in {undrained} of 20 with the library's own call on the caller's stream; through "
          f"decode_on {ours} of 20, and {again} of 160 over pictures decoded before")  # fmt: skip
    assert ours == 0 and again == 0


def test_an_image_and_a_map_held_on_the_gpu_are_read_as_their_cpu_copies():
    """``image_from_array`` and the scores read a tensor on the GPU (NumPy cannot: "can't convert cuda:0 device type
    tensor")."""
    pixels = torch.rand(8, 9, 3, generator=torch.Generator().manual_seed(0))
    want = np.asarray(interp.image_from_array(pixels, "cpu").image)
    assert np.array_equal(np.asarray(interp.image_from_array(pixels.cuda(), "gpu").image), want)
    from interp.evaluation import boxes_mask, energy_inside  # a map on the GPU scores as its CPU copy

    mask = boxes_mask([("thing", 0.25, 0.25, 0.75, 0.75)], 8, 9)
    assert energy_inside(pixels[..., 0].cuda(), mask) == energy_inside(pixels[..., 0].numpy(), mask)
