"""Layer activations and class gradients at a layer, batched and cached on disk per (model, layer, image).

Activations are flattened, as in TCAV (Kim et al. 2018): a CAV is a direction in the layer's whole activation
space. Each image's row is cached under its content hash, so a set that shares images with another, or a second
TCAV run at the same layer, does no second forward pass over them.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from interp.cache import ResultCache, result_key
from interp.errors import BadSettingError, at_least, check_class, name_list
from interp.images import LoadedImage, image_list
from interp.models.given import loaded
from interp.models.hooks import first_output, hooked, with_first
from interp.models.loading import LoadedModel
from interp.models.specs import called_layer
from interp.runtime import map_together, prepared_ahead

Progress = Callable[[int, int], None]
_SEQUENCES = (torch.nn.Sequential, torch.nn.ModuleList)


def resolve_layer(model: LoadedModel, layer: str) -> torch.nn.Module:
    """The module at ``layer`` (a dotted path from ``named_modules``); a sentence naming close ones if absent."""
    model = loaded(model, "resolve_layer")
    return model.layer(layer)


def default_layers(model: LoadedModel) -> list[str]:
    """Two layers worth testing first: the CAM layer (late, semantic) and one about halfway through."""
    model = loaded(model, "default_layers")
    names = list(model.layer_names())
    late = model.spec.cam_layer if model.spec.cam_layer in names else names[-1]
    # timm keeps the body in one sequence: ViT, EfficientNet and MobileNet "blocks", ConvNeXt "stages"
    net = model.structure
    body = next((n for n in ("blocks", "stages") if isinstance(getattr(net, n, None), _SEQUENCES)), None)
    depth = len(getattr(net, body)) if body is not None else 0
    # otherwise the stages timm lists for feature extraction: ResNet's layer1-4, DenseNet's dense blocks, VGG's pools
    stages = [f["module"] for f in getattr(net, "feature_info", None) or [] if f.get("module") in names]
    if body is not None and depth > 1:
        mid = f"{body}.{depth // 2}"
    elif len(stages) > 1:
        mid = stages[len(stages) // 2]
    else:
        head = ("global_pool", "head", "fc", "classifier", "pre_logits", "flatten", "drop")
        top = [n for n in names if "." not in n and n not in ("conv_stem", "bn1", "stem") and not n.startswith(head)]
        mid = top[len(top) // 2] if top else late
    return list(dict.fromkeys(called_layer(net, name) or name for name in (mid, late)))


class _LayerReached(Exception):
    """Raised by the hook that keeps a layer's output, to end the forward pass there."""


def _cached_rows(cache: ResultCache | None, keys: list[str], name: str) -> list[np.ndarray | None]:
    """The array ``name`` of each key found in ``cache``; ``None`` where it must be computed."""
    if cache is None:
        return [None] * len(keys)
    hits = [cache.get(key) for key in keys]
    return [hit.arrays[name] if hit is not None else None for hit in hits]


GPU_PREPARE_THREADS = 8
"""Threads resizing images for a model on a GPU. On an H100 host's 16 cores, resizing to uint8 alone ran 670 images/s
on one thread, 2,400 on 4 and 3,100-3,300 on 8 (PIL releases the GIL while it resamples). While the model runs they
share the GIL with the thread launching its kernels: extraction from decoded images then ran 911 / 957 / 1,084 / 1,076
images/s with 2 / 4 / 8 / 12 threads on EfficientNet-Lite0 (one thread and float work on the CPU: 509), 564 / 519 /
489 / 489 on ViT-B/16 (one thread: 445)."""


