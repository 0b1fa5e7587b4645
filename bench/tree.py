"""`medrl bench tree`: Tree-GRPO sampling and the tree-packed loss forward against chains and duplicated rows.

Shape (the issue's default): M=2 trees per prompt, N=2 nodes expanded in L=1 round, K=3 leaves kept, 3 turns of
`s` sampled tokens each (EOS ignored, no stop strings: every trajectory is exactly 3 turns, so token counts are
exact) against the multi-step case environment, on the embedded tiny Qwen2 (fp32).

- trajectories_ratio: complete trajectories per generated token, trees over independent chains (a chain costs
  3*s generated tokens; a tree shares the prefix of every branch with the chain it left), at the default expansion
  and at both (`uniform`: the root may branch, a whole new chain; `internal`: only nodes below it).
- forward_speedup: forward+backward of the loss log-probs (LoRA), duplicated rows (`naive`, each row
  [prompt; path]) over the tree packing (`tree`, each prompt and node once); also against Prefix-Grouper
  (`grouped`: prompt shared, paths duplicated). Fastest of `repeats` timed runs after a warm-up.
- max_logprob_diff: |tree - naive| over all trained tokens (and Prefix-Grouper's).
- sweep: the same per shape of `SWEEP` (shorter and longer turns, a second expansion round), so the tree forward is
  held to Prefix-Grouper's speed where nodes are short and many, not only at the main shape.
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


SWEEP = ({"s": 16}, {"s": 64}, {"l": 2, "k": 5})  # changes from the main shape, each measured beside it


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
    sweep: bool = True,
) -> dict:
    """The main shape in full, then (``sweep``) each of `SWEEP`'s changes to it: ratios and speedups per shape."""
    from training.config import ModelConfig
    from training.models.loading import load_policy

    if threads:
        torch.set_num_threads(threads)
    policy = load_policy(ModelConfig(name=model))
    main = dict(prompts=prompts, s=s, m=m, n=n, l=l, k=k, turns=turns)
    out = measure(policy, main, repeats, seed)
    if sweep:
        keep = ("trajectories_ratio", "trajectories_ratio_uniform", "trajectories_ratio_internal")
        keep += ("forward_speedup", "forward_speedup_vs_grouped", "max_logprob_diff", "forward_s")
        out["sweep"] = [{"shape": out["shape"], **{x: out[x] for x in keep}}]
        for change in SWEEP:
            r = measure(policy, {**main, **change}, repeats, seed)
            out["sweep"].append({"shape": r["shape"], **{x: r[x] for x in keep}})
        out["min_forward_speedup_vs_grouped"] = min(x["forward_speedup_vs_grouped"] for x in out["sweep"])
    return out


def measure(policy, shape: dict, repeats: int, seed: int) -> dict:
    """One shape: trees (both expansions) and chains sampled, then the three loss forwards timed and compared."""
    from clinical.cases import make_case_records
    from training.data.batch import fed_lengths
    from training.objectives.forward import completion_logprobs
    from training.rollout.tree import RolloutConfig, TreeConfig
    from training.rollout.tree_sampler import sample_trees

    net = policy.model
    net.train()
    prompts, s, m, n, l, k, turns = (shape[x] for x in ("prompts", "s", "m", "n", "l", "k", "turns"))  # noqa: E741
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

    default = TreeConfig().expand
    out: dict = {
        "shape": {"prompts": prompts, "m": m, "n": n, "l": l, "k": k, "turns": turns, "tokens_per_turn": s},
        "expand_default": default,
        "threads": torch.get_num_threads(),
    }
    chain = sample_trees(net, policy.processor, records, cfg("group"), torch.Generator().manual_seed(seed))
    per_chain = chain.stats["rollout/tokens_generated"] / chain.num_rows
    for expand in ("uniform", "internal"):
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
        out[f"trajectories_ratio_{expand}"] = tree.num_rows / (generated / per_chain)
        out[f"tree_{expand}"] = {
            "trajectories": tree.num_rows,
            "tokens_generated": generated,
            "tokens_encoded": tree.stats["rollout/tokens_encoded"],
            "env_calls": tree.stats["rollout/env_calls"],
            "sample_s": round(dt, 3),
        }
        if expand == default:
            batch = tree
    out["trajectories_ratio"] = out[f"trajectories_ratio_{default}"]
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
    out["max_logprob_diff_grouped"] = float((lps["grouped"] - lps["naive"])[mask].abs().max())
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
        f"Tree-GRPO bench, shape {r['shape']}, {r['threads']} threads, default expansion {r['expand_default']}",
        f"trajectories_ratio   {r['trajectories_ratio']:.3f} (uniform {r['trajectories_ratio_uniform']:.3f}, "
        f"internal {r['trajectories_ratio_internal']:.3f})",
        f"forward_speedup      {r['forward_speedup']:.3f} vs duplicated rows, "
        f"{r['forward_speedup_vs_grouped']:.3f} vs Prefix-Grouper  ({r['forward_s']})",
        f"max_logprob_diff     {r['max_logprob_diff']:.2e} (Prefix-Grouper {r['max_logprob_diff_grouped']:.2e})",
    ]
    if r.get("sweep"):
        lines += [
            "",
            f"{'shape (s tokens/turn, m, n, l, k)':<36}{'traj uniform':>13}{'internal':>10}"
            f"{'vs dup rows':>13}{'vs P-G':>9}{'max dlogp':>11}",
        ]
        for x in r["sweep"]:
            sh = x["shape"]
            name = f"s={sh['tokens_per_turn']} m={sh['m']} n={sh['n']} l={sh['l']} k={sh['k']}"
            lines.append(
                f"{name:<36}{x['trajectories_ratio_uniform']:>13.3f}{x['trajectories_ratio_internal']:>10.3f}"
                f"{x['forward_speedup']:>12.2f}x{x['forward_speedup_vs_grouped']:>8.2f}x{x['max_logprob_diff']:>11.1e}"
            )
        lines.append(f"slowest against Prefix-Grouper: {r['min_forward_speedup_vs_grouped']:.2f}x")
    return "\n".join(lines)
