"""One call from image sets to TCAV results, with the activations and gradients cached on disk."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from interp.cache import ResultCache
from interp.concepts.activations import activations_by_layer, class_gradients_by_layer, resolve_layer
from interp.concepts.cav import Classifier
from interp.concepts.tcav import ConceptScore, canonical, check_run_settings, tcav
from interp.errors import BadSettingError, check_class, name_list, shown
from interp.images import LoadedImage, image_list
from interp.models.given import loaded
from interp.models.loading import LoadedModel
from interp.words import counted

MIN_IMAGES = 4


@dataclass(frozen=True)
class TCAVReport:
    """Every (concept, layer) result of one TCAV run, with what went into it.

    Attributes:
        results: one :class:`ConceptScore` per concept and layer, concepts in the order given.
        target: class index tested; ``class_images``: their names, in the order of each result's sensitivities.
    """

    results: tuple[ConceptScore, ...]
    target: int
    class_images: tuple[str, ...]
    runs: int
    seed: int
    classifier: str

    def rows(self) -> list[dict]:
        return [r.row() for r in self.results]


def seconds_left(started: float, fraction: float, now: float | None = None) -> float | None:
    """Time left for a :func:`run_tcav` at ``fraction`` of its work since ``time.monotonic()`` read ``started``, at
    the pace so far; ``None`` until there is a pace to go by (5% done and 2 s gone)."""
    took = (time.monotonic() if now is None else now) - started
    if not 0.05 <= fraction < 1 or took < 2:
        return None
    return took / fraction * (1 - fraction)


def run_tcav(
    model: LoadedModel,
    layers: Sequence[str],
    concepts: Mapping[str, Sequence[LoadedImage]],
    randoms: Sequence[Sequence[LoadedImage]],
    class_images: Sequence[LoadedImage],
    target: int,
    *,
    runs: int = 10,
    seed: int = 0,
    classifier: Classifier = "sgd",
    alpha: float = 0.05,
    cache: ResultCache | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> TCAVReport:
    """TCAV of every concept at every layer for class ``target``.

    Args:
        concepts: name → images of the concept.
        randoms: at least two random sets (``runs + 1`` distinct sets give every run its own).
        class_images: images of the target class, whose sensitivities are measured.
        progress: ``progress(what, fraction)`` while activations and gradients are extracted and CAVs trained.
        cache: activations, gradients and fitted CAVs; none of the CAVs depends on the target class, so a run for
            another class computes the class images' gradients and nothing else.

    Raises:
        ValueError: too few images, fewer than two random sets, a concept identical to a random set, a layer the
            model does not have; each with a sentence.
    """
    model = loaded(model, "run_tcav")
    check_run_settings(runs, seed, alpha, classifier)
    target = check_class(target, model.num_classes, model.name, model.class_names)  # "tiger cat" as its index
    layers = list(dict.fromkeys(name_list(layers, "layers")))  # a layer named twice is tested once
    for layer in layers:
        resolve_layer(model, layer)
    if not layers:
        raise BadSettingError("choose at least one layer.")
    if not concepts:
        raise BadSettingError("choose at least one concept set.")
    if not isinstance(concepts, Mapping):
        raise BadSettingError(f"concepts map each concept's name to its images, e.g. {{'striped': images}}; got "
                              f"{type(concepts).__name__}.")  # fmt: skip
    concepts = {name: image_list(images, f"the concept set {shown(name)}") for name, images in concepts.items()}
    if randoms is None or isinstance(randoms, str | bytes) or not hasattr(randoms, "__iter__"):
        raise BadSettingError(f"the random sets are a list of lists of images; got {type(randoms).__name__}.")
    randoms = [image_list(r, f"random set {k + 1} (the random sets are a list of sets, each a list of images)")
               for k, r in enumerate(randoms)]  # fmt: skip
    class_images = image_list(class_images, "the target class's images")
    for name, images in concepts.items():
        if len(images) < MIN_IMAGES:
            raise BadSettingError(f"the concept set {shown(name)} has {counted(len(images), 'image')}; TCAV needs at "
                                  f"least {MIN_IMAGES}.")
    if len(randoms) < 2 or any(len(r) < MIN_IMAGES for r in randoms):
        raise BadSettingError(f"TCAV needs at least two random sets of at least {MIN_IMAGES} images each.")
    if len(class_images) < 2:
        raise BadSettingError("TCAV needs at least 2 images of the target class.")
    random_digests = [{im.digest for im in r} for r in randoms]
    for name, images in concepts.items():
        if any({im.digest for im in images} == d for d in random_digests):
            raise BadSettingError(f"the concept set {shown(name)} holds the same images as a random set; pick other "
                                  "images.")  # fmt: skip

    # The bar's units, so that its pace (and the time left read from it) holds across the phases: one per set
    # extracted, and one per TCAV run of each concept and layer (on EfficientNet-Lite0 at 2 cores, a run's two CAV
    # fits took 0.3-1.2 s by layer, extracting a set of 30 images about 1 s).
    per_training = float(runs)
    steps = len(concepts) + len(randoms) + 1 + len(layers) * len(concepts) * per_training
    done = 0.0
    where = ", ".join(dict.fromkeys(layers))

    def step(what: str, weight: float = 1.0) -> Callable[[int, int], None]:
        def report(i: int, n: int) -> None:
            if progress is not None:
                progress(what, min(1.0, (done + weight * (i / n if n else 1.0)) / steps))

        return report

    # Every layer comes from the same forward pass over a set (and the same backward pass for the class images).
    random_acts = []
    for k, r in enumerate(randoms):
        acts = activations_by_layer(model, layers, r, cache=cache, progress=step(f"random set {k + 1} at {where}"))
        random_acts.append(acts)
        done += 1
    grads = class_gradients_by_layer(model, layers, class_images, target, cache=cache,
                                     progress=step(f"class gradients at {where}"))  # fmt: skip
    done += 1
    concept_acts = {}
    for name, images in concepts.items():
        concept_acts[name] = activations_by_layer(
            model, layers, images, cache=cache, progress=step(f"{name} at {where}")
        )
        done += 1
    results = []
    for layer in layers:
        rand_acts = [
            canonical(acts[layer], [im.digest for im in r]) for acts, r in zip(random_acts, randoms, strict=True)
        ]
        for name, images in concepts.items():
            acts = canonical(concept_acts[name][layer], [im.digest for im in images])
            score = tcav(acts, rand_acts, grads[layer], concept_name=name, layer=layer, runs=runs, seed=seed,
                         classifier=classifier, alpha=alpha, tests=len(concepts) * len(layers), cache=cache,
                         progress=step(f"training CAVs for {name} at {layer}", per_training))  # fmt: skip
            results.append(score)
            done += per_training
    if progress is not None:
        progress("done", 1.0)
    return TCAVReport(tuple(results), target, tuple(im.name for im in class_images), runs, seed, classifier)
