"""The README as a reader uses it: its Python API block runs as written, its comments that state a value state the
right one, and every command line it shows is one the CLI accepts."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

import interp

README = Path(__file__).resolve().parents[1] / "README.md"


def api_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def stated(source_line: str) -> str | None:
    """The comment after a statement, when it is a value: ``# ['masks', …]`` or ``# ClassScore(index=282, …``."""
    if "#" not in source_line:
        return None
    return source_line.rsplit("#", 1)[1].strip()


@pytest.mark.slow  # a minute: TCAV's 10 runs, SmoothGrad of IG, a visualisation
def test_the_python_api_block_runs_and_states_what_it_returns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path / "cache"))
    chelsea = interp.load_sample("chelsea").image
    chelsea.save("photo.jpg", quality=95)  # the README's photo: a tiger cat
    (tmp_path / "cats").mkdir()
    for i, angle in enumerate((0, 5, -5)):
        chelsea.rotate(angle).save(tmp_path / "cats" / f"cat{i}.jpg", quality=95)
    val = tmp_path / "imagenet" / "n02123159"  # the ImageNet layout: a folder per class, named by its wnid
    val.mkdir(parents=True)
    for name in ("chelsea", "coffee", "astronaut"):
        interp.load_sample(name).image.save(val / f"{name}.JPEG")

    block = api_block().replace("/data/imagenet/val", str(tmp_path / "imagenet"))
    lines = block.splitlines()
    namespace: dict = {}
    checked = 0
    for node in ast.parse(block).body:
        if not isinstance(node, ast.Expr):
            exec(compile(ast.Module([node], []), "README.md", "exec"), namespace)
            continue
        value = eval(compile(ast.Expression(node.value), "README.md", "eval"), namespace)
        comment = stated(lines[node.end_lineno - 1])
        if comment is None:
            continue
        try:  # a literal: equal
            expected = ast.literal_eval(comment)
        except (ValueError, SyntaxError):
            if "…" in comment and "(" in comment:  # a repr cut short: the same up to the cut
                assert repr(value).startswith(comment.split("…")[0]), (comment, repr(value))
                checked += 1
            continue
        assert value == expected, (comment, value)
        checked += 1
    assert checked >= 2  # the prediction's repr and RISE's settings
    report = namespace["report"]
    assert [(r["concept"], r["layer"]) for r in report.rows()] == [("stripes", "bn2")]
    cats = namespace["activations"](namespace["model"], "bn2", namespace["cats"])
    assert namespace["cav"].cav_.shape == cats.shape[1:]
    np.testing.assert_allclose(namespace["files"].rows["bn2"], cats, rtol=1e-5, atol=1e-5)  # the same files, in order


def readme_commands() -> list[str]:
    """Every ``python -m interp …`` the README shows: console and bash lines (continued with ``\\``, without their
    trailing comment) and inline code."""
    text = README.read_text(encoding="utf-8")
    lines, found = text.splitlines(), []
    for i, line in enumerate(lines):
        m = re.match(r"^\s*(?:\$\s*)?(python -m interp\b.*)$", line)
        if m:
            cmd = m.group(1)
            while cmd.rstrip().endswith("\\"):
                i += 1
                cmd = cmd.rstrip()[:-1] + " " + lines[i].strip()
            found.append(re.sub(r"\s+#.*$", "", cmd))
    return found + re.findall(r"`(python -m interp [^`]*)`", text)


def test_every_command_line_in_the_readme_is_one_the_cli_accepts():
    """Options are renamed in the parser, not always in the README: each line must parse as written."""
    import shlex

    from interp.cli import build_parser

    commands = readme_commands()
    assert len(commands) >= 25, commands  # the README's console blocks and inline examples were found
    refused = []
    for command in commands:
        argv = shlex.split(command)[3:]
        try:
            _, extra = build_parser(argv).parse_known_args(argv)
        except SystemExit as exc:  # a missing or unknown value; --help exits 0 and is fine
            extra = [] if exc.code == 0 else [f"exit {exc.code}"]
        if extra:
            refused.append(f"{command}: {extra}")
    assert not refused, refused


