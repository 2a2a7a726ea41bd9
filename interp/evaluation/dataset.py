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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from interp.attribution.memory import forward_batch_size
from interp.datasets import Dataset, DatasetError, Item, as_dataset, scan_lock
from interp.datasets.scanner import output_folder
from interp.errors import BadSettingError, InterpError, rows_with, shown, whole_number
from interp.evaluation.choices import REPLACEMENTS
from interp.evaluation.faithfulness import check_steps, deletion_insertion, model_block, random_map
from interp.evaluation.localisation import energy_inside, object_mask, pointing
from interp.models import LoadedModel
from interp.models.given import loaded
from interp.words import counted, joined, percent_plus_minus

if TYPE_CHECKING:
    from interp.images import LoadedImage

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
    model = loaded(model, "evaluate_dataset")
    from interp.attribution import attribute, get_method, method_names
    from interp.images import load_image

    methods = method_names(methods)
    dataset = as_dataset(dataset)  # a DatasetRoot or a folder's path, as well
    if not 1 <= (whole_number(n) or 0) <= 100_000:
        raise BadSettingError(f"the number of images must be 1 to 100,000 (a whole number), got {shown(n)}.")
    steps = check_steps(steps)
    if replacement not in REPLACEMENTS:
        raise BadSettingError(f"replacement {shown(replacement)} is not one of {', '.join(REPLACEMENTS)}.")
    if stray := sorted(set(params or {}) - set(methods)):  # a misspelt name left the method on its defaults
        raise BadSettingError(f"settings are given for {', '.join(map(str, stray))}, which is not among the methods "
                              f"({', '.join(methods)}).")  # fmt: skip
    for method, given in (params or {}).items():
        if not isinstance(given, Mapping):
            raise BadSettingError(f"the settings of {method} are a mapping of names to values, e.g. "
                                  f"{{'steps': 32}}; got {shown(given)}.")  # fmt: skip
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
            seen = _object_in_view(model, dataset, item, image)
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
                            "random_deletion_auc": floor.deletion_auc, "random_insertion_auc": floor.insertion_auc,
                            **_localised(result.raw, seen)})  # fmt: skip
            if new:
                rows = pd.concat([rows, pd.DataFrame(new)], ignore_index=True) if len(rows) else pd.DataFrame(new)
                _atomic_parquet(rows, out / SCORES)
            if progress is not None:
                progress(EvaluationProgress(i + 1, len(items), time.monotonic() - start))
        summary = summarise(rows)  # written under the lock: two runs ending at once wrote one file together
        (out / "summary.json").write_text(json.dumps({"settings": settings, "unreadable": len(meta["unreadable"]),
                                                      "failed": {m: len(ids) for m, ids in failed.items()},
                                                      "methods": _records(summary)}, indent=2))  # fmt: skip
    return summary


def _records(summary: pd.DataFrame) -> list[dict[str, Any]]:
    """The summary's rows for JSON, a missing value (no interval from one image, no truth) as ``null``, not ``NaN``,
    which JSON does not have (JavaScript's ``JSON.parse`` refused the file)."""
    return [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
            for row in summary.to_dict("records")]  # fmt: skip


def _object_in_view(model: LoadedModel, dataset: Dataset, item: Item, image: LoadedImage) -> np.ndarray | None:
    """The object's mask in the model's view where the dataset knows it (:func:`object_mask`); ``None`` also where
    the crop leaves none of it in view, where no map can point at it."""
    from interp.shapes import mask_in_view

    mask = object_mask(dataset, item, image.image.size)
    if mask is None:
        return None
    seen = mask_in_view(mask, model.view)
    return seen if seen.any() else None


