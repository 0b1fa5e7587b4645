"""The lean output head: chunked == full (log-probs, entropy, every gradient), fp32, on the embedded models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.config import LoraConfig, ModelConfig
from training.models.chat import IGNORE, IGNORE_INDEX
from training.models.loading import load_policy
from training.objectives.head import default_chunk_rows, head_logprobs, head_nll

LOGPROB_ATOL = 1e-5
GRAD_RTOL = 1e-4
CHUNKS = [1, 3, 7, 10_000]
TEMPERATURE = 0.7

pytestmark = pytest.mark.usefixtures("one_thread")


def _policy(name: str, **lora):
    torch.manual_seed(0)  # init_weights=False draws A and B from the global RNG
    cfg = ModelConfig(
        name=name, dtype="float32", device="cpu", lora=LoraConfig(init_weights=False, dropout=0.0, **lora)
    )
    return load_policy(cfg).model


@pytest.fixture(scope="module", params=["embedded:qwen2", "embedded:qwen25vl"])
def lora_model(request):
    return _policy(request.param)


def _text_model(model):
    base = model.get_base_model()
    return base.model.language_model if hasattr(base.model, "language_model") else base.model


def _hidden(model, rows: int = 3, length: int = 11, seed: int = 0):
    """Decoder hidden states (rows, length, H) with the LoRA graph attached, and random targets."""
    gen = torch.Generator().manual_seed(seed)
    vocab = model.get_output_embeddings().out_features
    ids = torch.randint(0, vocab, (rows, length), generator=gen)
    hidden = _text_model(model)(input_ids=ids, use_cache=False).last_hidden_state
    return hidden, torch.randint(0, vocab, (rows, length), generator=gen)


def _lora_params(model) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad and "lora_" in n}


def _grads(loss: torch.Tensor, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    grads = torch.autograd.grad(loss, list(params.values()), retain_graph=True, allow_unused=True)
    return {n: torch.zeros_like(p) if g is None else g for (n, p), g in zip(params.items(), grads)}


def _assert_grads_close(got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> None:
    assert got.keys() == ref.keys() and len(ref) > 0
    for name, r in ref.items():
        assert r.norm() > 0, f"zero gradient for {name}: the comparison would prove nothing"
        rel = ((got[name] - r).norm() / r.norm()).item()
        assert rel < GRAD_RTOL, f"{name}: relative gradient error {rel:.2e}"


def _objective(logp: torch.Tensor, ent: torch.Tensor | None, seed: int = 1) -> torch.Tensor:
    """Weighted sums, so every token's log-prob and entropy matter differently."""
    gen = torch.Generator().manual_seed(seed)
    loss = (logp * torch.randn(logp.shape, generator=gen)).sum()
    if ent is not None:
        loss = loss + (ent * torch.randn(ent.shape, generator=gen)).sum()
    return loss


def test_one_ignore_index():
    assert IGNORE == IGNORE_INDEX == -100


def test_default_chunk_is_about_64_mb_of_fp32_logits():
    assert default_chunk_rows(151936) == 110 and default_chunk_rows(2062) == 8136
    assert default_chunk_rows(10**9) == 1


def test_chunked_matches_full_with_lora(lora_model):
    """Log-probs, entropy and every LoRA gradient (through log-probs and an entropy bonus), any chunk size, T=0.7."""
    head = lora_model.get_output_embeddings()
    hidden, targets = _hidden(lora_model)
    params = _lora_params(lora_model)
    lp_ref, ent_ref = head_logprobs(
        head, hidden, targets, temperature=TEMPERATURE, entropy="grad", mode="full"
    )
    assert lp_ref.dtype == torch.float32 and torch.all(lp_ref < 0) and torch.all(ent_ref > 0)
    g_ref = _grads(_objective(lp_ref, ent_ref), params)
    for rows in CHUNKS:
        lp, ent = head_logprobs(
            head, hidden, targets, temperature=TEMPERATURE, entropy="grad", chunk_rows=rows
        )
        assert (lp - lp_ref).abs().max().item() < LOGPROB_ATOL
        assert (ent - ent_ref).abs().max().item() < LOGPROB_ATOL
        _assert_grads_close(_grads(_objective(lp, ent), params), g_ref)


def test_stats_entropy_has_no_graph_and_logprob_grads_match(lora_model):
    head = lora_model.get_output_embeddings()
    hidden, targets = _hidden(lora_model, seed=2)
    params = _lora_params(lora_model)
    lp_ref, ent_ref = head_logprobs(
        head, hidden, targets, temperature=TEMPERATURE, entropy="stats", mode="full"
    )
    assert ent_ref.grad_fn is None
    g_ref = _grads(_objective(lp_ref, None), params)
    for rows in (3, 10_000):
        lp, ent = head_logprobs(
            head, hidden, targets, temperature=TEMPERATURE, entropy="stats", chunk_rows=rows
        )
        assert ent.grad_fn is None and not ent.requires_grad and lp.requires_grad
        assert (ent - ent_ref).abs().max().item() < LOGPROB_ATOL
        assert (lp - lp_ref).abs().max().item() < LOGPROB_ATOL
        _assert_grads_close(_grads(_objective(lp, None), params), g_ref)
    lp, ent = head_logprobs(head, hidden, targets, entropy="none")
    assert ent is None


