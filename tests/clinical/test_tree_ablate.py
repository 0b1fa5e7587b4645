"""`medrl clinical tree-ablate`: Tree-GRPO vs chains at equal sampled tokens. The arms change one setting each (resolved
through the code that trains them); an RL run stops at its token budget and counts every sampled token; the whole
command runs on the embedded default (cold start, three arms to a tiny budget, held-out cases played greedily) and
writes its table."""

from __future__ import annotations

import json

import pytest

from clinical.case_pipeline import PIPELINE
from clinical.tree_ablate import ARM_SPECS
from training.trainers.ablation import arm_config, config_diff


def test_each_tree_arm_changes_one_setting_from_the_arm_it_is_compared_with(tmp_path, arm_inputs):
    raw = PIPELINE.load_recipe("tiny")
    cfgs = {a.name: arm_config(PIPELINE, raw, "rl", tmp_path, 0, a, arm_inputs) for a in ARM_SPECS}
    assert config_diff(cfgs["tree:grpo"], cfgs["chains"]) == {"rollout.strategy": ("tree", "group")}
    assert config_diff(cfgs["tree"], cfgs["tree:grpo"]) == {"advantages.estimator": ("tree", "grpo")}
    assert config_diff(cfgs["tree:uniform"], cfgs["tree"]) == {"rollout.tree.expand": ("uniform", "internal")}
    chains, tree = cfgs["chains"], cfgs["tree"]
    # the same trajectories per prompt (G chains = M trees x their leaves) and the same token budget
    assert chains.rollout.num_generations == tree.rollout.tree.m * (
        1 + tree.rollout.tree.n * tree.rollout.tree.l
    )
    assert chains.max_generated_tokens == tree.max_generated_tokens == raw["rl"]["max_generated_tokens"]


def _rows(run_dir):
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "reward/mean" in r]  # the steps' rows


@pytest.mark.slow
def test_tree_ablate_runs_every_arm_to_the_budget_and_writes_the_table(cli, tmp_path, one_thread, capsys):
    out = tmp_path / "abl"
    assert (
        cli(
            "clinical",
            "tree-ablate",
            f"--out={out}",
            "--seeds=0",
            "--arms=chains,tree:grpo,tree",  # tree:uniform is the same code path with one setting changed
            "--sft-steps=1",
            "--steps=6",
            "--budget=60",
            "--limit=1",
            "--pipeline.cases=4",
            "--pipeline.test_cases=1",
            "--rl.prompts_per_step=1",
            "--rl.rollout.max_turns=2",
            "--rl.rollout.env_args.max_turns=2",
            "--rl.rollout.max_new_tokens=8",
        )
        == 0
    )
    captured = capsys.readouterr()
    table = captured.out
    result = json.loads((out / "ablation.json").read_text())
    assert result["budget"] == 60 and result["n"] == 1
    runs = {r["arm"]: r for r in result["runs"]}
    assert set(runs) == {"start (sft)", "chains", "tree:grpo", "tree"}
    assert "token budget spent" in captured.err and "token budget" not in table  # status on stderr
    for arm, folder in (("chains", "chains"), ("tree:grpo", "tree_grpo"), ("tree", "tree")):
        r = runs[arm]
        assert 0 <= r["accuracy"] <= 1 and r["tokens"] > 0
        assert r["trajectories"] == 6 * r["steps"]  # one prompt a step, six trajectories each
        # every sampled token counted, and the run stopped after the step that reached the budget
        rows = _rows(out / f"{folder}_s0")
        totals = [x["tokens_generated_total"] for x in rows]
        assert totals == [sum(x["rollout/tokens_generated"] for x in rows[: i + 1]) for i in range(len(rows))]
        assert totals[-1] == r["tokens_sampled"] >= 60 and (len(totals) == 1 or totals[-2] < 60), (
            arm,
            totals,
        )
        assert len(rows) == r["steps"] < 6  # the budget ended it, not run.max_steps
        state = json.loads(next((out / f"{folder}_s0").glob("checkpoints/*/trainer_state.json")).read_text())
        assert state["tokens_generated"] == totals[-1] and state["step"] == len(
            rows
        )  # a resume keeps the count
    recorded = {
        a: json.loads((out / f"{a}_s0" / "trees" / "step-1.jsonl").read_text().splitlines()[0])
        for a in ("chains", "tree")
    }
    assert len(recorded["chains"]["nodes"]) == 1 + 2  # the prompt and one two-turn chain (a tree of one leaf)
    assert "| tree | advantage: + intra-tree | tree:grpo |" in table
    # the command a user runs on one run gives the ablation's figures for it
    assert (
        cli(
            "clinical",
            "case-eval",
            out / "tree_s0",
            "--data",
            out / "data" / "test.jsonl",
            "--limit",
            "1",
            "--json",
        )
        == 0
    )
    again = json.loads(capsys.readouterr().out)
    assert {k: again[k] for k in ("accuracy", "questions", "tokens")} == {
        k: runs["tree"][k] for k in ("accuracy", "questions", "tokens")
    }
    assert (out / "ablation.md").read_text().startswith("Tree-GRPO vs chains at 60 sampled tokens")
