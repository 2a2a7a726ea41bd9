"""Write a split of the shapes world to disk as an ImageFolder (one folder per class) plus ``labels.csv``."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from interp.shapes.generator import CLASSES, IMAGE_SIZE, generate

CSV_FIELDS = ("path", "label", "class", "x0", "y0", "x1", "y1", "marker", "split", "index", "seed")


def write_image_folder(
    out: Path,
    n: int,
    *,
    seed: int = 0,
    split: str = "train",
    size: int = IMAGE_SIZE,
    masks: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write ``n`` samples to ``out/<class>/<split>_<index>.png`` and ``out/labels.csv``; returns the CSV path.

    Args:
        masks: also write each object mask as ``out/masks/<split>_<index>.png`` (white = object).
        progress: called as ``progress(done, total)`` after each image.
    """
    out = Path(out)
    for name in CLASSES:
        (out / name).mkdir(parents=True, exist_ok=True)
    if masks:
        (out / "masks").mkdir(parents=True, exist_ok=True)
    csv_path = out / "labels.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for done, sample in enumerate(generate(n, seed=seed, split=split, size=size), start=1):
            rel = Path(sample.class_name) / f"{split}_{sample.index:06d}.png"
            Image.fromarray(sample.image).save(out / rel)
            if masks:
                Image.fromarray(sample.mask.astype("uint8") * 255).save(out / "masks" / f"{split}_{sample.index:06d}.png")
            x0, y0, x1, y1 = sample.box
            writer.writerow(
                {"path": rel.as_posix(), "label": sample.label, "class": sample.class_name, "x0": x0, "y0": y0,
                 "x1": x1, "y1": y1, "marker": int(sample.marker), "split": split, "index": sample.index,
                 "seed": seed}  # fmt: skip
            )
            if progress is not None:
                progress(done, n)
    return csv_path
