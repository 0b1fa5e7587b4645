"""`medrl bench rollout`: sampling throughput of our rollout engine vs `model.generate(num_return_sequences=G)`.

Same model folder (the embedded Qwen2 by default, no adapter), same chat-templated prompts of about P tokens, same
device and precision, G completions of exactly S new tokens per prompt (ours `ignore_eos`, generate
`min_new_tokens=S`), plain multinomial sampling at temperature 1 on both sides. For each number of prompts per call,
each side runs in a fresh process (`OMP_WAIT_POLICY=PASSIVE` unless set): one warm-up call, then the median of
`repeats` timed calls. tokens/s counts sampled tokens (prompts x G x S) over the call's wall time, prefill included.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from bench.common import (
    available_cpus,
    format_table,
    omp_wait_policy,
    peak_rss_bytes,
    pin_device_env,
    run_child,
)

COLUMNS = [
    ("prompts", "prompts", "d"),
    ("rows", "rows", "d"),
    ("seconds_ours", "ours s", ".2f"),
    ("seconds_generate", "generate s", ".2f"),
    ("tokens_per_s_ours", "ours tok/s", ".0f"),
    ("tokens_per_s_generate", "generate tok/s", ".0f"),
    ("speedup_vs_generate", "speedup", ".2f"),
]


def _texts(tok, p: int, n: int) -> list[str]:
    from bench.grpo_step import prompt_records
    from training.models.chat import render

    return [render(tok, r["prompt"], add_generation_prompt=True) for r in prompt_records(tok, p, n)]


def _sync(device: str) -> None:
    if device != "cpu":
        import torch

        torch.cuda.synchronize()


def worker(args: dict) -> dict:
    """One side, one prompt count: load, warm up, time `repeats` calls."""
    import statistics

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.data.batch import encode_prompts
    from training.models.embedded import resolve_model_path
    from training.rollout.engine import SamplingConfig, generate_rollouts

    torch.set_num_threads(args["threads"])
    device, dtype = args["device"], getattr(torch, args["dtype"])
    path = resolve_model_path(args["model"])
    tok = AutoTokenizer.from_pretrained(path)
    model = (
        AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="sdpa").to(device).eval()
    )
    texts = _texts(tok, args["p"], args["prompts"])
    g, s = args["g"], args["s"]
    if args["impl"] == "ours":
        prompts = encode_prompts(tok, texts)
        cfg = SamplingConfig(
            num_generations=g, max_new_tokens=s, temperature=1.0, ignore_eos=True, compile=args["compile"]
        )
        gen = torch.Generator(device=device).manual_seed(0)

        def call() -> int:
            out = generate_rollouts(model, tok, prompts, cfg, gen)
            return int(out.completion_mask.sum())
    else:
        enc = tok(texts, return_tensors="pt", padding=True, padding_side="left").to(device)
        torch.manual_seed(0)

        def call() -> int:
            with torch.inference_mode():
                out = model.generate(
                    **enc,
                    do_sample=True,
                    temperature=1.0,
                    top_k=0,
                    top_p=1.0,
                    num_return_sequences=g,
                    max_new_tokens=s,
                    min_new_tokens=s,
                )
            return int((out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0])

    prompt_tokens = [len(tok(t).input_ids) for t in texts]
    call()  # warm-up (and the compile, when on)
    times, counts = [], []
    for _ in range(max(args["repeats"], 1)):
        _sync(device)
        t0 = time.perf_counter()
        counts.append(call())
        _sync(device)
        times.append(time.perf_counter() - t0)
    expected = args["prompts"] * g * s
    if any(c != expected for c in counts):
        raise RuntimeError(f"{args['impl']}: sampled {counts} tokens per call, expected {expected}")
    sec = statistics.median(times)
    out = {
        "seconds": sec,
        "times": times,
        "tokens_per_s": expected / sec,
        "prompt_tokens": prompt_tokens,
        "threads": torch.get_num_threads(),
        "device": device,
        "dtype": args["dtype"],
        "peak_rss_mb": peak_rss_bytes() / 2**20,
    }
    if device != "cpu":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["gpu"] = torch.cuda.get_device_name()
    return out


def run(
    p: int = 512,
    g: int = 8,
    s: int = 128,
    prompts: tuple[int, ...] = (1, 8),
    repeats: int = 3,
    threads: int | None = None,
    model: str = "embedded:qwen2",
    device: str = "cpu",
    dtype: str = "float32",
    compile: str = "auto",
) -> dict[str, Any]:
    """`device` is `cpu` or `cuda:N` (bench.common.resolve_device); both sides run there in `dtype`."""
    import torch

    from training.models.embedded import resolve_model_path

    resolve_model_path(model)  # build once, outside the timed children
    threads = threads or available_cpus()
    base = {
        "p": p,
        "g": g,
        "s": s,
        "repeats": repeats,
        "threads": threads,
        "model": model,
        "dtype": dtype,
        "compile": compile,
        "device": "cpu" if device == "cpu" else "cuda:0",
    }
    env = pin_device_env(device)
    rows = []
    for n in prompts:
        ours = run_child("bench.rollout", {**base, "impl": "ours", "prompts": n}, env=env)
        ref = run_child("bench.rollout", {**base, "impl": "generate", "prompts": n}, env=env)
        rows.append(
            {
                "prompts": n,
                "rows": n * g,
                "seconds_ours": ours["seconds"],
                "seconds_generate": ref["seconds"],
                "tokens_per_s_ours": ours["tokens_per_s"],
                "tokens_per_s_generate": ref["tokens_per_s"],
                "speedup_vs_generate": ref["seconds"] / ours["seconds"],
                "peak_rss_mb_ours": ours["peak_rss_mb"],
                "peak_rss_mb_generate": ref["peak_rss_mb"],
                **(
                    {"peak_cuda_mb_ours": ours["peak_cuda_mb"], "peak_cuda_mb_generate": ref["peak_cuda_mb"]}
                    if "peak_cuda_mb" in ours
                    else {}
                ),
                "prompt_tokens": ours["prompt_tokens"],
            }
        )
    config = {
        **base,
        "device": device,
        "prompts": list(prompts),
        "omp_wait_policy": omp_wait_policy(),
        "torch": torch.__version__,
    }
    return {"config": config, "rows": rows}


def table(result: dict) -> str:
    c = result["config"]
    head = (
        f"rollout: {c['model']}, P~{c['p']}, G={c['g']}, {c['s']} new tokens, median of {c['repeats']} calls "
        f"after a warm-up, {c['threads']} threads, device={c['device']}, {c['dtype']}, compile={c['compile']}; "
        f"ours vs model.generate(num_return_sequences=G)"
    )
    return head + "\n" + format_table(result["rows"], COLUMNS)


if __name__ == "__main__":
    payload = json.loads(sys.argv[1])
    print(json.dumps(worker(payload)))
