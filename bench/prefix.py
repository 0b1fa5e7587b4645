"""`medrl bench prefix`: forward+backward of completion log-probs, naive vs Prefix-Grouper, on the tiny LM.

The model is the embedded Qwen2 (the VLM's text sizes), fp32, LoRA r=16 on all language-model projections with
non-zero B, one prompt of P random tokens and G completions of S tokens. The `vlm` row is the embedded Qwen2.5-VL with
one 448x448 image in the prompt (256 visual tokens after the 2x2 merge) and a text of `VLM_TEXT` random tokens,
decoded, through the chat template (the row's P is the whole prompt as encoded): the naive forward runs the vision tower and the prompt once per completion (as TRL does), the grouped one
once per group, so its speedup also counts G-1 saved image encodings. Each (config, path) runs in a fresh process: warm-up
(which is also the peak-memory run: peak RSS delta on CPU, `max_memory_allocated` on CUDA), then the median of
`repeats` timed runs. `ideal_token_ratio` = G(P+S) / (P+GS): how many fewer tokens the grouped row holds.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import available_cpus, format_table, omp_wait_policy, peak_rss_bytes, run_child, time_median

VLM_TEXT = 256  # random tokens decoded into the VLM row's text (fewer once re-encoded)
SWEEP_P = (256, 512, 1024)
SWEEP_G = (4, 8)
GOAL = 0.75  # speedup >= GOAL * ideal_token_ratio at the headline config
COLUMNS = [
    ("model", "model", "s"),
    ("p", "P", "d"),
    ("s", "S", "d"),
    ("g", "G", "d"),
    ("naive_s", "naive s", ".3f"),
    ("grouped_s", "grouped s", ".3f"),
    ("speedup", "speedup", ".2f"),
    ("ideal_token_ratio", "ideal", ".2f"),
    ("of_ideal", "of ideal", ".0%"),
    ("naive_peak_mb", "naive MB", ".0f"),
    ("grouped_peak_mb", "grouped MB", ".0f"),
    ("max_logprob_diff", "max |dlogp|", ".1e"),
]


def ideal_token_ratio(p: int, s: int, g: int) -> float:
    return g * (p + s) / (p + g * s)


def _model(device: str, dtype_name: str, kind: str = "qwen2"):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    from training.models.embedded import ensure_embedded
    from training.models.loading import AUTO_TARGETS
    from training.models.lora_forward import fuse_lora_forward

    dtype = getattr(torch, dtype_name)
    auto = AutoModelForImageTextToText if kind == "qwen25vl" else AutoModelForCausalLM
    model = auto.from_pretrained(ensure_embedded(kind), dtype=dtype).to(device)
    torch.manual_seed(0)  # lora_A's init draws from the global RNG: same adapter in every child
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=AUTO_TARGETS))
    fuse_lora_forward(model)  # our training forward, as load_policy sets it up
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, prm in model.named_parameters():
            if "lora_B" in name:
                prm.copy_(torch.randn(prm.shape, generator=gen) * 0.02)
    return model


def _batch(vocab: int, p: int, s: int, g: int, kind: str = "qwen2"):
    """One prompt of ``p`` random tokens (VLM: a random 448x448 image and ``p`` random text tokens through the
    chat template) and ``g`` random completions of ``s`` ordinary tokens (no special or vision placeholder ids)."""
    import numpy as np
    import torch
    from PIL import Image

    from training.data.batch import PromptInputs, RolloutBatch

    gen = torch.Generator().manual_seed(1)
    if kind == "qwen25vl":
        from transformers import AutoProcessor

        from training.models.embedded import ensure_embedded

        proc = AutoProcessor.from_pretrained(ensure_embedded(kind))
        vocab = proc.tokenizer.vocab_size  # the ordinary tokens; specials and vision placeholders come after
        words = proc.tokenizer.decode(torch.randint(0, vocab, (p,), generator=gen).tolist())
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": words}]}]
        text = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (448, 448, 3), dtype=np.uint8))
        prompt = PromptInputs.from_encoding(proc(text=[text], images=[img], return_tensors="pt"))
    else:
        prompt = PromptInputs(torch.randint(0, vocab, (p,), generator=gen))
    comps = [torch.randint(0, vocab, (s,), generator=gen).tolist() for _ in range(g)]
    return RolloutBatch.from_completions([prompt], comps, pad_token_id=0)


def worker(a: dict[str, Any]) -> dict[str, Any]:
    """One path at one config, in its own process."""
    import torch

    from training.objectives.forward import completion_logprobs

    torch.set_num_threads(a["threads"])
    device = a["device"]
    cuda = device.startswith("cuda")
    kind = a.get("model", "qwen2")
    model = _model(device, a["dtype"], kind)
    model.train()
    vocab = model.get_base_model().config.get_text_config().vocab_size
    batch = _batch(vocab, a["p"], a["s"], a["g"], kind).to(device)
    method = "naive" if a["path"] == "naive" else "grouped"

    def step() -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        out = completion_logprobs(model, batch, method=method)
        out.logprobs.sum().backward()
        if cuda:
            torch.cuda.synchronize()
        return out.logprobs.detach()

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = peak_rss_bytes()
    logprobs = step()  # warm-up and memory run
    peak = (torch.cuda.max_memory_allocated() if cuda else peak_rss_bytes()) - before
    median, times = time_median(step, a["repeats"])
    torch.save(logprobs.float().cpu(), a["out"])
    return {"median_s": median, "times": times, "peak_bytes": peak, "prompt_tokens": len(batch.prompts[0])}


def run(
    p: int = 1024,
    s: int = 128,
    g: int = 8,
    repeats: int = 3,
    sweep: bool = True,
    device: str = "cpu",
    threads: int | None = None,
    dtype: str = "float32",
    vlm: bool = True,
) -> dict[str, Any]:
    """The headline (P, S, G) on the text model, then (``sweep``) other P and G, then (``vlm``) the VLM row."""
    import torch

    from training.models.embedded import ensure_embedded

    ensure_embedded("qwen2")  # build once, outside the measured children
    threads = threads or available_cpus()
    configs = [("qwen2", p, s, g)]
    if sweep:
        configs += [("qwen2", pp, s, gg) for pp in SWEEP_P for gg in SWEEP_G if (pp, s, gg) != (p, s, g)]
    if vlm:
        ensure_embedded("qwen25vl")
        configs.append(("qwen25vl", VLM_TEXT, s, g))
    rows = []
    with tempfile.TemporaryDirectory(prefix="medrl-bench-prefix-") as tmp:
        for kind, cp, cs, cg in configs:
            res, lps = {}, {}
            for path in ("naive", "grouped"):
                out = str(Path(tmp) / f"{kind}-{path}-{cp}-{cs}-{cg}.pt")
                res[path] = run_child(
                    "bench.prefix",
                    {
                        "model": kind,
                        "p": cp,
                        "s": cs,
                        "g": cg,
                        "path": path,
                        "repeats": repeats,
                        "device": device,
                        "threads": threads,
                        "dtype": dtype,
                        "out": out,
                    },
                )
                lps[path] = torch.load(out, weights_only=True)
            prompt_len = res["naive"]["prompt_tokens"]  # the VLM's: image placeholders + template + text
            ideal = ideal_token_ratio(prompt_len, cs, cg)
            speedup = res["naive"]["median_s"] / res["grouped"]["median_s"]
            rows.append(
                {
                    "model": "vlm+image" if kind == "qwen25vl" else "text",
                    "p": prompt_len,
                    "s": cs,
                    "g": cg,
                    "naive_s": res["naive"]["median_s"],
                    "grouped_s": res["grouped"]["median_s"],
                    "speedup": speedup,
                    "ideal_token_ratio": ideal,
                    "of_ideal": speedup / ideal,
                    "naive_peak_mb": res["naive"]["peak_bytes"] / 2**20,
                    "grouped_peak_mb": res["grouped"]["peak_bytes"] / 2**20,
                    "max_logprob_diff": (lps["naive"] - lps["grouped"]).abs().max().item(),
                    "naive_times": res["naive"]["times"],
                    "grouped_times": res["grouped"]["times"],
                }
            )
    head = rows[0]
    return {
        "config": {
            "p": p,
            "s": s,
            "g": g,
            "repeats": repeats,
            "device": device,
            "threads": threads,
            "dtype": dtype,
            "model": "embedded:qwen2 + LoRA r=16"
            + (" (vlm row: embedded:qwen25vl, one 448x448 image)" if vlm else ""),
            "torch": torch.__version__,
            "omp_wait_policy": omp_wait_policy(),
            "memory": "peak RSS delta per fresh process" if device == "cpu" else "max_memory_allocated",
        },
        "headline": {
            **{k: head[k] for k in ("p", "s", "g", "speedup", "ideal_token_ratio")},
            "goal": f"speedup >= {GOAL} x ideal",
            "goal_met": head["speedup"] >= GOAL * head["ideal_token_ratio"],
        },
        "rows": [head] + sorted(rows[1:], key=lambda r: (r["model"] != "text", r["p"], r["g"])),
    }


def table(result: dict[str, Any]) -> str:
    c, h = result["config"], result["headline"]
    lines = [
        f"bench prefix: {c['model']}, {c['dtype']}, device={c['device']}, threads={c['threads']} "
        f"(OMP_WAIT_POLICY={c['omp_wait_policy']}), "
        f"median of {c['repeats']} after warm-up; memory = {c['memory']}",
        format_table(result["rows"], COLUMNS),
        f"headline P={h['p']} S={h['s']} G={h['g']}: speedup {h['speedup']:.2f}x vs ideal "
        f"{h['ideal_token_ratio']:.2f}x -> goal ({h['goal']}) {'MET' if h['goal_met'] else 'NOT met'}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(json.dumps(worker(json.loads(sys.argv[1]))))
