"""The image loader: every bad file gets one sentence; every odd but valid file becomes the right RGB picture."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from interp import BadImageError, image_from_array, load_image
from interp.images import image_digest
from tests.corpus import bad_files, odd_files


@pytest.mark.parametrize("case", sorted(bad_files()))
def test_bad_files_raise_one_sentence(case):
    name, data = bad_files()[case]
    with pytest.raises(BadImageError) as info:
        load_image(data, name=name)
    message = str(info.value)
    assert name in message or "the image" in message
    assert "\n" not in message and message.endswith(".")
    assert "Traceback" not in message


def test_bad_input_corpus_is_large_enough():
    assert len(bad_files()) >= 15


@pytest.mark.parametrize("case", sorted(odd_files()))
def test_odd_files_load_as_rgb(case):
    name, data = odd_files()[case]
    loaded = load_image(data, name=name)
    assert loaded.image.mode == "RGB"
    assert min(loaded.size) >= 1 and max(loaded.size) <= 2048
    assert len(loaded.digest) == 64


def test_load_rgb_is_load_image_without_the_digest():
    """The scan's loader: the same picture for every odd file, the same sentence for every bad one."""
    from interp.images import load_rgb

    for name, data in odd_files().values():
        assert np.array_equal(np.asarray(load_rgb(data, name=name)), np.asarray(load_image(data, name=name).image))
    for name, data in bad_files().values():
        with pytest.raises(BadImageError) as ours:
            load_rgb(data, name=name)
        with pytest.raises(BadImageError) as theirs:
            load_image(data, name=name)
        assert str(ours.value) == str(theirs.value)


def _pixels(case: str) -> np.ndarray:
    name, data = odd_files()[case]
    return np.asarray(load_image(data, name=name).image).astype(int)


def test_exif_orientation_is_applied():
    loaded = load_image(odd_files()["exif_rotated"][1])
    assert loaded.original_size == (80, 40)
    assert loaded.size == (40, 80)
    assert any("EXIF" in n for n in loaded.notes)


def test_transparency_is_composited_on_white():
    px = _pixels("rgba")
    assert tuple(px[16, 4]) == (255, 0, 0)  # opaque red stays red
    assert tuple(px[16, 28]) == (255, 255, 255)  # transparent becomes white, not black
    assert tuple(_pixels("palette_transparent")[0, 0]) == (255, 255, 255)


def test_high_bit_depth_keeps_its_gradient():
    for case in ("I16", "I32_12bit", "float"):
        row = _pixels(case)[0, :, 0]
        assert row[0] <= 5 and row[-1] >= 250, case  # full range used, not saturated to white
        assert np.all(np.diff(row) >= 0), case


def test_cmyk_keeps_its_colours():
    px = _pixels("cmyk_jpeg")
    assert px[40, 5, 0] > 150 and px[40, 5, 2] < 100  # red half
    assert px[40, 60, 2] > 150 and px[40, 60, 0] < 100  # blue half


def test_first_frame_of_animation():
    loaded = load_image(odd_files()["animated_gif"][1])
    r, g, b = np.asarray(loaded.image)[16, 16]
    assert r > 200 and g < 50 and b < 50
    assert any("first of its 3 frames" in n for n in loaded.notes)


def test_large_photo_is_downscaled_with_a_note():
    loaded = load_image(odd_files()["large_jpeg"][1])
    assert max(loaded.size) == 2048 and loaded.original_size == (6000, 4000)
    assert abs(loaded.size[0] / loaded.size[1] - 1.5) < 0.01
    assert any("downscaled" in n for n in loaded.notes)


