"""Input a careless user or an attacker hands a shared server: each ends in one sentence, and nothing is lost.

Weights that claim more than they hold, weights full of NaN, compressed or pickled checkpoints; images that take
gigabytes to decode, devices and pipes named as images; zips with names the disk refuses or members far larger than
the zip; damaged scan parts, scan metadata and cache entries; settings that would ask for gigabytes.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import save as save_safetensors

import interp
from interp.datasets import DatasetError
from interp.errors import BadImageError, WeightsMismatchError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cnn_state() -> dict[str, torch.Tensor]:
    model = interp.load_model("shapes_cnn")
    with model.shared() as net:
        return {k: v.clone().contiguous() for k, v in net.state_dict().items()}


# ---------------------------------------------------------------------------------------------------------- weights


def test_a_classifier_claiming_a_billion_outputs_is_refused_before_anything_is_allocated(cnn_state, monkeypatch):
    from interp.models import loading

    state = {k: v for k, v in cnn_state.items() if k != "fc.bias"}
    state["fc.weight"] = torch.empty(10**9, 0)  # a billion rows, no bytes behind them
    with pytest.raises(WeightsMismatchError, match="1,000,000,000 outputs"):
        interp.load_model("shapes_cnn", save_safetensors(state), weights_name="huge.safetensors")

    built: list[int | None] = []
    real_create = loading._create
    monkeypatch.setattr(loading, "_create", lambda spec, num_classes=None: built.append(num_classes) or real_create(spec, num_classes))  # noqa: E501
    state["fc.weight"] = torch.empty(50_000, 0)  # under the class limit: the shapes decide, on the meta device
    with pytest.raises(WeightsMismatchError, match="does not fit"):
        interp.load_model("shapes_cnn", save_safetensors(state), weights_name="wide.safetensors")
    assert built == [50_000]  # the skeleton on the meta device, refused before a real model was built


def test_weights_holding_nan_or_inf_are_refused(cnn_state):
    state = dict(cnn_state)
    state["fc.weight"] = state["fc.weight"].clone()
    state["fc.weight"][0, 0] = float("nan")
    with pytest.raises(WeightsMismatchError, match="NaN or infinite values in 1 tensor .*fc.weight"):
        interp.load_model("shapes_cnn", save_safetensors(state), weights_name="nan.safetensors")


def test_a_checkpoint_with_compressed_records_is_refused_before_unpacking(cnn_state, tmp_path):
    plain = tmp_path / "plain.pth"
    torch.save(cnn_state, plain)
    packed = io.BytesIO()
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    with pytest.raises(WeightsMismatchError, match="compressed records"):
        interp.load_model("shapes_cnn", packed.getvalue(), weights_name="packed.pth")
    assert interp.load_model("shapes_cnn", plain).weights.kind == "file"  # what torch.save writes still loads


class _RunsACommand:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_a_pickle_that_runs_a_command_is_refused_for_what_it_is(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(2), "x": _RunsACommand()}, path)
    with pytest.raises(WeightsMismatchError, match="Python objects besides tensors"):
        interp.load_model("shapes_cnn", path)


# ----------------------------------------------------------------------------------------------------------- images

_PEAK = """
import sys
from interp.images import load_image
def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
before = hwm()
im = load_image(sys.argv[1])
print(round(hwm() - before), im.size)
"""


@pytest.mark.parametrize("kind", ["png16", "tiff_int32"])
def test_decoding_a_huge_high_depth_image_stays_within_its_decoded_size(kind, tmp_path):
    """A 9,400² 16-bit PNG took 3.0 GB to decode and convert, an int32 TIFF 3.4 GB (measured before the fix)."""
    n = 9400
    rows = np.arange(n, dtype=np.int64)[:, None]
    path = tmp_path / ("big.png" if kind == "png16" else "big.tif")
    if kind == "png16":
        Image.fromarray(np.broadcast_to((rows * 7 % 65536).astype(np.uint16), (n, n)).copy()).save(path, compress_level=1)
        decoded_mb = n * n * 2 / 2**20  # 169 MB
    else:
        Image.fromarray(np.broadcast_to((rows * 100_000).astype(np.int32), (n, n)).copy()).save(path, compression="tiff_deflate")  # noqa: E501
        decoded_mb = n * n * 4 / 2**20  # 337 MB
    out = subprocess.run([sys.executable, "-c", _PEAK, str(path)], capture_output=True, text=True, timeout=120,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert out.returncode == 0, out.stderr
    growth = int(out.stdout.split()[0])
    assert growth < decoded_mb * 1.5 + 64, f"{kind}: the process grew {growth} MB for {decoded_mb:.0f} MB of pixels"


def test_devices_and_pipes_named_as_images_are_refused_at_once(tmp_path):
    with pytest.raises(BadImageError, match="not a regular file"):
        interp.load_image("/dev/zero")
    fifo = tmp_path / "photo.png"
    os.mkfifo(fifo)
    with pytest.raises(BadImageError, match="not a regular file"):
        interp.load_image(fifo)  # would block for ever on open() if it were read


# ------------------------------------------------------------------------------------------------------------- zips


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_zip_members_the_disk_refuses_are_skipped_and_listed(tmp_path):
    from interp.datasets import extract_zip

    data = _zip({
        "cats/a.png": _png(),
        "cats/b.png": _png(),  # a file ...
        "cats/b.png/c.png": _png(),  # ... and a folder of the same name
        "dogs/" + "x" * 300 + ".png": _png(),  # a name longer than the file system allows
        "/".join(["deep"] * 40) + "/d.png": _png(),  # nested far too deep
        "dogs/e.png": _png(),
    })  # fmt: skip
    folder, skipped = extract_zip(data, tmp_path / "uploads", "odd.zip")
    kept = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.png") if p.is_file())
    assert kept == ["cats/a.png", "cats/b.png/c.png", "dogs/e.png"]
    assert len(skipped) == 3 and "cats/b.png" in skipped


def test_a_small_zip_holding_a_huge_member_is_never_read_whole(tmp_path):
    from interp.datasets import extract_zip
    from interp.datasets.zips import MAX_MEMBER_BYTES

    data = _zip({"big.png": b"\0" * (MAX_MEMBER_BYTES + 2**20), "ok.png": _png()}, zipfile.ZIP_DEFLATED)
    assert len(data) < 200_000
    folder, skipped = extract_zip(data, tmp_path / "uploads", "bomb.zip")
    assert skipped == ["big.png"] and [p.name for p in folder.rglob("*.png")] == ["ok.png"]


def test_the_upload_folder_cap_holds_against_recent_uploads(tmp_path, monkeypatch):
    from interp.datasets import DatasetError, extract_zip, readers

    monkeypatch.setattr(readers, "UPLOADS_KEEP_BYTES", 200_000)
    first = _zip({f"a/{i}.png": os.urandom(40_000) + _png() for i in range(3)})  # ~120 KB, kept: used just now
    extract_zip(first, tmp_path / "up", "first.zip")
    second = _zip({f"b/{i}.png": os.urandom(40_000) + _png() for i in range(3)})
    folder, skipped = extract_zip(second, tmp_path / "up", "second.zip")
    assert len(list(folder.rglob("*.png"))) == 1 and len(skipped) == 2  # only what fits beside the first
    total = sum(f.stat().st_size for f in (tmp_path / "up").rglob("*") if f.is_file())
    assert total <= 200_000
    monkeypatch.setattr(readers, "UPLOADS_KEEP_BYTES", 150_000)  # the server's setting lowered: nothing fits
    with pytest.raises(DatasetError, match="space for unpacked zips"):
        extract_zip(_zip({"c/0.png": os.urandom(40_000) + _png()}), tmp_path / "up", "third.zip")


def test_the_concepts_page_reads_the_same_zips_without_an_exception():
    from dashboard.concept_library_ui import read_uploads

    class Upload:
        def __init__(self, name, data):
            self.name, self._data = name, data

        def getvalue(self):
            return self._data

    data = _zip({"x/a.png": _png(), "x/a.png/b.png": _png(), "y/" + "z" * 300 + ".png": _png(),
                 "big.png": b"\0" * (30 * 2**20)}, zipfile.ZIP_DEFLATED)  # fmt: skip
    images, notes = read_uploads([Upload("set.zip", data), Upload("junk.zip", b"not a zip")])
    assert [im.name for im in images] == ["x/a.png/b.png"]
    assert notes and "Skipped 4 files" in notes[0]


def test_a_concept_upload_keeps_set_sized_pictures_and_says_what_it_left_out():
    """A zip of 300 photos held 1.6 GB of pixels (a 3 GB process) where the set it makes is stored at 448 px; images
    past the limit were listed as "not readable images", and loose files had no limit at all."""
    from dashboard.concept_library_ui import MAX_UPLOAD_IMAGES, read_uploads
    from interp.concepts.library import STORED_SIDE

    class Upload:
        def __init__(self, name, data):
            self.name, self._data = name, data

        def getvalue(self):
            return self._data

    big = io.BytesIO()
    Image.new("RGB", (1600, 1200), (30, 120, 200)).save(big, "JPEG")
    images, notes = read_uploads([Upload("photo.jpg", big.getvalue()), Upload("notes.txt", b"hi")])
    assert images[0].image.size == (STORED_SIDE, STORED_SIDE * 3 // 4)
    assert notes == ["Skipped 1 file that is not a readable image: notes.txt."]

    data = _zip({f"c/{i}.png": _png() for i in range(MAX_UPLOAD_IMAGES - 1)} | {"c/notes.txt": b"hi"})
    images, notes = read_uploads([Upload("c.png", b"broken"), Upload("set.zip", data), Upload("a.png", _png()),
                                  Upload("b.png", _png())])  # fmt: skip
    assert len(images) == MAX_UPLOAD_IMAGES and images[-1].name == "a.png"
    assert notes == ["Skipped 2 files that are not readable images: c.png, c/notes.txt.",
                     f"Kept the first {MAX_UPLOAD_IMAGES} images and left out 1 more: a set made here holds at most "
                     f"{MAX_UPLOAD_IMAGES}."]  # fmt: skip


# ------------------------------------------------------------------------------------------------------------ scans


@pytest.fixture()
def small_world(tmp_path):
    from interp.datasets import read_folder
    from interp.shapes.export import write_image_folder

    write_image_folder(tmp_path / "world", 40, seed=5, split="test", masks=True)
    return read_folder(tmp_path / "world")


def test_masks_beside_labels_csv_are_not_a_class(small_world):
    assert "masks" not in small_world.class_names and len(small_world) == 40


def test_a_damaged_part_is_moved_aside_counted_and_rescanned(small_world, tmp_path):
    from interp.datasets import damaged_note, load_scan, scan, scanner

    model = interp.load_model("shapes_cnn")
    out = tmp_path / "scan"
    monkey_flush = scanner.FLUSH_ROWS, scanner.FLUSH_MIN_SECONDS
    scanner.FLUSH_ROWS, scanner.FLUSH_MIN_SECONDS = 8, 0.0  # several parts
    try:
        scan(model, small_world, out, batch_size=8, workers=0)
    finally:
        scanner.FLUSH_ROWS, scanner.FLUSH_MIN_SECONDS = monkey_flush
    parts = sorted(out.glob("part-*.parquet"))
    assert len(parts) >= 3
    parts[1].write_bytes(parts[1].read_bytes()[:100])  # a copy cut short
    parts[2].write_bytes(b"")  # a disk that filled up
    meta, rows = load_scan(out)
    assert [d["part"] for d in meta["damaged_parts"]] == [parts[1].name, parts[2].name]
    assert all(d["rows"] == 8 for d in meta["damaged_parts"])
    assert len(rows) == 40 - 16 and "(16 rows)" in damaged_note(meta["damaged_parts"])
    again = scan(model, small_world, out, batch_size=8, workers=0)
    assert again.written == 16 and again.complete
    _, rows = load_scan(out)
    assert len(rows) == 40 and rows["id"].is_unique


def test_scan_settings_that_are_not_counts_are_refused_before_any_image_is_read(small_world, tmp_path):
    """``limit=-1`` scanned all but the last image, ``limit=True`` one image; 1.5 failed in a slice or range(); an
    output path that is a file raised FileExistsError; ``failures`` took the class "cat" and found nothing."""
    from interp.datasets import failures, load_scan, scan, scan_ray
    from interp.errors import BadSettingError

    model = interp.load_model("shapes_cnn")
    for settings, said in ((dict(limit=-1), "limit must be at least 0, got -1."),
                           (dict(limit=True), "limit must be a whole number, got True."),
                           (dict(limit=1.5), "limit must be a whole number, got 1.5."),
                           (dict(batch_size=2.5), "batch size must be a whole number, got 2.5."),
                           (dict(batch_size=0), "batch size must be at least 1, got 0.")):  # fmt: skip
        for engine in (scan, scan_ray):
            with pytest.raises(BadSettingError, match=re.escape(said)):
                engine(model, small_world, tmp_path / "scan", **settings)
    with pytest.raises(BadSettingError, match="workers must be 0"):
        scan(model, small_world, tmp_path / "scan", workers=1.5)
    with pytest.raises(BadSettingError, match="actors must be at least 1, got 0."):
        scan_ray(model, small_world, tmp_path / "scan", actors=0)
    assert not (tmp_path / "scan").exists()  # refused before the folder was made
    (tmp_path / "a file").write_text("notes")
    with pytest.raises(DatasetError, match="a file; the scan is written to a folder"):
        scan(model, small_world, tmp_path / "a file")
    summary = scan(model, small_world, tmp_path / "scan", limit=np.int64(5))
    assert summary.rows == 5
    rows = load_scan(tmp_path / "scan")[1]
    for settings, said in ((dict(true_class="cat"), "the true class must be a class index"),
                           (dict(pred_class=1.5), "the predicted class must be a class index"),
                           (dict(min_confidence="0.5"), "minimum confidence must be a number from 0 to 1, got '0.5'."),
                           (dict(min_confidence=float("nan")), "from 0 to 1, got nan.")):  # fmt: skip
        with pytest.raises(BadSettingError, match=re.escape(said)):
            failures(rows, **settings)
    assert len(failures(rows, true_class=np.int64(0))) <= 5


def test_a_damaged_scan_json_names_the_file_and_what_to_do(small_world, tmp_path):
    from interp.datasets import DatasetError, load_scan, scan

    model = interp.load_model("shapes_cnn")
    out = tmp_path / "scan"
    scan(model, small_world, out, batch_size=8, workers=0, limit=8)
    (out / "scan.json").write_text((out / "scan.json").read_text() + "\n}\n")
    for call in (lambda: load_scan(out), lambda: scan(model, small_world, out, workers=0)):
        with pytest.raises(DatasetError, match=r"scan\.json is damaged .* delete scan\.json"):
            call()


def test_two_scans_into_one_folder_never_write_at_once(small_world, tmp_path):
    from interp.datasets import ScanBusy, load_scan, scan, scan_lock

    model = interp.load_model("shapes_cnn")
    out = tmp_path / "scan"
    out.mkdir()
    with scan_lock(out):  # as another process or session holding it
        with pytest.raises(ScanBusy, match="another scan is writing"):
            scan(model, small_world, out, workers=0)
    results, errors = [], []

    def run():
        try:
            results.append(scan(model, small_world, out, batch_size=4, workers=0))
        except ScanBusy as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    _, rows = load_scan(out)
    assert len(rows) == 40 and rows["id"].is_unique
    assert sum(r.written for r in results) == 40  # no image was scored twice


def test_the_cli_reports_a_damaged_part_and_goes_on(small_world, tmp_path):
    from interp.datasets import scan

    model = interp.load_model("shapes_cnn")
    scan(model, small_world, tmp_path / "scan", batch_size=8, workers=0)
    part = next((tmp_path / "scan").glob("part-*.parquet"))
    part.write_bytes(part.read_bytes()[:50])
    out = subprocess.run([sys.executable, "-m", "interp", "failures", "--scan", str(tmp_path / "scan")],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "damaged part" in out.stderr and "Traceback" not in out.stderr


# ------------------------------------------------------------------------------------------------------------ cache


def test_a_damaged_cache_entry_is_dropped_and_recomputed(tmp_path):
    from interp.cache import ResultCache

    cache = ResultCache(tmp_path / "c")
    cache.put("k", {"a": np.arange(100_000)}, {"m": 1})  # large: diskcache keeps it in a file of its own
    files = [f for f in (tmp_path / "c").rglob("*.val")]
    assert files
    files[0].write_bytes(files[0].read_bytes()[:1000])
    assert cache.get("k") is None
    assert "k" not in cache
    result, hit = cache.get_or_compute("k", lambda: ({"a": np.arange(3)}, {}))
    assert not hit and list(result.arrays["a"]) == [0, 1, 2]
    cache.put("small", {"a": np.arange(3)}, {})
    cache._store.set("small", b"PK\x03\x04 bit-flipped")  # a value that decodes to nothing
    assert cache.get("small") is None


def test_a_damaged_cache_index_is_rebuilt(tmp_path):
    from interp.cache import ResultCache

    cache = ResultCache(tmp_path / "c")
    cache.put("k", {"a": np.arange(3)}, {})
    cache.close()
    (tmp_path / "c" / "cache.db").write_bytes(b"this is not a database" * 100)
    again = ResultCache(tmp_path / "c")
    assert again.get("k") is None
    again.put("k", {"a": np.arange(3)}, {})
    assert list(again.get("k").arrays["a"]) == [0, 1, 2]


@pytest.mark.parametrize(
    "failure",
    [sqlite3.OperationalError("database or disk is full"), OSError(errno.ENOSPC, "No space left on device"),
     sqlite3.OperationalError("attempt to write a readonly database")],
)  # fmt: skip
def test_a_full_or_read_only_disk_keeps_what_is_stored_and_still_returns_new_results(tmp_path, monkeypatch, failure):
    """Only a damaged index is started afresh: a disk that is full (or made read-only) loses no stored result, and
    a new one is handed to whoever asked for it, only not kept."""
    from interp.cache import ResultCache

    cache = ResultCache(tmp_path / "c")
    cache.put("kept", {"a": np.arange(3)}, {})

    def refuse(*args, **kwargs):
        raise failure

    monkeypatch.setattr(cache._store, "set", refuse)
    cache.put("new", {"a": np.arange(4)}, {})  # no exception
    result, hit = cache.get_or_compute("new", lambda: ({"a": np.arange(5)}, {"n": 5}))
    assert not hit and list(result.arrays["a"]) == [0, 1, 2, 3, 4] and result.meta == {"n": 5}
    assert "new" not in cache and list(cache.get("kept").arrays["a"]) == [0, 1, 2]

    monkeypatch.setattr(cache._store, "get", lambda *a, **k: (_ for _ in ()).throw(sqlite3.OperationalError("locked")))
    assert cache.get("kept") is None  # a busy index is a miss, not a reason to empty the cache
    monkeypatch.undo()
    assert list(cache.get("kept").arrays["a"]) == [0, 1, 2]


# --------------------------------------------------------------------------------------------------------- settings


def test_integrated_gradients_steps_are_bounded_not_allocated():
    model = interp.load_model("shapes_cnn")
    image = interp.load_sample("chelsea")
    for steps in (0, 1, 20_000):
        with pytest.raises(ValueError, match="steps takes a whole number from 2 to 1024"):
            interp.attribution.attribute(model, image, "integrated_gradients", target=0, steps=steps)


def test_class_names_are_shown_as_text_not_markdown():
    from dashboard.charts import md, plot_text

    assert md("**cat** [x](http://e.vil) :red[y] $z$") == r"\*\*cat\*\* \[x\]\(http\://e\.vil\) \:red\[y\] \$z\$"
    assert plot_text("<a href='x'>dog</a>") == "&lt;a href='x'&gt;dog&lt;/a&gt;"


def test_every_sentence_the_engine_raises_for_bad_input_is_an_interp_error():
    """``interp.errors`` promises that input a person can fix raises an :class:`InterpError` and anything else is a
    bug; 56 checks raised plain ``ValueError``, which the pages' ``attempt`` reads as a bug ("Something went wrong…
    the details are in the server log") instead of showing the sentence, and which ``except InterpError`` in a user's
    script missed. They raise :class:`BadSettingError` (an ``InterpError`` and a ``ValueError``, as before). Left
    as ``ValueError``: a second registration of a method or a dataset reader (our bug), and two checks caught where
    they are raised."""
    import ast

    internal = ("two attribution methods are named", "two dataset readers are named", "not a JSON object",
                "decoded a ", "its pixels are ")  # fmt: skip
    own_flow = {"InterpError", "_LayerReached", "MemberTooLarge", "GateMisuse"}  # control flow, and our own bug
    plain = []
    for path in sorted((ROOT / "interp").rglob("*.py")):
        if "cli" in path.relative_to(ROOT / "interp").parts:
            continue  # the CLI's own argument checks, which it prints itself
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)
                    and getattr(node.exc.func, "id", None) == "ValueError"):  # fmt: skip
                text = ast.unparse(node.exc.args[0]) if node.exc.args else ""
                if not any(words in text for words in internal):
                    plain.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.ClassDef) and node.name not in own_flow and {
                    getattr(b, "id", None) for b in node.bases} & {"Exception", "ValueError", "RuntimeError"}:
                if "InterpError" not in {getattr(b, "id", None) for b in node.bases}:  # fmt: skip
                    plain.append(f"{path.relative_to(ROOT)}:{node.lineno} class {node.name}")
    assert not plain, plain  # SettingError, a method's setting out of range, was a plain ValueError too
    from interp.errors import BadSettingError, InterpError

    with pytest.raises(InterpError, match="is not a bundled sample"):
        interp.load_sample("no such sample")
    with pytest.raises(BadSettingError, match="head fusion 'median' is not one of"):
        from interp.attention.maps import fuse_heads

        fuse_heads(np.zeros((1, 2, 3, 3), np.float32), "median")


def test_a_blank_setting_is_the_default_as_an_unset_one_is(tmp_path):
    """``INTERP_DEVICE=`` (an environment file's blank line, ``docker run -e INTERP_DEVICE``) stopped every page with
    "device '' is not a torch device"; a blank cache size or sharing switch did the same. Blank means the default."""
    from interp.config import Settings, resolve_device
    from interp.errors import BadSettingError

    names = ("INTERP_DEVICE", "INTERP_CACHE_SIZE_MB", "INTERP_MEMORY_LIMIT_MB", "INTERP_SHARE_CONCEPTS")
    defaults = Settings.from_env({"INTERP_CACHE_DIR": str(tmp_path)})
    for blank in ("", "  "):
        settings = Settings.from_env({"INTERP_CACHE_DIR": str(tmp_path), **dict.fromkeys(names, blank)})
        assert settings == defaults and settings.device == "auto" and settings.cache_size_mb == 1024
    assert Settings.from_env({"INTERP_CACHE_DIR": " "}).cache_dir == Settings.from_env({}).cache_dir
    assert resolve_device(Settings.from_env({"INTERP_DEVICE": ""}).device).type in ("cpu", "cuda")
    from interp.datasets import configured_roots

    assert [r.name for r in configured_roots(tmp_path, environ={"INTERP_DATASETS": "  "})] == [
        r.name for r in configured_roots(tmp_path, environ={})]  # fmt: skip
    with pytest.raises(BadSettingError, match="INTERP_CACHE_SIZE_MB='1GB' is not a whole number"):
        Settings.from_env({"INTERP_CACHE_SIZE_MB": "1GB"})  # a value that is there is still checked
    with pytest.raises(BadSettingError, match="INTERP_SHARE_CONCEPTS='maybe' is neither 1 nor 0"):
        Settings.from_env({"INTERP_SHARE_CONCEPTS": " Maybe "})


def test_the_offline_switch_is_read_as_the_other_switches_are(monkeypatch):
    """``INTERP_OFFLINE=maybe`` (or ``offline``) was read as "not offline" without a word, so a server its operator
    meant to keep off the network tried the hub; now it is one sentence, as ``INTERP_SHARE_CONCEPTS=maybe`` is, and a
    value with spaces around it (an environment file's ``INTERP_OFFLINE= 1``) counts."""
    from interp.config import Settings
    from interp.errors import BadSettingError
    from interp.models.weights import hub_offline_by_setting

    for value in ("maybe", "offline", "2"):
        with pytest.raises(BadSettingError, match=f"INTERP_OFFLINE='{value}' is neither 1 nor 0; set 1 never to"):
            Settings.from_env({"INTERP_OFFLINE": value})
    for value, offline in ((" 1 ", True), ("On", True), ("off", False), ("", False)):
        Settings.from_env({"INTERP_OFFLINE": value})  # accepted
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("INTERP_OFFLINE", value)
        assert hub_offline_by_setting() is offline, value


def test_one_name_where_the_api_takes_several_is_that_name_and_a_value_of_another_type_is_a_sentence():
    """``run_tcav(model, "layer2", …)`` looked for a layer 'l', ``evaluate_dataset(model, ds, "grad_cam", …)`` for a
    method 'g': a string was read as its letters. ``attribute(model, image, ["saliency"])`` and ``load_model(None)``
    raised ``TypeError`` and ``AttributeError`` from inside the registry; each is a sentence now."""
    from interp.attribution import attribute, method_names
    from interp.concepts import activations_by_layer, run_tcav
    from interp.errors import BadSettingError, UnknownModelError, name_list

    assert method_names("grad_cam") == ["grad_cam"] and method_names("grad_cam, saliency") == ["grad_cam", "saliency"]
    assert method_names(("saliency",)) == name_list({"saliency": 1}, "methods") == ["saliency"]
    model = interp.load_model("shapes_cnn")
    images = [interp.load_sample(n) for n in ("shapes_star", "chelsea")]
    one = activations_by_layer(model, "layer2", images)
    assert list(one) == ["layer2"]
    assert np.array_equal(one["layer2"], activations_by_layer(model, ["layer2"], images)["layer2"])
    with pytest.raises(BadSettingError, match="the concept set 'c' has 2 images"):  # past the layers, to the sets
        run_tcav(model, "layer2", {"c": images}, [images, images], images, target=0)
    for wrong in (["saliency"], None, 3):
        with pytest.raises(BadSettingError, match=r"method must be one method's name \(e.g. 'grad_cam'\), got "):
            attribute(model, images[0], wrong)
    for wrong in (b"layer2", 5, None, ["layer2", 2]):
        with pytest.raises(BadSettingError, match="layers must be a name or a list of names, got "):
            activations_by_layer(model, wrong, images)
    for wrong in (None, 5, ["resnet50"]):
        with pytest.raises(UnknownModelError, match="a model is named by text"):
            interp.load_model(wrong)


API_MODULES = ["interp", "interp.attribution", "interp.evaluation", "interp.attention", "interp.datasets",
               "interp.features", "interp.concepts", "interp.text"]  # fmt: skip


def _exported(kinds: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """Every function the API exports whose first parameter is annotated as one of ``kinds``: (module, name, kind)."""
    import importlib
    import inspect

    found = []
    for module in API_MODULES:
        for name in importlib.import_module(module).__all__:
            fn = getattr(importlib.import_module(module), name)
            params = list(inspect.signature(fn).parameters.values()) if inspect.isfunction(fn) else []
            kind = next((k for k in kinds if params and k in str(params[0].annotation)), None)
            if kind:
                found.append((module, name, kind))
    return found


def _model_functions() -> list[tuple[str, str, str]]:
    return _exported(("LoadedModel", "TextModel"))


def test_the_api_finds_the_functions_that_take_a_model():
    names = {name for _, name, _ in _model_functions()}
    assert {"predict", "attribute", "scan", "scan_ray", "run_tcav", "visualise", "token_ig"} <= names
    assert len(names) >= 30


@pytest.mark.parametrize("module,name,kind", _model_functions())
def test_every_function_that_takes_a_model_says_how_to_load_one_when_given_something_else(module, name, kind):
    """A model's name (``scan("shapes_cnn", …)`` failed on ``'str' object has no attribute 'device'``), None, a bare
    network, or the other kind of model: one sentence naming the function and what to do, before any other work."""
    import importlib
    import inspect

    fn = getattr(importlib.import_module(module), name)
    params = list(inspect.signature(fn).parameters.values())
    rest = [p for p in params[1:] if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY,
                                                                                       p.POSITIONAL_OR_KEYWORD)]
    loader = "interp.load_model" if kind == "LoadedModel" else "interp.text.load_text_model"
    # a model of the other kind, as far as the check reads it: its class's name and its own name
    other = type("TextModel", (), {"name": "text_bert"})() if kind == "LoadedModel" else \
        type("LoadedModel", (), {"name": "shapes_cnn"})()
    cases = [("shapes_cnn", f"load it first: model = {loader}('shapes_cnn'), then {name}(model, …)"),
             (torch.nn.Linear(2, 2), "a bare network (Linear)"),
             (other, f"not {other.name!r}, {'a text' if kind == 'LoadedModel' else 'an image'} model")]
    if params[0].default is inspect.Parameter.empty:  # method_rows(None) is every method, no model
        cases.append((None, f"not None; load one with {loader}(name)"))
    for given, says in cases:
        with pytest.raises(interp.InterpError) as err:
            fn(given, *[None] * len(rest))
        assert str(err.value).startswith(f"{name} takes a model that {loader} returned"), str(err.value)
        assert says in str(err.value)
        assert "\n" not in str(err.value)


def _capture_functions() -> list[tuple[str, str, str]]:
    return _exported(("AttentionCapture", "TextAttention"))


def test_the_api_finds_the_functions_that_read_a_capture():
    assert {(m, n) for m, n, _ in _capture_functions()} >= {
        ("interp.attention", "rollout_map"), ("interp.attention", "class_maps"), ("interp.attention", "head_stats"),
        ("interp.text", "head_stats"), ("interp.text", "text_rollout")}


@pytest.mark.parametrize("module,name,kind", _capture_functions())
def test_every_function_that_reads_a_capture_says_what_makes_one_when_given_something_else(module, name, kind):
    """``rollout_map(None)`` failed on ``'NoneType' object has no attribute 'attn'``; an image where its capture
    belongs, or a text capture given to the ViT's head statistics, the same."""
    import importlib

    fn = getattr(importlib.import_module(module), name)
    maker = "interp.attention.capture(model, image)" if kind == "AttentionCapture" else "interp.text.capture(model, text)"
    other = "TextAttention" if kind == "AttentionCapture" else "AttentionCapture"
    wrong = type(other, (), {})()  # a capture of the other kind, as far as the check reads it
    for given, shown in [(None, "None"), (interp.load_sample("chelsea"), "this LoadedImage"), ("vit", "'vit'"),
                         (wrong, f"this {other}")]:  # fmt: skip
        with pytest.raises(interp.InterpError) as err:
            fn(given, *([0, 0] if name == "patch_maps" else []))
        assert str(err.value) == f"{name} reads what {maker} returns, not {shown}."


def test_a_value_that_does_not_fit_is_named_in_a_sentence_not_printed_whole(tmp_path):
    """A pasted name of 100,000 characters came back whole in the sidebar's sentence, and an array handed to the API
    where a number belongs was printed element by element (``got tensor([0., 0., …``, 5,000 characters for a list of
    a thousand seeds). A sentence quotes text up to 80 characters and the start of longer text with its length; any
    other value whole when short, else by its type and shape or length (:func:`interp.errors.shown`)."""
    from interp.attribution import attribute
    from interp.datasets import failures, find_root
    from interp.evaluation import random_map
    from interp.features import VisualiseSettings

    model = interp.load_model("shapes_cnn")
    image = interp.load_sample("shapes_star")
    long = "x" * 100_000
    calls = {
        "'xxx": lambda: interp.get_spec(long),
        "'yyy": lambda: interp.load_sample("y" * 5_000),
        "'zzz": lambda: attribute(model, image, "z" * 5_000, target=1),
        "'www": lambda: find_root("w" * 10_000, tmp_path),
        "this Tensor of shape (1000,)": lambda: attribute(model, image, "integrated_gradients", target=1,
                                                          steps=torch.zeros(1000)),  # fmt: skip
        "this ndarray of shape (100, 100)": lambda: failures(pd.DataFrame(), min_confidence=np.zeros((100, 100))),
        "this list of 1,000 items": lambda: random_map((4, 4), seed=list(range(1000))),
        "this tuple of 500 items": lambda: VisualiseSettings(lr=tuple(range(500))),
        "'vvv": lambda: interp.predict("v" * 100_000, image),  # a name where a loaded model belongs
    }
    for start, call in calls.items():
        with pytest.raises(interp.InterpError) as caught:
            call()
        message = str(caught.value)
        assert start in message and len(message) < 600, (start, len(message), message[:300])
        assert message.count(start) == 1, message[:300]  # named once
        if start.startswith("'"):
            assert re.search(r"…' \(|\(\d[\d,]* characters\)", message), message[:300]  # its length said
    # short values are quoted whole, as before: a name, a name of 80 characters, an operator's entry missing its kind
    with pytest.raises(interp.InterpError, match=re.escape("'no_such_net' is not a timm model name")):
        interp.get_spec("no_such_net")
    eighty = "a" * 80
    with pytest.raises(interp.InterpError, match=re.escape(repr(eighty))):
        interp.load_sample(eighty)
    entry = {"name": "imagenet-val", "root": "/data/imagenet/val"}
    from interp.datasets import read_roots

    problems = read_roots(tmp_path, environ={"INTERP_DATASETS": json.dumps([entry])}).problems
    assert problems == [f"a dataset entry needs name, kind and root; got {entry!r}."], problems


def test_the_engine_quotes_a_given_value_through_shown():
    """So that no new sentence prints a value whole again: anywhere in the engine (a raise statement, a sentence built
    to be raised later, a description a page shows), a value quoted with ``!r`` is one of the engine's own (a
    registered name, a constant, a path from the operator's settings); ``shown`` itself clips what it quotes."""
    import ast

    own = {"cls.name", "cls.kind", "_META", "im.mode", "self.root", "near[0]", "model.transform", "self.reference",
           "tokenizer.mask_token or tokenizer.pad_token", "str(relative)", "str(entry)[:80]",
           "name.strip()",  # only a bundled text model's name
           "value[:SHOWN_CHARS - 20]"}  # fmt: skip
    quoted = []
    for path in sorted((ROOT / "interp").rglob("*.py")):
        for part in ast.walk(ast.parse(path.read_text())):
            if isinstance(part, ast.FormattedValue) and part.conversion == ord("r"):
                if ast.unparse(part.value) not in own:
                    quoted.append(f"{path.relative_to(ROOT)}:{part.lineno} {ast.unparse(part.value)}")
    assert not quoted, quoted
