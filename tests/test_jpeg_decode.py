"""JPEGs decoded in batches where the model runs (:mod:`interp.jpeg`): the files sent there, the pixels that come
back, and a scan that decodes there giving the rows of one that decodes with Pillow, every file once.

Here the device is the CPU (libjpeg-turbo through the same code); ``tests/test_gpu.py`` runs the same on a GPU.
"""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

import interp
from interp.datasets import load_scan, read_folder, scan
from interp.datasets.batches import resolve_decode
from interp.images import load_rgb
from interp.jpeg import decode_on, device_decodable
from tests.corpus import assert_same_scan_rows, bad_files, mixed_folder, odd_files
from tests.test_models import PREPROCESSING, SIZES


def as_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def jpeg(image: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def test_only_files_that_decoding_alone_turns_into_the_apps_pixels_go_to_the_device():
    """Every file of the upload corpus: refused ones never go to the device; where one does, decoding it there gives
    exactly :func:`load_rgb`'s pixels (rotation, CMYK, huge photos and frames stay on Pillow's path)."""
    for case, (_, blob) in bad_files().items():
        assert not device_decodable(blob), case
    taken = []
    for case, (_, blob) in odd_files().items():
        if device_decodable(blob):
            taken.append(case)
            got = decode_on([as_tensor(blob)], "cpu")[0]
            assert np.array_equal(got.permute(1, 2, 0).numpy(), np.asarray(load_rgb(blob))), case
    assert taken == []  # CMYK, EXIF-rotated, 6000 px: each needs more than a decode
    photo = interp.load_sample("coffee").image
    for image in (photo, photo.convert("L"), photo.resize((2048, 1365))):
        blob = jpeg(image)
        assert device_decodable(blob)
        got = decode_on([as_tensor(blob)], "cpu")[0]
        assert np.array_equal(got.permute(1, 2, 0).numpy(), np.asarray(load_rgb(blob)))
    assert not device_decodable(jpeg(photo.resize((2049, 1366))))  # over the longest side kept: Pillow shrinks it
    assert device_decodable(jpeg(photo) + b"\0" * 16)  # padding after the end marker is harmless


@pytest.mark.parametrize("config", list(PREPROCESSING))
def test_pixels_resized_on_the_device_are_timms(config):
    """Decoded and resized by torch (widths then heights, rounded between the passes, as Pillow does): at most 2 grey
    levels from timm's pixels; with bicubic filters in at most 1% of the values, with the bilinear one (Pillow rounds
    it in fixed point) 15%. The same image sizes as the CPU path's own test."""
    from timm.data import create_transform

    from interp.models.preprocess import fast_eval_transform

    cfg = PREPROCESSING[config]
    reference = create_transform(**cfg, is_training=False)
    fast = fast_eval_transform(reference)
    assert fast.pixels_on_device_ok
    levels = torch.tensor(cfg["std"]).view(-1, 1, 1) * 255
    photo = interp.load_sample("astronaut").image
    blobs = [jpeg(photo.resize(size)) for size in SIZES]
    decoded = decode_on([as_tensor(b) for b in blobs] * 2, "cpu")  # sizes repeat: resized in groups
    got = fast.normalize(fast.pixels_on_device(decoded))
    share = 0.01 if cfg["interpolation"] == "bicubic" else 0.15
    for k, (size, blob) in enumerate(zip(SIZES, blobs, strict=True)):
        expected = reference(Image.open(io.BytesIO(blob)).convert("RGB"))
        for x in (got[k], got[k + len(SIZES)]):
            apart = ((x - expected).abs() * levels).round()
            assert apart.max() <= 2, (config, size)
            assert (apart > 0).float().mean() <= share, (config, size)


def test_a_scan_decoding_on_the_device_equals_the_pillow_scan(tmp_path):
    """The same rows, every file once: plain JPEGs decoded on the device, everything else (PNG, CMYK, rotated,
    truncated, empty, not an image) by Pillow in the loader workers, errors worded the same."""
    n_plain = mixed_folder(tmp_path / "data")
    ds = read_folder(tmp_path / "data")
    model = interp.load_model("efficientnet_lite0")
    pillow = scan(model, ds, tmp_path / "cpu", batch_size=8, workers=0, decode="cpu")
    device = scan(model, ds, tmp_path / "device", batch_size=8, workers=2, decode="device")
    assert pillow.decoded_on_device == 0 and device.decoded_on_device == n_plain
    assert device.rows == pillow.rows == len(ds) and device.skipped == pillow.skipped
    assert_same_scan_rows(tmp_path / "cpu", tmp_path / "device", 0.01)


def test_a_scan_records_how_many_images_it_decoded_on_the_device(tmp_path):
    """``scan.json`` counts the rows decoded where the model runs, over resumed runs too, and names the decoder (the
    gallery tells a GPU scan's reader that nvJPEG's pixels are not quite Pillow's); a Pillow scan records nothing."""
    n_plain = mixed_folder(tmp_path / "data")
    ds = read_folder(tmp_path / "data")
    model = interp.load_model("efficientnet_lite0")
    scan(model, ds, tmp_path / "device", batch_size=8, workers=0, decode="device", limit=10)
    first = load_scan(tmp_path / "device")[0]["device_decoding"]
    assert first["device"] == "cpu" and first["decoder"] == "TorchCodec" and 0 < first["images"] <= 10
    got = scan(model, ds, tmp_path / "device", batch_size=8, workers=0, decode="device")
    meta = load_scan(tmp_path / "device")[0]
    assert meta["device_decoding"]["images"] == first["images"] + got.decoded_on_device == n_plain
    scan(model, ds, tmp_path / "cpu", batch_size=8, workers=0, decode="cpu", limit=10)
    assert "device_decoding" not in load_scan(tmp_path / "cpu")[0]


def test_images_the_decoder_refuses_take_the_pillow_path(tmp_path, monkeypatch):
    """A decoder that fails a whole batch when one image is bad (nvJPEG does) is retried image by image; the image
    it still refuses is decoded by Pillow, not lost and not scored twice."""
    import interp.jpeg as jpeg_module

    real = jpeg_module.decoder("cpu")
    refuse = jpeg(Image.new("RGB", (8, 8)))[-8:]  # the tail of one particular file

    def picky(data, device):
        if any(bytes(d[-8:].tolist()) == refuse for d in data):
            raise RuntimeError("nvjpeg: refused")
        return real(data, device)

    monkeypatch.setattr(jpeg_module, "decoder", lambda device: picky)
    photo = interp.load_sample("chelsea").image
    (tmp_path / "data" / "a").mkdir(parents=True)
    for k in range(5):
        photo.rotate(k * 10).save(tmp_path / "data" / "a" / f"{k}.jpg", quality=90)
    (tmp_path / "data" / "a" / "refused.jpg").write_bytes(jpeg(Image.new("RGB", (8, 8))))
    ds = read_folder(tmp_path / "data")
    model = interp.load_model("shapes_cnn")
    got = scan(model, ds, tmp_path / "s", batch_size=6, workers=0, decode="device")
    assert got.rows == 6 and got.skipped == 0 and got.decoded_on_device == 5
    _, rows = load_scan(tmp_path / "s")
    assert rows["id"].is_unique and rows["error"].isna().all()


def test_the_decoder_is_the_first_that_works_on_the_device(monkeypatch, caplog):
    """A decoder library that imports but cannot decode on the device (a build without CUDA, or for another torch),
    or that decodes to the wrong pixels, is passed over for the next; with none left, ``decode="device"`` is refused
    with a sentence and ``auto`` would use Pillow. Each device is probed once."""
    import interp.jpeg as jpeg_module

    calls = []

    def fails_here():
        def decode(data, device):
            calls.append("fails")
            raise RuntimeError("this build was compiled without CUDA support")

        return decode

    def garbles():
        return lambda data, device: [torch.full((3, 16, 24), 128, dtype=torch.uint8) for _ in data]

    def missing():
        raise ImportError("No module named 'torchcodec'")

    def gives_nothing():  # nvImageCodec where none of its decoders loaded
        return lambda data, device: [None for _ in data]

    real = dict(jpeg_module.CANDIDATES)
    candidates = (("broken", fails_here), ("grey", garbles), ("gone", missing), ("empty", gives_nothing),
                  ("torchvision", real["torchvision"]))  # fmt: skip
    monkeypatch.setattr(jpeg_module, "CANDIDATES", candidates)
    jpeg_module._decoder_on.cache_clear()
    try:
        with caplog.at_level("INFO", logger="interp.jpeg"):
            assert jpeg_module.decoder_name("cpu") == "torchvision"
        assert "empty cannot decode JPEGs on cpu (RuntimeError('it gave no picture for the test JPEG'))" in caplog.text
        assert jpeg_module.decoder_name("cpu") == "torchvision" and calls == ["fails"]  # probed once
        blob = jpeg(interp.load_sample("coffee").image)
        got = decode_on([as_tensor(blob)], "cpu")[0]
        assert np.array_equal(got.permute(1, 2, 0).numpy(), np.asarray(load_rgb(blob)))

        monkeypatch.setattr(jpeg_module, "CANDIDATES", (("broken", fails_here), ("grey", garbles)))
        jpeg_module._decoder_on.cache_clear()
        assert jpeg_module.decoder("cpu") is None
        assert decode_on([as_tensor(blob)], "cpu") == [None]  # the scan then decodes it with Pillow
        with pytest.raises(ValueError, match="No JPEG decoder works on cpu: broken and grey are missing"):
            resolve_decode(interp.load_model("shapes_cnn"), "device")
    finally:
        jpeg_module._decoder_on.cache_clear()


def test_the_decoder_can_be_named_in_the_environment(monkeypatch, caplog):
    """$INTERP_JPEG_DECODER picks one decoder (any case); an unknown name says so in the log and keeps the order."""
    import interp.jpeg as jpeg_module

    try:
        for setting, expected in (("torchvision", "torchvision"), ("TORCHCODEC", "TorchCodec"), ("auto", "TorchCodec"),
                                  ("nvidia-dali", "TorchCodec")):  # fmt: skip
            monkeypatch.setenv("INTERP_JPEG_DECODER", setting)
            jpeg_module._decoder_on.cache_clear()
            with caplog.at_level("WARNING", logger="interp.jpeg"):
                assert jpeg_module.decoder_name("cpu") == expected, setting
        assert ("INTERP_JPEG_DECODER='nvidia-dali' is not auto or one of torchcodec, nvimagecodec, torchvision"
                in caplog.text)  # fmt: skip
        monkeypatch.setenv("INTERP_JPEG_DECODER", "torchvision")
        jpeg_module._decoder_on.cache_clear()
        blob = jpeg(interp.load_sample("coffee").image)
        got = decode_on([as_tensor(blob)], "cpu")[0]
        assert np.array_equal(got.permute(1, 2, 0).numpy(), np.asarray(load_rgb(blob)))
    finally:
        jpeg_module._decoder_on.cache_clear()


@pytest.mark.parametrize("name", ["torchcodec", "torchvision"])
def test_each_cpu_decoder_gives_pillows_pixels_and_none_for_what_it_cannot_read(name, monkeypatch):
    """Each library :envvar:`INTERP_JPEG_DECODER` can name for the CPU (both decode with libjpeg-turbo, as Pillow
    does): a batch of the ways photos are saved decodes in one call to exactly :func:`load_rgb`'s pixels, ``(3, H,
    W)`` ``uint8``; a batch holding a file it cannot read gives ``None`` there (the scan then asks Pillow) and still
    every other picture."""
    import interp.jpeg as jpeg_module

    monkeypatch.setenv("INTERP_JPEG_DECODER", name)
    jpeg_module._decoder_on.cache_clear()
    try:
        assert jpeg_module.decoder_name("cpu").lower() == name
        photo = interp.load_sample("coffee").image
        blobs = [jpeg(photo.resize((500, 375))), jpeg(photo.convert("L")), jpeg(photo, progressive=True),
                 jpeg(photo.resize((375, 500)), subsampling=0), jpeg(photo.resize((33, 17)))]  # fmt: skip
        for got, blob in zip(decode_on([as_tensor(b) for b in blobs], "cpu"), blobs, strict=True):
            assert got.dtype == torch.uint8 and got.shape[0] == 3
            assert np.array_equal(got.permute(1, 2, 0).numpy(), np.asarray(load_rgb(blob)))
        junk = b"\xff\xd8\xff" + bytes(200) + b"\xff\xd9"
        got = decode_on([as_tensor(blobs[0]), as_tensor(junk), as_tensor(blobs[1])], "cpu")
        assert got[1] is None
        assert np.array_equal(got[2].permute(1, 2, 0).numpy(), np.asarray(load_rgb(blobs[1])))
        assert np.array_equal(got[0].permute(1, 2, 0).numpy(), np.asarray(load_rgb(blobs[0])))
    finally:
        jpeg_module._decoder_on.cache_clear()


def test_nvimagecodec_is_never_the_cpu_paths_decoder(monkeypatch, caplog):
    """Its CPU decoder gave pixels for 12 of 200 damaged copies of a photo that Pillow and TorchCodec refuse, so the
    scan's CPU path would have scored files the rest of the app calls damaged. Named for the CPU, no decoder is used
    there (Pillow decodes), and the log says why; ``auto`` on the CPU never reaches it."""
    import interp.jpeg as jpeg_module

    pytest.importorskip("nvidia.nvimgcodec")  # requirements-dev.txt installs it; a user's machine may not have it
    monkeypatch.setenv("INTERP_JPEG_DECODER", "nvimagecodec")
    jpeg_module._decoder_on.cache_clear()
    try:
        with caplog.at_level("INFO", logger="interp.jpeg"):
            assert jpeg_module.decoder_name("cpu") is None
        assert "used on CUDA GPUs only" in caplog.text
        blob = jpeg(interp.load_sample("coffee").image)
        assert decode_on([as_tensor(blob)], "cpu") == [None] and jpeg_module.decode_plain(blob) is None
        with pytest.raises(ValueError, match="No JPEG decoder works on cpu: nvImageCodec is missing or built"):
            resolve_decode(interp.load_model("shapes_cnn"), "device")
    finally:
        jpeg_module._decoder_on.cache_clear()


def test_gpu_decoding_runs_on_a_stream_of_its_own_and_hands_each_picture_over(monkeypatch):
    """The order of what a GPU decode does around the library's call (no GPU here: CUDA's streams are stood in for;
    ``tests/test_gpu.py`` checks the pixels it protects on a GPU): the decoding stream is drained, the library decodes
    with it current, the caller's stream waits for it, and each picture is kept from reuse until the caller's stream
    is done with it. Should the decoding stream be the caller's own (one of torch's pool), that stream is drained and
    the library decodes there; on the CPU nothing but the library's call happens."""
    import contextlib
    import threading

    import interp.jpeg as jpeg_module

    calls: list[str] = []

    class Stream:
        def __init__(self, name: str) -> None:
            self.name, self.cuda_stream = name, id(self)

        def synchronize(self) -> None:
            calls.append(f"{self.name} drained")

        def wait_stream(self, other) -> None:
            calls.append(f"{self.name} waits for {other.name}")

    class Picture:
        def record_stream(self, stream) -> None:
            calls.append(f"picture kept for {stream.name}")

    caller, own = Stream("caller"), Stream("own")
    current = [caller]

    @contextlib.contextmanager
    def stream_on(stream):
        current.append(stream)
        try:
            yield
        finally:
            current.pop()

    def decode(data, device):
        calls.append(f"decoded on {current[-1].name}")
        return [Picture(), None]  # None: a picture the library refused

    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: current[-1])
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "stream", stream_on)
    monkeypatch.setattr(jpeg_module, "_decoding_stream", lambda index: (own, threading.Lock()))
    wrapped = jpeg_module._on_a_stream_of_its_own(decode)
    assert len(wrapped([], torch.device("cuda"))) == 2
    assert calls == ["own drained", "decoded on own", "caller waits for own", "picture kept for caller"]
    assert current == [caller]
    calls.clear()
    monkeypatch.setattr(jpeg_module, "_decoding_stream", lambda index: (caller, threading.Lock()))
    wrapped([], torch.device("cuda"))
    assert calls == ["caller drained", "decoded on caller"]
    calls.clear()
    wrapped([], torch.device("cpu"))
    assert calls == ["decoded on caller"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_no_decoder_is_tried_on_a_device_this_process_cannot_use(monkeypatch):
    """Probing "cuda" without a usable GPU tried each library there, and torchvision's printed a page of native
    frames to stderr before failing."""
    import interp.jpeg as jpeg_module

    tried = []
    monkeypatch.setattr(jpeg_module, "CANDIDATES", (("any", lambda: tried.append("any")),))
    jpeg_module._decoder_on.cache_clear()
    try:
        assert jpeg_module.decoder_name("cuda") is None and jpeg_module.decoder("cuda:1") is None
        assert tried == []
    finally:
        jpeg_module._decoder_on.cache_clear()


def test_decode_choices():
    model = interp.load_model("shapes_cnn")
    assert resolve_decode(model, "auto") == "cpu"  # on the CPU, Pillow in parallel workers is faster
    assert resolve_decode(model, "device") == "device"
    with pytest.raises(ValueError, match="decode must be one of"):
        resolve_decode(model, "nvjpeg")

    class Squash:
        """A preprocessing that is not a centre crop."""

    import dataclasses

    odd = dataclasses.replace(model)
    object.__setattr__(odd, "_transform", Squash())  # replace() would build timm's transform again
    with pytest.raises(ValueError, match="cannot run on the device"):
        resolve_decode(odd, "device")
    assert resolve_decode(odd, "auto") == "cpu"


@pytest.mark.parametrize("config", ["lite0", "shapes", "lanczos"])
def test_the_cpu_path_reads_plain_jpegs_without_pillow_to_the_same_pixels(config, tmp_path, monkeypatch):
    """Every scan's CPU path (:func:`read_pixels`, in process and on Ray) decodes a plain JPEG with the JPEG decoder,
    which lets go of the GIL, and the rest with Pillow: the pixels and error sentences of Pillow's path, file by file,
    over the upload corpus and photos saved the ways cameras and editors save them (grey, progressive, unsubsampled
    colour, the largest side kept). The Lanczos filter has no torch kernel: the decoded picture goes through Pillow's
    resize; a file that is not a regular file is refused without being opened."""
    from timm.data import create_transform

    import interp.datasets.batches as batches
    from interp.datasets.batches import read_pixels
    from interp.models.preprocess import fast_eval_transform

    transform = fast_eval_transform(create_transform(**PREPROCESSING[config], is_training=False))
    decoded = []
    real = batches.decode_plain
    monkeypatch.setattr(batches, "decode_plain", lambda data: decoded.append(real(data) is not None) or real(data))

    def pillow(source, name):
        try:
            return transform.pixels(load_rgb(source, name=name)), ""
        except interp.InterpError as exc:
            return None, str(exc)

    photo = interp.load_sample("coffee").image
    plain = {"rgb": jpeg(photo.resize((500, 375))), "grey": jpeg(photo.convert("L")), "progressive":
             jpeg(photo, progressive=True), "4:4:4": jpeg(photo.resize((375, 500)), subsampling=0),
             "largest": jpeg(photo.resize((2048, 1365)))}  # fmt: skip
    files = {**{k: (f"{k}.jpg", b) for k, b in plain.items()}, **odd_files(), **bad_files()}
    for case, (name, blob) in files.items():
        path = tmp_path / name
        path.write_bytes(blob)
        for source in (path, blob):
            decoded.clear()
            got, error = read_pixels(source, name, transform)
            want, want_error = pillow(source, name)
            assert error == want_error, case
            assert (got is None) == (want is None), case
            if got is not None:
                assert got.dtype == torch.uint8 and torch.equal(got, want), case
            assert (True in decoded) == (case in plain), case  # the decoder took the plain JPEGs, and only those
    missing = tmp_path / "gone.jpg"
    assert read_pixels(missing, "gone.jpg", transform) == pillow(missing, "gone.jpg")
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    assert "not a regular file" in read_pixels(fifo, "pipe.jpg", transform)[1]  # open() would block for ever


def test_damaged_jpegs_give_the_cpu_path_what_pillow_gives():
    """A JPEG with bytes overwritten inside (its header and end marker intact, so it counts as plain): whatever the
    JPEG decoder makes of it, the scan's CPU path gives Pillow's pixels or Pillow's sentence."""
    from interp.datasets.batches import read_pixels

    model = interp.load_model("efficientnet_lite0")
    blob = jpeg(interp.load_sample("coffee").image.resize((500, 375)))
    rng = np.random.default_rng(0)
    outcomes = set()
    for _ in range(40):
        damaged = bytearray(blob)
        for pos in rng.integers(700, len(blob) - 10, size=int(rng.integers(1, 12))):
            damaged[pos] = int(rng.integers(0, 256))
        assert device_decodable(damaged)
        got, error = read_pixels(bytes(damaged), "damaged.jpg", model.transform)
        try:
            want, want_error = model.pixels(load_rgb(bytes(damaged), name="damaged.jpg")), ""
        except interp.InterpError as exc:
            want, want_error = None, str(exc)
        assert error == want_error and (got is None) == (want is None)
        if got is not None:
            assert torch.equal(got, want)
        outcomes.add(got is None)
    assert outcomes == {True, False}  # some are refused, some are read: both branches were compared


def test_the_decoder_probe_stores_colour_at_full_resolution():
    """nvJPEG upsamples halved colour otherwise than libjpeg-turbo: on the probe's sharp colour edges stored 4:2:0 it
    was 4.03 grey levels from Pillow (an H200, ``bench/bench_jpeg.py``), over the 4 allowed, and a scan on that GPU
    decoded every JPEG with Pillow. Stored 4:4:4 it was 0.00; photos' distance is bounded in ``tests/test_gpu.py``."""
    from PIL import JpegImagePlugin

    from interp.jpeg import _probe

    blob, expected = _probe()
    assert JpegImagePlugin.get_sampling(Image.open(io.BytesIO(blob))) == 0
    assert expected.shape == (3, 16, 24)


def test_a_loader_process_hands_over_a_batchs_jpegs_as_one_tensor(tmp_path):
    """One shared-memory block per batch, not one per image (a tensor per image: 1,400 images/s from two loader
    processes on 2 cores, against 5,600); the bytes split back are each file's, in order, beside the CPU path's
    pixels and the errors."""
    from interp.datasets.batches import _collate_files, _Files

    photo = interp.load_sample("coffee").image
    (tmp_path / "d" / "a").mkdir(parents=True)
    for k in range(4):
        photo.rotate(k).save(tmp_path / "d" / "a" / f"{k}.jpg", quality=90)
    photo.save(tmp_path / "d" / "a" / "p.png")
    (tmp_path / "d" / "a" / "x.jpg").write_bytes(b"not an image")
    ds = read_folder(tmp_path / "d")
    model = interp.load_model("shapes_cnn")
    files = _Files(ds, ds.items, model.transform)
    loader = torch.utils.data.DataLoader(files, batch_size=len(ds), num_workers=1, collate_fn=_collate_files)
    ((ids, flat, lengths), pixels, failed), = list(loader)
    assert isinstance(flat, torch.Tensor) and flat.dtype == torch.uint8 and flat.dim() == 1
    assert len(ids) == 4 and [i for i, _ in pixels] != [] and len(failed) == 1
    for i, part in zip(ids, flat.split(lengths), strict=True):
        assert bytes(part.numpy()) == ds.path_of(ds.items[i]).read_bytes()
    assert sorted(ids + [i for i, _ in pixels] + [i for i, _ in failed]) == list(range(len(ds)))


def test_prepared_ahead_takes_the_next_batch_from_its_thread_while_the_caller_waits_for_nothing():
    """The thread that prepares also takes batches from the source (a data loader that may wait for its workers):
    a source slow to give a batch no longer holds back the batch already prepared, and an error raised by the
    source reaches the caller after the batches before it."""
    import threading
    import time

    from interp.runtime import prepared_ahead

    caller = threading.get_ident()
    taken_in = set()
    release = threading.Event()

    def source():
        for k in range(3):
            taken_in.add(threading.get_ident())
            if k == 2:
                assert release.wait(10)  # batch 2 comes only once the caller has batch 1
            yield k

    out = prepared_ahead(source(), lambda k: k, torch.device("cpu"))
    assert next(out) == 0
    start = time.perf_counter()
    assert next(out) == 1  # handed over although the source is still waiting on batch 2
    assert time.perf_counter() - start < 5
    release.set()
    assert list(out) == [2] and caller not in taken_in

    def failing():
        yield 0
        raise OSError("the loader's worker died")

    got = []
    with pytest.raises(OSError, match="worker died"):
        for k in prepared_ahead(failing(), lambda k: k, torch.device("cpu")):
            got.append(k)
    assert got == [0]


def test_batches_are_prepared_ahead_in_order_while_the_caller_holds_the_last():
    """On a GPU the next batch is decoded while the model runs this one (here on the CPU, without streams): results
    come in order, the next is being prepared while the caller holds one, an error reaches the caller, and a caller
    that stops early is not kept waiting."""
    import threading

    from interp.runtime import prepared_ahead

    started = [threading.Event() for _ in range(5)]

    def prepare(k):
        started[k].set()
        return k, None

    seen = []
    for k, _ in prepared_ahead(iter(range(5)), prepare, torch.device("cpu")):
        if k < 4:
            assert started[k + 1].wait(10), f"batch {k + 1} was not prepared while the caller held batch {k}"
        seen.append(k)
    assert seen == [0, 1, 2, 3, 4]

    def broken(k):
        if k == 2:
            raise RuntimeError("nvjpeg: out of memory")
        return k, None

    got = []
    with pytest.raises(RuntimeError, match="out of memory"):
        for k, _ in prepared_ahead(iter(range(5)), broken, torch.device("cpu")):
            got.append(k)
    assert got == [0, 1]
    early = prepared_ahead(iter(range(1000)), lambda k: (k, None), torch.device("cpu"))
    assert next(early) == (0, None)
    early.close()  # returns at once: one batch at most was being prepared
