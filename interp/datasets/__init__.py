"""Datasets and scans: read ImageNet validation, Open Images, ImageFolders and zips from configured roots; scan them
with a model into Parquet; ask where the model is confidently wrong."""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
