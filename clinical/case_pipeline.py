"""`medrl clinical tree-ablate`'s pipeline: a cold start on case demonstrations, then RL on multi-step cases.

A pipeline recipe (`clinical_cases_pipeline_tiny`) holds a `pipeline:` section (how many cases, the seed) and two
ordinary trainer recipes: `sft:` (the cold start: a 4-layer model never writes an action tag on its own) and `rl:`
(Tree-GRPO or chains on the `clinical_case` environment, `clinical.cases`). The data folder holds train.jsonl (RL
case records), test.jsonl (held-out cases, from another seed) and sft.jsonl (the train cases' opening actions as
demonstrations). A finished stage is reused, the chain and resuming are `training.trainers.pipeline`'s; the held-out
cases are played greedily by `clinical.case_eval`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from training.config import check
from training.trainers.pipeline import Pipeline, PipelineSettings, Stage, StageContext, data_folder

RECIPES = {"tiny": "clinical_cases_pipeline_tiny"}
TEST_SEED_OFFSET = 10_000  # held-out cases are drawn with seed + this, never with the training cases' seed


@dataclass
class CasePipelineConfig(PipelineSettings):
    """The recipe's `pipeline:` section: `stages`, `seed`, `start_adapter`, `eval_limit` (`PipelineSettings`), and
    the cases.

    Fields:
        data (str, default "embedded"): a folder with train.jsonl, test.jsonl and sft.jsonl (case records,
            `python -m clinical.cases`), or 'embedded': cases written from the KGs into OUT/data.
        cases (int, default 96): training cases for 'embedded'.
        test_cases (int, default 40): held-out cases for 'embedded' (seed + 10000).
        derm_fraction (float, default 0.25): the share of dermatology KG cases (the rest: clinical KG vignettes).
        sft_cuts (int, default 1): demonstration records per case (1: the opening action; 3: also the next two).
    """

    data: str = "embedded"
    cases: int = 96
    test_cases: int = 40
    derm_fraction: float = 0.25
    sft_cuts: int = 1
    eval_limit: int | None = 40

    def validate(self, key: str) -> None:
        check(self.cases >= 4, f"{key}.cases", "an integer >= 4", self.cases)
        check(self.test_cases >= 1, f"{key}.test_cases", "an integer >= 1", self.test_cases)
        check(0 <= self.derm_fraction <= 1, f"{key}.derm_fraction", "a float in [0, 1]", self.derm_fraction)
        check(self.sft_cuts in (1, 2, 3), f"{key}.sft_cuts", "1, 2 or 3", self.sft_cuts)


def prepare_data(pc: CasePipelineConfig, out: Path) -> Path:
    """The user's case folder, or OUT/data: train, held-out test and cold-start cases written from the KGs."""

    def write(folder: Path) -> None:
        from training.data.records import write_jsonl
        from training.rollout.env import OBSERVATION

        from .cases import make_case_records, sft_records

        train = make_case_records(pc.cases, pc.seed, pc.derm_fraction)
        write_jsonl(folder / "sft.jsonl", sft_records(train, OBSERVATION, cuts=pc.sft_cuts))
        write_jsonl(folder / "train.jsonl", train)
        write_jsonl(
            folder / "test.jsonl",
            make_case_records(pc.test_cases, pc.seed + TEST_SEED_OFFSET, pc.derm_fraction),
        )

    return data_folder(pc.data, "embedded", out, write, "python -m clinical.cases")


def _sft_inputs(ctx: StageContext, start: Path | None) -> dict:
    return {"data": {"train": str(ctx.data / "sft.jsonl")}}


def _rl_inputs(ctx: StageContext, start: Path | None) -> dict:
    return {"data": {"train": str(ctx.data / "train.jsonl")}}


def _evaluate(run: Path, test: Path, pc: CasePipelineConfig) -> dict:
    from .case_eval import CaseEvaluation

    return CaseEvaluation(run, test, limit=pc.eval_limit)()


PIPELINE = Pipeline(
    stages=(Stage("sft", "sft", _sft_inputs), Stage("rl", "rl", _rl_inputs)),
    settings_class=CasePipelineConfig,
    recipes=RECIPES,
    prepare_data=prepare_data,
    evaluate=_evaluate,
)
