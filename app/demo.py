"""`medrl demo`: the whole pipeline on the embedded default, on CPU, in minutes.

Stages (each prints what it shows): build the embedded models; generate data from the KGs; SFT warm-up of the
tiny VLM on synthetic lesions and of the tiny LM on synthetic vignettes; export both adapters (the VLM one
merged too); a GRPO++ run on a verifiable toy task, reward before/after. The DermIQ and Clinical-R1 pipelines
replace the toy stage when they land. The records come from `dermiq.records` and `clinical.records`; this file
only orders the stages. Importing it (command registration) imports no torch.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from training.errors import MedrlError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
MARKER = ".medrl-demo"
REWARD_KEYS = ("reward/mean", "reward_mean")  # the mean total reward per step; older runs logged reward_mean


def _stage(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.time()


def make_data(data_dir: Path, seed: int) -> dict[str, Path]:
    from clinical import records as clinical_records
    from clinical.synthetic import generate_vignettes
    from dermiq import records as derm_records
    from dermiq.synthetic import generate_dataset
    from knowledge_graph.io import load_builtin
    from training.data import write_jsonl
    from training.toy_task import write_records

    kg = load_builtin("derm")
    derm = generate_dataset(data_dir, n_per_class=2, seed=seed, kg=kg)
    paths = {"derm_sft": data_dir / "derm_sft.jsonl", "clinical_sft": data_dir / "clinical_sft.jsonl",
             "toy": data_dir / "toy_numbers.jsonl"}
    write_jsonl(paths["derm_sft"], derm_records.sft_records(derm, kg))
    write_jsonl(paths["clinical_sft"], clinical_records.sft_records(generate_vignettes(24, seed=seed)))
    write_records(paths["toy"], 64, seed=seed)
    print(f"{len(derm)} synthetic lesion images, 24 clinical vignettes, 64 toy prompts in {data_dir}")
    return paths


def run_demo(out: Path, seed: int = 0, quick: bool = False) -> dict:
    from training.cli import run_recipe
    from training.embedded import ensure_embedded
    from training.export import export_run
    from training.run import DISCLAIMER
    from training.tracking import read_metrics

    if out.exists():
        if not (out / MARKER).exists():
            raise MedrlError(f"{out} exists and was not made by the demo; pass --out elsewhere")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("made by `medrl demo`; removed by the next demo run\n")
    summary: dict = {}
    steps = "2" if quick else None

    t = _stage("1/5 embedded models (built once, then cached)")
    for kind in ("qwen2", "qwen25vl"):
        print(f"{kind}: {ensure_embedded(kind)}")
    summary["models_s"] = round(time.time() - t, 1)

    t = _stage("2/5 data from the knowledge graphs")
    data = make_data(out / "data", seed)
    summary["data_s"] = round(time.time() - t, 1)

    common = [f"--run.output_dir={out}", f"--run.seed={seed}"] + ([f"--run.max_steps={steps}"] if steps else [])
    t = _stage("3/5 SFT warm-up: tiny Qwen2.5-VL on synthetic lesions, tiny Qwen2 on vignettes")
    for name, cfg, key in (("sft_vlm", "sft_qwen25vl_tiny.yaml", "derm_sft"),
                           ("sft_lm", "sft_qwen2_tiny.yaml", "clinical_sft")):
        last = run_recipe(str(CONFIGS / cfg), [f"--data.train={data[key]}", f"--run.name={name}", *common])
        first = next(r["loss"] for r in read_metrics(out / name) if "loss" in r)
        print(f"{name}: assistant-token loss {first:.3f} -> {last['loss']:.3f}")
        summary[f"{name}_loss"] = [round(first, 3), round(last["loss"], 3)]
    summary["sft_s"] = round(time.time() - t, 1)

    t = _stage("4/5 export the adapters (VLM merged onto a 16-bit base too)")
    for name, merge in (("sft_vlm", True), ("sft_lm", False)):
        res = export_run(out / name, out / "exports" / name, merge=merge, dtype="bfloat16")
        print(f"{name}: {res['adapter']}" + (f" (+ merged/, max logit diff {res['max_logit_diff']:.3g})"
                                              if merge else ""))
    summary["export_s"] = round(time.time() - t, 1)

    t = _stage("5/5 GRPO++ on a verifiable toy task (reply with the number the prompt names)")
    run_recipe(str(CONFIGS / "grpopp_qwen2_toy.yaml"), [f"--data.train={data['toy']}", "--run.name=grpopp_toy",
                                                          *common])
    rewards = [next(r[k] for k in REWARD_KEYS if k in r) for r in read_metrics(out / "grpopp_toy")
               if any(k in r for k in REWARD_KEYS)]
    if not rewards:  # a renamed metric must not read as "reward 0 -> 0"
        raise RuntimeError(f"the GRPO++ run logged none of {REWARD_KEYS}")
    k = max(1, min(4, len(rewards) // 2))
    before, after = sum(rewards[:k]) / k, sum(rewards[-k:]) / k
    print(f"mean reward: first {k} steps {before:.3f} -> last {k} steps {after:.3f}")
    summary["grpopp_reward"] = [round(before, 3), round(after, 3)]
    summary["rl_s"] = round(time.time() - t, 1)

    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nruns, metrics (metrics.jsonl, TensorBoard) and exports are under {out}/")
    print("The embedded default shows the machinery working end to end; medical accuracy needs a real "
          "checkpoint (configs/*_3b.yaml on a GPU).")
    print(DISCLAIMER)
    return summary


def _demo(args: argparse.Namespace) -> int:
    run_demo(Path(args.out), seed=args.seed, quick=args.quick)
    return 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline on the embedded default (CPU, minutes)")
    p.add_argument("--out", default="runs/demo", help="folder for the demo's data, runs and exports")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="2 steps per stage (smoke test)")
    p.set_defaults(handler=_demo)
