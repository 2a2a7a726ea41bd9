"""JPEGs decoded in batches where the model runs: nvJPEG on a GPU, for scans that a CPU's decoding would hold back.

A JPEG goes to the device only when :func:`interp.images.load_rgb` would do nothing to it beyond decoding: a
complete file (it ends with the end-of-image marker), RGB or grey, no EXIF rotation, one frame, within the size
limits. Everything else (other formats, CMYK, rotated, truncated, huge files) takes the CPU path, which gives the
same pixels, notes and error sentences as everywhere else in the app. :func:`device_decodable` reads only the
header, so loader workers can sort files while the device decodes the previous batch.

The decoder is TorchCodec's (the library that replaced torchvision's image decoders); torchvision's own
``decode_jpeg``, deprecated since torchvision 0.29, where TorchCodec is not installed.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable, Sequence
from functools import cache

import torch
from PIL import Image

from interp.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_SIDE, MAX_ASPECT

log = logging.getLogger(__name__)

_START, _END = b"\xff\xd8\xff", b"\xff\xd9"


@cache
def decoder() -> Callable[[list[torch.Tensor], torch.device], list[torch.Tensor]] | None:
    """``decode(list of 1-D uint8 CPU tensors, device) -> list of (3, H, W) uint8 RGB tensors on device``, or ``None``
    where neither TorchCodec nor torchvision can decode JPEGs."""
    try:
        from torchcodec.decoders import decode_jpeg

        return lambda data, device: list(decode_jpeg(data, mode="RGB", device=device))
    except Exception as exc:  # not installed, or its native library does not load on this machine
        log.info("TorchCodec cannot decode here (%r); trying torchvision", exc)
    try:
        from torchvision.io import ImageReadMode
        from torchvision.io import decode_jpeg as tv_decode

        def decode(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=UserWarning)  # its deprecation notice, every call
                return list(tv_decode(data, mode=ImageReadMode.RGB, device=device))

        return decode
    except Exception as exc:
        log.info("torchvision cannot decode JPEGs here either (%r)", exc)
        return None


def device_decodable(data: bytes | bytearray, max_bytes: int = DEFAULT_MAX_BYTES, max_side: int = DEFAULT_MAX_SIDE) -> bool:
    """Whether ``data`` is a JPEG that decoding alone turns into the pixels :func:`interp.images.load_rgb` gives
    (read from the header; nothing is decoded)."""
    if not (4 <= len(data) <= max_bytes) or data[:3] != _START or not bytes(data[-64:]).rstrip(b"\0").endswith(_END):
        return False
    try:
        im = Image.open(io.BytesIO(data), formats=("JPEG",))
        w, h = im.size
        limit = Image.MAX_IMAGE_PIXELS
        return (
            im.format == "JPEG"  # an MPO (several pictures) opens as "MPO"
            and im.mode in ("RGB", "L")
            and 0 < min(w, h)
            and max(w, h) <= max_side
            and max(w, h) <= MAX_ASPECT * min(w, h)
            and (limit is None or w * h <= limit)
            and im.getexif().get(0x0112, 1) in (None, 1)
        )
    except Exception:  # any header Pillow cannot read: the CPU path says what is wrong with it
        return False


def decode_on(data: Sequence[torch.Tensor], device: torch.device | str) -> list[torch.Tensor | None]:
    """Decode JPEG bytes (1-D ``uint8`` CPU tensors) on ``device``, all in one call where possible: ``(3, H, W)``
    ``uint8`` RGB per image, ``None`` for one the decoder refuses (it then takes the CPU path). A batch the decoder
    refuses as a whole (it returns nothing when one image fails) is decoded one image at a time."""
    decode = decoder()
    if decode is None:
        return [None] * len(data)
    device = torch.device(device)
    if not data:
        return []
    try:
        return list(decode(list(data), device))
    except Exception as exc:  # nvJPEG's and libjpeg's errors arrive as RuntimeError or ValueError, or worse
        log.info("batch decode on %s failed (%r); decoding one by one", device, exc)
    out: list[torch.Tensor | None] = []
    for one in data:
        try:
            out.append(decode([one], device)[0])
        except Exception:
            out.append(None)
    return out
