"""What ``interp.datasets`` offers, read by type checkers and, at run time, by ``lazy_loader`` (``__init__.py``)."""

from .analysis import (
    class_names_of,
    confusion_pairs,
    failures,
    per_class_accuracy,
    several_labels,
    summary,
    true_labels,
    true_names,
)
from .base import Dataset, DatasetError, Item, PathEscapeError, safe_child
from .ray_scan import RayUnavailableError, scan_ray
from .readers import extract_zip, prune_uploads, read_folder, read_imagenet, read_openimages
from .roots import (
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
from .scanner import ScanBusy, ScanProgress, ScanSummary, damaged_note, load_scan, scan, scan_lock

__all__ = [
    "SHAPES_DATASET",
    "Dataset",
    "DatasetError",
    "DatasetRoot",
    "Item",
    "PathEscapeError",
    "READERS",
    "RayUnavailableError",
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
    "scan_ray",
    "summary",
    "true_labels",
    "true_names",
]