def _prefetched(
    model: LoadedModel, images: Sequence[LoadedImage], chunks: list[list[int]], *, ahead: bool | None = None
) -> Iterator[torch.Tensor]:
    """Batches ready for the model: prepared in turn with its passes on the CPU, ahead of them on a GPU (``ahead``:
    whether the model is on one, unless given).

    Ahead: a forward pass on a GPU outruns one core's resizing 5-10 times. A pool of threads prepares each picture
    two batches ahead; where the model's preprocessing is a centre crop they only copy each picture out of Pillow and
    the GPU resizes and crops it (:meth:`~interp.models.preprocess.CentreCropTransform.pixels_on_device`, within 2
    grey levels of timm's pixels), otherwise they resize and crop to ``uint8`` and the batch is normalised on the GPU
    (:meth:`LoadedModel.batch_of`), which also keeps float work off the threads. The batch before the model's next is
    sent over (:func:`_moved`: one copy per picture size, not per picture), resized and normalised by a thread of its
    own on a CUDA stream of its own while the model runs (:func:`interp.runtime.prepared_ahead`, as a scan's batches
    are); before, this thread copied each picture over and resized the batch between passes, on the model's stream.

    In turn: each batch is prepared just before it runs, by this thread and one more per other core, in turn with
    the pass (as a scan reads, :func:`interp.runtime.map_together`). The forward pass keeps every core busy, and a
    thread resizing beside it competes with torch's threads for them: on 2 cores, EfficientNet-Lite0 extraction ran
    0.83× a bare forward pass with one preparing thread beside the pass. Since the network runs channels-last there
    (:func:`interp.models.loading.channels_last_pays`) its pass is a third shorter, and preparing each batch in this
    thread alone came to 0.87-0.88× a bare pass; a pool thread per core gave 0.90× once the threads copied pixels
    with numpy rather than torch (``preprocess._channels_first``; with torch's copy they ran 0.78×), and 0.88-0.93×
    in three later runs; this thread and one pool thread 0.94-0.97× in runs beside those (``bench/bench_concepts.py``,
    medians)."""
    if not (model.device.type == "cuda" if ahead is None else ahead):
        helpers = max(0, (os.cpu_count() or 1) - 1)  # and this thread: one per core
        with ThreadPoolExecutor(max_workers=max(1, helpers)) as pool:
            for chunk in chunks:
                yield model.batch_of(map_together(lambda i: model.pixels(images[i].image), chunk, pool, helpers))
        return
    if not chunks:
        return
    workers = min(GPU_PREPARE_THREADS, os.cpu_count() or 1)
    on_device = getattr(model.transform, "pixels_on_device_ok", False)
    prepare = _whole_pixels if on_device else model.pixels
    with ThreadPoolExecutor(max_workers=workers) as pool:

        def submitted() -> Iterator[list[Future]]:
            """Each chunk's pictures, handed out as the pool's futures one chunk after the pool was given them."""
            given: deque[list[Future]] = deque()
            for chunk in chunks:
                given.append([pool.submit(lambda i: prepare(images[i].image), i) for i in chunk])  # files decode there
                if len(given) > 1:
                    yield given.popleft()
            yield from given

        def sent(futures: list[Future]) -> torch.Tensor:
            parts = [f.result() for f in futures]
            if on_device:  # whole pictures over, resized and cropped on the GPU, as a scan's decoded JPEGs are
                transform = model.transform
                return transform.normalize(transform.pixels_on_device(_moved(parts, model.device)))
            return model.batch_of(parts)

        yield from prepared_ahead(submitted(), sent, model.device)


def _moved(pictures: list[np.ndarray], device: torch.device) -> list[torch.Tensor]:
    """``(H, W, 3)`` ``uint8`` pictures (Pillow's arrays) on ``device`` as ``(3, H, W)``, in the order given, with one
    copy per picture size: those of a size are stacked into pinned memory on a GPU and sent over without waiting; each
    comes back as a view of its stack there."""
    out: list[torch.Tensor | None] = [None] * len(pictures)
    sizes: dict[tuple[int, ...], list[int]] = {}
    for i, picture in enumerate(pictures):
        sizes.setdefault(picture.shape, []).append(i)
    cuda = torch.device(device).type == "cuda"
    for shape, members in sizes.items():
        stack = torch.empty((len(members), *shape), dtype=torch.uint8, pin_memory=cuda)
        np.stack([pictures[i] for i in members], out=stack.numpy())
        there = stack.to(device, non_blocking=cuda).permute(0, 3, 1, 2)
        for j, i in enumerate(members):
            out[i] = there[j]
    return out  # type: ignore[return-value]


