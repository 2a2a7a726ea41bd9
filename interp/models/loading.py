"""Build a model from its spec and a weight source, ready to share between threads.

``load_model`` is the one way in. The returned :class:`LoadedModel` is in eval mode with frozen parameters (we
only ever need gradients with respect to inputs and activations), and its network is reached only through its gate
(:mod:`interp.models.gate`): ``with model.shared() as net`` for a plain pass, ``with model.exclusive() as net`` for
anything that hooks it or flips a flag on it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from PIL import Image
from timm.data import create_transform, infer_imagenet_subset, resolve_data_config

from interp.cache import model_key
from interp.config import resolve_device
from interp.errors import (
    BadSettingError,
    UnknownModelError,
    WeightsMismatchError,
    WeightsUnavailableError,
    shown,
)
from interp.images import LoadedImage, as_loaded
from interp.models import weights as W
from interp.models.budget import check_room, load_memory_mb
from interp.models.gate import GateMisuse, ModelGate
from interp.models.hooks import hooks_checked
from interp.models.preprocess import fast_eval_transform
from interp.models.specs import ModelSpec, class_outputs, get_spec, imagenet_names, parameter_count
from interp.runtime import keep_freed_memory
from interp.words import counted

log = logging.getLogger(__name__)

RANDOM_SEED = 0
BUILD_LOCK = threading.RLock()
"""timm initialises a new model's weights from torch's global generator, which every thread shares. Every build in
this process holds this lock, so the seeded build of an untrained copy is never interleaved with another build's
draws: before it, one session loading a model while another built the untrained copy of ResNet made 4 different
"untrained copies" in 6 builds (the sanity check compared against a different network each time)."""
MAX_CLASSES = 100_000
"""Most outputs a classifier in a weights file may have (ImageNet-21k has 21,841; Open Images about 20,000)."""


@dataclass(frozen=True)
class WeightsInfo:
    """Where a loaded model's weights came from.

    Attributes:
        kind: ``"bundled"``, ``"hub"``, ``"file"`` or ``"random"``.
        source: the same in words, for the UI (``"hub cache (timm/resnet50.a1_in1k)"``).
        fingerprint: hash of every tensor in the state dict; part of every cache key.
    """

    kind: str
    source: str
    fingerprint: str


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model ready to run, shared by every session: nothing may leave state on it.

    Attributes:
        spec: the spec row (or inferred spec) it was built from.
        model: the ``torch.nn.Module`` in eval mode, parameters frozen, on ``device``; readable only inside
            :meth:`shared` or :meth:`exclusive` (anywhere else it raises :class:`GateMisuse`).
        weights: where the weights came from and their fingerprint.
        data_config: timm's data config (``input_size``, ``mean``, ``std``, ``interpolation``, ``crop_pct``…).
        class_names: one readable name per output index.
        device: where the model runs.
        gate: who may run the model at once (:class:`ModelGate`).
    """

    spec: ModelSpec
    _module: torch.nn.Module = field(repr=False)
    weights: WeightsInfo
    data_config: dict[str, Any]
    class_names: tuple[str, ...]
    device: torch.device
    gate: ModelGate = field(default_factory=ModelGate, repr=False)
    _transform: Any = field(default=None, repr=False)
    _side: dict[str, Any] = field(default_factory=dict, repr=False)
    _layer_names: tuple[str, ...] = field(default=(), repr=False)
    _key: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        timm_transform = create_transform(**self.data_config, is_training=False)
        object.__setattr__(self, "_transform", fast_eval_transform(timm_transform))
        object.__setattr__(self, "_layer_names", tuple(n for n, _ in self._module.named_modules() if n))
        own = _class_names(self._module, None)
        object.__setattr__(self, "_key", model_key(self.spec.name, self.weights.fingerprint, self.class_names, own))

    @property
    def model(self) -> torch.nn.Module:
        """The network, for code inside :meth:`shared` or :meth:`exclusive`."""
        if not self.gate.held():
            raise GateMisuse(
                f"{self.name}'s network was used outside its gate; run it inside `with model.shared()` (a plain "
                "pass) or `with model.exclusive()` (hooks, flags, attribution)."
            )
        return self._module

    @contextlib.contextmanager
    def shared(self) -> Iterator[torch.nn.Module]:
        """Hold the gate for a plain pass (no hooks, no flags changed), beside other plain passes; yields the
        network."""
        with self.gate.shared():
            yield self._module

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[torch.nn.Module]:
        """Hold the gate alone, for code that hooks the network or flips a flag on it; yields the network. A hook
        left registered when the block ends raises (the block's own code removes its hooks in ``finally``)."""
        with self.gate.exclusive():
            if self.gate.exclusive_depth() > 1:  # re-entered: the outer block checks
                yield self._module
                return
            with hooks_checked(self._module):
                yield self._module

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, classes)`` of a ``(N, C, H, W)`` batch (moved to the model's device), without autograd."""
        with self.gate.shared(), torch.inference_mode():
            return self._module(x.to(self.device))

    def side(self, name: str, default: Callable[[], Any]) -> Any:
        """A per-model store kept beside the network, not on it (a CAM method's last pass, IG's kept logits);
        created by ``default()`` on first use, gone with the model. Only inside :meth:`exclusive`."""
        if not self.gate.held_exclusive():
            raise GateMisuse(f"{self.name}'s side store was used outside exclusive(); this is a bug.")
        if name not in self._side:
            self._side[name] = default()
        return self._side[name]

    def forget(self, name: str) -> None:
        """Drop the side store ``name`` (benchmarks time a first call this way)."""
        with self.gate.exclusive():
            self._side.pop(name, None)

    @property
    def structure(self) -> torch.nn.Module:
        """The network, to read what it is made of (submodules, their classes, attributes such as a ViT's grid)
        without waiting on the gate: a loaded model's structure never changes, and a page that only looks at it
        must not wait behind another visitor's attribution. Never run it from here: passes go through
        :meth:`shared`, :meth:`exclusive` or :meth:`run`."""
        return self._module

    def layer_names(self) -> tuple[str, ...]:
        """The dotted name of every submodule (``named_modules`` without the root), for layer pickers."""
        return self._layer_names

    def layer(self, name: str) -> torch.nn.Module:
        """The submodule at the dotted path ``name`` (one of :meth:`layer_names`), read from :attr:`structure`; a
        sentence naming close names, or where to see them all, when the model has none such."""
        if name:  # "" would be the whole network
            try:
                return self._module.get_submodule(name)
            except AttributeError:
                pass
        import difflib

        close = difflib.get_close_matches(name, self._layer_names, n=3, cutoff=0.5) if isinstance(name, str) else []
        if close:
            hint = f"Did you mean {', '.join(close[:-1]) + ' or ' if len(close) > 1 else ''}{close[-1]}?"
        else:
            top = [n for n in self._layer_names if "." not in n]
            hint = (f"Its top-level layers are {', '.join(top[:8])}{' …' if len(top) > 8 else ''}; deeper ones are "
                    "dotted paths below them.")  # fmt: skip
        raise BadSettingError(f"{self.name} has no layer {shown(name)}. {hint} `python -m interp models --layers "
                              f"{self.name}` lists them with their output shapes.")  # fmt: skip

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def key(self) -> str:
        """Identifies model, weights and class names in cache keys (:func:`interp.cache.model_key`)."""
        return self._key

    @property
    def transform(self) -> Any:
        """timm's eval transform from the data config, its resize limited to the crop where that gives the same
        pixels (:mod:`interp.models.preprocess`); a picklable callable, for data-loader workers."""
        return self._transform

    def preprocess(self, image: Image.Image | LoadedImage) -> torch.Tensor:
        """Resize, crop and normalise as the model's data config says. Returns ``(C, H, W)`` float on the CPU.
        ``image``: a PIL image, or anything :func:`interp.load_image` takes (a loaded image, a path, an array…)."""
        image = image if isinstance(image, Image.Image) else as_loaded(image).image
        return self._transform(image if image.mode == "RGB" else image.convert("RGB"))  # convert() would copy

    def pixels(self, image: Image.Image) -> torch.Tensor:
        """The first half of :meth:`preprocess`: resized and cropped, not yet normalised, ``(C, H, W)`` ``uint8`` on
        the CPU. Where the data config's pipeline is not a centre crop, all of :meth:`preprocess` (``float32``).
        :meth:`batch_of` finishes the work for many images at once."""
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        first_half = getattr(self._transform, "pixels", None)
        return first_half(rgb) if first_half is not None else self._transform(rgb)

    def batch_of(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """Stack tensors from :meth:`pixels` (or :meth:`preprocess`) into a normalised ``(N, C, H, W)`` batch on the
        model's device, equal to stacking :meth:`preprocess`'s tensors. On a GPU the bytes go over first (pinned,
        without waiting) and are normalised there: a quarter of the data to copy, and no float work on the CPU."""
        return self.normalised(torch.stack(list(parts)))

    def normalised(self, x: torch.Tensor) -> torch.Tensor:
        """A stacked ``(N, C, H, W)`` batch of :meth:`pixels` (or of :meth:`preprocess`'s floats) as :meth:`batch_of`
        returns it: on the model's device, normalised there."""
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        else:
            x = x.to(self.device)
        return self._transform.normalize(x) if x.dtype == torch.uint8 else x

    def view(self, image: Image.Image) -> np.ndarray:
        """The image as the model sees it (resized, cropped), for display: ``(H, W, 3)`` ``uint8``."""
        return self.to_display(self.preprocess(image))

    def to_display(self, x: torch.Tensor) -> np.ndarray:
        """Undo the normalisation of a preprocessed ``(C, H, W)`` tensor; returns ``(H, W, 3)`` ``uint8``."""
        mean = torch.tensor(self.data_config["mean"]).view(-1, 1, 1)
        std = torch.tensor(self.data_config["std"]).view(-1, 1, 1)
        img = (x.detach().cpu().float() * std + mean).clamp(0, 1)
        return (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def availability(name: str) -> W.Availability:
    """Whether the default weights of ``name`` can be had here; never raises for a known name, never waits long."""
    spec = get_spec(name)
    if spec.weights == "bundled":
        return W.bundled_availability(spec.name)
    return W.hub_availability(spec.arch)


def load_model(
    name: str,
    weights: str | Path | bytes | Mapping[str, torch.Tensor] | None = None,
    *,
    weights_name: str | None = None,
    class_names: list[str] | tuple[str, ...] | None = None,
    device: str | torch.device | None = None,
) -> LoadedModel:
    """Build ``name`` with its weights.

    Args:
        name: a spec name (``"resnet50"``) or any timm model name.
        weights: ``None`` for the spec's default source; ``"hub"``, ``"bundled"``, ``"random"`` (untrained, seeded);
            a weights file as a path, as bytes (an upload; ``weights_name`` gives its extension, else its first bytes
            do) or an open file; or a state dict (``net.state_dict()``).
        weights_name: the file name of uploaded bytes, e.g. ``"finetuned.safetensors"``.
        class_names: names for the outputs, overriding names found in the file or ImageNet's; an untrained copy
            (``"random"``) is built with one output per name (the sanity check's copy of a model with its own
            classes).
        device: ``"auto"`` (a GPU when there is one), ``"cpu"``, ``"cuda"``…; ``None``: ``$INTERP_DEVICE``, else auto.

    Raises:
        UnknownModelError, WeightsMismatchError, WeightsUnavailableError: with a sentence saying what to do.
    """
    spec, class_names = get_spec(name), W.checked_class_names(class_names)
    dev = resolve_device(device)
    if dev.type == "cpu":
        keep_freed_memory()  # a forward pass then reuses freed memory instead of faulting in fresh pages
    kind = spec.weights if weights is None else W.weights_kind(weights)
    check_room(spec, kind)  # before a download or an allocation
    if isinstance(kind, str) and kind in ("hub", "bundled", "random") and not class_outputs(spec.name):
        raise UnknownModelError(
            f"{spec.name} has no classifier: timm builds it without class outputs (a feature extractor, like DINOv2's "
            "or EVA-02's pretraining), so there are no classes to explain. Pick a model fine-tuned for "
            "classification, or give weights with a classification head."
        )
    file_classes: tuple[str, ...] | None = None

    if isinstance(kind, (bytes, Path)) or kind not in ("hub", "bundled", "random"):
        source = kind if isinstance(kind, (bytes, dict)) else Path(kind)
        label = W.source_label(source, weights_name)
        wfile = W.read_weights_file(source, weights_name)
        file_classes = wfile.class_names
        classes = _classifier_size(spec.arch, wfile.state_dict)
        if classes is not None and not 1 <= classes <= MAX_CLASSES:
            raise WeightsMismatchError(
                f"{label} has a classifier with {classes:,} outputs; at most {MAX_CLASSES:,} classes are supported."
            )
        W.check_fits(_skeleton(spec, classes), wfile.state_dict, spec.arch, label)  # before allocating the model
        W.check_finite(wfile.state_dict, label)
        model = _create(spec, num_classes=classes)
        model.load_state_dict(wfile.state_dict)
        info_kind, info_source = "file", f"file {label}"
    elif kind == "bundled":
        if spec.name not in W.BUNDLED:
            raise WeightsUnavailableError(f"no weights ship with the app for {spec.name}; use 'hub' or a weights file.")
        info_source, _, mapper = W.BUNDLED[spec.name]
        model = _create(spec)
        bundled = mapper(model)
        model.load_state_dict(bundled.state_dict)
        file_classes = bundled.class_names
        info_kind = "bundled"
    elif kind == "hub":
        model, info_source = _from_hub(spec.arch)
        info_kind = "hub"
    else:
        with BUILD_LOCK, torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            model = _create(spec, num_classes=len(class_names) if class_names else None)
        info_kind, info_source = "random", "random initialisation (untrained)"

    model.eval().requires_grad_(False).to(dev)
    if channels_last_pays(spec, dev):
        model.to(memory_format=torch.channels_last)
    names = _class_names(model, class_names or file_classes)
    return LoadedModel(
        spec,
        model,
        WeightsInfo(info_kind, info_source, fingerprint(model)),
        resolve_data_config({}, model=model),
        names,
        dev,
    )


CHANNELS_LAST = ("auto", "1", "0")
"""Values of ``$INTERP_CHANNELS_LAST``: ``auto`` (CNNs on a CPU), ``1`` (CNNs on any device), ``0`` (never)."""


def channels_last_pays(spec: ModelSpec, device: torch.device) -> bool:
    """Whether ``spec``'s network is kept with its convolution weights channels-last (NHWC) on ``device``, so that
    every layer hands the next NHWC activations. By default (``$INTERP_CHANNELS_LAST`` unset or ``auto``) CNNs on a
    CPU, where oneDNN's kernels for that layout are faster. Per image on 2 cores, NCHW time ÷ NHWC time
    (``bench/bench_layout.py``): EfficientNet-Lite0's batched forward 1.43, forward+backward 1.16; ResNet-50 1.21 and
    1.10; MobileNetV3 1.42 and 1.22. Outputs agree within float rounding (relative 1e-6). Not on a GPU unless asked
    (``1``), where cuDNN's choice depends on precision and card and has not been measured here; never on ViTs, whose
    one convolution is the patch embedding."""
    setting = os.environ.get("INTERP_CHANNELS_LAST", "auto").strip().lower() or "auto"
    if setting not in CHANNELS_LAST:
        log.warning("INTERP_CHANNELS_LAST=%r is not one of %s; using auto", setting, ", ".join(CHANNELS_LAST))
        setting = "auto"
    return spec.family == "cnn" and (setting == "1" or (setting == "auto" and device.type == "cpu"))


def fingerprint(model: torch.nn.Module) -> str:
    """BLAKE2b over every tensor of the state dict, names and shapes included."""
    h = hashlib.blake2b(digest_size=32)
    for k, v in model.state_dict().items():
        h.update(f"{k}:{tuple(v.shape)}:{v.dtype}".encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def describe(name: str) -> dict[str, Any]:
    """A model picker row: name, architecture, family, description, parameters, the memory loading it takes with its
    own weights (``load_mb``, :func:`interp.models.budget.load_memory_mb`), availability."""
    spec = get_spec(name)
    avail = availability(name)
    return {
        "name": spec.name,
        "arch": spec.arch,
        "family": spec.family,
        "description": spec.description,
        "params": parameter_count(spec.name),
        "load_mb": round(load_memory_mb(spec, spec.weights)),
        "weights": avail.source,
        "available": avail.available,
        "reason": avail.reason,
    }


def _skeleton(spec: ModelSpec, num_classes: int | None) -> torch.nn.Module:
    """The model with its tensors on the meta device: every name and shape, no memory. A file whose classifier claims
    a billion outputs (with no data behind them) is then refused before anything is allocated. Architectures that
    cannot be built without real tensors are built for real."""
    try:
        with torch.device("meta"):
            return _create(spec, num_classes)
    except (RuntimeError, NotImplementedError, ValueError, TypeError):
        return _create(spec, num_classes)


def _create(spec: ModelSpec, num_classes: int | None = None) -> torch.nn.Module:
    kwargs = dict(spec.kwargs) if num_classes is None else {**spec.kwargs, "num_classes": num_classes}
    with BUILD_LOCK:
        return timm.create_model(spec.arch, pretrained=False, **kwargs)


def _from_hub(arch: str) -> tuple[torch.nn.Module, str]:
    repo, _ = W.hub_repo(arch)
    if not repo:
        raise WeightsUnavailableError(f"timm has no pretrained weights on the hub for {arch}; use a weights file.")
    cached = W.hub_cached_file(arch)
    if cached is not None:  # load by path: no request reaches the hub, online or not
        with BUILD_LOCK:
            model = timm.create_model(arch, pretrained=True, pretrained_cfg_overlay={"file": str(cached)})
        return model, f"hub cache ({repo})"
    if not W.hub_reachable():
        raise WeightsUnavailableError(f"{repo} is not in the local hub cache and the hub cannot be reached; "
                                      f"{W.offline_options(repo)}.")  # fmt: skip
    try:  # not under BUILD_LOCK: a download can take minutes, and every other build would wait behind it
        return timm.create_model(arch, pretrained=True), f"hub ({repo})"
    except (OSError, RuntimeError) as exc:
        log.warning("download of %s failed: %r", repo, exc)
        raise WeightsUnavailableError(
            f"downloading {repo} from the hub failed; check the connection and try again, or "
            f"{W.offline_options(repo)}."
        ) from None


def _classifier_size(arch: str, state_dict: W.StateDict) -> int | None:
    """Output count of a file's classifier when it differs from the architecture's default (fine-tuned weights)."""
    cfg = timm.models.get_pretrained_cfg(arch.split(".")[0]) or timm.models.get_pretrained_cfg(arch)
    classifier = getattr(cfg, "classifier", None) if cfg is not None else None
    if not classifier:
        return None
    names = classifier if isinstance(classifier, (list, tuple)) else [classifier]
    for cls_name in names:
        bias = state_dict.get(f"{cls_name}.bias")
        weight = state_dict.get(f"{cls_name}.weight")
        tensor = bias if bias is not None else weight
        if tensor is not None and tensor.ndim >= 1:
            return int(tensor.shape[0])
    return None


def _class_names(model: torch.nn.Module, given: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    n = int(getattr(model, "num_classes", 0) or 0)
    if given is not None:
        given = tuple(str(c) for c in given)
        if len(given) != n:
            raise WeightsMismatchError(f"{counted(len(given), 'class name')} {'was' if len(given) == 1 else 'were'} "
                                       f"given but the model has {n} outputs; give one name per output.")
        return given
    subset = infer_imagenet_subset(model) if n in (1000, 11821, 21841) else None
    return imagenet_names(subset) if subset else tuple(f"class {i}" for i in range(n))
