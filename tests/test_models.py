"""The model registry and weight sources: every spec row is sound, weights load safely, offline fails fast."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import threading
import time

import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save, save_file

import interp
from interp import SPECS, UnknownModelError, WeightsMismatchError, WeightsUnavailableError, get_spec, load_model
from interp.models import weights as W
from interp.models.specs import parameter_count

TINY_CNN, TINY_VIT = "test_resnet", "test_vit"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_spec_row_builds_and_names_real_layers(name):
    spec = SPECS[name]
    with torch.device("meta"):
        model = timm.create_model(spec.arch, pretrained=False, **spec.kwargs)
    assert spec.cam_layer is not None
    model.get_submodule(spec.cam_layer)  # raises if the default Grad-CAM layer does not exist
    assert spec.family in ("cnn", "vit") and spec.description
    if spec.family == "vit":
        assert spec.grid == tuple(model.patch_embed.grid_size)
        assert spec.prefix_tokens == model.num_prefix_tokens
    else:
        assert spec.grid is None
    assert parameter_count(name) == sum(p.numel() for p in model.parameters())


def test_default_model_works_offline():
    assert interp.DEFAULT_MODEL in SPECS
    assert interp.availability(interp.DEFAULT_MODEL).available


@pytest.mark.parametrize("name", [n for n, s in SPECS.items() if s.weights == "bundled"])
def test_every_bundled_model_is_available_offline(name):
    avail = interp.availability(name)
    assert avail.available, avail.reason


@pytest.mark.parametrize("name", [n for n, s in SPECS.items() if s.weights == "hub"])
def test_hub_models_offline_are_unavailable_with_a_reason(name):
    avail = interp.availability(name)
    assert not avail.available
    assert "hub" in avail.reason and avail.reason.endswith(".")


def test_offline_hub_load_fails_fast_with_the_options():
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as info:
        load_model("resnet50")
    assert time.perf_counter() - start < 5.0  # timm's own retries would take ~45 s
    assert "efficientnet_lite0" in str(info.value) and "weights file" in str(info.value)
    repo = W.hub_repo("resnet50")[0]  # the command to fetch it elsewhere names its repository, not a placeholder
    assert repo.startswith("timm/resnet50.") and f"`hf download {repo}`" in str(info.value)


def test_unknown_name_suggests_close_timm_names():
    with pytest.raises(UnknownModelError) as info:
        get_spec("resnet5O")
    assert "resnet50" in str(info.value)
    with pytest.raises(UnknownModelError):
        get_spec("   ")


@pytest.mark.parametrize(
    "typed, first",
    [("vit_small", "vit_small_patch16_224"), ("VIT_base", "vit_base_patch16_224"), ("convnext", "convnext_base"),
     ("deit", "deit_small_patch16_224"), ("lite0", "efficientnet_lite0"), ("swin", None)],
)  # fmt: skip
def test_a_part_of_a_name_suggests_the_names_that_contain_it(typed, first):
    """A reviewer types ``vit_small`` and is offered ViT-S, not the names spelt closest (gcvit_small, davit_small):
    names that contain what was typed come first, ours before timm's others, timm's ``test_`` models last."""
    from interp.models import suggest_names

    names = suggest_names(typed, n=5)
    assert len(names) == 5 or typed == "lite0", names  # lite0: only two names contain it
    assert all(typed.lower() in n for n in names), names
    assert first is None or names[0] == first, names
    assert not any(n.startswith("test_") for n in names), names
    assert all(interp.models.is_timm_name(n) for n in names if n not in SPECS)
    wide = suggest_names("convnext", n=200)
    assert wide.index("convnext_tiny") < min(wide.index(n) for n in wide if n.startswith("test_"))


def test_a_misspelt_name_still_gets_the_close_ones_and_nothing_typed_gets_none():
    from interp.models import suggest_names

    assert suggest_names("resnet5O")[0] == "resnet50" and suggest_names("resnet_5O")[0] == "resnet50"
    assert suggest_names("resnet50.a1", n=3)[:2] == ["resnet50.a1_in1k", "resnet50.a1h_in1k"]  # a tag, typed in part
    assert suggest_names("  ") == [] and suggest_names("qqqqzzzz") == []
    assert suggest_names("ResNet50")[0] == "resnet50"  # only the case was wrong: the name itself first
    assert suggest_names("VIT_SMALL_PATCH16_224")[0] == "vit_small_patch16_224"


@pytest.mark.parametrize("name", ["vit_small_patch14_reg4_dinov2", "eva02_tiny_patch14_224"])
def test_a_feature_extractor_without_classes_is_refused_before_it_is_built(name, monkeypatch):
    """timm builds these with no classifier: predicting failed with an IndexError and every method said the class
    was not one of "0 to -1"."""
    monkeypatch.setattr(torch.nn.Module, "load_state_dict", lambda *a, **k: pytest.fail("weights were read"))
    with pytest.raises(UnknownModelError, match=f"^{name} has no classifier: timm builds it without class outputs"):
        load_model(name, "random")


def test_an_architecture_with_a_patch_embedding_but_no_grid_is_not_taken_for_a_plain_vit():
    """XCiT's convolutional patch embedding has no grid_size; inferring its spec failed with an AttributeError."""
    spec = get_spec("xcit_nano_12_p16_224")
    assert spec.family == "cnn" and spec.cam_layer == "blocks.11"