def test_temperature_divides_the_logits(lora_model):
    head = lora_model.get_output_embeddings()
    hidden, targets = _hidden(lora_model, rows=2, length=4)
    with torch.no_grad():
        ref = torch.log_softmax(head(hidden).float() / TEMPERATURE, -1).gather(-1, targets[..., None])[..., 0]
        lp, _ = head_logprobs(head, hidden, targets, temperature=TEMPERATURE, chunk_rows=3)
    assert (lp - ref).abs().max().item() < LOGPROB_ATOL


def test_mask_sends_only_real_positions_to_the_head(lora_model):
    """Masked positions come back 0 (their targets may be -100); the rest equal the unmasked values and grads."""
    head = lora_model.get_output_embeddings()
    hidden, targets = _hidden(lora_model, seed=3)
    mask = torch.rand(targets.shape, generator=torch.Generator().manual_seed(4)) < 0.6
    params = _lora_params(lora_model)
    lp_ref, ent_ref = head_logprobs(head, hidden, targets, entropy="grad", mode="full")
    lp_ref, ent_ref = lp_ref * mask, ent_ref * mask
    g_ref = _grads(_objective(lp_ref, ent_ref), params)
    holed = targets.masked_fill(~mask, IGNORE_INDEX)
    lp, ent = head_logprobs(head, hidden, holed, entropy="grad", chunk_rows=5, mask=mask)
    assert torch.all(lp[~mask] == 0) and torch.all(ent[~mask] == 0) and torch.all(lp[mask] < 0)
    assert (lp - lp_ref).abs().max().item() < LOGPROB_ATOL and (
        ent - ent_ref
    ).abs().max().item() < LOGPROB_ATOL
    _assert_grads_close(_grads(_objective(lp, ent), params), g_ref)


def test_lora_on_the_head_itself():
    """A peft-wrapped lm_head (a user targeting it) goes through the same chunked path with exact gradients."""
    model = _policy("embedded:qwen2", target_modules=["q_proj", "v_proj", "lm_head"])
    head = model.get_output_embeddings()
    assert type(head) is not torch.nn.Linear
    hidden, targets = _hidden(model, rows=2, length=7)
    params = _lora_params(model)
    assert any("lm_head" in n for n in params)
    lp_ref, ent_ref = head_logprobs(
        head, hidden, targets, temperature=TEMPERATURE, entropy="grad", mode="full"
    )
    g_ref = _grads(_objective(lp_ref, ent_ref), params)
    lp, ent = head_logprobs(head, hidden, targets, temperature=TEMPERATURE, entropy="grad", chunk_rows=3)
    assert (lp - lp_ref).abs().max().item() < LOGPROB_ATOL
    _assert_grads_close(_grads(_objective(lp, ent), params), g_ref)


@pytest.mark.parametrize("entropy", ["none", "grad"])
def test_full_finetune_grads_of_hidden_and_head_weight(entropy):
    """The embedded model's own (tied) head under full fine-tuning: gradients of hidden and of the weight."""
    torch.manual_seed(0)
    model = load_policy(
        ModelConfig(name="embedded:qwen2", dtype="float32", device="cpu", lora=LoraConfig(enabled=False))
    ).model
    head = model.get_output_embeddings()
    assert type(head) is torch.nn.Linear and head.weight.requires_grad
    gen = torch.Generator().manual_seed(5)
    hidden = torch.randn(4, 6, head.in_features, generator=gen, requires_grad=True)
    targets = torch.randint(0, head.out_features, (4, 6), generator=gen)
    params = {"hidden": hidden, "weight": head.weight}
    lp_ref, ent_ref = head_logprobs(
        head, hidden, targets, temperature=TEMPERATURE, entropy=entropy, mode="full"
    )
    g_ref = _grads(_objective(lp_ref, ent_ref), params)
    for rows in CHUNKS:
        lp, ent = head_logprobs(
            head, hidden, targets, temperature=TEMPERATURE, entropy=entropy, chunk_rows=rows
        )
        assert (lp - lp_ref).abs().max().item() < LOGPROB_ATOL
        _assert_grads_close(_grads(_objective(lp, ent), params), g_ref)


