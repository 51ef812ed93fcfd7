"""Declared dependencies are the ones the package imports (setup.cfg ``install_requires``)."""

from __future__ import annotations

import ast
import configparser
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import kidney_tf

ROOT = Path(kidney_tf.__file__).parent.parent


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options"]["install_requires"].strip().splitlines()
    return {_normal(re.split(r"[<>=!~;\[ ]", line.strip(), maxsplit=1)[0]) for line in lines}


def _imported_distributions() -> set[str]:
    """Distributions providing the top-level modules kidney_tf imports (anywhere in a module)."""
    tops: set[str] = set()
    for path in (ROOT / "kidney_tf").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                tops.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                tops.add(node.module.partition(".")[0])
    tops -= set(sys.stdlib_module_names) | {"kidney_tf"}
    providers = packages_distributions()
    return {_normal(dist) for top in tops for dist in providers.get(top, [top])}


def test_every_declared_dependency_is_imported():
    unused = _declared() - _imported_distributions()
    assert not unused, f"declared in setup.cfg but never imported by kidney_tf: {sorted(unused)}"
