"""The scan on Ray Data, on a local Ray cluster: the same rows as the in-process scan, resumable the same way."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")

from dataclasses import replace  # noqa: E402

import numpy as np  # noqa: E402

import interp  # noqa: E402
from interp.datasets import load_scan, read_folder, scan  # noqa: E402
from interp.datasets.ray_scan import RayUnavailableError, scan_ray  # noqa: E402
from interp.shapes.export import write_image_folder  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    from interp.datasets.ray_scan import RUNTIME_ENV

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env=RUNTIME_ENV)  # CI's 2 cores
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    write_image_folder(root, 40, seed=3, split="test")
    (root / "circle" / "broken.png").write_bytes(b"not a png")  # an unreadable file: a row with its error
    ds = read_folder(root)
    classes = len(ds.class_names)  # every third image also labelled the next class (as Open Images labels several)
    items = [replace(it, labels=(*it.labels, (it.labels[0] + 1) % classes)) if i % 3 == 0 and it.labels else it
             for i, it in enumerate(ds.items)]  # fmt: skip
    return replace(ds, items=tuple(items))


@pytest.fixture(scope="module")
def model():
    return interp.load_model("shapes_cnn", device="cpu")


def _rows(out):
    _, rows = load_scan(out)
    return rows.sort_values("id").reset_index(drop=True)


def test_ray_rows_equal_the_in_process_scan_and_resume(cluster, world, model, tmp_path):
    local, distributed = tmp_path / "local", tmp_path / "ray"
    scan(model, world, local, workers=0, batch_size=8)
    first = scan_ray(model, world, distributed, batch_size=8, limit=15)
    assert first.written == first.rows == first.total == 15  # a limit is the whole of that run, as in-process
    rest = scan_ray(model, world, distributed, batch_size=8)
    assert rest.written == len(world) - 15 and rest.complete and rest.rows == len(world)
    a, b = _rows(local), _rows(distributed)
    assert len(a) == len(b) == len(world) and b.id.is_unique
    for column in ("id", "path", "label", "pred", "pred_name", "correct", "error"):
        assert a[column].astype(object).where(a[column].notna(), None).tolist() == \
            b[column].astype(object).where(b[column].notna(), None).tolist(), column
    assert a.top5.map(list).tolist() == b.top5.map(list).tolist()
    assert a.labels.map(list).tolist() == b.labels.map(list).tolist() and a.labels.map(len).max() == 2
    for column in ("confidence", "true_prob", "loss", "entropy"):  # computed in the actors, a few numbers an image
        np.testing.assert_allclose(a[column].fillna(-1), b[column].fillna(-1), atol=1e-5, err_msg=column)
    assert b.error.notna().sum() == 1 and "broken.png" in b[b.error.notna()].path.iloc[0]
    again = scan_ray(model, world, distributed, batch_size=8)
    assert again.written == 0 and again.complete  # nothing is scored twice


def test_the_cli_runs_a_ray_scan(cluster, world, tmp_path, capsys):
    from interp.cli import main

    out = tmp_path / "cli"
    assert main(["scan", "--model", "shapes_cnn", "--dataset", "folder", "--root", str(world.root), "--out", str(out),
                 "--engine", "ray", "--limit", "12", "--batch-size", "4"]) == 0  # fmt: skip
    assert len(_rows(out)) == 12
    assert "12/12 images" in capsys.readouterr().out


def test_without_ray_the_scan_says_how_to_install_it(world, model, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RayUnavailableError, match="pip install"):
        scan_ray(model, world, tmp_path / "x")


def test_an_interrupted_ray_scan_keeps_what_it_scored(cluster, world, model, tmp_path):
    """Ctrl-C (here: from the progress callback) after the first batches: their rows are in the folder, not lost
    with the driver's buffer, and the next run scores only the rest."""
    out = tmp_path / "cut"
    seen = []

    def interrupt(p):
        seen.append(p.done)
        if p.done >= 16:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scan_ray(model, world, out, batch_size=8, progress=interrupt)
    kept = len(_rows(out))
    assert kept == seen[-1] >= 16  # every row scored before the interruption
    rest = scan_ray(model, world, out, batch_size=8)
    assert rest.written == len(world) - kept and rest.complete
    assert _rows(out).id.is_unique
