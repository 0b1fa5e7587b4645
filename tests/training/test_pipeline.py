"""The pipeline frame (`training.trainers.pipeline`) on real recipe files and run folders: stage order, the chaining rule,
resuming (a finished stage is reused, an interrupted one resumes), `stages` spellings and errors, evaluation; the
ablation arms (`training.trainers.ablation.run_arms`) and the shared train command trained through it.

The stages train with a stand-in trainer registered under its own kind (`touch`): it writes a finished adapter into
the real run folder and logs its call, so every test runs in milliseconds on real files."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from training.config import RunConfig
from training.errors import ConfigError, DataError
from training.run.rundir import ADAPTER_WEIGHTS, CHECKPOINT_MARKER, RunDir
from training.trainers import pipeline_cli
from training.trainers.ablation import Arm, run_arms
from training.trainers.pipeline import Pipeline, PipelineSettings, Stage, data_folder
from training.trainers.trainer_kinds import TRAINERS


@dataclass
class TouchModel:
    adapter: str | None = None


@dataclass
class TouchData:
    train: str | None = None


@dataclass
class TouchConfig:
    """The stand-in trainer's config: what a stage's section, the chain and the inputs hook set."""

    trainer: str = "touch"
    run: RunConfig = field(default_factory=RunConfig)
    model: TouchModel = field(default_factory=TouchModel)
    data: TouchData = field(default_factory=TouchData)
    lr: float = 0.1


def touch_train(cfg: TouchConfig, resume: bool = False) -> dict:
    """Log the call in OUT/calls.jsonl, then write the run's finished adapter."""
    out = Path(cfg.run.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "calls.jsonl", "a", encoding="utf-8") as f:
        f.write(
            json.dumps(
                {
                    "run": cfg.run.name,
                    "adapter": cfg.model.adapter,
                    "data": cfg.data.train,
                    "seed": cfg.run.seed,
                    "steps": cfg.run.max_steps,
                    "lr": cfg.lr,
                    "resume": resume,
                }
            )
            + "\n"
        )
    run = RunDir(cfg.run.dir)
    run.adapter_dir.mkdir(parents=True, exist_ok=True)
    (run.adapter_dir / ADAPTER_WEIGHTS).write_bytes(b"weights")
    return {}


@pytest.fixture(autouse=True)
def touch_trainer(monkeypatch):
    monkeypatch.setitem(TRAINERS, "touch", (f"{__name__}:TouchConfig", f"{__name__}:touch_train"))


def calls(out: Path) -> list[dict]:
    path = out / "calls.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []


def data_inputs(name: str):
    """A stage's inputs hook: its data file, noted on disk so a test sees the hook ran."""

    def inputs(ctx, start):
        (ctx.out / f"inputs_{name}").write_text(str(start))
        return {"data": {"train": str(ctx.data / f"{name}.jsonl")}}

    return inputs


def prepare(pc: PipelineSettings, out: Path) -> Path:
    data = out / "data"
    data.mkdir(exist_ok=True)
    (data / "test.jsonl").write_text("{}\n")
    return data


def evaluate(run: Path, test: Path, pc: PipelineSettings) -> dict:
    return {"run": str(run), "test": str(test), "limit": pc.eval_limit}


PIPE = Pipeline(
    stages=(
        Stage("first", "touch", data_inputs("first")),
        Stage("rl++", "touch", data_inputs("rl"), folder="rlpp", aliases=("rlpp",)),
        Stage("last", "touch", data_inputs("last")),
    ),
    settings_class=PipelineSettings,
    recipes={},
    prepare_data=prepare,
    evaluate=evaluate,
)


def recipe(tmp_path: Path, pipeline: dict | None = None, **sections) -> Path:
    body = {"pipeline": pipeline or {}, "first": {}, "rl++": {"lr": 0.5}, "last": {}, **sections}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def run(tmp_path: Path, overrides: list[str] | None = None, evaluate: str = "none", **kw) -> dict:
    raw = PIPE.load_recipe(str(recipe(tmp_path, **kw)), overrides)
    return PIPE.run(raw, tmp_path / "out", evaluate=evaluate)


