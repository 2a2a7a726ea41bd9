"""A scan folder on disk: its Parquet schema, parts written whole and renamed into place, the manifest of row counts,
``scan.json``, damaged parts moved aside, and the lock that lets one scan write at a time. Every engine
(:mod:`interp.datasets.scanner`, :mod:`interp.datasets.ray_scan`) writes through here, and the pages read here.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from interp.datasets.base import DatasetError, given_path
from interp.errors import name_list

log = logging.getLogger(__name__)

MANIFEST = "parts.jsonl"
"""One line per part written: its name and row count."""
DAMAGED = "damaged"
"""Where parts that cannot be read are moved."""
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


def _write_part(path: Path, batches: list[pa.RecordBatch]) -> None:
    table = pa.Table.from_batches(batches, schema=SCHEMA)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    with open(path.parent / MANIFEST, "a") as f:  # how many rows each part holds, should it be damaged later
        f.write(json.dumps({"part": path.name, "rows": table.num_rows}) + "\n")


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


def load_scan(out: Path, columns: Sequence[str] | None = None) -> tuple[dict, pd.DataFrame]:
    """``(meta, rows)`` of a scan folder; raises :class:`DatasetError` if it holds no scan or its ``scan.json`` is
    damaged. Damaged parts are moved aside (see :func:`damaged_parts`); their images are scanned again next time.
    ``columns``: read only these (and ``id``), as a count over a million rows needs four of the fifteen."""
    out = given_path(out, "the scan folder")
    if not (out / "scan.json").is_file():
        raise DatasetError(f"{out} holds no scan (no scan.json); run `python -m interp scan` first.")
    meta = read_meta(out)
    if columns is not None:
        columns = ["id", *(c for c in dict.fromkeys(name_list(columns, "columns")) if c != "id")]
    tables = _read_parts(out, columns=columns)
    meta["damaged_parts"] = damaged_parts(out)
    if not tables:
        empty = SCHEMA.empty_table()
        return meta, (empty.select(columns) if columns is not None else empty).to_pandas()
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
