"""Readers for the layouts people have: ImageNet validation (three layouts), Open Images, an ImageFolder, a zip."""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import os
import re
import shutil
import time
import zipfile
from collections import defaultdict
from pathlib import Path, PurePosixPath

from interp.datasets import zips
from interp.datasets.base import (
    IMAGE_SUFFIXES,
    Dataset,
    DatasetError,
    Item,
    given_path,
    image_files,
    round_robin,
    safe_child,
    skipped_note,
)
from interp.models.specs import imagenet_names
from interp.words import counted

WNID = re.compile(r"^n\d{8}$")
LOC_SOLUTION = "LOC_val_solution.csv"
DEVKIT_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
DEVKIT_META = "meta.mat"
MAX_ZIP_FILES = 20_000
MAX_ZIP_BYTES = 2 * 2**30
UPLOADS_KEEP_BYTES = 2 * 2**30
"""What unpacked zips may hold on disk together; older ones beyond it are deleted when a new one is unpacked."""
TRUTH_FOLDERS = ("masks",)
"""Folders beside a ``labels.csv`` that hold ground truth, not a class (``shapes generate --masks`` writes them)."""
UPLOADS_MIN_AGE_S = 3600.0
"""An unpacked zip used within this many seconds is never deleted: a session may still be reading it."""


@functools.lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k wnids in timm's index order (sorted; index 0 = n01440764)."""
    from timm.data import ImageNetInfo

    return tuple(ImageNetInfo().label_names())


def read_imagenet(root: Path, name: str = "ImageNet val") -> Dataset:
    """ImageNet validation as one folder per wnid, a flat folder + ``LOC_val_solution.csv``, or a flat folder + the
    devkit's ``ILSVRC2012_validation_ground_truth.txt`` (ILSVRC ids, mapped to wnids through the devkit's
    ``meta.mat``). The CSV and devkit files are looked for in the root, its parent and ``devkit/data``."""
    root = _existing(root)
    index = {w: i for i, w in enumerate(imagenet_wnids())}
    names = imagenet_names()
    subdirs = sorted(p.name for p in root.iterdir() if p.is_dir() and WNID.match(p.name))
    if subdirs:
        groups, skipped = [], []
        unknown = [d for d in subdirs if d not in index]
        for wnid in subdirs:
            if wnid not in index:
                continue
            files, skip = image_files(root, root / wnid)
            skipped += skip
            groups.append([Item(f, f, (index[wnid],), (names[index[wnid]],)) for f in files])
        items = round_robin(groups)
        notes = [skipped_note(skipped)] if skipped else []
        if unknown:
            notes.append(f"{len(unknown)} folders are not ImageNet-1k wnids and were left out: {', '.join(unknown[:5])}")
        return Dataset(name, "imagenet", root, tuple(items), names, "imagenet", tuple(notes))

    files, skipped = image_files(root, recursive=False)
    by_stem = {Path(f).stem: f for f in files}
    solution = _find(root, LOC_SOLUTION)
    if solution is not None:
        labels: dict[str, int] = {}
        with solution.open(newline="") as fh:
            for row in csv.DictReader(fh):
                tokens = (row.get("PredictionString") or "").split()
                if tokens and tokens[0] in index:
                    labels[row["ImageId"]] = index[tokens[0]]
        source = f"labels from {solution.name}"
    else:
        truth = _find(root, DEVKIT_TRUTH)
        if truth is None:
            raise DatasetError(
                f"{root} has neither one folder per wnid nor a {LOC_SOLUTION} or {DEVKIT_TRUTH} next to the images; "
                "put one of them in the folder or its parent, or use the folder layout."
            )
        ilsvrc_to_index = _devkit_ids(truth)
        ids = [int(line) for line in truth.read_text().split()]
        labels = {f"ILSVRC2012_val_{n:08d}": ilsvrc_to_index[i] for n, i in enumerate(ids, start=1) if i in ilsvrc_to_index}
        source = f"labels from {truth.name} mapped through {DEVKIT_META}"
    items = [Item(f, f, (labels[s],), (names[labels[s]],)) for s, f in sorted(by_stem.items()) if s in labels]
    unlabelled = [f for s, f in by_stem.items() if s not in labels]
    notes = [source]
    if skipped:
        notes.append(skipped_note(skipped))
    if unlabelled:
        notes.append(skipped_note(sorted(unlabelled), "no label in the ground truth"))
    return Dataset(name, "imagenet", root, tuple(items), names, "imagenet", tuple(notes))


