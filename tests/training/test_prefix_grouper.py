"""Prefix-Grouper equivalence: grouped (efficient and dense) vs naive, log-probs and every LoRA gradient, fp32."""

from __future__ import annotations

import pytest
import torch

from training.data.batch import PromptInputs, RolloutBatch, encode_prompts
from training.models.embedded import ensure_embedded
from training.objectives.forward import completion_logprobs
from training.objectives.prefix_grouper import ATTN_NAME, pack_batch


def naive_completion_logprobs(model, batch, **kwargs):
    return completion_logprobs(model, batch, method="naive", **kwargs)


def grouped_completion_logprobs(model, batch, mode: str = "efficient", **kwargs):
    return completion_logprobs(model, batch, method="dense" if mode == "dense" else "grouped", **kwargs)


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LOGPROB_ATOL = 1e-5
GRAD_RTOL = 1e-4


def _lora(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:  # peft's B=0 would leave every lora_A gradient at zero
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def text_setup():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = ensure_embedded("qwen2")
    tok = AutoTokenizer.from_pretrained(path)
    model = _lora(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), seed=0)
    prompts = encode_prompts(
        tok,
        [
            "Question: What is the most likely diagnosis? Answer with the letter.",
            "The patient is a 45-year-old woman who presents with a 3-week history of symptoms and fever.",
        ],
    )
    return model, prompts, tok.pad_token_id


@pytest.fixture(scope="module")
def vlm_setup():
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = ensure_embedded("qwen25vl")
    proc = AutoProcessor.from_pretrained(path)
    model = _lora(AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32), seed=1)

    def chat(text: str, n_images: int) -> str:
        content = [{"type": "image"}] * n_images + [{"type": "text", "text": text}]
        return proc.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )

    images = [
        [Image.new("RGB", (56, 84), (200, 100, 50))],
        [Image.new("RGB", (84, 56), (20, 120, 60)), Image.new("RGB", (56, 56), (0, 0, 250))],
    ]
    prompts = encode_prompts(proc, [chat("Describe the lesion.", 1), chat("Compare them.", 2)], images)
    return model, prompts, proc.tokenizer.pad_token_id


def _batch(prompts: list[PromptInputs], g: int, pad_id: int, vocab: int, seed: int) -> RolloutBatch:
    """G random completions per prompt with uneven lengths (2..9 tokens)."""
    gen = torch.Generator().manual_seed(seed)
    comps = []
    for _ in prompts:
        for _ in range(g):
            n = int(torch.randint(2, 10, (1,), generator=gen))
            comps.append(torch.randint(0, vocab, (n,), generator=gen).tolist())
    return RolloutBatch.from_completions(prompts, comps, pad_id)


def _vocab(model: torch.nn.Module) -> int:
    return model.get_base_model().config.get_text_config().vocab_size


def _loss_and_grads(model, batch, fn, weights):
    """A weighted sum of log-probs (so every token matters differently) and the LoRA gradients it gives."""
    model.zero_grad(set_to_none=True)
    out = fn(model, batch)
    (out.logprobs * weights).sum().backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    return out.logprobs.detach(), grads


def _assert_equivalent(model, batch, grouped_fn, seed: int = 0):
    weights = torch.randn(batch.completion_ids.shape, generator=torch.Generator().manual_seed(seed))
    lp_ref, g_ref = _loss_and_grads(model, batch, naive_completion_logprobs, weights)
    lp, g = _loss_and_grads(model, batch, grouped_fn, weights)
    mask = batch.completion_mask
    assert torch.all(lp_ref[mask] < 0) and torch.all(lp_ref[~mask] == 0) and torch.all(lp[~mask] == 0)
    assert (lp - lp_ref).abs().max().item() < LOGPROB_ATOL
    assert len(g_ref) > 0 and g.keys() == g_ref.keys()
    for name, ref in g_ref.items():
        assert ref.norm() > 0, f"zero gradient for {name}: the test would prove nothing"
        rel = ((g[name] - ref).norm() / ref.norm()).item()
        assert rel < GRAD_RTOL, f"{name}: relative gradient error {rel:.2e}"


@pytest.mark.parametrize("mode", ["efficient", "dense"])
@pytest.mark.parametrize("g", [1, 3, 8])
def test_text_grouped_matches_naive(text_setup, g, mode):
    model, prompts, pad = text_setup
    batch = _batch(prompts, g, pad, _vocab(model), seed=g)
    _assert_equivalent(model, batch, lambda m, b: grouped_completion_logprobs(m, b, mode=mode))


@pytest.mark.parametrize("mode", ["efficient", "dense"])
@pytest.mark.parametrize("g", [1, 3, 8])
def test_vlm_grouped_matches_naive(vlm_setup, g, mode):
    model, prompts, pad = vlm_setup
    batch = _batch(prompts, g, pad, _vocab(model), seed=10 + g)
    _assert_equivalent(model, batch, lambda m, b: grouped_completion_logprobs(m, b, mode=mode))


@pytest.mark.parametrize("setup", ["text_setup", "vlm_setup"])
def test_grouped_matches_naive_with_gradient_checkpointing(request, setup):
    model, prompts, pad = request.getfixturevalue(setup)
    batch = _batch(prompts, 3, pad, _vocab(model), seed=99)
    base = model.get_base_model()
    base.activation_checkpointing_enable()
    model.train()
    try:
        assert any(getattr(m, "gradient_checkpointing", False) for m in base.modules())
        _assert_equivalent(model, batch, grouped_completion_logprobs, seed=3)
    finally:
        base.activation_checkpointing_disable()
        model.eval()


