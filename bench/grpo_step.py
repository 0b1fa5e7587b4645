"""`medrl bench grpo-step`: one full RL step (rollout + loss + update), ours vs TRL's GRPOTrainer.

Same tiny model folder, same prompts (about P prompt tokens), G completions of exactly S new tokens, LoRA r=16,
no reference model (beta=0), token-mean loss, no gradient checkpointing, TRL without vLLM on CPU flags. Each
side runs in its own process so peak RSS is its own; the median step time skips the first (warm-up) steps.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FILLER = ("The patient is a 45-year-old woman with a 3-week history of an itchy, scaly plaque on the elbow. "
          "Examination shows a well-demarcated erythematous plaque with silvery scale. ")


def prompt_records(tokenizer, prompt_tokens: int, n: int) -> list[dict]:
    from training.toy_task import make_records

    filler = ""
    while len(tokenizer(filler).input_ids) < prompt_tokens - 40:
        filler += FILLER
    return make_records(n, seed=0, filler=filler)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker_ours(args: dict) -> dict:
    import torch

    from training.config import load_config
    from training.data import write_jsonl
    from training.embedded import resolve_model_path
    from training.rl_config import RLConfig
    from training.rl_trainer import train_rl
    from training.tracking import read_metrics

    torch.set_num_threads(args["threads"])
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model_path(args["model"]))
    with tempfile.TemporaryDirectory() as d:
        data = Path(d) / "prompts.jsonl"
        write_jsonl(data, prompt_records(tok, args["p"], args["steps"]))
        cfg = load_config(RLConfig, None, [
            f"--data.train={data}", f"--model.name={args['model']}", f"--run.output_dir={d}", "--run.name=bench",
            f"--run.max_steps={args['steps']}", "--run.save_every=0", "--run.progress=false",
            "--run.tensorboard=false", f"--rollout.num_generations={args['g']}",
            f"--rollout.max_new_tokens={args['s']}", "--rollout.ignore_eos=true", "--prompts_per_step=1",
            "--rewards={toy_correct: 1.0}", "--reward_modules=[training.toy_task]", "--loss.beta=0.0",
            "--model.lora.r=16", "--model.lora.alpha=32", "--model.lora.dropout=0.0", "--optim.lr=1e-5",
            f"--loss.forward={args['forward']}", "--data.shuffle=false"])
        train_rl(cfg)
        times = [r["step_time_s"] for r in read_metrics(Path(d) / "bench") if "step_time_s" in r]
        rollout = [r["rollout_s"] for r in read_metrics(Path(d) / "bench") if "rollout_s" in r]
    skip = args["warmup"]
    return {"step_times": times, "median_step_s": statistics.median(times[skip:]),
            "median_rollout_s": statistics.median(rollout[skip:]), "peak_rss_mb": _peak_rss_mb()}


def worker_trl(args: dict) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from training.embedded import resolve_model_path
    from training.models import AUTO_TARGETS

    torch.set_num_threads(args["threads"])
    path = resolve_model_path(args["model"])
    tok = AutoTokenizer.from_pretrained(path)
    recs = prompt_records(tok, args["p"], args["steps"])
    ds = Dataset.from_list([{"prompt": r["prompt"], "answer": r["answer"]} for r in recs])

    def reward(completions, answer, **_):
        from training.toy_task import correct

        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        return correct(None, texts, answer)

    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.t0)

    with tempfile.TemporaryDirectory() as d:
        cfg = GRPOConfig(output_dir=d, use_cpu=True, bf16=False, per_device_train_batch_size=args["g"],
                         num_generations=args["g"], max_completion_length=args["s"], max_steps=args["steps"],
                         gradient_checkpointing=False, beta=0.0, learning_rate=1e-5, logging_steps=1000,
                         save_strategy="no", report_to=[], temperature=1.0, shuffle_dataset=False,
                         generation_kwargs={"min_new_tokens": args["s"]}, disable_tqdm=True)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=cfg, train_dataset=ds, processing_class=tok,
                              peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                                     target_modules=AUTO_TARGETS, task_type="CAUSAL_LM"),
                              callbacks=[Timer()])
        trainer.train()
    skip = args["warmup"]
    return {"step_times": times, "median_step_s": statistics.median(times[skip:]), "peak_rss_mb": _peak_rss_mb()}


def _spawn(impl: str, args: dict) -> dict:
    cmd = [sys.executable, "-m", "bench.grpo_step", impl, json.dumps(args)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{impl} worker failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def run(p: int = 512, g: int = 8, s: int = 64, steps: int = 5, warmup: int = 1, threads: int = 2,
        model: str = "embedded:qwen2", with_trl: bool = True) -> dict:
    from training.embedded import resolve_model_path

    resolve_model_path(model)  # build once, outside the timed workers
    args = {"p": p, "g": g, "s": s, "steps": steps, "warmup": warmup, "threads": threads, "model": model,
            "forward": "grouped"}
    ours = _spawn("ours", args)
    result = {"config": {k: v for k, v in args.items() if k != "forward"}, "ours": ours}
    if with_trl:
        trl = _spawn("trl", args)
        result["trl"] = trl
        result["speedup_vs_trl"] = trl["median_step_s"] / ours["median_step_s"]
        result["rss_ratio_vs_trl"] = ours["peak_rss_mb"] / trl["peak_rss_mb"]
    return result


def table(result: dict) -> str:
    c = result["config"]
    lines = [f"grpo-step: {c['model']}, P~{c['p']}, G={c['g']}, {c['s']} new tokens, LoRA r=16, "
             f"{c['steps']} steps ({c['warmup']} warm-up), {c['threads']} threads",
             f"{'impl':<8}{'median step s':>15}{'peak RSS MB':>14}"]
    for impl in ("ours", "trl"):
        if impl in result:
            lines.append(f"{impl:<8}{result[impl]['median_step_s']:>15.3f}{result[impl]['peak_rss_mb']:>14.0f}")
    if "speedup_vs_trl" in result:
        lines.append(f"speedup_vs_trl = {result['speedup_vs_trl']:.2f}x   "
                     f"rss_ratio_vs_trl = {result['rss_ratio_vs_trl']:.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    impl, raw = sys.argv[1], json.loads(sys.argv[2])
    out = (worker_ours if impl == "ours" else worker_trl)(raw)
    print(json.dumps(out))
