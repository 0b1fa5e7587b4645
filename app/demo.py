"""`medrl demo`: the DermIQ-VLM pipeline and one seed of the Clinical-R1 ablation on the embedded default, on CPU.

Stages: build the embedded models (cached); synthetic lesion images from the dermatology KG (train and a held-out
test split); a short SFT warm-up of the tiny Qwen2.5-VL (the starting point a pretrained VLM would be) -> GRPO++ ->
conversational SFT -> KG-preference DPO (`dermiq.pipeline`, each stage its own run and adapter); evaluation of every
stage on the held-out split (`dermiq.evaluate`); one table. Then Clinical-R1 on the tiny Qwen2: KG vignettes -> a
cold start on boxed traces -> a GRPO arm and a CRPO arm from it (`clinical.ablate`, one seed), evaluated side by
side on held-out vignettes; a second table; then one step of Tree-GRPO on multi-step cases, so the app has trees to
draw. With 4+ cores (or `--parallel`) the Qwen2 stages run in a second process beside the Qwen2.5-VL ones. This file only orders the stages and prints; importing it (command registration) imports no torch.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from training.errors import MedrlError

MARKER = ".medrl-demo"
QUICK = [
    "--pipeline.train_per_class=2",
    "--pipeline.test_per_class=1",
    "--warmup.run.max_steps=2",
    "--grpo++.run.max_steps=2",
    "--sft.run.max_steps=2",
    "--dpo.run.max_steps=2",
    "--warmup.batch_size=2",
    "--sft.batch_size=2",
    "--grpo++.prompts_per_step=1",
    "--grpo++.rollout.max_new_tokens=8",
    "--pipeline.dpo_prompts=3",
    "--pipeline.dpo_max_new_tokens=8",
    "--pipeline.dpo_min_margin=0",
    "--pipeline.dpo_well_formed=false",
    "--pipeline.dpo_reference=true",
    "--pipeline.eval_max_new_tokens=8",
    "--dpo.batch_size=1",
    "--dpo.grad_accum=1",
]
# The demo's cold start stops at 160 steps, its RL arms at 6 and its evaluation at 15 vignettes to keep `make demo`
# within 10 minutes from an empty model cache (9 min 17 s in all); `medrl clinical ablate` uses the recipe's
# 300, 12 and 20.
DEMO_CLINICAL = ["--sft.run.max_steps=160", "--crpo.run.max_steps=6", "--pipeline.eval_limit=15"]
QUICK_CLINICAL = [
    "--sft.run.max_steps=1",
    "--crpo.run.max_steps=1",
    "--crpo.rollout.max_new_tokens=6",
    "--crpo.rollout.num_generations=2",
    "--crpo.prompts_per_step=1",
    "--sft.batch_size=1",
    "--sft.data.max_length=640",
    "--pipeline.vignettes=12",
    "--pipeline.eval_limit=2",
]
# Tree-GRPO on multi-step cases: the shipped recipe for one step (every step writes its trees, trees/step-N.jsonl)
# of one prompt, two trees of two leaves each (recipe: 8 steps of 4 prompts, 3 leaves a tree), so `make demo` stays
# within its 10 minutes: 12-19 s on 2 CPU cores shared with other jobs (--quick: 8 s; it also halves each turn and
# the turn limit).
CASES_RECIPE = "clinical_cases_tiny"
N_CASES = 8
DEMO_CASES = ["--run.max_steps=1", "--prompts_per_step=1", "--rollout.tree.m=2", "--rollout.tree.n=1"]
QUICK_CASES = [
    "--run.max_steps=1",
    "--prompts_per_step=1",
    "--rollout.tree.m=2",
    "--rollout.tree.n=1",
    "--rollout.max_new_tokens=8",
    "--rollout.max_turns=2",
    "--rollout.env_args.max_turns=2",
]
COLUMNS = (
    ("balanced_accuracy", "balanced acc"),
    ("accuracy", "accuracy"),
    ("format_valid", "format"),
    ("kg_faithfulness", "KG-faithful"),
    ("image_faithfulness", "image-faithful"),
)


def _stage(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.time()


def _fmt(v) -> str:
    return "   -  " if v is None else f"{v:6.3f}"


def table(rows: dict[str, dict], adapters: dict[str, str]) -> str:
    """One row per stage: the held-out measures and where its adapter is."""
    head = f"{'stage':<8}" + "".join(f"{name:>15}" for _, name in COLUMNS) + "  adapter"
    lines = [head, "-" * len(head)]
    for stage, m in rows.items():
        lines.append(
            f"{stage:<8}" + "".join(f"{_fmt(m.get(k)):>15}" for k, _ in COLUMNS) + f"  {adapters[stage]}"
        )
    return "\n".join(lines)


TIMED = (
    ("qwen2_s", "embedded Qwen2 (build or cache)"),
    ("models_s", "embedded Qwen2.5-VL (build or cache)"),
    ("train_s", "DermIQ pipeline"),
    ("eval_s", "DermIQ evaluation"),
    ("clinical_s", "Clinical-R1 (incl. Qwen2 build or cache)"),
    ("cases_s", "Tree-GRPO cases"),
    ("wait_s", "waited for stages 4-5 after stage 3"),
    ("total_s", "total"),
)


def timings(summary: dict) -> str:
    """The stage timings the demo ends with (stages 4-5 overlap 1-3 when they ran beside them)."""
    how = "stages 4-5 in a second process, beside 1-3" if summary.get("parallel") else "one process"
    lines = [f"Stage timings ({how}):"]
    lines += [f"  {label:<44}{summary[k]:>8.1f} s" for k, label in TIMED if k in summary]
    return "\n".join(lines)


def tree_files(run: Path) -> list[Path]:
    """The Tree-GRPO tree files a run wrote (trees/step-N.jsonl, one tree a line), in step order."""
    return sorted((run / "trees").glob("step-*.jsonl"), key=lambda p: int(p.stem.split("-")[1]))


def run_cases(out: Path, seed: int = 0, quick: bool = False, name: str = "cases") -> dict:
    """Tree-GRPO on multi-step cases into OUT/<name> (data in OUT/<name>_data): the run the app's interactive case
    offers and whose trees its viewer draws. From the embedded model as it is, so its turns are mostly unreadable:
    the machinery, not a skill. Returns the run folder, its tree files and how many trees they hold."""
    from clinical.cases import make_case_records
    from training.cli import run_recipe
    from training.data.records import write_jsonl

    data = out / f"{name}_data" / "cases.jsonl"
    write_jsonl(data, make_case_records(N_CASES, seed))
    run_recipe(
        CASES_RECIPE,
        [
            f"--data.train={data}",
            f"--run.output_dir={out}",
            f"--run.name={name}",
            f"--run.seed={seed}",
            *(QUICK_CASES if quick else DEMO_CASES),
        ],
    )
    files = tree_files(out / name)
    trees = sum(1 for p in files for line in p.read_text(encoding="utf-8").splitlines() if line.strip())
    return {"run": str(out / name), "tree_files": [str(p) for p in files], "trees": trees}


def run_text_part(out: Path, seed: int = 0, quick: bool = False) -> dict:
    """Stages 4-5 on the tiny Qwen2 (built here if missing): the one-seed Clinical-R1 ablation, then Tree-GRPO on
    cases. Independent of the DermIQ stages, so `run_demo` runs them beside those in a second process."""
    from clinical.ablate import run_ablation
    from clinical.ablate import table as clinical_table
    from clinical.pipeline import load_recipe as clinical_recipe
    from training.models.embedded import ensure_embedded

    part: dict = {}
    t = _stage(
        "4/5 Clinical-R1 on the tiny Qwen2: KG vignettes -> cold start on boxed traces -> GRPO vs CRPO (one seed)"
    )
    print(f"qwen2: {ensure_embedded('qwen2')}", flush=True)
    clinical = run_ablation(
        clinical_recipe("tiny", [f"--pipeline.seed={seed}", *(QUICK_CLINICAL if quick else DEMO_CLINICAL)]),
        out / "clinical",
        [seed],
    )
    part["clinical_s"] = round(time.time() - t, 1)
    part["clinical"] = {"mean": clinical["mean"], "n": clinical["n"], "steps": clinical["steps"]}
    part["clinical_table"] = clinical_table(clinical)
    print(f"\n{part['clinical_table']}", flush=True)

    t = _stage("5/5 Tree-GRPO on multi-step cases (tiny Qwen2): trees for the app's viewer")
    cases = run_cases(out, seed, quick)
    part["cases_s"] = round(time.time() - t, 1)
    part["cases"] = cases
    part["cases_line"] = (
        f"Tree-GRPO trees ({cases['trees']} trees, {len(cases['tree_files'])} steps) are under "
        f"{Path(cases['run']) / 'trees'}/; `medrl app` draws them in its Interactive case tab, where "
        f"{cases['run']} also plays cases."
    )
    print(part["cases_line"], flush=True)
    return part


TEXT_PART_LOG = "text_part.log"
TEXT_PART_RESULT = "text_part.json"


def _start_text_part(out: Path, seed: int, quick: bool):
    """The text stages in a child process (`python -m app.demo --text-part`), its output in OUT/text_part.log."""
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-m",
        "app.demo",
        "--text-part",
        str(out),
        "--seed",
        str(seed),
        *(["--quick"] if quick else []),
    ]
    log = open(out / TEXT_PART_LOG, "w", encoding="utf-8")  # noqa: SIM115 (closed in _finish_text_part)
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log


def _finish_text_part(out: Path, side) -> dict:
    proc, log = side
    rc = proc.wait()
    log.close()
    text = (out / TEXT_PART_LOG).read_text(encoding="utf-8", errors="replace")
    if rc != 0 or not (out / TEXT_PART_RESULT).is_file():
        tail = "\n".join(text.splitlines()[-15:])
        raise MedrlError(
            f"the Clinical-R1 and case stages (run beside DermIQ) failed with exit code {rc}; their log is "
            f"{out / TEXT_PART_LOG}:\n{tail}"
        )
    return json.loads((out / TEXT_PART_RESULT).read_text(encoding="utf-8"))


def _split_threads(parallel: bool) -> None:
    """Two processes share the cores: each takes half (tiny models gain little from a second thread; the second
    pipeline gains a whole core)."""
    import os

    import torch

    if parallel:
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))


# Two processes pay only where each gets cores of its own. On the 2-vCPU reference machine (AMD EPYC, AVX2 kernels)
# a second thread makes the embedded build 1.7-1.8x faster (copy warm-up 0.39 -> 0.21 s a step), so two processes of
# one thread each gain nothing: the parallel demo took 846 s from an empty cache against 807 s in one process (that
# run also built the Qwen2 twice, once per process; it is now built first). So the default is one process below 4.
PARALLEL_MIN_CORES = 4


def run_demo(out: Path, seed: int = 0, quick: bool = False, parallel: bool | None = None) -> dict:
    """Every stage; with `parallel` (default: PARALLEL_MIN_CORES or more cores) the Qwen2 stages (4-5) run in a second
    process beside the Qwen2.5-VL ones (1-3): the two recipes share nothing but the disk."""
    import os

    from dermiq.evaluate import evaluate_run
    from dermiq.pipeline import FOLDERS, load_recipe, pipeline_config, run_pipeline
    from knowledge_graph.disclaimer import DISCLAIMER
    from training.models.embedded import ensure_embedded

    if out.exists():
        if not (out / MARKER).exists():
            raise MedrlError(f"{out} exists and was not made by the demo; pass --out elsewhere")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("made by `medrl demo`; removed by the next demo run\n")
    parallel = (os.cpu_count() or 1) >= PARALLEL_MIN_CORES if parallel is None else parallel
    summary: dict = {"parallel": parallel}
    t_all = time.time()
    if (
        parallel
    ):  # both halves need the Qwen2 (the VLM's language model starts from it): built once, first, here
        t = _stage("0/5 embedded tiny Qwen2 (built once, then cached), before the second process starts")
        print(f"qwen2: {ensure_embedded('qwen2')}", flush=True)
        summary["qwen2_s"] = round(time.time() - t, 1)
    _split_threads(parallel)
    side = _start_text_part(out, seed, quick) if parallel else None
    if side is not None:
        print(
            f"Clinical-R1 and the Tree-GRPO cases (stages 4-5, tiny Qwen2) run beside stages 1-3 in a second process; "
            f"their log: {out / TEXT_PART_LOG}",
            flush=True,
        )
    try:
        t = _stage(
            "1/5 embedded tiny Qwen2.5-VL (built once, then cached; its vision tower pretrained on lesion captions)"
        )
        print(f"qwen25vl: {ensure_embedded('qwen25vl')}")
        summary["models_s"] = round(time.time() - t, 1)

        raw = load_recipe("tiny", [f"--pipeline.seed={seed}", *(QUICK if quick else [])])
        pc = pipeline_config(raw)
        t = _stage(
            "2/5 DermIQ pipeline: synthetic lesions -> SFT warm-up -> GRPO++ -> conversational SFT -> KG-DPO"
        )
        result = run_pipeline(raw, out / "dermiq", evaluate="none")
        summary["train_s"] = round(time.time() - t, 1)

        t = _stage(f"3/5 every stage on the held-out synthetic split ({pc.test_per_class} images per class)")
        test = Path(result["data"]) / "test.jsonl"
        evals = {}
        for stage in result["runs"]:
            m = evaluate_run(out / "dermiq" / FOLDERS[stage], test, max_new_tokens=pc.eval_max_new_tokens)
            evals[stage] = {k: m.get(k) for k, _ in COLUMNS} | {"n": m["n"]}
            print(
                f"{stage}: balanced accuracy {_fmt(m['balanced_accuracy'])}, format {_fmt(m['format_valid'])}, "
                f"KG-faithful {_fmt(m['kg_faithfulness'])}",
                flush=True,
            )
        summary["eval_s"] = round(time.time() - t, 1)
        summary["stages"] = evals
        summary["adapters"] = result["adapters"]
        print(f"\nHeld-out synthetic lesions ({next(iter(evals.values()))['n']} images, greedy):\n")
        print(table(evals, result["adapters"]), flush=True)

        if side is not None:
            t = _stage("4-5/5 waiting for Clinical-R1 and the Tree-GRPO cases (running beside)")
            part = _finish_text_part(out, side)
            side = None
            summary["wait_s"] = round(time.time() - t, 1)
            print(f"\n{part['clinical_table']}\n\n{part['cases_line']}", flush=True)
        else:
            part = run_text_part(out, seed, quick)
    finally:
        if side is not None:  # DermIQ failed or was interrupted: do not leave the other process running
            side[0].terminate()
            side[0].wait()
            side[1].close()
    summary.update({k: v for k, v in part.items() if k not in ("clinical_table", "cases_line")})
    summary["total_s"] = round(time.time() - t_all, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))

    print(f"\n{timings(summary)}")
    print(
        f"\nruns (config, metrics.jsonl, adapter/, eval/ with metrics.json, the ISIC-style probabilities CSV and the "
        f"confusion matrix) are under {out / 'dermiq'}/, {out / 'clinical'}/ and {out / 'cases'}/; summary.json beside them "
        f"({summary['total_s']:.0f} s in all)."
    )
    print(
        "The embedded default shows the machinery working end to end on synthetic data; medical accuracy needs "
        "a real checkpoint (recipes dermiq_pipeline_qwen25vl_3b and clinical_r1_qwen25_3b on a GPU: `medrl recipes`)."
    )
    print(DISCLAIMER)
    return summary


def _demo(args: argparse.Namespace) -> int:
    run_demo(
        Path(args.out),
        seed=args.seed,
        quick=args.quick,
        parallel=True if args.parallel else False if args.sequential else None,
    )
    return 0


def _text_part_main(argv: list[str] | None = None) -> int:
    """The child process of a parallel demo: stages 4-5 into OUT, their summary to OUT/text_part.json."""
    p = argparse.ArgumentParser(prog="python -m app.demo")
    p.add_argument("--text-part", required=True, help="the demo's output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.text_part)
    _split_threads(True)
    part = run_text_part(out, args.seed, args.quick)
    from training.atomic import atomic_write_text

    atomic_write_text(out / TEXT_PART_RESULT, json.dumps(part, indent=2))
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="run the DermIQ pipeline, a Clinical-R1 GRPO-vs-CRPO "
        "ablation and a Tree-GRPO case run on the embedded default (CPU, minutes)",
    )
    p.add_argument("--out", default="runs/demo", help="folder for the demo's data, runs and evaluations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="2 steps per stage, a few tokens (smoke test)")
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--parallel",
        action="store_true",
        help="run the text stages (Qwen2) in a second process beside "
        f"the image ones (default with {PARALLEL_MIN_CORES}+ cores)",
    )
    how.add_argument("--sequential", action="store_true", help="one process, stage after stage")
    p.set_defaults(handler=_demo)


if __name__ == "__main__":
    raise SystemExit(_text_part_main())