def _devkit_ids(truth: Path) -> dict[int, int]:
    """ILSVRC2012 id (1…1000, the devkit's own order) → timm index, from ``meta.mat`` beside the ground truth."""
    meta = next((p for p in (truth.parent / DEVKIT_META, truth.parent.parent / DEVKIT_META) if p.is_file()), None)
    if meta is None:
        raise DatasetError(
            f"{truth.name} holds ILSVRC ids, which are not timm's class indices; put the devkit's {DEVKIT_META} next to "
            "it so they can be mapped through the wnids."
        )
    from scipy.io import loadmat

    synsets = loadmat(str(meta), squeeze_me=True, struct_as_record=False)["synsets"]
    index = {w: i for i, w in enumerate(imagenet_wnids())}
    return {int(s.ILSVRC2012_ID): index[str(s.WNID)] for s in synsets if str(s.WNID) in index}


def _find(root: Path, filename: str) -> Path | None:
    for folder in (root, root.parent, root.parent / "devkit" / "data", root / "devkit" / "data"):
        if (folder / filename).is_file():
            return folder / filename
    return None


def read_openimages(root: Path, name: str = "Open Images", mapping: str | None = None) -> Dataset:
    """Open Images V6/V7: images named ``<ImageID>.jpg`` (in ``root`` or ``root/images``), an image-level labels
    CSV (``ImageID,Source,LabelName,Confidence``), the class descriptions (``LabelName,DisplayName``, with or
    without a header), boxes where a CSV with ``XMin,XMax,YMin,YMax`` exists, and optionally a mapping CSV
    ``LabelName,imagenet`` (an ImageNet index or wnid per Open Images label) that makes the images scorable by an
    ImageNet model. Only positive labels (``Confidence`` 1) count."""
    root = _existing(root)
    images_dir = root / "images" if (root / "images").is_dir() else root
    files, skipped = image_files(root, images_dir, recursive=False)
    csvs = sorted(p for p in root.glob("*.csv"))
    label_csv = next((p for p in csvs if _header(p) >= {"ImageID", "LabelName", "Confidence"} and "XMin" not in _header(p)), None)
    box_csv = next((p for p in csvs if _header(p) >= {"ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax"}), None)
    desc_csv = next((p for p in csvs if "description" in p.name.lower()), None)
    if label_csv is None:
        raise DatasetError(
            f"no image-level labels CSV (columns ImageID, LabelName, Confidence) found in {root}; "
            "put the Open Images labels file there."
        )
    display = _descriptions(desc_csv) if desc_csv else {}
    positives: dict[str, list[str]] = defaultdict(list)
    with label_csv.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if str(row.get("Confidence", "1")).strip() in ("1", "1.0"):
                positives[row["ImageID"]].append(row["LabelName"])
    boxes: dict[str, list] = defaultdict(list)
    if box_csv is not None:
        with box_csv.open(newline="") as fh:
            for row in csv.DictReader(fh):
                try:
                    box = tuple(float(row[k]) for k in ("XMin", "YMin", "XMax", "YMax"))
                except (TypeError, ValueError):
                    continue
                boxes[row["ImageID"]].append((display.get(row["LabelName"], row["LabelName"]), *box))
    to_imagenet = _mapping(root, mapping) if mapping else None
    notes = [f"labels from {label_csv.name}" + (f", boxes from {box_csv.name}" if box_csv else "")]
    items = []
    for rel in files:
        image_id = Path(rel).stem
        mids = positives.get(image_id, [])
        names = tuple(display.get(m, m) for m in mids)
        if to_imagenet is not None:
            labels = tuple(dict.fromkeys(to_imagenet[m] for m in mids if m in to_imagenet))
            label_names = tuple(imagenet_names()[i] for i in labels)
        else:
            labels, label_names = (), names
        items.append(Item(image_id, rel, labels, label_names or names, tuple(boxes.get(image_id, ()))))
    if skipped:
        notes.append(skipped_note(skipped))
    if to_imagenet is None:
        notes.append(
            "no mapping from Open Images labels to ImageNet classes was given: the images can be browsed and scanned "
            "for predictions and confidence, not marked right or wrong"
        )
        return Dataset(name, "openimages", root, tuple(items), (), "none", tuple(notes))
    unmapped = sum(1 for it in items if not it.labels)
    if unmapped:
        has, they = ("has", "it is") if unmapped == 1 else ("have", "they are")
        notes.append(f"{counted(unmapped, 'image')} {has} no label that the mapping takes to ImageNet; {they} not "
                     "marked")
    return Dataset(name, "openimages", root, tuple(items), imagenet_names(), "imagenet", tuple(notes))