@pytest.mark.parametrize(
    "name, layer",
    [("mvitv2_tiny", "stages.3"), ("twins_svt_small", "blocks.3.3"), ("coat_lite_tiny", "serial_blocks4.1"),
     ("resnet18", "layer4"), ("convnext_atto", "stages.3")],
)
def test_an_inferred_cam_layer_is_a_module_the_pass_calls(name, layer):
    """MViTv2 and Twins list feature stages named "block.N", which they do not have; Twins' and CoaT's blocks are
    ModuleLists, which the pass iterates but never calls, so no hook on them fires."""
    assert get_spec(name).cam_layer == layer


def test_tokens_kept_out_of_row_order_are_refused_not_scrambled():
    """Hiera keeps its tokens in mask-unit order until the end: laid row by row they made a map of the wrong places."""
    from interp.errors import BadSettingError
    from interp.models.layout import as_map
    from tests.toy_models import layouts_model

    model = layouts_model()
    model.structure.unroll = torch.nn.Identity()  # what marks Hiera's token order in timm
    with pytest.raises(BadSettingError, match="keeps its tokens in mask-unit order"):
        as_map(model, torch.zeros(1, 256, 8))
    assert as_map(model, torch.zeros(1, 8, 16, 16)).shape == (1, 8, 16, 16)  # maps are still maps


def test_maps_and_tokens_are_read_channels_first_whichever_way_a_layer_holds_them():
    from interp.models.layout import as_map, channels_last

    model = load_model("shapes_cnn")  # a 128×128 input
    nchw, nhwc = torch.randn(2, 96, 8, 8), torch.randn(2, 8, 8, 96)
    assert not channels_last(model, nchw) and channels_last(model, nhwc)
    assert torch.equal(as_map(model, nhwc), nhwc.permute(0, 3, 1, 2)) and as_map(model, nchw) is nchw
    cube = torch.randn(1, 7, 7, 7)  # seven 7×7 channels, or 7×7 cells of seven: channels first, as most layers are
    assert as_map(model, cube) is cube
    crossvit = torch.randn(1, 1 + 400, 5)  # a class token and 20×20 patches, in a model whose spec names no prefix
    assert torch.equal(as_map(model, crossvit), crossvit[:, 1:].transpose(1, 2).reshape(1, 5, 20, 20))
    assert as_map(model, torch.randn(1, 402, 5)) is None and as_map(model, torch.randn(1, 5)) is None


def test_any_timm_name_gets_an_inferred_spec():
    vit = get_spec(TINY_VIT)
    assert vit.family == "vit" and vit.prefix_tokens == 1 and vit.grid == (10, 10)
    assert vit.cam_layer == "blocks.5.norm1"
    cnn = get_spec(TINY_CNN)
    assert cnn.family == "cnn" and cnn.cam_layer == "layer4"
    assert get_spec("resnet50.a1_in1k").arch == "resnet50.a1_in1k"


def test_lite0_classifies_the_bundled_photos(lite0):
    cat = interp.predict(lite0, interp.load_sample("chelsea"))
    assert cat.top.label in ("tiger cat", "tabby, tabby cat", "Egyptian cat")
    assert interp.predict(lite0, interp.load_sample("coffee")).top.label == "espresso"


def test_predict_reads_a_prepared_tensor_as_every_function_that_runs_a_model_does(lite0):
    """``attribute``, ``capture``, the scores took ``model.preprocess(image)``; ``predict`` said it was "not a NumPy
    array or a Pillow image". It gives the prediction of the image it was prepared from, and a tensor it cannot read
    is the same sentence as theirs."""
    image = interp.load_sample("chelsea")
    want = interp.predict(lite0, image).scores
    x = lite0.preprocess(image.image)
    assert interp.predict(lite0, x).scores == want and interp.predict(lite0, x[None]).scores == want
    with pytest.raises(interp.InterpError, match=r"a prepared image is one \(3, H, W\) tensor, got shape "
                                                 r"\(2, 3, 224, 224\); give one image at a time"):  # fmt: skip
        interp.predict(lite0, torch.stack([x, x]))


def test_lite0_uses_its_own_data_config(lite0):
    cfg = lite0.data_config
    assert cfg["mean"] == (0.5, 0.5, 0.5) and cfg["std"] == (0.5, 0.5, 0.5)
    assert cfg["input_size"] == (3, 224, 224) and cfg["interpolation"] == "bicubic"
    x = lite0.preprocess(interp.load_sample("coffee").image)
    assert x.shape == (3, 224, 224)
    back = lite0.to_display(x)
    assert back.shape == (224, 224, 3) and back.dtype.name == "uint8"
    renormalised = (torch.from_numpy(back).permute(2, 0, 1) / 255.0 - 0.5) / 0.5
    assert torch.allclose(renormalised, x.clamp(-1, 1), atol=1 / 255)  # the display undoes the normalisation


