"""Tree-GRPO sampling on the embedded Qwen2 against the real case environment: tree shape, cache reuse (no
ancestor is encoded twice), masks with holes through micro-batching and both loss forwards."""

from __future__ import annotations

import pytest
import torch

from clinical.cases import make_case_records
from training.data.batch import fed_lengths, select_groups
from training.objectives.forward import completion_logprobs
from training.objectives.tree_pack import tree_hidden
from training.rollout.tree import RolloutConfig, TreeConfig, rows_per_prompt
from training.rollout.tree_sampler import sample_trees

STOPS = ["</ask>", "</answer>"]


@pytest.fixture(scope="module")
def policy(one_thread):
    from training.config import ModelConfig
    from training.models.loading import load_policy

    return load_policy(ModelConfig(name="embedded:qwen2"))


def _cfg(strategy="tree", **tree) -> RolloutConfig:
    return RolloutConfig(
        num_generations=3,
        max_new_tokens=10,
        strategy=strategy,
        env="clinical_case",
        env_modules=["clinical.cases"],
        env_args={"max_turns": 3},
        max_turns=3,
        stop_strings=STOPS,
        ignore_eos=True,
        tree=TreeConfig(**tree),
    )


@pytest.fixture(scope="module")
def trees(policy):
    recs = make_case_records(2, seed=1)
    cfg = _cfg(m=2, n=2, l=1, k=None)
    return (
        recs,
        cfg,
        sample_trees(policy.model, policy.processor, recs, cfg, torch.Generator().manual_seed(0)),
    )


def test_tree_shape_rows_and_counters(trees, policy):
    recs, cfg, b = trees
    assert b.num_rows == rows_per_prompt(cfg) * len(recs) == 2 * 2 * 3
    assert (
        b.group_index.tolist() == [0] * 6 + [1] * 6
        and b.tree_index.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    )
    prompt_lens = [len(p) for p in b.prompts]
    for tree in b.trees:
        assert len(tree.leaves()) == 3 and tree.kept == tree.leaves()
        assert all(
            len(n.tokens) == 10 for n in tree.nodes[1:]
        )  # ignore_eos and no stop string: turns at the cap
        assert max(n.depth for n in tree.nodes) == 3  # the turn cap ends every path
        assert len(tree.nodes[0].children) >= 1
    nodes = [n for t in b.trees for n in t.nodes[1:]]
    # every token is generated once and every observation encoded once: branches reuse their node's cache
    assert b.stats["rollout/tokens_generated"] == sum(len(n.tokens) for n in nodes)
    assert b.stats["rollout/tokens_encoded"] == sum(p - 1 for p in prompt_lens) + sum(
        len(n.obs_tokens) for n in nodes
    )
    assert b.stats["rollout/env_calls"] == len(nodes)
    # a tree holds fewer generated tokens than its three paths written out as chains
    row_tokens = int(b.completion_mask.sum())
    assert b.stats["rollout/tokens_generated"] < row_tokens
    # observation tokens are inputs, never trained: holes in the mask, text shows them
    assert "<observation>" in b.texts[0] and not bool(b.completion_mask[0, 10])
    assert bool(b.completion_mask[0, fed_lengths(b.completion_mask[:1])[0] - 1])


def test_logprobs_match_both_forwards_through_micro_batches(trees, policy):
    _, _, b = trees
    for groups in ([0], [1]):
        m = select_groups(b, groups)
        assert m.completion_ids.shape[1] == int(fed_lengths(m.completion_mask).max())  # width: fed length
        assert m.tree_index is not None and len(m.infos) == m.num_rows
        for method in ("naive", "grouped"):
            with torch.no_grad():
                out = completion_logprobs(policy.model, m, method=method)
            diff = (out.logprobs - m.sampling_logprobs)[m.completion_mask].abs().max()
            assert float(diff) < 5e-5, (method, float(diff))
            assert float(out.logprobs[~m.completion_mask].abs().max()) == 0.0


