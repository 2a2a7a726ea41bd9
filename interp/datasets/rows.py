"""A scan's rows: what is kept of each batch's logits, computed where the model ran, and the Arrow batches written.

:func:`score` turns logits into a few numbers per image on the model's device (the top classes and their
probabilities, the entropy, the probability of the true classes), so that only those leave it: the Ray actors call
it, the in-process scan launches it behind each pass (:func:`score_async`), and the process that writes the rows
(:func:`scored_rows`) receives tens of bytes an image instead of a probability per class, and builds a batch of rows
in a few microseconds an image, whatever the number of classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from interp.datasets.base import Item
from interp.datasets.scan_files import SCHEMA

TOP_K = 5


@dataclass(frozen=True)
class BatchScores:
    """What a scan keeps of a batch of ``n`` images' logits (NumPy arrays on the CPU).

    Attributes:
        top: ``(n, k)`` classes, the most probable first, equal ones by the lower index.
        top_prob: their probabilities.
        entropy: ``(n,)`` entropy of each prediction (nats).
        true_prob: ``(n,)`` the highest probability among each image's true classes; NaN where it has none.
    """

    top: np.ndarray
    top_prob: np.ndarray
    entropy: np.ndarray
    true_prob: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        return {"top": self.top, "top_prob": self.top_prob, "entropy": self.entropy, "true_prob": self.true_prob}


def model_labels(items: Sequence[Item], mapping: dict[int, int] | None) -> list[list[int]]:
    """Each item's labels as the model's classes; a label the mapping does not have (or no mapping) is left out."""
    if not mapping:
        return [[] for _ in items]
    return [[mapping[label] for label in item.labels if label in mapping] for item in items]


def label_matrix(labels: list[list[int]]) -> np.ndarray:
    """``labels`` as an ``(n, width)`` array padded with -1, ``width`` the longest row's length (at least 1)."""
    width = max([1, *map(len, labels)])
    out = np.full((len(labels), width), -1, np.int64)
    for r, row in enumerate(labels):
        out[r, : len(row)] = row
    return out


def score(logits: torch.Tensor, labels: np.ndarray, k: int = TOP_K) -> BatchScores:
    """Softmax, entropy, the top ``k`` classes and the true classes' probability of a batch of logits, computed on
    the device they are on; ``labels`` is :func:`label_matrix`'s array. A NaN ranks below every number."""
    return score_async(logits, labels, k).result()


class PendingScores:
    """A batch's scores on their way from the device (:func:`score_async`); :meth:`result` waits for them alone."""

    def __init__(self, parts: dict[str, torch.Tensor], ranked: torch.Tensor, k: int) -> None:
        self._parts, self._ranked, self._k = parts, ranked, k
        self._ready = None
        if ranked.device.type == "cuda":  # into pinned memory without waiting; the event marks the copies' end
            self._parts = {name: t.to("cpu", non_blocking=True) for name, t in parts.items()}
            self._ready = torch.cuda.Event()
            self._ready.record(torch.cuda.current_stream(ranked.device))

    def result(self) -> BatchScores:
        if self._ready is not None:
            self._ready.synchronize()  # the copies only, not the passes launched since
        got = {name: t.numpy() for name, t in self._parts.items()}
        values, idx, k = got["values"], got["idx"], self._k
        top, top_values = idx[:, :k], values[:, :k]
        if values.shape[1] > k:  # a tie across the cut (on the CPU; a GPU sorts stably): the lower indices
            for r in np.flatnonzero(values[:, k - 1] == values[:, k]):
                row = self._ranked[r].cpu().numpy()
                top[r] = np.argsort(-row, kind="stable")[:k]
                top_values[r] = row[top[r]]
        order = np.lexsort((top, -top_values))  # by probability, then by class index
        top, top_values = np.take_along_axis(top, order, 1), np.take_along_axis(top_values, order, 1)
        return BatchScores(top=top, top_prob=_nan_for_neginf(top_values), entropy=got["entropy"],
                           true_prob=_nan_for_neginf(got["true_prob"]))  # fmt: skip