PREPROCESSING = {  # the data configs of the model families in the spec table, and one upscaling shapes model
    "lite0": {"input_size": (3, 224, 224), "interpolation": "bicubic", "crop_pct": 0.875, "mean": (0.5,) * 3, "std": (0.5,) * 3},
    "resnet50": {"input_size": (3, 224, 224), "interpolation": "bicubic", "crop_pct": 0.95,
                 "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
    "vit": {"input_size": (3, 224, 224), "interpolation": "bicubic", "crop_pct": 0.9, "mean": (0.5,) * 3, "std": (0.5,) * 3},
    "shapes": {"input_size": (3, 128, 128), "interpolation": "bilinear", "crop_pct": 1.0, "mean": (0.5,) * 3, "std": (0.5,) * 3},
    "b3": {"input_size": (3, 288, 288), "interpolation": "bicubic", "crop_pct": 0.875,
           "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
    "lanczos": {"input_size": (3, 224, 224), "interpolation": "lanczos", "crop_pct": 0.875, "mean": (0.5,) * 3,
                "std": (0.5,) * 3},  # no torch kernel: Pillow over the crop's box
}  # fmt: skip
SIZES = [(500, 375), (375, 500), (224, 224), (256, 256), (640, 427), (100, 80), (1000, 37), (129, 128), (1600, 1200)]


@pytest.mark.parametrize("config", list(PREPROCESSING))
def test_fast_preprocessing_gives_timms_pixels(config):
    """The fast resize must give what timm's resize-then-crop gives, on every image size (crops larger than the
    resized image run timm's own transform, which pads): at most 2 grey levels apart; torch's uint8 resize (bilinear,
    bicubic) rounds its fixed-point weights differently from Pillow, in at most 1% of the values (bicubic) or 5%
    (bilinear); Pillow's resize of the crop's box (the other filters), float rounding of the box, in at most 0.5%."""
    from timm.data import create_transform

    from interp.models.preprocess import CentreCropTransform, fast_eval_transform

    cfg = PREPROCESSING[config]
    timm_transform = create_transform(**cfg, is_training=False)
    fast = fast_eval_transform(timm_transform)
    assert isinstance(fast, CentreCropTransform)
    levels = torch.tensor(cfg["std"]).view(-1, 1, 1) * 255
    share = {"bicubic": 0.01, "bilinear": 0.05}.get(cfg["interpolation"], 0.005)
    for photo in (interp.load_sample(name).image for name in ("astronaut", "chelsea")):
        for size in SIZES:
            image = photo.resize(size)
            expected, got = timm_transform(image), fast(image)
            assert got.shape == expected.shape and got.dtype == expected.dtype
            apart = ((got - expected).abs() * levels).round()
            assert apart.max() <= 2, (config, size)
            assert (apart > 0).float().mean() <= share, (config, size)


@pytest.mark.parametrize("config", list(PREPROCESSING))
def test_an_image_held_at_the_models_size_gives_the_model_the_same_pixels(config):
    """A Features spectrum holds up to 1,000 dataset images; it holds each at the size the model resizes it to
    (``model_sized``). The model must see the same pixels from it, bit for bit, as from the full image; where the
    transform cannot promise that (Pillow's filters over the crop's box, crops larger than the resized image), the
    image is kept as it is."""
    import dataclasses

    from timm.data import create_transform

    from interp.images import image_digest
    from interp.models.preprocess import fast_eval_transform, model_sized

    fast = fast_eval_transform(create_transform(**PREPROCESSING[config], is_training=False))
    photo = interp.load_sample("astronaut")
    smaller = 0
    for size in SIZES:
        resized = photo.image.resize(size)
        image = dataclasses.replace(photo, image=resized, digest=image_digest(resized))
        held = model_sized(fast, image)
        assert torch.equal(fast(held.image), fast(image.image)), (config, size)
        assert torch.equal(fast.pixels(held.image), fast.pixels(image.image)), (config, size)
        if held is image:
            continue
        smaller += 1
        assert held.image.width * held.image.height < image.image.width * image.image.height
        assert min(held.image.size) == fast.size and held.digest == image_digest(held.image) != image.digest
        assert (held.name, held.original_size) == (image.name, image.original_size)
    # the bicubic and bilinear configs shrink every size whose shorter side is larger than their resize; lanczos none
    assert smaller == (0 if config == "lanczos" else sum(min(s) > fast.size for s in SIZES))


def test_fast_preprocessing_hands_torchs_resize_pixels_it_reads_as_channels_last(monkeypatch):
    """Torch's resize picks its kernel from the strides of what it is given, reading dimensions of size 1 too: a
    picture from Pillow or from the JPEG decoder, ``(H, W, 3)`` in memory, seen as ``(1, 3, H, W)`` by ``[None]``
    has a batch stride of 3 and went to the generic kernel (0.83 ms for a 500×375 photo on one core, 0.52 ms in the
    vectorised one). Every resize of both sources gets strides that say channels-last, and the same pixels."""
    import io

    from timm.data import create_transform

    from interp.jpeg import decode_plain
    from interp.models.preprocess import fast_eval_transform

    fast = fast_eval_transform(create_transform(**PREPROCESSING["lite0"], is_training=False))
    photo = interp.load_sample("coffee").image.resize((500, 375))
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    decoded = decode_plain(buffer.getvalue())
    assert decoded is not None
    seen = []
    real = torch.nn.functional.interpolate

    def interpolate(x, *args, **kwargs):
        out = real(x, *args, **kwargs)
        seen.append((tuple(x.shape), x.stride(), torch.equal(out, real(x.contiguous(), *args, **kwargs))))
        return out

    monkeypatch.setattr(torch.nn.functional, "interpolate", interpolate)
    fast.pixels(photo), fast.pixels_of(decoded)
    assert len(seen) == 2
    for (n, c, h, w), stride, same_as_nchw in seen:
        assert (n, c) == (1, 3) and stride == (h * w * c, 1, w * c, c)
        assert same_as_nchw  # the generic kernel, on a contiguous NCHW copy, gives the same pixels


def test_fast_preprocessing_changes_no_logit_by_more_than_resampling_noise(lite0):
    """What the pixel bound means for a prediction: on 32 photos of several sizes, the real model's logits from our
    preprocessing and from timm's transform stay within 0.1 of each other (measured: at most 0.045, median 0.012,
    on logits that reach 10), and the top class agrees wherever its lead is over 0.01 in probability."""
    from timm.data import create_transform

    reference = create_transform(**lite0.data_config, is_training=False)
    for name in ("chelsea", "coffee", "astronaut", "rocket", "motorcycle", "horse", "camera", "clock"):
        photo = interp.load_sample(name).image
        for size in ((500, 375), (375, 500), (1000, 700), None):
            image = photo if size is None else photo.resize(size)
            theirs, ours = lite0.run(torch.stack([reference(image), lite0.preprocess(image)]))
            assert (theirs - ours).abs().max() < 0.1, (name, size)
            top2 = theirs.softmax(-1).topk(2).values
            if top2[0] - top2[1] > 0.01:
                assert ours.argmax() == theirs.argmax(), (name, size)


def test_fast_preprocessing_is_picklable_and_only_for_centre_crops():
    import pickle

    from timm.data import create_transform

    from interp.models.preprocess import CentreCropTransform, fast_eval_transform

    fast = fast_eval_transform(create_transform(**PREPROCESSING["lite0"], is_training=False))
    image = interp.load_sample("coffee").image
    assert torch.equal(pickle.loads(pickle.dumps(fast))(image), fast(image))  # data-loader workers get a copy
    padded = {**PREPROCESSING["lite0"], "crop_pct": 1.2}  # resized to 186 px, cropped to 224: torchvision pads
    assert torch.equal(fast_eval_transform(create_transform(**padded, is_training=False))(image),
                       create_transform(**padded, is_training=False)(image))  # fmt: skip
    for other in ({"crop_mode": "squash"}, {"crop_mode": "border"}, {"interpolation": "nearest"}):
        reference = create_transform(**{**PREPROCESSING["lite0"], **other}, is_training=False)
        assert not isinstance(fast_eval_transform(reference), CentreCropTransform), other


def test_normalising_on_a_device_copies_the_constants_there_once_and_pickles_without_them():
    """On a GPU each batch's normalising copied its two constants from pageable memory, which made a scan's preparing
    thread wait for its own queued decoding and resizing; they are kept per device now (here the meta device stands
    in for a GPU), and a pickled copy (a loader worker's) leaves them behind."""
    import pickle

    from timm.data import create_transform

    from interp.models.preprocess import fast_eval_transform

    fast = fast_eval_transform(create_transform(**PREPROCESSING["lite0"], is_training=False))
    pixels = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8)
    on_cpu = fast.normalize(pixels)
    assert fast._constants == {}  # nothing to copy on the CPU
    meta = torch.device("meta")
    first = fast.normalize(pixels.to(meta))
    assert first.device.type == "meta" and first.shape == on_cpu.shape and first.dtype == torch.float32
    kept = fast._constants[meta]
    fast.normalize(pixels.to(meta))
    assert fast._constants[meta] is kept and len(fast._constants) == 1  # the same tensors: no copy the second time
    copy = pickle.loads(pickle.dumps(fast))
    assert copy._constants == {} and meta in fast._constants
    assert torch.equal(copy.normalize(pixels), on_cpu)


def test_a_batch_made_from_pixels_is_the_stacked_preprocessing(lite0):
    """``pixels`` (resize and crop to uint8) then ``batch_of`` (normalise the stack) is how concept extraction feeds
    a GPU; on the CPU it must give preprocess's tensors bit for bit, whatever the image's size or mode."""
    import dataclasses

    photo = interp.load_sample("coffee").image
    sizes = [(300, 300), (97, 300), (1000, 260)]
    images = [*(photo.resize(size) for size in sizes), photo.convert("L"), photo.convert("RGBA")]
    parts = [lite0.pixels(im) for im in images]
    assert all(p.dtype == torch.uint8 and p.shape == (3, 224, 224) for p in parts)
    assert torch.equal(lite0.batch_of(parts), torch.stack([lite0.preprocess(im) for im in images]))
    # a crop larger than the resized image: timm's resize and padding crop give the pixels, its arithmetic differs
    # from ours by float rounding only
    padded = dataclasses.replace(lite0, data_config={**lite0.data_config, "crop_pct": 1.2})
    got = padded.batch_of([padded.pixels(im) for im in images])
    assert (got - torch.stack([padded.preprocess(im) for im in images])).abs().max() < 1e-5
    assert (got[0, :, :10] == got[0, 0, 0, 0]).all()  # the square's padded top rows: black, normalised
    # a pipeline that is not a centre crop has no uint8 half: the whole preprocessing, passed through
    squash = dataclasses.replace(lite0, data_config={**lite0.data_config, "crop_mode": "squash"})
    parts = [squash.pixels(im) for im in images]
    assert all(p.dtype == torch.float32 for p in parts)
    assert torch.equal(squash.batch_of(parts), torch.stack([squash.preprocess(im) for im in images]))


def test_loaded_model_is_frozen_and_in_eval(lite0):
    assert not lite0._module.training
    assert not any(p.requires_grad for p in lite0._module.parameters())


def test_cnns_run_channels_last_on_the_cpu_with_the_same_outputs(lite0):
    """On a CPU a CNN's convolutions keep NHWC weights (oneDNN's faster layout, ``bench/bench_layout.py``); a ViT's
    patch embedding stays as timm made it. The logits are those of the network in the default layout, the weights'
    fingerprint (cache keys) too."""
    import copy

    from interp.models.loading import fingerprint

    def weights(net: torch.nn.Module) -> list[torch.Tensor]:  # the convolutions whose two layouts differ
        return [m.weight for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.weight[0, :, 0, 0].numel() > 1
                and m.weight.shape[-1] > 1]  # fmt: skip

    assert weights(lite0._module) and all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
                                          for w in weights(lite0._module))  # fmt: skip
    nchw = copy.deepcopy(lite0._module).to(memory_format=torch.contiguous_format)
    assert all(w.is_contiguous() for w in weights(nchw))
    assert fingerprint(nchw) == lite0.weights.fingerprint
    x = lite0.batch_of([lite0.pixels(interp.load_sample(s).image) for s in ("chelsea", "coffee")])
    with torch.inference_mode():
        ours, reference = lite0.run(x), nchw(x)
    assert torch.allclose(ours, reference, rtol=1e-4, atol=1e-4)
    assert torch.equal(ours.argmax(1), reference.argmax(1))

    vit = load_model("shapes_vit")
    assert weights(vit._module) and all(w.is_contiguous() for w in weights(vit._module))