def test_chains_are_reproducible_and_internal_expansion(policy):
    recs = make_case_records(1, seed=2)
    a = sample_trees(policy.model, policy.processor, recs, _cfg("group"), torch.Generator().manual_seed(5))
    b = sample_trees(policy.model, policy.processor, recs, _cfg("group"), torch.Generator().manual_seed(5))
    assert a.num_rows == 3 and a.tree_index.tolist() == [0, 1, 2]
    assert torch.equal(a.completion_ids, b.completion_ids) and a.texts == b.texts
    t = sample_trees(
        policy.model,
        policy.processor,
        recs,
        _cfg(m=1, n=2, l=1, k=2, expand="internal"),
        torch.Generator().manual_seed(5),
    )
    assert t.num_rows == 2 and t.trees[0].nodes[0].children == [1]  # the root was never expanded


@pytest.mark.slow
def test_tree_forward_matches_duplicated_rows(policy):
    """`loss.forward: tree` (each node encoded once) equals the naive duplicated rows: log-probs and LoRA grads."""
    model = policy.model
    recs = make_case_records(2, seed=4)
    b = sample_trees(
        model, policy.processor, recs, _cfg(m=2, n=2, l=1, k=2), torch.Generator().manual_seed(3)
    )
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    saved = [p.detach().clone() for p in lora_b]
    gen = torch.Generator().manual_seed(0)
    for p in lora_b:  # peft's B=0 would leave A's gradient zero
        p.data.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    model.eval()
    adv = torch.randn(b.num_rows, generator=gen)
    try:
        got = {}
        for method in ("naive", "tree"):
            model.zero_grad()
            lp = completion_logprobs(model, b, method=method).logprobs
            (lp * adv[:, None]).sum().backward()
            got[method] = (
                lp.detach(),
                {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None},
            )
        assert float((got["tree"][0] - got["naive"][0]).abs().max()) < 2e-5
        assert got["tree"][1].keys() == got["naive"][1].keys() and len(got["naive"][1]) > 0
        for name, g in got["naive"][1].items():
            assert float((got["tree"][1][name] - g).norm() / g.norm().clamp(min=1e-12)) < 1e-4, name
        with torch.no_grad():  # the efficient attention equals the dense-mask packing
            assert torch.allclose(
                tree_hidden(model, b, "efficient"), tree_hidden(model, b, "dense"), atol=1e-5
            )
        sub = select_groups(b, [1])  # micro-batches keep their trees
        with torch.no_grad():
            a = completion_logprobs(model, sub, method="tree").logprobs
            c = completion_logprobs(model, sub, method="naive").logprobs
        assert float((a - c).abs().max()) < 2e-5
    finally:
        model.zero_grad()
        for p, s in zip(lora_b, saved):
            p.data.copy_(s)
        model.train()


def test_vlm_trees_reuse_the_image_prompt_cache(tmp_path, one_thread):
    """Qwen2.5-VL: the prompt (with its image) is encoded once per step; branches continue at mRoPE positions; the
    tree forward, the duplicated rows and the sampler agree."""
    from PIL import Image

    from training.config import ModelConfig
    from training.models.loading import load_policy

    vlm = load_policy(ModelConfig(name="embedded:qwen25vl"))
    Image.new("RGB", (112, 112), (180, 120, 90)).save(tmp_path / "lesion.png")
    rec = next(r for r in make_case_records(8, seed=0) if r["meta"]["case"]["kind"] == "dermatology")
    rec["images"] = [str(tmp_path / "lesion.png")]
    rec["prompt"][0]["content"] = [{"type": "image"}, {"type": "text", "text": rec["prompt"][0]["content"]}]
    cfg = _cfg(m=2, n=1, l=1)
    cfg.max_new_tokens, cfg.max_turns, cfg.env_args = 4, 2, {"max_turns": 2}
    b = sample_trees(vlm.model, vlm.processor, [rec], cfg, torch.Generator().manual_seed(0), is_vlm=True)
    assert b.num_rows == 4 and b.prompts[0].pixel_values is not None
    vlm.model.eval()
    with torch.no_grad():
        tree = completion_logprobs(vlm.model, b, method="tree").logprobs
        naive = completion_logprobs(vlm.model, b, method="naive").logprobs
    m = b.completion_mask
    assert float((tree - naive)[m].abs().max()) < 2e-5
    assert float((tree - b.sampling_logprobs)[m].abs().max()) < 5e-5
