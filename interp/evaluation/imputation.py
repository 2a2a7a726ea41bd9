"""Noisy linear imputation (Rong et al. 2022, ROAD): removed pixels are filled from the pixels around them, so the
perturbed image keeps no trace of the removed region's outline for a model to read.

Each removed pixel takes the weighted mean of its eight neighbours (the four beside it 1/6 each, the four diagonal
1/12 each, renormalised where a neighbour falls outside the image); neighbours that are removed too are unknowns of
the same sparse linear system, solved at once with SciPy. Noise of standard deviation ``noise`` is then added to the
filled pixels (ROAD's code adds 0.01 to normalised images), from a generator seeded by the caller.
"""

from __future__ import annotations

import numpy as np
import torch

from interp.errors import BadSettingError

# (row offset, column offset, weight): ROAD's neighbourhood
NEIGHBOURS: tuple[tuple[int, int, float], ...] = (
    (-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
    (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12),
)  # fmt: skip
NOISE = 0.01


def noisy_linear(
    x: torch.Tensor, removed: np.ndarray | torch.Tensor, *, noise: float = NOISE,
    generator: torch.Generator | None = None,
) -> torch.Tensor:  # fmt: skip
    """``x`` ``(C, H, W)`` with the pixels where ``removed`` ``(H, W)`` is true filled by noisy linear imputation.

    With every pixel removed nothing is left to fill from; the image then becomes its mean colour (the constant the
    system tends to as fewer pixels remain), plus the noise. Runs on the CPU; the result is on ``x``'s device.
    """
    import scipy.sparse as sp
    from scipy.sparse.linalg import spsolve

    removed = np.asarray(removed.cpu() if isinstance(removed, torch.Tensor) else removed, dtype=bool)
    channels, height, width = x.shape
    if removed.shape != (height, width):
        raise BadSettingError(f"the mask is {removed.shape} but the image is {(height, width)}.")
    pixels = x.detach().to("cpu", torch.float64).reshape(channels, -1).numpy()
    unknown = np.flatnonzero(removed)
    out = pixels.copy()
    if unknown.size == pixels.shape[1]:
        out[:] = pixels.mean(axis=1, keepdims=True)
    elif unknown.size:
        out[:, unknown] = _solve(pixels, removed, unknown, height, width, sp, spsolve)
    filled = torch.from_numpy(out).to(torch.float32)
    if noise and unknown.size:
        shake = torch.randn((channels, unknown.size), generator=generator, dtype=torch.float32)
        filled[:, torch.from_numpy(unknown)] += noise * shake
    return filled.reshape(channels, height, width).to(x.device)


def _solve(pixels, removed, unknown, height, width, sp, spsolve) -> np.ndarray:
    """The filled values ``(C, N)`` of the ``N`` removed pixels: row i reads x_i - Σ_j (w_ij / W_i) x_j = the known
    neighbours' weighted share, W_i the weight of the neighbours inside the image."""
    index = np.full(height * width, -1, dtype=np.int64)
    index[unknown] = np.arange(unknown.size)
    ys, xs = np.divmod(unknown, width)
    inside = [((ys + dy >= 0) & (ys + dy < height) & (xs + dx >= 0) & (xs + dx < width), dy, dx, w)
              for dy, dx, w in NEIGHBOURS]  # fmt: skip
    total = sum(ok * w for ok, _, _, w in inside)
    rows, cols, values = [np.arange(unknown.size)], [np.arange(unknown.size)], [np.ones(unknown.size)]
    rhs = np.zeros((unknown.size, pixels.shape[0]))
    for ok, dy, dx, w in inside:
        i = np.flatnonzero(ok)
        neighbour = (ys[i] + dy) * width + (xs[i] + dx)
        share = w / total[i]
        j = index[neighbour]
        free = j >= 0
        rows.append(i[free])
        cols.append(j[free])
        values.append(-share[free])
        np.add.at(rhs, i[~free], share[~free, None] * pixels[:, neighbour[~free]].T)
    system = sp.csc_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                           shape=(unknown.size, unknown.size))  # fmt: skip
    solved = spsolve(system, rhs)
    return np.asarray(solved).reshape(unknown.size, -1).T
