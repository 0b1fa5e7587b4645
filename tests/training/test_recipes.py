"""The shipped recipes: one resolver (name or path), `medrl recipes`, the data the tiny recipes read, and every
single-stage tiny recipe training one step exactly as written (from a folder with no checkout in it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from training import recipes
from training.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
# Single-stage recipes on the embedded default (a `trainer:` key, no `pipeline:` section): each must train as written
# once `medrl recipes --data` (run by `make demo`) has written runs/demo_data/.
TINY = [
    n
    for n in recipes.names()
    if "trainer" in yaml.safe_load(recipes.resolve(n).read_text())
    and "embedded:" in str(yaml.safe_load(recipes.resolve(n).read_text()).get("model", {}).get("name", ""))
]


def test_the_tiny_single_stage_recipes_are_the_ones_the_issue_names():
    assert set(TINY) == {
        "sft_qwen2_tiny",
        "sft_qwen25vl_tiny",
        "dpo_qwen2_tiny",
        "dpo_qwen25vl_tiny",
        "grpopp_qwen2_toy",
        "dermiq_tiny",
        "clinical_cases_tiny",
    }


def test_every_recipe_has_a_header_line_and_one_for_its_data():
    for path in recipes.recipe_paths():
        first = recipes.header(path)
        assert len(first) > 20, path
        raw = yaml.safe_load(path.read_text())
        train = (raw.get("data") or {}).get("train")
        if train:  # a file the recipe reads: its first line names the command that makes it
            assert "Data:" in first and "`medrl " in first, (path.name, first)


def test_resolve_by_name_path_old_location_and_alias(tmp_path, monkeypatch):
    shipped = recipes.RECIPES_DIR / "sft_qwen2_tiny.yaml"
    monkeypatch.chdir(tmp_path)  # no checkout here: no configs/ folder
    for spec in ("sft_qwen2_tiny", "sft_qwen2_tiny.yaml", "configs/sft_qwen2_tiny.yaml"):
        assert recipes.resolve(spec) == shipped
    assert recipes.resolve("tiny", {"tiny": "clinical_tiny"}) == recipes.RECIPES_DIR / "clinical_tiny.yaml"
    own = tmp_path / "sft_qwen2_tiny.yaml"  # an existing file wins over the shipped name
    own.write_text("trainer: sft\n")
    assert recipes.resolve("sft_qwen2_tiny.yaml") == Path("sft_qwen2_tiny.yaml")
    with pytest.raises(ConfigError, match="no such recipe.*sft_qwen2_tiny"):
        recipes.resolve("nope")
    with pytest.raises(ConfigError, match="no such recipe"):
        recipes.resolve("elsewhere/sft_qwen2_tiny.yaml")  # a path that is not there is not a name


def test_the_checkout_configs_folder_is_the_shipped_recipes():
    assert sorted(p.name for p in (ROOT / "configs").glob("*.yaml")) == [
        p.name for p in recipes.recipe_paths()
    ]


def test_medrl_recipes_lists_every_recipe_with_its_header(cli, capsys):
    assert cli("recipes") == 0
    out = capsys.readouterr().out
    for path in recipes.recipe_paths():
        assert f"{path.stem}" in out and recipes.header(path) in out


def test_missing_demo_data_names_the_command(cli, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli("train", "sft_qwen2_tiny", "--run.max_steps=1") == 2
    assert "medrl recipes --data" in capsys.readouterr().err.strip().splitlines()[-1]
    assert cli("train", "no_such_recipe") == 2
    assert "`medrl recipes` lists them" in capsys.readouterr().err


def test_recipe_data_has_every_file_the_tiny_recipes_read(cli, tmp_path, monkeypatch):
    from training.data.records import read_jsonl

    monkeypatch.chdir(tmp_path)
    assert cli("recipes", "--data") == 0
    for name in TINY:
        raw = yaml.safe_load(recipes.resolve(name).read_text())
        kind = {"sft": "sft", "dpo": "dpo", "rl": "rl"}[raw["trainer"]]
        data = read_jsonl(raw["data"]["train"], kind)
        assert len(data) >= 8, name
        assert not data.skipped, (name, data.skipped[:2])


@pytest.mark.slow
def test_every_single_stage_tiny_recipe_trains_one_step_as_written(cli, tmp_path, monkeypatch, one_thread):
    """`make demo` writes runs/demo_data; then `medrl train NAME --run.max_steps=1` works for each tiny recipe."""
    monkeypatch.chdir(tmp_path)
    assert cli("recipes", "--data") == 0
    for name in TINY:
        assert cli("train", name, "--run.max_steps=1", "--run.save_every=0") == 0, name
        rows = [json.loads(x) for x in (tmp_path / "runs" / name / "metrics.jsonl").read_text().splitlines()]
        assert any(r.get("step") == 1 for r in rows), name
        assert (tmp_path / "runs" / name / "adapter" / "adapter_config.json").is_file(), name
