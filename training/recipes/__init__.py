"""The recipes that ship with the package (this folder's YAML files, package data) and the one resolver every command
uses: `medrl train NAME`, `medrl dermiq train --recipe NAME`, `medrl clinical train --recipe NAME`, `medrl recipes`.

A recipe is named by its file stem (`sft_qwen2_tiny`) or given as a path. A path that exists wins, so a user's own
recipe (or a checkout's `configs/x.yaml`; `configs` is a link to this folder) is read as given; otherwise the name
(also `x.yaml` or `configs/x.yaml`, the old location) is looked up here, so an installed wheel, with no checkout
beside it, finds the same recipes. The first comment line of a recipe is its one-line description (`medrl recipes`).

The single-stage tiny recipes read `runs/demo_data/*.jsonl` (relative to the working folder); `medrl recipes --data`
writes those files (`make demo` runs it first). The writers live beside the data they make (`training.objectives.toy_task`,
`clinical.recipe_data`, `dermiq.recipe_data`) and are named here by string, as `training.models.embedded` names its
pretraining hook, so this package imports nothing above `training`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from training.errors import ConfigError

RECIPES_DIR = Path(__file__).resolve().parent
SUFFIXES = (".yaml", ".yml")
DATA_DIR = "runs/demo_data"  # where the tiny recipes read their data, relative to the working folder
# (module:function) writers of the tiny recipes' data; each takes (out_dir, seed) and returns {file name: path}. The
# core's own toy task is here; the packages whose recipes ship beside it add theirs (`register_data_writer`), so the
# core never names them. Imported only when `write_data` runs: registering costs nothing at start-up.
DATA_WRITERS: list[str] = ["training.objectives.toy_task:write_recipe_data"]


def register_data_writer(ref: str) -> None:
    """Add a `module:function` writer of recipe data (registering one twice keeps one)."""
    if ":" not in ref:
        raise ConfigError(f"recipe data writer {ref!r}: expected 'module:function'")
    if ref not in DATA_WRITERS:
        DATA_WRITERS.append(ref)


def recipe_paths() -> list[Path]:
    """Every shipped recipe, sorted by name."""
    return sorted(p for p in RECIPES_DIR.iterdir() if p.suffix in SUFFIXES and p.is_file())


def names() -> list[str]:
    return [p.stem for p in recipe_paths()]


def header(path: str | Path) -> str:
    """A recipe's first comment line, without the `#` (empty when it has none)."""
    for line in Path(path).read_text().splitlines():
        s = line.strip()
        if not s:
            continue
        return s.lstrip("#").strip() if s.startswith("#") else ""
    return ""


def resolve(spec: str | Path, aliases: dict[str, str] | None = None) -> Path:
    """A recipe name or path -> the YAML file to read.

    `aliases` maps short names a command offers (`tiny`, `3b`) to recipe names. Order: an existing file as given;
    an alias; a shipped recipe by name (`x`, `x.yaml`, or `configs/x.yaml` from the old location)."""
    spec = str(spec)
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if aliases and spec in aliases:
        spec = aliases[spec]
        path = Path(spec)
    if path.parent in (Path("."), Path("configs")):
        stem = path.name[: -len(path.suffix)] if path.suffix in SUFFIXES else path.name
        for suffix in SUFFIXES:
            shipped = RECIPES_DIR / f"{stem}{suffix}"
            if shipped.is_file():
                return shipped
    offered = ", ".join([*(aliases or {}), *names()])
    raise ConfigError(f"{spec}: no such recipe file or name (shipped: {offered}; `medrl recipes` lists them)")


def write_data(out: str | Path = DATA_DIR, seed: int = 0) -> dict[str, Path]:
    """Write the data the single-stage tiny recipes read (toy prompts, clinical and lesion SFT records, DPO pairs,
    multi-step cases, a synthetic lesion set) into `out`; returns {file name: path}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for ref in DATA_WRITERS:
        module, fn = ref.split(":")
        written.update(getattr(importlib.import_module(module), fn)(out, seed))
    return written
