"""Which method can I trust for this model? Deletion and insertion of each chosen method's map on the first N images
of a dataset (classes alternate, so N spans them), each beside a random map's, summarised per method as a mean with
its 95% interval. The map explains the model's own prediction on each image.

Results go to ``scores.parquet`` in an output folder after every image, with the settings in ``evaluation.json``:
run it again to continue where it stopped (no image scored twice); the folder's lock keeps two writers apart.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from interp.attribution.memory import forward_batch_size
from interp.datasets import Dataset, DatasetError, scan_lock
from interp.datasets.scanner import output_folder
from interp.errors import BadSettingError, InterpError, whole_number
from interp.evaluation.choices import REPLACEMENTS
from interp.evaluation.faithfulness import check_steps, deletion_insertion, model_block, random_map
from interp.models import LoadedModel
from interp.words import counted, joined

SCORES = "scores.parquet"
META = "evaluation.json"
CI_Z = 1.96


@dataclass(frozen=True)
class EvaluationProgress:
    done: int
    total: int
    seconds: float

    @property
    def eta_s(self) -> float | None:
        return self.seconds / self.done * (self.total - self.done) if self.done else None


def evaluate_dataset(
    model: LoadedModel, dataset: Dataset, methods: list[str], out: Path, *, n: int = 50, steps: int = 20,
    replacement: str = "blur", block: int | None = None, params: dict[str, dict[str, Any]] | None = None,
    progress: Callable[[EvaluationProgress], None] | None = None,
) -> pd.DataFrame:  # fmt: skip
    """Score ``methods`` on the first ``n`` images of ``dataset`` into ``out``; return the per-method summary
    (:func:`summarise`). Images that cannot be read are skipped and counted in ``evaluation.json``. ``block`` is
    the side of the regions removed together (:func:`~interp.evaluation.deletion_insertion`)."""
    from interp.attribution import attribute, get_method, method_names
    from interp.images import load_image

    methods = method_names(methods)
    if not 1 <= (whole_number(n) or 0) <= 100_000:
        raise BadSettingError(f"the number of images must be 1 to 100,000 (a whole number), got {n!r}.")
    steps = check_steps(steps)
    if replacement not in REPLACEMENTS:
        raise BadSettingError(f"replacement {replacement!r} is not one of {', '.join(REPLACEMENTS)}.")
    if stray := sorted(set(params or {}) - set(methods)):  # a misspelt name left the method on its defaults
        raise BadSettingError(f"settings are given for {', '.join(map(str, stray))}, which is not among the methods "
                              f"({', '.join(methods)}).")  # fmt: skip
    params = {m: dict((params or {}).get(m, {})) for m in methods}
    runnable = [m for m in methods if get_method(m, **params[m]).applies_to(model) is None]
    if not runnable:
        raise BadSettingError(f"none of {', '.join(methods)} applies to {model.name}.")
    block = model_block(model, block)
    out = output_folder(out, "evaluation")
    settings = {"model": model.key, "dataset": dataset.name, "steps": steps, "replacement": replacement,
                "params": {m: params[m] for m in runnable}}  # fmt: skip
    if block != 1:  # folders scored with single pixels, the only kind before regions, continue as they were
        settings["block"] = block
    with scan_lock(out):
        meta = _meta(out, settings)
        rows = load_scores(out)
        done = set(zip(rows["id"], rows["method"])) if len(rows) else set()
        items = dataset.items[: min(n, len(dataset))]
        start = time.monotonic()
        batch: int | None = None  # read from the memory budget once, for the first image
        failed: dict[str, dict[str, str]] = meta.setdefault("failed", {})  # method -> {image id: why}
        for i, item in enumerate(items):
            if all((item.id, m) in done or item.id in failed.get(m, {}) for m in runnable):
                continue
            if item.id in meta["unreadable"]:
                continue
            try:
                image = load_image(dataset.path_of(item))
            except (OSError, ValueError, DatasetError) as exc:
                meta["unreadable"][item.id] = str(exc)
                _write_meta(out, meta)
                continue
            x = model.preprocess(image.image)
            target = int(model.run(x[None]).argmax(-1))
            batch = batch or forward_batch_size(model, x[None], 2 * (steps + 1))
            floor = deletion_insertion(model, x, random_map(tuple(x.shape[-2:]), 0), target, steps=steps,
                                       replacement=replacement, block=block, batch=batch)  # fmt: skip
            new = []
            for m in runnable:
                if (item.id, m) in done or item.id in failed.get(m, {}):
                    continue
                try:
                    result = attribute(model, x, m, target, **params[m])
                except BadSettingError:  # a setting no image can take (a layer that is not a map): the run stops
                    raise
                except InterpError as exc:  # this image only (a map of NaN, say): noted, not retried, the rest go on
                    failed.setdefault(m, {})[item.id] = str(exc)
                    _write_meta(out, meta)
                    continue
                curves = deletion_insertion(model, x, result.map, target, steps=steps, replacement=replacement,
                                            block=block, batch=batch)  # fmt: skip
                new.append({"id": item.id, "path": item.path, "target": target, "method": m,
                            "deletion_auc": curves.deletion_auc, "insertion_auc": curves.insertion_auc,
                            "random_deletion_auc": floor.deletion_auc, "random_insertion_auc": floor.insertion_auc})  # fmt: skip
            if new:
                rows = pd.concat([rows, pd.DataFrame(new)], ignore_index=True) if len(rows) else pd.DataFrame(new)
                _atomic_parquet(rows, out / SCORES)
            if progress is not None:
                progress(EvaluationProgress(i + 1, len(items), time.monotonic() - start))
        summary = summarise(rows)  # written under the lock: two runs ending at once wrote one file together
        (out / "summary.json").write_text(json.dumps({"settings": settings, "unreadable": len(meta["unreadable"]),
                                                      "failed": {m: len(ids) for m, ids in failed.items()},
                                                      "methods": summary.to_dict("records")}, indent=2))  # fmt: skip
    return summary


def load_failures(out: Path) -> dict[str, dict[str, str]]:
    """The maps an evaluation in ``out`` could not score: ``{method: {image id: the sentence saying why}}``."""
    return _noted(out, "failed")


def load_unreadable(out: Path) -> dict[str, str]:
    """The images an evaluation in ``out`` left out because they could not be read: ``{image id: why}``."""
    return _noted(out, "unreadable")


def _noted(out: Path, key: str) -> dict:
    """What ``evaluation.json`` in ``out`` notes under ``key``; nothing where no evaluation ran there yet."""
    path = Path(out) / META
    return json.loads(path.read_text()).get(key, {}) if path.is_file() else {}


def load_scores(out: Path) -> pd.DataFrame:
    path = Path(out) / SCORES
    return pd.read_parquet(path) if path.is_file() else pd.DataFrame()


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Per method: images, and the mean and 95% interval half-width of deletion, insertion and insertion's margin
    over the random map (normal approximation: 1.96 standard errors)."""
    if rows.empty:
        return pd.DataFrame(columns=["method", "images"])
    rows = rows.assign(insertion_gain=rows["insertion_auc"] - rows["random_insertion_auc"],
                       deletion_gain=rows["random_deletion_auc"] - rows["deletion_auc"])  # fmt: skip
    out = []
    for method, group in rows.groupby("method", sort=False):
        row: dict[str, Any] = {"method": method, "images": len(group)}
        for col in ("deletion_auc", "insertion_auc", "insertion_gain", "deletion_gain"):
            values = group[col].astype(float)
            row[col] = float(values.mean())
            row[f"{col}_ci95"] = CI_Z * float(values.std(ddof=1)) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
        out.append(row)
    return pd.DataFrame(out).sort_values("insertion_gain", ascending=False, ignore_index=True)


