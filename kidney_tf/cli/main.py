"""``kidney-tf`` command line: one module per command group, registered here.

Each command module (``kidney_tf/cli/<group>.py``) exposes ``register(subparsers)`` which adds its
parser(s) and sets ``func`` to a handler ``handler(args) -> int``. Handlers import TensorFlow
lazily so ``kidney-tf --help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence

from kidney_tf import __version__
from kidney_tf.utils.logging import configure_cli_logging, quiet_tensorflow

# Order is the order shown in --help.
COMMAND_MODULES = (
    "demo",
    "data",
    "train",
    "evaluate",
    "explain",
    "compare",
    "export",
    "reproduce",
    "benchmark",
)


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (sub-commands inherit it): exit status 2 and
    ``kidney-tf train: error: argument --epochs: must be >= 1, got 0 (see ... --help)``."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def at_least(low: int):
    """argparse ``type=``: an integer >= ``low``, checked before TensorFlow is imported."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


def positive_float(text: str) -> float:
    """argparse ``type=``: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="kidney-tf",
        description="CAM fostering for kidney CT and EfficientNetB1 for brain MRI, Keras-native.",
        epilog="Run 'kidney-tf COMMAND --help' for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"kidney_tf {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    register_modules(subparsers, "kidney_tf.cli", COMMAND_MODULES)
    return parser


def register_modules(subparsers, package: str, names: Sequence[str]) -> None:
    """Let each module ``<package>.<name>`` add its parser(s) via its ``register(subparsers)``."""
    for name in names:
        importlib.import_module(f"{package}.{name}").register(subparsers)


def add_common_arguments(parser: argparse.ArgumentParser, *, reads_images: bool = False) -> None:
    """``--quiet`` and ``--verbose`` for every command; ``--max-pixels`` for those that read
    image files (``reads_images=True``)."""
    parser.add_argument("-q", "--quiet", action="store_true", help="only print warnings and errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="print debug messages")
    if reads_images:
        parser.add_argument(
            "--max-pixels",
            dest="read_max_pixels",
            type=at_least(0),
            metavar="N",
            help="images with more pixels are decoded at reduced scale (JPEG) or refused "
            "(default 50,000,000 or $KIDNEY_TF_MAX_PIXELS; 0: no limit)",
        )


@contextlib.contextmanager
def _max_pixels(value: int | None):
    """``--max-pixels`` through the environment for the command's duration, so that tf.data's
    reader threads and the worker processes it starts see the same limit."""
    if value is None:
        yield
        return
    from kidney_tf.data.decode import MAX_PIXELS_ENV

    before = os.environ.get(MAX_PIXELS_ENV)
    os.environ[MAX_PIXELS_ENV] = str(value)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(MAX_PIXELS_ENV, None)
        else:
            os.environ[MAX_PIXELS_ENV] = before


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    verbose = getattr(args, "verbose", False)
    configure_cli_logging(quiet=getattr(args, "quiet", False), verbose=verbose)
    if not verbose:
        quiet_tensorflow()
    try:
        with _max_pixels(getattr(args, "read_max_pixels", None)):
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("kidney-tf: interrupted", file=sys.stderr)
        return 130
    except (
        CliError,
        ValueError,
        FileNotFoundError,
        FileExistsError,
        PermissionError,
        OSError,
    ) as exc:
        if getattr(args, "verbose", False):
            raise
        command = " ".join(filter(None, (args.command, getattr(args, "data_command", None))))
        print(f"kidney-tf {command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
