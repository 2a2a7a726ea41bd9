"""A dataset as the engine sees it: a root folder, its images as relative paths, and their labels.

Labels live in a *label space*: ``"imagenet"`` (timm's 1000 ImageNet-1k indices, index 0 = n01440764), ``"own"``
(the dataset's own class names, matched to a model's class names by name) or ``"none"`` (no labels a model's
output can be compared with; such a dataset can be browsed and scanned for confidence, not marked right or wrong).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from interp.errors import InterpError, at_least, seed_number, shown
from interp.words import counted

LabelSpace = Literal["imagenet", "own", "none"]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
METADATA_SUFFIXES = (".csv", ".txt", ".json", ".toml", ".mat", ".md", ".parquet")  # expected beside images; not noted


class DatasetError(InterpError, ValueError):
    """A dataset cannot be read as asked; the message says what is missing and what to do."""


class PathEscapeError(DatasetError):
    """A path points outside its dataset root (``..``, an absolute path or a symlink leading out)."""


@dataclass(frozen=True)
class Item:
    """One image of a dataset.

    Attributes:
        id: unique within the dataset (the relative path for folders; the image id for Open Images).
        path: path relative to the dataset root, with ``/`` separators.
        labels: label indices in the dataset's label space; several for multi-label data (Open Images), where a
            prediction of any of them counts as right. Empty when unknown.
        label_names: readable names of ``labels``.
        boxes: ``(label name, x0, y0, x1, y1)`` with coordinates as fractions of the width and height.
    """

    id: str
    path: str
    labels: tuple[int, ...] = ()
    label_names: tuple[str, ...] = ()
    boxes: tuple[tuple[str, float, float, float, float], ...] = ()

    @property
    def label(self) -> int | None:
        return self.labels[0] if self.labels else None

    @property
    def label_name(self) -> str:
        return ", ".join(self.label_names) if self.label_names else "unlabelled"


@dataclass(frozen=True)
class Dataset:
    """A readable dataset.

    Attributes:
        name: what the user picked (``"ImageNet val"``).
        kind: ``"imagenet"``, ``"openimages"``, ``"folder"`` or ``"zip"``.
        root: the folder everything is read from; no path outside it is ever opened.
        items: the images, in a stable order (scans and pages depend on it).
        class_names: names of the label space's indices (1000 ImageNet names; a folder's class folders).
        label_space: see the module docstring.
        notes: what a user should know about how it was read ("3 files skipped: …", "no mapping to ImageNet…").
    """

    name: str
    kind: str
    root: Path
    items: tuple[Item, ...]
    class_names: tuple[str, ...]
    label_space: LabelSpace
    notes: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.items)

    def path_of(self, item: Item | str) -> Path:
        """The absolute path of an item (or of a relative path), refused if it leads outside the root."""
        return safe_child(self.root, item.path if isinstance(item, Item) else item)

    def draw(self, n: int, seed: int = 0) -> list[Item]:
        """``n`` items drawn across the dataset without replacement by a generator seeded with ``seed`` (the same
        draw on every run, the page's and the CLI's alike), in the dataset's order; every item where it holds fewer."""
        import numpy as np

        n = at_least(n, 0, "the number of images to draw")
        picks = np.random.default_rng(seed_number(seed)).choice(len(self.items), size=min(n, len(self.items)),
                                                                replace=False)
        return [self.items[i] for i in sorted(picks)]

    def classes_present(self) -> list[int]:
        """Label indices that at least one item has, sorted."""
        return sorted({label for item in self.items for label in item.labels})

    def label_map(self, model_class_names: tuple[str, ...]) -> dict[int, int] | None:
        """Dataset label index → model output index, or ``None`` when the model's outputs cannot be compared.

        ImageNet labels map to themselves for a 1000-class model. A folder's class names map to the model's class
        names by name (case and spaces ignored); every class present must be found.
        """
        if self.label_space == "none":
            return None
        if self.label_space == "imagenet":
            return {i: i for i in self.classes_present()} if len(model_class_names) == 1000 else None
        by_name = {_norm(n): i for i, n in enumerate(model_class_names)}
        mapping = {i: by_name.get(_norm(self.class_names[i])) for i in self.classes_present()}
        if not mapping or any(v is None for v in mapping.values()):
            return None
        return {k: int(v) for k, v in mapping.items() if v is not None}


def _norm(name: str) -> str:
    return name.split(",")[0].strip().lower().replace("_", " ")


def given_path(value: object, what: str) -> Path:
    """``value`` (text or a path) as a :class:`Path`; ``None``, blank text or another type is a sentence naming
    ``what`` (``the scan folder``), where ``Path(None)`` was Python's ``TypeError`` and ``Path("")`` this folder."""
    if not isinstance(value, str | os.PathLike) or not str(value).strip():
        raise DatasetError(f"{what} is a path (text or a Path); got {shown(value)}.")
    return Path(value)


def safe_child(root: Path, relative: str | Path) -> Path:
    """``root / relative``, resolved, or :class:`PathEscapeError` if that leads outside ``root``.

    Refuses absolute paths, ``..`` and symlinks (anywhere on the way) that point out of the root.
    """
    rel = given_path(relative, "an image of the dataset")
    if rel.is_absolute() or rel.drive or ".." in rel.parts:
        raise PathEscapeError(f"{str(relative)!r} is not a path inside the dataset; pick an image from the list.")
    base = root.resolve()
    target = (base / rel).resolve()
    if target != base and base not in target.parents:
        raise PathEscapeError(f"{str(relative)!r} leads outside the dataset root (a symlink?); it is not opened.")
    return target


def image_files(root: Path, folder: Path | None = None, recursive: bool = True) -> tuple[list[str], list[str]]:
    """``(images, skipped)``: relative posix paths of the image files under ``folder`` (default ``root``), sorted,
    and of the files skipped (not images, or symlinks leading outside the root)."""
    base = root.resolve()
    start = (folder or root).resolve()
    images, skipped = [], []
    if start != base and base not in start.parents:
        return images, [str(folder)]
    if recursive:
        walker = os.walk(start, followlinks=False)
    else:
        walker = [(str(start), [], [n for n in os.listdir(start) if not (start / n).is_dir()])]
    for dirpath, dirnames, filenames in walker:
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            rel = full.relative_to(base).as_posix() if full.is_relative_to(base) else name
            if name.startswith(".") or full.suffix.lower() in METADATA_SUFFIXES:
                continue
            if full.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.append(rel)
                continue
            resolved = full.resolve()
            if resolved != base and base not in resolved.parents:
                skipped.append(rel)
                continue
            images.append(rel)
    return images, skipped


def round_robin(groups: list[list[Item]]) -> list[Item]:
    """Items of several classes interleaved (one of each in turn), so the first N of a dataset span its classes."""
    out: list[Item] = []
    for i in range(max((len(g) for g in groups), default=0)):
        out += [g[i] for g in groups if i < len(g)]
    return out


def skipped_note(skipped: list[str], what: str = "not images") -> str:
    shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
    return f"{counted(len(skipped), 'file')} skipped ({what}): {shown}"
