"""A dataset's images read into batches for a model: files decoded (plain JPEGs without Pillow, where the model runs
or on the CPU), resized and cropped by the model's own preprocessing, normalised where the model runs; unreadable
files become their error sentences, never exceptions. What :func:`interp.datasets.scan` and the Ray scan feed the
model with."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

from interp.datasets.base import Dataset, Item
from interp.errors import BadSettingError, InterpError, shown
from interp.images import DEFAULT_MAX_BYTES, load_rgb, read_bytes
from interp.jpeg import decode_plain
from interp.models.loading import LoadedModel
from interp.runtime import map_together, prepared_ahead


class _Images(torch.utils.data.Dataset):
    """Decodes and preprocesses in data-loader workers (or threads) to the model's ``uint8`` pixels, which the batch
    is normalised from where the model runs (a quarter of the bytes of floats to pass between processes and to copy
    to a GPU; floats where the model's preprocessing is not a centre crop); an unreadable file yields its error, not
    an exception."""

    def __init__(self, dataset: Dataset, items: list[Item], transform: Callable) -> None:
        self.dataset, self.items, self.transform = dataset, items, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return (i, *self.read(i))

    def read(self, i: int, data: bytes | bytearray | None = None) -> tuple[torch.Tensor | None, str]:
        """Item ``i`` decoded from ``data`` (its bytes, already read) or its file, by :func:`read_pixels`."""
        item = self.items[i]
        return read_pixels(data if data is not None else self.dataset.path_of(item), item.path, self.transform)


def read_pixels(
    source: bytes | bytearray | str | Path, name: str, transform: Callable
) -> tuple[torch.Tensor | None, str]:
    """``(pixels, "")`` for one image, resized and cropped by the model's ``transform`` (its ``pixels``, the first
    half, where it has one), or ``(None, the sentence saying why it cannot be read)``: the CPU path of every scan, in
    process and on Ray. A plain JPEG (:func:`interp.jpeg.decode_plain`) is decoded without holding the GIL, to the
    same pixels as Pillow's (with two reading threads Pillow's decoding took 1.2-1.3× as long,
    ``bench/bench_scan.py``); any other file by :func:`load_rgb`, which also words every error."""
    try:
        if hasattr(transform, "pixels_of"):
            source = read_bytes(source, name=name)  # read once: Pillow gets them where decode_plain does not
            rgb = decode_plain(source)
            if rgb is not None:
                return transform.pixels_of(rgb), ""
        first_half = getattr(transform, "pixels", None) or transform
        return first_half(load_rgb(source, name=name)), ""
    except (InterpError, OSError, ValueError) as exc:
        return None, str(exc) or type(exc).__name__


def _collate(batch):
    ok = [(i, x) for i, x, err in batch if x is not None]
    failed = [(i, err) for i, x, err in batch if x is None]
    xs = torch.stack([x for _, x in ok]) if ok else None
    return [i for i, _ in ok], xs, failed


class _Files(_Images):
    """For decoding on the model's device: a JPEG that decoding alone turns into the app's pixels
    (:func:`interp.jpeg.device_decodable`) comes back as its bytes; any other file is decoded, resized and cropped
    here (the CPU path) to ``uint8`` pixels, or yields its error."""

    def __getitem__(self, i: int):
        from interp.jpeg import device_decodable

        path = self.dataset.path_of(self.items[i])
        data = None
        try:
            if path.stat().st_size <= DEFAULT_MAX_BYTES:
                data = bytearray(path.read_bytes())
                if device_decodable(data):
                    return i, "jpeg", torch.frombuffer(data, dtype=torch.uint8)
        except OSError:
            pass  # the CPU path below reads it again and words the error as everywhere else
        return (i, *self.on_cpu(i, data))

    def on_cpu(self, i: int, data: bytes | bytearray | None = None) -> tuple[str, torch.Tensor | str]:
        """The CPU path for item ``i``, from ``data`` (its bytes, already read) or its file: ``("pixels", x)`` or
        ``("error", sentence)``."""
        x, error = self.read(i, data)
        return ("pixels", x) if x is not None else ("error", error)


def _collate_files(batch):
    """``((indices, bytes, lengths), pixels, errors)``: the batch's JPEGs as one flat ``uint8`` tensor and each one's
    length, so that a loader process hands them over as one block of shared memory, not one per image (two loader
    processes on 2 cores delivered 5,600 images/s so, 1,400 with a tensor per image, which the main process unpacks
    one by one; an H200's scan ran at 2,300 images/s before this and :func:`prepared_ahead`, 5,050 after); the CPU
    path's pixels and the errors as ``(index, value)`` pairs."""
    jpegs = [(i, x) for i, k, x in batch if k == "jpeg"]
    flat = torch.cat([x for _, x in jpegs]) if jpegs else torch.empty(0, dtype=torch.uint8)
    packed = ([i for i, _ in jpegs], flat, [len(x) for _, x in jpegs])
    return (packed, *([(i, x) for i, k, x in batch if k == kind] for kind in ("pixels", "error")))


DECODES = ("auto", "cpu", "device")


def resolve_decode(model: LoadedModel, decode: str) -> str:
    """``cpu`` (decoded on the CPU, :func:`read_pixels`) or ``device`` (JPEGs in batches where the model runs,
    :mod:`interp.jpeg`) for ``decode``; ``auto`` is ``device`` on a GPU whose preprocessing and decoder allow it.
    ``device`` is refused with a sentence where the model's preprocessing is not a centre crop that fits the resized
    image."""
    if decode not in DECODES:
        raise BadSettingError(f"decode must be one of {', '.join(DECODES)}, got {shown(decode)}.")
    if decode == "cpu" or (decode == "auto" and model.device.type != "cuda"):
        return "cpu"
    from interp.jpeg import decoder, tried

    fits = getattr(model.transform, "pixels_on_device_ok", False)
    ok = fits and decoder(model.device) is not None
    if decode == "auto":
        return "device" if ok else "cpu"
    if not fits:
        raise BadSettingError(f"{model.name}'s preprocessing ({model.transform!r}) cannot run on the device; decode "
                              "on the CPU instead.")  # fmt: skip
    if not ok:
        names = tried()
        raise BadSettingError(f"No JPEG decoder works on {model.device}: {' and '.join(names)} "
                              f"{'is' if len(names) == 1 else 'are'} missing or built without support for it (pip "
                              "install torchcodec, the build for your CUDA version; the server's log says why each "
                              "failed); decode on the CPU instead.")  # fmt: skip
    return decode


def read_batches(model: LoadedModel, dataset: Dataset, items: list[Item], batch_size: int, workers: int, decode: str):
    """``(files, batches)``: the dataset's reader and its collated batches as the loader gives them, before anything
    is decoded or normalised where the model runs: loader processes (``workers``) or threads of this process.

    Each loader process reads whole batches. Read in pieces of a sixteenth of a batch and put together here, the
    loader of an H200 machine (8 processes, 4,096 JPEGs) handed over 3,000 images/s, 3,760 after its first batch,
    against 11,000-14,900 and 28,700 reading whole batches (runs on the same day): each piece costs a hand-over, and
    the first batch came no sooner (0.33 s against 0.24-0.26: starting the processes is most of it)."""
    device_path = decode == "device"
    files = (_Files if device_path else _Images)(dataset, items, model.transform)
    collate = _collate_files if device_path else _collate
    if workers:
        loader = torch.utils.data.DataLoader(files, batch_size=batch_size, num_workers=workers, collate_fn=collate,
                                             persistent_workers=False, prefetch_factor=2)  # fmt: skip
    else:
        loader = _threaded(files, collate, batch_size, ahead=model.device.type == "cuda")
    return files, loader


def _batches(model: LoadedModel, dataset: Dataset, items: list[Item], batch_size: int, workers: int, decode: str):
    """``(indices, x, failed, on_device)`` per batch: the indices of ``items`` in ``x`` (normalised, ``None`` when no
    image of the batch could be read), ``(index, error)`` for the unreadable, how many were decoded on the device.
    Loader workers read (and, on the CPU path, decode) the next batches while this one runs."""
    files, loader = read_batches(model, dataset, items, batch_size, workers, decode)
    if decode != "device":
        for indices, x, failed in loader:
            yield indices, (model.normalised(x) if x is not None else None), failed, 0
        return
    prepare = device_preparer(model, files)
    if model.device.type == "cuda":
        yield from prepared_ahead(loader, prepare, model.device)
    else:
        yield from map(prepare, loader)


def device_preparer(model: LoadedModel, files: _Files) -> Callable:
    """``prepare(batch)`` for the device path: a loader's batch (:func:`_collate_files`) as ``(indices, x, failed,
    on_device)``: its JPEGs decoded together where the model runs, resized, cropped and normalised there with the
    pixels the loader decoded on the CPU; a JPEG the decoder refuses takes the CPU path here (rare)."""
    from interp.jpeg import decode_on

    def prepare(batch):
        (ids, flat, lengths), pixels, failed = batch
        jpegs = list(zip(ids, flat.split(lengths), strict=True))
        decoded = decode_on([data for _, data in jpegs], model.device)
        on_device = [(i, im) for (i, _), im in zip(jpegs, decoded, strict=True) if im is not None]
        for i, data in (pair for pair, im in zip(jpegs, decoded, strict=True) if im is None):
            kind, value = files.on_cpu(i, data.numpy().tobytes())
            (pixels if kind == "pixels" else failed).append((i, value))
        parts = []
        if on_device:
            parts.append(model.transform.pixels_on_device([im for _, im in on_device]))
        if pixels:
            parts.append(torch.stack([x for _, x in pixels]).to(model.device))
        x = model.transform.normalize(torch.cat(parts)) if parts else None
        return [i for i, _ in on_device] + [i for i, _ in pixels], x, failed, len(on_device)

    return prepare


def _threaded(files: _Images, collate: Callable, batch_size: int, ahead: bool):
    """Batches read by threads of this process (the JPEG decoder, Pillow and torch's resize let go of the GIL). On
    the CPU one batch at a time, between the model's passes, so that the pass and the reading each have every core in
    turn instead of fighting over them, this thread reading beside the others
    (:func:`interp.runtime.map_together`); with ``ahead`` (a model on a GPU) the next batch is read while this one
    runs."""
    n = len(files)
    cores = max(1, min(batch_size, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=cores if ahead else max(1, cores - 1)) as pool:
        if not ahead:
            for start in range(0, n, batch_size):
                batch = range(start, min(start + batch_size, n))
                yield collate(map_together(files.__getitem__, batch, pool, cores - 1))
            return
        pending: deque[list[Future]] = deque()
        for start in range(0, n, batch_size):
            pending.append([pool.submit(files.__getitem__, i) for i in range(start, min(start + batch_size, n))])
            if len(pending) > 1:
                yield collate([f.result() for f in pending.popleft()])
        while pending:
            yield collate([f.result() for f in pending.popleft()])


def default_workers(model: LoadedModel) -> int:
    """Loader processes for a scan: on a GPU one per spare core (at most 4), reading ahead while the GPU runs; on
    the CPU none (threads read each batch between passes, :func:`_threaded`). On 2 cores with EfficientNet-Lite0, a
    loader process beside the pass ran the scan at 0.32-0.38 of a bare forward, reading in turn with the pass
    0.80-0.87 (``bench/bench_scan.py --workers 0 1``, 128-256 images): the model's two threads wait on each other at
    every layer, and one descheduled for the loader holds the other (a batch's forward pass took 0.68 s beside a
    process resizing images, 0.25 s alone; 0.41 s in one thread either way)."""
    return min(4, max(0, (os.cpu_count() or 1) - 1)) if model.device.type == "cuda" else 0
