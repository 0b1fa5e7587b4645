"""`medrl dermiq ablate`: GRPO vs the two GRPO++ readings from the same start, same budget, G=3.

Arms (all the recipe's `grpo++:` section, so sampler, rewards, loss, reference and optimiser are the same; only
`advantages.estimator` differs):
- ``grpo``: group z-score of the summed rewards; a group whose G samples score alike teaches nothing;
- ``grpo++``: the same, with a binary fallback (+1 right / -1 wrong) for groups with no spread;
- ``binary``: +1 right / -1 wrong for every sample (the "different binary advantage" reading).
The start is the warm-up adapter (OUT/warmup, trained first when missing, or `pipeline.start_adapter`). Per arm and
seed (OUT/<arm>_s<seed>): the share of groups whose rewards spread (``spread``: all a plain z-score can learn from),
the share of groups that get a non-zero advantage (``signal``), the share whose G answers are not all right or all
wrong (``mixed``), the mean reward over the run, and the held-out balanced accuracy (`dermiq.evaluate`). The table
(`training.trainers.ablation`: per arm the mean over seeds ± half their spread, then every run) goes to OUT/ablation.md,
OUT/ablation.csv and OUT/ablation.json.
"""

from __future__ import annotations

from pathlib import Path

from training.trainers.ablation import AblationTable, Arm, run_arms

from .pipeline import FOLDERS, PIPELINE

ARMS = ("grpo", "grpo++", "binary")
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
    "GRPO vs GRPO++ (both readings) from {start}, G={group_size}, {steps} steps, seeds {seeds}; "
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
    start = PIPELINE.previous_adapter(ctx.out, "grpo++", pc.start_adapter) or PIPELINE.run_stage(
        ctx, "warmup"
    )
    limit = limit or pc.eval_limit or None

    def evaluate(run: Path) -> dict:
        m = evaluate_run(run, test, limit=limit, max_new_tokens=pc.eval_max_new_tokens, tag="ablation")
        return {k: m.get(k) for k in ("balanced_accuracy", "format_valid", "kg_faithfulness")}

    runs = []
    warmup = ctx.out / FOLDERS["warmup"]
    if warmup.is_dir():
        runs.append({"arm": "start", "seed": pc.seed, **dict.fromkeys(RUN_STATS), **evaluate(warmup)})
    chosen = [
        Arm(
            a,
            {"advantages": {"estimator": a}, "rollout": {"num_generations": group_size}},
            folder=FOLDERS.get(a, a),
        )
        for a in arms
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
        lambda run, arm: {**run_stats(run, arm.name), **evaluate(run)},
    )
    header = {
        "seeds": seeds,
        "group_size": group_size,
        "steps": (raw["grpo++"].get("run") or {}).get("max_steps"),
        "start": str(start),
        "test": str(test),
    }
    return TABLE.write(ctx.out, header, runs)


def table(result: dict) -> str:
    """Markdown: one row per arm (mean over seeds), then every run."""
    return TABLE.markdown(result)
