"""Perturbation methods: hide parts of the image and watch the class score. No gradients, any model."""

from __future__ import annotations

import numpy as np
import torch

from interp.attribution.base import AttributionMethod, register, target_logit
from interp.attribution.baselines import SEED, baseline_setting, make_baseline
from interp.attribution.memory import forward_batch_size
from interp.attribution.settings import Setting
from interp.errors import BadSettingError
from interp.models import LoadedModel


class PerturbationMethod(AttributionMethod):
    kind = "perturbation"

    def forward_batch(self, model: LoadedModel, x: torch.Tensor, wanted: int) -> int:
        """Perturbed inputs per pass without gradients (:func:`interp.attribution.memory.forward_batch_size`)."""
        return forward_batch_size(model, x, wanted)


@register
class OcclusionMethod(PerturbationMethod):
    name = "occlusion"
    title = "Occlusion"
    summary = "Slides a grey patch over the image; a region matters as much as hiding it lowers the score."
    paper = "Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, 2014"
    settings = (
        Setting("window", "int", 32, "Occlusion window (px)", low=1, high=4096, page_high=112,
                help="The side of the square patch hidden at each position, in pixels of the model's input."),
        Setting("stride", "int", 16, "Occlusion stride (px)", low=1, high=4096, page_high=112,
                help="How far the patch moves between positions; at most the window. Smaller is finer and slower."),
        baseline_setting("mean", "the hidden patch is filled from"),
    )  # fmt: skip

    def _attribute(self, model, x, target, params):
        from captum.attr import Occlusion

        window, stride = int(params["window"]), int(params["stride"])
        size = min(x.shape[-2:])
        if not 1 <= stride <= window <= size:
            raise BadSettingError(f"occlusion needs 1 ≤ stride ≤ window ≤ {size}; got window {window}, stride "
                                  f"{stride}.")
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

    settings = (
        Setting("superpixels", "int", 50, "Superpixels", low=2, high=2000, step=2, page_high=200,
                help="About how many regions (SLIC superpixels) the image is cut into; each gets one weight."),
        Setting("samples", "int", 200, "Samples", low=2, high=10000, step=2, page_high=1000,
                help="Random on/off patterns of the regions, one forward pass each, that the linear model is fit to."),
        baseline_setting("blur", "hidden regions are filled from"),
        SEED,
    )  # fmt: skip

    def _attribute(self, model, x, target, params):
        from skimage.segmentation import slic

        pixels = model.to_display(x[0])
        segments = slic(pixels, n_segments=int(params["superpixels"]), compactness=10, start_label=0)
        mask = torch.from_numpy(segments.astype(np.int64)).to(x.device)[None, None].expand_as(x)
        baseline = make_baseline(params["baseline"], x, model)
        samples = int(params["samples"])
        # Captum draws its samples from torch's global random state, which every session of a server shares: ours
        # come from a generator seeded by the request.
        gen = torch.Generator(device="cpu").manual_seed(int(params["seed"]))
        attr = self.explainer(target_logit(model, target), gen).attribute(
            x,
            baselines=baseline,
            feature_mask=mask,
            n_samples=samples,
            perturbations_per_eval=self.forward_batch(model, x, samples),
        )
        return attr, None, {"superpixels": int(segments.max()) + 1}

    def explainer(self, forward, gen: torch.Generator):
        raise NotImplementedError


@register
class LimeMethod(SuperpixelMethod):
    name = "lime"
    title = "LIME"
    summary = "Hides random sets of superpixels and fits a linear model to the scores: each region's weight."
    paper = "Ribeiro, Singh & Guestrin, “Why Should I Trust You?”: Explaining the Predictions of Any Classifier, 2016"

    def explainer(self, forward, gen):
        def coalition(original_inp, **kwargs):  # Captum's default_perturb_func: each superpixel on with p = 1/2
            on = torch.rand((1, int(kwargs["num_interp_features"])), generator=gen) < 0.5
            return on.to(original_inp.device).long()

        from captum.attr import Lime
        from sklearn.linear_model import Ridge  # here, not at import: scikit-learn is 44 MB a process may not need

        from interp.attribution.explainers import Surrogate

        # Ridge, as the reference lime package fits: Captum's default Lasso zeroes small score changes outright.
        return Lime(forward, interpretable_model=Surrogate(Ridge(alpha=1.0)), perturb_func=coalition)


@register
class KernelShapMethod(SuperpixelMethod):
    name = "kernel_shap"
    title = "KernelSHAP"
    summary = "LIME with the weighting that makes region weights Shapley values: fair shares of the score."
    paper = "Lundberg & Lee, A Unified Approach to Interpreting Model Predictions, 2017"

    def explainer(self, forward, gen):
        from interp.attribution.explainers import SeededKernelShap

        return SeededKernelShap(forward, gen)