def _header(path: Path) -> set[str]:
    with path.open(newline="") as fh:
        return set(next(csv.reader(fh), []))


def _descriptions(path: Path) -> dict[str, str]:
    with path.open(newline="") as fh:
        rows = [r for r in csv.reader(fh) if len(r) >= 2]
    if rows and rows[0][0] in ("LabelName", "MID"):
        rows = rows[1:]
    return {r[0]: r[1] for r in rows}


def _mapping(root: Path, mapping: str) -> dict[str, int]:
    path = safe_child(root, mapping)
    if not path.is_file():
        raise DatasetError(f"the mapping file {mapping} is not in {root}.")
    index = {w: i for i, w in enumerate(imagenet_wnids())}
    out: dict[str, int] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            value = (row.get("imagenet") or "").strip()
            target = index.get(value) if WNID.match(value) else (int(value) if value.isdigit() else None)
            if target is not None and 0 <= target < 1000:
                out[row["LabelName"]] = target
    if not out:
        raise DatasetError(f"{mapping} maps no label: it needs columns LabelName and imagenet (an index or a wnid).")
    return out


def read_folder(root: Path, name: str | None = None, kind: str = "folder") -> Dataset:
    """An ImageFolder: one sub-folder per class (sorted names are the classes), images inside. Loose images in the
    root are kept, unlabelled; a folder with no class folders is a plain, unlabelled collection. Items alternate
    between classes, so the first N span them all."""
    root = _existing(root)
    base = root.resolve()
    truth = TRUTH_FOLDERS if (root / "labels.csv").is_file() else ()
    classes = sorted(
        p.name for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in truth and base in p.resolve().parents
        and _has_images(p)
    )  # fmt: skip
    groups, skipped = [], []
    for i, cls in enumerate(classes):
        files, skip = image_files(root, root / cls)
        skipped += skip
        groups.append([Item(f, f, (i,), (cls,)) for f in files])
    items = round_robin(groups)
    loose, skip = image_files(root, recursive=False)
    skipped += skip
    items += [Item(f, f) for f in loose]
    notes = [skipped_note(skipped)] if skipped else []
    if not items:
        raise DatasetError(f"no images found in {root.name}; it needs image files, ideally one folder per class.")
    return Dataset(name or root.name, kind, root, tuple(items), tuple(classes), "own" if classes else "none", tuple(notes))


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.rglob("*") if p.is_file())


