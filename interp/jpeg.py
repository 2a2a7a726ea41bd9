"""JPEGs decoded in batches where the model runs: nvJPEG on a GPU, for scans that a CPU's decoding would hold back.

A JPEG goes to the device only when :func:`interp.images.load_rgb` would do nothing to it beyond decoding: a
complete file (it ends with the end-of-image marker), RGB or grey, no EXIF rotation, one frame, within the size
limits. Everything else (other formats, CMYK, rotated, truncated, huge files) takes the CPU path, which gives the
same pixels, notes and error sentences as everywhere else in the app. :func:`device_decodable` reads only the
header, so loader workers can sort files while the device decodes the previous batch.

The decoder is TorchCodec's (the library that replaced torchvision's image decoders); NVIDIA's nvImageCodec where
TorchCodec is not installed or cannot decode on the device, or where ``$INTERP_JPEG_DECODER`` asks for it; then
torchvision's own ``decode_jpeg``, deprecated since torchvision 0.29 (each is tried on a small JPEG first,
:func:`decoder`); with none, ``auto`` scans decode with Pillow.
The CPU path of a scan decodes the same plain JPEGs with the same decoder on the CPU (:func:`decode_plain`), which
lets go of the GIL, so the threads that read a scan's images run side by side.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from functools import cache

import numpy as np
import torch
from PIL import Image

from interp.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_SIDE, MAX_ASPECT

log = logging.getLogger(__name__)

_START, _END = b"\xff\xd8\xff", b"\xff\xd9"


Decode = Callable[[list[torch.Tensor], torch.device], list[torch.Tensor]]


def _torchcodec() -> Decode:
    from torchcodec.decoders import decode_jpeg

    return lambda data, device: list(decode_jpeg(data, mode="RGB", device=device))


def _torchvision() -> Decode:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)  # its decoders' deprecation, on import
        from torchvision.io import ImageReadMode
        from torchvision.io import decode_jpeg as tv_decode

    def decode(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)  # its deprecation notices, every call
            warnings.simplefilter("ignore", category=DeprecationWarning)
            return list(tv_decode(data, mode=ImageReadMode.RGB, device=device))

    return decode


def _nvimagecodec() -> Decode:
    """NVIDIA's nvImageCodec (``pip install nvidia-nvimgcodec-cu13[nvjpeg]``, the build for your CUDA version), which
    has no part in ``requirements.txt``: NVIDIA's own library for decoding images on its GPUs, a third decoder to
    measure against TorchCodec (``bench/gpu_checks.sh decoders``). It is handed the current CUDA stream, orders its
    work on it and allocates its pictures there (``cudaMallocAsync``, per its sources); they are copied into torch's
    memory on that stream before they are handed over. Its pixels come planar, ``(3, H, W)``, as the others', and it
    asks nvJPEG to upsample colour stored at half resolution as libjpeg-turbo does (``fancy_upsampling``), where nvJPEG
    can. One decoder per GPU, made on first use; it is called through :func:`_on_a_stream_of_its_own`, which lets one
    thread at a time decode on a GPU, so it needs no lock of its own.

    GPUs only: its CPU decoder (libjpeg-turbo) reads damaged files that Pillow and TorchCodec refuse (12 of 200 copies
    of a photo with random bytes overwritten, ``tests/test_jpeg_decode.py``'s way), and a scan's CPU path must refuse
    what the rest of the app refuses."""
    from nvidia import nvimgcodec as nv

    params = nv.DecodeParams(apply_exif_orientation=False, color_spec=nv.ColorSpec.SRGB,
                             sample_format=nv.SampleFormat.P_RGB)  # fmt: skip
    decoders: dict[int, object] = {}

    def decode(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
        if device.type != "cuda":
            raise RuntimeError(f"nvImageCodec is used on CUDA GPUs only, not on {device}: its CPU decoder reads "
                               "damaged files that Pillow refuses")  # fmt: skip  (the probe passes it over)
        index = _gpu_index(device)
        if index not in decoders:
            kinds = (nv.BackendKind.HW_GPU_ONLY, nv.BackendKind.GPU_ONLY, nv.BackendKind.HYBRID_CPU_GPU)
            decoders[index] = nv.Decoder(device_id=index, backends=[nv.Backend(k) for k in kinds],
                                         options=":fancy_upsampling=1")  # fmt: skip
        stream = torch.cuda.current_stream(device).cuda_stream
        images = decoders[index].decode([x.numpy() for x in data], params=params, cuda_stream=stream)
        # copied into torch's memory on this stream (256 pictures of 500×375: 144 MB, some 0.07 ms at an H200's copy
        # rate): its own memory would be freed on this stream whatever stream still reads it (_on_a_stream_of_its_own)
        return [None if im is None else torch.from_dlpack(im).clone() for im in images]  # None: one it cannot decode

    return decode  # type: ignore[return-value]


CANDIDATES: tuple[tuple[str, Callable[[], Decode]], ...] = (
    ("TorchCodec", _torchcodec), ("nvImageCodec", _nvimagecodec), ("torchvision", _torchvision),
)  # fmt: skip
"""The JPEG decoders tried, in order of preference: a name and a function that imports and returns it. TorchCodec
comes first because ``requirements.txt`` installs it; nvImageCodec is there only where someone installed it, and
comes before torchvision's decoder, which is deprecated."""

ENV_DECODER = "INTERP_JPEG_DECODER"
"""``auto`` (unset: :data:`CANDIDATES` in order) or one decoder's name (``torchcodec``, ``nvimagecodec``,
``torchvision``; any case), which is then the only one tried: to compare them on one machine, or to keep off one that
misbehaves there."""


def _candidates() -> tuple[tuple[str, Callable[[], Decode]], ...]:
    """:data:`CANDIDATES`, or the one ``$INTERP_JPEG_DECODER`` names (an unknown name: all, with a warning)."""
    wanted = os.environ.get(ENV_DECODER, "auto").strip().lower() or "auto"
    if wanted == "auto":
        return CANDIDATES
    chosen = tuple(c for c in CANDIDATES if c[0].lower() == wanted)
    if not chosen:
        log.warning("%s=%r is not auto or one of %s; using auto", ENV_DECODER, wanted,
                    ", ".join(name.lower() for name, _ in CANDIDATES))  # fmt: skip
    return chosen or CANDIDATES


def tried() -> list[str]:
    """The names of the decoders :func:`decoder` tries, in order (:data:`ENV_DECODER` may name one)."""
    return [name for name, _ in _candidates()]


def decoder(device: torch.device | str = "cpu") -> Decode | None:
    """``decode(list of 1-D uint8 CPU tensors, device) -> list of (3, H, W) uint8 RGB tensors on device``: the first
    of :data:`CANDIDATES` (or the one :data:`ENV_DECODER` names) that imports and decodes a small test JPEG on
    ``device`` to the right pixels (within a few grey levels of Pillow's), or ``None`` where none does. A library that
    imports but cannot decode there (a build without CUDA, or one made for another torch or CUDA version) would
    otherwise fail every batch of a scan, which would then decode everything with Pillow on the main thread. Probed
    once per device. On a GPU it decodes on a stream of its own (:func:`_on_a_stream_of_its_own`: nvJPEG's hardware
    engine would otherwise write into memory that work queued on the caller's stream still reads)."""
    found = _decoder_on(str(torch.device(device)))
    return found[1] if found else None


def decoder_name(device: torch.device | str = "cpu") -> str | None:
    """Which of :data:`CANDIDATES` :func:`decoder` uses on ``device`` (``None``: none works there)."""
    found = _decoder_on(str(torch.device(device)))
    return found[0] if found else None


def _gpu_index(device: torch.device) -> int:
    """The index of a CUDA ``device`` (``cuda`` alone: the current one)."""
    return device.index if device.index is not None else torch.cuda.current_device()


_DECODING: dict[int, tuple[torch.cuda.Stream, threading.Lock]] = {}
_DECODING_MADE = threading.Lock()


def _decoding_stream(index: int) -> tuple[torch.cuda.Stream, threading.Lock]:
    """The CUDA stream JPEGs are decoded on, for GPU ``index``, and the lock that makes its users take turns."""
    with _DECODING_MADE:
        if index not in _DECODING:
            _DECODING[index] = _private_stream(index), threading.Lock()
        return _DECODING[index]


def _private_stream(index: int) -> torch.cuda.Stream:
    """A CUDA stream on GPU ``index`` that no other code is given. torch's own streams come from a pool of 32 per GPU,
    handed out in turn, so one of them could also be another thread's preparing stream, whose freed blocks its
    allocator would then give the decoder. Made with CUDA's runtime through ``cuda-bindings`` (which torch installs);
    where that fails, one of torch's (and a rare clash of streams is back)."""
    try:
        from cuda.bindings import runtime

        _, before = runtime.cudaGetDevice()  # the runtime may be torch's own: its device is put back
        runtime.cudaSetDevice(index)
        try:
            error, handle = runtime.cudaStreamCreateWithFlags(runtime.cudaStreamNonBlocking)
        finally:
            runtime.cudaSetDevice(before)
        if error != runtime.cudaError_t.cudaSuccess:
            raise RuntimeError(f"cudaStreamCreateWithFlags: {error}")
        return torch.cuda.ExternalStream(int(handle), device=torch.device("cuda", index))
    except Exception as exc:  # not installed, or another CUDA runtime than the driver takes
        log.info("JPEGs are decoded on a stream of torch's pool on cuda:%d (%r)", index, exc)
        return torch.cuda.Stream(index)


def _on_a_stream_of_its_own(decode: Decode) -> Decode:
    """``decode`` that, on a GPU, decodes on a CUDA stream that does nothing else (:func:`_decoding_stream`, one per
    GPU, its users taking turns) and hands the pictures over to the caller's stream: that stream waits for the
    decoding, and each picture's memory is kept from reuse until the work the caller queues on it is done.

    Why not on the caller's stream: nvJPEG's hardware engine (A100, H100, H200: the path baseline JPEGs take) writes a
    batch's pictures when ``nvjpegDecodeBatched`` is called, not when its stream gets there, and a device-side wait
    does not hold it back (TorchCodec pull request 1634, torchvision pull request 9606: reproduced there on H100s with
    nvJPEG 12.3 to 13.2). The pictures' memory comes from the stream's allocator, which hands a block out again as soon
    as it is freed on that stream, while kernels queued there may still read it: on a scan's preparing stream, the
    resizing of the batch before, whose pictures and float copies are freed as soon as its kernels are queued.
    Decoding over them would change that batch's pixels with no error anywhere. Here the pictures come from the
    decoding stream's own blocks, which hold nothing but pictures, each freed only once the caller's stream is done
    with it; and the decoding stream is drained before each call, so nothing queued there still reads what the
    decoder may be given. Draining the caller's stream instead would also do, but the preparing thread would then wait
    for its resizing of the batch before, which shares the GPU with the model's pass (and TorchCodec 0.16, decoding on
    the current stream, ends each call waiting for all of it). Should the decoding stream be the caller's own (torch's
    pool, :func:`_private_stream`), the caller's stream is drained instead."""

    def decode_apart(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
        if device.type != "cuda":
            return decode(data, device)
        caller = torch.cuda.current_stream(device)
        own, turn = _decoding_stream(_gpu_index(device))
        with turn:
            if own.cuda_stream == caller.cuda_stream:
                caller.synchronize()
                return decode(data, device)
            own.synchronize()  # earlier decoding only
            with torch.cuda.stream(own):
                pictures = decode(data, device)
            caller.wait_stream(own)
            for picture in pictures:
                if picture is not None:
                    picture.record_stream(caller)
        return pictures

    return decode_apart


@cache
def _decoder_on(device: str) -> tuple[str, Decode] | None:
    try:  # a device this process cannot use (no CUDA here): no library is tried, and none prints its native errors
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as exc:
        log.info("no JPEG decoder is tried on %s (%r)", device, exc)
        return None
    blob, expected = _probe()
    for name, load in _candidates():
        try:
            decode = _on_a_stream_of_its_own(load())
            where = torch.device(device)
            got = decode([torch.frombuffer(bytearray(blob), dtype=torch.uint8)], where)[0]
            if got is None:  # nvImageCodec's answer where none of its decoders loaded (no nvJPEG library found)
                raise RuntimeError("it gave no picture for the test JPEG")
            elsewhere = got.device.type != where.type or where.index not in (None, got.device.index)
            if got.shape != expected.shape or got.dtype != torch.uint8 or elsewhere:
                raise ValueError(f"decoded a {tuple(expected.shape)} test JPEG to {tuple(got.shape)} {got.dtype} on "
                                 f"{got.device}")  # fmt: skip
            apart = (got.cpu().int() - expected.int()).abs().float().mean().item()
            if apart > 4:
                raise ValueError(f"its pixels are {apart:.1f} grey levels from Pillow's on average")
        except Exception as exc:  # not installed, its native library does not load, or it cannot decode there
            log.info("%s cannot decode JPEGs on %s (%r)", name, device, exc)
            continue
        log.info("JPEGs are decoded on %s by %s", device, name)
        return name, decode
    return None


@cache
def _probe(subsampling: int = 0) -> tuple[bytes, torch.Tensor]:
    """A 24×16 JPEG with colour and detail, and Pillow's pixels for it as ``(3, 16, 24)`` ``uint8``. Its colours are
    stored at full resolution (``subsampling=0``, 4:4:4): a decoder that upsamples halved colours otherwise than
    libjpeg-turbo does (nvJPEG) is several grey levels away on such sharp colour edges, which says nothing about
    whether it decodes; photos' distance is for the GPU test (``tests/test_gpu.py``) to bound."""
    y, x = torch.meshgrid(torch.arange(16), torch.arange(24), indexing="ij")
    rgb = torch.stack([x * 10, y * 15, (x * y) % 256]).to(torch.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb.permute(1, 2, 0).numpy()).save(buf, "JPEG", quality=95, subsampling=subsampling)
    decoded = torch.from_numpy(np.asarray(Image.open(buf).convert("RGB")).copy()).permute(2, 0, 1)
    return buf.getvalue(), decoded


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
    decode = decoder(device)
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


def decode_plain(data: bytes | bytearray) -> torch.Tensor | None:
    """``data`` decoded on the CPU by :func:`decoder` as ``(3, H, W)`` ``uint8`` RGB, where it is a JPEG that
    decoding alone turns into :func:`interp.images.load_rgb`'s pixels (:func:`device_decodable`) and the decoder takes
    it; ``None`` otherwise (the caller decodes it with Pillow). The same libjpeg-turbo as Pillow's and the same
    pixels, but it lets go of the GIL for the whole decode, so threads that read a scan's images run side by side."""
    if not device_decodable(data) or decoder("cpu") is None:
        return None
    buffer = bytearray(data) if isinstance(data, bytes) else data  # torch warns about a read-only buffer
    return decode_on([torch.frombuffer(buffer, dtype=torch.uint8)], "cpu")[0]