class _FunctionalLinear(torch.nn.Module):
    """A head whose weight and bias are plain tensors (gradcheck inputs), not registered parameters."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.w, self.b = weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.w, self.b)


@pytest.mark.parametrize("entropy", ["none", "grad"])
def test_gradcheck_linear_with_bias_fp64(entropy):
    """Finite differences w.r.t. hidden, weight and bias (fp64): log-probs and a differentiable entropy."""
    gen = torch.Generator().manual_seed(6)
    hidden = torch.randn(7, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(9, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    bias = torch.randn(9, dtype=torch.float64, generator=gen, requires_grad=True)
    targets = torch.randint(0, 9, (7,), generator=gen)

    def f(h, w, b):
        lp, ent = head_logprobs(
            _FunctionalLinear(w, b), h, targets, temperature=TEMPERATURE, entropy=entropy, chunk_rows=3
        )
        assert lp.dtype == torch.float64
        return lp if ent is None else (lp, ent)

    assert torch.autograd.gradcheck(f, (hidden, weight, bias))


def test_bf16_hidden_gives_fp32_outputs():
    gen = torch.Generator().manual_seed(7)
    head = torch.nn.Linear(16, 50, bias=False)
    hidden = torch.randn(2, 5, 16, generator=gen)
    targets = torch.randint(0, 50, (2, 5), generator=gen)
    ref, ref_ent = head_logprobs(head, hidden.bfloat16().float(), targets, entropy="stats", mode="full")
    lp, ent = head_logprobs(
        head, hidden.bfloat16(), targets, entropy="stats", chunk_rows=3
    )  # into an fp32 head
    assert lp.dtype == ent.dtype == torch.float32
    assert (lp - ref).abs().max().item() < LOGPROB_ATOL and (ent - ref_ent).abs().max().item() < LOGPROB_ATOL
    head16 = head.to(torch.bfloat16)
    lp16, ent16 = head_logprobs(head16, hidden.bfloat16(), targets, entropy="stats", chunk_rows=3)
    full16, _ = head_logprobs(head16, hidden.bfloat16(), targets, mode="full")
    assert lp16.dtype == ent16.dtype == torch.float32
    assert (lp16 - full16).abs().max().item() < LOGPROB_ATOL
    assert (lp16 - ref).abs().max().item() < 0.1  # bf16 logits: close to fp32, not equal


@pytest.mark.parametrize("mode", ["chunked", "full"])
def test_empty_input(mode):
    head = torch.nn.Linear(8, 20)
    hidden = torch.randn(2, 0, 8, requires_grad=True)
    lp, ent = head_logprobs(head, hidden, torch.zeros(2, 0, dtype=torch.long), entropy="grad", mode=mode)
    assert lp.shape == ent.shape == (2, 0) and lp.dtype == torch.float32
    (lp.sum() + ent.sum()).backward()
    assert hidden.grad is not None and hidden.grad.shape == hidden.shape
    nothing = torch.ones(3, 4, dtype=torch.bool) & False
    lp, _ = head_logprobs(
        head, torch.randn(3, 4, 8), torch.full((3, 4), IGNORE_INDEX), mask=nothing, mode=mode
    )
    assert lp.shape == (3, 4) and torch.all(lp == 0)


def test_no_grad_and_inference_mode():
    head = torch.nn.Linear(8, 20)
    hidden = torch.randn(6, 8, requires_grad=True)
    targets = torch.randint(0, 20, (6,))
    ref, _ = head_logprobs(head, hidden, targets, mode="full")
    with torch.no_grad():
        lp, ent = head_logprobs(head, hidden, targets, entropy="grad", chunk_rows=4)
    assert lp.grad_fn is None and ent.grad_fn is None
    with torch.inference_mode():
        lp2, _ = head_logprobs(head, hidden, targets, chunk_rows=4)
    assert (lp - ref).abs().max().item() < LOGPROB_ATOL and torch.equal(lp, lp2)


def test_head_nll_matches_cross_entropy(lora_model):
    """SFT: the sum of -log p over labelled positions and their count; ignored positions never reach the head."""
    head = lora_model.get_output_embeddings()
    hidden, targets = _hidden(lora_model, seed=8)
    labels = targets.clone()
    labels[0, :4] = IGNORE_INDEX
    labels[2, 5:] = IGNORE_INDEX
    params = _lora_params(lora_model)
    logits = head(hidden).float()
    ref = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
    g_ref = _grads(ref, params)
    for rows in (2, 10_000):
        total, n = head_nll(head, hidden, labels, chunk_rows=rows)
        assert n == int((labels != IGNORE_INDEX).sum()) and total.dtype == torch.float32
        assert abs(total.item() - ref.item()) < 1e-4
        _assert_grads_close(_grads(total, params), g_ref)


def test_head_nll_all_ignored_keeps_the_graph():
    head = torch.nn.Linear(8, 20)
    hidden = torch.randn(2, 3, 8, requires_grad=True)
    total, n = head_nll(head, hidden, torch.full((2, 3), IGNORE_INDEX))
    assert n == 0 and total.item() == 0.0
    total.backward()
    assert hidden.grad is not None and torch.all(hidden.grad == 0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": float("inf")}, "temperature"),
        ({"entropy": "yes"}, "entropy"),
        ({"mode": "liger"}, "mode"),
        ({"chunk_rows": 0}, "chunk_rows"),
        ({"mask": torch.ones(5, dtype=torch.bool)}, "mask"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    head = torch.nn.Linear(8, 20)
    with pytest.raises(ValueError, match=match):
        head_logprobs(head, torch.randn(4, 8), torch.zeros(4, dtype=torch.long), **kwargs)
    with pytest.raises(ValueError, match="align"):
        head_logprobs(head, torch.randn(4, 8), torch.zeros(3, dtype=torch.long))
