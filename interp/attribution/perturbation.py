"""Perturbation methods: hide parts of the image and watch the class score. No gradients, any model."""

from __future__ import annotations

import numpy as np
import torch
from captum._utils.models.linear_model import SkLearnRidge
from captum.attr import KernelShap, Lime, Occlusion

from interp.attribution.base import AttributionMethod, register, target_logit
from interp.attribution.baselines import BASELINES, make_baseline
from interp.attribution.memory import batch_size
from interp.models import LoadedModel


class PerturbationMethod(AttributionMethod):
    kind = "perturbation"

    def forward_batch(self, model: LoadedModel, x: torch.Tensor, wanted: int) -> int:
        """Perturbed inputs per forward pass: forward-only, so several times the backward budget."""
        return max(1, min(wanted, 4 * batch_size(model, x, wanted)))


@register
class OcclusionMethod(PerturbationMethod):
    name = "occlusion"
    title = "Occlusion"
    summary = "Slides a grey patch over the image; a region matters as much as hiding it lowers the score."
    paper = "Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, 2014"
    defaults = {"window": 32, "stride": 16, "baseline": "mean"}

    def _attribute(self, model, x, target, params):
        window, stride = int(params["window"]), int(params["stride"])
        size = min(x.shape[-2:])
        if not 1 <= stride <= window <= size:
            raise ValueError(f"occlusion needs 1 ≤ stride ≤ window ≤ {size}; got window {window}, stride {stride}.")
        baseline = make_baseline(params["baseline"], x, model)
        positions = ((x.shape[-2] - window) // stride + 1) * ((x.shape[-1] - window) // stride + 1)
        attr = Occlusion(target_logit(model, target)).attribute(
            x,
            sliding_window_shapes=(x.shape[1], window, window),
            strides=(x.shape[1], stride, stride),
            baselines=baseline,
            perturbations_per_eval=self.forward_batch(model, x, positions),
        )
        return attr, None, {"positions": positions}


class SuperpixelMethod(PerturbationMethod):
    """Switches SLIC superpixels on and off and fits a surrogate model to the class scores."""

    defaults = {"superpixels": 50, "samples": 200, "baseline": "blur", "seed": 0}

    def _attribute(self, model, x, target, params):
        from skimage.segmentation import slic

        if params["baseline"] not in BASELINES:
            raise ValueError(f"baseline {params['baseline']!r} is not one of {', '.join(BASELINES)}.")
        pixels = model.to_display(x[0])
        segments = slic(pixels, n_segments=int(params["superpixels"]), compactness=10, start_label=0)
        mask = torch.from_numpy(segments.astype(np.int64)).to(x.device)[None, None].expand_as(x)
        baseline = make_baseline(params["baseline"], x, model)
        torch.manual_seed(int(params["seed"]))
        samples = int(params["samples"])
        attr = self.explainer(target_logit(model, target)).attribute(
            x,
            baselines=baseline,
            feature_mask=mask,
            n_samples=samples,
            perturbations_per_eval=self.forward_batch(model, x, samples),
        )
        return attr, None, {"superpixels": int(segments.max()) + 1}

    def explainer(self, forward):
        raise NotImplementedError


@register
class LimeMethod(SuperpixelMethod):
    name = "lime"
    title = "LIME"
    summary = "Hides random sets of superpixels and fits a linear model to the scores: each region's weight."
    paper = "Ribeiro, Singh & Guestrin, “Why Should I Trust You?”: Explaining the Predictions of Any Classifier, 2016"

    def explainer(self, forward):
        # Ridge, as the reference lime package fits: Captum's default Lasso zeroes small score changes outright.
        return Lime(forward, interpretable_model=SkLearnRidge(alpha=1.0))


@register
class KernelShapMethod(SuperpixelMethod):
    name = "kernel_shap"
    title = "KernelSHAP"
    summary = "LIME with the weighting that makes region weights Shapley values: fair shares of the score."
    paper = "Lundberg & Lee, A Unified Approach to Interpreting Model Predictions, 2017"

    def explainer(self, forward):
        return KernelShap(forward)
