"""Settings that the person running the app controls: where results are cached, which device runs the models.

Nothing is read at import time. ``Settings.from_env()`` reads the environment when called, so tests and the
dashboard each decide when settings are taken.
"""

from __future__ import annotations

import getpass
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from interp.errors import BadSettingError, shown

ENV_CACHE_DIR = "INTERP_CACHE_DIR"
ENV_CACHE_SIZE_MB = "INTERP_CACHE_SIZE_MB"
ENV_DEVICE = "INTERP_DEVICE"
ENV_MEMORY_LIMIT_MB = "INTERP_MEMORY_LIMIT_MB"
ENV_OFFLINE = "INTERP_OFFLINE"
ENV_SHARE_CONCEPTS = "INTERP_SHARE_CONCEPTS"
YES = ("1", "true", "yes", "on")
NO = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Settings:
    """Run-time settings.

    Attributes:
        cache_dir: folder of the on-disk result cache (default ``~/.cache/interp``; ``$INTERP_CACHE_DIR``).
        cache_size_mb: the result cache evicts least-recently-used entries past this size (``$INTERP_CACHE_SIZE_MB``).
        device: ``"auto"`` (the GPU when there is one, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``…
            (``$INTERP_DEVICE``).
        memory_limit_mb: what the whole process may hold (``$INTERP_MEMORY_LIMIT_MB``): models that would not fit are
            refused and attributions batch within it; ``None``: the container's limit when there is one
            (:mod:`interp.runtime`), and a 2 GB ceiling for attributions (:mod:`interp.attribution.memory`).
        share_concepts: whether visitors of the app may add concept sets to the server's shared library, which every
            visitor sees (``$INTERP_SHARE_CONCEPTS``, ``1`` or ``0``); a visitor's own sets are theirs alone either way.
    """

    cache_dir: Path
    cache_size_mb: int = 1024
    device: str = "auto"
    memory_limit_mb: int | None = None
    share_concepts: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from environment variables, falling back to the defaults above."""
        env = os.environ if environ is None else environ
        cache_dir = _setting(env, ENV_CACHE_DIR) or str(_home() / ".cache" / "interp")
        size_mb = _megabytes(env, ENV_CACHE_SIZE_MB, "1024")
        limit_mb = _megabytes(env, ENV_MEMORY_LIMIT_MB, "2000") if _setting(env, ENV_MEMORY_LIMIT_MB) else None
        share = _switch(env, ENV_SHARE_CONCEPTS, "1", "set 0 to keep every visitor's concept sets to themselves")
        # read where the hub is reached (interp.models.weights.hub_offline_by_setting); checked here, with the rest
        _switch(env, ENV_OFFLINE, "0", "set 1 never to contact the Hugging Face hub, 0 to try it")
        return cls(cache_dir=Path(cache_dir).expanduser(), cache_size_mb=size_mb,
                   device=_setting(env, ENV_DEVICE) or "auto", memory_limit_mb=limit_mb,
                   share_concepts=share)  # fmt: skip

    def writable(self) -> tuple[Settings, str | None]:
        """These settings with a cache folder this process can write, and ``None``; or, when ``cache_dir`` cannot be
        created or written (a read-only home in a container, a file in the way), with a folder of this user in the
        system's temporary folder instead, and the sentence saying so. :class:`BadSettingError` when neither can be
        written. The result cache, scans, evaluations, uploads and concept sets all live in the cache folder."""
        reason = _unwritable(self.cache_dir)
        if reason is None:
            return self, None
        fallback = Path(tempfile.gettempdir()) / f"interp-{_user()}"
        if _unwritable(fallback, own=True) is not None:
            raise BadSettingError(f"The cache folder {self.cache_dir} cannot be written ({reason}), nor can "
                                  f"{fallback}; set {ENV_CACHE_DIR} to a folder this user can write.")  # fmt: skip
        note = (f"Results, scans and concept sets are kept in {fallback} for now: the cache folder {self.cache_dir} "
                f"cannot be written ({reason}). Set {ENV_CACHE_DIR} to a folder this user can write to keep them "
                "where they belong.")  # fmt: skip
        return replace(self, cache_dir=fallback), note


def _unwritable(folder: Path, own: bool = False) -> str | None:
    """Why a file cannot be made in ``folder`` (created if missing), or ``None`` when it can. With ``own``, a folder
    another user owns is refused too (a shared temporary folder, where anyone may have made it first)."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if own and hasattr(os, "getuid") and folder.stat().st_uid != os.getuid():
            return "it belongs to another user"
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def _home() -> Path:
    """The user's home; where there is none (a container's user with no entry in its passwd file and no ``$HOME``),
    the system's temporary folder, which :meth:`Settings.writable` then checks like any other."""
    try:
        return Path.home()
    except (RuntimeError, KeyError):
        return Path(tempfile.gettempdir()) / f"interp-{_user()}-home"


def _user() -> str:
    try:
        return str(os.getuid()) if hasattr(os, "getuid") else getpass.getuser()
    except (OSError, KeyError):
        return "user"


def _setting(env: Mapping[str, str], name: str) -> str:
    """The variable ``name``'s value, ``""`` where it is unset or blank: ``INTERP_DEVICE=`` in a deployment's
    environment file means the default, as an unset variable does, not a device named ``''``."""
    return env.get(name, "").strip()


def _switch(env: Mapping[str, str], name: str, default: str, advice: str) -> bool:
    """The on/off variable ``name`` (``1``/``0``, ``true``/``false``, ``yes``/``no``, ``on``/``off``, any case)."""
    value = _setting(env, name).lower() or default
    if value not in YES + NO:
        raise BadSettingError(f"{name}={shown(value)} is neither 1 nor 0; {advice}.")
    return value in YES


def _megabytes(env: Mapping[str, str], name: str, example: str) -> int:
    value = _setting(env, name) or example
    try:
        mb = int(value)
    except ValueError:
        mb = -1
    if mb < 0:
        raise BadSettingError(f"{name}={shown(value)} is not a whole number of megabytes; set e.g. {example}.")
    return mb


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Turn ``"auto"`` into the GPU when one is usable, else the CPU; check any explicit device exists. ``None``: the
    device ``$INTERP_DEVICE`` names, ``"auto"`` where it is not set."""
    if isinstance(device, torch.device):
        return device
    if device is None:
        device = Settings.from_env().device
    if isinstance(device, str):
        device = device.strip().lower()  # "CPU", " cuda" as people type them
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise BadSettingError(f"device {shown(device)} is not a torch device; use 'auto', 'cpu' or 'cuda'.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BadSettingError(f"device {shown(device)} was asked for but no CUDA GPU is usable here; use 'auto' or "
                              "'cpu'.")  # fmt: skip
    if dev.type == "meta":
        raise BadSettingError("device 'meta' holds no values, so nothing could be explained on it; use 'auto' or "
                              "'cpu'.")
    if dev.type not in ("cpu", "cuda"):  # mps, xpu…: torch's own error names its build ("not linked with support")
        try:
            torch.empty(1, device=dev)
        except (RuntimeError, AssertionError):
            raise BadSettingError(f"device {shown(device)} is not usable in this PyTorch build or on this machine; use "
                                  "'auto' or 'cpu'.") from None  # fmt: skip
    return dev
