"""``kidney-tf data ...``: dataset tools. Each subcommand lives in its own ``_data_<name>`` module."""

from __future__ import annotations

import argparse

from kidney_tf.cli.main import register_modules

SUBCOMMAND_MODULES = ("phantom", "crop", "verify", "figures")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="generate phantoms, crop, verify and plot datasets",
        description="Dataset tools: phantom generation, brain/body crop, verification, figures.",
    )
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    register_modules(sub, "kidney_tf.cli", [f"_data_{name}" for name in SUBCOMMAND_MODULES])