def test_paths_and_missing_files(tmp_path):
    path = tmp_path / "ok.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(path)
    assert load_image(path).name == "ok.png"
    with pytest.raises(BadImageError, match="no file at"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(BadImageError, match="folder"):
        load_image(tmp_path)


def test_size_limit_is_checked_before_reading(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(b"\0" * 2048)
    with pytest.raises(BadImageError, match="over the"):
        load_image(path, max_bytes=1024)


def test_a_file_that_grows_after_its_size_was_read_is_read_whole_and_still_bounded(tmp_path, monkeypatch):
    """The reader asks for as many bytes as the file had when it looked, plus one; a file that grew in between
    (stat reports less than is there) is read to its end, or to the limit and refused."""
    import os
    from pathlib import Path

    from interp.images import read_bytes

    path = tmp_path / "growing.png"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(path)
    data = path.read_bytes()
    real_stat = Path.stat

    def smaller(self, *args, **kwargs):
        info = real_stat(self, *args, **kwargs)
        if self.name != path.name:
            return info
        fields = list(info)
        fields[6] = 10  # st_size as it was "before" the file grew
        return os.stat_result(fields)

    monkeypatch.setattr(Path, "stat", smaller)
    assert read_bytes(path) == data
    assert load_image(path).size == (64, 64)
    with pytest.raises(BadImageError, match="over the"):
        load_image(path, max_bytes=len(data) - 1)
    assert len(read_bytes(path, max_bytes=len(data) - 1)) == len(data)  # read to the limit, and one more byte


def test_reading_a_small_file_does_not_allocate_the_limit(tmp_path):
    """A scan reads thousands of photos of tens of kB each: asking Python for the 25 MB limit at once allocated
    that much for every file (3× slower reads)."""
    import tracemalloc

    from interp.images import DEFAULT_MAX_BYTES, read_bytes

    path = tmp_path / "small.png"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(path)
    tracemalloc.start()
    try:
        data = read_bytes(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert data == path.read_bytes()
    assert peak < 1_000_000 < DEFAULT_MAX_BYTES


def test_digest_is_content_addressed():
    a = Image.new("RGB", (8, 8), (1, 2, 3))
    png, jpeg_like = load_image(_encode(a, "PNG")), load_image(_encode(a, "BMP"))
    assert png.digest == jpeg_like.digest == image_digest(a)
    assert image_digest(Image.new("RGB", (8, 8), (1, 2, 4))) != png.digest


def test_image_from_array_accepts_float_and_grey():
    grey = image_from_array(np.linspace(0, 1, 64).reshape(8, 8), "ramp")
    assert grey.image.mode == "RGB" and np.asarray(grey.image)[-1, -1, 0] == 255


def test_image_from_array_keeps_integer_values_and_scales_wider_ranges():
    ramp = np.arange(64).reshape(8, 8)
    for dtype in (np.int16, np.int64, np.uint16):  # values up to 255: the same picture as uint8
        assert np.array_equal(np.asarray(image_from_array(ramp.astype(dtype), "r").image)[..., 0], ramp)
    wide = np.asarray(image_from_array((ramp * 1000).astype(np.uint16), "r16").image)[..., 0]
    assert wide[0, 0] == 0 and wide[-1, -1] == round(63000 / 65535 * 255)  # a 16-bit range, as for 16-bit files
    assert np.asarray(image_from_array(ramp > 31, "mask").image)[..., 0].tolist() == ((ramp > 31) * 255).tolist()
    colour = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(image_from_array(colour[..., :1], "one").image)[..., 1], colour[..., 0])


@pytest.mark.parametrize(
    "array, said",
    [
        (np.full((8, 8, 3), 200.0), "holds floats from 200 to 200; float pixels go from 0 to 1"),  # was white
        (np.full((8, 8), np.nan), "holds NaN or infinite values"),
        (np.zeros((3, 8, 9), np.uint8), "shape (3, 8, 9), not an image"),
        (np.zeros((3, 8, 9), np.uint8), "it looks channels first: pass array.transpose(1, 2, 0)"),
        (np.zeros((1, 8, 8, 3), np.uint8), "shape (1, 8, 8, 3), not an image"),
        (np.zeros((0, 8, 3), np.uint8), "has no pixels"),
        (np.zeros((8, 8, 3), np.complex64), "holds complex64 values"),
        (np.zeros((2, 100), np.uint8), "one side is over 32 times the other"),
    ],
)
def test_an_array_that_is_not_an_image_is_refused_in_a_sentence(array, said):
    with pytest.raises(BadImageError, match=re.escape(said)):
        image_from_array(array, "mine")


def test_a_torch_tensor_is_an_array_too_with_a_gradient_or_in_bfloat16():
    """A tensor that requires grad raised torch's "Can't call numpy() on Tensor that requires grad", a bfloat16 one
    "Got unsupported ScalarType BFloat16" (a CUDA one fails the same way); each gives the picture NumPy's would."""
    pixels = np.random.default_rng(0).random((8, 9, 3), dtype=np.float32)
    want = np.asarray(image_from_array(pixels, "numpy").image)
    for tensor in (torch.from_numpy(pixels).requires_grad_(), torch.from_numpy(pixels).to(torch.bfloat16)):
        got = np.asarray(image_from_array(tensor, "tensor").image).astype(int)
        assert np.abs(got - want).max() <= (0 if tensor.dtype == torch.float32 else 2)  # bfloat16: 8 bits of mantissa
    assert load_image(torch.from_numpy(pixels)).digest == image_from_array(pixels, "numpy").digest  # as load_image's
    ramp = torch.arange(64).reshape(8, 8)  # integers keep their values, as NumPy's do
    assert np.array_equal(np.asarray(image_from_array(ramp, "r").image)[..., 0], ramp.numpy())
    with pytest.raises(BadImageError, match=re.escape("it looks channels first: pass tensor.permute(1, 2, 0)")):
        image_from_array(torch.zeros(3, 8, 9), "chw")


def test_a_large_array_is_downscaled_as_a_file_is():
    big = image_from_array(np.zeros((2000, 5000, 3), np.uint8), "wide", max_side=1000)
    assert big.image.size == (1000, 400) and big.original_size == (5000, 2000)
    assert big.notes == ("downscaled from 5000×2000 to 1000×400",)


def _encode(im: Image.Image, fmt: str) -> bytes:
    import io

    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def test_an_image_on_disk_keeps_what_loading_told_and_decodes_the_same_picture_again(tmp_path):
    import pickle

    from interp.images import ImageOnDisk

    rng = np.random.default_rng(0)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (375, 500), np.uint8), "L").save(path)  # grey: converted, with a note
    loaded = load_image(path, name="set/photo.png", max_side=400)
    on_disk = ImageOnDisk.read(path, name="set/photo.png", max_side=400)
    for field in ("name", "digest", "size", "original_size", "original_mode", "notes"):
        assert getattr(on_disk, field) == getattr(loaded, field), field
    assert on_disk.notes and on_disk.size == (400, 300)  # downscaled as load_image does, and said so
    assert image_digest(on_disk.image) == loaded.digest
    assert np.array_equal(np.asarray(on_disk.image), np.asarray(loaded.image))
    # it holds no picture: pickled, it is a few hundred bytes where the picture is 360,000
    assert len(pickle.dumps(on_disk)) < 2000 < len(loaded.image.tobytes())


