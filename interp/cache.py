"""A content-addressed disk cache for computed results (predictions, attributions, activations).

Keys are hashes of everything that decides a result: the model and its weights fingerprint, the image digest, the
method and its parameters, and the code that computes it (the engine's files, the numeric libraries' versions).
Values are numpy arrays plus a JSON-able dict, stored as ``.npz`` bytes, so nothing is ever unpickled. Storage is
``diskcache`` (SQLite + files): bounded in size with least-recently-used eviction, atomic writes, safe for many
threads and processes at once.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import shutil
import sqlite3
import threading
import time
import zipfile
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import diskcache
import numpy as np

from interp.config import Settings
from interp.errors import BadSettingError

log = logging.getLogger(__name__)

_META = "__meta__"
_DECODE_LOCK = threading.Lock()
"""One thread at a time reads arrays: numpy parses each array's header with ``ast.literal_eval``, and on Python 3.11
two threads parsing at once can raise ``SystemError: AST constructor recursion depth mismatch`` (CPython gh-106905;
it hit TCAV's CAV-fitting threads reading the cache in CI)."""
_FLIGHTS: dict[Hashable, list] = {}
"""What is being computed (for the result cache: its folder and key) → [the lock of whoever computes it, how many
threads hold or wait for that lock]."""
_FLIGHTS_LOCK = threading.Lock()


@contextlib.contextmanager
def one_at_a_time(ident: Hashable, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Around the computation of ``ident``: in this process one thread computes it at a time, so a second one asking
    for the same thing waits for the first and then finds what it stored. Other idents never wait. ``on_wait`` is
    called once, before waiting, when another thread holds ``ident``. See :meth:`ResultCache.computing`."""
    with _FLIGHTS_LOCK:
        entry = _FLIGHTS.setdefault(ident, [threading.Lock(), 0])
        entry[1] += 1
    try:
        if not entry[0].acquire(blocking=False):
            if on_wait is not None:
                on_wait()
            entry[0].acquire()
        try:
            yield
        finally:
            entry[0].release()
    finally:
        with _FLIGHTS_LOCK:
            entry[1] -= 1
            if entry[1] == 0:
                del _FLIGHTS[ident]


@dataclass(frozen=True)
class CachedResult:
    """Arrays and metadata as stored. ``meta`` holds only JSON types."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)


_NUMERIC_LIBRARIES = ("torch", "timm", "captum", "scikit-learn", "transformers")
"""The libraries whose code computes the numbers we cache (a new version may change them)."""


@functools.cache
def engine_fingerprint(root: Path | None = None) -> str:
    """A digest of the code that computes cached results: every ``.py`` file of the engine (``interp/``, or
    ``root``) and the versions of :data:`_NUMERIC_LIBRARIES`. Part of every :func:`result_key`, so that after an
    upgrade (a fixed method, another preprocessing, a new Captum) the disk cache is not read back as if nothing had
    changed: the results of the old code are never found again and age out of the cache by least-recent use. Any
    change to the engine's files counts, even one that changes no number (it costs a recomputation, never a wrong
    map). Read once per process (about 100 files, a few milliseconds)."""
    root = Path(__file__).resolve().parent if root is None else root
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for name in _NUMERIC_LIBRARIES:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "-"
        digest.update(f"{name}=={version}\0".encode())
    return digest.hexdigest()[:16]


def model_key(name: str, fingerprint: str, class_names: Sequence[str], own_names: Sequence[str]) -> str:
    """A model in cache keys: ``"<name>@<fingerprint[:16]>"``, and where its ``class_names`` are not the ones its
    weights' shape gives it (``own_names``: ImageNet's for 1,000 outputs, else "class N"), ``+`` a digest of them. The
    same weights with another names file are another model to every cache (a scan names its rows and matches a
    dataset's labels by the names); a model with its own names keeps the key, and the scans, it always had."""
    key = f"{name}@{fingerprint[:16]}"
    if tuple(class_names) == tuple(own_names):
        return key
    names = "\n".join(class_names).encode()
    return f"{key}+{hashlib.blake2b(names, digest_size=4).hexdigest()}"


def result_key(*, model: str, image: str, method: str, params: Mapping[str, Any] | None = None) -> str:
    """SHA-256 over a canonical JSON of what decides a result, and of the code that computes it
    (:func:`engine_fingerprint`).

    Args:
        model: ``LoadedModel.key`` (:func:`model_key`: name, weights fingerprint and class names).
        image: ``LoadedImage.digest`` (or a digest of a set of images).
        method: e.g. ``"predict"``, ``"integrated_gradients"``.
        params: everything else that changes the numbers (target class, steps, baseline…).
    """
    payload = json.dumps(
        {"model": model, "image": image, "method": method, "params": dict(params or {}),
         "engine": engine_fingerprint()},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class ResultCache:
    """Bounded, process-safe store of :class:`CachedResult` by key.

    Args:
        directory: where the cache lives; created if missing.
        size_limit_mb: past this, least-recently-used entries are evicted.
    """

    def __init__(self, directory: str | Path, size_limit_mb: int = 1024) -> None:
        self.directory = Path(directory)
        self.size_limit_mb = size_limit_mb
        self._rebuild_lock = threading.Lock()
        try:
            self._store = self._open()
            self._store.get("")  # a damaged index fails here, not in the middle of someone's page
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc):
                raise
            self._store = self._rebuilt(exc)

    def _open(self) -> diskcache.Cache:
        return diskcache.Cache(
            str(self.directory), size_limit=int(self.size_limit_mb) * 2**20, eviction_policy="least-recently-used"
        )

    def _rebuilt(self, exc: Exception) -> diskcache.Cache:
        """A new, empty cache in place of one whose index cannot be read (everything in it can be computed again)."""
        log.warning("the result cache at %s is damaged (%r); starting it afresh", self.directory, exc)
        with self._rebuild_lock:
            old = getattr(self, "_store", None)
            if old is not None:
                old.close()
            aside = self.directory.with_name(f"{self.directory.name}.damaged-{os.getpid()}-{time.time_ns()}")
            try:
                os.replace(self.directory, aside)
                shutil.rmtree(aside, ignore_errors=True)
            except OSError:
                shutil.rmtree(self.directory, ignore_errors=True)
            return self._open()

    def _call(self, fn: Callable[[diskcache.Cache], Any]) -> Any:
        try:
            return fn(self._store)
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc):
                raise
            self._store = self._rebuilt(exc)
            return fn(self._store)

    @classmethod
    def from_settings(cls, settings: Settings) -> ResultCache:
        return cls(settings.cache_dir / "results", settings.cache_size_mb)

    def get(self, key: str) -> CachedResult | None:
        """The stored result, or ``None`` when absent or unreadable (an unreadable entry is dropped)."""
        try:
            blob = self._call(lambda store: store.get(key))
        except OSError as exc:  # diskcache keeps large values in files: one may be gone or unreadable
            log.warning("dropping unreadable cache entry %s: %r", key[:12], exc)
            with contextlib.suppress(OSError, sqlite3.OperationalError):
                self._call(lambda store: store.delete(key))
            return None
        except sqlite3.OperationalError as exc:  # the index is busy past its timeout, or its disk failed: a miss
            log.warning("could not read cache entry %s: %r", key[:12], exc)
            return None
        if blob is None:
            return None
        try:
            return _decode(blob)
        except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # cut short or bits flipped
            log.warning("dropping unreadable cache entry %s: %r", key[:12], exc)
            with contextlib.suppress(OSError, sqlite3.OperationalError):
                self._call(lambda store: store.delete(key))
            return None

    def put(self, key: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None) -> None:
        """Store arrays and JSON-able metadata under ``key`` (atomic; a concurrent reader sees old or new). A result
        the disk cannot take (full, or made read-only since) is not kept, with a warning in the log: whoever asked
        for it still has it, and the next request computes it again."""
        blob = _encode(arrays, meta or {})
        try:
            self._call(lambda store: _set(store, key, blob))
        except (OSError, sqlite3.OperationalError) as exc:
            log.warning("could not keep result %s in the cache at %s: %r", key[:12], self.directory, exc)

    @contextlib.contextmanager
    def computing(self, key: str, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """Around the computation of ``key``: in this process one thread computes it at a time, so a second one
        asking for the same result (a class of 30 opening the teacher's link at once) waits for the first and then
        finds it here instead of computing it again. Read the cache again inside the block. Other keys never wait.
        ``on_wait`` is called once, before waiting, when another thread is computing ``key`` (to say so)."""
        with one_at_a_time((str(self.directory), key), on_wait):
            yield

    def get_or_compute(
        self, key: str, compute: Callable[[], tuple[Mapping[str, np.ndarray], Mapping[str, Any]]]
    ) -> tuple[CachedResult, bool]:
        """The cached result for ``key``, computing and storing it first if needed (once, see :meth:`computing`).

        Returns:
            ``(result, hit)``; ``hit`` is ``True`` when nothing was computed.
        """
        with computed_once(self, key) as found:
            if found is not None:
                return found, True
            arrays, meta = compute()
            self.put(key, arrays, meta)
        return CachedResult({k: np.asarray(v) for k, v in arrays.items()}, json.loads(json.dumps(dict(meta)))), False

    def __contains__(self, key: str) -> bool:
        try:
            return self._call(lambda store: key in store)
        except sqlite3.OperationalError as exc:  # busy past its timeout, or its disk failed: a miss, as in get
            log.warning("could not look up cache entry %s: %r", key[:12], exc)
            return False

    def __len__(self) -> int:
        return self._call(len)

    def volume_bytes(self) -> int:
        """Bytes on disk, as diskcache counts them (entries plus the database)."""
        return int(self._store.volume())

    def clear(self) -> None:
        self._store.clear()

    def close(self) -> None:
        self._store.close()


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """Whether SQLite says the index itself is damaged (not a database, malformed), which a new, empty cache mends;
    not when it is busy, its disk is full or read-only (``OperationalError``), which emptying the cache would not."""
    return not isinstance(exc, sqlite3.OperationalError)


def _set(store: diskcache.Cache, key: str, blob: bytes) -> None:
    """``store[key] = blob``. A blob that goes to a file of its own (past ``disk_min_file_size``) is handed to
    diskcache as a reader: given bytes, diskcache 5.6 iterates over them as a ``BytesIO``, that is line by line, one
    write per newline byte (0x0A) in the data (800 for a 250 KB activation row); from a reader it writes 4 MB chunks to
    the same file, stored the same way (``MODE_BINARY``, read back as bytes). Putting an activation row of Lite0's
    ``bn2`` (62,720 floats) took 1.10 ms on two cores, now 0.57 ms; of ``blocks.3`` (15,680), 0.60 then 0.45 ms."""
    if len(blob) >= store.disk_min_file_size:
        store.set(key, io.BytesIO(blob), read=True)
    else:
        store.set(key, blob)


def _encode(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> bytes:
    if _META in arrays:
        raise BadSettingError(f"{_META!r} is reserved; rename that array.")
    buf = io.BytesIO()
    meta_bytes = np.frombuffer(json.dumps(dict(meta)).encode(), dtype=np.uint8)
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()}, **{_META: meta_bytes})
    return buf.getvalue()


def _decode(blob: bytes) -> CachedResult:
    with _DECODE_LOCK, np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files if k != _META}
        meta = json.loads(npz[_META].tobytes().decode())
    return CachedResult(arrays, meta)


@contextlib.contextmanager
def computed_once(
    cache: ResultCache | None, key: str, on_wait: Callable[[], None] | None = None
) -> Iterator[CachedResult | None]:
    """Yields what ``cache`` holds for ``key`` (``None`` without a cache). When it holds nothing, the block is the one
    place that computes and stores it: another thread asking for the same key waits at the door
    (:meth:`ResultCache.computing`, which calls ``on_wait`` first) and then finds it stored."""
    found = cache.get(key) if cache is not None else None
    if found is not None or cache is None:
        yield found
        return
    with cache.computing(key, on_wait):
        yield cache.get(key)  # stored by another thread while this one waited, or still nothing