def _whole_pixels(image) -> np.ndarray:
    """The whole RGB picture as Pillow's ``(H, W, 3)`` ``uint8`` array (one copy out of Pillow, read-only)."""
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def activations(
    model: LoadedModel,
    layer: str,
    images: Sequence[LoadedImage],
    *,
    cache: ResultCache | None = None,
    batch_size: int = 16,
    progress: Progress | None = None,
) -> np.ndarray:
    """``(N, D)`` float32 flattened activations of ``layer`` for each image, in the order given.

    Images already in ``cache`` for this model and layer are not run again.
    """
    model = loaded(model, "activations")
    return activations_by_layer(model, [layer], images, cache=cache, batch_size=batch_size, progress=progress)[layer]


def activations_by_layer(
    model: LoadedModel,
    layers: Sequence[str],
    images: Sequence[LoadedImage],
    *,
    cache: ResultCache | None = None,
    batch_size: int = 16,
    progress: Progress | None = None,
    precision: str = "fp32",
) -> dict[str, np.ndarray]:
    """:func:`activations` at several layers from one forward pass per batch, which ends once every layer still
    needed has given its output. Two layers cost one pass to the deeper one, not a pass to each.

    Returns ``{layer: (N, D_layer)}`` in the order of ``layers``. An (image, layer) already in ``cache`` is not
    computed again; an image all of whose layers are cached is not run at all. ``precision``: ``fp32``, ``tf32`` or
    ``bf16`` (:mod:`interp.models.precision`; rows are cached per precision, returned as float32).
    """
    model = loaded(model, "activations_by_layer")
    from interp.models.precision import check_precision, precision_scope

    check_precision(precision)
    layers = name_list(layers, "layers")  # "bn2" alone is one layer
    modules = {layer: resolve_layer(model, layer) for layer in dict.fromkeys(layers)}

    def compute(x: torch.Tensor, wanted: list[str]) -> list[torch.Tensor]:
        with precision_scope(model.device, precision):
            kept = _forward_to(model, {layer: modules[layer] for layer in wanted}, x)
        return [kept[layer] for layer in wanted]

    params = {} if precision == "fp32" else {"precision": precision}  # fp32 keeps the keys it always had
    return _rows_by_layer(model, list(modules), images, "activation", "a", params, compute, cache, batch_size, progress)


