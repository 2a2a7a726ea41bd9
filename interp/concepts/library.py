"""The concept library: named image sets and trained CAVs kept on disk, so they survive restarts.

Layout under the library folder::

    sets/<slug>/set.json           name, description, image files, when made
    sets/<slug>/<sha256[:16]>.png  each image, stored once by content
    cavs/<slug>/<model>/<layer>.npz (+ .json)

Only images decoded by the robust loader are stored (re-encoded as PNG); nothing uploaded is kept as given.

On a shared server each visitor has a library of their own beside the server's shared one, and sees both through a
:class:`VisitorLibrary`: what one visitor uploads is not shown to another unless they share it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from interp.errors import InterpError, shown
from interp.images import ImageOnDisk, LoadedImage, image_digest, image_list

MAX_SET_IMAGES = 500
STORED_SIDE = 448
"""A set's images are stored with their longer side at most this: TCAV looks at the model's input (224 pixels for
most models), not at full resolution. Read a set's sources at this size too: a zip of 300 photos then holds 170 MB of
pixels rather than 1.6 GB."""


class LibraryError(InterpError, ValueError):
    """A concept set cannot be made, found or read; the message says what to do."""


@dataclass(frozen=True)
class ConceptSet:
    """A saved set: ``name`` as the user typed it, its images in the order saved, and a one-line description;
    ``digests`` and ``sizes``: each stored file's pixel digest and ``(width, height)``, in the order of ``files``
    (empty for a set saved before they were kept)."""

    name: str
    folder: Path
    files: tuple[str, ...]
    description: str = ""
    digests: tuple[str, ...] = ()
    sizes: tuple[tuple[int, int], ...] = ()

    def images(self) -> list[ImageOnDisk]:
        """The set's images as files (:class:`~interp.images.ImageOnDisk`), each decoded when a pass needs it and
        not at all where its activations are cached: the server holds a set's names, not its pictures (500 images
        stored at 448×336 pixels are 300 MB as pictures). Nothing is decoded here where the set keeps its digests; an
        older set's files are decoded once each, for theirs. A stored file that no longer gives its digest is refused
        with a sentence when it is read."""
        if len(self.digests) == len(self.sizes) == len(self.files):
            return [ImageOnDisk(self.folder / f, f, digest, size, size, "RGB")
                    for f, digest, size in zip(self.files, self.digests, self.sizes, strict=True)]  # fmt: skip
        return [ImageOnDisk.read(self.folder / f, name=f) for f in self.files]


def slug(name: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", name.strip().lower()).strip("-") if isinstance(name, str) else ""
    if not s:
        raise LibraryError("a concept set needs a name with at least one letter or digit.")
    return s[:60]


def _named(sets: list[ConceptSet], name: str) -> ConceptSet:
    for s in sets:
        if s.name == name:
            return s
    raise LibraryError(f"no concept set named {shown(name)}; saved sets: {', '.join(s.name for s in sets) or 'none'}.")


class ConceptLibrary:
    """Concept sets and CAVs under ``root`` (``<cache dir>/concepts`` in the app)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def save_set(
        self, name: str, images: list[LoadedImage] | list[ImageOnDisk], description: str = "", replace: bool = False
    ) -> ConceptSet:
        """Store ``images`` (each a :class:`LoadedImage` or what :func:`interp.load_image` takes) under ``name``;
        duplicates (same pixels) are kept once."""
        images = image_list(images, f"the set {shown(name)}")
        if not images:
            raise LibraryError(f"the set {shown(name)} has no images; add some before saving.")
        if len(images) > MAX_SET_IMAGES:
            raise LibraryError(f"a concept set holds at most {MAX_SET_IMAGES} images; got {len(images)}.")
        folder = self.root / "sets" / slug(name)
        if folder.exists() and not replace:
            raise LibraryError(f"a concept set named {shown(name)} exists already; pick another name or delete it "
                               "first.")  # fmt: skip
        staging = folder.with_name(folder.name + f".tmp-{time.time_ns()}")
        staging.mkdir(parents=True)
        files: list[str] = []
        digests: list[str] = []
        sizes: list[tuple[int, int]] = []
        for im in images:
            fname = f"{im.digest[:16]}.png"
            if fname in files:
                continue
            copy = im.image.copy()
            copy.thumbnail((STORED_SIDE, STORED_SIDE), Image.Resampling.BICUBIC)
            copy.save(staging / fname)
            files.append(fname)
            digests.append(image_digest(copy))  # of the stored pixels, which PNG keeps exactly
            sizes.append(copy.size)
        meta = {"name": name, "description": description, "files": files, "digests": digests, "sizes": sizes,
                "created": time.strftime("%Y-%m-%d %H:%M:%S")}  # fmt: skip
        (staging / "set.json").write_text(json.dumps(meta, indent=2))
        if replace:
            shutil.rmtree(folder, ignore_errors=True)
        try:
            staging.rename(folder)  # atomic, and refused onto a set: of two visitors saving one name at once, one wins
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if folder.exists():
                raise LibraryError(f"a concept set named {shown(name)} was saved a moment ago by someone else; pick "
                                   "another name.") from None  # fmt: skip
            raise LibraryError(f"the concept set {shown(name)} could not be stored ({exc.strerror or exc}).") from None
        return ConceptSet(name, folder, tuple(files), description, tuple(digests), tuple(sizes))

    def sets(self) -> list[ConceptSet]:
        out = []
        for meta_path in sorted((self.root / "sets").glob("*/set.json")):
            try:
                meta = json.loads(meta_path.read_text())
                sizes = tuple((int(w), int(h)) for w, h in meta.get("sizes", ()))
                out.append(ConceptSet(meta["name"], meta_path.parent, tuple(meta["files"]), meta.get("description", ""),
                                      tuple(map(str, meta.get("digests", ()))), sizes))  # fmt: skip
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a damaged entry is skipped, not fatal
        return out

    def get(self, name: str) -> ConceptSet:
        return _named(self.sets(), name)

    def delete(self, name: str) -> None:
        folder = self.root / "sets" / slug(name)
        if not folder.exists():
            raise LibraryError(f"no concept set named {shown(name)} to delete.")
        shutil.rmtree(folder)
        shutil.rmtree(self.root / "cavs" / slug(name), ignore_errors=True)

    def cav_path(self, concept: str, model_key: str, layer: str) -> Path:
        safe = lambda s: re.sub(r"[^A-Za-z0-9_.@-]+", "_", s)
        return self.root / "cavs" / slug(concept) / safe(model_key) / f"{safe(layer)}.npz"

    def cavs(self, concept: str) -> list[Path]:
        return sorted((self.root / "cavs" / slug(concept)).glob("*/*.npz"))


