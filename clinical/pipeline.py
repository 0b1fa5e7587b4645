"""`medrl clinical train`: optional cold-start SFT on reasoning traces, then CRPO from the cold-start adapter.

A pipeline recipe (`clinical_tiny`, `clinical_r1_qwen25_3b` in `training/recipes/`) holds a `pipeline:` section
(data, stages, traces) and one ordinary trainer recipe per stage (`sft:`, `crpo:`), so each stage is exactly what
`medrl train` would run. Each stage is its own run folder under the pipeline's output (`OUT/sft`, `OUT/crpo`),
chained by adapter: CRPO gets `model.adapter=OUT/sft/adapter`. A finished stage (its adapter written) is not
run again, so re-running the command continues an interrupted pipeline from the stage that did not finish.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from training import stages
from training.config import check, from_dict, merge, parse_overrides, read_yaml
from training.errors import ConfigError, DataError
from training.stages import run_stage

RECIPES = {"tiny": "clinical_tiny", "3b": "clinical_r1_qwen25_3b"}  # short names -> shipped recipes (training.recipes)
STAGES = ("sft", "crpo")


@dataclass
class PipelineConfig:
    """The recipe's `pipeline:` section."""

    stages: list[str] = field(default_factory=lambda: list(STAGES))
    data: str = "embedded"  # a folder with train.jsonl/val.jsonl/test.jsonl (medrl clinical import), or 'embedded'
    vignettes: int = 300  # vignettes imported for 'embedded'
    sft_data: str | None = None  # JSONL of {"messages": [...]} traces; None: boxed traces built from the KG
    trace_style: str = "full"  # built traces: full (every finding, options named), brief or lead (tiny models)
    seed: int = 0
    eval_limit: int | None = 40  # test questions evaluated after the last stage (0: no evaluation)

    def validate(self, key: str) -> None:
        check(bool(self.stages) and all(s in STAGES for s in self.stages), f"{key}.stages",
              f"a non-empty list of {', '.join(STAGES)}", self.stages)
        check(self.trace_style in ("full", "brief", "lead"), f"{key}.trace_style", "full, brief or lead",
              self.trace_style)
        check(self.vignettes >= 10, f"{key}.vignettes", "an integer >= 10", self.vignettes)


def load_recipe(recipe: str, overrides: list[str] | None = None) -> dict:
    """A pipeline recipe ('tiny', '3b', a shipped recipe's name or a YAML file) with `--section.key=value` overrides merged in."""
    from training.recipes import resolve

    path = resolve(recipe, RECIPES)
    raw = merge(read_yaml(path), parse_overrides(overrides or []))
    for name in ("pipeline", *STAGES):
        if not isinstance(raw.get(name), dict):
            raise ConfigError(f"{path}: expected a '{name}:' section (a pipeline recipe, not a `medrl train` one)")
    unknown = set(raw) - {"pipeline", *STAGES}
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(sorted(unknown))} (known: pipeline, sft, crpo)")
    raw["_path"] = str(path)
    return raw


def pipeline_config(raw: dict) -> PipelineConfig:
    try:
        return from_dict(PipelineConfig, raw["pipeline"], "pipeline")
    except ConfigError as e:
        raise ConfigError(f"{raw['_path']}: {e}") from None


def prepare_data(pc: PipelineConfig, out: Path) -> Path:
    """The folder of train/val/test RL records: the user's, or the vignette bank imported into OUT/data."""
    if pc.data != "embedded":
        folder = Path(pc.data)
        if not (folder / "train.jsonl").is_file():
            raise DataError(f"{folder}: expected train.jsonl (and test.jsonl) from `medrl clinical import`")
        return folder
    folder = out / "data"
    if not (folder / "train.jsonl").is_file():
        from .data import import_data

        import_data("vignettes", "embedded", folder, val_frac=0.1, test_frac=0.2, seed=pc.seed, n=pc.vignettes)
    return folder


def sft_traces(pc: PipelineConfig, data: Path, out: Path) -> Path:
    """The cold-start SFT file: the user's traces, or boxed traces built from the train split's vignettes."""
    if pc.sft_data is not None:
        return Path(pc.sft_data)
    from training.data import read_jsonl, write_jsonl

    from .records import boxed_sft_records

    path = out / "data" / "sft_traces.jsonl"
    if not path.is_file():
        rows = boxed_sft_records(read_jsonl(data / "train.jsonl", "rl").records, style=pc.trace_style)
        if not rows:
            raise DataError(f"{data / 'train.jsonl'}: no record carries a KG condition to build a trace from; "
                            "give your own traces with --sft-data FILE (JSONL of messages)")
        write_jsonl(path, rows)
    return path


def stage_config(raw: dict, stage: str, out: Path, name: str, seed: int, extra: dict | None = None):
    """The trainer config of one stage (`sft`: SFT, else RL), its run folder OUT/<name>."""
    return stages.stage_config(raw, stage, "sft" if stage == "sft" else "rl", out, name, seed, extra)


def cold_start(raw: dict, pc: PipelineConfig, data: Path, out: Path, steps: int | None = None) -> Path:
    """The SFT stage: OUT/sft from the traces; returns its adapter."""
    # The cold start is asked as the RL stage after it will be: the same answer length on its task card.
    extra = {"data": {"train": str(sft_traces(pc, data, out))},
             "task": {"max_new_tokens": (raw.get("crpo", {}).get("rollout") or {}).get("max_new_tokens")}}
    if steps:
        extra["run"] = {"max_steps": steps}
    return run_stage(stage_config(raw, "sft", out, "sft", pc.seed, extra))


def run_pipeline(raw: dict, out: str | Path, evaluate: bool = True) -> dict:
    """Every stage of the recipe in order; returns {stage: run folder} and the last stage's evaluation."""
    pc = pipeline_config(raw)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = prepare_data(pc, out)
    result: dict = {"data": str(data), "runs": {}}
    adapter: Path | None = None
    if "sft" in pc.stages:
        adapter = cold_start(raw, pc, data, out)
        result["runs"]["sft"] = str(out / "sft")
    if "crpo" in pc.stages:
        extra: dict = {"data": {"train": str(data / "train.jsonl")}}
        if adapter is not None:
            extra["model"] = {"adapter": str(adapter)}
        run_stage(stage_config(raw, "crpo", out, "crpo", pc.seed, extra))
        result["runs"]["crpo"] = str(out / "crpo")
    test = data / "test.jsonl"
    if evaluate and pc.eval_limit != 0 and test.is_file():
        from .evaluate import evaluate_run

        last = out / pc.stages[-1]
        result["eval"] = evaluate_run(last, test, limit=pc.eval_limit)
    return result
