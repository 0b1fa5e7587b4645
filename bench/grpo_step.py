"""`medrl bench grpo-step`: one full RL step (rollout + loss + update), ours vs TRL's GRPOTrainer.

Same tiny model folder, same prompts (about P prompt tokens), G completions of exactly S new tokens, LoRA r=16,
no reference model (beta=0), token-mean loss, no gradient checkpointing, sdpa attention, TRL without vLLM. Both
sides run on the same device and precision: `float32` = fp32 weights, no autocast; `bfloat16` = bf16 base weights
(LoRA in fp32, as peft keeps it) under bf16 autocast. Each side runs in its own process that sees only that device
(so peak RSS is its own and neither framework can pick another GPU); each reports the device, dtype and precision
its model actually ran in, and a mismatch is an error, not a table. The median step time skips the warm-up steps.
`prompts` prompts per step on both sides (TRL: a per-device batch of prompts x G rows, one generation per step).

`--profile` times our step's phases in the child by wrapping the trainer's calls (prefill: the policy's forward
calls of more than one token inside the rollout; decode: the rest of the rollout; rewards; reference and old-policy
log-probs; loss forward; backward; optimizer; other: what is left of the step), syncing CUDA around each, so the
next bottleneck is named by measurement; the syncs make a profiled step slightly slower than a plain one.
"""

from __future__ import annotations

import json
import resource
import shutil
import statistics
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench.common import omp_wait_policy, pin_device_env, run_child

PHASES = ("prefill", "decode", "rewards", "reference", "loss_forward", "backward", "optimizer", "other")

PRECISION = {"float32": "fp32", "bfloat16": "bf16"}  # --dtype -> autocast, ours' run.precision spelling

FILLER = (
    "The patient is a 45-year-old woman with a 3-week history of an itchy, scaly plaque on the elbow. "
    "Examination shows a well-demarcated erythematous plaque with silvery scale. "
)


def prompt_records(tokenizer, prompt_tokens: int, n: int, image_dir: Path | None = None) -> list[dict]:
    """``n`` toy prompts of about ``prompt_tokens`` text tokens; with ``image_dir``, each also gets its own random
    448x448 image there (256 visual tokens after the 2x2 merge, as a dermoscopy crop), first in its user turn."""
    from training.objectives.toy_task import make_records

    filler = ""
    while len(tokenizer(filler).input_ids) < prompt_tokens - 40:
        filler += FILLER
    recs = make_records(n, seed=0, filler=filler)
    if image_dir is None:
        return recs
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i, rec in enumerate(recs):
        path = image_dir / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (448, 448, 3), dtype=np.uint8)).save(path)
        text = rec["prompt"][-1]["content"]
        rec["prompt"][-1]["content"] = [{"type": "image"}, {"type": "text", "text": text}]
        rec["images"] = [str(path)]
    return recs


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _sync(device: str) -> None:
    """Step times on CUDA must include the queued kernels."""
    if device != "cpu":
        import torch

        torch.cuda.synchronize()


def _machine(device: str, weights_device, weights_dtype, precision: str) -> dict[str, Any]:
    """What one side actually ran on: recorded per side, compared by `run`."""
    import torch

    dev = torch.device(weights_device)
    out = {
        "device": f"{dev.type}:{dev.index or 0}" if dev.type == "cuda" else dev.type,
        "dtype": str(weights_dtype).replace("torch.", ""),
        "precision": precision,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "trl": _version("trl"),
        "peak_rss_mb": _peak_rss_mb(),
    }
    if device != "cpu":
        out["gpu"] = torch.cuda.get_device_name(dev)
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return out


class VisionCount:
    """Images through the vision tower in this process, whichever trainer runs it: a global forward hook on
    modules whose class is a vision transformer (Qwen2.5-VL's), counting rows of its `grid_thw` (one per image).
    Registered only when ``active`` (a run with images): a global hook puts every module call of the timed steps
    on torch's slower hooked path, on both sides."""

    def __init__(self, active: bool = True):
        self.images = 0
        self.active = active
        self._handle = None

    def _hook(self, module, args, kwargs, output) -> None:
        if type(module).__name__.endswith("VisionTransformerPretrainedModel"):
            grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
            self.images += int(grid.shape[0]) if grid is not None else 1

    def __enter__(self) -> VisionCount:
        from torch.nn.modules.module import register_module_forward_hook

        if self.active:
            self._handle = register_module_forward_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()