def test_an_image_on_disk_that_changed_or_went_says_so_when_its_picture_is_wanted(tmp_path):
    from interp.images import ImageOnDisk

    path = tmp_path / "a.png"
    Image.new("RGB", (32, 32), (10, 20, 30)).save(path)
    on_disk = ImageOnDisk.read(path, name="a.png")
    Image.new("RGB", (32, 32), (10, 20, 31)).save(path)
    with pytest.raises(BadImageError, match=r"^a\.png changed on disk since it was listed; run again"):
        on_disk.image
    path.unlink()
    with pytest.raises(BadImageError, match=r"^a\.png can no longer be read: it was changed, moved or deleted") as info:
        on_disk.image
    assert str(tmp_path) not in str(info.value)  # a visitor on a shared server is not shown the server's paths


@pytest.mark.parametrize("case", sorted(odd_files()))
def test_a_pillow_image_loads_as_its_file_does(case):
    """``load_image(Image.open(f))`` gives what ``load_image(f)`` gives: the picture, its sizes and notes (EXIF
    rotation, frames, downscaling, transparency)."""
    import io

    name, data = odd_files()[case]
    from_file = load_image(data, name=name)
    from_pillow = load_image(Image.open(io.BytesIO(data)), name=name)
    assert np.array_equal(np.asarray(from_pillow.image), np.asarray(from_file.image))
    assert from_pillow.digest == from_file.digest and from_pillow.notes == from_file.notes
    assert (from_pillow.original_size, from_pillow.original_mode) == (from_file.original_size, from_file.original_mode)


def test_pictures_in_memory_are_taken_as_copies_and_anything_else_is_a_sentence():
    import io

    pixels = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    from_array = load_image(pixels)
    assert from_array.digest == image_from_array(pixels, "the array").digest and from_array.name == "the array"
    picture = Image.fromarray(pixels)
    from_pillow = load_image(picture, name="mine")
    assert from_pillow.name == "mine" and from_pillow.digest == from_array.digest
    pixels[:] = 0  # the caller's array and picture change after: ours do not
    picture.paste((255, 0, 0), (0, 0, 60, 40))
    assert image_digest(from_array.image) == from_array.digest and image_digest(from_pillow.image) == from_array.digest
    for case in ("truncated_png", "decompression_bomb"):
        name, data = bad_files()[case]
        with pytest.raises(BadImageError) as info:
            load_image(Image.open(io.BytesIO(data)), name=name)
        assert name in str(info.value)
    for wrong in (3, [1, 2], None):
        with pytest.raises(BadImageError, match="load_image takes a path"):
            load_image(wrong)


