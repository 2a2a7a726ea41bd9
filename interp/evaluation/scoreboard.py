"""One image's maps ranked by their deletion and insertion scores against the random maps' floor, and the sentence
that reads the ranking: the Attribution page's scoreboard, ``evaluate --image`` and the case study's report."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pandas as pd

from interp.errors import BadSettingError, expected, rows_with, shown
from interp.evaluation.faithfulness import Curves
from interp.words import joined

COLUMNS = ("method", "class", "deletion", "insertion", "random deletion", "random insertion", "insertion − random",
           "deletion spread", "insertion spread")  # fmt: skip
"""The scoreboard's columns: a map's areas, its class's floor (the random maps' mean areas) and the floor's spread."""


def score_line(curves: Curves, floor: Curves) -> str:
    """A map's scores beside its floor as the page's caption under the map gives them: ``deletion 0.107, insertion
    0.182 (random maps 0.109 ± 0.015, 0.092 ± 0.008)``."""
    for given in (curves, floor):
        expected(given, Curves, "score_line", "deletion_insertion or grid_curves")
    return (f"deletion {curves.deletion_auc:.3f}, insertion {curves.insertion_auc:.3f} (random maps "
            f"{floor.deletion_auc:.3f} ± {floor.deletion_spread:.3f}, {floor.insertion_auc:.3f} ± "
            f"{floor.insertion_spread:.3f})")  # fmt: skip


def scoreboard(maps: Iterable[tuple[str, str, Curves, Curves]]) -> pd.DataFrame:
    """``(method, class, the map's curves, its class's random floor)`` for each scored map, as :data:`COLUMNS`, the
    largest insertion gain over the floor first."""
    maps = list(maps) if isinstance(maps, Iterable) and not isinstance(maps, (str, bytes)) else [maps]
    for row in maps:
        if not (isinstance(row, (tuple, list)) and len(row) == 4 and all(isinstance(c, Curves) for c in row[2:])):
            raise BadSettingError("scoreboard takes one (method, class, the map's curves, its class's floor) for "
                                  f"each map, the curves as deletion_insertion or grid_curves returns them; got "
                                  f"{shown(row)}.")  # fmt: skip
    rows = [{"method": method, "class": name, "deletion": curves.deletion_auc, "insertion": curves.insertion_auc,
             "random deletion": floor.deletion_auc, "random insertion": floor.insertion_auc,
             "insertion − random": curves.insertion_auc - floor.insertion_auc,
             "deletion spread": floor.deletion_spread, "insertion spread": floor.insertion_spread}
            for method, name, curves, floor in maps]  # fmt: skip
    return pd.DataFrame(rows, columns=list(COLUMNS)).sort_values("insertion − random", ascending=False,
                                                                 ignore_index=True)  # fmt: skip


def scoreboard_sentence(table: pd.DataFrame, block: int = 1, name: Callable[[str], str] = str,
                        strong: Callable[[str], str] = str, emphasis: Callable[[str], str] = str) -> str:  # fmt: skip
    """One plain-language reading of :func:`scoreboard`'s table, for scores that removed squares of ``block`` pixels.
    A map beats the floor only by more than twice the spread of the random maps' scores: closer than that, a random
    map could have scored the same. ``name`` writes a method's or class's name (the page escapes Markdown), ``strong``
    the method that wins (the page makes it bold) and ``emphasis`` the class (italic there)."""
    reads = "scoreboard_sentence reads the table scoreboard(maps) returns"
    if rows_with(table, (), reads).empty:
        return "No map is scored on this image yet, so there is nothing to compare."
    rows_with(table, COLUMNS, reads)
    best_in = table.loc[table["insertion − random"].idxmax()]
    best_del = table.loc[(table["deletion"] - table["random deletion"]).idxmin()]
    unit = "pixels" if block == 1 else "squares"

    def floor(row, score: str) -> str:
        return f"{row[f'random {score}']:.3f} ± {row[f'{score} spread']:.3f} for random maps"

    def method(row) -> str:
        return strong(name(row["method"]))

    def klass(row) -> str:
        return emphasis(name(row["class"]))

    several = table["class"].nunique() > 1  # each clause then names its class: the best maps may be of two
    target = klass(best_in)
    if best_in["insertion"] > best_in["random insertion"] + 2 * best_in["insertion spread"]:
        text = (f"On this image, {method(best_in)} brings back {target} fastest when its top {unit} are revealed "
                f"(insertion {best_in['insertion']:.3f} against {floor(best_in, 'insertion')})")  # fmt: skip
    else:
        text = (f"On this image, no map brings back {target} clearly faster than random maps do when its top {unit} "
                f"are revealed (the best, {method(best_in)}: insertion {best_in['insertion']:.3f} against "
                f"{floor(best_in, 'insertion')})")  # fmt: skip
    removed = "it" if best_del["class"] == best_in["class"] else klass(best_del)
    if best_del["deletion"] < best_del["random deletion"] - 2 * best_del["deletion spread"]:
        text += (f", and {method(best_del)} removes {removed} fastest (deletion {best_del['deletion']:.3f} against "
                 f"{floor(best_del, 'deletion')}).")  # fmt: skip
    else:
        whose = f"its class clearly faster than random maps (the best, {method(best_del)} for {klass(best_del)}" \
            if several else f"it clearly faster than random maps (the best, {method(best_del)}"
        text += (f". By deletion no map removes {whose}: {best_del['deletion']:.3f} against "
                 f"{floor(best_del, 'deletion')}).")  # fmt: skip
        if block == 1:
            text += (" Blurring scattered pixels already wrecks the image's texture, so read deletion here with care "
                     "(larger squares avoid that).")  # fmt: skip
    weak = table[table["insertion"] <= table["random insertion"]]
    if weak.empty:
        return text
    if not several:
        methods = sorted(set(weak["method"]))
        verb = "does" if len(methods) == 1 else "do"
        return text + f" By insertion, {joined(map(name, methods))} {verb} no better than random maps."
    classes: dict[str, list[str]] = {}
    for _, row in weak.iterrows():
        classes.setdefault(row["method"], []).append(klass(row))
    entries = [f"{name(m)} for {joined(classes[m])}" for m in sorted(classes)]
    if len(entries) == 1:
        return text + f" By insertion, {entries[0]} does no better than random maps."
    return text + f" By insertion, these do no better than random maps: {'; '.join(entries)}."