class StepProfile:
    """Per-step phase times of `train_rl`, by wrapping the names the trainer calls (in this child process only)."""

    def __init__(self, device: str):
        self.device = device
        self.steps: list[dict[str, float]] = []
        self.in_rollout = False
        self._t_prefill = 0.0
        self._undo: list[tuple[Any, str, Any]] = []

    def _add(self, key: str, dt: float) -> None:
        self.steps[-1][key] = self.steps[-1].get(key, 0.0) + dt

    def _timed(self, key: str, fn):
        def wrapper(*a, **k):
            _sync(self.device)
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                _sync(self.device)
                self._add(key, time.perf_counter() - t0)

        return wrapper

    def _patch(self, owner: Any, name: str, key: str) -> None:
        if not hasattr(owner, name):
            raise RuntimeError(
                f"--profile: {getattr(owner, '__name__', owner)} has no {name} any more; "
                "update bench/grpo_step.py's StepProfile"
            )
        original = getattr(owner, name)
        self._undo.append((owner, name, original))
        setattr(owner, name, self._timed(key, original))

    def install(self) -> None:
        import torch

        from training.objectives import reference
        from training.trainers import rl_trainer, step_loop

        generate = rl_trainer.generate_rollouts

        def rollout(model, *a, **k):
            from training.data.batch import unwrap_model

            base = unwrap_model(model)
            hooks = [
                base.register_forward_pre_hook(self._prefill_start, with_kwargs=True),
                base.register_forward_hook(self._prefill_end, with_kwargs=True),
            ]
            self.steps.append({})
            _sync(self.device)
            t0 = time.perf_counter()
            self.in_rollout = True
            try:
                return generate(model, *a, **k)
            finally:
                self.in_rollout = False
                _sync(self.device)
                for h in hooks:
                    h.remove()
                self._add("rollout", time.perf_counter() - t0)

        self._undo.append((rl_trainer, "generate_rollouts", generate))
        rl_trainer.generate_rollouts = rollout
        self._patch(rl_trainer, "score", "rewards")
        self._patch(reference.Reference, "logprobs", "reference")
        self._patch(rl_trainer, "frozen_logprobs", "reference")
        self._patch(rl_trainer, "completion_logprobs", "loss_forward")
        self._patch(rl_trainer, "policy_loss", "loss_forward")
        self._patch(torch.Tensor, "backward", "backward")
        self._patch(step_loop, "clip_and_step", "optimizer")  # the shared step loop clips and steps

    def uninstall(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()

    @staticmethod
    def _is_prefill(args: tuple, kwargs: dict) -> bool:
        import torch

        if torch.compiler.is_compiling():
            return False
        ids = kwargs.get("input_ids", args[0] if args else None)
        return ids is not None and ids.shape[-1] > 1

    def _prefill_start(self, module, args, kwargs):
        if self.in_rollout and self._is_prefill(args, kwargs):
            _sync(self.device)
            self._t_prefill = time.perf_counter()

    def _prefill_end(self, module, args, kwargs, output):
        if self.in_rollout and self._is_prefill(args, kwargs):
            _sync(self.device)
            self._add("prefill", time.perf_counter() - self._t_prefill)

    def summary(self, step_times: list[float], skip: int) -> dict[str, float]:
        """Mean seconds per phase over the timed steps; decode = rollout - prefill, other = step - the rest."""
        rows = []
        for times, step in zip(self.steps[skip:], step_times[skip:]):
            row = {k: times.get(k, 0.0) for k in PHASES if k not in ("decode", "other")}
            row["decode"] = times.get("rollout", 0.0) - row["prefill"]
            row["other"] = step - sum(row.values())
            rows.append(row)
        n = max(len(rows), 1)
        return {k: sum(r[k] for r in rows) / n for k in PHASES}


def worker_ours(args: dict) -> dict:
    import torch

    from training.config import load_config
    from training.data.records import write_jsonl
    from training.models.embedded import resolve_model_path
    from training.run.tracking import read_metrics
    from training.trainers.rl_config import RLConfig
    from training.trainers.rl_trainer import train_rl

    torch.set_num_threads(args["threads"])
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model_path(args["model"]))
    with tempfile.TemporaryDirectory() as d:
        data = Path(d) / "prompts.jsonl"
        images = Path(d) if args.get("images") else None
        write_jsonl(data, prompt_records(tok, args["p"], args["steps"] * args["prompts"], images))
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
                f"--prompts_per_step={args['prompts']}",
                "--rewards={toy_correct: 1.0}",
                "--reward_modules=[training.objectives.toy_task]",
                "--loss.beta=0.0",
                "--model.lora.r=16",
                "--model.lora.alpha=32",
                "--model.lora.dropout=0.0",
                "--optim.lr=1e-5",
                f"--loss.forward={args['forward']}",
                "--data.shuffle=false",
                f"--model.device={args['device']}",
                f"--model.dtype={args['dtype']}",
                f"--run.precision={PRECISION[args['dtype']]}",
            ],
        )
        profile = StepProfile(args["device"]) if args.get("profile") else None
        if profile is not None:
            profile.install()
        try:
            with VisionCount(bool(args.get("images"))) as seen:
                train_rl(cfg)
        finally:
            if profile is not None:
                profile.uninstall()
        rows = read_metrics(Path(d) / "bench")
    times = [r["step_time_s"] for r in rows if "step_time_s" in r]
    rollout = [r["rollout_s"] for r in rows if "rollout_s" in r]
    start = next((r for r in rows if r.get("event") == "start"), {})  # the loaded policy's device and dtype
    skip = args["warmup"]
    extra = {"profile_s": profile.summary(times, skip)} if profile is not None else {}
    return {
        "step_times": times,
        "median_step_s": statistics.median(times[skip:]),
        "median_rollout_s": statistics.median(rollout[skip:]),
        "images_encoded_per_step": seen.images / max(len(times), 1),
        **extra,
        **_machine(
            args["device"],
            start.get("device", args["device"]),
            start.get("dtype", args["dtype"]),
            cfg.run.precision,
        ),
    }


