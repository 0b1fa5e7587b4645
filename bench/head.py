"""`medrl bench head`: peak memory of the RL loss forward+backward with the lean output head, the full head, a small
vocabulary, and TRL's fused LM head, on the same model and inputs.

Shapes are the tiny Qwen2's (hidden 256, 4 layers) with LoRA r=16 on every projection (non-zero B), one prompt of
P tokens repeated in G rows [prompt; completion] (the naive layout, so every side runs the same decoder work and
the comparison is the head alone). The big-vocabulary model is the embedded config with ``vocab_size`` set to
Qwen's 151,936 and random weights; the small one is the embedded model itself. Each case runs once in a fresh
process: decoder forward, head (log-probs + entropy for stats), ``policy_loss`` (token mean), backward. On the CPU
the memory is the rise of the process's peak RSS over its RSS just before the step (the kernel's high-water mark
reset through /proc/self/clear_refs, so model loading does not count); on CUDA ``max_memory_allocated``.
TRL's side is ``trl.trainer.utils.add_fused_lm_head`` called as its GRPOTrainer does (on the base model under
peft, outputs log_probs + entropy, labels -100 on the prompt, ``fused_lm_head=True``).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import available_cpus, format_table, omp_wait_policy, peak_rss_bytes, run_child

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
QWEN_VOCAB = 151936
CASES = ("chunked", "full", "small_vocab", "trl")
GOAL_VS_SMALL = 1.5  # peak_mb_chunked <= GOAL_VS_SMALL * peak_mb_small_vocab, and < peak_mb_trl
COLUMNS = [
    ("case", "case", "s"),
    ("vocab", "V", "d"),
    ("head", "head", "s"),
    ("peak_mb", "peak MB", ".0f"),
    ("seconds", "s", ".2f"),
]


def _model(case: str, vocab: int, device: str, dtype_name: str):
    """The policy (peft LoRA model): the embedded Qwen2, or its config with a big vocabulary and random weights."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    from training.models.embedded import resolve_model_path

    dtype = getattr(torch, dtype_name)
    path = resolve_model_path("embedded:qwen2")
    torch.manual_seed(0)  # random init and lora_A draw from the global RNG: the same weights in every child
    if case == "small_vocab":
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    else:
        config = AutoConfig.from_pretrained(path)
        config.vocab_size = vocab
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model = get_peft_model(model.to(device), LoraConfig(r=16, lora_alpha=32, target_modules=LORA_TARGETS))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, prm in model.named_parameters():
            if "lora_B" in name:
                prm.copy_(torch.randn(prm.shape, generator=gen).to(prm) * 0.02)
    return model


def _inputs(vocab: int, p: int, s: int, g: int, device: str):
    """(input_ids (G, P+S) with the prompt repeated, advantages (G,))."""
    import torch

    gen = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, vocab, (p,), generator=gen)
    completions = torch.randint(0, vocab, (g, s), generator=gen)
    ids = torch.cat([prompt.expand(g, p), completions], 1)
    return ids.to(device), torch.randn(g, generator=gen).to(device)


def _ours(model, ids, s: int, head_mode: str):
    """Decoder hidden states, then the head on the completion positions only."""
    from training.objectives.head import head_logprobs

    base = model.get_base_model()
    hidden = base.model(input_ids=ids, use_cache=False).last_hidden_state
    p = ids.shape[1] - s
    return head_logprobs(
        base.get_output_embeddings(),
        hidden[:, p - 1 : p + s - 1],
        ids[:, p:],
        entropy="stats",
        mode=head_mode,
    )


def _trl(model, ids, s: int):
    """TRL's per-token log-probs + entropy, as GRPOTrainer._get_per_token_logps_and_entropies calls them."""
    import torch

    labels = ids.clone()
    labels[:, :-s] = -100
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels, fused_lm_head=True)
    return out.log_probs[:, -s:], out.entropy[:, -s:]


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return peak_rss_bytes()


def worker(a: dict[str, Any]) -> dict[str, Any]:
    """One case in its own process."""
    import gc

    import torch

    from training.objectives.losses import PolicyLossConfig, policy_loss

    torch.set_num_threads(a["threads"])
    device, case = a["device"], a["case"]
    cuda = device.startswith("cuda")
    vocab = a["vocab"]
    model = _model(case, vocab, device, a["dtype"])
    model.train()
    vocab = model.get_base_model().config.vocab_size
    if case == "trl":
        try:
            from trl.trainer.utils import add_fused_lm_head
        except ImportError as e:  # a dev extra; a broken install should not hide the other figures
            return {"error": f"TRL unavailable: {e}"}
        add_fused_lm_head(model.get_base_model(), temperature=1.0, outputs=("log_probs", "entropy"))
    ids, adv = _inputs(vocab, a["p"], a["s"], a["g"], device)
    gc.collect()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before, exact = torch.cuda.memory_allocated(), True
    else:
        exact = _reset_peak()
        before = _rss_now() if exact else peak_rss_bytes()
    t0 = time.perf_counter()
    logp, ent = _trl(model, ids, a["s"]) if case == "trl" else _ours(model, ids, a["s"], a["head"])
    loss, _ = policy_loss(logp, None, adv, torch.ones_like(logp), PolicyLossConfig(), entropy=ent.detach())
    loss.backward()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = (
        torch.cuda.max_memory_allocated() if cuda else _peak_rss() if exact else peak_rss_bytes()
    ) - before
    torch.save(logp.detach().float().cpu(), a["out"])
    return {
        "peak_bytes": peak,
        "seconds": seconds,
        "vocab": vocab,
        "exact_peak": exact,
        "entropy_mean": ent.float().mean().item(),
    }


