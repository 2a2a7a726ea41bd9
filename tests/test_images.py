"""The image loader: every bad file gets one sentence; every odd but valid file becomes the right RGB picture."""

from __future__ import annotations

import numpy as np
import pytest
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


def test_digest_is_content_addressed():
    a = Image.new("RGB", (8, 8), (1, 2, 3))
    png, jpeg_like = load_image(_encode(a, "PNG")), load_image(_encode(a, "BMP"))
    assert png.digest == jpeg_like.digest == image_digest(a)
    assert image_digest(Image.new("RGB", (8, 8), (1, 2, 4))) != png.digest


def test_image_from_array_accepts_float_and_grey():
    grey = image_from_array(np.linspace(0, 1, 64).reshape(8, 8), "ramp")
    assert grey.image.mode == "RGB" and np.asarray(grey.image)[-1, -1, 0] == 255


def _encode(im: Image.Image, fmt: str) -> bytes:
    import io

    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()
