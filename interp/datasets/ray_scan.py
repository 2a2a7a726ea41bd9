"""The same scan on Ray Data, for datasets that outgrow one process or one machine.

Ray reads and decodes the images in its own tasks (spread over the cluster's CPUs), a pool of actors classifies
them (one model per actor, a GPU each when the cluster has them), and this process, the driver, writes the rows
with the in-process scan's schema and parts: the folder is the same kind of scan folder, resumable the same way
(images already in it are not scored again), and the dashboard reads it as any other. ``ray`` is an optional
dependency (``pip install "ray[data]"``).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from interp.datasets.base import Dataset
from interp.datasets.batches import read_pixels
from interp.datasets.roots import as_dataset
from interp.datasets.rows import BatchScores, error_rows, label_matrix, model_labels, score, scored_rows
from interp.datasets.scanner import (
    ScanProgress,
    ScanSummary,
    _Parts,
    check_scan_settings,
    output_folder,
    prepare_folder,
    scan_lock,
)
from interp.errors import InterpError, at_least
from interp.models.given import loaded
from interp.models.loading import LoadedModel
from interp.runtime import map_together

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
"""The folder that holds the ``interp`` package (and ``assets/``): this repository."""
RUNTIME_ENV = {"env_vars": {"MALLOC_ARENA_MAX": "1", "PYTHONPATH": f"{PACKAGE_ROOT}{os.pathsep}${{PYTHONPATH}}"}}
"""The ``runtime_env`` this module starts or joins Ray with (pass it to ``ray.init`` when you start Ray yourself).

Workers import ``interp`` from where the driver did: Ray puts the driver's working folder on their path, and the
workers of a cluster started apart (``ray start``) do not see the driver's ``PYTHONPATH``, so a scan started from
another folder (``PYTHONPATH=/repo python -m interp scan ... --address auto``) had each actor fail with
``ModuleNotFoundError``. Like Ray, and like the dataset's paths, this takes every node
to hold the same folders (a shared filesystem or the same checkout).

Ray Data calls a map actor from a thread of its own, and glibc gives each thread its own memory arena, whose heaps
hold at most 64 MB: presumably a forward pass's larger activations are then mapped fresh from the kernel and zeroed
on every call (the effect below is measured; the mechanism is inferred). On the 2-core VM EfficientNet-Lite0's pass over 32 images took 0.63-0.74 s in a Ray worker's second thread
against 0.37-0.41 s in its main thread; with one arena for every thread, 0.42-0.46 s."""


class RayUnavailableError(InterpError):
    """``--engine ray`` without Ray installed, or a cluster that cannot be joined."""


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401  (Ray without its data library cannot run this)
        import ray.data.exceptions  # noqa: F401  (named where a scan's failures are caught)
    except ImportError:
        raise RayUnavailableError('--engine ray needs Ray Data: pip install "ray[data]" (then run the scan again).') from None
    return ray


def _decode(batch: dict[str, np.ndarray], transform: Callable, shape: tuple[int, ...], threads: int = 1) -> dict[str, np.ndarray]:
    """Read, resize and crop a batch of files with the model's own transform (timm's eval pipeline) to ``uint8``
    pixels (where the pipeline is not a centre crop, its floats), in ``threads`` threads; an unreadable file becomes
    its error and a blank image, never an exception. The body of a Ray task on a GPU cluster (a quarter of the bytes
    of floats to move to the actor, which normalises them), and of the actor's own decoding on a CPU cluster."""
    def one(path_name) -> tuple[np.ndarray | None, str]:
        x, error = read_pixels(Path(path_name[0]), str(path_name[1]), transform)
        return (x.numpy() if x is not None else None), error

    pairs = list(zip(batch["path"], batch["name"], strict=True))
    if threads > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=threads - 1) as pool:
            done = map_together(one, pairs, pool, threads - 1)
    else:
        done = [one(pair) for pair in pairs]
    xs, errors = [x for x, _ in done], [e for _, e in done]
    dtype = next((x.dtype for x in xs if x is not None), np.uint8)
    xs = [x if x is not None else np.zeros(shape, dtype) for x in xs]
    return {"i": batch["i"], "labels": batch["labels"], "x": np.stack(xs), "error": np.asarray(errors, dtype=object)}


