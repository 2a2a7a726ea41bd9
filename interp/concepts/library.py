"""The concept library: named image sets and trained CAVs kept on disk, so they survive restarts.

Layout under the library folder::

    sets/<slug>/set.json           name, description, image files, when made
    sets/<slug>/<sha256[:16]>.png  each image, stored once by content
    cavs/<slug>/<model>/<layer>.npz (+ .json)

Only images decoded by the robust loader are stored (re-encoded as PNG); nothing uploaded is kept as given.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from interp.errors import InterpError
from interp.images import LoadedImage, load_image

MAX_SET_IMAGES = 500
THUMB_SIDE = 224  # sets are stored at this size at most: TCAV looks at the model's input, not at full resolution


class LibraryError(InterpError, ValueError):
    """A concept set cannot be made, found or read; the message says what to do."""


@dataclass(frozen=True)
class ConceptSet:
    """A saved set: ``name`` as the user typed it, its images in the order saved, and a one-line description."""

    name: str
    folder: Path
    files: tuple[str, ...]
    description: str = ""

    def images(self) -> list[LoadedImage]:
        return [load_image(self.folder / f, name=f) for f in self.files]


def slug(name: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", name.strip().lower()).strip("-")
    if not s:
        raise LibraryError("a concept set needs a name with at least one letter or digit.")
    return s[:60]


class ConceptLibrary:
    """Concept sets and CAVs under ``root`` (``<cache dir>/concepts`` in the app)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def save_set(self, name: str, images: list[LoadedImage], description: str = "", replace: bool = False) -> ConceptSet:
        """Store ``images`` under ``name``; duplicates (same pixels) are kept once."""
        if not images:
            raise LibraryError(f"the set {name!r} has no images; add some before saving.")
        if len(images) > MAX_SET_IMAGES:
            raise LibraryError(f"a concept set holds at most {MAX_SET_IMAGES} images; got {len(images)}.")
        folder = self.root / "sets" / slug(name)
        if folder.exists() and not replace:
            raise LibraryError(f"a concept set named {name!r} exists already; pick another name or delete it first.")
        staging = folder.with_name(folder.name + f".tmp-{time.time_ns()}")
        staging.mkdir(parents=True)
        files: list[str] = []
        for im in images:
            fname = f"{im.digest[:16]}.png"
            if fname in files:
                continue
            copy = im.image.copy()
            copy.thumbnail((THUMB_SIDE * 2, THUMB_SIDE * 2), Image.Resampling.BICUBIC)
            copy.save(staging / fname)
            files.append(fname)
        meta = {"name": name, "description": description, "files": files, "created": time.strftime("%Y-%m-%d %H:%M:%S")}
        (staging / "set.json").write_text(json.dumps(meta, indent=2))
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
        return ConceptSet(name, folder, tuple(files), description)

    def sets(self) -> list[ConceptSet]:
        out = []
        for meta_path in sorted((self.root / "sets").glob("*/set.json")):
            try:
                meta = json.loads(meta_path.read_text())
                out.append(ConceptSet(meta["name"], meta_path.parent, tuple(meta["files"]), meta.get("description", "")))
            except (OSError, ValueError, KeyError):
                continue  # a damaged entry is skipped, not fatal
        return out

    def get(self, name: str) -> ConceptSet:
        for s in self.sets():
            if s.name == name:
                return s
        raise LibraryError(f"no concept set named {name!r}; saved sets: {', '.join(s.name for s in self.sets()) or 'none'}.")

    def delete(self, name: str) -> None:
        folder = self.root / "sets" / slug(name)
        if not folder.exists():
            raise LibraryError(f"no concept set named {name!r} to delete.")
        shutil.rmtree(folder)
        shutil.rmtree(self.root / "cavs" / slug(name), ignore_errors=True)

    def cav_path(self, concept: str, model_key: str, layer: str) -> Path:
        safe = lambda s: re.sub(r"[^A-Za-z0-9_.@-]+", "_", s)
        return self.root / "cavs" / slug(concept) / safe(model_key) / f"{safe(layer)}.npz"

    def cavs(self, concept: str) -> list[Path]:
        return sorted((self.root / "cavs" / slug(concept)).glob("*/*.npz"))
