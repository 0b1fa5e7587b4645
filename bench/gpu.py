"""`medrl bench gpu`: does a 3B model train on a 12 GB consumer GPU, and how fast? Measured, not hoped.

Builds Qwen2.5-VL-3B-Instruct and Qwen2.5-3B-Instruct *shapes* (the published configs' widths, depths, heads,
vision tower and the 151,936-token vocabulary) with random weights, so no model hub is needed, saved as ordinary
Hugging Face folders (bf16) beside the embedded models and loaded through `load_policy` in 4-bit (QLoRA), the path a
user's real checkpoint takes. The embedded tokenizer is used (its ids are a subset of the vocabulary; sampled ids
beyond it decode to nothing, which does not change the cost). Then GRPO++ steps with G=8 and an image per prompt on
the VLM, and CRPO-shaped steps on text, through our rollout, lean head and Prefix-Grouper path: peak GPU memory,
step time and tokens/s; and the text step through TRL's GRPOTrainer on the same model, 4-bit too (`bench grpo-step`'s
worker), beside it. Random weights make the rewards meaningless: this measures cost only.

Without CUDA it says so and exits 0. `--shape tiny` runs the same code on the embedded sizes (CPU, seconds), which
is how the tests keep this path working on machines without a GPU.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import pin_device_env, run_child
from training.models.shapes import resize_config

SHAPES = ("3b", "tiny")
GOAL_PEAK_MB = 12 * 1024


def build_shape(kind: str, shape: str, root: Path) -> Path:
    """The `kind` (`qwen2` | `qwen25vl`) model at `shape` sizes, random weights (seeded), cached under `root`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor

    from training.models.embedded import ensure_embedded

    out = root / f"{kind}-{shape}"
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return out
    small = ensure_embedded(kind)
    config = AutoConfig.from_pretrained(small)  # keeps the embedded tokenizer's special-token ids
    if shape == "3b":
        resize_config(config, kind)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    auto = AutoModelForImageTextToText if kind == "qwen25vl" else AutoModelForCausalLM
    with torch.device(device):  # initialising 3B parameters on the GPU takes seconds, on the CPU minutes
        model = auto.from_config(config, dtype=torch.bfloat16)
    tmp = Path(tempfile.mkdtemp(prefix=f".{kind}-{shape}-", dir=root))
    model.save_pretrained(tmp)
    AutoProcessor.from_pretrained(small).save_pretrained(tmp)
    tmp.rename(out)
    return out


def worker(args: dict) -> dict:
    """One model's RL steps in this (fresh) process: our trainer, `args['steps']` steps, the first `warmup` untimed."""
    import torch
    from transformers import AutoTokenizer

    from bench.grpo_step import prompt_records
    from training.config import load_config
    from training.data.records import write_jsonl
    from training.run.tracking import read_metrics
    from training.trainers.rl_config import RLConfig
    from training.trainers.rl_trainer import train_rl

    tok = AutoTokenizer.from_pretrained(args["model"])
    with tempfile.TemporaryDirectory() as d:
        data = Path(d) / "prompts.jsonl"
        images = Path(d) if args["images"] else None
        write_jsonl(data, prompt_records(tok, args["p"], args["steps"] * args["prompts"], images))
        precision = "bf16" if args["device"] != "cpu" else "fp32"
        cfg = load_config(
            RLConfig,
            None,
            [
                f"--data.train={data}",
                f"--model.name={args['model']}",
                f"--run.output_dir={d}",
                "--run.name=bench",
                f"--run.max_steps={args['steps']}",
                "--run.save_every=0",
                "--run.progress=false",
                "--run.tensorboard=false",
                f"--rollout.num_generations={args['g']}",
                f"--rollout.max_new_tokens={args['s']}",
                "--rollout.ignore_eos=true",
                "--rollout.temperature=0.7",
                f"--prompts_per_step={args['prompts']}",
                "--rewards={toy_correct: 1.0, toy_digits: 0.2}",
                "--reward_modules=[training.objectives.toy_task]",
                f"--advantages.estimator={args['estimator']}",
                "--advantages.correct_reward=toy_correct",
                "--reference.kind=lagged",
                "--reference.sync_every=10",
                "--loss.beta=0.001",
                "--loss.entropy_coef=0.001",
                f"--model.quantization={args['quantization']}",
                "--model.lora.r=16",
                "--model.lora.alpha=32",
                "--model.lora.dropout=0.0",
                "--optim.lr=3e-5",
                "--loss.forward=grouped",
                "--loss.head=auto",
                "--data.shuffle=false",
                f"--model.device={args['device']}",
                f"--run.precision={precision}",
            ],
        )
        if args["device"] != "cpu":
            torch.cuda.reset_peak_memory_stats()
        train_rl(cfg)
        rows = read_metrics(Path(d) / "bench")
    steps = [r for r in rows if "step_time_s" in r][args["warmup"] :]
    out = {
        "median_step_s": statistics.median(r["step_time_s"] for r in steps),
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in steps),
        "median_rollout_s": statistics.median(r["rollout_s"] for r in steps),
        "precision": precision,
        "quantization": args["quantization"],
    }
    if args["device"] != "cpu":
        out["gpu"] = torch.cuda.get_device_name(0)
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(0) / 2**20
    out["planned_mb"] = planned_allocated(cfg, args) / 2**20  # `medrl plan`'s figure for this very config
    return out