def readme_output(command: str) -> list[str]:
    """The lines the README shows under ``$ <command>`` (its comment aside), up to the next prompt or the end."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if re.sub(r"\s+#.*$", "", line) == f"$ {command}")
    out = []
    for line in lines[start + 1 :]:
        if line.startswith("$ ") or line.startswith("```"):
            break
        out.append(line)
    return out


def test_the_readme_prints_what_predict_prints_on_a_bundled_photo(capsys):
    """The predict examples need no file of the reader's, so what they print is what the README says they print."""
    import json

    from interp.cli import main

    def rows(lines):
        return [(m.group(2), int(m.group(3)), float(m.group(1)))
                for m in (re.match(r"\s*([\d.]+)%\s+(.+?)\s+\[(\d+)\]$", line) for line in lines) if m]  # fmt: skip

    command = "python -m interp predict --image coffee --top 3"
    shown = readme_output(command)
    assert main(command.split()[3:]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == shown[0]  # the model, its weights and the photo
    assert len(rows(shown)) == 3
    assert [r[:2] for r in rows(printed)] == [r[:2] for r in rows(shown)]
    assert [r[2] for r in rows(printed)] == pytest.approx([r[2] for r in rows(shown)], abs=0.05)

    command = "python -m interp predict --image coffee --json"
    shown = readme_output(command)
    assert main(command.split()[3:]) == 0
    printed = json.loads(capsys.readouterr().out)
    first = json.loads("\n".join(shown[shown.index("    {") : shown.index("    },") + 1]).rstrip(","))
    assert printed["model"] in "\n".join(shown)
    assert printed["predictions"][0]["index"] == first["index"]
    assert printed["predictions"][0]["label"] == first["label"]
    assert printed["predictions"][0]["prob"] == pytest.approx(first["prob"], abs=5e-4)


def test_the_readme_prints_what_models_timm_prints(capsys):
    """Read from timm's registry (no download), so the README's example is what the command prints; the number of
    tags may grow with timm's releases, the shape of the lines may not."""
    from interp.cli import main

    command = "python -m interp models --timm 'resnet5?'"
    shown = readme_output(command)
    assert main(["models", "--timm", "resnet5?"]) == 0
    printed = capsys.readouterr().out.splitlines()
    shape = re.compile(r"^(\S+)\s+\d+ pretrained: (\w+), ")
    assert shape.match(shown[0]).groups() == shape.match(printed[0]).groups() == ("resnet50", "a1_in1k")
    assert shown[1] == printed[1] == ""
    assert shown[2] == printed[2]


@pytest.mark.parametrize("command", ["python -m interp models --layers shapes_cnn",
                                     "python -m interp failures --scan scans/cnn --min-confidence 0.8 --top 3"])
def test_the_readme_prints_what_these_commands_print(command, tmp_path, monkeypatch, capsys):
    """Commands on the bundled models and the shapes world print the same on every machine: each line the README
    shows (``...`` stands for lines left out) is one the command prints, in the same order."""
    from interp.cli import main

    monkeypatch.chdir(tmp_path)
    args = command.split()[3:]
    if args[0] == "failures":  # the scan the README makes first (the world, then the scan of it)
        for earlier in ("python -m interp shapes generate --out world --n 600 --split test",
                        "python -m interp scan --model shapes_cnn --dataset folder --root world --out scans/cnn"):
            assert earlier in "\n".join(README.read_text(encoding="utf-8").splitlines())
            assert main(earlier.split()[3:]) == 0
        capsys.readouterr()
    assert main(args) == 0
    printed = capsys.readouterr().out.splitlines()
    shown = [line for line in readme_output(command) if line != "..."]
    assert shown and printed[0] == shown[0]
    at = 0
    for line in shown:
        assert line in printed[at:], (line, printed)
        at = printed.index(line, at) + 1
