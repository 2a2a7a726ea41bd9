"""The loaders every page shares, wrapped in ``st.cache_*``: settings, models, images, datasets, predictions.

Cached resources are shared by every browser session at once; the engine guarantees nothing leaves state on them
(every use of a model goes through its gate, :mod:`interp.models.gate`). Caches that serve one page sit beside that
page's helpers instead: drawn overlays and figures (``attribution_ui``, ``attention_ui``), a scan's rows
(``gallery_ui``), the concept library (``concept_library_ui``). Decoded images, whichever page reads them, are kept
by :func:`held` under one budget in bytes.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import logging
import threading
import weakref
from collections.abc import Callable
from typing import TypeVar

import cachetools
import numpy as np
import streamlit as st
from PIL import Image

import interp
from interp.cache import one_at_a_time
from interp.config import ENV_DEVICE, resolve_device
from interp.datasets import ConfiguredRoots, Dataset, DatasetRoot
from interp.errors import NotEnoughMemoryError
from interp.images import LoadedImage, picture_bytes
from interp.models import LoadedModel, availability, describe
from interp.predict import Prediction, cached_predict
from interp.runtime import memory_limit_mb

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_MODELS_IN_MEMORY = 2  # Community Cloud gives 0.7-2.7 GB; two ResNet-50-sized models fit
THUMBNAIL_SIDE = 160


@st.cache_resource(show_spinner=False)
def writable_settings() -> tuple[interp.Settings, str | None]:
    """The settings the environment gives, with a cache folder this process can write, and the sentence saying so
    when that is not the configured one (:meth:`interp.Settings.writable`; logged once, shown on the home page). A
    setting the app cannot use raises its sentence (:func:`dashboard.page.page_setup` shows it on every page)."""
    chosen, note = interp.Settings.from_env().writable()
    try:
        resolve_device(chosen.device)
    except ValueError as exc:
        raise ValueError(f"{ENV_DEVICE}={chosen.device!r}: {exc}") from None
    if note:
        log.warning(note)
    return chosen, note


def settings() -> interp.Settings:
    return writable_settings()[0]


@st.cache_resource(show_spinner=False)
def result_cache() -> interp.ResultCache:
    return interp.ResultCache.from_settings(settings())


def model(
    name: str,
    weights_digest: str | None,
    weights_name: str | None,
    class_names: tuple[str, ...] | None,
    weights: bytes | None,
) -> LoadedModel:
    """The model ``name`` (see :func:`cached_model`). When it would not fit in the memory left but would once the
    models kept for every visitor were let go, they are let go (a visitor still using one keeps it until their page
    finishes; the next use loads it again) and the load is tried again: first only the untrained copy the sanity
    checks use, then every kept model. Otherwise the engine's sentence says why."""
    try:
        return cached_model(name, weights_digest, weights_name, class_names, weights)
    except NotEnoughMemoryError as exc:
        if exc.need_mb is None or exc.room_mb is None or exc.need_mb > exc.room_mb + kept_mb():
            raise
    untrained.clear()
    gc.collect()
    try:
        loaded = cached_model(name, weights_digest, weights_name, class_names, weights)
        log.warning("let go of the untrained copy to make room for %s", name)
        return loaded
    except NotEnoughMemoryError:
        cached_model.clear()
        gc.collect()
        log.warning("let go of every kept model to make room for %s", name)
    return cached_model(name, weights_digest, weights_name, class_names, weights)


_KEPT: weakref.WeakSet[LoadedModel] = weakref.WeakSet()


def kept_mb() -> float:
    """The weights of the models this server keeps in memory now (in the caches, or in use by a page), in MB."""
    return sum(p.numel() * p.element_size() for m in list(_KEPT) for p in m.structure.parameters()) / 2**20


@st.cache_resource(max_entries=MAX_MODELS_IN_MEMORY, show_spinner="Loading the model…")
def cached_model(
    name: str,
    weights_digest: str | None,
    weights_name: str | None,
    class_names: tuple[str, ...] | None,
    _weights: bytes | None,
) -> LoadedModel:
    """The model ``name`` with its default weights, or with uploaded weights identified by ``weights_digest``."""
    loaded = interp.load_model(
        name, _weights, weights_name=weights_name, class_names=class_names, device=settings().device
    )
    interp.predict(loaded, Image.new("RGB", (64, 64)))  # warm-up: the first call pays torch's one-time set-up
    _KEPT.add(loaded)
    return loaded


@st.cache_resource(max_entries=1, show_spinner="Building an untrained copy…")
def untrained(name: str, class_names: tuple[str, ...]) -> LoadedModel:
    """``name`` with seeded random weights and the trained model's ``class_names`` (so as many outputs, each named
    alike): the reference for sanity checks of explanations."""
    loaded = interp.load_model(name, "random", class_names=class_names, device=settings().device)
    _KEPT.add(loaded)
    return loaded


