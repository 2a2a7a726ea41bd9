"""Questions asked of a scan: where is the model confidently wrong, which classes does it confuse, how does each
class fare. Plain pandas on the rows of :func:`interp.datasets.scanner.load_scan`."""

from __future__ import annotations

import pandas as pd


def scored(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows with a prediction and a comparable true label."""
    return rows[rows["error"].isna() & rows["correct"].notna()]


def failures(
    rows: pd.DataFrame,
    min_confidence: float = 0.0,
    true_class: int | None = None,
    pred_class: int | None = None,
) -> pd.DataFrame:
    """Misclassifications at or above ``min_confidence``, most confident first; optionally of one true class (any of
    an image's labels, as Open Images gives several), one predicted class, or both (a confusion pair)."""
    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"minimum confidence must be between 0 and 1, got {min_confidence}.")
    wrong = scored(rows)
    wrong = wrong[(wrong["correct"] == False) & (wrong["confidence"] >= min_confidence)]
    if true_class is not None:
        classes = true_labels(wrong)
        wrong = wrong[wrong.index.isin(classes.index[classes == true_class])]
    if pred_class is not None:
        wrong = wrong[wrong["pred"] == pred_class]
    return wrong.sort_values(["confidence", "id"], ascending=[False, True]).reset_index(drop=True)


def true_labels(rows: pd.DataFrame) -> pd.Series:
    """Every true class of every row, long form: one int per (row, class), indexed by the row's index. A multi-label
    image (Open Images) has a value per label (its ``labels``), others their one ``label``; rows without any have
    none. Vectorised: a scan has a million rows."""
    parts = [rows["label"].dropna()]
    if "labels" in rows:
        parts.append(rows["labels"].explode().dropna())  # an empty list explodes to NaN, dropped
    both = pd.concat(parts)
    return both.astype("int64") if len(both) else pd.Series([], dtype="int64")


def confusion_pairs(rows: pd.DataFrame, n: int = 20, min_confidence: float = 0.0) -> pd.DataFrame:
    """The ``n`` most frequent (true, predicted) pairs among the mistakes: columns label, label_name, pred,
    pred_name, count, mean_confidence."""
    wrong = failures(rows, min_confidence)
    if wrong.empty:
        return pd.DataFrame(columns=["label", "label_name", "pred", "pred_name", "count", "mean_confidence"])
    pairs = (
        wrong.groupby(["label", "pred"])
        .agg(label_name=("label_name", "first"), pred_name=("pred_name", "first"), count=("id", "size"),
             mean_confidence=("confidence", "mean"))  # fmt: skip
        .reset_index()
        .sort_values(["count", "mean_confidence"], ascending=[False, False])
    )
    return pairs.head(n).reset_index(drop=True)[["label", "label_name", "pred", "pred_name", "count", "mean_confidence"]]


def per_class_accuracy(rows: pd.DataFrame) -> pd.DataFrame:
    """Accuracy of each true class: columns label, label_name, images, correct, accuracy (worst first)."""
    done = scored(rows)
    if done.empty:
        return pd.DataFrame(columns=["label", "label_name", "images", "correct", "accuracy"])
    table = (
        done.groupby("label")
        .agg(label_name=("label_name", "first"), images=("id", "size"), correct=("correct", "sum"))
        .reset_index()
    )
    table["accuracy"] = table["correct"] / table["images"]
    return table.sort_values(["accuracy", "images"], ascending=[True, False]).reset_index(drop=True)


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
