"""Shared test set-up. Tests never touch the network: the hub is declared offline before anything imports it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["INTERP_OFFLINE"] = "1"
os.environ.setdefault("INTERP_DEVICE", "cpu")

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", ROOT / "tests" / "_artifacts"))


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every run gets its own result cache, so no test reads what another run computed."""
    os.environ["INTERP_CACHE_DIR"] = str(tmp_path_factory.mktemp("interp-cache"))


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def lite0():
    """The real bundled ImageNet model, loaded once per run."""
    import interp

    return interp.load_model("efficientnet_lite0", device="cpu")


def theme_placeholders(at) -> list[str]:
    """Colours in an AppTest's plotly charts that Streamlit's chart theme would replace with its own (it uses
    #000001 to #000040 as placeholders): a colour scale holding one shows the theme's colour instead."""
    import json
    import re

    found = []
    for chart in at.main.get("plotly_chart"):
        figure = json.loads(chart.proto.spec)
        figure.get("layout", {}).pop("template", None)  # the theme's own placeholders: Streamlit fills those in
        found += re.findall(r"#0000(?:[0-3][1-9]|[1-3]0|40)\b", json.dumps(figure), flags=re.IGNORECASE)
    return found


def plotly_array(value):
    """An array of a plotly figure's JSON: a list, or plotly's typed array ({"dtype", "bdata", "shape"}), as
    plotly sends a numpy array."""
    import base64

    import numpy as np

    if isinstance(value, dict) and "bdata" in value:
        shape = [int(n) for n in str(value.get("shape", "-1")).split(",")]
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).reshape(shape)
    return np.asarray(value)


def one_photo_open_images(root: Path) -> Path:
    """An Open Images folder of one photo (Chelsea: the bundled model says tiger cat) labelled Cat and Dog, with a
    mapping (``oi_to_imagenet.csv``) that takes them to ImageNet's tabby (281) and golden retriever (207)."""
    from PIL import Image
    from skimage import data

    (root / "images").mkdir(parents=True)
    Image.fromarray(data.chelsea()).save(root / "images" / "0001aa.jpg")
    (root / "oidv7-class-descriptions.csv").write_text("LabelName,DisplayName\n/m/01yrx,Cat\n/m/0bt9lr,Dog\n")
    (root / "validation-annotations-human-imagelabels.csv").write_text(
        "ImageID,Source,LabelName,Confidence\n0001aa,verification,/m/01yrx,1\n0001aa,verification,/m/0bt9lr,1\n")
    (root / "oi_to_imagenet.csv").write_text("LabelName,imagenet\n/m/01yrx,281\n/m/0bt9lr,207\n")
    return root


def layer_and_gradient(model, x, layer: str, target: int):
    """A known answer for whatever reads a layer: its output ``(B, ...)`` as it left the layer, and ``target``'s
    logit's gradient there (summed over the batch), from a plain hook on a pass with every in-place activation turned
    off. A ``x += shortcut`` after the layer, which cannot be turned off, leaves the gradient as it is (it adds a
    constant); the hook keeps a copy of the values before it."""
    import torch

    from interp.models.hooks import hooked, no_inplace_activations

    kept = {}

    def keep(module, inputs, output):
        kept["values"], kept["output"] = output.detach().clone(), output

    with model.exclusive() as net, no_inplace_activations(net), torch.enable_grad():
        module = dict(net.named_modules())[layer]
        with hooked(module.register_forward_hook(keep)):
            logits = net(x.detach().clone().requires_grad_(True))
        (grad,) = torch.autograd.grad(logits[:, target].sum(), kept["output"])
    return kept["values"], grad