@st.cache_data(ttl=60, show_spinner=False)
def model_choices() -> dict[str, bool]:
    """Every registered model's name and whether it can be loaded here: the picker's list, refreshed every minute so
    a restored network is noticed. Only the chosen model's card reads its whole row (:func:`model_row`): counting a
    model's parameters builds its skeleton, and building all ten took a visitor's first page 2.0 s."""
    return {name: availability(name).available for name in interp.SPECS}


@st.cache_data(ttl=60, show_spinner=False)
def model_row(name: str) -> dict:
    return describe(name)


def uploaded_image(digest: str, name: str, data: bytes) -> LoadedImage:
    """An uploaded image decoded once per distinct content (``digest`` is the SHA-256 of the bytes)."""
    return held(("upload", digest, name), lambda: interp.load_image(data, name=name))


HELD_IMAGES_MB = 512
"""What the decoded images kept for later reruns and other visitors (:func:`held`) may take together at most. Before
it, each page's cache was bounded in entries only: 32 uploads, 32 dataset images, two spectra of up to 1,000 images,
16 concept sets of up to 500 and four sets being made could hold several gigabytes, more than Community Cloud gives."""
HELD_IMAGES_SHARE = 0.25
"""Under a memory limit, the images' share of it (:func:`held_images_mb`)."""


def held_images_mb() -> int:
    """The budget of :func:`held`: :data:`HELD_IMAGES_MB`, or a quarter of the process's memory limit where that is
    less (``$INTERP_MEMORY_LIMIT_MB`` or the container's, :func:`interp.runtime.memory_limit_mb`). The server holds
    about 560 MB before any work, so 512 MB of images would leave a 750 MB container nothing for a model's pass;
    there the budget is 187 MB (a spectrum of 1,000 photos, held at Lite0's size, is about 350 MB: given to its
    session, not kept), at 1 GB 250 MB, from about 2 GB the whole 512."""
    limit = memory_limit_mb()
    return HELD_IMAGES_MB if limit is None else max(1, int(min(HELD_IMAGES_MB, limit * HELD_IMAGES_SHARE)))


def image_bytes(value: object) -> int:
    """The memory the pictures in ``value`` hold: a :class:`LoadedImage`, or tuples and lists holding them
    (:func:`interp.images.picture_bytes`: an ``RGB`` picture takes 4 bytes a pixel, not 3; counted as 3, the 512 MB
    budget held 683 MB of pictures). Files listed without their pictures (``ImageOnDisk``) count nothing."""
    if isinstance(value, LoadedImage):
        return picture_bytes(value.image)
    if isinstance(value, (list, tuple)):
        return sum(image_bytes(v) for v in value)
    return 0


@st.cache_resource(show_spinner=False)
def _held_images() -> tuple[cachetools.LRUCache, threading.Lock]:
    budget = held_images_mb()
    log.info("Decoded images kept for reruns and other visitors: at most %d MB", budget)
    return cachetools.LRUCache(budget * 2**20, getsizeof=lambda v: max(1, image_bytes(v))), threading.Lock()


def held(key: tuple, read: Callable[[], T], spinner: str | None = None) -> T:
    """``read()``'s images, read once for every session and kept under :func:`held_images_mb`, least recently used
    going first. Sessions asking for the same key at once wait for one reading (a class opening one link reads its
    images once). Keys name what is read (an upload's by its file id or digest, so no visitor reaches another's); a
    value larger than the whole budget is given to its session and not kept. ``spinner``: shown while reading, or
    waiting for another session's reading."""
    cache, lock = _held_images()
    with lock:
        if key in cache:
            return cache[key]
    with st.spinner(spinner) if spinner else contextlib.nullcontext(), one_at_a_time(("held images", key)):
        with lock:  # the spinner shows while waiting for another session's reading too
            if key in cache:
                return cache[key]
        value = read()
        with lock, contextlib.suppress(ValueError):  # cachetools: larger than the budget
            cache[key] = value
    return value


@st.cache_resource(show_spinner=False)
def sample_image(name: str) -> LoadedImage:
    return interp.load_sample(name)


@st.cache_data(show_spinner=False)
def sample_thumbnail(name: str) -> bytes:
    """A square centre crop of a sample as JPEG bytes (encoded once, not on every rerun)."""
    im = interp.load_sample(name).image
    side = min(im.size)
    left, top = (im.width - side) // 2, (im.height - side) // 2
    crop = im.crop((left, top, left + side, top + side)).resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    crop.save(buf, "JPEG", quality=85)
    return buf.getvalue()


@st.cache_data(max_entries=64, show_spinner=False)
def model_view(model_key: str, image_digest: str, _model: LoadedModel, _image: LoadedImage) -> np.ndarray:
    """The image as the model sees it, computed once per model and image rather than on every rerun."""
    return _model.view(_image.image)


