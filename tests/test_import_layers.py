"""Imports point one way: app/bench -> dermiq, clinical -> knowledge_graph, training. `training` knows nothing about
medicine (it imports none of the medical packages), `knowledge_graph` knows nothing about torch, and the two recipes
do not reach into each other. Read from the source with `ast`, every import at any depth (a function-level import
counts as much as a top-level one), so a violation fails here before it becomes a cycle or a hidden coupling."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("training", "knowledge_graph", "dermiq", "clinical", "app", "bench")
# package -> the project packages it may import (itself always)
ALLOWED = {
    "training": set(),
    "knowledge_graph": set(),
    "dermiq": {"training", "knowledge_graph"},
    "clinical": {"training", "knowledge_graph"},
    "app": {"training", "knowledge_graph", "dermiq", "clinical", "bench"},
    "bench": {"training", "knowledge_graph", "dermiq", "clinical"},
}
# third-party modules a package must not import
FORBIDDEN_THIRD_PARTY = {"knowledge_graph": {"torch", "transformers", "peft", "bitsandbytes", "accelerate"}}


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import statement in one file; relative imports stay in the package."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def violations(package: str, root: Path = ROOT) -> list[str]:
    bad = []
    for path in sorted((root / package).rglob("*.py")):
        for line, module in imports(path):
            top = module.split(".")[0]
            where = f"{path.relative_to(root)}:{line} imports {module}"
            if top in PACKAGES and top != package and top not in ALLOWED[package]:
                bad.append(where)
            if top in FORBIDDEN_THIRD_PARTY.get(package, ()):
                bad.append(where)
    return bad


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_one_way(package):
    assert violations(package) == []


def test_the_checker_sees_function_level_and_third_party_imports(tmp_path):
    """The test can fail: upward and forbidden imports in scratch packages are reported with file and line."""
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "x.py").write_text("def f():\n    from dermiq import prompts\n    return prompts\n")
    (tmp_path / "knowledge_graph").mkdir()
    (tmp_path / "knowledge_graph" / "y.py").write_text("import json\nimport torch.nn\n")
    assert violations("training", tmp_path) == ["training/x.py:2 imports dermiq"]
    assert violations("knowledge_graph", tmp_path) == ["knowledge_graph/y.py:2 imports torch.nn"]