def _localised(raw: np.ndarray, seen: np.ndarray | None) -> dict[str, float]:
    """A map's localisation against the object (NaN without one): the pointing game (1 a hit, 0 a miss), the share of
    its mass on the object, and the object's share of the view, the level a map spread at random reaches on both."""
    if seen is None:
        return {"pointing": math.nan, "energy_inside": math.nan, "object_share": math.nan}
    return {"pointing": float(pointing(raw, seen)), "energy_inside": energy_inside(raw, seen),
            "object_share": float(seen.mean())}  # fmt: skip


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
    over the random map (normal approximation: 1.96 standard errors). Where images came with the object's place
    (the shapes world's masks, Open Images' boxes): ``located`` (how many), the pointing game's hit rate and the
    share of the map's mass on the object, each with its interval, and ``object_share``, the object's mean share of
    the view: what a map spread at random scores on both."""
    reads = "summarise reads the scores' rows, the DataFrame load_scores(folder) returns"
    if rows_with(rows, (), reads).empty:
        return pd.DataFrame(columns=["method", "images"])
    rows_with(rows, ("method", "deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc"), reads)
    rows = rows.assign(insertion_gain=rows["insertion_auc"] - rows["random_insertion_auc"],
                       deletion_gain=rows["random_deletion_auc"] - rows["deletion_auc"])  # fmt: skip
    out = []
    for method, group in rows.groupby("method", sort=False):
        row: dict[str, Any] = {"method": method, "images": len(group)}
        for col in ("deletion_auc", "insertion_auc", "insertion_gain", "deletion_gain"):
            row[col], row[f"{col}_ci95"] = _mean_ci(group[col])
        located = group["pointing"].notna() if "pointing" in group else pd.Series(False, index=group.index)
        if located.any():  # scores from before localisation was recorded, or images without truth, have none
            row["located"] = int(located.sum())
            for col in ("pointing", "energy_inside"):
                row[col], row[f"{col}_ci95"] = _mean_ci(group.loc[located, col])
            row["object_share"] = float(group.loc[located, "object_share"].astype(float).mean())
        out.append(row)
    return pd.DataFrame(out).sort_values("insertion_gain", ascending=False, ignore_index=True)


def _mean_ci(values: pd.Series) -> tuple[float, float]:
    """The mean and its 95% interval's half-width (NaN for one value, which gives no interval)."""
    values = values.astype(float)
    half = CI_Z * float(values.std(ddof=1)) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return float(values.mean()), half


def verdict(summary: pd.DataFrame, dataset: str, name: Callable[[str], str] = str,
            strong: Callable[[str], str] = str) -> str:  # fmt: skip
    """The per-dataset answer to "which method can I trust here" in words (``summary``: :func:`summarise`'s rows,
    best first): the best method by insertion gain, whether its 95% interval keeps clear of zero (a random map), and
    which methods it cannot yet be told apart from (intervals that overlap). ``name`` writes a dataset's or method's
    name (the page escapes Markdown), ``strong`` the best method's (the page makes it bold)."""
    reads = "verdict reads the table summarise(rows) returns"
    if rows_with(summary, (), reads).empty:
        return f"Nothing is scored on {name(dataset)} yet: score the methods on some images first."
    rows_with(summary, ("method", "images", "insertion_gain", "insertion_gain_ci95"), reads)
    return _faithful(summary, dataset, name, strong) + _located(summary, name)


def _faithful(summary: pd.DataFrame, dataset: str, name: Callable[[str], str], strong: Callable[[str], str]) -> str:
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


def _located(summary: pd.DataFrame, name: Callable[[str], str]) -> str:
    """The ground truth's answer, where the images came with the object's place: which maps' peaks fall on it most
    often and which puts the most of its mass there, with the maps whose intervals overlap theirs, against what a map
    spread at random scores; and, where neither is the most faithful map, that these are different questions."""
    if "located" not in summary or summary["located"].isna().all():
        return ""
    rows = summary[summary["located"].notna()]

    def best(col: str) -> tuple[list[str], list[str], str]:
        """The maps with the highest ``col`` (every one of a tie), those whose intervals overlap theirs, and its mean
        ± interval naming the overlapping."""
        top = rows[rows[col] >= rows[col].max() - 1e-9]
        mean, half = float(top.iloc[0][col]), float(top.iloc[0][f"{col}_ci95"])
        close = [r["method"] for _, r in rows.iterrows() if r["method"] not in set(top["method"])
                 and not math.isnan(half) and r[col] + r[f"{col}_ci95"] >= mean - half]  # fmt: skip
        verb = "overlaps" if len(close) == 1 else "overlap"
        overlap = f"; {joined(map(name, close))} {verb} {'them' if len(top) > 1 else 'it'}" if close else ""
        return list(top["method"]), close, f"{percent_plus_minus(mean, half)}{overlap}"

    (pointers, near_pointers, hits), (massive, near_massive, mass) = best("pointing"), best("energy_inside")
    many, more = len(pointers) > 1, len(massive) > 1
    text = (f" Where the object is known ({counted(int(rows['located'].max()), 'image')}), the peak{'s' * many} of "
            f"{joined(map(name, pointers))} fall{'' if many else 's'} on it most often ({hits}), and "
            f"{joined(map(name, massive))} put{'' if more else 's'} the most of {'their' if more else 'its'} mass "
            f"there ({mass}); a map spread at random scores the object's share of the view on both, "
            f"{float(rows['object_share'].mean()):.0%}.")  # fmt: skip
    if summary.iloc[0]["method"] not in {*pointers, *near_pointers, *massive, *near_massive}:
        text += (" Pointing at the object and following the model are different questions: a map can outline the "
                 "object without showing what the model used, and the model can use what lies off the object.")
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