def worker_trl(args: dict) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from PIL import Image
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoProcessor,
        AutoTokenizer,
        TrainerCallback,
    )
    from trl import GRPOConfig, GRPOTrainer

    from training.config import ModelConfig
    from training.models.embedded import resolve_model_path
    from training.models.loading import AUTO_TARGETS, quantization_config

    torch.set_num_threads(args["threads"])
    path = resolve_model_path(args["model"])
    tok = AutoTokenizer.from_pretrained(path)
    image_dir = Path(tempfile.mkdtemp(prefix="medrl-bench-trl-")) if args.get("images") else None
    recs = prompt_records(tok, args["p"], args["steps"] * args["prompts"], image_dir)
    if image_dir is None:
        ds = Dataset.from_list([{"prompt": r["prompt"], "answer": r["answer"]} for r in recs])
    else:  # TRL's VLM input: a text-only conversation and an `image` column, which it places first in the turn
        rows = []
        for r in recs:
            text = r["prompt"][-1]["content"][-1]["text"]
            prompt = [*r["prompt"][:-1], {"role": r["prompt"][-1]["role"], "content": text}]
            rows.append(
                {"prompt": prompt, "answer": r["answer"], "image": Image.open(r["images"][0]).convert("RGB")}
            )
        ds = Dataset.from_list(rows)
        shutil.rmtree(image_dir)  # the images are in memory now

    def reward(completions, answer, **_):
        from training.objectives.toy_task import correct

        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        return correct(None, texts, answer)

    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            _sync(args["device"])
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            _sync(args["device"])
            times.append(time.perf_counter() - self.t0)

    with tempfile.TemporaryDirectory() as d:
        cfg = GRPOConfig(
            output_dir=d,
            use_cpu=args["device"] == "cpu",
            bf16=args["dtype"] == "bfloat16",
            fp16=False,
            per_device_train_batch_size=args["g"] * args["prompts"],
            num_generations=args["g"],
            max_completion_length=args["s"],
            max_steps=args["steps"],
            gradient_checkpointing=False,
            beta=0.0,
            learning_rate=1e-5,
            logging_steps=1000,
            save_strategy="no",
            report_to=[],
            temperature=1.0,
            shuffle_dataset=False,
            generation_kwargs={"min_new_tokens": args["s"]},
            disable_tqdm=True,
        )
        # `quantization` (4bit / 8bit, from `bench gpu`): the same bitsandbytes settings our loader uses
        quant = quantization_config(
            ModelConfig(name=path, quantization=args.get("quantization", "none")),
            getattr(torch, args["dtype"]),
        )
        extra = {} if quant is None else {"quantization_config": quant, "device_map": {"": args["device"]}}
        auto = AutoModelForImageTextToText if image_dir is not None else AutoModelForCausalLM
        model = auto.from_pretrained(
            path, dtype=getattr(torch, args["dtype"]), attn_implementation="sdpa", **extra
        )
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=reward,
            args=cfg,
            train_dataset=ds,
            processing_class=AutoProcessor.from_pretrained(path) if image_dir is not None else tok,
            peft_config=LoraConfig(
                r=16, lora_alpha=32, lora_dropout=0.0, target_modules=AUTO_TARGETS, task_type="CAUSAL_LM"
            ),
            callbacks=[Timer()],
        )
        with VisionCount(bool(args.get("images"))) as seen:
            trainer.train()
        base = next(p for n, p in trainer.model.named_parameters() if "lora_" not in n)
        precision = {"no": "fp32"}.get(
            trainer.accelerator.mixed_precision, trainer.accelerator.mixed_precision
        )
        machine = _machine(args["device"], base.device, base.dtype, precision)
    skip = args["warmup"]
    return {
        "step_times": times,
        "median_step_s": statistics.median(times[skip:]),
        "images_encoded_per_step": seen.images / max(len(times), 1),
        **machine,
        "quantization": args.get("quantization", "none"),
    }


