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

One type names a dataset from the engine to the page: :class:`DatasetRoot`. Which code reads it is its ``kind``'s
entry in ``READERS``; a new layout is one :class:`Reader` subclass registered with :func:`reader`. The scans of a
dataset by a model live in one folder, :func:`scan_folder`, which the CLI's ``scan`` and the Failures page share.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shutil
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from interp.datasets.base import Dataset, DatasetError
from interp.errors import shown

ENV_DATASETS = "INTERP_DATASETS"
SHAPES_DATASET = "Shapes world · test split"
SHAPES_TEST_IMAGES = 600


@dataclass(frozen=True)
class DatasetRoot:
    """A dataset as everything from the engine to the page names it: ``kind`` says which reader opens ``root``;
    ``mapping`` is Open Images' optional label mapping (relative to the root)."""

    name: str
    kind: str
    root: Path
    mapping: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.root, (str, os.PathLike)) or not str(self.root).strip():
            raise DatasetError(f"dataset {shown(self.name)} names no folder (root {self.root!r}); give the folder its "
                               "images are in.")  # fmt: skip
        object.__setattr__(self, "root", Path(self.root))  # DatasetRoot("val", "imagenet", "/data/val") as written

    def open(self, progress: Callable[[int, int], None] | None = None) -> Dataset:
        """Read the dataset with its kind's reader (``progress(done, total)`` while a reader writes one first)."""
        if self.kind not in READERS:
            raise DatasetError(f"dataset {shown(self.name)} has kind {shown(self.kind)}; use one of "
                               f"{', '.join(kinds())}.")  # fmt: skip
        return READERS[self.kind].open(self, progress)

    @property
    def slug(self) -> str:
        """A folder name for what is computed from this dataset: readable, and the same for the same kind, folder
        and mapping whatever the dataset is called (renaming it in the settings keeps its scans)."""
        ident = "|".join([self.kind, str(Path(self.root).expanduser().resolve()), self.mapping or ""])
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(self.root).name)[:60] + "_" + hashlib.sha256(ident.encode()).hexdigest()[:12]


class Reader:
    """Reads one layout of dataset. Subclasses set ``kind`` (the name in the settings), ``describe`` (what the
    folder must hold, for errors and the README), ``configurable`` (whether an operator may name it in the settings)
    and implement :meth:`open`."""

    kind: ClassVar[str]
    describe: ClassVar[str]
    configurable: ClassVar[bool] = True

    def open(self, root: DatasetRoot, progress: Callable[[int, int], None] | None = None) -> Dataset:
        raise NotImplementedError


READERS: dict[str, Reader] = {}


def reader(cls: type[Reader]) -> type[Reader]:
    """Class decorator: register a reader under ``cls.kind``."""
    if cls.kind in READERS:
        raise ValueError(f"two dataset readers are named {cls.kind!r}.")
    READERS[cls.kind] = cls()
    return cls


def kinds() -> tuple[str, ...]:
    """The kinds an operator may name in the settings (and the CLI's ``scan --dataset``)."""
    return tuple(k for k, r in READERS.items() if r.configurable)


@reader
class ImageNetReader(Reader):
    kind = "imagenet"
    describe = ("ImageNet validation: one folder per wnid, or a flat folder with LOC_val_solution.csv, or a flat "
                "folder with the devkit's ground truth and meta.mat")  # fmt: skip

    def open(self, root, progress=None):
        from interp.datasets.readers import read_imagenet

        return read_imagenet(root.root, root.name)


@reader
class OpenImagesReader(Reader):
    kind = "openimages"
    describe = "Open Images: images, the image-level labels CSV and class descriptions (boxes optional)"

    def open(self, root, progress=None):
        from interp.datasets.readers import read_openimages

        return read_openimages(root.root, root.name, root.mapping)


@reader
class FolderReader(Reader):
    kind = "folder"
    describe = "an ImageFolder: one sub-folder of images per class (loose images are unlabelled)"

    def open(self, root, progress=None):
        from interp.datasets.readers import read_folder

        return read_folder(root.root, root.name)


