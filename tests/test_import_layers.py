"""Imports point one way: app/bench -> dermiq, clinical -> knowledge_graph, training. `training` knows nothing about
medicine (it imports none of the medical packages), `knowledge_graph` knows nothing about torch, and the two recipes
do not reach into each other. Inside `training`, a part imports only the parts below it: trainers -> objectives ->
rollout -> models -> data -> run, all over the shared base (errors, config, registry, atomic, card_notice,
recipes), with cli and export on top (docs/architecture.md draws it). Read from the source with `ast`, every import at any depth (a function-level import
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
# training's parts, lowest first; a part may import its own rank and below. Modules directly in training/ are ranked
# by name.
TRAINING_RANK = {
    "errors": 0,
    "config": 0,
    "registry": 0,
    "atomic": 0,
    "card_notice": 0,
    "recipes": 0,
    "run": 1,
    "data": 2,
    "models": 3,
    "rollout": 4,
    "objectives": 5,
    "trainers": 6,
    "export": 7,
    "export_gguf": 7,
    "gguf": 7,
    "plan": 7,
    "cli": 7,
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


def training_violations(root: Path = ROOT) -> list[str]:
    """Imports inside training/ that point up its layers (or reach a part the table does not rank)."""
    bad = []
    for path in sorted((root / "training").rglob("*.py")):
        rel = path.relative_to(root)
        me = rel.parts[1] if len(rel.parts) > 2 else rel.stem
        if me == "__init__":
            continue
        for line, module in imports(path):
            bits = module.split(".")
            if bits[0] != "training" or len(bits) < 2 or bits[1] == me:
                continue
            if (
                bits[1] not in TRAINING_RANK
                or me not in TRAINING_RANK
                or TRAINING_RANK[bits[1]] > TRAINING_RANK[me]
            ):
                bad.append(f"{rel}:{line} ({me}) imports {module}")
    return bad


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_one_way(package):
    assert violations(package) == []


def test_training_parts_import_only_the_parts_below_them():
    assert training_violations() == []


def test_the_checker_sees_function_level_and_third_party_imports(tmp_path):
    """The test can fail: upward and forbidden imports in scratch packages are reported with file and line."""
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "x.py").write_text(
        "def f():\n    from dermiq import prompts\n    return prompts\n"
    )
    (tmp_path / "knowledge_graph").mkdir()
    (tmp_path / "knowledge_graph" / "y.py").write_text("import json\nimport torch.nn\n")
    assert violations("training", tmp_path) == ["training/x.py:2 imports dermiq"]
    assert violations("knowledge_graph", tmp_path) == ["knowledge_graph/y.py:2 imports torch.nn"]
    (tmp_path / "training" / "run").mkdir()
    (tmp_path / "training" / "run" / "z.py").write_text(
        "def g():\n    from training.models.chat import render\n"
    )
    assert training_violations(tmp_path) == ["training/run/z.py:2 (run) imports training.models.chat"]
