"""`medrl dermiq train`: the DermIQ-VLM stages, each its own run folder chained by adapter (`training.trainers.pipeline`).

Stages, in order (a recipe names the ones it runs; `--stages` picks some):
- ``warmup``: SFT on reference responses in the DermIQ format (the starting point a pretrained VLM would be; the
  embedded tiny VLM needs it, a real 3B does not);
- ``grpo++``: RL with the DermIQ rewards and GRPO++ advantages (`advantages.estimator`: grpo++ or binary);
- ``sft``: conversational SFT: the DermIQ-format turn, then a follow-up explained from the label and the KG
  (`dermiq.conversation`);
- ``dpo``: responses sampled from the SFT policy, scored and paired by the KG preference builder
  (`knowledge_graph.preference.build_pairs`), DPO with the SFT adapter frozen as the reference (`reference.kind:
  start`).
A pipeline recipe (`dermiq_pipeline_tiny`, `dermiq_pipeline_qwen25vl_3b`; `medrl recipes` lists them) holds a
`pipeline:` section and one ordinary trainer recipe per stage, so each stage is exactly what `medrl train` would run.
Stage S is the run folder OUT/<S> (``grpo++`` -> OUT/grpopp) and starts from the adapter of the nearest earlier
stage found finished in OUT (or `pipeline.start_adapter`), so any stage runs alone after the one before it. A
finished stage is not run again: re-running the command continues an interrupted pipeline. This module supplies
the stages' data (the SFT files, the KG-judged DPO pairs) and settings; `training.trainers.pipeline` runs them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from training.config import check, from_dict
from training.errors import ConfigError, DataError
from training.trainers.pipeline import Pipeline, PipelineSettings, Stage, StageContext, data_folder

RECIPES = {
    "tiny": "dermiq_pipeline_tiny",
    "3b": "dermiq_pipeline_qwen25vl_3b",
}  # short names -> shipped recipes


@dataclass
class PipelineConfig(PipelineSettings):
    """The recipe's `pipeline:` section: `stages`, `seed`, `start_adapter`, `eval_limit` (`PipelineSettings`), and
    the DermIQ data, DPO-pair and evaluation settings."""

    data: str = "synthetic"  # a folder with train.jsonl/test.jsonl (medrl dermiq import), or 'synthetic'
    conditions: list[str] | None = None  # synthetic: condition names or ids (default: the 13 default classes)
    train_per_class: int = 12  # synthetic images per condition, train split
    test_per_class: int = 6  # synthetic images per condition, held-out test split (other seeds)
    # synthetic images per condition, validation split (its own seed): what `eval:` during training and
    # `run.keep_best` select on, so the test split stays unseen by every choice
    val_per_class: int = 4
    # the DPO stage's pair file (e.g. clinicians' verdicts from `medrl feedback export`); None: the KG-judged pairs
    # sampled from the SFT policy (data/dpo_pairs.jsonl)
    pairs: str | None = None
    image_size: int = 112
    # The warm-up stands in for a pretrained VLM: it writes the format but has seen few cases of each condition, so
    # GRPO++ meets images it has not been taught. The warm-up learns from the first N train records per condition
    # (None: all), GRPO++ from all of them (README: DermIQ).
    warmup_per_class: int | None = None
    # Conversational SFT: single-turn DermIQ-format records replayed beside the conversations, per conversation.
    # The follow-up turn is long and new (its loss starts near 4.5 nats, the first turn's near 0.3), so a token-mean
    # loss is nearly all follow-up and the diagnosis turn drifts: without replay the tiny model's greedy format fell
    # from 0.69 to 0.03 in 30 steps.
    sft_replay: float = 0.0
    dpo_prompts: int = 24  # train records whose SFT-policy samples are paired for DPO
    dpo_samples: int = 4  # samples per prompt
    dpo_temperature: float = 1.0
    dpo_max_new_tokens: int = 160
    # A pair needs the chosen sample to dominate the rejected one on the KG judge's axes (diagnosis, management,
    # safety, faithfulness); this further requires that gap in the judge's summary score (0: dominance alone decides).
    dpo_min_margin: float = 0.0
    # Only a well-formed sample (tags, four headings, a label) is chosen: the KG score reads claims, not layout, and
    # at temperature 0.7-1.0 the tiny model's samples were nearly all malformed (2 of 96 at 0.7), so DPO learnt from
    # broken text and took the format down with it (0.64 -> 0.58). False: any sample may be chosen.
    dpo_well_formed: bool = True
    dpo_max_pairs: int = 3  # pairs per prompt
    # Also put the record's reference answer (the SFT target, built from the KG ground truth) among the candidates
    # the KG judge compares: a pair then exists whenever the judge finds the reference better than a sample, even if
    # no two samples differ (a barely trained policy). It is judged like any sample, never chosen by fiat.
    dpo_reference: bool = False
    eval_max_new_tokens: int | None = None  # None: the stage's rollout length, else 160

    def validate(self, key: str) -> None:
        check(
            self.warmup_per_class is None or self.warmup_per_class >= 1,
            f"{key}.warmup_per_class",
            "an integer >= 1, or null for every train record",
            self.warmup_per_class,
        )
        check(
            self.train_per_class >= 1 and self.test_per_class >= 1,
            f"{key}.train_per_class",
            "train_per_class and test_per_class >= 1",
            (self.train_per_class, self.test_per_class),
        )
        check(self.sft_replay >= 0, f"{key}.sft_replay", "a number >= 0", self.sft_replay)
        check(self.dpo_samples >= 2, f"{key}.dpo_samples", "an integer >= 2", self.dpo_samples)
        check(self.image_size >= 16, f"{key}.image_size", "an integer >= 16", self.image_size)


def prepare_data(pc: PipelineConfig, out: Path) -> Path:
    """The folder of train/test RL records: the user's, or synthetic lesions written into OUT/data."""
    return data_folder(
        pc.data,
        "synthetic",
        out,
        lambda folder: write_synthetic(
            folder,
            pc.conditions,
            pc.train_per_class,
            pc.test_per_class,
            pc.seed,
            pc.image_size,
            pc.val_per_class,
        ),
        "medrl dermiq import",
    )