@reader
class ZipReader(Reader):
    """A zip a visitor uploaded, unpacked under the cache folder by :func:`~interp.datasets.extract_zip`; read as an
    ImageFolder. Not for the settings: its folder is made by the app."""

    kind = "zip"
    describe = "an uploaded zip of images, one folder per class"
    configurable = False

    def open(self, root, progress=None):
        from interp.datasets.readers import read_folder

        return read_folder(root.root, root.name, kind="zip")


@reader
class ShapesReader(Reader):
    """The built-in shapes world test split, written on first use (``progress(done, total)``)."""

    kind = "shapes"
    describe = "the built-in shapes world (generated)"
    configurable = False

    def open(self, root, progress=None):
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


def scan_folder(cache_dir: Path, model_key: str, root: DatasetRoot) -> Path:
    """Where the scans of ``root`` by the model ``model_key`` live: ``<cache>/scans/<model>/<dataset slug>``. The
    Failures page reads and writes here, and so does ``python -m interp scan`` unless given ``--out``; the folder's
    lock (:func:`~interp.datasets.scan_lock`) keeps two writers apart."""
    return Path(cache_dir) / "scans" / re.sub(r"[^A-Za-z0-9_.@-]+", "_", model_key) / root.slug


@dataclass(frozen=True)
class ConfiguredRoots:
    """What the settings configure: the datasets that could be read, and one sentence for each source or entry
    that could not (a misspelt file path in ``$INTERP_DATASETS``, an entry of an unknown kind)."""

    roots: list[DatasetRoot]
    problems: list[str]


def read_roots(cache_dir: Path, extra: Iterable[Mapping[str, Any]] = (),
               environ: Mapping[str, str] | None = None) -> ConfiguredRoots:  # fmt: skip
    """Every dataset a visitor may pick, the built-in shapes split first, and what could not be read: a wrong
    entry costs only itself, not the shapes world and the other datasets."""
    env = os.environ if environ is None else environ
    roots = {SHAPES_DATASET: DatasetRoot(SHAPES_DATASET, "shapes", shapes_root(cache_dir))}
    problems: list[str] = []
    try:
        entries = _from_env(env.get(ENV_DATASETS))
    except DatasetError as exc:
        entries = []
        problems.append(str(exc))
    for entry in [*entries, *extra]:
        try:
            root = _entry(entry)
        except DatasetError as exc:
            problems.append(str(exc))
            continue
        roots[root.name] = root
    return ConfiguredRoots(list(roots.values()), problems)


def configured_roots(
    cache_dir: Path, extra: Iterable[Mapping[str, Any]] = (), environ: Mapping[str, str] | None = None
) -> list[DatasetRoot]:
    """Every dataset a visitor may pick, the built-in shapes split first. Bad entries raise :class:`DatasetError`
    (:func:`read_roots` keeps the others and says what was wrong)."""
    configured = read_roots(cache_dir, extra, environ)
    if configured.problems:
        raise DatasetError(configured.problems[0])
    return configured.roots


def shapes_root(cache_dir: Path) -> Path:
    return Path(cache_dir) / "datasets" / f"shapes_test_{SHAPES_TEST_IMAGES}"


def as_dataset(value: Dataset | DatasetRoot | str | os.PathLike) -> Dataset:
    """What the API's functions over a dataset (``scan``, ``scan_ray``, ``evaluate_dataset``, ``file_activations``)
    take: a :class:`Dataset`; a :class:`DatasetRoot`, opened with its kind's reader; or a folder's path, read as a
    folder of images (:func:`~interp.datasets.read_folder`, one subfolder per class)."""
    if isinstance(value, Dataset):
        return value
    if isinstance(value, DatasetRoot):
        return value.open()
    if isinstance(value, (str, os.PathLike)):
        from interp.datasets.readers import read_folder

        return read_folder(Path(value))
    raise DatasetError(f"a dataset is a Dataset, a DatasetRoot or a folder's path, not {type(value).__name__}.")


