"""`medrl clinical train`: optional cold-start SFT on reasoning traces, then CRPO from the cold-start adapter.

A pipeline recipe (`clinical_tiny`, `clinical_r1_qwen25_3b` in `training/recipes/`) holds a `pipeline:` section
(data, stages, traces) and one ordinary trainer recipe per stage (`sft:`, `crpo:`), so each stage is exactly what
`medrl train` would run. Each stage is its own run folder under the pipeline's output (`OUT/sft`, `OUT/crpo`),
chained by adapter (`training.trainers.pipeline`): CRPO starts from OUT/sft/adapter when that stage is finished, else from
`pipeline.start_adapter`, else from the base model. A finished stage (its adapter written) is not run again, so
re-running the command continues an interrupted pipeline from the stage that did not finish. This module supplies
the stages' data (the vignette bank, the boxed cold-start traces) and settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from training.config import check
from training.errors import DataError
from training.trainers.pipeline import Pipeline, PipelineSettings, Stage, StageContext, data_folder

RECIPES = {
    "tiny": "clinical_tiny",
    "3b": "clinical_r1_qwen25_3b",
}  # short names -> shipped recipes (training.recipes)


@dataclass
class PipelineConfig(PipelineSettings):
    """The recipe's `pipeline:` section: `stages`, `seed`, `start_adapter`, `eval_limit` (`PipelineSettings`), and
    the Clinical-R1 data and trace settings."""

    # a folder with train.jsonl/val.jsonl/test.jsonl (medrl clinical import), or 'embedded'
    data: str = "embedded"
    vignettes: int = 300  # vignettes imported for 'embedded'
    sft_data: str | None = None  # JSONL of {"messages": [...]} traces; None: boxed traces built from the KG
    # built traces: full (every finding, options named), brief or lead (tiny models)
    trace_style: str = "full"
    eval_limit: int | None = 40  # test questions evaluated after the last stage (0: no evaluation)

    def validate(self, key: str) -> None:
        check(
            self.trace_style in ("full", "brief", "lead"),
            f"{key}.trace_style",
            "full, brief or lead",
            self.trace_style,
        )
        check(self.vignettes >= 10, f"{key}.vignettes", "an integer >= 10", self.vignettes)


def prepare_data(pc: PipelineConfig, out: Path) -> Path:
    """The folder of train/val/test RL records: the user's, or the vignette bank imported into OUT/data."""

    def write(folder: Path) -> None:
        from .data import import_data

        import_data(
            "vignettes", "embedded", folder, val_frac=0.1, test_frac=0.2, seed=pc.seed, n=pc.vignettes
        )

    return data_folder(pc.data, "embedded", out, write, "medrl clinical import")


def sft_traces(pc: PipelineConfig, data: Path, out: Path) -> Path:
    """The cold-start SFT file: the user's traces; else boxed traces built from the train split's KG vignettes; else,
    when the questions name no KG condition (an imported MedQA or MedMCQA), from the KG's own vignette bank, so the
    cold start still teaches the boxed layout the CRPO stage rewards (the model learns the format there and the
    questions' content in CRPO, as the README says)."""
    if pc.sft_data is not None:
        return Path(pc.sft_data)
    from training.data.records import read_jsonl, write_jsonl

    from .records import boxed_sft_records

    path = out / "data" / "sft_traces.jsonl"
    if not path.is_file():
        rows = boxed_sft_records(read_jsonl(data / "train.jsonl", "rl").records, style=pc.trace_style)
        if not rows:
            from .data import import_data

            bank = out / "data" / "vignettes"
            if not (bank / "train.jsonl").is_file():
                import_data(
                    "vignettes", "embedded", bank, val_frac=0.1, test_frac=0.2, seed=pc.seed, n=pc.vignettes
                )
            rows = boxed_sft_records(read_jsonl(bank / "train.jsonl", "rl").records, style=pc.trace_style)
            print(
                f"{data / 'train.jsonl'}: no question names a KG condition, so the cold start's {len(rows)} traces "
                f"come from KG vignettes ({bank}); give your own with --sft-data FILE",
                flush=True,
            )
        if not rows:
            raise DataError(
                f"{data / 'train.jsonl'}: no trace could be built; give your own with --sft-data FILE"
            )
        write_jsonl(path, rows)
    return path


def _sft_inputs(ctx: StageContext, start: Path | None) -> dict:
    """The cold start: the traces, asked as the RL stage after it will be (the same answer length on its card)."""
    rollout = (ctx.raw.get("crpo") or {}).get("rollout") or {}
    return {
        "data": {"train": str(sft_traces(ctx.settings, ctx.data, ctx.out))},
        "task": {"max_new_tokens": rollout.get("max_new_tokens")},
    }


def _crpo_inputs(ctx: StageContext, start: Path | None) -> dict:
    return {"data": {"train": str(ctx.data / "train.jsonl")}}


def _evaluate(run: Path, test: Path, pc: PipelineConfig) -> dict:
    from .evaluate import evaluate_run

    return evaluate_run(run, test, limit=pc.eval_limit)


PIPELINE = Pipeline(
    stages=(Stage("sft", "sft", _sft_inputs), Stage("crpo", "rl", _crpo_inputs)),
    settings_class=PipelineConfig,
    recipes=RECIPES,
    prepare_data=prepare_data,
    evaluate=_evaluate,
)
load_recipe = PIPELINE.load_recipe
