"""`medrl clinical tree-ablate`: Tree-GRPO vs chains on multi-step cases at equal sampled tokens, one change per arm.

Every arm is the recipe's `rl:` section (`clinical_cases_pipeline_tiny`: the environment, rewards, loss, optimiser,
and the token budget `max_generated_tokens`) from the same cold-start adapter, with one change from the arm it is
compared with (`training.trainers.ablation`: paired differences over seeds, 95% intervals):

| arm | changes | versus |
|---|---|---|
| ``chains`` | G independent chains per prompt (as many as a tree pair's leaves), GRPO advantages | |
| ``tree:grpo`` | the sampler: trees (2 per prompt, 2 nodes below the root expanded), the same GRPO advantages | chains |
| ``tree`` | the advantage: + the intra-tree z-score (Tree-GRPO) | tree:grpo |
| ``tree:uniform`` | the expansion: the root may branch too (a branch from it is a whole new chain), the paper's | tree |

Each run stops when it has sampled the budget's tokens (every turn of every node; a tree's shared nodes once), so
the arms are compared at equal generation cost, which is the paper's claim: trees get more trajectories, and so
more updates, from the same tokens. Each run is then measured by greedy play of held-out cases
(`clinical.case_eval`: accuracy, answer rate, questions, valid actions, tokens per case) and by what it trained on
(steps, tokens sampled, trajectories, the training reward's mean over the run), from its metrics.jsonl.
"""

from __future__ import annotations

from pathlib import Path

from training.trainers.ablation import AblationTable, Arm, run_arms

from .case_eval import FIELDS, CaseEvaluation
from .case_pipeline import PIPELINE

ARM_SPECS = (
    Arm(
        "chains",
        {"rollout": {"strategy": "group"}, "advantages": {"estimator": "grpo"}},
        changes="G chains, GRPO advantages",
    ),
    Arm(
        "tree:grpo",
        {"advantages": {"estimator": "grpo"}},
        folder="tree_grpo",
        changes="sampler: trees",
        versus="chains",
    ),
    Arm("tree", changes="advantage: + intra-tree", versus="tree:grpo"),
    Arm(
        "tree:uniform",
        {"rollout": {"tree": {"expand": "uniform"}}},
        folder="tree_uniform",
        changes="expansion: the root may branch too",
        versus="tree",
    ),
)
ARMS = tuple(a.name for a in ARM_SPECS)
RUN_STATS = ("steps", "tokens_sampled", "trajectories", "reward")  # read from a run's metrics.jsonl
SHOWN = (*FIELDS, *RUN_STATS)
TABLE = AblationTable(
    "Tree-GRPO vs chains at {budget} sampled tokens a run, one change per arm, from {start}, seeds {seeds}; "
    "{n} held-out cases ({test}), greedy",
    SHOWN,
    SHOWN,
)


def run_stats(run_dir: Path) -> dict:
    """What a run trained on, from its metrics.jsonl: steps, tokens sampled, trajectories, the mean reward."""
    from training.run.rundir import RunDir

    rows = [r for r in RunDir(run_dir).read_metrics() if "reward/mean" in r]
    if not rows:
        return dict.fromkeys(RUN_STATS)
    return {
        "steps": float(len(rows)),
        "tokens_sampled": float(rows[-1].get("tokens_generated_total", 0.0)),
        "trajectories": float(sum(r.get("rollout/trajectories", 0.0) for r in rows)),
        "reward": sum(r["reward/mean"] for r in rows) / len(rows),
    }


def run_ablation(
    raw: dict,
    out: str | Path,
    seeds: list[int],
    limit: int | None = None,
    arms: tuple[str, ...] = ARMS,
) -> dict:
    """Train the shared cold start, then every (seed, arm) RL run to the token budget; evaluate each and the start."""
    ctx = PIPELINE.context(raw, out)
    test = ctx.data / "test.jsonl"
    adapter = PIPELINE.run_stage(ctx, "sft")
    limit = limit or ctx.settings.eval_limit or None
    rl = raw["rl"]

    def measure(run: Path) -> dict:
        m = CaseEvaluation(run, test, limit=limit, tag="ablation")()
        return {"n": m["n"], **{k: m[k] for k in FIELDS}}

    start = measure(ctx.out / "sft")
    runs = [{"arm": "start (sft)", "seed": ctx.settings.seed, **start, **dict.fromkeys(RUN_STATS)}]
    extra = {"data": {"train": str(ctx.data / "train.jsonl")}, "model": {"adapter": str(adapter)}}
    chosen = [a for a in ARM_SPECS if a.name in arms]
    runs += run_arms(
        PIPELINE,
        raw,
        "rl",
        ctx.out,
        seeds,
        chosen,
        extra,
        lambda run, arm: {**measure(run), **run_stats(run)},
    )
    header = {
        "seeds": seeds,
        "budget": rl.get("max_generated_tokens"),
        "max_steps": (rl.get("run") or {}).get("max_steps"),
        "test": str(test),
        "n": start["n"],
        "start": str(adapter),
    }
    return TABLE.write(ctx.out, header, runs, chosen)