def open_dataset(root: DatasetRoot, progress=None) -> Dataset:
    """Open a dataset with its kind's reader; the shapes split is written on first use (``progress(done, total)``)."""
    return root.open(progress)


def find_root(name: str, cache_dir: Path, environ: Mapping[str, str] | None = None) -> DatasetRoot:
    """The configured dataset called ``name`` (as visitors see it), or a sentence listing the configured ones."""
    configured = read_roots(cache_dir, environ=environ)
    roots = {r.name: r for r in configured.roots}
    if not isinstance(name, str):
        raise DatasetError(f"a dataset is named by text, one of {', '.join(map(repr, roots))}; got {shown(name)}.")
    if name in roots:
        return roots[name]
    folded = {r.casefold(): r for r in roots}
    if name.strip().casefold() in folded:  # "shapes world · Test split": the one dataset it can mean
        return roots[folded[name.strip().casefold()]]
    near = [r for r in roots if name.strip().casefold() in r.casefold()] if name.strip() else []
    near = near or difflib.get_close_matches(name, list(roots), n=1, cutoff=0.6)
    hint = f" did you mean {near[0]!r}?" if len(near) == 1 else ""
    unread = f" Not read from the settings: {' '.join(configured.problems)}" if configured.problems else ""
    raise DatasetError(f"no dataset is configured as {shown(name)};{hint} configured: {', '.join(map(repr, roots))} "
                       f"(or give --root with a kind: {', '.join(kinds())}).{unread}")  # fmt: skip


def _from_env(value: str | None) -> list[Mapping[str, Any]]:
    if not value or not value.strip():  # blank: none configured, as unset
        return []
    text, what = value.strip(), ENV_DATASETS
    if not text.startswith(("[", "{")):
        path = Path(text).expanduser()
        if not path.is_file():
            raise DatasetError(f"{ENV_DATASETS} names {path}, which is not a file; point it at a TOML or JSON file.")
        try:
            text, what = path.read_text(encoding="utf-8"), path.name
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{ENV_DATASETS} names {path}, which cannot be read as text ({exc}).") from None
        if path.suffix.lower() == ".toml":
            try:
                return _entries(tomllib.loads(text), what)
            except tomllib.TOMLDecodeError as exc:
                raise DatasetError(f"{path.name} is not valid TOML ({exc}).") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{what} is not valid JSON ({exc.msg}); see the README for the format.") from None
    return _entries(data, what)


def _entries(data: Any, what: str) -> list[Mapping[str, Any]]:
    """The entries of parsed settings: a list of them, or a table (object) holding them under ``datasets``."""
    if isinstance(data, dict):
        if "datasets" not in data:
            raise DatasetError(f"{what} has no \"datasets\" list of entries (TOML: [[datasets]] tables); see the "
                               "README for the format.")  # fmt: skip
        data = data["datasets"]
    if not isinstance(data, list):
        raise DatasetError(f"{what} does not list datasets (a list of entries with name, kind and root); see the "
                           "README for the format.")  # fmt: skip
    return data


def _entry(entry: Mapping[str, Any]) -> DatasetRoot:
    if not isinstance(entry, Mapping):
        raise DatasetError(f"a dataset entry is a table with name, kind and root; got {str(entry)[:80]!r}.")
    try:
        name, kind, root = str(entry["name"]), str(entry["kind"]), Path(str(entry["root"])).expanduser()
    except (KeyError, TypeError):
        raise DatasetError(f"a dataset entry needs name, kind and root; got {shown(dict(entry))}.") from None
    if kind not in kinds():
        raise DatasetError(f"dataset {shown(name)} has kind {shown(kind)}; use one of {', '.join(kinds())}.")
    mapping = entry.get("mapping")
    return DatasetRoot(name, kind, root, str(mapping) if mapping else None)