def write_synthetic(
    folder: Path, conditions, n_train: int, n_test: int, seed: int, size: int, n_val: int = 0
) -> None:
    """train/, test/ (and with ``n_val`` val/) image folders (different seeds: no image in two) and their JSONL
    files beside them."""
    from training.data.records import write_jsonl

    from .synthetic import generate_dataset

    splits = [("train", n_train, seed), ("test", n_test, seed + 1000)] + (
        [("val", n_val, seed + 2000)] if n_val else []
    )
    for split, n, s in splits:
        recs = generate_dataset(folder / split, conditions, n, s, size, progress=False)
        for r in recs:
            r["images"] = [f"{split}/{p}" for p in r["images"]]
            r["meta"]["image_id"] = f"{split}_{Path(r['images'][0]).parent.name}_{Path(r['images'][0]).stem}"
        write_jsonl(folder / f"{split}.jsonl", recs)
    print(f"synthetic lesions: {n_train} train / {n_val} val / {n_test} test images per class in {folder}")


def _records(path: Path) -> list[dict]:
    from training.data.records import read_jsonl

    return read_jsonl(path, "rl").records


def per_class(records: list[dict], n: int | None) -> list[dict]:
    """The first ``n`` records of each condition, in file order (None: all)."""
    if n is None:
        return records
    seen: dict[str, int] = {}
    out = []
    for r in records:
        c = r["meta"]["condition_id"]
        if seen.get(c, 0) < n:
            seen[c] = seen.get(c, 0) + 1
            out.append(r)
    return out


def _write_sft(kind: str, data: Path, out: Path, replay: float = 0.0, limit: int | None = None) -> Path:
    """The SFT file of a stage: DermIQ-format references (warmup, from ``limit`` train records per condition) or
    two-turn conversations (sft), from train; for sft, ``replay`` x as many single-turn references as
    conversations after them (`PipelineConfig.sft_replay`)."""
    from knowledge_graph.io import load_builtin
    from training.data.records import write_jsonl

    from .records import sft_records

    kg = load_builtin("derm")
    records = [r for r in _records(data / "train.jsonl") if (r.get("meta") or {}).get("condition_id")]
    if not records:
        raise DataError(
            f"{data / 'train.jsonl'}: no record carries meta.condition_id to build SFT targets from"
        )
    if kind == "warmup":
        rows = sft_records(per_class(records, limit), kg)
    else:
        from .conversation import conversation_records

        rows = conversation_records(records, kg)
        n = round(replay * len(rows))
        if n:
            single = sft_records(records, kg)
            rows += [single[i % len(single)] for i in range(n)]  # the trainer shuffles
    path = out / "data" / f"{kind}_sft.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    for r in (
        rows
    ):  # read_jsonl has joined each image path to the data folder; absolute, so any file can hold them
        r["images"] = [str(Path(p).resolve()) for p in r["images"]]
    write_jsonl(path, rows)
    return path