def planned_allocated(cfg, args: dict) -> int:
    """What `medrl plan` predicts torch allocates for this run (its peak less the CUDA context and slack, which
    `torch.cuda.max_memory_allocated` does not count), on the device's dtype."""
    from training.plan import Shape, plan_stage

    shape = Shape(prompt_tokens=args["p"], images=1 if args["images"] else 0, image_px=448)
    plan = plan_stage(cfg, shape, device_dtype="bfloat16" if args["device"] != "cpu" else "float32")
    return plan["peak"] - plan["parts"]["overhead"]


def run(
    shape: str = "3b",
    device: str = "cuda:0",
    steps: int = 4,
    warmup: int = 1,
    g: int = 8,
    p: int = 512,
    s: int = 128,
    prompts: int = 1,
    quantization: str = "4bit",
    with_trl: bool = True,
    cache: Path | None = None,
) -> dict[str, Any]:
    """GRPO++ on the VLM with images and CRPO-shaped steps on text, ours (and TRL on text) in fresh processes."""
    import torch

    from training.models.embedded import cache_root

    if device != "cpu" and not torch.cuda.is_available():
        return {
            "cuda": False,
            "message": "no CUDA device here: `medrl bench gpu` measures a 3B model in 4-bit on a "
            "GPU; nothing was run",
        }
    if shape not in SHAPES:
        raise ValueError(f"shape: expected one of {SHAPES}, got {shape!r}")
    root = cache or cache_root() / "bench-gpu"
    root.mkdir(parents=True, exist_ok=True)
    env = {} if device == "cpu" else pin_device_env(device)
    child_device = "cpu" if device == "cpu" else "cuda:0"
    common = {
        "steps": steps,
        "warmup": warmup,
        "g": g,
        "p": p,
        "s": s,
        "prompts": prompts,
        "quantization": quantization,
        "device": child_device,
    }
    result: dict[str, Any] = {
        "cuda": device != "cpu",
        "config": {**common, "shape": shape, "device": device, "goal_peak_mb": GOAL_PEAK_MB},
    }
    vlm = build_shape("qwen25vl", shape, root)
    result["vlm_grpopp"] = run_child(
        "bench.gpu",
        {"impl": "ours", **common, "model": str(vlm), "images": True, "estimator": "grpo++"},
        env=env,
    )
    text = build_shape("qwen2", shape, root)
    result["text_crpo"] = run_child(
        "bench.gpu",
        {"impl": "ours", **common, "model": str(text), "images": False, "estimator": "grpo"},
        env=env,
    )
    if with_trl:
        trl_args = {
            "impl": "trl",
            "p": p,
            "g": g,
            "s": s,
            "steps": steps,
            "warmup": warmup,
            "prompts": prompts,
            "threads": torch.get_num_threads(),
            "model": str(text),
            "device": child_device,
            "dtype": "bfloat16" if device != "cpu" else "float32",
            "quantization": quantization,
        }
        trl = run_child("bench.grpo_step", trl_args, env=env)
        result["text_trl"] = trl
        result["text_speedup_vs_trl"] = trl["median_step_s"] / result["text_crpo"]["median_step_s"]
    for key in ("vlm_grpopp", "text_crpo"):
        peak = result[key].get("peak_cuda_mb")
        result[key]["fits_12gb"] = None if peak is None else peak <= GOAL_PEAK_MB
    return result


def table(result: dict) -> str:
    from bench.common import format_table

    if not result.get("cuda", True) and "config" not in result:
        return result["message"]
    c = result["config"]
    rows = [
        {"run": name, **result[key]}
        for name, key in (
            ("VLM GRPO++ (ours)", "vlm_grpopp"),
            ("text CRPO (ours)", "text_crpo"),
            ("text (TRL GRPOTrainer)", "text_trl"),
        )
        if key in result
    ]
    head = (
        f"bench gpu: {c['shape']} shapes, {c['quantization']}, G={c['g']}, P~{c['p']}, {c['s']} new tokens, "
        f"{c['prompts']} prompt(s)/step, {c['device']}"
    )
    body = format_table(
        rows,
        [
            ("run", "run", ""),
            ("median_step_s", "step s", ".2f"),
            ("tokens_per_s", "tok/s", ".0f"),
            ("peak_cuda_mb", "peak MB", ".0f"),
            ("planned_mb", "planned MB", ".0f"),
        ],
    )
    tail = (
        f"\nspeedup vs TRL (text): {result['text_speedup_vs_trl']:.2f}x"
        if "text_speedup_vs_trl" in result
        else ""
    )
    return f"{head}\n{body}{tail}"


if __name__ == "__main__":
    payload = json.loads(sys.argv[1])
    print(json.dumps(worker(payload)))
