"""Zips that strangers upload: which members are safe to read, and reading them with bounded memory and disk.

A zip's directory can lie (a 2 MB file may declare, or hold, a 2 GB member), its names can climb out of a folder
(``../``), be longer than the file system allows, nest hundreds of folders deep, or name a file and a folder alike.
None of that may end a page: such members are skipped and named, and every read stops at a limit, whatever the
directory declares.
"""

from __future__ import annotations

import io
import os
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from interp.datasets.base import IMAGE_SUFFIXES, DatasetError
from interp.images import DEFAULT_MAX_BYTES

MAX_MEMBER_BYTES = DEFAULT_MAX_BYTES
"""The largest member read: an image larger than this would be refused by the image loader anyway."""
MAX_NAME_BYTES = 255
"""Longest file or folder name most file systems allow."""
MAX_DEPTH = 16
"""Deepest nesting of folders accepted inside a zip."""
_CHUNK = 1 << 20


class MemberTooLarge(Exception):
    """A member held more than the limit while it was read (whatever the zip's directory declared)."""


def open_zip(data: bytes, name: str) -> zipfile.ZipFile:
    """The archive in ``data``; a sentence if it is not a zip."""
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError):
        raise DatasetError(f"{name} is not a zip file; upload a .zip of images (one folder per class).") from None


def image_members(archive: zipfile.ZipFile) -> tuple[list[zipfile.ZipInfo], list[str]]:
    """The members worth reading (images with safe names, largest first never), and the names of those skipped:
    not an image, an absolute or ``..`` path, a name too long or too deep, macOS metadata, a file whose path is also
    a folder of other members, or one declared larger than :data:`MAX_MEMBER_BYTES`."""
    infos = [i for i in archive.infolist() if not i.is_dir()]
    folders = {str(p) for i in infos for p in PurePosixPath(i.filename).parents if str(p) != "."}
    keep, skipped = [], []
    for info in infos:
        entry = info.filename
        parts = PurePosixPath(entry.replace("\\", "/")).parts
        unsafe = (
            entry.startswith(("/", "\\")) or ".." in parts or "__MACOSX" in parts or len(parts) > MAX_DEPTH
            or any(len(p.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for p in parts)
            or entry.rstrip("/") in folders or "\x00" in entry
        )  # fmt: skip
        if unsafe or PurePosixPath(entry).suffix.lower() not in IMAGE_SUFFIXES or info.file_size > MAX_MEMBER_BYTES:
            skipped.append(entry)
        else:
            keep.append(info)
    return keep, skipped


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int = MAX_MEMBER_BYTES) -> bytes:
    """A member's bytes, read in chunks; :class:`MemberTooLarge` past ``limit`` (the directory may lie).
    Corrupt or encrypted members raise ``zipfile.BadZipFile``, ``RuntimeError`` or ``OSError``."""
    out = bytearray()
    with archive.open(info) as src:
        while chunk := src.read(_CHUNK):
            out += chunk
            if len(out) > limit:
                raise MemberTooLarge(info.filename)
    return bytes(out)


def copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, limit: int) -> int:
    """Stream a member to ``target`` (through a temporary file of its own beside it, so that visitors unpacking the
    same zip at once, a class given one file, each write whole files and the last rename wins); returns the bytes
    written. Past ``limit`` the partial file is removed and :class:`MemberTooLarge` raised."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=".unpacking-", suffix=".part")
    tmp = Path(name)
    written = 0
    try:
        with open(fd, "wb") as dst, archive.open(info) as src:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > limit:
                    raise MemberTooLarge(info.filename)
                dst.write(chunk)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return written


def folder_bytes(folder: Path) -> int:
    """Bytes of the regular files under ``folder`` (links not followed). Files and folders that go while it counts
    (another visitor's unpacking renames its temporary files, a prune removes a folder) are not counted, never an
    error."""
    total = 0
    for top, _, files in os.walk(folder):
        for name in files:
            try:
                info = os.lstat(os.path.join(top, name))
            except FileNotFoundError:
                continue
            total += info.st_size if stat.S_ISREG(info.st_mode) else 0
    return total
