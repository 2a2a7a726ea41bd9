"""Scan a dataset with a model: batched inference, results to Parquet as they come, resumable, cancellable.

A scan folder holds ``scan.json`` (which model, which dataset) and ``part-NNNNN.parquet`` files, each written
whole and then renamed into place, so a scan killed at any moment leaves only complete parts. Starting the same
scan again reads the ids already written and does the rest: no row is lost or written twice. Unreadable images
become rows with an ``error`` and no prediction, so they are listed and not retried.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from interp.datasets.base import Dataset, DatasetError, Item
from interp.errors import InterpError
from interp.images import load_rgb
from interp.models.loading import LoadedModel
from interp.models.precision import check_precision, precision_scope

log = logging.getLogger(__name__)

TOP_K = 5
MANIFEST = "parts.jsonl"
"""One line per part written: its name and row count."""
DAMAGED = "damaged"
"""Where parts that cannot be read are moved."""
FLUSH_ROWS = 256
FLUSH_SECONDS = 10.0
PRECISION_SAMPLE = 512
"""A scan in reduced precision re-runs its first this many readable images in fp32 and records the agreement."""

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("path", pa.string()),
        ("label", pa.int64()),  # model index of the first true label; null when unknown or not comparable
        ("labels", pa.list_(pa.int64())),  # every acceptable model index (multi-label data)
        ("label_name", pa.string()),
        ("pred", pa.int64()),
        ("pred_name", pa.string()),
        ("top5", pa.list_(pa.int64())),
        ("top5_prob", pa.list_(pa.float32())),
        ("confidence", pa.float32()),
        ("true_prob", pa.float32()),
        ("loss", pa.float32()),
        ("entropy", pa.float32()),
        ("correct", pa.bool_()),
        ("error", pa.string()),
    ]
)


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


class _Images(torch.utils.data.Dataset):
    """Decodes and preprocesses in data-loader workers; an unreadable file yields its error, not an exception."""

    def __init__(self, dataset: Dataset, items: list[Item], transform: Callable) -> None:
        self.dataset, self.items, self.transform = dataset, items, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        item = self.items[i]
        try:
            image = load_rgb(self.dataset.path_of(item), name=item.path)
            return i, self.transform(image), ""
        except (InterpError, OSError, ValueError) as exc:
            return i, None, str(exc) or type(exc).__name__


def _collate(batch):
    ok = [(i, x) for i, x, err in batch if x is not None]
    failed = [(i, err) for i, x, err in batch if x is None]
    xs = torch.stack([x for _, x in ok]) if ok else None
    return [i for i, _ in ok], xs, failed


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
) -> ScanSummary:
    """Classify the first ``limit`` images of ``dataset`` (all by default) into Parquet parts under ``out``.

    Args:
        batch_size: images per forward pass.
        workers: data-loader processes decoding images (default: one per spare CPU core, at most 4; 0 decodes in
            this process).
        progress: called after every batch.
        should_stop: polled after every batch; when it returns ``True`` the rows so far are written and the scan
            returns with ``complete=False``; calling :func:`scan` again resumes.
        precision: ``fp32``, ``tf32`` or ``bf16`` (:mod:`interp.models.precision`). In reduced precision the scan
            then re-runs its first :data:`PRECISION_SAMPLE` readable images in fp32 and records the top-1 agreement
            in ``scan.json`` (``precision_check``). A folder keeps one precision: resuming in another is refused.

    Raises:
        DatasetError: ``out`` holds a scan by another model or of another dataset, or its ``scan.json`` is damaged.
        ScanBusy: another scan (in this process or another) is writing to ``out`` now.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    check_precision(precision)
    with scan_lock(out):
        summary = _scan(model, dataset, out, batch_size, limit, workers, progress, should_stop, precision)
        if precision != "fp32" and summary.complete:
            record_precision_check(model, dataset, out, batch_size)
        return summary


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


