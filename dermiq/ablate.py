"""`medrl dermiq ablate`: from plain GRPO to GRPO++ and its variants, one change per arm, same start, same budget.

Every arm is the recipe's `grpo++:` section (sampler, rewards, loss, optimiser, budget the same) with one change
from the arm it is compared with (`training.trainers.ablation`: paired differences over seeds, 95% intervals):

| arm | changes | versus |
|---|---|---|
| ``grpo`` | plain GRPO: group z-score, no reference (the ratio's old policy is the sampler), no KL | |
| ``grpo+lag`` | the lagged reference (re-synced every 10 steps) as the ratio's old policy | grpo |
| ``grpo+lag+k1`` | + the k1 KL to it (beta 1e-3): the seed's GRPO++ settings with GRPO's estimator | grpo+lag |
| ``grpo++`` | the `grpo++` estimator (a flat group gets +1 / -1 by correctness): the recipe | grpo+lag+k1 |
| ``binary`` | the `binary` estimator (+1 / -1 by correctness in every group) | grpo++ |
| ``grpo++k3`` | the k3 KL estimator instead of k1 | grpo++ |

The start is the warm-up adapter (OUT/warmup, trained first when missing, or `pipeline.start_adapter`). Per arm and
seed (OUT/<arm>_s<seed>): the share of groups whose rewards spread (``spread``: all a plain z-score can learn from),
the share of groups that get a non-zero advantage (``signal``), the share whose G answers are not all right or all
wrong (``mixed``), the mean reward over the run, and the held-out balanced accuracy (`dermiq.evaluate`). The tables
go to OUT/ablation.md, OUT/ablation.csv and OUT/ablation.json.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from training.config import merge
from training.trainers.ablation import AblationTable, Arm, run_arms

from .pipeline import FOLDERS, PIPELINE

NO_REFERENCE = {"reference": {"kind": "none"}, "loss": {"beta": 0.0}}
ARM_SPECS = (
    Arm(
        "grpo",
        {**NO_REFERENCE, "advantages": {"estimator": "grpo"}},
        replaces=("reference",),
        changes="plain GRPO",
    ),
    Arm(
        "grpo+lag",
        {"advantages": {"estimator": "grpo"}, "loss": {"beta": 0.0}},
        folder="grpo_lag",
        changes="lagged old policy",
        versus="grpo",
    ),
    Arm(
        "grpo+lag+k1",
        {"advantages": {"estimator": "grpo"}},
        folder="grpo_lag_k1",
        changes="+ k1 KL 1e-3",
        versus="grpo+lag",
    ),
    Arm("grpo++", folder="grpopp", changes="estimator grpo++", versus="grpo+lag+k1"),
    Arm("binary", {"advantages": {"estimator": "binary"}}, changes="estimator binary", versus="grpo++"),
    Arm(
        "grpo++k3", {"loss": {"kl_estimator": "k3"}}, folder="grpopp_k3", changes="k3 for k1", versus="grpo++"
    ),
)
ARMS = tuple(a.name for a in ARM_SPECS)
RUN_STATS = ("spread", "signal", "mixed", "reward", "accuracy_reward")  # read from a run's metrics.jsonl
SHOWN = (
    "spread",
    "signal",
    "mixed",
    "reward",
    "accuracy_reward",
    "balanced_accuracy",
    "format_valid",
    "kg_faithfulness",
)
TABLE = AblationTable(
    "GRPO to GRPO++, one change per arm, from {start}, G={group_size}, {steps} steps, seeds {seeds}; "
    "held-out {test} (greedy)",
    SHOWN,
    SHOWN,
)


def run_stats(run_dir: Path, estimator: str) -> dict:
    """Means over the run's steps of the group shares and rewards, from its metrics.jsonl."""
    from training.run.rundir import RunDir

    rows = [r for r in RunDir(run_dir).read_metrics() if "reward/mean" in r]
    if not rows:
        return dict.fromkeys(RUN_STATS)

    def mean(key, default=None):
        vals = [r[key] for r in rows if key in r]
        return sum(vals) / len(vals) if vals else default

    flat = mean("adv/frac_flat_groups", 0.0)
    return {
        "spread": 1.0 - flat,
        "signal": 1.0 - flat if estimator == "grpo" else 1.0,
        "mixed": 1.0 - mean("reward/derm_accuracy/frac_zero_std_groups", 1.0),
        "reward": mean("reward/mean"),
        "accuracy_reward": mean("reward/derm_accuracy/mean"),
        "steps": len(rows),
    }


def run_ablation(
    raw: dict,
    out: str | Path,
    seeds: list[int],
    arms: tuple[str, ...] = ARMS,
    group_size: int = 3,
    limit: int | None = None,
) -> dict:
    """Train (or reuse) the warm-up start, then every (seed, arm) GRPO run; evaluate each and the start."""
    from .evaluate import evaluate_run

    ctx = PIPELINE.context(raw, out)
    pc, test = ctx.settings, ctx.data / "test.jsonl"
    start = PIPELINE.previous_adapter(
        ctx.out, "grpo++", pc.start_adapter, pc.chain_from
    ) or PIPELINE.run_stage(ctx, "warmup")
    limit = limit or pc.eval_limit or None

    def evaluate(run: Path) -> dict:
        m = evaluate_run(run, test, limit=limit, max_new_tokens=pc.eval_max_new_tokens, tag="ablation")
        return {k: m.get(k) for k in ("balanced_accuracy", "format_valid", "kg_faithfulness")}

    runs = []
    warmup = ctx.out / FOLDERS["warmup"]
    if warmup.is_dir():
        runs.append({"arm": "start", "seed": pc.seed, **dict.fromkeys(RUN_STATS), **evaluate(warmup)})
    chosen = [
        replace(spec, overrides=merge(spec.overrides, {"rollout": {"num_generations": group_size}}))
        for spec in ARM_SPECS
        if spec.name in arms
    ]
    extra = {"data": {"train": str(ctx.data / "train.jsonl")}, "model": {"adapter": str(start)}}
    runs += run_arms(
        PIPELINE,
        raw,
        "grpo++",
        ctx.out,
        seeds,
        chosen,
        extra,
        lambda run, arm: {
            **run_stats(run, arm.overrides.get("advantages", {}).get("estimator", "grpo++")),
            **evaluate(run),
        },
    )
    header = {
        "seeds": seeds,
        "group_size": group_size,
        "steps": (raw["grpo++"].get("run") or {}).get("max_steps"),
        "start": str(start),
        "test": str(test),
    }
    return TABLE.write(ctx.out, header, runs, chosen)


def table(result: dict) -> str:
    """Markdown: one row per arm (mean over seeds), then every run."""
    return TABLE.markdown(result)
