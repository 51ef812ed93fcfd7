"""The import graph of kidney_tf, read statically with ``ast``: no module imports itself back."""

from __future__ import annotations

import ast
from pathlib import Path

import kidney_tf

PACKAGE = Path(kidney_tf.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """kidney_tf modules ``path`` imports, at module level or inside functions alike."""
    found: set[str] = set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path)[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = _module_name(path).split(".")
                anchor = anchor[: len(anchor) - node.level + (path.name == "__init__.py")]
                base = ".".join([*anchor, base] if base else anchor)
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            # "from kidney_tf.data import crop" imports the module kidney_tf.data.crop
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != package:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    graph = {_module_name(p): _imports(p, modules) for p in paths}
    # a package's __init__ is imported with each of its modules: importing it is no edge back
    return {
        m: {t for t in targets if t != m and not m.startswith(t + ".")}
        for m, targets in graph.items()
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_is_read():
    graph = import_graph()
    assert "kidney_tf.data.crop" in graph["kidney_tf.data.crop_tf"]
    assert "kidney_tf.recipes" in graph["kidney_tf.data.pipeline"]


def test_no_import_circles():
    cycle = _cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_lower_layers_never_import_higher_ones():
    graph = import_graph()
    higher = {
        "kidney_tf.recipes": ("kidney_tf.",),
        "kidney_tf.data": ("kidney_tf.models", "kidney_tf.training", "kidney_tf.evaluation"),
        "kidney_tf.training": ("kidney_tf.evaluation", "kidney_tf.pipelines", "kidney_tf.cli"),
        "kidney_tf.evaluation": ("kidney_tf.training", "kidney_tf.pipelines", "kidney_tf.cli"),
    }
    wrong = [
        f"{module} -> {target}"
        for module, targets in graph.items()
        for layer, banned in higher.items()
        if module == layer or module.startswith(layer + ".")
        for target in targets
        if target.startswith(banned) and target != "kidney_tf.recipes"
    ]
    assert not wrong, wrong