def verdict(summary: pd.DataFrame, dataset: str, name: Callable[[str], str] = str,
            strong: Callable[[str], str] = str) -> str:  # fmt: skip
    """The per-dataset answer to "which method can I trust here" in words (``summary``: :func:`summarise`'s rows,
    best first): the best method by insertion gain, whether its 95% interval keeps clear of zero (a random map), and
    which methods it cannot yet be told apart from (intervals that overlap). ``name`` writes a dataset's or method's
    name (the page escapes Markdown), ``strong`` the best method's (the page makes it bold)."""
    best = summary.iloc[0]
    gain, half = float(best["insertion_gain"]), float(best["insertion_gain_ci95"])
    images = counted(int(best["images"]), "image")
    if math.isnan(half):  # one image
        measured = f"{gain:.3f} on {images}, which gives no interval"
    else:
        measured = f"{gain:.3f} ± {half:.3f} over {images}"
    text = (f"On {name(dataset)}, {strong(name(best['method']))} gains the most over a random map by insertion "
            f"({measured}).")  # fmt: skip
    if not gain - half > 0:  # also when one image leaves no interval (nan)
        return text + " That is not clearly above a random map yet: score more images before trusting the ranking."
    close = [r["method"] for _, r in summary.iloc[1:].iterrows()
             if r["insertion_gain"] + r["insertion_gain_ci95"] >= gain - half]  # fmt: skip
    if close:
        text += (f" {joined(map(name, close))} cannot be told apart from it yet (their intervals overlap); "
                 "more images narrow them.")  # fmt: skip
    return text


def _meta(out: Path, settings: dict) -> dict:
    path = out / META
    if path.is_file():
        meta = json.loads(path.read_text())
        asked = json.loads(json.dumps(settings))
        if meta.get("settings") != asked:
            differ = _differences(meta.get("settings"), asked)
            raise DatasetError(f"{out} holds an evaluation with other settings ({differ}); choose another output "
                               "folder, or delete it to start again.")  # fmt: skip
        return meta
    meta = {"settings": settings, "unreadable": {}}
    _write_meta(out, meta)
    return meta


def _differences(there: Any, asked: dict) -> str:
    """What differs between a folder's settings and the ones asked for, in words: ``steps 8 there, 9 asked``."""
    if not isinstance(there, dict):
        return "its settings are not recorded"
    said = []
    for key in dict.fromkeys([*there, *asked]):
        old, new = (s.get(key, 1 if key == "block" else None) for s in (there, asked))  # no block: single pixels
        if old == new:
            continue
        if key == "params" and isinstance(old, dict) and isinstance(new, dict) and list(old) != list(new):
            key, old, new = "methods", ", ".join(old), ", ".join(new)
        said.append(f"{key} {old} there, {new} asked")
    return "; ".join(said)


def _write_meta(out: Path, meta: dict) -> None:
    tmp = out / f"{META}.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    tmp.replace(out / META)


def _atomic_parquet(rows: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    rows.to_parquet(tmp, index=False)
    tmp.replace(path)
