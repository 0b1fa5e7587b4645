"""`medrl bench tree`: Tree-GRPO sampling and the tree-packed loss forward against chains and duplicated rows.

Shape (the issue's default): M=2 trees per prompt, N=2 nodes expanded in L=1 round, K=3 leaves kept, 3 turns of
`s` sampled tokens each (EOS ignored, no stop strings: every trajectory is exactly 3 turns, so token counts are
exact) against the multi-step case environment, on the embedded tiny Qwen2 (fp32).

- trajectories_ratio: complete trajectories per generated token, trees over independent chains (a chain costs
  3*s generated tokens; a tree shares the prefix of every branch with the chain it left).
- forward_speedup: forward+backward of the loss log-probs (LoRA), duplicated rows (`naive`, each row
  [prompt; path]) over the tree packing (`tree`, each prompt and node once); also against Prefix-Grouper
  (`grouped`: prompt shared, paths duplicated). Fastest of `repeats` timed runs after a warm-up.
- max_logprob_diff: |tree - naive| over all trained tokens.
"""

from __future__ import annotations

import time

import torch


def _time(fn, repeats: int) -> float:
    """The fastest of `repeats` runs after a warm-up: on a shared machine the minimum is the least disturbed."""
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out)


def run(
    prompts: int = 4,
    s: int = 32,
    m: int = 2,
    n: int = 2,
    l: int = 1,  # noqa: E741 (the paper's name)
    k: int = 3,
    turns: int = 3,
    repeats: int = 3,
    seed: int = 0,
    threads: int | None = None,
    model: str = "embedded:qwen2",
) -> dict:
    from clinical.cases import make_case_records
    from training.config import ModelConfig
    from training.data.batch import fed_lengths
    from training.models.loading import load_policy
    from training.objectives.forward import completion_logprobs
    from training.rollout.tree import RolloutConfig, TreeConfig
    from training.rollout.tree_sampler import sample_trees

    if threads:
        torch.set_num_threads(threads)
    policy = load_policy(ModelConfig(name=model))
    net = policy.model
    records = make_case_records(prompts, seed=seed)

    def cfg(strategy: str, **tree) -> RolloutConfig:
        return RolloutConfig(
            num_generations=m,
            max_new_tokens=s,
            ignore_eos=True,
            strategy=strategy,
            env="clinical_case",
            env_modules=["clinical.cases"],
            env_args={"max_turns": turns},
            max_turns=turns,
            tree=TreeConfig(**tree),
        )

    out: dict = {
        "shape": {"prompts": prompts, "m": m, "n": n, "l": l, "k": k, "turns": turns, "tokens_per_turn": s},
        "threads": torch.get_num_threads(),
    }
    chain = sample_trees(net, policy.processor, records, cfg("group"), torch.Generator().manual_seed(seed))
    per_chain = chain.stats["rollout/tokens_generated"] / chain.num_rows
    for name, expand in (("", "uniform"), ("_internal", "internal")):
        t0 = time.perf_counter()
        tree = sample_trees(
            net,
            policy.processor,
            records,
            cfg("tree", m=m, n=n, l=l, k=k, expand=expand),
            torch.Generator().manual_seed(seed),
        )
        dt = time.perf_counter() - t0
        generated = tree.stats["rollout/tokens_generated"]
        out[f"trajectories_ratio{name}"] = tree.num_rows / (generated / per_chain)
        out[f"tree{name}"] = {
            "trajectories": tree.num_rows,
            "tokens_generated": generated,
            "tokens_encoded": tree.stats["rollout/tokens_encoded"],
            "env_calls": tree.stats["rollout/env_calls"],
            "sample_s": round(dt, 3),
        }
        if not name:
            batch = tree
    out["chains"] = {
        "tokens_per_chain": per_chain,
        "tokens_encoded_per_chain": chain.stats["rollout/tokens_encoded"] / chain.num_rows,
    }

    net.float()
    net.eval()  # no LoRA dropout: the forwards must agree
    adv = torch.randn(batch.num_rows, generator=torch.Generator().manual_seed(seed))
    lps = {}

    def step(method: str):
        def go() -> None:
            net.zero_grad(set_to_none=True)
            lp = completion_logprobs(net, batch, method=method).logprobs
            (lp * adv[:, None]).sum().backward()
            lps[method] = lp.detach()

        return go

    times = {meth: _time(step(meth), repeats) for meth in ("naive", "grouped", "tree")}
    net.zero_grad(set_to_none=True)
    mask = batch.completion_mask
    out["forward_s"] = {k2: round(v, 4) for k2, v in times.items()}
    out["forward_speedup"] = times["naive"] / times["tree"]
    out["forward_speedup_vs_grouped"] = times["grouped"] / times["tree"]
    out["max_logprob_diff"] = float((lps["tree"] - lps["naive"])[mask].abs().max())
    paths = int(fed_lengths(mask).sum())
    nodes = sum(len(x.tokens) + len(x.obs_tokens) for t in batch.trees for x in t.nodes[1:])
    prompt_tokens = sum(len(p) for p in batch.prompts)
    out["tokens_forwarded"] = {
        "naive": sum(len(batch.prompts[int(g)]) for g in batch.group_index) + paths,
        "grouped": prompt_tokens + paths,
        "tree": prompt_tokens + nodes,
    }
    return out


def table(r: dict) -> str:
    lines = [
        f"Tree-GRPO bench, shape {r['shape']}, {r['threads']} threads",
        f"trajectories_ratio   {r['trajectories_ratio']:.3f} (internal-only expansion: "
        f"{r['trajectories_ratio_internal']:.3f})",
        f"forward_speedup      {r['forward_speedup']:.3f} vs duplicated rows, "
        f"{r['forward_speedup_vs_grouped']:.3f} vs Prefix-Grouper  ({r['forward_s']})",
        f"max_logprob_diff     {r['max_logprob_diff']:.2e}",
    ]
    return "\n".join(lines)