def run(
    p: int = 512,
    s: int = 256,
    g: int = 8,
    vocab: int = QWEN_VOCAB,
    device: str = "cpu",
    threads: int | None = None,
    dtype: str = "float32",
) -> dict[str, Any]:
    import torch

    from training.models.embedded import ensure_embedded

    ensure_embedded("qwen2")  # build once, outside the measured children
    threads = threads or available_cpus()
    heads = {"chunked": "chunked", "full": "full", "small_vocab": "chunked", "trl": "trl fused"}
    res, logps = {}, {}
    with tempfile.TemporaryDirectory(prefix="medrl-bench-head-") as tmp:
        for case in CASES:
            out = str(Path(tmp) / f"{case}.pt")
            res[case] = run_child(
                "bench.head",
                {
                    "case": case,
                    "head": "full" if case == "full" else "chunked",
                    "vocab": vocab,
                    "p": p,
                    "s": s,
                    "g": g,
                    "device": device,
                    "threads": threads,
                    "dtype": dtype,
                    "out": out,
                },
            )
            if "error" not in res[case]:
                logps[case] = torch.load(out)
    done = [c for c in CASES if "error" not in res[c]]
    mb = {c: res[c]["peak_bytes"] / 2**20 if c in done else None for c in CASES}
    rows = [
        {
            "case": c,
            "vocab": res[c]["vocab"],
            "head": heads[c],
            "peak_mb": mb[c],
            "seconds": res[c]["seconds"],
        }
        for c in done
    ]
    cpu = not device.startswith("cuda")
    exact = all(res[c]["exact_peak"] for c in done)
    trl = "trl" in done
    return {
        "vocab": res["chunked"]["vocab"],
        "small_vocab": res["small_vocab"]["vocab"],
        "peak_mb_chunked": mb["chunked"],
        "peak_mb_full": mb["full"],
        "peak_mb_small_vocab": mb["small_vocab"],
        "peak_mb_trl": mb["trl"],
        "trl_error": res["trl"].get("error"),
        "max_logprob_diff": (logps["chunked"] - logps["full"]).abs().max().item(),
        "max_logprob_diff_trl": (logps["chunked"] - logps["trl"]).abs().max().item() if trl else None,
        "ratio_chunked_to_small_vocab": mb["chunked"] / mb["small_vocab"],
        "goal": f"peak_mb_chunked <= {GOAL_VS_SMALL} x peak_mb_small_vocab and < peak_mb_trl",
        "goal_met": mb["chunked"] <= GOAL_VS_SMALL * mb["small_vocab"] and trl and mb["chunked"] < mb["trl"],
        "device": device,
        "dtype": dtype,
        "p": p,
        "s": s,
        "g": g,
        "threads": threads,
        "model": "tiny Qwen2 (hidden 256, 4 layers) + LoRA r=16",
        "torch": torch.__version__,
        "omp_wait_policy": omp_wait_policy(),
        "forward": "naive rows [prompt; completion] through the decoder (model.model), the same for every case; "
        "ours: head on the G*S completion positions, entropy without a graph; "
        "TRL: add_fused_lm_head on the base model, model(..., labels, fused_lm_head=True)",
        "loss": "training.objectives.losses.policy_loss, token mean, one backward",
        "memory": (
            "peak RSS rise over the RSS before the step, fresh process per case (VmHWM reset)"
            if cpu and exact
            else "peak RSS delta (ru_maxrss), fresh process per case"
            if cpu
            else "max_memory_allocated"
        ),
        "rows": rows,
    }


def table(result: dict[str, Any]) -> str:
    r = result
    lines = [
        f"bench head: {r['model']}, {r['dtype']}, device={r['device']}, threads={r['threads']}, "
        f"P={r['p']} S={r['s']} G={r['g']}; memory = {r['memory']}",
        format_table(r["rows"], COLUMNS),
        *([f"TRL side skipped: {r['trl_error']}"] if r["trl_error"] else []),
        f"max |dlogp| chunked vs full {r['max_logprob_diff']:.1e}, vs TRL "
        f"{format(r['max_logprob_diff_trl'], '.1e') if r['max_logprob_diff_trl'] is not None else '-'}; "
        f"chunked / small vocab {r['ratio_chunked_to_small_vocab']:.2f}x -> goal ({r['goal']}) "
        f"{'MET' if r['goal_met'] else 'NOT met'}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(json.dumps(worker(json.loads(sys.argv[1]))))