def test_the_channels_last_setting(monkeypatch):
    from interp.models.loading import channels_last_pays
    from interp.models.specs import get_spec

    cnn, vit = get_spec(TINY_CNN), get_spec("shapes_vit")
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    for value, expected in (("auto", (True, False)), ("", (True, False)), ("1", (True, True)), ("0", (False, False)),
                            ("yes please", (True, False))):  # fmt: skip
        monkeypatch.setenv("INTERP_CHANNELS_LAST", value)
        assert (channels_last_pays(cnn, cpu), channels_last_pays(cnn, gpu)) == expected, value
        assert not channels_last_pays(vit, cpu) and not channels_last_pays(vit, gpu)
    monkeypatch.setenv("INTERP_CHANNELS_LAST", "0")
    model = load_model(TINY_CNN, "random")
    assert all(m.weight.is_contiguous() for m in model._module.modules() if isinstance(m, torch.nn.Conv2d))


def test_random_weights_are_seeded():
    a, b = load_model(TINY_CNN, "random"), load_model(TINY_CNN, "random")
    assert a.weights.fingerprint == b.weights.fingerprint and a.weights.kind == "random"


def test_an_untrained_copy_takes_the_trained_models_classes():
    """The sanity check's copy of a model with its own classes (a fine-tune's 3): as many outputs, named alike, so
    the same target classes can be compared; seeded like any untrained copy."""
    names = ("cat", "dog", "fox")
    a, b = (load_model(TINY_CNN, "random", class_names=names) for _ in range(2))
    assert a.class_names == names and a.num_classes == 3 and a.weights.kind == "random"
    assert a.weights.fingerprint == b.weights.fingerprint
    scores = interp.predict(a, Image.new("RGB", (64, 64))).scores
    assert len(scores) == 3 and {s.label for s in scores} == set(names)


