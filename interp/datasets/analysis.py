"""Questions asked of a scan: where is the model confidently wrong, which classes does it confuse, how does each
class fare. Plain pandas on the rows of :func:`interp.datasets.scanner.load_scan`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd

from interp.errors import BadSettingError, real_number, rows_with, shown, whole_number
from interp.words import names_line, short_label


def scan_rows(rows: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """``rows`` when they are a scan's (the DataFrame :func:`interp.datasets.load_scan` returns) with ``columns``;
    anything else is a sentence, not pandas' ``KeyError`` of the first column a table reads."""
    if isinstance(rows, tuple) and len(rows) == 2 and isinstance(rows[1], pd.DataFrame):
        raise BadSettingError("load_scan(folder) returns two things, the scan's settings and its rows: "
                              "meta, rows = load_scan(folder), then pass rows.")  # fmt: skip
    return rows_with(rows, columns, "these tables read a scan's rows, the DataFrame load_scan(folder) returns")


def scored(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows with a prediction and a comparable true label."""
    rows = scan_rows(rows, "error", "correct")
    return rows[rows["error"].isna() & rows["correct"].notna()]


def failures(
    rows: pd.DataFrame,
    min_confidence: float = 0.0,
    true_class: int | None = None,
    pred_class: int | None = None,
) -> pd.DataFrame:
    """Misclassifications at or above ``min_confidence``, most confident first; optionally of one true class (any of
    an image's labels, as Open Images gives several), one predicted class, or both (a confusion pair)."""
    confidence = real_number(min_confidence)
    if confidence is None or not 0.0 <= confidence <= 1.0:
        raise BadSettingError(f"minimum confidence must be a number from 0 to 1, got {shown(min_confidence)}.")
    for what, value in (("true class", true_class), ("predicted class", pred_class)):
        if value is not None and whole_number(value) is None:
            raise BadSettingError(f"the {what} must be a class index (a whole number), got {shown(value)}.")
    filters = {"label": true_class, "pred": pred_class}
    wrong = scored(scan_rows(rows, "id", "confidence", *(c for c, value in filters.items() if value is not None)))
    wrong = wrong[(wrong["correct"] == False) & (wrong["confidence"] >= min_confidence)]
    if true_class is not None:
        classes = true_labels(wrong)
        wrong = wrong[wrong.index.isin(classes.index[classes == true_class])]
    if pred_class is not None:
        wrong = wrong[wrong["pred"] == pred_class]
    return wrong.sort_values(["confidence", "id"], ascending=[False, True]).reset_index(drop=True)


def true_labels(rows: pd.DataFrame) -> pd.Series:
    """Every true class of every row, long form: one int per (row, class), indexed by the row's index, each class of
    a row once. A multi-label image (Open Images) has a value per label (its ``labels``, whose first is its
    ``label``), others their one ``label``; rows without any have none. Vectorised: a scan has a million rows."""
    return pd.concat([rows["label"].dropna().astype("int64"), _more_labels(rows)])


def several_labels(rows: pd.DataFrame) -> pd.Series:
    """Which rows have more than one true class (an Open Images photo), as a boolean mask of ``rows``."""
    if "labels" not in rows:
        return pd.Series(False, index=rows.index)
    return rows["labels"].map(len, na_action="ignore") > 1  # a missing list is NaN here: not several


def _more_labels(rows: pd.DataFrame) -> pd.Series:
    """The true classes of multi-label rows after their first (which is their ``label``), indexed by row."""
    if "labels" not in rows or rows.empty:
        return pd.Series([], dtype="int64")
    many = several_labels(rows)
    if not many.any():
        return pd.Series([], dtype="int64")
    more = rows.loc[many, "labels"].explode().dropna().astype("int64")
    return more[more.to_numpy() != rows.loc[more.index, "label"].to_numpy()]


_NAMED = ("label", "label_name", "pred", "pred_name")  # what class_names_of reads


def class_names_of(rows: pd.DataFrame, class_names: Sequence[str] | None = None) -> Callable[[int], str]:
    """How tables name a class index: by the model's own ``class_names`` when given, otherwise by what the rows
    say of it (a prediction's name, or the name of an image with that one label), otherwise "class N"."""
    if class_names is not None:
        return lambda i: class_names[i] if 0 <= i < len(class_names) else f"class {i}"
    single = ~several_labels(rows)
    known: dict[int, str] = {}
    for pairs in (rows.loc[single, ["label", "label_name"]], rows[["pred", "pred_name"]]):
        pairs = pairs.dropna().drop_duplicates(pairs.columns[0])  # a class per row: a million rows, a thousand names
        known.update(zip(pairs.iloc[:, 0].astype("int64"), pairs.iloc[:, 1], strict=True))
    return lambda i: known.get(i, f"class {i}")


def true_names(labels, label_name: str, name: Callable[[int], str], most: int | None = None) -> str:
    """An image's true classes in a line, as the gallery's thumbnails and the CLI's list say them: the first name
    (ImageNet's names carry synonyms) of each of its ``labels`` (an Open Images photo has several; beyond ``most``,
    how many more), or its one label's, ``label_name``. ``name`` is :func:`class_names_of`'s."""
    if labels is None or len(labels) <= 1:
        return short_label(label_name)
    return names_line([name(int(i)) for i in labels], most)


def _long(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (image, true class) of ``rows``, with what the tables need of the image: an image with several
    true classes counts under each."""
    columns = ["id", "pred", "confidence", "correct"]
    first = rows["label"].notna()
    more = _more_labels(rows)
    parts = [rows.loc[first, columns].assign(label=rows.loc[first, "label"].astype("int64"))]
    if len(more):
        parts.append(rows.loc[more.index, columns].assign(label=more.to_numpy()))
    return pd.concat(parts, ignore_index=True)


def confusion_pairs(
    rows: pd.DataFrame, n: int = 20, min_confidence: float = 0.0, class_names: Sequence[str] | None = None
) -> pd.DataFrame:
    """The ``n`` most frequent (true, predicted) pairs among the mistakes: columns label, label_name, pred,
    pred_name, count, mean_confidence. A mistake on an image with several true classes counts in a pair for each,
    as the gallery's filter finds it under each; names as :func:`class_names_of` gives them."""
    columns = ["label", "label_name", "pred", "pred_name", "count", "mean_confidence"]
    wrong = _long(failures(scan_rows(rows, *_NAMED), min_confidence))
    if wrong.empty:
        return pd.DataFrame(columns=columns)
    name = class_names_of(rows, class_names)
    pairs = (
        wrong.groupby(["label", "pred"])
        .agg(count=("id", "size"), mean_confidence=("confidence", "mean"))
        .reset_index()
        .sort_values(["count", "mean_confidence", "label", "pred"], ascending=[False, False, True, True])
        .head(n)
        .reset_index(drop=True)
    )
    pairs["label_name"] = [name(int(i)) for i in pairs["label"]]
    pairs["pred_name"] = [name(int(i)) for i in pairs["pred"]]
    return pairs[columns]


def per_class_accuracy(rows: pd.DataFrame, class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Accuracy of each true class: columns label, label_name, images, correct, accuracy (worst first). An image
    with several true classes (Open Images) counts under each, right when the model's top-1 is any of them, as the
    scan scores it; names as :func:`class_names_of` gives them."""
    columns = ["label", "label_name", "images", "correct", "accuracy"]
    done = _long(scored(scan_rows(rows, "id", "pred", "confidence", *_NAMED)))
    if done.empty:
        return pd.DataFrame(columns=columns)
    table = done.groupby("label").agg(images=("id", "size"), correct=("correct", "sum")).reset_index()
    table["correct"] = table["correct"].astype("int64")
    table["accuracy"] = table["correct"] / table["images"]
    name = class_names_of(rows, class_names)
    table["label_name"] = [name(int(i)) for i in table["label"]]
    table = table.sort_values(["accuracy", "images", "label"], ascending=[True, False, True])
    return table.reset_index(drop=True)[columns]


def summary(rows: pd.DataFrame) -> dict[str, float | int]:
    """Counts and overall accuracy for a heading."""
    done = scored(rows)
    return {
        "images": int(len(rows)),
        "unreadable": int(rows["error"].notna().sum()),
        "scored": int(len(done)),
        "accuracy": float(done["correct"].mean()) if len(done) else float("nan"),
        "mistakes": int((done["correct"] == False).sum()),
    }