def _scan(model, dataset, out, batch_size, limit, workers, progress, should_stop, precision="fp32") -> ScanSummary:
    todo, total, already, mapping = prepare_folder(model, dataset, out, limit, precision)
    names = model.class_names
    if workers is None:
        workers = min(4, max(0, (os.cpu_count() or 1) - 1))
    loader = torch.utils.data.DataLoader(
        _Images(dataset, todo, model.transform),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
        persistent_workers=False,
        prefetch_factor=2 if workers else None,
    )
    rows: list[dict] = []
    written = skipped = 0
    start = last_flush = time.perf_counter()
    part = _next_part(out)
    stopped = False

    def flush() -> None:
        nonlocal rows, part, written, last_flush
        if rows:
            _write_part(out / f"part-{part:05d}.parquet", rows)
            written += len(rows)
            part += 1
            rows = []
        last_flush = time.perf_counter()

    processed = 0
    try:
        for indices, x, failed in loader:
            for i, err in failed:
                rows.append(_error_row(todo[i], mapping, err))
            skipped += len(failed)
            if x is not None:
                with precision_scope(model.device, precision):
                    probs = model.run(x).float().softmax(-1).cpu().numpy()
                rows += [_row(todo[i], p, mapping, names) for i, p in zip(indices, probs, strict=True)]
            processed += len(indices) + len(failed)
            elapsed = time.perf_counter() - start
            rate = processed / elapsed if elapsed > 0 else 0.0
            if len(rows) >= FLUSH_ROWS or time.perf_counter() - last_flush > FLUSH_SECONDS:
                flush()
            if progress is not None:
                left = len(todo) - processed
                progress(ScanProgress(already + processed, total, skipped, rate, left / rate if rate > 0 else None))
            if should_stop is not None and should_stop():
                stopped = True
                break
    finally:
        flush()
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
    )


def record_precision_check(model: LoadedModel, dataset: Dataset, out: Path, batch_size: int = 32) -> dict:
    """Re-run the first :data:`PRECISION_SAMPLE` readable images of a scan in fp32 and write the share whose top-1
    class is the same into ``scan.json`` as ``precision_check``: ``{"images", "agree", "top1_agreement"}``."""
    _, rows = load_scan(out)
    by_id = {item.id: item for item in dataset.items}
    ok = rows[rows["error"].isna() & rows["id"].isin(by_id)]
    order = {item.id: i for i, item in enumerate(dataset.items)}
    sample = sorted(ok["id"], key=order.__getitem__)[:PRECISION_SAMPLE]
    scanned = dict(zip(ok["id"], ok["pred"]))
    agree = checked = 0
    loader = torch.utils.data.DataLoader(_Images(dataset, [by_id[i] for i in sample], model.transform),
                                         batch_size=batch_size, collate_fn=_collate)  # fmt: skip
    for indices, x, _failed in loader:
        if x is None:
            continue
        preds = model.run(x).argmax(-1).cpu().numpy()
        for i, pred in zip(indices, preds, strict=True):
            checked += 1
            agree += int(pred) == int(scanned[sample[i]])
    check = {"images": checked, "agree": agree, "top1_agreement": agree / checked if checked else None}
    meta = read_meta(out)
    meta["precision_check"] = check
    _atomic_write(out / "scan.json", json.dumps(meta, indent=2).encode())
    return check


def _row(item: Item, p: np.ndarray, mapping: dict[int, int] | None, names: tuple[str, ...]) -> dict:
    top = np.argsort(-p)[:TOP_K]
    labels = [mapping[label] for label in item.labels if mapping and label in mapping]
    pred = int(top[0])
    true_prob = float(max(p[i] for i in labels)) if labels else None
    return {
        "id": item.id,
        "path": item.path,
        "label": labels[0] if labels else None,
        "labels": labels,
        "label_name": item.label_name,
        "pred": pred,
        "pred_name": names[pred],
        "top5": [int(i) for i in top],
        "top5_prob": [float(p[i]) for i in top],
        "confidence": float(p[pred]),
        "true_prob": true_prob,
        "loss": -math.log(max(true_prob, 1e-12)) if true_prob is not None else None,
        "entropy": float(-(p * np.log(np.clip(p, 1e-12, None))).sum()),
        "correct": (pred in labels) if labels else None,
        "error": None,
    }


def _error_row(item: Item, mapping: dict[int, int] | None, error: str) -> dict:
    labels = [mapping[label] for label in item.labels if mapping and label in mapping]
    return {"id": item.id, "path": item.path, "label": labels[0] if labels else None, "labels": labels,
            "label_name": item.label_name, "pred": None, "pred_name": None, "top5": [], "top5_prob": [],
            "confidence": None, "true_prob": None, "loss": None, "entropy": None, "correct": None, "error": error}  # fmt: skip


def _write_part(path: Path, rows: list[dict]) -> None:
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    with open(path.parent / MANIFEST, "a") as f:  # how many rows each part holds, should it be damaged later
        f.write(json.dumps({"part": path.name, "rows": len(rows)}) + "\n")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _parts(out: Path) -> list[Path]:
    return sorted(out.glob("part-*.parquet"))