def test_stages_run_in_pipeline_order_each_from_the_one_before(tmp_path):
    result = run(tmp_path, ["--pipeline.stages=[last,first,rl++]", "--pipeline.seed=7"])
    out = tmp_path / "out"
    assert list(result["runs"]) == ["first", "rl++", "last"]  # pipeline order, whatever the list says
    assert result["runs"]["rl++"] == str(out / "rlpp") and result["adapters"]["last"] == str(
        out / "last" / "adapter"
    )
    made = calls(out)
    assert [c["run"] for c in made] == ["first", "rlpp", "last"]
    assert [c["adapter"] for c in made] == [
        None,
        str(out / "first" / "adapter"),
        str(out / "rlpp" / "adapter"),
    ]
    assert [c["data"] for c in made] == [str(out / "data" / f"{n}.jsonl") for n in ("first", "rl", "last")]
    assert {c["seed"] for c in made} == {7} and [c["lr"] for c in made] == [
        0.1,
        0.5,
        0.1,
    ]  # each its own section


def test_rerun_reuses_finished_stages_and_resumes_an_interrupted_one(tmp_path, capsys):
    out = tmp_path / "out"
    run(tmp_path, ["--pipeline.stages=[first]"])
    rl = RunDir(out / "rlpp")  # interrupted: a published checkpoint, no adapter
    rl.checkpoint_dir(1).mkdir(parents=True)
    (rl.checkpoint_dir(1) / CHECKPOINT_MARKER).write_text("{}")
    (out / "inputs_first").unlink()
    capsys.readouterr()
    run(tmp_path)
    made = calls(out)
    assert [(c["run"], c["resume"]) for c in made] == [("first", False), ("rlpp", True), ("last", False)]
    assert "first already finished" in capsys.readouterr().out.replace(str(out) + "/", "")
    assert not (out / "inputs_first").exists()  # a finished stage's inputs are not built again
    run(tmp_path)
    assert len(calls(out)) == 3  # all finished: nothing trains


def test_a_reused_stage_says_which_new_settings_it_did_not_train_with(tmp_path, capsys):
    out = tmp_path / "out"
    run(tmp_path, ["--pipeline.stages=[rl++]"])
    (out / "rlpp" / "config.yaml").write_text(
        yaml.safe_dump({"lr": 0.5, "run": {"name": "rlpp", "max_steps": 10}})
    )
    capsys.readouterr()
    run(tmp_path, ["--pipeline.stages=[rl++]", "--rl++.lr=2e-1", "--rl++.run.max_steps=10"])
    said = capsys.readouterr().out
    assert len(calls(out)) == 1  # reused, not retrained
    assert (
        "warning: rl++ is reused as it finished, but the recipe now says lr: '2e-1' (it ran with 0.5)" in said
    )
    assert (
        "max_steps" not in said and f"use another --out than {out}" in said
    )  # an equal setting is not named
    run(tmp_path, ["--pipeline.stages=[rl++]", "--rl++.lr=5.0e-1"])  # 5.0e-1 == 0.5: nothing to say
    assert "warning" not in capsys.readouterr().out


def test_a_stage_alone_starts_from_the_nearest_finished_earlier_stage_else_the_start_adapter(tmp_path):
    out = tmp_path / "out"
    run(tmp_path, ["--pipeline.stages=[last]", "--pipeline.start_adapter=base/adapter"])
    assert calls(out)[-1]["adapter"] == "base/adapter"  # nothing earlier is finished in OUT
    run(tmp_path, ["--pipeline.stages=[first]"])
    assert calls(out)[-1]["adapter"] is None
    assert (
        PIPE.previous_adapter(out, "last", "base/adapter") == out / "first" / "adapter"
    )  # rl++ skipped: not run
    assert PIPE.previous_adapter(out, "first", "base/adapter") == Path("base/adapter")
    assert PIPE.previous_adapter(out, "first", None) is None