def _rows_by_layer(
    model: LoadedModel,
    layers: list[str],
    images: Sequence[LoadedImage],
    method: str,
    name: str,
    params: dict,
    compute: Callable[[torch.Tensor, list[str]], list[torch.Tensor]],
    cache: ResultCache | None,
    batch_size: int,
    progress: Progress | None,
) -> dict[str, np.ndarray]:
    """One flattened row per image and layer: from ``cache`` where it holds them (under ``method`` and ``params``
    with the layer), else from ``compute(batch, layers the batch still needs)``, which returns a tensor per layer."""
    batch_size = at_least(batch_size, 1, "batch size")
    images = image_list(images)  # paths, arrays or pictures given as a set
    if not images:
        raise BadSettingError("a layer's activations need at least one image; the set given is empty.")

    def key(image: LoadedImage, layer: str) -> str:
        return result_key(model=model.key, image=image.digest, method=method, params={**params, "layer": layer})

    keys = {layer: [key(im, layer) for im in images] for layer in layers}
    rows = {layer: _cached_rows(cache, keys[layer], name) for layer in layers}
    todo = [i for i in range(len(images)) if any(rows[layer][i] is None for layer in layers)]
    # each layer's rows go straight into one (N, D) array, made when the first row's width is known: a batch's
    # output is copied there and let go, instead of living until a final stack (1,024 images at Lite0's two default
    # layers, a 306 MB result: the process's peak rose 270 MB over the call, against 319 MB with the stack)
    result: dict[str, np.ndarray | None] = {layer: None for layer in layers}

    def into(layer: str, width: int) -> np.ndarray:
        if result[layer] is None:
            result[layer] = np.empty((len(images), width), np.float32)
        return result[layer]  # type: ignore[return-value]

    done = len(images) - len(todo)
    if progress is not None:
        progress(done, len(images))

    def filed(chunk: list[int], wanted: list[str], copied: Callable[[], list[np.ndarray]]) -> None:
        nonlocal done
        for layer, flat in zip(wanted, copied(), strict=True):
            target = into(layer, flat.shape[1])
            for i, row in zip(chunk, flat, strict=True):
                if rows[layer][i] is None:  # each image is in one chunk: computed once, left None in ``rows``
                    target[i] = row
                    if cache is not None:
                        cache.put(keys[layer][i], {name: target[i]}, {**params, "layer": layer})
        done += len(chunk)
        if progress is not None:
            progress(done, len(images))

    chunks = [todo[s : s + batch_size] for s in range(0, len(todo), batch_size)]
    with _filed_one_behind(filed) as hold:
        for chunk, x in zip(chunks, _prefetched(model, images, chunks), strict=True):
            wanted = [layer for layer in layers if any(rows[layer][i] is None for i in chunk)]
            copied = _copied_out(compute(x, wanted), len(chunk))
            del x
            hold(chunk, wanted, copied)
    for layer in layers:
        if result[layer] is None:  # every row came from the cache
            result[layer] = np.stack(rows[layer]).astype(np.float32, copy=False)  # type: ignore[arg-type]
        else:
            for i, row in enumerate(rows[layer]):
                if row is not None:  # from the cache
                    result[layer][i] = row  # type: ignore[index]
    return result  # type: ignore[return-value]


@contextlib.contextmanager
def _filed_one_behind(filed: Callable[..., None]) -> Iterator[Callable[..., None]]:
    """``hold(*batch)``: files the batch held before (``filed(*it)``) and holds this one, so a batch's rows are filed
    once the next batch's pass is launched (from a GPU they come over while it runs, :func:`_copied_out`). The last
    one is filed when the block ends, also when a later batch fails or the run is stopped: the rows computed before
    it are kept (and cached)."""
    held: list[tuple] = []

    def hold(*batch) -> None:
        if held:
            filed(*held.pop())
        held.append(batch)

    try:
        yield hold
    finally:
        if held:
            filed(*held.pop())


def _copied_out(outputs: list[torch.Tensor], n: int) -> Callable[[], list[np.ndarray]]:
    """A function giving each output as ``(n, D)`` float32 rows on the CPU. From a GPU the copies are started here
    into pinned memory without waiting, and the function waits for them: launched before the next batch's pass, they
    come over while it runs, and the rows are filed meanwhile (before, each batch's copy was synchronous, from
    pageable memory, and the GPU stood idle while this thread filed the rows)."""
    rows = [out.float().reshape(n, -1) for out in outputs]
    if not any(r.is_cuda for r in rows):
        return lambda: [r.numpy() for r in rows]
    host = [torch.empty(r.shape, dtype=torch.float32, pin_memory=True) for r in rows]
    for h, r in zip(host, rows, strict=True):
        h.copy_(r, non_blocking=True)  # the device's rows are let go on return: the copies on this stream come first
    copied = torch.cuda.Event()
    copied.record()

    def wait() -> list[np.ndarray]:
        copied.synchronize()
        return [h.numpy() for h in host]

    return wait