def test_safetensors_file_round_trip_with_class_names(tmp_path):
    source = load_model(TINY_CNN, "random")
    sd = {k: v.contiguous() for k, v in source._module.state_dict().items()}
    path = tmp_path / "mine.safetensors"
    save_file(sd, str(path), metadata={"classes": json.dumps([f"thing {i}" for i in range(1000)])})
    loaded = load_model(TINY_CNN, path)
    assert loaded.weights.kind == "file" and loaded.weights.fingerprint == source.weights.fingerprint
    assert loaded.class_names[3] == "thing 3"
    from_bytes = load_model(TINY_CNN, save(sd), weights_name="upload.safetensors")
    assert from_bytes.weights.fingerprint == source.weights.fingerprint
    # the same weights with other class names: the same fingerprint, another cache key (a scan's rows carry names)
    assert from_bytes.key != loaded.key and from_bytes.key.startswith(f"{loaded.spec.name}@")
    assert load_model(TINY_CNN, path).key == loaded.key
    # a model with the names its weights' shape gives keeps the key it always had, and with it the scans made before
    assert from_bytes.key == source.key == f"{source.spec.name}@{source.weights.fingerprint[:16]}"
    assert loaded.key.startswith(f"{source.key}+")


def test_finetuned_classifier_size_is_detected(tmp_path):
    small = timm.create_model(TINY_CNN, pretrained=False, num_classes=3)
    path = tmp_path / "three.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in small.state_dict().items()}, "epoch": 7}, path)
    loaded = load_model(TINY_CNN, path, class_names=["cat", "dog", "cow"])
    assert loaded.num_classes == 3 and loaded.class_names == ("cat", "dog", "cow")
    assert interp.predict(loaded, interp.load_sample("chelsea"), top_k=10).scores.__len__() == 3
    with pytest.raises(WeightsMismatchError, match="3 outputs"):
        load_model(TINY_CNN, path, class_names=["cat"])


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"weights": torch.zeros(2), "payload": _Payload()}, path)
    with pytest.raises(WeightsMismatchError, match="for safety"):
        load_model(TINY_CNN, path)


