"""`medrl clinical ablate`: GRPO vs CRPO from the same cold-start adapter, same budget, evaluated side by side.

Arms (both from the recipe's `crpo:` section, so the sampler, loss, reference and optimiser are the same):
- ``grpo``: accuracy + format + language only (weights 10 / 1 / 0.5), ``sum_then_normalize`` (plain GRPO);
- ``crpo``: the recipe's five objectives and aggregation (recommended weights, ``normalize_then_sum``).
One SFT run (OUT/sft) is the start of every arm; each arm and seed is its own run (OUT/<arm>_s<seed>), evaluated
greedily on the held-out test split (vignettes never seen in SFT or RL). The table (`training.trainers.ablation`: per arm the
mean over seeds ± half their spread, then each run) goes to OUT/ablation.json, OUT/ablation.csv and OUT/ablation.md.
"""

from __future__ import annotations

from pathlib import Path

from training.trainers.ablation import AblationTable, Arm, run_arms

from .evaluate import FIELDS, evaluate_run
from .pipeline import PIPELINE

GRPO_REWARDS = {"clinical_accuracy": 10.0, "clinical_format": 1.0, "clinical_language": 0.5}
# The GRPO arm replaces the reward table whole (the CRPO objectives are not merged back in).
ARMS = (
    Arm(
        "grpo",
        {"rewards": GRPO_REWARDS, "advantages": {"aggregation": "sum_then_normalize"}},
        replaces=("rewards",),
    ),
    Arm("crpo"),
)
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
    "GRPO vs CRPO from {start}, {steps} RL steps, seeds {seeds}, {n} held-out questions ({test}), greedy",
    MEASURES,
    SHOWN,
)


def run_ablation(
    raw: dict, out: str | Path, seeds: list[int], limit: int | None = None, max_new_tokens: int | None = None
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
    runs += run_arms(
        PIPELINE,
        raw,
        "crpo",
        ctx.out,
        seeds,
        list(ARMS),
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
    return TABLE.write(ctx.out, header, runs)


def table(result: dict) -> str:
    """Markdown: arm means (± half the seed spread), then every run."""
    return TABLE.markdown(result)
