"""Layer activations of a dataset's image files, streamed through a scan's reader: files decoded and resized in
loader workers (JPEGs on the GPU where the model runs on one, as a scan decodes them), one batch in memory at a time
besides the rows. What ``python -m interp cav-features`` runs; a folder of any size fits where its rows fit.

:func:`interp.concepts.activations_by_layer` takes images already decoded (the Concepts page's sets, every image held
as a picture) and caches rows by each picture's digest; this reads each file once and caches nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from interp.concepts.activations import _copied_out, _filed_one_behind, _forward_to, resolve_layer
from interp.datasets.base import Dataset
from interp.datasets.batches import _batches, default_workers, resolve_decode
from interp.datasets.roots import as_dataset
from interp.errors import at_least, name_list
from interp.models.given import loaded
from interp.models.loading import LoadedModel

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class FileActivations:
    """Flattened activations of a dataset's readable files.

    Attributes:
        names: the readable files' paths in the dataset, in its order; row ``i`` of every layer is ``names[i]``'s.
        rows: ``{layer: (len(names), D) float32}``, in the order the layers were asked for (empty when no file
            could be read).
        failed: ``(path, sentence saying why)`` for each file that could not be read; it has no row.
        decoded_on_device: how many files were decoded where the model runs (nvJPEG on a GPU); the rest by the CPU.
    """

    names: list[str]
    rows: dict[str, np.ndarray]
    failed: list[tuple[str, str]]
    decoded_on_device: int


def file_activations(
    model: LoadedModel,
    layers: Sequence[str],
    dataset: Dataset,
    *,
    batch_size: int = 64,
    workers: int | None = None,
    decode: str = "auto",
    precision: str = "fp32",
    progress: Progress | None = None,
) -> FileActivations:
    """Every layer's activations for every readable file of ``dataset``, from one forward pass per batch that ends at
    the deepest layer. ``workers``: loader processes (default :func:`~interp.datasets.batches.default_workers`: on a
    GPU one per spare core, at most 4; on the CPU none, threads read each batch between passes). ``decode``: ``auto``
    (JPEGs on the GPU where the model runs on one), ``cpu`` or ``device`` (:func:`resolve_decode`). ``precision``:
    ``fp32``, ``tf32`` or ``bf16``. ``progress(files done, files)`` after each batch.

    A batch's rows come back from a GPU while the next batch's pass runs, as in :func:`activations_by_layer`."""
    model = loaded(model, "file_activations")
    from interp.models.precision import check_precision, precision_scope

    check_precision(precision)
    batch_size = at_least(batch_size, 1, "batch size")
    workers = default_workers(model) if workers is None else at_least(workers, 0, "loader workers")
    decode = resolve_decode(model, decode)
    layers = name_list(layers, "layers")  # "bn2" alone is one layer
    modules = {layer: resolve_layer(model, layer) for layer in dict.fromkeys(layers)}
    dataset = as_dataset(dataset)  # a DatasetRoot or a folder's path, as well
    items = list(dataset.items)
    n = len(items)
    rows: dict[str, np.ndarray] = {}  # each layer's (n, D), made when its width is known; failed files' rows unused
    read = np.zeros(n, bool)
    failed: dict[int, str] = {}
    done = decoded = 0

    def filed(indices: list[int], copied: Callable[[], list[np.ndarray]]) -> None:
        for layer, flat in zip(modules, copied(), strict=True):
            if layer not in rows:
                rows[layer] = np.empty((n, flat.shape[1]), np.float32)
            rows[layer][indices] = flat
        read[indices] = True

    if progress is not None:
        progress(0, n)
    with _filed_one_behind(filed) as hold:
        for indices, x, bad, on_device in _batches(model, dataset, items, batch_size, workers, decode):
            failed.update(bad)
            decoded += on_device
            if x is not None:
                with precision_scope(model.device, precision):
                    kept = _forward_to(model, modules, x)
                copied = _copied_out([kept[layer] for layer in modules], len(indices))
                del x, kept
                hold(list(indices), copied)
            done += len(indices) + len(bad)
            if progress is not None:
                progress(done, n)
    keep = np.flatnonzero(read)
    return FileActivations(
        names=[items[i].path for i in keep],
        rows={layer: _compacted(a, keep) for layer, a in rows.items()},
        failed=[(items[i].path, why) for i, why in sorted(failed.items())],
        decoded_on_device=decoded,
    )


def _compacted(a: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``a[keep]`` for sorted ``keep``, moved up in place (a copy of the whole array would double the peak)."""
    if len(keep) == len(a):
        return a
    for j, i in enumerate(keep):
        if i != j:
            a[j] = a[i]
    return a[: len(keep)].copy() if len(keep) < len(a) // 2 else a[: len(keep)]