def test_stage_spellings_and_recipe_errors_are_one_line_and_name_the_file(tmp_path):
    raw = PIPE.load_recipe(str(recipe(tmp_path, {"stages": ["RLPP", " last"]})))
    assert PIPE.settings(raw).stages == ["rl++", "last"]
    assert PIPE.settings(PIPE.load_recipe(str(recipe(tmp_path)))).stages == ["first", "rl++", "last"]
    path = recipe(tmp_path)
    with pytest.raises(
        ConfigError, match=r"recipe.yaml: pipeline.stages: unknown stage 'ppo' \(known: first, rl\+\+"
    ):
        PIPE.settings(PIPE.load_recipe(str(path), ["--pipeline.stages=[first,ppo]"]))
    with pytest.raises(ConfigError, match="pipeline.stages: expected a non-empty list"):
        PIPE.settings(PIPE.load_recipe(str(path), ["--pipeline.stages=[]"]))
    with pytest.raises(ConfigError, match="unknown key 'pipeline.sed'"):
        PIPE.settings(PIPE.load_recipe(str(path), ["--pipeline.sed=1"]))
    with pytest.raises(
        ConfigError, match=r"recipe.yaml: rl\+\+\.lr: expected"
    ):  # the file, then the section's key
        PIPE.stage_config(PIPE.load_recipe(str(path), ["--rl++.lr=fast"]), "rl++", tmp_path, 0)
    bare = tmp_path / "bare.yaml"
    bare.write_text("trainer: sft\n")
    with pytest.raises(ConfigError, match="expected a 'pipeline:' section"):
        PIPE.load_recipe(str(bare))
    bare.write_text("pipeline: {}\nfirst: {}\nextra: {}\n")
    with pytest.raises(
        ConfigError, match=r"unknown section\(s\) extra \(known: pipeline, first, rl\+\+, last\)"
    ):
        PIPE.load_recipe(str(bare))
    bare.write_text("pipeline: {}\nfirst: {}\n")
    with pytest.raises(ConfigError, match="stage 'rl\\+\\+' has no 'rl\\+\\+:' section"):
        PIPE.settings(PIPE.load_recipe(str(bare)))
    assert PIPE.settings(PIPE.load_recipe(str(bare), ["--pipeline.stages=[first]"])).stages == ["first"]


def test_evaluation_of_the_last_stage_all_or_none(tmp_path):
    out = tmp_path / "out"
    last = run(tmp_path, ["--pipeline.stages=[first,rl++]", "--pipeline.eval_limit=3"], evaluate="last")
    assert last["eval"] == {
        "rl++": {"run": str(out / "rlpp"), "test": str(out / "data" / "test.jsonl"), "limit": 3}
    }
    assert list(run(tmp_path, evaluate="all")["eval"]) == ["first", "rl++", "last"]
    assert "eval" not in run(tmp_path, evaluate="none")
    assert "eval" not in run(tmp_path, ["--pipeline.eval_limit=0"], evaluate="all")  # 0: no evaluation
    with pytest.raises(ConfigError, match="evaluate: expected one of last, all, none"):
        run(tmp_path, evaluate="best")