@st.cache_data(max_entries=8, show_spinner=False)
def layer_outputs(model_key: str, _model: LoadedModel) -> dict[str, str]:
    """Each layer's output for one image as the layer boxes show it (``"80 × 14 × 14"``), from one pass of a blank
    image (:func:`interp.features.layer_table`); empty where that pass fails, and the boxes show bare names."""
    from interp.errors import InterpError
    from interp.features import layer_table

    try:
        table = layer_table(_model, _model.layer_names())
    except (InterpError, RuntimeError) as exc:  # a model whose blank pass fails fails on images too, and says so there
        log.warning("no layer shapes for %s: %s", model_key, exc)
        return {}
    return {layer.name: " × ".join(map(str, layer.output)) for layer in table if layer.output}


def layer_label(model: LoadedModel) -> Callable[[str], str]:
    """How a layer box names a layer of ``model``: ``"blocks.3 · 80 × 14 × 14"``, its output for one image. Only for
    boxes whose key belongs to one model: a box shared by models would show a name's old label (Streamlit keeps the
    label a kept option had); such a box (the Attribution page's CAM layer) says the output in a caption under it."""
    shapes = layer_outputs(model.key, model)
    return lambda name: f"{name} · {shapes[name]}" if name in shapes else name


SHOWN_CLASSES = 5  # a model with at most twice as many classes shows them all, each with its probability


def prediction(loaded: LoadedModel, image: LoadedImage) -> Prediction:
    """The top-5 classes, or every class of a model with at most 10 (the chart and the class boxes then give each its
    probability, not one class in six by its index), through the disk cache: a rerun or another session with the
    same inputs computes nothing."""
    top_k = loaded.num_classes if loaded.num_classes <= 2 * SHOWN_CLASSES else SHOWN_CLASSES
    return cached_predict(loaded, image, result_cache(), top_k)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@st.cache_resource(max_entries=2, show_spinner="Capturing attention…")  # ViT-B/16: ~45 MB each with gradients
def attention(model_key: str, image_digest: str, target: int | None, _model: LoadedModel, _image: LoadedImage):
    """Every layer's attention for one image (and its gradient for ``target``); kept for the last few choices, so
    moving between views or settings never runs the model again."""
    from interp.attention import capture

    return capture(_model, _model.preprocess(_image.image)[None].to(_model.device), target)


# ------------------------------------------------------------------------------------------------------- datasets


@st.cache_data(ttl=60, show_spinner=False)
def dataset_settings() -> ConfiguredRoots:
    """Configured datasets (built-in shapes split, ``$INTERP_DATASETS``, ``st.secrets["datasets"]``) and a sentence
    for each that could not be read; re-read every minute so an operator's change is picked up without a restart."""
    from interp.datasets import read_roots

    try:
        extra = list(st.secrets.get("datasets", []))
    except Exception:  # no secrets file: that is the usual case, not an error
        extra = []
    return read_roots(settings().cache_dir, extra)


def dataset_roots() -> list[DatasetRoot]:
    """The configured datasets that could be read (a wrong entry costs only itself)."""
    return dataset_settings().roots


@st.cache_resource(max_entries=6, show_spinner="Reading the dataset…")
def dataset(root: DatasetRoot) -> Dataset:
    """A dataset opened once per process with its kind's reader (the shapes split is generated on first use)."""
    return root.open()


def dataset_image(root: DatasetRoot, relpath: str) -> LoadedImage:
    return held(("dataset image", root, relpath),
                lambda: interp.load_image(dataset(root).path_of(relpath), name=relpath.rsplit("/", 1)[-1]))


@st.cache_data(max_entries=4096, show_spinner=False)
def dataset_thumbnail(root: DatasetRoot, relpath: str) -> bytes | None:
    """A small JPEG of a dataset image, or ``None`` when the file cannot be read. Read at the thumbnail's size (JPEGs
    decode at a reduced scale: 1.8 ms for a photo of 1024×768, 4.3 at full size then shrunk; 3.6 against 29.5 at
    2048×1536), not through :func:`dataset_image`, whose full-size pictures a gallery page of 48 thumbnails would
    push out of the images held."""
    try:
        im = interp.load_image(dataset(root).path_of(relpath), max_side=THUMBNAIL_SIDE).image
    except Exception:  # an unreadable file shows as a placeholder in the grid; the scan lists it
        return None
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return buf.getvalue()


@st.cache_data(max_entries=64, show_spinner=False)
def object_truth(root: DatasetRoot, relpath: str, model_key: str, _model: LoadedModel) -> np.ndarray | None:
    """Where the object is in a dataset image, in the model's view: the engine's :func:`object_mask` (the shapes
    world's exact mask, else Open Images' boxes), the one the dataset's trust scores read; ``None`` where unknown."""
    from interp.evaluation import object_mask
    from interp.shapes import mask_in_view

    ds = dataset(root)
    item = next((it for it in ds.items if it.path == relpath), None)
    mask = None if item is None else object_mask(ds, item, dataset_image(root, relpath).image.size)
    return None if mask is None else mask_in_view(mask, _model.view)
