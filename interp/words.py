"""How the engine's messages count and name things, for the CLI and the pages alike."""

from __future__ import annotations


def counted(n: int, singular: str, plural: str | None = None) -> str:
    """``"1 entry"``, ``"3 entries"``, ``"1,200 files"``: a count with its noun in the right number."""
    return f"{n:,} {singular if n == 1 else plural or singular + 's'}"


def short_label(label: str) -> str:
    """ImageNet descriptions list synonyms ("tabby, tabby cat"); the first reads best on an axis or in a line."""
    return label.split(",")[0].strip()