class _Payload:
    """A stand-in for arbitrary code in a pickle: weights_only=True must refuse to build it."""


def test_weights_of_another_architecture_are_refused_with_details(tmp_path):
    other = timm.create_model(TINY_VIT, pretrained=False)
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(path))
    with pytest.raises(WeightsMismatchError) as info:
        load_model(TINY_CNN, path)
    message = str(info.value)
    assert "does not fit timm's test_resnet" in message and "missing" in message and "unexpected" in message


@pytest.mark.parametrize(
    "name, data, match",
    [
        ("empty.safetensors", b"", "not a valid safetensors"),
        ("junk.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}", "not a valid safetensors"),
        ("junk.pth", b"definitely not a checkpoint", "not a PyTorch checkpoint"),
        ("weights.onnx", b"onnx", r"^weights.onnx has the extension '.onnx'; use a .safetensors file"),
        ("weights", b"onnx", r"^weights has no extension; use a .safetensors file"),  # not "the extension '(none)'"
    ],
)
def test_unreadable_weight_files(name, data, match):
    with pytest.raises(WeightsMismatchError, match=match):
        load_model(TINY_CNN, data, weights_name=name)


def test_weights_in_any_form_an_api_caller_holds_them_load_alike_and_other_values_are_a_sentence(tmp_path):
    """A state dict, a bytearray, a memoryview, an open file or bytes read from a file without a name each raised
    ``TypeError`` from ``pathlib``; ``class_names="classes.txt"`` named one class a letter and blank names were taken.
    Each form now gives the same model as the path does, and the rest is one sentence."""
    source = load_model(TINY_CNN, "random")
    state = {k: v.contiguous() for k, v in source._module.state_dict().items()}
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    pth = io.BytesIO()
    torch.save(state, pth)
    reference = load_model(TINY_CNN, path).weights.fingerprint
    forms = [state, path.read_bytes(), bytearray(path.read_bytes()), memoryview(path.read_bytes()), pth.getvalue()]
    with open(path, "rb") as handle:
        forms.append(handle)
        for weights in forms:
            assert load_model(TINY_CNN, weights).weights.fingerprint == reference, type(weights)
    with pytest.raises(WeightsMismatchError, match="^weights are a file's path, its bytes, a state dict, or one of "
                                                   "hub, bundled, random; got int.$"):  # fmt: skip
        load_model(TINY_CNN, 5)
    (tmp_path / "model").write_bytes(path.read_bytes())  # a path without an extension, as saved by hand
    (tmp_path / "checkpoint").write_bytes(pth.getvalue())
    assert load_model(TINY_CNN, tmp_path / "model").weights.fingerprint == reference
    assert load_model(TINY_CNN, str(tmp_path / "checkpoint")).weights.fingerprint == reference
    with pytest.raises(WeightsMismatchError, match=r"^the uploaded weights has no extension; use a \.safetensors"):
        load_model(TINY_CNN, b"neither format")  # nothing to tell it by
    with pytest.raises(WeightsMismatchError, match="^class_names is a list of names, one per output, not str; read"):
        load_model(TINY_CNN, path, class_names="classes.txt")
    names = [f"class {i}" for i in range(source.num_classes)]
    with pytest.raises(WeightsMismatchError, match="^class name 1 is blank; give every output a name.$"):
        load_model(TINY_CNN, path, class_names=[names[0], " ", *names[2:]])
    assert load_model(TINY_CNN, path, class_names=[f" {n} " for n in names]).class_names == tuple(names)


