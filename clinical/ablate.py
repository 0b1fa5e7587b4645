"""`medrl clinical ablate`: GRPO vs CRPO and CRPO's parts, one change per arm, from the same cold-start adapter.

Every arm is the recipe's `crpo:` section (sampler, loss, reference, optimiser, budget the same) with one change
from the arm it is compared with (`training.trainers.ablation`: paired differences over seeds, 95% intervals):

| arm | changes | versus |
|---|---|---|
| ``grpo`` | GRPO's rewards: accuracy + format + language (10 / 1 / 0.5), the recipe's aggregation | |
| ``crpo`` | CRPO's five objectives (+ faithfulness, comprehensiveness): the recipe | grpo |
| ``crpo:sum_then_normalize`` | aggregation: z-score of the weighted sum | crpo |
| ``crpo:normalize_then_weighted_sum`` | aggregation: per-objective z-scores, weighted sum, no batch z-score | crpo |
| ``crpo-<objective>`` | that objective's weight 0 (logged, not trained on), for each of the five | crpo |

One SFT run (OUT/sft) is the start of every arm; each arm and seed is its own run (OUT/<arm>_s<seed>), evaluated
greedily on the held-out test split (vignettes never seen in SFT or RL). The tables go to OUT/ablation.json,
OUT/ablation.csv and OUT/ablation.md. `--arms` picks arms (default grpo,crpo; every arm: `--arms all`).
"""

from __future__ import annotations

from pathlib import Path

from training.trainers.ablation import AblationTable, Arm, run_arms

from .evaluate import FIELDS, evaluate_run
from .pipeline import PIPELINE

GRPO_REWARDS = {"clinical_accuracy": 10.0, "clinical_format": 1.0, "clinical_language": 0.5}
OBJECTIVES = (
    "clinical_accuracy",
    "clinical_format",
    "clinical_language",
    "clinical_faithfulness",
    "clinical_comprehensiveness",
)
# The GRPO arm replaces the reward table whole (the CRPO objectives are not merged back in).
ARM_SPECS = (
    Arm("grpo", {"rewards": GRPO_REWARDS}, replaces=("rewards",), changes="GRPO rewards"),
    Arm("crpo", changes="CRPO rewards", versus="grpo"),
    *(
        Arm(
            f"crpo:{agg}",
            {"advantages": {"aggregation": agg}},
            folder=f"crpo_{agg}",
            changes=agg,
            versus="crpo",
        )
        for agg in ("sum_then_normalize", "normalize_then_weighted_sum")
    ),
    *(
        Arm(
            f"crpo-{name.removeprefix('clinical_')}",
            {"rewards": {name: 0.0}},
            changes=f"{name} weight 0",
            versus="crpo",
        )
        for name in OBJECTIVES
    ),
)
ARMS = tuple(a.name for a in ARM_SPECS)
DEFAULT_ARMS = ("grpo", "crpo")
SHOWN = (
    "accuracy",
    "format_ok",
    "faithfulness",
    "evidence",
    "evidence_per_100_words",
    "hallucination_rate",
    "consistency",
    "comprehensiveness",
    "rejection_coverage",
    "verifications",
    "length_tokens",
    "truncated",
)
# truncated: the share of answers that hit the token limit (a longer answer loses its box)
MEASURES = (*FIELDS, "truncated")
TABLE = AblationTable(
    "GRPO vs CRPO, one change per arm, from {start}, {steps} RL steps, seeds {seeds}, {n} held-out questions "
    "({test}), greedy",
    MEASURES,
    SHOWN,
)


def run_ablation(
    raw: dict,
    out: str | Path,
    seeds: list[int],
    limit: int | None = None,
    max_new_tokens: int | None = None,
    arms: tuple[str, ...] = DEFAULT_ARMS,
) -> dict:
    """Train the shared SFT start, then every (seed, arm) run for the recipe's crpo.run.max_steps; evaluate each."""
    ctx = PIPELINE.context(raw, out)
    test = ctx.data / "test.jsonl"
    adapter = PIPELINE.run_stage(ctx, "sft")
    limit = limit or ctx.settings.eval_limit or None

    def measure(run: Path, n_tok: int | None) -> dict:
        return evaluate_run(run, test, limit=limit, max_new_tokens=n_tok, tag="ablation")

    def pick(m: dict) -> dict:
        return {k: m[k] for k in MEASURES}

    start = measure(
        ctx.out / "sft", max_new_tokens or (raw["crpo"].get("rollout") or {}).get("max_new_tokens")
    )
    runs = [{"arm": "start (sft)", "seed": ctx.settings.seed, **pick(start)}]
    extra = {"data": {"train": str(ctx.data / "train.jsonl")}, "model": {"adapter": str(adapter)}}
    chosen = [a for a in ARM_SPECS if a.name in arms]
    runs += run_arms(
        PIPELINE,
        raw,
        "crpo",
        ctx.out,
        seeds,
        chosen,
        extra,
        lambda run, arm: pick(measure(run, max_new_tokens)),
    )
    header = {
        "seeds": seeds,
        "steps": (raw["crpo"].get("run") or {}).get("max_steps"),
        "test": str(test),
        "n": start["n"],
        "start": str(adapter),
    }
    return TABLE.write(ctx.out, header, runs, chosen)


def table(result: dict) -> str:
    """Markdown: arm means (± sd over seeds), paired differences with 95% intervals, then every run."""
    return TABLE.markdown(result)