def score_async(logits: torch.Tensor, labels: np.ndarray, k: int = TOP_K) -> PendingScores:
    """:func:`score`, launched: on a GPU the scores are computed and copied to the host behind the pass that made
    ``logits``, and :meth:`PendingScores.result` waits for them only, so a scan launches the next batch's pass first
    and builds this batch's rows while it runs. On the CPU everything is done here."""
    probs = logits.float().softmax(-1)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)
    lab = torch.from_numpy(np.ascontiguousarray(labels))
    if probs.device.type == "cuda":  # from pageable memory the copy would wait for the pass that made ``logits``
        lab = lab.pin_memory().to(probs.device, non_blocking=True)
    true_prob = probs.gather(1, lab.clamp_min(0)).masked_fill(lab < 0, -torch.inf).amax(1)
    ranked = torch.nan_to_num(probs, nan=-torch.inf)
    k = min(k, probs.shape[1])
    if ranked.device.type == "cuda":  # a stable sort of every row is cheap there: ties in order, nothing to mend
        values, idx = torch.sort(ranked, dim=1, descending=True, stable=True)
        values, idx = values[:, :k], idx[:, :k]
    else:  # 20× cheaper than a sort here; one more class than kept shows a tie across the cut
        values, idx = torch.topk(ranked, min(k + 1, probs.shape[1]), dim=1)
    return PendingScores({"values": values, "idx": idx, "entropy": entropy, "true_prob": true_prob}, ranked, k)


def _nan_for_neginf(a: np.ndarray) -> np.ndarray:
    """A probability is never -inf: there it stood for NaN (ranked last) or for no true class."""
    return np.where(np.isneginf(a), np.nan, a)


def _lists(values: np.ndarray, lengths: np.ndarray) -> pa.ListArray:
    offsets = np.zeros(len(lengths) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


def _identity_columns(items: Sequence[Item], labels: list[list[int]]) -> list[pa.Array]:
    """The columns every row has, scored or not: id, path, label (the first true class), labels, label_name."""
    lengths = np.fromiter(map(len, labels), np.int64, len(labels))
    flat = np.fromiter((c for row in labels for c in row), np.int64, int(lengths.sum()))
    first = np.array([row[0] if row else 0 for row in labels], np.int64)
    return [pa.array([it.id for it in items], pa.string()), pa.array([it.path for it in items], pa.string()),
            pa.array(first, mask=lengths == 0), _lists(flat, lengths),
            pa.array([it.label_name for it in items], pa.string())]  # fmt: skip


def scored_rows(items: Sequence[Item], labels: list[list[int]], scores: BatchScores,
                names: Sequence[str]) -> pa.RecordBatch:  # fmt: skip
    """The rows of images the model scored, in the scan's schema (:data:`SCHEMA`), for the whole batch at once."""
    n = len(items)
    if n == 0:
        return pa.RecordBatch.from_pylist([], schema=SCHEMA)
    top = np.asarray(scores.top, np.int64)
    pred, k = top[:, 0], top.shape[1]
    has = np.fromiter(map(bool, labels), bool, n)
    correct = np.fromiter((p in row for p, row in zip(pred.tolist(), labels, strict=True)), bool, n)
    true_prob = np.asarray(scores.true_prob, np.float32)
    loss = -np.log(np.maximum(true_prob.astype(np.float64), 1e-12))
    top_prob = np.asarray(scores.top_prob, np.float32)
    columns = _identity_columns(items, labels) + [
        pa.array(pred), pa.array([names[p] for p in pred.tolist()], pa.string()),
        _lists(top.ravel(), np.full(n, k)), _lists(top_prob.ravel(), np.full(n, k)),
        pa.array(top_prob[:, 0]), pa.array(true_prob, mask=~has), pa.array(loss.astype(np.float32), mask=~has),
        pa.array(np.asarray(scores.entropy, np.float32)), pa.array(correct, mask=~has), pa.nulls(n, pa.string()),
    ]  # fmt: skip
    return pa.RecordBatch.from_arrays(columns, schema=SCHEMA)


def error_rows(items: Sequence[Item], labels: list[list[int]], errors: Sequence[str]) -> pa.RecordBatch:
    """The rows of images that could not be read: their labels and ``error``, no prediction."""
    n = len(items)
    none = np.zeros(n, np.int64)
    columns = _identity_columns(items, labels) + [
        pa.nulls(n, pa.int64()), pa.nulls(n, pa.string()), _lists(np.zeros(0, np.int64), none),
        _lists(np.zeros(0, np.float32), none), *(pa.nulls(n, pa.float32()) for _ in range(4)),
        pa.nulls(n, pa.bool_()), pa.array(list(errors), pa.string()),
    ]  # fmt: skip
    return pa.RecordBatch.from_arrays(columns, schema=SCHEMA)