def dpo_pairs(pc: PipelineConfig, raw: dict, data: Path, out: Path, sft_adapter: Path) -> Path:
    """Sample from the SFT policy, score every sample with the KG preference scorer, pair better over worse."""
    from collections import Counter

    from knowledge_graph.io import load_builtin
    from knowledge_graph.preference import abstention_summary, build_pairs, write_dpo_jsonl
    from training.config import ModelConfig
    from training.models.loading import load_policy
    from training.rollout.generation import generate

    path = out / "data" / "dpo_pairs.jsonl"
    if path.is_file():
        print(f"medrl: using the existing pairs {path} (delete it to sample and judge them again)")
        return path
    kg = load_builtin("derm")
    records = [r for r in _records(data / "train.jsonl") if (r.get("meta") or {}).get("condition_id")]
    records = records[:: max(1, len(records) // pc.dpo_prompts)][: pc.dpo_prompts]
    for r in records:
        r["images"] = [str(Path(p).resolve()) for p in r.get("images", [])]
    model_cfg = from_dict(ModelConfig, {**raw["dpo"].get("model", {}), "adapter": None}, "dpo.model")
    policy = load_policy(model_cfg, adapter=sft_adapter, trainable=False)
    samples = generate(
        policy, records, pc.dpo_max_new_tokens, n=pc.dpo_samples, temperature=pc.dpo_temperature, seed=pc.seed
    )
    del policy
    from .records import sft_record
    from .rewards import well_formed

    pairs, formed, stats = [], 0, Counter()
    for rec, texts in zip(records, samples, strict=True):
        meta = rec["meta"]
        if pc.dpo_reference:
            texts = [*texts, sft_record(rec, kg)["messages"][-1]["content"]]
        ok = [well_formed(t, rec["prompt"]) for t in texts]
        formed += sum(ok[: pc.dpo_samples])  # the samples, not the reference
        pairs += build_pairs(
            rec["prompt"],
            texts,
            kg,
            meta["condition_id"],
            case_findings=meta.get("findings"),
            images=rec["images"],
            min_margin=pc.dpo_min_margin,
            max_pairs=pc.dpo_max_pairs,
            eligible=ok if pc.dpo_well_formed else None,
            stats=stats,
        )
    n = len(records) * pc.dpo_samples
    summary = {
        **abstention_summary(stats),
        "prompts": len(records),
        "samples": n,
        "well_formed": formed,
        "reference_among_candidates": pc.dpo_reference,
    }
    (path.parent / "dpo_pairs.summary.json").write_text(
        json.dumps(summary, indent=1) + "\n", encoding="utf-8"
    )
    if not pairs:
        better = " with the better one well-formed" if pc.dpo_well_formed else ""
        raise DataError(
            f"DPO: no SFT sample was better than another on the KG judge's axes{better} over "
            f"{len(records)} prompts x {pc.dpo_samples} samples ({formed} of {n} well-formed; the judge "
            f"abstained on {summary['abstained']} comparisons, see {path.parent / 'dpo_pairs.summary.json'})"
            "; raise pipeline.dpo_samples or lower pipeline.dpo_temperature"
        )
    for p in pairs:  # every record says how the run's judge did, beside the axes that decided it
        p["meta"]["judge"] = {k: summary[k] for k in ("abstention_rate", "abstained", "comparisons", "pairs")}
    write_dpo_jsonl(pairs, path)
    chosen = ", the only ones chosen" if pc.dpo_well_formed else ""
    print(
        f"DPO: {len(pairs)} KG-scored pairs from {len(records)} prompts x {pc.dpo_samples} SFT samples "
        f"({formed} of {n} well-formed{chosen}); the KG judge abstained on {summary['abstained']} of "
        f"{summary['comparisons']} comparisons ({summary['abstention_rate']:.0%}), {summary['undecided']} undecided "
        f"-> {path}"
    )
    return path


def answer_tokens(raw: dict, pc: PipelineConfig) -> int:
    """How long an answer of this pipeline's models may be: the evaluation's length, else GRPO++'s rollout's, else
    DermIQ's 160; written to every stage's task card so the app and `medrl dermiq eval` ask alike."""
    rollout = (raw.get("grpo++") or {}).get("rollout") or {}
    return int(pc.eval_max_new_tokens or rollout.get("max_new_tokens") or 160)


def write_pairs(raw: dict, out: str | Path) -> Path:
    """Only the DPO stage's pairs (data/dpo_pairs.jsonl and its summary), from the SFT adapter in ``out``: for a
    clinician to review (`medrl kg audit`) before `--stages dpo` trains on them (an existing pair file is kept)."""
    pc = pipeline_config(raw)
    out = Path(out)
    start = previous_adapter(out, "dpo", pc.start_adapter, pc.chain_from)
    if start is None:
        raise ConfigError(
            f"dpo pairs: no SFT adapter in {out} (run --stages sft first, or set pipeline.start_adapter)"
        )
    return dpo_pairs(pc, raw, prepare_data(pc, out), out, start)


def stage_name(name: str) -> str:
    """'grpo++' (also 'grpopp') -> its canonical stage name; an unknown one is a one-line error."""
    return PIPELINE.stage(name).name


def _asked(ctx: StageContext) -> dict:
    """Every stage is asked alike (the task card): the pipeline's answer length."""
    return {"task": {"max_new_tokens": answer_tokens(ctx.raw, ctx.settings)}}


def _sft_stage(kind: str):
    """The inputs of an SFT stage (warmup, sft): its SFT file, written from the train split."""

    def inputs(ctx: StageContext, start: Path | None) -> dict:
        pc = ctx.settings
        return {
            "data": {"train": str(_write_sft(kind, ctx.data, ctx.out, pc.sft_replay, pc.warmup_per_class))},
            **_asked(ctx),
        }

    return inputs


def _grpo_inputs(ctx: StageContext, start: Path | None) -> dict:
    """The train split; and, when the data has a validation split and the recipe names no eval data, what
    `--grpo++.eval.every=N` needs: the DermIQ evaluator on val.jsonl, balanced accuracy as its headline."""
    inputs = {"data": {"train": str(ctx.data / "train.jsonl")}, **_asked(ctx)}
    val = ctx.data / "val.jsonl"
    if val.is_file() and not ((ctx.raw.get("grpo++") or {}).get("eval") or {}).get("data"):
        inputs["eval"] = {
            "data": str(val),
            "evaluator": "dermiq",
            "modules": ["dermiq.evaluate"],
            "metric": "balanced_accuracy",
        }
    return inputs


def _dpo_inputs(ctx: StageContext, start: Path | None) -> dict:
    """The KG-judged pairs of the SFT policy's samples (sampled once; an existing pair file is kept)."""
    if start is None:
        raise ConfigError(
            "dpo: needs the SFT stage's adapter (run --stages sft first, or set pipeline.start_adapter)"
        )
    pairs = ctx.settings.pairs
    if pairs is not None:
        if not Path(pairs).is_file():
            raise ConfigError(f"pipeline.pairs: expected a DPO pair file (JSONL), got {pairs!r}: not found")
        print(f"medrl: the DPO stage trains on {pairs} (pipeline.pairs), not on KG-judged pairs")
        return {"data": {"train": str(Path(pairs).resolve())}, **_asked(ctx)}
    return {"data": {"train": str(dpo_pairs(ctx.settings, ctx.raw, ctx.data, ctx.out, start))}, **_asked(ctx)}


def _evaluate(run: Path, test: Path, pc: PipelineConfig) -> dict:
    from .evaluate import evaluate_run

    return evaluate_run(run, test, limit=pc.eval_limit, max_new_tokens=pc.eval_max_new_tokens)


PIPELINE = Pipeline(
    stages=(
        Stage("warmup", "sft", _sft_stage("warmup")),
        Stage("grpo++", "rl", _grpo_inputs, folder="grpopp", aliases=("grpopp",)),
        Stage("sft", "sft", _sft_stage("sft")),
        Stage("dpo", "dpo", _dpo_inputs),
    ),
    settings_class=PipelineConfig,
    recipes=RECIPES,
    prepare_data=prepare_data,
    evaluate=_evaluate,
)
FOLDERS = {s.name: s.run_name for s in PIPELINE.stages}  # stage -> its run folder under OUT
load_recipe = PIPELINE.load_recipe
pipeline_config = PIPELINE.settings
stage_config = PIPELINE.stage_config
previous_adapter = PIPELINE.previous_adapter
run_pipeline = PIPELINE.run