def test_entropy_and_temperature_match_naive(text_setup):
    model, prompts, pad = text_setup
    batch = _batch(prompts, 3, pad, _vocab(model), seed=5)
    with torch.no_grad():
        ref = naive_completion_logprobs(model, batch, temperature=0.7, entropy="stats")
        out = completion_logprobs(model, batch, method="grouped", temperature=0.7, entropy="stats")
        plain = naive_completion_logprobs(model, batch)
    mask = batch.completion_mask
    assert (out.logprobs - ref.logprobs).abs().max() < LOGPROB_ATOL
    assert (out.entropy - ref.entropy).abs().max() < LOGPROB_ATOL
    assert torch.all(ref.entropy[mask] > 0) and torch.all(ref.entropy[~mask] == 0)
    assert (ref.logprobs - plain.logprobs)[mask].abs().max() > 1e-3  # the temperature is really applied


def test_rows_in_any_order_and_empty_rows(text_setup):
    """Groups need not be contiguous; a fully masked row gets zeros and does not disturb the others."""
    model, prompts, pad = text_setup
    batch = _batch(prompts, 3, pad, _vocab(model), seed=7)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    batch.completion_ids, batch.completion_mask = batch.completion_ids[perm], batch.completion_mask[perm]
    batch.group_index = batch.group_index[perm]
    batch.completion_mask[2] = False
    with torch.no_grad():
        ref = naive_completion_logprobs(model, batch).logprobs
        out = grouped_completion_logprobs(model, batch).logprobs
    assert torch.all(out[2] == 0)
    assert (out - ref).abs().max() < LOGPROB_ATOL


def test_plain_forward_unchanged_after_enabling(text_setup):
    """The registered attention falls back to SDPA without a packing spec (generation, ordinary forwards)."""
    model, prompts, _ = text_setup
    base = model.get_base_model()
    ids = prompts[1].input_ids[None]
    base.set_attn_implementation("sdpa")
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        batch = _batch(prompts, 1, 0, _vocab(model), seed=1)
        grouped_completion_logprobs(model, batch)
        assert base.config._attn_implementation == ATTN_NAME
        out = model(input_ids=ids).logits
    assert (out - ref).abs().max() < 1e-5


def test_packed_layout_positions_and_cost(vlm_setup):
    """One packed row, no padding; completions restart at the prompt's last position + 1 in all mRoPE rows."""
    model, prompts, pad = vlm_setup
    batch = _batch(prompts, 3, pad, _vocab(model), seed=2)
    base = model.get_base_model()
    ids, pos, spec, gather, _ = pack_batch(base, batch)
    lengths = batch.completion_mask.sum(-1)
    assert ids.shape[1] == sum(len(p) for p in prompts) + int(lengths.sum())
    assert pos.shape == (3, 1, ids.shape[1]) and spec.dense_mask is None
    seg = spec.segments[0]
    p = seg.prompt_len
    last = pos[:, 0, p - 1]
    first = pos[:, 0, p : p + seg.lengths[0]]
    second = pos[:, 0, p + seg.lengths[0] : p + seg.lengths[0] + seg.lengths[1]]
    assert torch.equal(first[:, 0], last + 1) and torch.equal(second[:, 0], last + 1)
    assert torch.equal(first[0], first[1]) and torch.equal(first[1], first[2])
    # row 1's first token is predicted by the prompt's last position, token j by its own token j-1
    assert gather[1, 0] == p - 1 and gather[1, 1] == p + seg.lengths[0]
    # the efficient mask holds only (G, T, P + T) entries, never the packed L x L
    assert seg.mask.numel() <= 3 * max(seg.lengths) * (p + max(seg.lengths))


@pytest.mark.parametrize("setup", ["text_setup", "vlm_setup"])
def test_last_layer_runs_only_the_rows_that_are_read(request, setup):
    """The last layer's MLP sees each group's last prompt position and its completions, the other layers the whole
    packed row (the equivalence tests above check that the log-probs and gradients stay those of the naive
    forward); a plain forward runs the whole last layer."""
    model, prompts, pad = request.getfixturevalue(setup)
    batch = _batch(prompts, 3, pad, _vocab(model), seed=11)
    base = model.get_base_model()
    layers = [m for m in base.modules() if hasattr(m, "self_attn") and hasattr(m, "mlp")]
    seen: list[tuple[int, int]] = []
    hooks = [
        layer.mlp.register_forward_hook(lambda m, a, o, i=i: seen.append((i, a[0].shape[1])))
        for i, layer in enumerate(layers)
    ]
    try:
        with torch.no_grad():
            grouped_completion_logprobs(model, batch)
            length = pack_batch(base, batch)[2].length
            read = len(prompts) + int(batch.completion_mask.sum())
            assert seen == [(i, length) for i in range(len(layers) - 1)] + [(len(layers) - 1, read)]
            assert read < length
            seen.clear()
            model(input_ids=torch.tensor([[11, 12, 13, 14, 15]]))
            assert seen == [(i, 5) for i in range(len(layers))]
    finally:
        for h in hooks:
            h.remove()
