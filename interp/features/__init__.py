"""What a unit of the network responds to: its filters and feature maps, the image that drives it hardest
(activation maximisation), and the dataset's images across its spectrum.

    >>> import interp
    >>> from interp.features import Objective, VisualiseSettings, visualise, spectrum
    >>> model = interp.load_model("efficientnet_lite0")
    >>> v = visualise(model, Objective("channel", 5, "blocks.3"), VisualiseSettings(param="fft"))
    >>> v.images.shape                                   # (batch, size, size, 3) uint8
    (1, 128, 128, 3)
    >>> s = spectrum(model, Objective("channel", 5, "blocks.3"), [interp.load_sample(n) for n in interp.sample_names()])
    >>> [e.name for e in s.columns["maximum"]]           # the photos that drive the channel most, lowest first
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
