"""The dataset roots that whoever runs the app configures; visitors pick among them and never type server paths.

Sources, merged in this order (a later entry with the same name replaces an earlier one):

1. the built-in shapes world test split, generated on first use under the cache folder (works offline);
2. ``$INTERP_DATASETS``: the path of a TOML or JSON file, or inline JSON, listing datasets;
3. entries handed in by the caller (the dashboard passes ``st.secrets["datasets"]``).

Each entry::

    [[datasets]]
    name = "ImageNet val"             # what visitors see
    kind = "imagenet"                 # imagenet | openimages | folder
    root = "/data/imagenet/val"
    mapping = "oi_to_imagenet.csv"    # Open Images only, optional, relative to root
"""

from __future__ import annotations

import json
import os
import shutil
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp.datasets.base import Dataset, DatasetError

ENV_DATASETS = "INTERP_DATASETS"
KINDS = ("imagenet", "openimages", "folder")
SHAPES_DATASET = "Shapes world · test split"
SHAPES_TEST_IMAGES = 600


@dataclass(frozen=True)
class DatasetRoot:
    """One configured dataset: ``kind`` says which reader opens ``root``; ``mapping`` is Open Images' optional
    label mapping (relative to the root)."""

    name: str
    kind: str
    root: Path
    mapping: str | None = None

    def open(self) -> Dataset:
        from interp.datasets.readers import read_folder, read_imagenet, read_openimages

        if self.kind == "imagenet":
            return read_imagenet(self.root, self.name)
        if self.kind == "openimages":
            return read_openimages(self.root, self.name, self.mapping)
        return read_folder(self.root, self.name)


def configured_roots(
    cache_dir: Path, extra: Iterable[Mapping[str, Any]] = (), environ: Mapping[str, str] | None = None
) -> list[DatasetRoot]:
    """Every dataset a visitor may pick, the built-in shapes split first. Bad entries raise :class:`DatasetError`."""
    env = os.environ if environ is None else environ
    roots = {SHAPES_DATASET: DatasetRoot(SHAPES_DATASET, "shapes", shapes_root(cache_dir))}
    for entry in [*_from_env(env.get(ENV_DATASETS)), *extra]:
        root = _entry(entry)
        roots[root.name] = root
    return list(roots.values())


def shapes_root(cache_dir: Path) -> Path:
    return Path(cache_dir) / "datasets" / f"shapes_test_{SHAPES_TEST_IMAGES}"


def open_dataset(root: DatasetRoot, progress=None) -> Dataset:
    """Open a configured dataset; the shapes split is written on first use (``progress(done, total)``)."""
    if root.kind == "shapes":
        from interp.datasets.readers import read_folder
        from interp.shapes import write_image_folder

        if not (root.root / "labels.csv").exists():
            staging = root.root.with_name(f"{root.root.name}.tmp-{os.getpid()}")
            write_image_folder(staging, SHAPES_TEST_IMAGES, seed=1000, split="test", progress=progress)
            try:
                staging.rename(root.root)  # atomic; another process that finished first wins
            except OSError:
                shutil.rmtree(staging, ignore_errors=True)
        return read_folder(root.root, root.name, kind="shapes")
    return root.open()


def _from_env(value: str | None) -> list[Mapping[str, Any]]:
    if not value:
        return []
    text = value.strip()
    if not text.startswith(("[", "{")):
        path = Path(text).expanduser()
        if not path.is_file():
            raise DatasetError(f"{ENV_DATASETS} names {path}, which is not a file; point it at a TOML or JSON file.")
        text = path.read_text()
        if path.suffix.lower() == ".toml":
            try:
                return list(tomllib.loads(text).get("datasets", []))
            except tomllib.TOMLDecodeError as exc:
                raise DatasetError(f"{path.name} is not valid TOML ({exc}).") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{ENV_DATASETS} is not valid JSON ({exc.msg}); see the README for the format.") from None
    return list(data.get("datasets", []) if isinstance(data, dict) else data)


def _entry(entry: Mapping[str, Any]) -> DatasetRoot:
    try:
        name, kind, root = str(entry["name"]), str(entry["kind"]), Path(str(entry["root"])).expanduser()
    except (KeyError, TypeError):
        raise DatasetError(f"a dataset entry needs name, kind and root; got {dict(entry)!r}.") from None
    if kind not in KINDS:
        raise DatasetError(f"dataset {name!r} has kind {kind!r}; use one of {', '.join(KINDS)}.")
    mapping = entry.get("mapping")
    return DatasetRoot(name, kind, root, str(mapping) if mapping else None)
