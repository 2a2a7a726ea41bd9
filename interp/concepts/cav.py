"""Concept activation vectors: a linear direction in a layer's activations that separates a concept from random.

Kim et al., "Interpretability Beyond Feature Attribution: Quantitative Testing with Concept Activation Vectors
(TCAV)", ICML 2018. The estimator follows scikit-learn's conventions: ``__init__`` only stores settings, ``fit``
returns ``self``, learned attributes end in ``_``. It persists as npz + JSON, never pickle.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from interp.errors import BadSettingError, as_array, real_number, shown

log = logging.getLogger(__name__)

Classifier = Literal["sgd", "logistic", "svm"]
CLASSIFIERS: tuple[Classifier, ...] = ("sgd", "logistic", "svm")


class CAV:
    """A linear classifier between concept (label 1) and random (label 0) activations; its normal is the CAV.

    Args:
        classifier: ``"sgd"`` (SGDClassifier, hinge loss, as the TCAV reference), ``"logistic"`` (logistic
            regression) or ``"svm"`` (LinearSVC).
        alpha: regularisation strength, as SGD's ``alpha``; the other two get the equivalent ``C = 1 / (alpha * n)``
            for ``n`` training examples, so one value means the same for all three.
        test_fraction: share of each class held out to measure accuracy.
        random_state: seeds the split and the solver: the same inputs give the same CAV.

    Attributes (after ``fit``):
        cav_: ``(D,)`` unit vector pointing towards the concept.
        intercept_: the classifier's intercept (in the scaled space of ``cav_``'s norm before normalising).
        accuracy_: accuracy on the held-out activations (on the training ones when too few to hold out).
        n_concept_, n_random_: examples of each side.
    """

    def __init__(self, classifier: Classifier = "sgd", alpha: float = 0.01, test_fraction: float = 0.2,
                 random_state: int = 0) -> None:  # fmt: skip
        self.classifier = classifier
        self.alpha = alpha
        self.test_fraction = test_fraction
        self.random_state = random_state

    def get_params(self) -> dict[str, Any]:
        return {"classifier": self.classifier, "alpha": self.alpha, "test_fraction": self.test_fraction,
                "random_state": self.random_state}  # fmt: skip

    def _estimator(self, n: int):
        from sklearn.linear_model import LogisticRegression, SGDClassifier
        from sklearn.svm import LinearSVC

        if self.classifier == "sgd":
            return SGDClassifier(alpha=self.alpha, max_iter=2000, tol=1e-4, random_state=self.random_state)
        if self.classifier == "logistic":
            return LogisticRegression(C=1.0 / (self.alpha * n), max_iter=2000, random_state=self.random_state)
        if self.classifier == "svm":
            # a large intercept_scaling keeps liblinear from penalising the intercept, which tilts the normal
            return LinearSVC(C=1.0 / (self.alpha * n), intercept_scaling=100.0, max_iter=5000, random_state=self.random_state)
        raise BadSettingError(f"classifier {shown(self.classifier)} is not one of {', '.join(CLASSIFIERS)}.")

    def fit(self, concept: np.ndarray, random: np.ndarray) -> CAV:
        """Learn the CAV from ``(n_c, D)`` concept and ``(n_r, D)`` random activations; returns ``self``."""
        concept, random = as_array(concept, np.float32), as_array(random, np.float32)  # torch's too, on any device
        if concept.ndim != 2 or random.ndim != 2 or concept.shape[1] != random.shape[1]:
            raise BadSettingError(f"activations must be (N, D) with the same D; got {concept.shape} and {random.shape}.")
        if not (np.isfinite(concept).all() and np.isfinite(random).all()):
            raise BadSettingError("the activations hold NaN or infinite values; no direction can be learnt from them.")
        alpha, share = real_number(self.alpha), real_number(self.test_fraction)
        if alpha is None or not 0 < alpha < math.inf:
            raise BadSettingError(f"alpha is the regularisation strength, a number above 0; got {shown(self.alpha)}.")
        if share is None or not 0 <= share < 1:
            raise BadSettingError(f"test_fraction is the share held out, from 0 to below 1; got "
                                  f"{shown(self.test_fraction)}.")  # fmt: skip
        if len(concept) < 2 or len(random) < 2:
            raise BadSettingError(f"a CAV needs at least 2 examples on each side; got {len(concept)} concept and "
                             f"{len(random)} random. Add images to the sets.")  # fmt: skip
        x = np.concatenate([concept, random])
        y = np.concatenate([np.ones(len(concept), int), np.zeros(len(random), int)])
        rng = np.random.default_rng(self.random_state)
        test = np.zeros(len(x), bool)
        for label in (0, 1):
            idx = np.flatnonzero(y == label)
            n_test = int(round(len(idx) * self.test_fraction))
            if 1 <= n_test < len(idx):
                test[rng.choice(idx, n_test, replace=False)] = True
        train = ~test
        est = self._estimator(int(train.sum()))
        _convergence_is_ours_to_report()
        est.fit(x[train], y[train])
        # whether the solver stopped at its iteration limit (scikit-learn's ConvergenceWarning, read off the fit:
        # catching the warning itself is not thread-safe, and CAVs are fitted in threads)
        self.converged_ = bool(int(np.max(est.n_iter_)) < int(est.max_iter))
        if not self.converged_:
            log.info("a %s CAV stopped at its %d-iteration limit before converging", self.classifier, est.max_iter)
        w = np.asarray(est.coef_, np.float64).reshape(-1)
        norm = float(np.linalg.norm(w))
        if norm == 0.0:
            raise BadSettingError("the classifier found no direction (all weights 0): the two sets may be identical.")
        self.cav_ = (w / norm).astype(np.float32)
        self.intercept_ = float(np.asarray(est.intercept_).reshape(-1)[0])
        held = test if test.any() else train
        self.accuracy_ = float((est.predict(x[held]) == y[held]).mean())
        self.n_concept_, self.n_random_ = len(concept), len(random)
        return self

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The fitted CAV as arrays and JSON-able settings and scores, for :meth:`from_state` (no pickle)."""
        self._check_fitted()
        info = {"params": self.get_params(), "intercept": self.intercept_, "accuracy": self.accuracy_,
                "n_concept": self.n_concept_, "n_random": self.n_random_}  # fmt: skip
        return {"cav": self.cav_}, info

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], info: Mapping[str, Any]) -> CAV:
        cav = cls(**info["params"])
        cav.cav_, cav.intercept_, cav.accuracy_ = np.asarray(arrays["cav"]), info["intercept"], info["accuracy"]
        cav.n_concept_, cav.n_random_ = info["n_concept"], info["n_random"]
        return cav

    def save(self, path: Path, meta: dict[str, Any] | None = None) -> None:
        """``path`` (``.npz``) with the vector, and ``path.json`` with settings, scores and ``meta``."""
        arrays, info = self.state()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **arrays)
        path.with_suffix(".json").write_text(json.dumps({**info, "meta": meta or {}}, indent=2))

    @classmethod
    def load(cls, path: Path) -> CAV:
        """A CAV :meth:`save` wrote (``path`` and ``path.json``); a sentence for files missing or not a CAV's."""
        path = Path(path)
        try:
            info = json.loads(path.with_suffix(".json").read_text())
            with np.load(path, allow_pickle=False) as data:
                return cls.from_state({"cav": data["cav"]}, info)
        except (OSError, ValueError, KeyError, TypeError) as exc:  # missing, not JSON or .npz, or not a CAV's
            missing = isinstance(exc, FileNotFoundError)
            raise BadSettingError(f"{path} {'is missing' if missing else 'is not a CAV that CAV.save wrote'}: a saved "
                                  f"CAV is {path.name} with {path.with_suffix('.json').name} beside it.") from None

    def _check_fitted(self) -> None:
        if not hasattr(self, "cav_"):
            raise BadSettingError("this CAV is not fitted yet; call fit(concept_activations, random_activations) first.")


@functools.cache
def _convergence_is_ours_to_report() -> None:
    """Silence scikit-learn's ``ConvergenceWarning`` once per process: a TCAV run fits dozens of CAVs and logged a
    warning for each that stopped at its iteration limit (five per run on the Concepts page). :meth:`CAV.fit` reads
    the same fact off the fitted solver (``converged_``) and logs it at INFO."""
    from sklearn.exceptions import ConvergenceWarning

    warnings.filterwarnings("ignore", category=ConvergenceWarning)