def test_ablation_arms_x_seeds_each_a_run_from_the_shared_start(tmp_path):
    raw = PIPE.load_recipe(str(recipe(tmp_path, **{"rl++": {"lr": 0.5, "data": {"train": "own.jsonl"}}})))
    out = tmp_path / "out"
    arms = [
        Arm("plain", {"lr": 0.2}),
        Arm("rl++", folder="rlpp"),
        Arm("bare", {"model": {"adapter": "other"}}, replaces=("data",)),
    ]
    seen = []
    rows = run_arms(
        PIPE,
        raw,
        "rl++",
        out,
        [3, 4],
        arms,
        {"model": {"adapter": "start"}},
        lambda run, arm: seen.append((run.name, arm.name)) or {"score": len(seen)},
    )
    assert [(r["arm"], r["seed"], r["score"]) for r in rows] == [
        ("plain", 3, 1),
        ("rl++", 3, 2),
        ("bare", 3, 3),
        ("plain", 4, 4),
        ("rl++", 4, 5),
        ("bare", 4, 6),
    ]
    assert [s[0] for s in seen] == ["plain_s3", "rlpp_s3", "bare_s3", "plain_s4", "rlpp_s4", "bare_s4"]
    made = {c["run"]: c for c in calls(out)}
    assert made["plain_s3"]["lr"] == 0.2 and made["rlpp_s4"]["lr"] == 0.5  # only what the arm says differs
    assert (
        made["plain_s3"]["data"] == "own.jsonl" and made["bare_s3"]["data"] is None
    )  # `replaces` dropped it
    assert made["rlpp_s3"]["adapter"] == "start" and made["bare_s4"]["adapter"] == "other"
    assert [c["seed"] for c in calls(out)] == [3, 3, 3, 4, 4, 4]
    run_arms(PIPE, raw, "rl++", out, [3, 4], arms, {}, lambda run, arm: {})
    assert len(calls(out)) == 6  # a finished arm run is reused


def test_the_shared_train_command_builds_the_recipe_from_flags(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    pipeline_cli.add_recipe_args(parser, str(tmp_path / "out"), "recipe", "data", "steps")
    pipeline_cli.add_train_args(parser, "stages")
    args = parser.parse_args(
        [
            "--recipe",
            str(recipe(tmp_path)),
            "--stages",
            "first, rlpp",
            "--seed",
            "5",
            "--steps",
            "4",
            "--start-adapter",
            "base/adapter",
            "--no-eval",
        ]
    )
    args.overrides = ["--rl++.lr=0.25", "--pipeline.seed=1"]

    def build(args, extra):
        return pipeline_cli.recipe_from_args(PIPE, args, ("seed",), {"rl++": args.steps}, extra)

    assert args.eval == "none" and pipeline_cli.train(PIPE, args, build, str) == 0
    made = calls(tmp_path / "out")
    # --seed beats the --pipeline.seed override, --steps is the RL stage's, the section override reaches its stage
    assert [(c["run"], c["seed"], c["steps"], c["lr"]) for c in made] == [
        ("first", 5, 10, 0.1),
        ("rlpp", 5, 4, 0.25),
    ]
    assert made[0]["adapter"] == "base/adapter"
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        f"first: {tmp_path / 'out' / 'first'} (adapter {tmp_path / 'out' / 'first' / 'adapter'})",
        f"rl++: {tmp_path / 'out' / 'rlpp'} (adapter {tmp_path / 'out' / 'rlpp' / 'adapter'})",
    ]


def test_data_folder_is_the_users_or_the_builtin_data_written_once(tmp_path):
    written = []

    def write(folder):
        written.append(folder)
        folder.mkdir(parents=True)
        (folder / "test.jsonl").write_text("{}\n")

    out = tmp_path / "out"
    assert data_folder("builtin", "builtin", out, write, "medrl x import") == out / "data"
    assert data_folder("builtin", "builtin", out, write, "medrl x import") == out / "data"
    assert written == [out / "data"]  # its test.jsonl says it is complete: not written again
    with pytest.raises(
        DataError, match=r"mine: expected train.jsonl \(and test.jsonl\) from `medrl x import`"
    ):
        data_folder(str(tmp_path / "mine"), "builtin", out, write, "medrl x import")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "train.jsonl").write_text("{}\n")
    assert data_folder(str(tmp_path / "mine"), "builtin", out, write, "medrl x import") == tmp_path / "mine"
