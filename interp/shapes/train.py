"""Train the two small models of the shapes world, reproducibly on a CPU, and save them with their metadata.

    python -m interp shapes train --model shapes_cnn --out assets/shapes_cnn.safetensors

The models learn from the ``train`` split, where the star usually wears the corner marker; they are scored on a
fresh ``clean`` split (no marker) and on the ``test`` split (the marker at random on every class), which shows how
much they lean on the shortcut.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
import torch.nn.functional as F

from interp.models.specs import SHAPES_PREPROCESSING
from interp.shapes.generator import CLASSES, IMAGE_SIZE, generate
from interp.words import counted, epoch_line


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained weights.

    Attributes:
        arch: timm architecture; kwargs: its extra constructor arguments (``img_size`` for the ViT).
        n_train: training images per epoch; every epoch draws fresh ones (the world is procedural, so data is
            unlimited and nothing is memorised); epochs, batch, lr: the optimisation (AdamW, one-cycle schedule).
        seed: seeds the data (``seed``) and the initialisation and shuffling (``seed + 1``).
        n_eval: images of each evaluation split, drawn with ``seed + 100`` (never seen in training).
        teacher: a bundled model whose soft predictions the student also learns (knowledge distillation, as DeiT
            does; Touvron et al. 2021): a ViT trained from scratch on a few thousand images a epoch learns far
            faster from a CNN's soft labels than from the hard ones alone.
        distill_weight, temperature: the loss is ``(1 - w) * CE(labels) + w * T² * KL(teacher_T || student_T)``.
    """

    arch: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    n_train: int = 3000
    epochs: int = 8
    batch: int = 64
    lr: float = 2e-3
    seed: int = 0
    n_eval: int = 600
    teacher: str | None = None
    distill_weight: float = 0.5
    temperature: float = 2.0


CONFIGS = {
    "shapes_cnn": TrainConfig("test_resnet", n_train=4000, epochs=12),
    "shapes_vit": TrainConfig(
        "vit_tiny_r_s16_p8_224",
        {"img_size": IMAGE_SIZE, "patch_size": 4, "embed_dim": 128, "depth": 4, "num_heads": 4},
        n_train=4000,
        epochs=100,
        lr=1e-3,
        teacher="shapes_cnn",
    ),
}


def build(config: TrainConfig) -> torch.nn.Module:
    return timm.create_model(
        config.arch, pretrained=False, num_classes=len(CLASSES), pretrained_cfg_overlay=dict(SHAPES_PREPROCESSING),
        **config.kwargs,
    )  # fmt: skip


def split_tensors(
    n: int, seed: int, split: str, start: int = 0, pool: Executor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, 3, H, W)`` normalised images and ``(N,)`` labels of samples ``start…start+n-1`` of a split.

    With a process ``pool`` the images are drawn in parallel; the result is the same, since every sample depends
    only on its own index."""
    return _tensors(_submit(n, seed, split, start, pool))


def _submit(n: int, seed: int, split: str, start: int, pool: Executor | None) -> list[Future]:
    chunks = max(1, min(n // 64, 4 * getattr(pool, "_max_workers", 1))) if pool is not None else 1
    bounds = np.linspace(start, start + n, chunks + 1).astype(int)
    jobs = [(int(a), int(b - a), seed, split) for a, b in zip(bounds, bounds[1:], strict=False)]
    if pool is None:
        done: Future = Future()
        done.set_result(_draw(jobs[0]))
        return [done]
    return [pool.submit(_draw, job) for job in jobs]


def _tensors(parts: list[Future]) -> tuple[torch.Tensor, torch.Tensor]:
    arrays = [f.result() for f in parts]
    images, labels = np.concatenate([a[0] for a in arrays]), np.concatenate([a[1] for a in arrays])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return (x - 0.5) / 0.5, torch.from_numpy(labels)


def _draw(job: tuple[int, int, int, str]) -> tuple[np.ndarray, np.ndarray]:
    start, n, seed, split = job
    samples = list(generate(n, seed=seed, split=split, start=start))
    return np.stack([s.image for s in samples]), np.array([s.label for s in samples], dtype=np.int64)


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> float:
    model.eval()
    device = next(model.parameters()).device
    with torch.inference_mode():
        pred = torch.cat([model(x[i : i + batch].to(device)).argmax(-1).cpu() for i in range(0, len(x), batch)])
    return float((pred == y).float().mean())


def train(
    config: TrainConfig,
    progress: Callable[[str], None] = print,
    init_from: Path | None = None,
    device: str = "cpu",
    workers: int = 0,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train (from scratch, or on from the weights in ``init_from``); return the model in eval mode and a report
    with clean and marker-test accuracy. Continuing draws images the first run did not see (the epoch counter
    starts after the earlier run's epochs).

    ``device`` trains there (``"cuda"`` when there is a GPU; the same images, the same schedule; only the
    floating-point order differs from a CPU run). ``workers`` draws the images in that many processes, the next
    epoch's while this one trains. Training seeds torch's generators inside a fork of them: the caller's are as
    they were."""
    dev = torch.device(device)
    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
        if workers > 1:
            import multiprocessing

            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                return _train(config, progress, init_from, device, pool)
        return _train(config, progress, init_from, device, None)


