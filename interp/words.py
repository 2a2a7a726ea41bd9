"""How the engine's messages count and name things, for the CLI and the pages alike."""

from __future__ import annotations

from collections.abc import Sequence


def counted(n: int, singular: str, plural: str | None = None) -> str:
    """``"1 entry"``, ``"3 entries"``, ``"1,200 files"``: a count with its noun in the right number."""
    return f"{n:,} {singular if n == 1 else plural or singular + 's'}"


def short_label(label: str) -> str:
    """ImageNet descriptions list synonyms ("tabby, tabby cat"); the first reads best on an axis or in a line."""
    return label.split(",")[0].strip()


def names_line(names: Sequence[str], most: int | None = None) -> str:
    """Class names in one line, as thumbnails and lists show an image's classes: the first name of each, joined by
    " / " ("tabby / golden retriever"), and beyond ``most`` how many more."""
    shown = " / ".join(short_label(n) for n in names[:most])
    return shown + (f" +{len(names) - most} more" if most is not None and len(names) > most else "")


def joined(items: Sequence[str]) -> str:
    """Items as a sentence lists them: ``"a"``, ``"a and b"``, ``"a, b and c"``."""
    items = list(items)
    return " and ".join(items) if len(items) <= 2 else f"{', '.join(items[:-1])} and {items[-1]}"


def percent(share: float) -> str:
    """A share as a whole percentage, ``"less than 1%"`` where that would read 0% of something that is there."""
    return f"{share:.0%}" if share >= 0.005 or share <= 0 else "less than 1%"


def duration(seconds: float) -> str:
    """A time as a person reads it: ``"45 s"``, ``"3.2 min"``, ``"2.1 h"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def epoch_line(epoch: int, epochs: int, loss: float, elapsed: float) -> str:
    """A training run's progress after ``epoch`` (1-based) of ``epochs``: its mean loss, the time so far and, from
    the epochs done, about how long is left."""
    left = elapsed / epoch * (epochs - epoch)
    return (f"epoch {epoch}/{epochs}: loss {loss:.4f}, {duration(elapsed)} so far"
            + (f", about {duration(left)} left" if epoch < epochs else ""))  # fmt: skip


def plus_minus(mean: float, half: float, digits: int = 3) -> str:
    """``"0.240 ± 0.050"``: a mean and its interval's half-width; the mean alone where there is no interval (one
    image gives none: ``nan``), never ``"± nan"``."""
    import math

    return f"{mean:.{digits}f}" if math.isnan(half) else f"{mean:.{digits}f} ± {half:.{digits}f}"


def percent_plus_minus(mean: float, half: float) -> str:
    """``"92% ± 11%"``: a share and its interval's half-width in whole percents; the share alone without one."""
    import math

    return f"{mean:.0%}" if math.isnan(half) else f"{mean:.0%} ± {half:.0%}"
