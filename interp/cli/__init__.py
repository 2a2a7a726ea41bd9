"""``python -m interp``: batch jobs over the same engine the dashboard uses.

Each command module registers a sub-command with :func:`command`. Errors the user can fix end the process with
status 2 and one line on stderr; no traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from interp.errors import InterpError, class_index, shown  # noqa: F401 - class_index: the commands import it from here

if TYPE_CHECKING:
    from interp.images import LoadedImage

Handler = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {}

EXIT_USAGE = 2
DEVICE_HELP = "auto (a GPU when there is one), cpu, cuda, cuda:1 …; default: $INTERP_DEVICE, else auto"
LAYER_HELP = "a module's dotted name (blocks.3, layer4…; `python -m interp models --layers MODEL` lists them)"


def command(name: str, help: str) -> Callable[[Callable[[argparse.ArgumentParser], None]], Callable]:
    """Register ``name``: the decorated function adds arguments; ``handler`` (set by :func:`handles`) runs it."""

    def register(add_arguments: Callable[[argparse.ArgumentParser], None]) -> Callable:
        _COMMANDS[name] = (help, add_arguments, _COMMANDS.get(name, (None, None, None))[2])
        return add_arguments

    return register


def handles(name: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        help_, add, _ = _COMMANDS[name]
        _COMMANDS[name] = (help_, add, handler)
        return handler

    return register


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + message
        import re

        from interp.errors import SHOWN_CHARS, shown

        # argparse quotes a value it refuses whole ("invalid int value: 'xxx…'"): a long one by its start and length
        message = re.sub(rf"'([^'\n]{{{SHOWN_CHARS + 1},}})'", lambda m: shown(m[1]), message)
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def _unrecognised(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]) -> None:
    import difflib

    for dest in ("command", "action"):  # down to the (sub-)command that was run
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or getattr(args, dest, None) not in subs[0].choices:
            break
        parser = subs[0].choices[getattr(args, dest)]
    options = [o[2:] for a in parser._actions for o in a.option_strings if o.startswith("--")]
    given = [x[2:].split("=")[0] for x in extra if x.startswith("--")]
    near = [m for x in given for m in difflib.get_close_matches(x, options, 1, 0.7)]
    parser.error(f"unrecognized arguments: {' '.join(extra)}" + (f"; did you mean --{near[0]}?" if near else ""))


def out_dir(path: Path) -> Path:
    """``path`` as an output folder, created if missing; a sentence if it names an existing file."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path} is a file, not a folder; name a folder (it is created if missing).")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a parent that is a file, no permission, a read-only disk: not "[Errno 20] …"
        raise ValueError(f"--out {path} cannot be made ({(exc.strerror or str(exc)).lower()}); name a folder you can "
                         "write to.") from None  # fmt: skip
    try:
        with tempfile.TemporaryFile(dir=path):  # a folder that is there but takes no file: read-only, /proc
            pass
    except OSError as exc:  # said before the work, not as "[Errno 2] …" once it is done
        raise ValueError(f"--out {path} takes no files ({(exc.strerror or str(exc)).lower()}); name a folder you can "
                         "write to.") from None  # fmt: skip
    return path


CLASS_HELP = "an index or a name ('tiger cat', or a synonym such as 'tabby'; any case)"


def read_image(path: Path) -> LoadedImage:
    """``--image``: the file at ``path`` or, where no file has that name, the bundled photo it names (``--image
    coffee``, as on the Home page), so the commands can be tried before one has photos of one's own. A path that names
    neither is one sentence listing the bundled names."""
    from interp.errors import BadImageError
    from interp.images import load_image
    from interp.samples import load_sample, sample_names

    if not os.path.lexists(path) and str(path) in sample_names():
        return load_sample(str(path))
    try:
        return load_image(path)
    except BadImageError:
        if os.path.lexists(path):
            raise
        if path.stem in sample_names():
            raise BadImageError(f"there is no file at {path}; for the bundled photo, write --image {path.stem}.") \
                from None
        raise BadImageError(f"there is no file at {path}; check the path, or name a bundled photo: "
                            f"{', '.join(sample_names())}.") from None  # fmt: skip