def _spawn(impl: str, args: dict[str, Any]) -> dict[str, Any]:
    """One side in a fresh process that sees only the benchmark's device (as cuda:0) or no GPU at all."""
    child = dict(args, device="cpu" if args["device"] == "cpu" else "cuda:0")
    return run_child("bench.grpo_step", {"impl": impl, **child}, env=pin_device_env(args["device"]))


def _check_same_machine(ours: dict[str, Any], trl: dict[str, Any]) -> None:
    """A speedup between different devices or precisions measures the hardware, not the code."""
    for key in ("device", "dtype", "precision", "threads"):
        if ours[key] != trl[key]:
            raise RuntimeError(
                f"grpo-step: the two sides ran with different {key} "
                f"(ours {ours[key]!r}, TRL {trl[key]!r}): not a fair comparison"
            )


def run(
    p: int = 512,
    g: int = 8,
    s: int = 64,
    steps: int = 5,
    warmup: int = 1,
    threads: int = 2,
    model: str = "embedded:qwen2",
    with_trl: bool = True,
    device: str = "cpu",
    dtype: str = "float32",
    prompts: int = 1,
    profile: bool = False,
    images: bool = False,
) -> dict[str, Any]:
    """`device` is `cpu` or `cuda:N` (bench.common.resolve_device); `dtype` float32 or bfloat16, both sides;
    `prompts` per step (global batch prompts x G on both sides); `profile`: our step's phase times; `images`: one
    448x448 image per prompt (a VLM `model`, e.g. embedded:qwen25vl), given to TRL as its `image` column."""
    import torch

    from training.models.embedded import resolve_model_path

    if dtype not in PRECISION:
        raise ValueError(f"dtype: expected one of {sorted(PRECISION)}, got {dtype!r}")
    resolve_model_path(model)  # build once, outside the timed workers
    args = {
        "p": p,
        "g": g,
        "s": s,
        "steps": steps,
        "warmup": warmup,
        "threads": threads,
        "model": model,
        "forward": "grouped",
        "device": device,
        "dtype": dtype,
        "prompts": prompts,
        "profile": profile,
        "images": images,
    }
    config = {
        **{k: v for k, v in args.items() if k not in ("forward", "profile")},
        "precision": PRECISION[dtype],
        "omp_wait_policy": omp_wait_policy(),
        "torch": torch.__version__,
        "trl": _version("trl"),
        "transformers": _version("transformers"),
        "peft": _version("peft"),
        **({} if device == "cpu" else pin_device_env(device)),
    }
    result: dict[str, Any] = {"config": config, "ours": _spawn("ours", args)}
    if with_trl:
        ours, trl = result["ours"], _spawn("trl", args)
        _check_same_machine(ours, trl)
        result["trl"] = trl
        result["speedup_vs_trl"] = trl["median_step_s"] / ours["median_step_s"]
        result["rss_ratio_vs_trl"] = ours["peak_rss_mb"] / trl["peak_rss_mb"]
    return result


def table(result: dict) -> str:
    c = result["config"]
    lines = [
        f"grpo-step: {c['model']}, {c.get('prompts', 1)} prompt(s) per step, P~{c['p']}"
        f"{' + one 448x448 image' if c.get('images') else ''}, G={c['g']}, "
        f"{c['s']} new tokens, LoRA r=16, "
        f"{c['steps']} steps ({c['warmup']} warm-up), {c['threads']} threads, device={c['device']}, "
        f"{c['dtype']} (autocast {c['precision']}), both sides; torch {c['torch']}, TRL {c['trl']}",
        f"{'impl':<8}{'median step s':>15}{'peak RSS MB':>14}{'images encoded/step':>21}",
    ]
    for impl in ("ours", "trl"):
        if impl in result:
            r = result[impl]
            lines.append(
                f"{impl:<8}{r['median_step_s']:>15.3f}{r['peak_rss_mb']:>14.0f}"
                f"{r.get('images_encoded_per_step', 0):>21.1f}"
            )
    if "speedup_vs_trl" in result:
        lines.append(
            f"speedup_vs_trl = {result['speedup_vs_trl']:.2f}x   "
            f"rss_ratio_vs_trl = {result['rss_ratio_vs_trl']:.2f}"
        )
    prof = result["ours"].get("profile_s")
    if prof:
        total = sum(prof.values())
        lines.append("ours, mean s per step by phase (profiled steps sync CUDA around each phase):")
        lines.extend(f"  {k:<13}{v:>8.3f}  {100 * v / max(total, 1e-12):5.1f}%" for k, v in prof.items())
    return "\n".join(lines)


if __name__ == "__main__":
    payload = json.loads(sys.argv[1])
    print(json.dumps((worker_ours if payload["impl"] == "ours" else worker_trl)(payload)))