def _next_part(out: Path) -> int:
    parts = _parts(out)
    return int(parts[-1].stem.split("-")[1]) + 1 if parts else 0


def existing_ids(out: Path) -> list[str]:
    return [i for t in _read_parts(out, columns=["id"]) for i in t.column("id").to_pylist()]


def load_scan(out: Path) -> tuple[dict, pd.DataFrame]:
    """``(meta, rows)`` of a scan folder; raises :class:`DatasetError` if it holds no scan or its ``scan.json`` is
    damaged. Damaged parts are moved aside (see :func:`damaged_parts`); their images are scanned again next time."""
    out = Path(out)
    if not (out / "scan.json").is_file():
        raise DatasetError(f"{out} holds no scan (no scan.json); run `python -m interp scan` first.")
    meta = read_meta(out)
    tables = _read_parts(out)
    meta["damaged_parts"] = damaged_parts(out)
    if not tables:
        return meta, SCHEMA.empty_table().to_pandas()
    frame = pa.concat_tables(tables).to_pandas()
    return meta, frame.drop_duplicates("id", keep="first").reset_index(drop=True)


def read_meta(out: Path) -> dict:
    """``scan.json`` of a scan folder, or a sentence saying it is damaged and what to do."""
    path = Path(out) / "scan.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(
            f"{path} is damaged ({exc}); if the folder holds a scan of the same dataset by the same model, delete "
            "scan.json and run that scan again (the rows already written are kept and resumed), otherwise choose "
            "another output folder."
        ) from None
    return meta


def _read_parts(out: Path, columns: list[str] | None = None) -> list[pa.Table]:
    """Every readable part; a part that cannot be read (cut short, empty, damaged) is moved to ``damaged/``."""
    tables = []
    for part in _parts(out):
        try:
            tables.append(pq.read_table(part, columns=columns, schema=SCHEMA))
        except (pa.ArrowException, OSError, ValueError) as exc:
            _quarantine(out, part, exc)
    return tables


def _quarantine(out: Path, part: Path, exc: Exception) -> None:
    rows = _manifest_rows(out).get(part.name)
    aside = out / DAMAGED
    aside.mkdir(exist_ok=True)
    try:
        os.replace(part, aside / part.name)
    except FileNotFoundError:  # another reader moved it first
        return
    held = f"{rows} rows" if rows is not None else "an unknown number of rows"
    log.warning("scan part %s is damaged (%s); moved to %s; its %s are scanned again next run", part, exc, aside, held)


def damaged_parts(out: Path) -> list[dict]:
    """The parts moved aside as damaged: ``[{"part": name, "rows": count or None}]``. Their images are missing
    from the scan until it runs again, which scores them anew."""
    aside = Path(out) / DAMAGED
    if not aside.is_dir():
        return []
    rows = _manifest_rows(out)
    return [{"part": p.name, "rows": rows.get(p.name)} for p in sorted(aside.glob("part-*.parquet"))]


def damaged_note(damaged: list[dict]) -> str | None:
    """One sentence about damaged parts, or ``None``."""
    if not damaged:
        return None
    counts = [d["rows"] for d in damaged]
    held = f"{sum(counts)} rows" if all(c is not None for c in counts) else "some rows"
    return (f"{len(damaged)} damaged part{'s' if len(damaged) > 1 else ''} of this scan ({held}) could not be read "
            f"and {'were' if len(damaged) > 1 else 'was'} moved to {DAMAGED}/; run the scan again to score those "
            "images anew.")  # fmt: skip


def _manifest_rows(out: Path) -> dict[str, int]:
    rows = {}
    try:
        lines = (Path(out) / MANIFEST).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return rows
    for line in lines:
        try:
            entry = json.loads(line)
            rows[str(entry["part"])] = int(entry["rows"])
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a crash
    return rows


class ScanBusy(DatasetError):
    """Another scan is writing to the same folder now."""


@contextlib.contextmanager
def scan_lock(out: Path) -> Iterator[None]:
    """Hold ``out``'s lock file for the block: one scan writes to a folder at a time, across threads (a server's
    sessions) and processes (the CLI beside the app). Raises :class:`ScanBusy` at once if another holds it."""
    path = Path(out) / ".scan.lock"
    with open(path, "a+b") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ScanBusy(
                f"another scan is writing to {out} right now; wait for it to finish (its rows appear as they come) "
                "or choose another output folder."
            ) from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
