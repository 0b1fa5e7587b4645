"""`medrl clinical synth`: MedQA-format synthetic vignettes from the clinical KG; `medrl clinical import`: clinical QA
data sets (or the vignette bank) -> RL records split into train/val/test; `medrl clinical train`: cold-start SFT ->
CRPO (`clinical.pipeline`); `medrl clinical eval`: greedy answers scored by the CRPO rules (`clinical.evaluate`);
`medrl clinical ablate`: GRPO vs CRPO from the same start (`clinical.ablate`); `medrl clinical tree-ablate`: Tree-GRPO
vs chains on multi-step cases at equal sampled tokens (`clinical.tree_ablate`); `medrl clinical case-eval`: a case run
plays held-out cases greedily (`clinical.case_eval`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from training.trainers import pipeline_cli as cli


def register(subparsers) -> None:
    p = subparsers.add_parser("clinical", help="Clinical-R1 data and pipeline")
    sub = p.add_subparsers(dest="clinical_command", metavar="CLINICAL_COMMAND", required=True)
    s = sub.add_parser("synth", help="write MedQA-format vignettes (JSONL) from the clinical KG")
    s.add_argument("--out", required=True, help="output JSONL file")
    s.add_argument("--n", type=int, default=200, help="number of vignettes")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--kg", default="clinical", help="'clinical' or a KG file")
    s.set_defaults(handler=_synth)
    i = sub.add_parser(
        "import", help="convert MedQA / MedMCQA / PubMedQA / MedXpertQA / vignettes into RL records"
    )
    i.add_argument("format", choices=["medqa", "medmcqa", "pubmedqa", "medxpertqa", "vignettes"])
    i.add_argument(
        "path",
        nargs="?",
        default=None,
        help="a file or a folder of .json/.jsonl files; for vignettes 'embedded' (default) or a synth JSONL",
    )
    i.add_argument("--out", required=True, help="output folder: train.jsonl, val.jsonl, test.jsonl")
    i.add_argument(
        "--val-frac", type=float, default=0.1, help="share of pooled rows for val (if no file is a val split)"
    )
    i.add_argument(
        "--test-frac",
        type=float,
        default=0.1,
        help="share of pooled rows for test (if no file is a test split)",
    )
    i.add_argument("--seed", type=int, default=0, help="split seed (and the vignette bank's seed)")
    i.add_argument("--n", type=int, default=500, help="vignettes to generate for 'vignettes embedded'")
    i.add_argument("--json", action="store_true", help="print the summary as JSON")
    i.set_defaults(handler=_import)
    t = sub.add_parser(
        "train", help="cold-start SFT on reasoning traces -> CRPO from its adapter (a pipeline recipe)"
    )
    _recipe_args(t, "runs/clinical")
    cli.add_train_args(
        t,
        "comma-separated stages to run, e.g. sft,crpo or crpo (default: the recipe's; CRPO starts "
        "from the SFT adapter in --out when that stage is finished)",
    )
    t.set_defaults(handler=_train, accepts_overrides=True)
    e = sub.add_parser(
        "eval", help="greedy answers of a run's adapter, accuracy and reasoning measures -> RUN/eval/"
    )
    cli.add_eval_args(
        e, "runs/clinical/crpo", "RL records (JSONL), e.g. DIR/test.jsonl from medrl clinical import", 512
    )
    e.set_defaults(handler=_eval)
    a = sub.add_parser(
        "ablate", help="GRPO vs CRPO and CRPO's parts, one change per arm, from the same cold-start adapter"
    )
    _recipe_args(a, "runs/clinical_ablation")
    cli.add_ablate_args(a, "0,1,2", "grpo,crpo", "clinical/ablate.py")
    a.set_defaults(handler=_ablate, accepts_overrides=True)
    t = sub.add_parser(
        "tree-ablate",
        help="Tree-GRPO vs chains on multi-step cases at equal sampled tokens, from one cold start",
    )
    cli.add_recipe_args(
        t,
        "runs/tree_ablation",
        "tiny (embedded Qwen2, CPU), a shipped case pipeline recipe's name (`medrl recipes`) or a YAML",
        "folder of case records: train.jsonl, test.jsonl, sft.jsonl (default: written from the KGs)",
        "RL steps at most (a cap; the recipe's rl.run.max_steps)",
    )
    t.add_argument(
        "--budget",
        type=int,
        default=None,
        help="tokens each RL run samples (the recipe's rl.max_generated_tokens)",
    )
    t.add_argument(
        "--sft-steps", type=int, default=None, help="cold-start SFT steps (the recipe's sft.run.max_steps)"
    )
    cli.add_ablate_args(t, "0,1,2", "all", "clinical/tree_ablate.py")
    t.set_defaults(handler=_tree_ablate, accepts_overrides=True)
    h = sub.add_parser(
        "harness",
        help="write lm-evaluation-harness tasks over imported records (asked and scored as `clinical eval` does)",
    )
    h.add_argument(
        "--data", required=True, help="a folder from `medrl clinical import` (its test.jsonl) or a file"
    )
    h.add_argument("--out", required=True, help="the tasks folder (lm_eval --include_path)")
    h.add_argument(
        "--run",
        help="the run whose task card sets the system turn and answer length (default: Clinical-R1's)",
    )
    h.add_argument("--limit", type=int, default=None, help="first N records only")
    h.add_argument(
        "--max-new-tokens", type=int, default=None, help="max_gen_toks (default: the card's, else 512)"
    )
    h.add_argument("--json", action="store_true", help="print the summary as JSON")
    h.set_defaults(handler=_harness)
    c = sub.add_parser(
        "case-eval", help="a case run plays held-out cases greedily: accuracy, questions -> RUN/eval/"
    )
    cli.add_eval_args(c, "runs/tree_ablation/tree_s0", "case records (JSONL), e.g. OUT/data/test.jsonl", 16)
    c.set_defaults(handler=_case_eval)


def _recipe_args(p, out: str) -> None:
    cli.add_recipe_args(
        p,
        out,
        "tiny (embedded Qwen2, CPU), 3b (Qwen2.5-3B-Instruct, QLoRA, 12 GB GPU), a shipped "
        "pipeline recipe's name (`medrl recipes`) or a pipeline YAML",
        "folder from `medrl clinical import` (default: the recipe's; 'embedded' imports KG vignettes)",
        "RL steps (of CRPO, or of each ablation arm; the recipe's crpo.run.max_steps)",
    )
    p.add_argument(
        "--sft-data",
        default=None,
        help="JSONL of {messages} reasoning traces for the cold start "
        "(default: boxed traces built from the KG vignettes)",
    )
    p.add_argument(
        "--sft-steps", type=int, default=None, help="cold-start SFT steps (the recipe's sft.run.max_steps)"
    )


def _recipe(args: argparse.Namespace, extra: dict | None = None) -> dict:
    from .pipeline import PIPELINE

    return cli.recipe_from_args(
        PIPELINE, args, ("data", "sft_data", "seed"), {"crpo": args.steps, "sft": args.sft_steps}, extra
    )


def _train(args: argparse.Namespace) -> int:
    from .evaluate import metrics_table
    from .pipeline import PIPELINE

    return cli.train(PIPELINE, args, _recipe, metrics_table)


def _eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_run, metrics_table

    m = evaluate_run(args.run, args.data, limit=args.limit, max_new_tokens=args.max_new_tokens, tag=args.tag)
    return cli.show(m, args.json, metrics_table)


def _harness(args: argparse.Namespace) -> int:
    from .harness import write_tasks

    done = write_tasks(args.data, args.out, args.run, args.limit, args.max_new_tokens)
    return cli.show(done, args.json, _harness_text)


def _harness_text(done: dict) -> str:
    return (
        f"{done['questions']} questions ({done['skipped']} records skipped) -> {done['out']}: tasks "
        f"{', '.join(done['tasks'])}, group {done['group']} (max_gen_toks {done['max_gen_toks']}). Run:\n"
        f"  lm_eval --model hf --model_args pretrained=BASE,peft=ADAPTER,dtype=float32 --include_path {done['out']} "
        f"--tasks {done['group']} --apply_chat_template --batch_size 1"
    )


def _ablate(args: argparse.Namespace) -> int:
    from training.config import parse_seeds

    from .ablate import ARMS, run_ablation, table

    seeds, arms = parse_seeds(args.seeds), cli.parse_arms(args.arms, ARMS)
    return cli.show(
        run_ablation(_recipe(args), args.out, seeds, limit=args.limit, arms=arms), args.json, table
    )


def _tree_ablate(args: argparse.Namespace) -> int:
    from training.config import parse_seeds

    from .case_pipeline import PIPELINE as CASES
    from .tree_ablate import ARMS, TABLE, run_ablation

    seeds, arms = parse_seeds(args.seeds), cli.parse_arms(args.arms, ARMS)
    budget = {"rl": {"max_generated_tokens": args.budget}} if args.budget else None
    raw = cli.recipe_from_args(
        CASES, args, ("data", "seed"), {"rl": args.steps, "sft": args.sft_steps}, budget
    )
    return cli.show(
        run_ablation(raw, args.out, seeds, limit=args.limit, arms=arms), args.json, TABLE.markdown
    )


def _case_eval(args: argparse.Namespace) -> int:
    from training.trainers.evaluation import metrics_lines

    from .case_eval import FIELDS, CaseEvaluation

    m = CaseEvaluation(args.run, args.data, args.limit, args.max_new_tokens, args.tag)()
    return cli.show(m, args.json, lambda r: "\n".join(metrics_lines(r, "cases", FIELDS, 14)))


def _synth(args: argparse.Namespace) -> int:
    from knowledge_graph.io import BUILTIN, load, load_builtin
    from training.data.records import write_jsonl
    from training.errors import DataError

    from .synthetic import generate_vignettes

    if args.n < 1:
        raise DataError(f"--n must be >= 1 (got {args.n})")
    kg = load_builtin(args.kg) if args.kg in BUILTIN else load(args.kg)
    path = Path(args.out)
    write_jsonl(path, generate_vignettes(args.n, args.seed, kg))
    print(f"wrote {args.n} vignettes to {path}")
    return 0


def _import(args: argparse.Namespace) -> int:
    import json

    from training.errors import DataError

    from .data import import_data, summary_table

    if args.path is None and args.format != "vignettes":
        raise DataError(f"clinical import {args.format}: give the PATH of the data file or folder")
    summary = import_data(
        args.format,
        args.path or "embedded",
        args.out,
        val_frac=args.val_frac,
        test_frac=args.test_frac,
        seed=args.seed,
        n=args.n,
    )
    print(json.dumps(summary, indent=2) if args.json else summary_table(summary))
    return 0