def test_the_api_takes_images_as_load_image_takes_them(tmp_path):
    """predict, attribute, feature_maps and activations give for a path, an array or a Pillow image what they give
    for the loaded image (a path or an array raised AttributeError in predict and activations); anything else is the
    loader's sentence."""
    import interp
    from interp.attribution import attribute
    from interp.concepts import activations
    from interp.evaluation import cascading_randomisation, deletion_insertion, random_floor
    from interp.features import Objective, feature_maps, spectrum

    model = interp.load_model("shapes_cnn")
    loaded = interp.load_sample("shapes_star")
    path = tmp_path / "star.png"
    loaded.image.save(path)
    same = [str(path), path, np.asarray(loaded.image), loaded.image, path.read_bytes()]
    want = interp.predict(model, loaded).scores
    saliency = attribute(model, loaded, "saliency", target=3).raw
    maps = feature_maps(model, loaded, "layer2", top_k=4)
    for given in same:
        assert interp.predict(model, given).scores == want, type(given)
        assert np.allclose(attribute(model, given, "saliency", target=3).raw, saliency), type(given)
        got = feature_maps(model, given, "layer2", top_k=4)
        assert np.array_equal(got.channels, maps.channels) and np.allclose(got.maps, maps.maps), type(given)
    x = model.preprocess(loaded.image)
    curves = deletion_insertion(model, x, saliency.sum(0), 3, steps=4)
    floor = random_floor(model, x, 3, steps=4, maps=2)
    for given in (loaded, loaded.image, str(path)):  # a LoadedImage or a PIL image raised AttributeError
        assert torch.equal(model.preprocess(given), x), type(given)
        got = deletion_insertion(model, given, saliency.sum(0), 3, steps=4)
        assert np.array_equal(got.deletion, curves.deletion) and np.array_equal(got.insertion, curves.insertion)
        got = random_floor(model, given, 3, steps=4, maps=2)
        assert (got.deletion_auc, got.insertion_auc) == (floor.deletion_auc, floor.insertion_auc), type(given)
    steps = [(t.layer, t.spearman) for t in cascading_randomisation(model, x, "saliency", 3).steps]
    assert [(t.layer, t.spearman) for t in cascading_randomisation(model, loaded, "saliency", 3).steps] == steps
    unit = Objective("channel", 1, "layer2")
    ranked = spectrum(model, unit, [loaded, interp.load_sample("shapes_marked")], per_column=1)
    given = spectrum(model, unit, [loaded.image, np.asarray(interp.load_sample("shapes_marked").image)], per_column=1)
    assert np.array_equal(given.values, ranked.values)  # a list of PIL images raised AttributeError

    rows = activations(model, "layer2", [loaded])
    assert np.allclose(activations(model, "layer2", same), np.repeat(rows, len(same), axis=0), atol=1e-6)
    with pytest.raises(BadImageError, match="no file"):
        activations(model, "layer2", [loaded, str(tmp_path / "gone.png")])
    with pytest.raises(interp.InterpError, match="at least one image"):  # numpy's "need at least one array to stack"
        activations(model, "layer2", [])
    for call in (lambda: interp.predict(model, 3), lambda: attribute(model, [1], "saliency", target=3),
                 lambda: feature_maps(model, None, "layer2")):  # fmt: skip
        with pytest.raises(BadImageError, match="load_image takes a path"):
            call()


def test_attention_capture_takes_an_image_as_well_as_a_preprocessed_tensor():
    import interp
    from interp.attention import capture

    vit = interp.load_model("shapes_vit")
    loaded = interp.load_sample("shapes_star")
    want = capture(vit, vit.preprocess(loaded.image)[None], target=3)
    for given in (loaded, loaded.image, np.asarray(loaded.image), vit.preprocess(loaded.image)[None].numpy()):
        got = capture(vit, given, target=3)  # a PIL image raised "Could not infer dtype of Image"
        assert np.array_equal(got.attn, want.attn) and np.array_equal(got.logits, want.logits), type(given)
