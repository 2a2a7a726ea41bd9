"""TCAV: how much a class's prediction depends on a concept, tested against random concepts.

Kim et al., ICML 2018. For each run ``r`` a CAV is trained between the concept and random set ``r``; its TCAV
score is the share of the class images whose target logit grows along the CAV (a positive directional
derivative). The null distribution comes from CAVs between two random sets. A two-sided t-test compares the
concept's scores with the null ones, and the verdict is corrected for the number of (concept, layer) tests
(Bonferroni).

Reproducible by construction: activations are put in a canonical order (by image hash) before fitting, and every
CAV's split and solver are seeded from ``seed`` and the run index, so the same inputs give the same numbers in any
order.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

import numpy as np

from interp.cache import ResultCache, result_key
from interp.concepts.cav import CAV, CLASSIFIERS, Classifier
from interp.errors import BadSettingError, as_array, real_number, seed_number, shown, whole_number


@dataclass(frozen=True)
class ConceptScore:
    """TCAV of one concept at one layer.

    Attributes:
        concept, layer: what was tested.
        scores: ``(runs,)`` TCAV score of each run (concept vs random set ``r``).
        random_scores: ``(runs,)`` scores of random-vs-random CAVs: the null.
        accuracies: ``(runs,)`` held-out accuracy of each concept CAV.
        p_value: two-sided Welch t-test of ``scores`` against ``random_scores``.
        alpha: the significance level before correction; ``tests``: how many tests it is corrected for.
        sensitivities: ``(N,)`` the class images' directional derivatives along the mean concept CAV.
    """

    concept: str
    layer: str
    scores: np.ndarray
    random_scores: np.ndarray
    accuracies: np.ndarray
    p_value: float
    alpha: float = 0.05
    tests: int = 1
    sensitivities: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def mean(self) -> float:
        return float(self.scores.mean())

    @property
    def std(self) -> float:
        return float(self.scores.std(ddof=1)) if len(self.scores) > 1 else 0.0

    @property
    def significant(self) -> bool:
        return bool(self.p_value < self.alpha / max(1, self.tests))

    @property
    def needs_more_runs(self) -> bool:
        """Every run gave the same score, at least 0.25 from the random runs' mean, and still the test found no
        significance. With no spread on the concept's side, Welch's test rests on the random runs' spread alone,
        and only more runs sharpen it."""
        far = abs(self.mean - float(self.random_scores.mean())) >= 0.25
        return not self.significant and self.std == 0.0 and far

    @property
    def alike_gradients(self) -> bool:
        """Even the random-vs-random CAVs scored only 0 or 1 (with several class images): any direction sends all the
        class images the same way, so their class gradients at this layer point nearly the same way. That happens
        next to the classifier, where the class score is close to linear in the layer, and with class images that
        are alike (crops of one photo). A TCAV score there says on which side of one direction a CAV falls, not how
        many images use the concept. (A concept that drives every image can score 1 in every run; that alone is not
        this: random directions would still split images with varied gradients.)"""
        return self.sensitivities.size > 1 and bool(np.isin(self.random_scores, (0.0, 1.0)).all())

    @property
    def verdict(self) -> str:
        if not self.significant:
            return f"not significant (p = {self.p_value:.3g}, needs < {self.alpha / max(1, self.tests):.3g})"
        direction = "raises" if self.mean > float(self.random_scores.mean()) else "lowers"
        return f"significant: the concept {direction} the class score (p = {self.p_value:.3g})"

    def row(self) -> dict:
        return {"concept": self.concept, "layer": self.layer, "tcav": round(self.mean, 4), "std": round(self.std, 4),
                "random_mean": round(float(self.random_scores.mean()), 4), "cav_accuracy": round(float(self.accuracies.mean()), 4),
                "p_value": float(self.p_value), "significant": self.significant, "tests": self.tests,
                "alike_gradients": self.alike_gradients}  # fmt: skip


def canonical(acts: np.ndarray, digests: Sequence[str] | None) -> np.ndarray:
    """Rows sorted by image hash, so the order images were given in cannot change a result (captum #909)."""
    if digests is None:
        return acts
    if len(digests) != len(acts):
        raise BadSettingError(f"{len(digests)} digests for {len(acts)} activation rows.")
    return acts[np.argsort(np.asarray(digests), kind="stable")]


def tcav_score(grads: np.ndarray, cav: np.ndarray) -> float:
    """Share of the ``(N, D)`` class gradients with a positive dot product with ``cav``."""
    grads, cav = as_array(grads), as_array(cav)
    if grads.ndim != 2 or cav.shape != grads.shape[1:]:
        raise BadSettingError(f"class gradients are (N, D) and a CAV (D,) at the same layer; got {grads.shape} and "
                              f"{cav.shape}.")  # fmt: skip
    return float(((grads @ cav) > 0).mean())


def check_run_settings(runs: object, seed: object, alpha: object, classifier: object = "sgd") -> None:
    """Raise :class:`BadSettingError` for settings TCAV cannot run with, before any work: fewer than 2 runs or not a
    whole number of them, a negative seed (NumPy's own "expected non-negative integer"), a significance level
    outside (0, 1) (``alpha=2`` called every concept significant), a classifier that is not one of ours."""
    if classifier not in CLASSIFIERS:
        raise BadSettingError(f"classifier {shown(classifier)} is not one of {', '.join(CLASSIFIERS)}.")
    if (whole_number(runs) or 0) < 2:
        raise BadSettingError(f"TCAV needs at least 2 runs to test significance (a whole number); got {shown(runs)}.")
    seed_number(seed)
    if not 0 < (real_number(alpha) or 0) < 1:
        raise BadSettingError(f"the significance level alpha is between 0 and 1 (0.05 usually); got {shown(alpha)}.")


def tcav(
    concept: np.ndarray,
    randoms: Sequence[np.ndarray],
    grads: np.ndarray,
    *,
    concept_name: str = "concept",
    layer: str = "",
    runs: int = 10,
    seed: int = 0,
    classifier: Classifier = "sgd",
    alpha: float = 0.05,
    tests: int = 1,
    cache: ResultCache | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ConceptScore:
    """TCAV of one concept at one layer.

    Args:
        concept: ``(n_c, D)`` activations of the concept images (in canonical order, see :func:`canonical`).
        randoms: at least two ``(n_r, D)`` random sets; run ``r`` uses set ``r mod len(randoms)`` and, for the null,
            that set against the next one.
        grads: ``(N, D)`` class gradients at the same layer (:func:`interp.concepts.class_gradients`).
        runs: CAVs per concept (Kim et al. use many random sets; 10 by default).
        tests: number of (concept, layer) pairs tested together, for the Bonferroni correction.
        cache: where fitted CAVs are kept. No CAV depends on the class, so TCAV for another class, or another
            concept against the same random sets (the random-vs-random null), fits none of them again.
        progress: ``progress(fitted, 2 * runs)`` as the CAVs (concept and null) are fitted or found.
    """
    from scipy import stats

    check_run_settings(runs, seed, alpha, classifier)
    if len(randoms) < 2:
        raise BadSettingError("TCAV needs at least two random sets: one to train against and one for the null.")
    if len(grads) == 0:
        raise BadSettingError("TCAV needs images of the target class; the class image set is empty.")
    widths = {np.shape(a)[1:] for a in (concept, *randoms, grads)}
    if len(widths) > 1 or any(np.ndim(a) != 2 for a in (concept, *randoms, grads)):
        raise BadSettingError(f"the activations and the class gradients are (N, D) arrays of one layer (one D); got "
                              f"{', '.join(str(np.shape(a)) for a in (concept, *randoms, grads))}.")  # fmt: skip
    if any(np.array_equal(concept, r) for r in randoms):
        raise BadSettingError(f"the concept set {shown(concept_name)} holds the same images as a random set; pick "
                              "other images.")  # fmt: skip
    # each matrix hashed once, not once per fit; without a cache there is nothing to look up
    d = [_digest(a) for a in (concept, *randoms)] if cache is not None else [None] * (1 + len(randoms))
    fits, null_fits = [], []  # per run: the concept's CAV; the null, the next random set against this run's
    for r in range(runs):
        i, j = r % len(randoms), (r + 1) % len(randoms)
        run_seed = (seed * 1000 + r) % 2**32  # scikit-learn's random_state is below 2**32
        fits.append((concept, randoms[i], (d[0], d[1 + i]), run_seed))
        null_fits.append((randoms[j], randoms[i], (d[1 + j], d[1 + i]), run_seed))
    # the nulls first: they take longest to fit (random against random), so the shorter fits end the run
    cavs = _fit_all(null_fits + fits, classifier, cache, progress)
    null_cavs, concept_cavs = cavs[:runs], cavs[runs:]
    scores = [tcav_score(grads, c.cav_) for c in concept_cavs]
    nulls = [tcav_score(grads, c.cav_) for c in null_cavs]
    accs, vectors = [c.accuracy_ for c in concept_cavs], [c.cav_ for c in concept_cavs]
    scores_a, nulls_a = np.array(scores), np.array(nulls)
    if np.allclose(scores_a, scores_a[0]) and np.allclose(nulls_a, nulls_a[0]):
        p = 1.0 if np.isclose(scores_a[0], nulls_a[0]) else 0.0  # no spread: the t-test is undefined
    else:
        with warnings.catch_warnings():  # constant score arrays make scipy warn about precision; the test still holds
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(stats.ttest_ind(scores_a, nulls_a, equal_var=False).pvalue)
    mean_cav = np.mean(vectors, axis=0)
    mean_cav /= max(float(np.linalg.norm(mean_cav)), 1e-12)
    return ConceptScore(concept_name, layer, scores_a, nulls_a, np.array(accs), p, alpha, tests, grads @ mean_cav)


FIT_THREADS = 4
"""CAVs fitted at once. scikit-learn's solvers release the GIL: on 2 cores, 4 SGD fits on 62,720-dimensional
activations took 2.46 s one after the other and 1.32 s on 2 threads. Each fit holds a float64 copy of its data
(about 24 MB at that size), so a large host does not get one thread per core."""


def _fit_all(
    fits: list[tuple[np.ndarray, np.ndarray, tuple[str | None, str | None], int]],
    classifier: Classifier,
    cache: ResultCache | None,
    progress: Callable[[int, int], None] | None,
) -> list[CAV]:
    """:func:`fitted_cav` for each ``(positive, negative, digests, random_state)``, in threads; in the order given."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = max(1, min(FIT_THREADS, cores, len(fits)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(fitted_cav, pos, neg, classifier, state, digests=dg, cache=cache)
                   for pos, neg, dg, state in fits]  # fmt: skip
        for done, _ in enumerate(as_completed(futures), 1):
            if progress is not None:
                progress(done, len(futures))
        return [f.result() for f in futures]


def _digest(acts: np.ndarray) -> str:
    """A digest of an activation matrix's shape, type and bytes (8.5 ms for 30 images × 62,720 floats here)."""
    acts = np.ascontiguousarray(acts)
    return f"{acts.dtype}{acts.shape}:{hashlib.blake2b(acts, digest_size=20).hexdigest()}"  # type: ignore[arg-type]


def fitted_cav(
    positive: np.ndarray,
    negative: np.ndarray,
    classifier: Classifier,
    random_state: int,
    *,
    digests: tuple[str | None, str | None] = (None, None),
    cache: ResultCache | None = None,
) -> CAV:
    """``CAV(classifier, random_state=random_state).fit(positive, negative)``, taken from ``cache`` when it was
    fitted before on the same activations (the same settings give the same CAV: the fit is seeded).

    ``digests`` are those of the two matrices, where the caller has them already."""
    estimator = CAV(classifier, random_state=random_state)
    if cache is None:
        return estimator.fit(positive, negative)
    pos, neg = digests[0] or _digest(positive), digests[1] or _digest(negative)
    import sklearn  # another release's solver may land elsewhere

    params = {**estimator.get_params(), "sklearn": sklearn.__version__}
    key = result_key(model="-", image=f"{pos}|{neg}", method="cav", params=params)
    hit = cache.get(key)
    if hit is not None:
        return CAV.from_state(hit.arrays, hit.meta)
    estimator.fit(positive, negative)
    cache.put(key, *estimator.state())
    return estimator
