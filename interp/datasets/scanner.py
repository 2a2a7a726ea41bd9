"""Scan a dataset with a model: batched inference, results to Parquet as they come, resumable, cancellable.

A scan folder (:mod:`interp.datasets.scan_files`) holds ``scan.json`` (which model, which dataset) and
``part-NNNNN.parquet`` files, each written whole and then renamed into place, so a scan killed at any moment leaves
only complete parts. Starting the same
scan again reads the ids already written and does the rest: no row is lost or written twice. Unreadable images
become rows with an ``error`` and no prediction, so they are listed and not retried.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from interp.datasets.base import Dataset, DatasetError, Item, given_path
from interp.datasets.batches import _batches, default_workers, resolve_decode
from interp.datasets.roots import as_dataset
from interp.datasets.rows import error_rows, label_matrix, model_labels, score_async, scored_rows
from interp.datasets.scan_files import (  # noqa: F401  (re-exported: the scan's public names)
    DAMAGED,
    MANIFEST,
    SCHEMA,
    ScanBusy,
    _atomic_write,
    _next_part,
    _write_part,
    damaged_note,
    damaged_parts,
    existing_ids,
    load_scan,
    read_meta,
    scan_lock,
)
from interp.errors import BadSettingError, at_least, shown, whole_number
from interp.models.given import loaded
from interp.models.loading import LoadedModel
from interp.models.precision import check_precision, precision_scope

FLUSH_ROWS = 256
"""A scan writes a part once this many rows have gathered and :data:`FLUSH_MIN_SECONDS` have passed since the last."""
FLUSH_MIN_SECONDS = 1.0
"""At least this long between parts, so that a scan at a GPU's speed (10,000 images a second) writes one part a
second, not forty: a kill loses a second of work, and the folder holds a file per second of it, not per batch."""
FLUSH_SECONDS = 10.0
"""A part at least this often, however few rows (a slow model, a remote dataset)."""
PRECISION_SAMPLE = 512
"""A scan in reduced precision re-runs its first this many readable images in fp32 and records the agreement."""

@dataclass(frozen=True)
class ScanProgress:
    """Where a running scan is: ``done`` of ``total`` images (this run included), speed and time left."""

    done: int
    total: int
    skipped: int
    images_per_s: float
    eta_s: float | None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


@dataclass(frozen=True)
class ScanSummary:
    """What a call to :func:`scan` did: rows written this run, rows in the folder, whether it finished."""

    out: Path
    written: int
    rows: int
    total: int
    skipped: int
    seconds: float
    images_per_s: float
    complete: bool
    scored: bool
    decoded_on_device: int = 0
    """Images of this run decoded where the model runs (:mod:`interp.jpeg`); the rest on the CPU
    (:func:`read_pixels`)."""


def scan_meta(model: LoadedModel, dataset: Dataset) -> dict:
    return {
        "model": model.name,
        "model_key": model.key,
        "weights": model.weights.source,
        "dataset": dataset.name,
        "kind": dataset.kind,
        "root": str(dataset.root),
        "items": len(dataset),
        "label_space": dataset.label_space,
        "class_names": list(model.class_names),
    }


def scan(
    model: LoadedModel,
    dataset: Dataset,
    out: Path,
    *,
    batch_size: int = 32,
    limit: int | None = None,
    workers: int | None = None,
    progress: Callable[[ScanProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    precision: str = "fp32",
    decode: str = "auto",
) -> ScanSummary:
    """Classify the first ``limit`` images of ``dataset`` (all by default) into Parquet parts under ``out``.

    Args:
        dataset: a :class:`Dataset`, a :class:`DatasetRoot` or a folder's path (:func:`as_dataset`).
        batch_size: images per forward pass.
        workers: data-loader processes decoding images ahead of the model (default: :func:`default_workers`); 0:
            threads of this process decode each batch just before it runs.
        progress: called after every batch.
        should_stop: polled after every batch; when it returns ``True`` the rows so far are written and the scan
            returns with ``complete=False``; calling :func:`scan` again resumes.
        precision: ``fp32``, ``tf32`` or ``bf16`` (:mod:`interp.models.precision`). In reduced precision the scan
            then re-runs its first :data:`PRECISION_SAMPLE` readable images in fp32 and records the top-1 agreement
            in ``scan.json`` (``precision_check``). A folder keeps one precision: resuming in another is refused.
        decode: ``auto`` (on a GPU, JPEGs in batches there; elsewhere Pillow in loader workers), ``cpu`` or
            ``device`` (:func:`resolve_decode`). Files the device path does not take go through Pillow in the
            loader workers; each image is scored once either way.

    Raises:
        DatasetError: ``out`` holds a scan by another model or of another dataset, or its ``scan.json`` is damaged.
        ScanBusy: another scan (in this process or another) is writing to ``out`` now.
    """
    model = loaded(model, "scan")
    batch_size, limit = check_scan_settings(batch_size, limit)
    if workers is not None and (whole_number(workers) is None or workers < 0):
        raise BadSettingError(f"workers must be 0 (threads read each batch) or more, got {shown(workers)}.")
    out = output_folder(out)
    check_precision(precision)
    decode = resolve_decode(model, decode)
    dataset = as_dataset(dataset)  # a DatasetRoot or a folder's path, as well
    with scan_lock(out):
        summary = _scan(model, dataset, out, batch_size, limit, workers, progress, should_stop, precision, decode)
        if summary.decoded_on_device:
            record_device_decoding(model, out, summary.decoded_on_device)
        if precision != "fp32" and summary.complete:
            record_precision_check(model, dataset, out, batch_size, decode)
        return summary


def check_scan_settings(batch_size: object, limit: object) -> tuple[int, int | None]:
    """A scan's batch size (at least 1) and limit (``None``, or a count of images from 0), as ``int``; refused in
    a sentence otherwise (a limit of -1 scanned all but the last image, 1.5 failed in a slice)."""
    return at_least(batch_size, 1, "batch size"), None if limit is None else at_least(limit, 0, "limit")


def output_folder(out: Path | str, what: str = "scan") -> Path:
    """``out`` as a folder that exists (made when missing), or a sentence saying why it cannot be one (``what`` is
    written there: a scan, an evaluation)."""
    out = given_path(out, f"the {what} folder")
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out} is a file; the {what} is written to a folder: choose another output folder.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot make the {what} folder {out} ({exc.strerror or exc}); choose another output "
                           "folder.") from None  # fmt: skip
    return out


def prepare_folder(model: LoadedModel, dataset: Dataset, out: Path, limit: int | None, precision: str = "fp32",
                   engine: str = "local") -> tuple[list[Item], int, int, dict[int, int] | None]:  # fmt: skip
    """Write ``scan.json`` (or check that the folder's scan is this one, in this precision) and return what is left
    to scan: ``(items not yet in the folder, images asked for, images already there, the label mapping)``. Every
    engine starts here, so a folder resumes whichever engine scored its rows."""
    meta = {**scan_meta(model, dataset), "precision": precision, "engine": engine}
    meta_path = out / "scan.json"
    if meta_path.exists():
        old = read_meta(out)
        if (old.get("model_key"), old.get("dataset"), old.get("root")) != (meta["model_key"], meta["dataset"], meta["root"]):
            raise DatasetError(
                f"{out} holds a scan of {old.get('dataset')} by {old.get('model')}; choose another output folder."
            )
        if old.get("precision", "fp32") != precision:
            raise DatasetError(f"{out} holds a scan in {old.get('precision', 'fp32')}; resume it in that precision "
                               f"(--precision {old.get('precision', 'fp32')}) or choose another output folder.")  # fmt: skip
    else:
        _atomic_write(meta_path, json.dumps(meta, indent=2).encode())
    items = list(dataset.items[: limit if limit is not None else len(dataset)])
    done_ids = set(existing_ids(out))
    todo = [it for it in items if it.id not in done_ids]
    return todo, len(items), len(items) - len(todo), dataset.label_map(model.class_names)


def _scan(model, dataset, out, batch_size, limit, workers, progress, should_stop, precision, decode) -> ScanSummary:
    todo, total, already, mapping = prepare_folder(model, dataset, out, limit, precision)
    names = model.class_names
    if workers is None:
        workers = default_workers(model)
    skipped = on_device = processed = 0
    start = time.perf_counter()
    parts = _Parts(out)
    stopped = False
    in_flight = None  # the last batch launched: its items, labels and scores on their way from the device

    def land(batch) -> None:
        items, labels, pending = batch
        parts.add(scored_rows(items, labels, pending.result(), names))

    try:
        for indices, x, failed, decoded in _batches(model, dataset, todo, batch_size, workers, decode):
            on_device += decoded
            if failed:
                bad = [todo[i] for i, _ in failed]
                parts.add(error_rows(bad, model_labels(bad, mapping), [err for _, err in failed]))
            skipped += len(failed)
            launched = None
            if x is not None:
                with precision_scope(model.device, precision):
                    logits = model.run(x)
                items = [todo[i] for i in indices]
                labels = model_labels(items, mapping)
                launched = (items, labels, score_async(logits, label_matrix(labels)))
            if in_flight is not None:  # on a GPU this batch's pass runs while the last one's rows are built
                land(in_flight)
            in_flight = launched
            processed += len(indices) + len(failed)
            elapsed = time.perf_counter() - start
            rate = processed / elapsed if elapsed > 0 else 0.0
            parts.flush_if_due()
            if progress is not None:
                left = len(todo) - processed
                progress(ScanProgress(already + processed, total, skipped, rate, left / rate if rate > 0 else None))
            if should_stop is not None and should_stop():
                stopped = True
                break
        if in_flight is not None:
            land(in_flight)
    finally:
        parts.flush()
    written = parts.written
    seconds = time.perf_counter() - start
    return ScanSummary(
        out=out,
        written=written,
        rows=already + written,
        total=total,
        skipped=skipped,
        seconds=seconds,
        images_per_s=processed / seconds if seconds > 0 else 0.0,
        complete=not stopped and already + written >= total,
        scored=mapping is not None,
        decoded_on_device=on_device,
    )


def record_precision_check(model: LoadedModel, dataset: Dataset, out: Path, batch_size: int = 32,
                           decode: str = "cpu") -> dict:  # fmt: skip
    """Re-run the first :data:`PRECISION_SAMPLE` readable images of a scan in fp32 and write the share whose top-1
    class is the same into ``scan.json`` as ``precision_check``: ``{"images", "agree", "top1_agreement"}``."""
    _, rows = load_scan(out)
    by_id = {item.id: item for item in dataset.items}
    ok = rows[rows["error"].isna() & rows["id"].isin(by_id)]
    order = {item.id: i for i, item in enumerate(dataset.items)}
    sample = sorted(ok["id"], key=order.__getitem__)[:PRECISION_SAMPLE]
    scanned = dict(zip(ok["id"], ok["pred"]))
    agree = checked = 0
    for indices, x, _failed, _ in _batches(model, dataset, [by_id[i] for i in sample], batch_size, 0, decode):
        if x is None:
            continue
        preds = model.run(x).argmax(-1).cpu().numpy()
        for i, pred in zip(indices, preds, strict=True):
            checked += 1
            agree += int(pred) == int(scanned[sample[i]])
    check = {"images": checked, "agree": agree, "top1_agreement": agree / checked if checked else None}
    _set_meta(out, "precision_check", check)
    return check


def _set_meta(out: Path, key: str, value) -> None:
    """``scan.json``'s ``key`` set to ``value``, the rest kept (under the folder's scan lock, as every write of it)."""
    meta = read_meta(out)
    meta[key] = value
    _atomic_write(out / "scan.json", json.dumps(meta, indent=2).encode())


def record_device_decoding(model: LoadedModel, out: Path, images: int) -> dict:
    """Count ``images`` more of the folder's rows as decoded where the model runs, into ``scan.json`` as
    ``device_decoding``: ``{"images", "decoder", "device"}``. On a GPU their pixels are nvJPEG's, a little apart
    from Pillow's, which every other page decodes with (``tests/test_gpu.py`` bounds how far); the gallery says so."""
    from interp.jpeg import decoder_name

    before = read_meta(out).get("device_decoding")
    before = before if isinstance(before, dict) else {}
    record = {"images": int(before.get("images", 0)) + images, "decoder": decoder_name(model.device),
              "device": model.device.type}  # fmt: skip
    _set_meta(out, "device_decoding", record)
    return record


class _Parts:
    """The rows a scan has scored and not yet written, as Arrow batches, written as whole parts
    (:func:`_write_part`): once :data:`FLUSH_ROWS` rows have gathered and :data:`FLUSH_MIN_SECONDS` have passed since
    the last part, after :data:`FLUSH_SECONDS` whatever the count, and at the end (also of a scan interrupted).
    Every engine writes through one, so a folder's parts look the same whichever engine scored them."""

    def __init__(self, out: Path) -> None:
        self.out, self.part, self.written = out, _next_part(out), 0
        self.batches: list[pa.RecordBatch] = []
        self.pending = 0
        self.last = time.perf_counter()

    def add(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self.batches.append(batch)
            self.pending += batch.num_rows

    def flush_if_due(self) -> None:
        waited = time.perf_counter() - self.last
        if (self.pending >= FLUSH_ROWS and waited >= FLUSH_MIN_SECONDS) or waited > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            _write_part(self.out / f"part-{self.part:05d}.parquet", self.batches)
            self.written, self.part = self.written + self.pending, self.part + 1
            self.batches, self.pending = [], 0
        self.last = time.perf_counter()
