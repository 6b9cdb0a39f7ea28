"""The import graph of the package: no cycles, and the layering a reader expects.

- models, data, metrics and losses know nothing of training, inference, evaluation or the CLI;
- inference (``sht.infer``, ``sht.faces``, ``sht.video``, ``sht.ort``) and export reach no training module, no loss
  and no training-only network (FPTN, the discriminators, VGG), not even through other modules;
- ``import sht``, ``sht.Detector()`` and ``sht detect`` load none of those either (checked in a fresh process).

The graph is read from the source with ``ast``: every ``import`` statement counts, also inside functions, except
those under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "sht"

TRAINING_ONLY = ("sht.train", "sht.losses", "sht.models.fptn", "sht.models.discriminators", "sht.models.vgg")
LOWER_LAYERS = ("sht.models", "sht.data", "sht.metrics", "sht.losses")
UPPER_LAYERS = (
    "sht.train",
    "sht.infer",
    "sht.faces",
    "sht.export",
    "sht.evaluation",
    "sht.cli",
    "sht.demo",
    "sht.teacher",
    "sht.report",
    "sht.video",
    "sht.ort",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules that ``path`` imports at run time."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def resolve(base: str) -> None:
        # the module itself, or its nearest package that is one of ours
        while base and base not in modules:
            base = base.rsplit(".", 1)[0] if "." in base else ""
        if base:
            found.add(base)

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                for a in child.names:
                    if a.name.split(".")[0] == "sht":
                        resolve(a.name)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base_parts = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(base_parts + ([child.module] if child.module else []))
                else:
                    base = child.module or ""
                if base.split(".")[0] != "sht":
                    continue
                for a in child.names:
                    if f"{base}.{a.name}" in modules:
                        found.add(f"{base}.{a.name}")
                    else:
                        resolve(base)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    # importing a.b.c runs the packages a.b first (the root package ``sht`` only re-exports lazily)
    for mod in list(found):
        parts = mod.split(".")
        found.update(".".join(parts[:i]) for i in range(2, len(parts)))
    found.discard(name)
    return {m for m in found if not name.startswith(m + ".")}


def import_graph() -> dict[str, set[str]]:
    files = sorted(PKG.rglob("*.py"))
    modules = {_module_name(p) for p in files}
    return {_module_name(p): _imports(p, modules) for p in files}


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module reachable from ``start``, with the module that first imports it (for messages)."""
    seen: dict[str, str] = {}
    todo = [start]
    while todo:
        cur = todo.pop()
        for nxt in sorted(graph.get(cur, ())):
            if nxt not in seen and nxt != start:
                seen[nxt] = cur
                todo.append(nxt)
    return seen


def test_graph_reader_sees_relative_and_function_level_imports():
    graph = import_graph()
    assert "sht.models.factory" in graph["sht.infer"]  # from .models.factory import build_model
    assert "sht.data.unlabeled" in graph["sht.train.recipe"]  # inside load_weak_data()
    assert "sht.infer" not in graph["sht.faces"]  # only under TYPE_CHECKING (if at all)


def test_no_import_cycle():
    graph = import_graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n) :] + [n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                dfs(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            dfs(m)


def test_lower_layers_know_nothing_of_the_upper_ones():
    graph = import_graph()
    bad = [
        f"{m} imports {n}"
        for m, deps in graph.items()
        if _within(m, LOWER_LAYERS)
        for n in deps
        if _within(n, UPPER_LAYERS)
    ]
    assert not bad, bad


@pytest.mark.parametrize("start", ["sht.infer", "sht.faces", "sht.video", "sht.export", "sht.ort", "sht.checkpoint"])
def test_inference_and_export_reach_no_training_code(start):
    graph = import_graph()
    reach = _reachable(graph, start)
    bad = [f"{m} (imported by {by})" for m, by in sorted(reach.items()) if _within(m, TRAINING_ONLY)]
    assert not bad, f"{start} reaches training-only modules: {bad}"


FORBIDDEN_AT_RUN_TIME = """
import json, sys
from PIL import Image
import sht
stage1 = sorted(sys.modules)
det = sht.Detector()
crop = Image.new("RGB", (16, 16), (128, 100, 90))
det.landmarks(crop)
from sht.cli import main
rc = main(["detect", sys.argv[1], "--out", sys.argv[2]])
bad = [m for m in sys.modules if m.startswith("sht.train") or m in (
    "sht.losses", "sht.models.fptn", "sht.models.discriminators", "sht.models.vgg")]
print(json.dumps({"rc": rc, "bad": bad, "torch_at_import": "torch" in stage1}))
"""


def test_detector_and_detect_load_no_training_module(tmp_path):
    from PIL import Image

    crop = tmp_path / "c16.png"
    Image.new("RGB", (16, 16), (120, 90, 80)).save(crop)
    res = subprocess.run(
        [sys.executable, "-c", FORBIDDEN_AT_RUN_TIME, str(crop), str(tmp_path / "out.json")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    assert doc["rc"] == 0
    assert doc["bad"] == [], f"loaded at inference: {doc['bad']}"
    assert not doc["torch_at_import"], "import sht must not import torch"