class _Classify:
    """A Ray actor: one model, loaded once, classifies batches into what a row keeps of them
    (:func:`interp.datasets.rows.score`: a few numbers an image, not a probability per class). On a CPU node it also
    decodes them (a batch of paths): with threads, in turn with the model's passes, so that each has the node's
    cores (as the in-process scan reads, :func:`interp.datasets.batches._threaded`)."""

    def __init__(self, name: str, weights: str | None, device: str, threads: int | None, shape: tuple[int, ...]) -> None:
        import torch

        import interp

        if threads:  # Ray gives an actor one thread; on a CPU node the model should have the node's cores
            torch.set_num_threads(threads)
        self.model = interp.load_model(name, weights, device=device)
        self.shape, self.threads = shape, threads or 1

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        if "x" not in batch:
            batch = _decode(batch, self.model.transform, self.shape, self.threads)
        x = self.model.batch_of(list(torch.from_numpy(np.ascontiguousarray(batch["x"]))))
        scores = score(self.model.run(x), batch["labels"])
        return {"i": batch["i"], "error": batch["error"], **scores.as_dict()}


def scan_ray(
    model: LoadedModel,
    dataset: Dataset,
    out: Path,
    *,
    weights: str | None = None,
    address: str | None = None,
    batch_size: int = 32,
    limit: int | None = None,
    actors: int | None = None,
    num_cpus: int | None = None,
    progress: Callable[[ScanProgress], None] | None = None,
) -> ScanSummary:
    """Classify the first ``limit`` images of ``dataset`` on Ray into the scan folder ``out``.

    Args:
        model: the model as loaded here (its name, weights and preprocessing); each actor loads the same one.
        weights: how the actors load it (``None``: the model's default weights; a path every node can read).
        address: a running cluster (``"auto"``, ``"ray://host:10001"``); ``None`` starts a local one.
        actors: classifying actors (default: one per GPU when the cluster has GPUs, else 1).
        num_cpus: CPUs of the local cluster started when ``address`` is ``None`` (default: all).

    The rows equal :func:`interp.datasets.scan`'s for the same model and images.
    """
    model = loaded(model, "scan_ray")
    batch_size, limit = check_scan_settings(batch_size, limit)
    actors = None if actors is None else at_least(actors, 1, "actors")
    num_cpus = None if num_cpus is None else at_least(num_cpus, 1, "num_cpus")
    ray = _ray()
    out = output_folder(out)
    dataset = as_dataset(dataset)  # a DatasetRoot or a folder's path, as well
    if not _loud():  # Ray's INFO lines, Ray Data's progress log and its note on the default token: a screenful a run
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        if "RAY_AUTH_MODE" not in os.environ:  # "enabled by default"; the warning that it is disabled stays
            logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    with scan_lock(out):
        started_here = not ray.is_initialized()
        if started_here:
            _join(ray, address, num_cpus)
        try:
            return _scan(ray, model, dataset, out, weights, batch_size, limit, actors, address, progress)
        except (ray.exceptions.RayError, ray.data.exceptions.SystemException) as exc:  # an actor or a task failed
            raise RayUnavailableError(
                f"the Ray scan stopped: {_last_error(str(exc))}. The rows scored before are kept; once that is "
                "mended, run the scan again to go on (every node needs this project's packages and sees the same "
                "paths as this machine)."
            ) from None
        finally:
            if started_here:
                ray.shutdown()


def _loud() -> bool:
    """Whether Ray may log at INFO: where this process does (the CLI's ``-v``, a caller's own logging)."""
    return logging.getLogger().isEnabledFor(logging.INFO)


def _join(ray, address: str | None, num_cpus: int | None) -> None:
    """Start a local cluster (``address`` ``None``) or join the one at ``address``; a cluster that cannot be joined
    is a sentence saying what to check (the system's words were "check the path")."""
    try:
        ray.init(address=address, num_cpus=num_cpus if address is None else None, include_dashboard=False,
                 log_to_driver=False, ignore_reinit_error=True, runtime_env=RUNTIME_ENV,
                 logging_level=logging.INFO if _loud() else logging.WARNING)  # fmt: skip
    except ConnectionError as exc:
        where = {None: "a local Ray cluster", "auto": "the Ray cluster this machine belongs to (--address auto)"}.get(
            address, f"the Ray cluster at {address}")
        raise RayUnavailableError(
            f"cannot join {where} ({str(exc).rstrip('.')}). Check that it runs (`ray status` on its head) and the "
            "address; a cluster that asks for a token (Ray's default since 2.59) also needs RAY_AUTH_MODE=token "
            "here, with its token in RAY_AUTH_TOKEN or ~/.ray/auth_token (`ray get-auth-token` on the head prints it)."
        ) from None