def test_a_filled_hub_cache_loads_by_path_without_network(tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    repo, _ = W.hub_repo(TINY_CNN)
    assert repo is not None
    snapshot = tmp_path / f"models--{repo.replace('/', '--')}" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (tmp_path / f"models--{repo.replace('/', '--')}" / "refs").mkdir()
    (tmp_path / f"models--{repo.replace('/', '--')}" / "refs" / "main").write_text("abc123")
    source = load_model(TINY_CNN, "random")
    save_file({k: v.contiguous() for k, v in source._module.state_dict().items()}, str(snapshot / "model.safetensors"))
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(W, "hub_reachable", lambda timeout=2.0: pytest.fail("must not probe the network"))

    assert interp.availability(TINY_CNN).available
    loaded = load_model(TINY_CNN, "hub")
    assert loaded.weights.kind == "hub" and "hub cache" in loaded.weights.source
    assert loaded.weights.fingerprint == source.weights.fingerprint


def test_a_model_that_would_not_fit_in_the_memory_left_is_refused_before_anything_is_read(tmp_path, monkeypatch):
    """In a 1,000 MB cgroup a process holding 400 MB was killed loading ViT-B/16 from a file without this check."""
    from interp.errors import NotEnoughMemoryError
    from interp.models import budget as loading  # the estimate and the check loading makes

    source = load_model(TINY_CNN, "random")
    path = tmp_path / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in source._module.state_dict().items()}, str(path))
    weights_mb = parameter_count(TINY_CNN) * 4 / 2**20
    spec = get_spec(TINY_CNN)
    assert loading.load_memory_mb(spec, "random") == pytest.approx(weights_mb + loading.LOAD_OVERHEAD_MB)
    assert loading.load_memory_mb(spec, path) == pytest.approx(2 * weights_mb + loading.LOAD_OVERHEAD_MB)
    vit = loading.load_memory_mb(get_spec("vit_base_patch16_224"), "hub")
    assert 676 <= vit <= 800  # measured peak over the process before: 676 MB from a file

    read = []
    monkeypatch.setattr(W, "read_weights_file", lambda *a, **k: read.append(a) or pytest.fail("read before the check"))
    monkeypatch.setattr(loading, "room_mb", lambda: 50.0)
    with pytest.raises(NotEnoughMemoryError) as refused:
        load_model(TINY_CNN, path)
    assert str(refused.value) == (
        f"{TINY_CNN} ({parameter_count(TINY_CNN) / 1e6:,.0f} M parameters) needs about "
        f"{2 * weights_mb + loading.LOAD_OVERHEAD_MB:,.0f} MB to load and this server has about 0 MB left; pick a "
        "smaller model."
    )
    with pytest.raises(NotEnoughMemoryError, match="needs about"):
        load_model(TINY_CNN, "random")
    monkeypatch.undo()
    monkeypatch.setattr(loading, "room_mb", lambda: weights_mb + loading.LOAD_OVERHEAD_MB + loading.HEADROOM_MB + 1)
    assert load_model(TINY_CNN, "random").weights.kind == "random"  # it fits at random, not read from a file
    with pytest.raises(NotEnoughMemoryError):
        load_model(TINY_CNN, path)
    monkeypatch.setattr(loading, "room_mb", lambda: None)  # where the OS does not say, nothing is refused
    assert load_model(TINY_CNN, path).weights.kind == "file"


def test_device_resolution():
    assert interp.resolve_device("cpu").type == "cpu"
    assert interp.resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError):
        interp.resolve_device("tpu:7")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            interp.resolve_device("cuda")


def test_load_model_runs_where_interp_device_says_unless_told(monkeypatch):
    """``INTERP_DEVICE`` is the documented switch (benches, CLI, API): ``load_model`` without a device follows it."""
    monkeypatch.setenv("INTERP_DEVICE", "cuda")
    if torch.cuda.is_available():
        assert load_model(TINY_CNN, "random").device.type == "cuda"
    else:
        with pytest.raises(ValueError, match="no CUDA GPU"):
            load_model(TINY_CNN, "random")
    assert load_model(TINY_CNN, "random", device="cpu").device.type == "cpu"  # an explicit device wins
    monkeypatch.setenv("INTERP_DEVICE", "cpu")
    assert load_model(TINY_CNN, "random").device.type == "cpu"
    monkeypatch.delenv("INTERP_DEVICE")
    assert interp.resolve_device(None) == interp.resolve_device("auto")


def test_settings_from_env(tmp_path):
    s = interp.Settings.from_env({"INTERP_CACHE_DIR": str(tmp_path), "INTERP_CACHE_SIZE_MB": "5", "INTERP_DEVICE": "cpu"})
    assert s.cache_dir == tmp_path and s.cache_size_mb == 5 and s.device == "cpu"
    assert s.memory_limit_mb is None
    assert interp.Settings.from_env({"INTERP_MEMORY_LIMIT_MB": "900"}).memory_limit_mb == 900
    with pytest.raises(ValueError, match="whole number"):
        interp.Settings.from_env({"INTERP_CACHE_SIZE_MB": "lots"})
    for bad in ("1.5G", "-100"):
        with pytest.raises(ValueError, match=f"INTERP_MEMORY_LIMIT_MB='{bad}' is not a whole number of megabytes"):
            interp.Settings.from_env({"INTERP_MEMORY_LIMIT_MB": bad})
    assert s.share_concepts and not interp.Settings.from_env({"INTERP_SHARE_CONCEPTS": "0"}).share_concepts
    with pytest.raises(ValueError, match="INTERP_SHARE_CONCEPTS='maybe' is neither 1 nor 0"):
        interp.Settings.from_env({"INTERP_SHARE_CONCEPTS": "maybe"})