@register
class RiseMethod(PerturbationMethod):
    """RISE: the expected class probability given that a pixel is visible, over random smooth masks.

    Each mask is a coarse ``cells × cells`` grid of visible cells (each with probability ``keep``), upsampled
    bilinearly and shifted by a random fraction of a cell, as in the paper. With ``scores="raw"`` the map is the
    paper's ``Σ_i p_i · M_i / (N · keep)``, ``p_i = p(target | x ⊙ M_i)``. Its values sit on an offset, the masks'
    mean probability ``p̄`` (a pixel that does not matter reads ``p̄``, not 0), so a map scaled from 0 looks flat.
    The default, ``scores="centred"``, uses ``p_i − p̄`` instead, ``Σ_i (p_i − p̄) · M_i / (N · keep)``: how
    much seeing a pixel raises the probability above the average, positive where it helps, negative where it hurts,
    0 where it does not matter. The expected map differs from the paper's by the constant ``p̄`` only, and subtracting
    the mean is a control variate: the noise of how often each pixel happened to be visible cancels. Masks are drawn
    from a generator seeded by ``seed`` and made a batch at a time, so memory does not grow with their number."""

    name = "rise"
    title = "RISE"
    summary = "Shows the model many randomly masked copies; a pixel matters as much as seeing it raises the score."
    paper = "Petsiuk, Das & Saenko, RISE: Randomized Input Sampling for Explanation of Black-box Models, 2018"
    signed = True  # centred (the default): below 0 where seeing the pixel lowers the probability
    settings = (
        Setting("masks", "int", 1000, "Masks", low=10, high=20000, step=10, page_high=4000,
                help="Random masks, one forward pass each; the paper uses 4000-8000, the map is noisier with fewer. "
                "1000 take about 15 s on EfficientNet-Lite0 on 2 CPU cores."),
        Setting("cells", "int", 7, "Grid cells per side", low=2, high=64, page_high=16,
                help="How coarse each mask is: the image is cut into cells × cells squares shown or hidden together."),
        Setting("keep", "float", 0.5, "Visible fraction", low=0.05, high=0.95, step=0.05,
                help="The chance that a cell is shown in a mask (the paper: 0.5)."),
        baseline_setting("black", "hidden cells are filled from"),
        Setting("scores", "choice", "centred", "Mask scores", choices=("centred", "raw"),
                help="centred: each mask's class probability minus the masks' average, so the map reads how much "
                "seeing a pixel raises the probability (above 0) or lowers it (below 0). raw: the paper's formula; "
                "every value then sits on the average probability, and the map looks nearly flat when scaled from 0."),
        SEED,
    )  # fmt: skip

    def _attribute(self, model, x, target, params):
        import torch.nn.functional as F

        n, cells, keep = int(params["masks"]), int(params["cells"]), float(params["keep"])
        height, width = x.shape[-2:]
        cell_h, cell_w = -(-height // cells), -(-width // cells)
        gen = torch.Generator(device="cpu").manual_seed(int(params["seed"]))
        grids = (torch.rand((n, 1, cells, cells), generator=gen) < keep).float()
        dy = torch.randint(0, cell_h, (n,), generator=gen).tolist()
        dx = torch.randint(0, cell_w, (n,), generator=gen).tolist()
        baseline = make_baseline(params["baseline"], x, model)
        total = torch.zeros((1, 1, height, width), dtype=torch.float64, device=x.device)
        shown = torch.zeros_like(total)  # Σ M_i: with the probabilities' sum, centres the map in one pass
        prob_sum = 0.0
        chunk = self.forward_batch(model, x, n)
        with torch.no_grad():
            for start in range(0, n, chunk):
                stop = min(start + chunk, n)
                up = F.interpolate(grids[start:stop].to(x.device), size=((cells + 1) * cell_h, (cells + 1) * cell_w),
                                   mode="bilinear", align_corners=False)  # fmt: skip
                masks = torch.stack([up[i - start, :, dy[i] : dy[i] + height, dx[i] : dx[i] + width]
                                     for i in range(start, stop)])  # fmt: skip
                probs = model.model(baseline + masks * (x - baseline)).softmax(-1)[:, target].double()
                masks64 = masks.double()  # converted once for both sums
                total += (probs.view(-1, 1, 1, 1) * masks64).sum(0, keepdim=True)
                shown += masks64.sum(0, keepdim=True)
                prob_sum += float(probs.sum())
        mean_prob = prob_sum / n
        if params["scores"] == "centred":
            total -= mean_prob * shown  # Σ (p_i − p̄) M_i
        return (total / (n * keep)).float(), None, {"masks": n, "mean_probability": mean_prob}