def extract_zip(data: bytes, dest: Path, name: str = "upload.zip") -> tuple[Path, list[str]]:
    """Unpack the images of an uploaded zip into ``dest/<digest>/``; return that folder and the entries skipped.

    Entries that are not images, whose names are unsafe (``..``, absolute, too long or too deep, a file that is also
    a folder), or that exceed the limits (``MAX_ZIP_FILES`` images, ``MAX_ZIP_BYTES`` unpacked, 25 MB an image, and
    what is left of ``UPLOADS_KEEP_BYTES`` beside other recent uploads) are skipped, never fatal. Members are
    streamed to disk and counted as they are written, whatever the zip's directory declares.

    Raises:
        DatasetError: not a zip, no images in it, or no room left for uploads on this server.
    """
    archive = zips.open_zip(data, name)
    out = dest / hashlib.sha256(data).hexdigest()[:16]
    out.mkdir(parents=True, exist_ok=True)
    os.utime(out)  # in use from now: another visitor's upload does not prune it while it unpacks (the same zip again)
    declared = min(MAX_ZIP_BYTES, sum(i.file_size for i in archive.infolist()))
    # make room first (older uploads go); what remains beside this zip counts against the cap as it unpacks
    prune_uploads(dest, keep=out, keep_bytes=UPLOADS_KEEP_BYTES - declared)
    others = sum(zips.folder_bytes(p) for p in Path(dest).iterdir() if p.is_dir() and p != out)
    cap = min(MAX_ZIP_BYTES, UPLOADS_KEEP_BYTES - others)
    if cap <= 0:
        with contextlib.suppress(OSError):
            out.rmdir()  # made above, still empty
        raise DatasetError(
            f"the server's space for unpacked zips ({UPLOADS_KEEP_BYTES / 2**30:.0f} GB) is taken by uploads used in "
            "the last hour; try again later, or ask whoever runs the server to configure the dataset instead."
        )
    with archive:
        members, skipped = zips.image_members(archive)
        total = kept = 0
        for info in members:
            if kept >= MAX_ZIP_FILES or total + info.file_size > cap:
                skipped.append(info.filename)
                continue
            target = out / Path(*PurePosixPath(info.filename).parts)
            try:
                if target.is_file():  # unpacked before (the same zip again)
                    written = target.stat().st_size
                else:
                    written = zips.copy_member(archive, info, target, min(zips.MAX_MEMBER_BYTES, cap - total))
            except (zips.MemberTooLarge, zipfile.BadZipFile, OSError, RuntimeError, EOFError, ValueError):
                skipped.append(info.filename)  # corrupt, encrypted, larger than declared, or a name the disk refuses
                continue
            total += written
            kept += 1
    if kept == 0:
        shutil.rmtree(out, ignore_errors=True)
        raise DatasetError(f"{name} holds no images; zip a folder with one sub-folder of images per class.")
    os.utime(out)  # marks it as in use, also when the same zip was unpacked before
    inner = [p for p in out.iterdir() if not p.name.startswith(".")]
    if len(inner) == 1 and inner[0].is_dir():  # a zip of one folder: its sub-folders are the classes
        return inner[0], skipped
    return out, skipped


def prune_uploads(
    dest: Path, keep: Path, *, keep_bytes: int | None = None, min_age_s: float | None = None
) -> list[Path]:
    """Delete the least recently unpacked zips under ``dest`` until all of them hold at most ``keep_bytes``
    (default :data:`UPLOADS_KEEP_BYTES`); never ``keep`` and never one unpacked within ``min_age_s`` (default
    :data:`UPLOADS_MIN_AGE_S`). Returns the folders deleted."""
    keep_bytes = UPLOADS_KEEP_BYTES if keep_bytes is None else keep_bytes
    min_age_s = UPLOADS_MIN_AGE_S if min_age_s is None else min_age_s
    folders = []
    for folder in (p for p in Path(dest).iterdir() if p.is_dir() and p != keep):
        try:
            folders.append((folder.stat().st_mtime, folder, zips.folder_bytes(folder)))
        except FileNotFoundError:
            continue  # removed meanwhile by another visitor's prune
    total = sum(size for _, _, size in folders) + (zips.folder_bytes(keep) if Path(keep).is_dir() else 0)
    deleted = []
    for mtime, folder, size in sorted(folders, key=lambda f: f[0]):  # oldest first
        if total <= keep_bytes:
            break
        if time.time() - mtime < min_age_s:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        total -= size
        deleted.append(folder)
    return deleted


def _existing(root: Path) -> Path:
    root = given_path(root, "the dataset folder")
    if root.exists() and not root.is_dir():  # a single image named where its folder was meant
        raise DatasetError(f"the dataset folder {root} is a file, not a folder; name the folder that holds the images.")
    if not root.is_dir():
        raise DatasetError(f"the dataset folder {root} does not exist on this server; check the dataset settings.")
    return root