def _forward_to(model: LoadedModel, modules: dict[str, torch.nn.Module], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The outputs of ``modules`` for the batch ``x``; the pass stops as soon as the last of them has one (the
    layers after it would compute nothing we keep)."""
    kept: dict[str, torch.Tensor] = {}
    with model.exclusive(), torch.inference_mode(), hooked() as handles:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(_keeper(kept, name, stop_at=len(modules))))
        try:
            model.model(x)
        except _LayerReached:
            pass
    _check_reached(model, modules, kept)
    return kept


def _keeper(kept: dict[str, torch.Tensor], layer: str, stop_at: int | None = None):
    """A forward hook putting its module's (first) output in ``kept[layer]``; with ``stop_at``, it ends the forward
    pass once ``kept`` holds that many outputs.

    A pass that goes on continues with a copy of the output: the next step may write into its input (timm's
    ``ReLU(inplace=True)`` after a block's ``bn1``, ``x += shortcut`` after its ``bn2``), which would change what is
    kept (``bn1`` read with ``layer4`` came out rectified). Gradients reach the kept output through the copy."""

    def keep(module, inputs, output):
        out = first_output(output)
        kept.setdefault(layer, out)
        if stop_at is not None and len(kept) >= stop_at:
            raise _LayerReached
        onward = out.clone()
        return with_first(output, onward)

    return keep


def _check_reached(model: LoadedModel, modules: dict[str, torch.nn.Module], kept: dict[str, torch.Tensor]) -> None:
    missing = [layer for layer in modules if layer not in kept]
    if missing:
        raise BadSettingError(
            f"{', '.join(missing)} of {model.name} is not run by its forward pass (its output is never computed); "
            "choose another layer."
        )


def class_gradients(
    model: LoadedModel,
    layer: str,
    images: Sequence[LoadedImage],
    target: int,
    *,
    cache: ResultCache | None = None,
    batch_size: int = 8,
    progress: Progress | None = None,
) -> np.ndarray:
    """``(N, D)`` gradient of the ``target`` logit with respect to the flattened activations of ``layer``.

    A TCAV sensitivity is this gradient's dot product with a CAV (Kim et al. 2018, eq. 1).
    """
    model = loaded(model, "class_gradients")
    return class_gradients_by_layer(
        model, [layer], images, target, cache=cache, batch_size=batch_size, progress=progress
    )[layer]


def class_gradients_by_layer(
    model: LoadedModel,
    layers: Sequence[str],
    images: Sequence[LoadedImage],
    target: int,
    *,
    cache: ResultCache | None = None,
    batch_size: int = 8,
    progress: Progress | None = None,
) -> dict[str, np.ndarray]:
    """:func:`class_gradients` at several layers from one forward and one backward pass per batch.

    Returns ``{layer: (N, D_layer)}`` in the order of ``layers``; what ``cache`` holds is not computed again.
    """
    model = loaded(model, "class_gradients_by_layer")
    target = check_class(target, model.num_classes, model.name, model.class_names)
    layers = name_list(layers, "layers")  # "bn2" alone is one layer
    modules = {layer: resolve_layer(model, layer) for layer in dict.fromkeys(layers)}

    def compute(x: torch.Tensor, wanted: list[str]) -> list[torch.Tensor]:
        kept: dict[str, torch.Tensor] = {}
        with model.exclusive(), torch.enable_grad():
            with hooked() as handles:
                handles.extend(modules[layer].register_forward_hook(_keeper(kept, layer)) for layer in wanted)
                logits = model.model(x.requires_grad_(True))
            _check_reached(model, {layer: modules[layer] for layer in wanted}, kept)
            return list(torch.autograd.grad(logits[:, target].sum(), [kept[layer] for layer in wanted]))

    return _rows_by_layer(
        model, list(modules), images, "class_gradient", "g", {"target": target}, compute, cache, batch_size, progress
    )
