"""BERT-like text classifiers: the bundled one trained here on the text world, or any Hugging Face model.

``transformers`` is an optional dependency: without it, loading says how to install it. A model is read only from
safetensors (never a pickle), from the bundled folder, a local folder (CLI and API), the local Hugging Face cache,
or the hub when it can be reached, with the same offline sentence the image models give.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from interp.errors import InterpError, UnknownModelError, WeightsUnavailableError, not_loaded, shown
from interp.models.gate import GateMisuse, ModelGate
from interp.models.hooks import hooks_checked
from interp.models.loading import fingerprint

ASSETS = Path(__file__).resolve().parents[2] / "assets"
BUNDLED: dict[str, str] = {"text_bert": "text_bert"}
"""Bundled text models: name → folder under ``assets/`` (config.json, model.safetensors, vocab.txt)."""
DEFAULT_TEXT_MODEL = "text_bert"
MODEL_TYPES = ("bert", "roberta", "distilbert", "electra", "xlm-roberta", "camembert")
"""Architectures whose attention the capture reads (absolute positions, softmax(QKᵀ/√d) attention)."""


class TextUnavailableError(InterpError):
    """The text tools need ``transformers``, which is not installed."""


class BadTextError(InterpError):
    """Empty text, or text longer than the model reads."""


def transformers_module():
    try:
        import transformers
    except ImportError:
        raise TextUnavailableError(
            "the Text tools need the transformers package: pip install transformers (it is in requirements.txt)."
        ) from None
    return transformers


@dataclass(frozen=True)
class Encoded:
    """A sentence as the model reads it: ``ids`` ``(1, T)`` and the ``tokens`` as strings, specials included."""

    ids: torch.Tensor
    tokens: tuple[str, ...]
    special: tuple[bool, ...]


@dataclass(frozen=True, eq=False)
class TextModel:
    """A text classifier ready to run, shared by every session: every pass goes through ``gate`` (see
    :mod:`interp.models.gate`), and code that hooks it holds the gate alone.

    Attributes:
        name: what the user asked for.
        source: where the weights came from.
        tokenizer: the model's own tokenizer.
        class_names: one name per output.
        max_length: the most tokens it reads, specials included.
        fingerprint: BLAKE2b over every weight (:func:`interp.models.loading.fingerprint`), for cache keys.
    """

    name: str
    source: str
    _net: Any = field(repr=False)
    tokenizer: Any = field(repr=False)
    class_names: tuple[str, ...]
    device: torch.device
    max_length: int
    fingerprint: str
    gate: ModelGate = field(default_factory=ModelGate, repr=False)

    @property
    def net(self):
        if not self.gate.held():
            raise GateMisuse(f"{self.name} was used outside its gate; run it inside shared() or exclusive().")
        return self._net

    @property
    def structure(self):
        """The network, to read its modules and config; never run it from here."""
        return self._net

    @property
    def config(self):
        return self._net.config

    @property
    def key(self) -> str:
        return f"{self.name}@{self.fingerprint[:16]}"

    @contextlib.contextmanager
    def shared(self) -> Iterator[Any]:
        with self.gate.shared():
            yield self._net

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[Any]:
        with self.gate.exclusive():
            if self.gate.exclusive_depth() > 1:
                yield self._net
                return
            with hooks_checked(self._net):
                yield self._net

    def encode(self, text: str) -> Encoded:
        """Tokenise one sentence; a sentence when it is empty or longer than the model reads."""
        if not isinstance(text, str):
            raise BadTextError(f"the text must be a string (a sentence), got {type(text).__name__}.")
        if not text.strip():
            raise BadTextError("the text is empty; type a sentence.")
        enc = self.tokenizer(text, return_special_tokens_mask=True, truncation=False, verbose=False)
        ids = enc["input_ids"]
        if len(ids) > self.max_length:
            raise BadTextError(f"the text is {len(ids)} tokens long and {self.name} reads at most {self.max_length} "
                               "(with its special tokens); shorten it.")  # fmt: skip
        tokens = tuple(self.tokenizer.convert_ids_to_tokens(ids))
        special = tuple(bool(s) for s in enc["special_tokens_mask"])
        if all(special):  # control characters only: the tokenizer drops them, and nothing is left to read
            raise BadTextError("the text has no characters the tokenizer reads (only control characters); type a "
                               "sentence.")  # fmt: skip
        return Encoded(torch.tensor([ids], device=self.device), tokens, special)

    def as_encoded(self, sentence: Encoded | str) -> Encoded:
        """``sentence`` as :meth:`encode` gives it: text is encoded, an :class:`Encoded` is itself; anything else is
        a sentence (``None`` was an ``AttributeError`` inside a pass)."""
        if isinstance(sentence, Encoded):
            return sentence
        if isinstance(sentence, str):
            return self.encode(sentence)
        raise BadTextError(f"give a sentence as text (or what {self.name}.encode(text) returns), got "
                           f"{type(sentence).__name__}.")  # fmt: skip

    def logits(self, encoded: Encoded | str) -> torch.Tensor:
        """``(C,)`` logits of one sentence, a plain pass."""
        encoded = self.as_encoded(encoded)
        with self.shared() as net, torch.inference_mode():
            return net(input_ids=encoded.ids).logits[0].float().cpu()


def text_model(model: object, what: str) -> TextModel:
    """``model`` when it is a :class:`TextModel`, else one sentence naming ``what`` (the function) and how to get
    one (an image model, a model's name, a bare ``transformers`` network each say what to do)."""
    if isinstance(model, TextModel):
        return model
    raise not_loaded(model, what, "interp.text.load_text_model",
                     "wrap it with its tokenizer: interp.text.from_parts(name, source, net, tokenizer)")  # fmt: skip


def from_parts(name: str, source: str, net: torch.nn.Module, tokenizer: Any, device: str | torch.device = "cpu") -> TextModel:
    """A :class:`TextModel` around a ``transformers`` classifier and its tokenizer (tests build one from a config)."""
    config = getattr(net, "config", None)
    if not isinstance(net, torch.nn.Module) or getattr(config, "model_type", None) is None:
        raise UnknownModelError(f"from_parts wraps a transformers sequence classifier (with its config), such as "
                                f"AutoModelForSequenceClassification builds; got {shown(net)}.")  # fmt: skip
    if not (callable(tokenizer) and hasattr(tokenizer, "convert_ids_to_tokens")):
        raise UnknownModelError(f"from_parts needs the model's own transformers tokenizer (AutoTokenizer's); got "
                                f"{shown(tokenizer)}.")  # fmt: skip
    if config.model_type not in MODEL_TYPES:
        raise UnknownModelError(f"the text model {name} is a {config.model_type} model; the Text page reads BERT-like encoders "
                                f"({', '.join(MODEL_TYPES)}).")  # fmt: skip
    net = net.to(device).eval().requires_grad_(False)
    labels = getattr(config, "id2label", None) or {}
    classes = tuple(str(labels.get(i, f"class {i}")) for i in range(config.num_labels))
    limit = min(int(config.max_position_embeddings) - (2 if config.model_type in ("roberta", "xlm-roberta", "camembert") else 0),
                int(getattr(tokenizer, "model_max_length", 10**9) or 10**9))  # fmt: skip
    return TextModel(name, source, net, tokenizer, classes, torch.device(device), limit, fingerprint(net))


def _is_folder(name: str) -> bool:
    """Whether ``name`` is a folder here; ``False`` for a name no file system takes (3,000 characters raised
    "File name too long" from a shared link's model name)."""
    try:
        return Path(name).is_dir()
    except (OSError, ValueError):
        return False


def downloads(name: str) -> bool:
    """Whether loading the text model ``name`` downloads it from the Hugging Face hub first (a hub name that is not in
    the local cache while the hub can be reached); no request leaves the machine but the reachability probe."""
    from huggingface_hub import try_to_load_from_cache

    from interp.models.weights import hub_reachable

    name = name.strip() if isinstance(name, str) else ""
    if not name or name in BUNDLED or _is_folder(name):
        return False
    try:
        cached = try_to_load_from_cache(name, "config.json")
    except ValueError:  # not a repository name: the load says why
        return False
    return not (isinstance(cached, str) and Path(cached).is_file()) and hub_reachable()


def is_hub_name(name: str) -> bool:
    """Whether ``name`` can name a model on the Hugging Face hub (``bert-base-uncased``, ``owner/name``); a path, a
    sentence or a name with spaces cannot, whatever the cache or the network."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(name, str):  # validate_repo_id lets None through
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def load_text_model(name: str = DEFAULT_TEXT_MODEL, device: str | torch.device = "cpu", *, allow_paths: bool = False) -> TextModel:
    """The bundled text model, a Hugging Face model name, or (``allow_paths``: the CLI and API) a local folder.

    Weights load from safetensors only. Offline, a name not in the local Hugging Face cache is a sentence saying
    what works instead.
    """
    transformers = transformers_module()
    from interp.models.weights import hub_reachable

    name = name.strip() if isinstance(name, str) else ""
    if not name:
        raise UnknownModelError("give a text model's name (text_bert, or a Hugging Face name such as bert-base-uncased).")
    if name in BUNDLED:
        where, source, local = ASSETS / BUNDLED[name], "bundled (trained here on the text world)", True
    elif allow_paths and _is_folder(name):
        where, source, local = Path(name), f"folder {name}", True
    else:
        from interp.models.specs import image_model_note

        if note := image_model_note(name):
            raise UnknownModelError(note)
        if not is_hub_name(name):  # a path, a sentence, a typo with spaces: no cache or hub lookup can find it
            folder = " or there is no such folder" if allow_paths else ""
            raise UnknownModelError(f"{shown(name)} is not a Hugging Face model name (such as bert-base-uncased "
                                    f"or owner/name){folder}; use text_bert (bundled) or a name from the hub.")
        where, source, local = name, f"Hugging Face hub ({name})", not hub_reachable()
    if isinstance(where, Path) and not (where / "config.json").is_file():  # transformers: "backend tokenizer from"
        raise UnknownModelError(f"the folder {name} holds no saved text model (no config.json); give a folder that "
                                "a transformers classifier's save_pretrained wrote, with its tokenizer, or a model's "
                                "name.")  # fmt: skip
    auto = transformers.AutoModelForSequenceClassification
    transformers.utils.logging.disable_progress_bar()  # a progress bar per load on stderr: noise in a CLI and a log
    part = "reading its tokenizer"
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(where, local_files_only=local)
        part = "reading its weights"
        net = auto.from_pretrained(where, local_files_only=local, use_safetensors=True)
    except (OSError, ValueError) as exc:
        if local and name not in BUNDLED and not _is_folder(str(where)):
            raise WeightsUnavailableError(
                f"the text model {name} is not in the local Hugging Face cache and the hub cannot be reached; use "
                "text_bert (bundled), "
                f"or fill the cache elsewhere (`hf download {name}`) and copy ~/.cache/huggingface here."
            ) from None
        said = str(exc).strip().splitlines()[0][:200].rstrip(": .") if str(exc).strip() else type(exc).__name__
        raise UnknownModelError(f"the text model {name} could not be loaded as a classifier with safetensors weights "
                                f"({part}: {said}).")  # fmt: skip
    return from_parts(name, source, net, tokenizer, device)