def _last_error(text: str) -> str:
    """The line of a Ray error's text that says what failed (``ModuleNotFoundError: No module named 'interp'``),
    not the traceback and actor ids around it; its first line when no line names an error."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in text.splitlines()]
    named = [m for m in map(re.compile(r"^([\w.]*?)(\w*(?:Error|Exception)): (.+)").match, lines) if m]
    if not named:
        return next((line for line in lines if line), "an error without a message").rstrip(".")
    module, name, message = named[-1].groups()
    # this project's errors are sentences already; another's keeps its class name (ModuleNotFoundError: ...)
    return (message if module.startswith("interp.") else f"{name}: {message}").rstrip(".")


def _scan(ray, model, dataset, out, weights, batch_size, limit, actors, address, progress) -> ScanSummary:
    todo, total, already, mapping = prepare_folder(model, dataset, out, limit, "fp32", engine="ray")
    start = time.perf_counter()
    written = skipped = processed = 0
    if todo:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        pool = actors or max(1, gpus)
        device = "cuda" if gpus else "cpu"
        shape = tuple(model.pixels(_blank(model)).shape)
        labels = model_labels(todo, mapping)
        rows_in = [{"i": i, "path": str(dataset.path_of(item)), "name": item.path, "labels": row}
                   for i, (item, row) in enumerate(zip(todo, label_matrix(labels), strict=True))]  # fmt: skip
        paths = ray.data.from_items(rows_in)
        threads = None if gpus else max(1, int(ray.cluster_resources().get("CPU", 1)) // pool)
        if address is not None and not gpus:
            threads = None  # a remote node's cores are not this machine's: leave Ray's choice
        if gpus:  # CPU tasks decode across the cluster, the GPU actors classify
            paths = paths.map_batches(_decode, fn_kwargs={"transform": model.transform, "shape": shape},
                                      batch_size=batch_size)  # fmt: skip
        scored = paths.map_batches(_Classify, fn_constructor_kwargs={"name": model.name, "weights": weights,
                                                                     "device": device, "threads": threads,
                                                                     "shape": shape},
                                   batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=pool),
                                   num_gpus=1 if gpus else 0)  # fmt: skip
        parts = _Parts(out)
        try:
            for batch in scored.iter_batches(batch_size=None, batch_format="numpy"):
                bad = np.fromiter((bool(e) for e in batch["error"]), bool, len(batch["error"]))
                at = [int(i) for i in batch["i"]]  # positions in todo
                if bad.any():
                    failed = [r for r, b in zip(at, bad, strict=True) if b]
                    parts.add(error_rows([todo[r] for r in failed], [labels[r] for r in failed],
                                         [str(e) for e in batch["error"][bad]]))  # fmt: skip
                ok = [r for r, b in zip(at, bad, strict=True) if not b]
                scores = BatchScores(**{key: batch[key][~bad] for key in ("top", "top_prob", "entropy", "true_prob")})
                parts.add(scored_rows([todo[r] for r in ok], [labels[r] for r in ok], scores, model.class_names))
                skipped += int(bad.sum())
                processed += len(at)
                parts.flush_if_due()
                if progress is not None:
                    rate = processed / max(time.perf_counter() - start, 1e-9)
                    progress(ScanProgress(already + processed, total, skipped, rate, (len(todo) - processed) / rate))
        finally:  # interrupted (Ctrl-C, a lost cluster): the rows scored so far are kept, as the in-process scan keeps them
            parts.flush()
        written = parts.written
    seconds = time.perf_counter() - start
    return ScanSummary(out=out, written=written, rows=already + written, total=total, skipped=skipped, seconds=seconds,
                       images_per_s=processed / seconds if seconds > 0 else 0.0,
                       complete=already + written >= total, scored=mapping is not None)  # fmt: skip


def _blank(model: LoadedModel) -> Any:
    from PIL import Image

    side = int(model.data_config["input_size"][-1])
    return Image.new("RGB", (side, side))
