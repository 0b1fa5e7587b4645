import subprocess
import sys

import pytest

from training.config import load_config, parse_overrides, parse_seeds
from training.errors import ConfigError
from training.trainers.sft_config import SFTConfig


def write(tmp_path, text):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


def test_recipe_and_nested_overrides(tmp_path):
    p = write(
        tmp_path, "trainer: sft\nrun: {name: a, max_steps: 3}\ndata: {train: x.jsonl}\noptim: {lr: 1e-4}\n"
    )
    cfg = load_config(SFTConfig, p, ["--optim.lr=3e-4", "--model.lora.r=4", "--run.name=b"])
    assert cfg.optim.lr == pytest.approx(3e-4)  # YAML 1.1 reads 1e-4 as a string: coerced
    assert cfg.model.lora.r == 4 and cfg.run.name == "b" and cfg.run.max_steps == 3


def test_overrides_parse_yaml_scalars():
    assert parse_overrides(["--a.b=1", "--c=true", "--d=[1, 2]", "--e=x"]) == {
        "a": {"b": 1},
        "c": True,
        "d": [1, 2],
        "e": "x",
    }


@pytest.mark.parametrize(
    "text, overrides, message",
    [
        (
            "data: {train: x}\nrun: {max_step: 3}\n",
            [],
            "unknown key 'run.max_step' (did you mean 'max_steps'?)",
        ),
        ("data: {train: x}\n", ["--optim.lr=fast"], "optim.lr: expected a number, got 'fast'"),
        ("data: {train: x}\n", ["--run.max_steps=0"], "run.max_steps: expected a positive integer, got 0"),
        (
            "data: {train: x}\n",
            ["--model.quantization=3bit"],
            "model.quantization: expected one of 'none', '4bit', '8bit'",
        ),
        (
            "data: {train: x}\n",
            ["--model.lora.dropout=1.5"],
            "model.lora.dropout: expected a float in [0, 1)",
        ),
        ("data: {train: x}\nrun: [1, 2]\n", [], "run: expected a mapping"),
        ("data: {train: x}\nrun:\n  name: a\n bad indent: 1\n", [], "line 4: malformed YAML"),
        ("data: {train: x}\n", ["optim.lr=1"], "expected --key=value"),
    ],
)
def test_config_errors_name_the_key(tmp_path, text, overrides, message):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(SFTConfig, p, overrides)
    assert message in str(e.value)
    assert "\n" not in str(e.value)
    if overrides and overrides[0].startswith("--"):
        assert str(p) in str(e.value)


def test_quantization_requires_lora(tmp_path):
    p = write(tmp_path, "data: {train: x}\nmodel: {quantization: 4bit, lora: {enabled: false}}\n")
    with pytest.raises(ConfigError, match="model.lora.enabled"):
        load_config(SFTConfig, p)


def _medrl(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={
            "MEDRL_PROGRESS": "0",
            "PATH": "/usr/bin:/bin",
            "HOME": str(cwd),
            "PYTHONPATH": str(__import__("pathlib").Path(__file__).resolve().parents[2]),
        },
    )


@pytest.mark.parametrize(
    "recipe, extra, expected",
    [
        (
            "trainer: sft\ndata: {train: d.jsonl}\nmodel: {name: ./no/such/model}\n",
            [],
            "model.name: './no/such/model'",
        ),
        ("trainer: sft\ndata: {train: d.jsonl}\nrun:\n  name: a\n bad: [\n", [], "malformed YAML"),
        (
            "trainer: sft\ndata: {train: d.jsonl}\nmodle: {}\n",
            [],
            "unknown key 'modle' (did you mean 'model'?)",
        ),
        ("trainer: sft\ndata: {train: missing.jsonl}\n", [], "missing.jsonl: data file not found"),
        (
            "trainer: sft\ndata: {train: d.jsonl}\n",
            ["--data.train=bad.jsonl"],
            "bad.jsonl: no usable sft records",
        ),
    ],
)
def test_cli_errors_are_one_line_exit_2(tmp_path, recipe, extra, expected):
    (tmp_path / "r.yaml").write_text(recipe)
    (tmp_path / "d.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}\n'
    )
    (tmp_path / "bad.jsonl").write_text('{"messages": 3}\nnot json\n')
    r = _medrl("train", "r.yaml", *extra, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("medrl: error:")]
    assert len(lines) == 1 and expected in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_debug_shows_traceback(tmp_path):
    (tmp_path / "r.yaml").write_text("trainer: sft\ndata: {train: d.jsonl}\nmodle: {}\n")
    r = _medrl("train", "r.yaml", "--debug", cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" in r.stderr


@pytest.mark.parametrize("text,seeds", [("0,1", [0, 1]), (" 3 ", [3]), ("0,,2,", [0, 2])])
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("command", [["clinical", "ablate"], ["dermiq", "ablate"]])
@pytest.mark.parametrize(
    "text,expected",
    [("0,x", "expected comma-separated integers, got '0,x'"), (",", "expected at least one seed")],
)
def test_ablation_commands_refuse_bad_seeds_before_training(cli, tmp_path, capsys, command, text, expected):
    assert cli(*command, "--out", tmp_path / "abl", "--seeds", text) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("medrl: error: --seeds: ") and expected in err
    assert not (tmp_path / "abl").exists()


def _sections(cls: type) -> list[type]:
    """`cls` and every dataclass its fields hold, depth first, each once."""
    import dataclasses
    from typing import get_type_hints

    out = [cls]
    for f in dataclasses.fields(cls):
        tp = get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            out += [c for c in _sections(tp) if c not in out]
    return out


# Sections whose fields are still described in comments and prose of their modules, not yet in their docstrings.
def test_every_config_field_is_documented_in_its_class_docstring():
    """TRL's way: each field's type, default and meaning in the docstring of the class that declares it, as
    `name (type, default ...)`."""
    import dataclasses

    from training.trainers.dpo_config import DPOConfig
    from training.trainers.rl_config import RLConfig

    missing = []
    for recipe in (SFTConfig, DPOConfig, RLConfig):
        for cls in _sections(recipe):
            doc = "".join(c.__doc__ or "" for c in cls.__mro__ if dataclasses.is_dataclass(c))
            missing += [
                f"{cls.__name__}.{f.name}" for f in dataclasses.fields(cls) if f"{f.name} (" not in doc
            ]
    assert not missing, missing