def test_a_cache_folder_that_cannot_be_written_falls_back_to_the_users_temporary_one(tmp_path, monkeypatch):
    """A read-only home in a container, or a file where the folder should be: results go to a folder of this user in
    the temporary folder, with a sentence; nowhere writable is a sentence, not a crash on the first result."""
    from pathlib import Path

    import numpy as np

    from interp.errors import BadSettingError

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    fine = interp.Settings(cache_dir=tmp_path / "cache")
    assert fine.writable() == (fine, None) and fine.cache_dir.is_dir()

    (tmp_path / "a-file").write_text("not a folder")
    blocked = interp.Settings(cache_dir=tmp_path / "a-file" / "cache", cache_size_mb=7)
    chosen, note = blocked.writable()
    assert chosen.cache_dir.parent == temp and chosen.cache_dir.name.startswith("interp-") and chosen.cache_size_mb == 7
    assert f"kept in {chosen.cache_dir} for now: the cache folder {blocked.cache_dir} cannot be written" in note
    assert "Set INTERP_CACHE_DIR to a folder this user can write" in note
    cache = interp.ResultCache.from_settings(chosen)
    cache.put("k", {"a": np.arange(3.0)})
    assert cache.get("k").arrays["a"].tolist() == [0.0, 1.0, 2.0]
    assert oct(chosen.cache_dir.stat().st_mode & 0o777) == oct(0o700)

    monkeypatch.setattr("os.getuid", lambda: chosen.cache_dir.stat().st_uid + 1)  # someone else made it first
    with pytest.raises(BadSettingError, match="nor can .*interp-.*; set INTERP_CACHE_DIR to a folder this user"):
        blocked.writable()
    assert Path(tmp_path / "a-file").read_text() == "not a folder"


def test_a_user_without_a_home_still_gets_a_cache_folder(tmp_path, monkeypatch):
    """A container's user with no passwd entry and no $HOME (Path.home() raises): the temporary folder instead."""
    from pathlib import Path

    def nowhere() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(nowhere))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    chosen, note = interp.Settings.from_env({}).writable()
    assert chosen.cache_dir.is_relative_to(tmp_path) and note is None


def test_engine_imports_without_streamlit():
    code = "import sys; sys.modules['streamlit'] = None; import interp, interp.cli; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_the_method_registry_loads_scikit_learn_only_when_a_method_fits_with_it():
    """scikit-learn (and SciPy with it) is 50 MB of a process's memory: a server on Streamlit Cloud's smallest
    container (750 MB) should not hold it before anyone runs LIME, KernelSHAP or TCAV."""
    code = ("import sys; from interp.attribution import METHODS; assert len(METHODS) > 15; "
            "print(sorted(m for m in ('sklearn', 'scipy') if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_hub_probe_never_waits_past_its_deadline(monkeypatch):
    import socket as socket_module

    release = threading.Event()

    def hang(*args, **kwargs):
        release.wait(30)  # a resolver that does not answer until the test is over
        raise OSError("no answer")

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("INTERP_OFFLINE")
    monkeypatch.setattr(socket_module, "create_connection", hang)
    W._probe.cache_clear()
    start = time.perf_counter()
    try:
        assert W.hub_reachable(timeout=0.5) is False
    finally:
        release.set()
        W._probe.cache_clear()
    assert time.perf_counter() - start < 2.0


def test_every_public_name_loads_on_first_use():
    """`import interp` is lazy (interp/__init__.pyi): each name it lists is there when asked for, `predict` the
    function even after its module of the same name is imported."""
    import ast
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = ("import interp, interp.predict\n"
            "print(sorted(n for n in interp.__all__ if getattr(interp, n, None) is None), callable(interp.predict))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=ROOT)  # fmt: skip
    assert result.stdout.split() == ["[]", "True"], result.stderr
    assert {"load_model", "predict", "ResultCache", "Settings"} <= set(interp.__all__)
    stub = ast.parse((ROOT / "interp" / "__init__.pyi").read_text())  # its __all__, for type checkers: the same names
    listed = next(ast.literal_eval(n.value) for n in stub.body
                  if isinstance(n, ast.Assign) and n.targets[0].id == "__all__")  # fmt: skip
    assert sorted(listed) == sorted(interp.__all__)


def test_devices_and_weights_as_people_write_them(tmp_path):
    """'CPU' and 'RANDOM' were refused; 'mps' on a build without it raised torch's RuntimeError; an address, an
    empty name, a folder and a word such as 'pretrained' were each "no weights file at …" (the address with one of
    its slashes gone)."""
    from interp.config import resolve_device

    assert resolve_device(" CPU") == torch.device("cpu")
    if not torch.backends.mps.is_available():
        with pytest.raises(ValueError, match="'mps' is not usable in this PyTorch build or on this machine"):
            resolve_device("mps")
    with pytest.raises(ValueError, match="device 'meta' holds no values"):
        resolve_device("meta")
    assert load_model("shapes_cnn", "Random").weights.kind == "random"
    for weights, said in (("", "no weights were named; give a weights file's path, or one of hub, bundled and random"),
                          ("https://example.org/w.pth", "not from an address; download https://example.org/w.pth "
                                                        "first"),
                          ("pretrained", "there is no weights file at pretrained, and weights are a file's path or "
                                         "one of hub, bundled, random."),
                          (str(tmp_path), "is a folder; give the weights file inside it"),
                          ("w" * 3000 + ".pth", "cannot be a weights file here (File name too long).")):  # fmt: skip
        with pytest.raises(WeightsMismatchError, match=re.escape(said)):
            load_model("shapes_cnn", weights)
