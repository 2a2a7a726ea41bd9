"""Datasets and scans: read ImageNet validation, Open Images, ImageFolders and zips from configured roots; scan them
with a model into Parquet; ask where the model is confidently wrong."""

from interp.datasets.analysis import (
    class_names_of,
    confusion_pairs,
    failures,
    per_class_accuracy,
    several_labels,
    summary,
    true_labels,
    true_names,
)
from interp.datasets.base import Dataset, DatasetError, Item, PathEscapeError, safe_child
from interp.datasets.readers import extract_zip, prune_uploads, read_folder, read_imagenet, read_openimages
from interp.datasets.roots import (
    READERS,
    SHAPES_DATASET,
    DatasetRoot,
    Reader,
    configured_roots,
    find_root,
    kinds,
    open_dataset,
    reader,
    scan_folder,
)
from interp.datasets.scanner import ScanBusy, ScanProgress, ScanSummary, damaged_note, load_scan, scan, scan_lock

__all__ = [
    "SHAPES_DATASET",
    "Dataset",
    "DatasetError",
    "DatasetRoot",
    "Item",
    "PathEscapeError",
    "READERS",
    "Reader",
    "ScanBusy",
    "ScanProgress",
    "ScanSummary",
    "configured_roots",
    "confusion_pairs",
    "damaged_note",
    "extract_zip",
    "prune_uploads",
    "failures",
    "find_root",
    "kinds",
    "load_scan",
    "open_dataset",
    "class_names_of",
    "per_class_accuracy",
    "several_labels",
    "read_folder",
    "read_imagenet",
    "read_openimages",
    "reader",
    "safe_child",
    "scan",
    "scan_folder",
    "scan_lock",
    "summary",
    "true_labels",
    "true_names",
]