@dataclass(frozen=True)
class VisitorLibrary:
    """What one visitor of a shared server sees: their own sets first, then the server's shared sets (a shared set
    with the name of one of their own is hidden behind it). Only their own sets, and the shared sets named in
    ``shared_by_them``, are theirs to delete."""

    own: ConceptLibrary
    shared: ConceptLibrary
    shared_by_them: frozenset[str] = field(default_factory=frozenset)

    def sets(self) -> list[ConceptSet]:
        own = self.own.sets()
        names = {s.name for s in own}
        return own + [s for s in self.shared.sets() if s.name not in names]

    def get(self, name: str) -> ConceptSet:
        return _named(self.sets(), name)

    def is_own(self, name: str) -> bool:
        return any(s.name == name for s in self.own.sets())

    def deletable(self, name: str) -> bool:
        return self.is_own(name) or name in self.shared_by_them

    def save_set(
        self, name: str, images: list[LoadedImage] | list[ImageOnDisk], description: str = "", share: bool = False
    ) -> ConceptSet:
        """Save a set of the visitor's own, or in the shared library with ``share``; a name either library holds
        is refused (one name, one set, for everyone who reads a link naming it)."""
        name = name.strip()
        if slug(name) in {slug(s.name) for s in (*self.own.sets(), *self.shared.sets())}:
            raise LibraryError(f"a concept set named {shown(name)} exists already; pick another name.")
        return (self.shared if share else self.own).save_set(name, images, description)

    def share(self, name: str) -> ConceptSet:
        """Move one of the visitor's own sets to the shared library (the caller remembers that they shared it)."""
        own = self.own.get(name)
        if any(slug(s.name) == slug(name) for s in self.shared.sets()):
            raise LibraryError(f"a shared set named {shown(name)} exists already; save yours under another name to "
                               "share it.")  # fmt: skip
        shared = self.shared.save_set(own.name, own.images(), own.description)
        self.own.delete(name)
        return shared

    def delete(self, name: str) -> None:
        if self.is_own(name):
            self.own.delete(name)
        elif name in self.shared_by_them:
            self.shared.delete(name)
        else:
            raise LibraryError(f"the shared set {shown(name)} is not yours to delete: only the visitor who shared it, "
                               "or whoever runs this server, can.")  # fmt: skip


def prune_visitors(root: Path, keep: Path, max_age_s: float) -> list[Path]:
    """Delete the visitor libraries under ``root`` not used for ``max_age_s`` (their folder's time, which
    :func:`touch` sets on every use), never ``keep``. Returns the folders deleted."""
    root, deleted = Path(root), []
    if not root.is_dir():
        return deleted
    for folder in root.iterdir():
        if not folder.is_dir() or folder == Path(keep):
            continue
        try:
            if time.time() - folder.stat().st_mtime > max_age_s:
                shutil.rmtree(folder, ignore_errors=True)
                deleted.append(folder)
        except OSError:
            continue  # another process deleted it first
    return deleted


def touch(folder: Path) -> None:
    """Mark a visitor's library as in use (created when missing)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    os.utime(folder)