def _load_start(model: torch.nn.Module, path: Path, arch: str) -> int:
    """Load the weights to continue from into ``model`` (read as any weights file is: a damaged file or one of
    another architecture is a sentence, not safetensors' or torch's error) and return the epochs they had done."""
    from safetensors import safe_open

    from interp.models.weights import check_fits, read_weights_file

    state_dict = read_weights_file(path).state_dict
    check_fits(model, state_dict, arch, path.name)
    model.load_state_dict(state_dict)
    if path.suffix.lower() != ".safetensors":
        return 0
    with safe_open(str(path), framework="pt") as f:
        return int(json.loads((f.metadata() or {}).get("report", "{}")).get("epochs_done", 0))


def _train(
    config: TrainConfig, progress: Callable[[str], None], init_from: Path | None, device: str, pool: Executor | None
) -> tuple[torch.nn.Module, dict[str, Any]]:
    start = time.perf_counter()
    torch.manual_seed(config.seed + 1)
    model = build(config).to(device)
    first_epoch = 0
    if init_from is not None:
        first_epoch = _load_start(model, Path(init_from), config.arch)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.05)
    steps = config.epochs * (-(-config.n_train // config.batch))
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(config.seed + 1)
    teacher = _teacher(config.teacher, device)

    def epoch_images(epoch: int) -> list[Future]:
        return _submit(config.n_train, config.seed, "train", (first_epoch + epoch) * config.n_train, pool)

    upcoming = epoch_images(0)
    for epoch in range(config.epochs):
        x, y = _tensors(upcoming)
        if epoch + 1 < config.epochs:
            upcoming = epoch_images(epoch + 1)
        model.train()
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), config.batch):
            idx = order[i : i + config.batch]
            xb, yb = x[idx].to(device, non_blocking=True), y[idx].to(device, non_blocking=True)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)  # no flips: they would move the corner marker
            if teacher is not None:
                with torch.no_grad():
                    soft = F.log_softmax(teacher(xb) / config.temperature, dim=-1)
                kl = F.kl_div(F.log_softmax(logits / config.temperature, dim=-1), soft, log_target=True,
                              reduction="batchmean")  # fmt: skip
                loss = (1 - config.distill_weight) * loss + config.distill_weight * config.temperature**2 * kl
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # ViTs from scratch spike without it
            opt.step()
            schedule.step()
            total += float(loss.detach()) * len(idx)
        progress(epoch_line(epoch + 1, config.epochs, total / len(x), time.perf_counter() - start))
    model.eval()
    progress(f"scoring the clean and the marker split ({counted(config.n_eval, 'image')} each, never trained on)…")
    report = {
        "last_epoch_train_accuracy": accuracy(model, x, y),
        "clean_accuracy": accuracy(model, *split_tensors(config.n_eval, config.seed + 100, "clean", pool=pool)),
        "marker_test_accuracy": accuracy(model, *split_tensors(config.n_eval, config.seed + 100, "test", pool=pool)),
        "seconds": round(time.perf_counter() - start, 1),
        "epochs_done": first_epoch + config.epochs,
        "init_from": str(init_from) if init_from is not None else None,
        "device": torch.device(device).type,
        "torch": torch.__version__,
        "timm": timm.__version__,
    }
    return model, report


def _teacher(name: str | None, device: str = "cpu") -> torch.nn.Module | None:
    if name is None:
        return None
    from interp.models import load_model

    return load_model(name, "bundled", device=device).model


def save(model: torch.nn.Module, path: Path, name: str, config: TrainConfig, report: dict[str, Any]) -> None:
    """safetensors with metadata: classes, preprocessing, architecture, training config and report."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "name": name,
        "classes": json.dumps(list(CLASSES)),
        "arch": config.arch,
        "kwargs": json.dumps(config.kwargs),
        "preprocessing": json.dumps(SHAPES_PREPROCESSING),
        "train_config": json.dumps(asdict(config)),
        "report": json.dumps(report),
    }
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path), metadata=metadata)