CLASSES_HELP = ("a text file, one class name per line, naming the outputs of --weights, as the sidebar's class names "
                "upload does (a scan with the same weights and names is the one the Failures page shows that upload)")


def read_classes(path: Path) -> list[str]:
    """``--classes``: one class name per line, blank lines skipped; a file that cannot be read or names nothing is a
    sentence."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(f"cannot read the class names file {path} ({exc.strerror}).") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text; save it as plain text, one class name a line.") from None
    names = [line.strip() for line in lines if line.strip()]
    if not names:
        raise ValueError(f"{path} has no class names; write one name per line.")
    return names


def load_cli_model(args: argparse.Namespace):
    """The model a command's ``--model``, ``--weights``, ``--classes`` and ``--device`` name."""
    from interp.models import load_model

    classes = read_classes(args.classes) if getattr(args, "classes", None) else None
    return load_model(args.model, args.weights, class_names=classes, device=getattr(args, "device", None))


_SAID: set[str] = set()


def writable_settings():
    """The environment's settings with a cache folder this process can write; when that is not the configured one
    (:meth:`interp.config.Settings.writable`), the sentence saying so goes to stderr, once."""
    from interp.config import Settings

    chosen, note = Settings.from_env().writable()
    if note and note not in _SAID:
        _SAID.add(note)
        print(note, file=sys.stderr)
    return chosen


def dataset_root(dataset: str, root: Path | None, mapping: str | None = None):
    """The ``DatasetRoot`` a command's ``--dataset`` (and ``--root``) names: a configured dataset by its name, or a
    kind with its folder. A mix-up of the two is a sentence."""
    from interp.datasets import DatasetRoot, find_root, kinds, read_roots

    if mapping is not None and (root is None or dataset != "openimages"):
        raise ValueError("--mapping is for an Open Images folder (--dataset openimages --root DIR); a configured "
                         "dataset has its mapping in the configuration. Leave it out.")  # fmt: skip
    if root is not None:
        if dataset not in kinds():
            raise ValueError(f"with --root, --dataset is a kind ({', '.join(kinds())}); got {shown(dataset)}.")
        return DatasetRoot(root.name, dataset, root, mapping)
    if dataset in kinds():
        raise ValueError(f"--dataset {dataset} is a kind: give the folder with --root.")
    cache_dir = writable_settings().cache_dir
    found = find_root(dataset, cache_dir)
    for problem in read_roots(cache_dir).problems:  # the operator's settings have an entry no one can pick
        print(f"note: not read from the dataset settings: {problem}", file=sys.stderr)
    return found


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """Every command with its options; given the command line, only the options of the command it names (some
    defaults come from the engine, which imports torch: `--help` alone imports none of it)."""
    from interp.cli import attention, attribution, basic, concepts, evaluation, features, scan, shapes, text  # noqa: F401,E501  (register)

    parser = _Parser(prog="python -m interp", description="Look inside image classifiers from the shell.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the engine does on stderr")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND",
                                help="`python -m interp COMMAND --help` lists its options")
    named = None if argv is None else next((a for a in argv if not a.startswith("-")), "")
    for name, (help_, add_arguments, _) in _COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_, description=help_)
        if named is None or name == named:
            add_arguments(command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the command that was given them, with a near option's name when there is one
        _unrecognised(parser, args, extra)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    handler = _COMMANDS[args.command][2]
    try:
        return handler(args)
    except (InterpError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `python -m interp methods | head`: the reader left; that is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a folder that is a file, a full disk, no permission: the system's words, one line
        logging.getLogger(__name__).debug("OSError", exc_info=True)
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}; check the path and try again.", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
