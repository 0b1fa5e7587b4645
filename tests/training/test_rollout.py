"""Group rollouts: recorded log-probs equal a teacher-forced forward, greedy equals `generate`, masks and stops.

Every test decodes all its prompts (of different lengths, VLM ones with images) in one loop, so each also checks
the ragged left-padded cache, per-row positions (mRoPE included) and masks.
"""

from __future__ import annotations

import copy

import pytest
import torch

from training.data.batch import PromptInputs, RolloutBatch, encode_prompts
from training.errors import MedrlError
from training.models.embedded import ensure_embedded
from training.objectives.forward import completion_logprobs
from training.rollout.engine import (
    SamplingConfig,
    _decode_all,
    _decode_forward,
    eos_ids,
    generate_rollouts,
    never_sampled_ids,
    sample_next,
)
from training.rollout.kv_cache import RolloutKVCache
from training.rollout.stops import StopStrings, token_bytes


def naive_completion_logprobs(model, batch, **kwargs):
    return completion_logprobs(model, batch, method="naive", **kwargs)


TEXTS = [
    "Question: What is the most likely diagnosis? Answer with the letter.",
    "The patient is a 45-year-old woman who presents with a 3-week history of",
]
RAGGED = [
    "Fever",
    "A rash on the left forearm for two days, itchy at night.",
    "History: 62-year-old man, smoker, with a changing pigmented lesion on the back; examination shows an "
    "asymmetric plaque with irregular borders and several colours. What is the next step?",
    "Why?",
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def text_setup():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = ensure_embedded("qwen2")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model, tok, encode_prompts(tok, TEXTS)


@pytest.fixture(scope="module")
def vlm_setup():
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = ensure_embedded("qwen25vl")
    proc = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)

    def chat(text: str, n_images: int) -> str:
        content = [{"type": "image"}] * n_images + [{"type": "text", "text": text}]
        return proc.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )

    images = [
        [Image.new("RGB", (56, 84), (200, 100, 50))],
        None,
        [Image.new("RGB", (84, 56), (20, 120, 60)), Image.new("RGB", (56, 56), (0, 0, 250))],
    ]
    texts = [
        chat("Describe the lesion.", 1),
        chat("No image in this one, a longer question.", 0),
        chat("Compare them.", 2),
    ]
    return model, proc, encode_prompts(proc, texts, images), texts, images


def _teacher_forced(model, batch: RolloutBatch) -> torch.Tensor:
    """Plain full forward of [prompt; completion] per row, log-softmax of its logits / T at the completion tokens."""
    out = torch.zeros_like(batch.sampling_logprobs)
    for r in range(batch.num_rows):
        prompt = batch.prompts[int(batch.group_index[r])]
        n, p = int(batch.completion_mask[r].sum()), len(prompt)
        tokens = batch.completion_ids[r, :n]
        kwargs = {}
        if prompt.pixel_values is not None or prompt.mm_token_type_ids is not None:
            kwargs["mm_token_type_ids"] = torch.cat(
                [prompt.mm_token_type_ids, torch.zeros(n, dtype=torch.long)]
            )[None]
            if prompt.pixel_values is not None:
                kwargs.update(pixel_values=prompt.pixel_values, image_grid_thw=prompt.image_grid_thw)
        with torch.no_grad():
            logits = model(input_ids=torch.cat([prompt.input_ids, tokens])[None], **kwargs).logits[0]
        scaled = logits[p - 1 : p - 1 + n] / batch.logprob_temperature
        out[r, :n] = scaled.log_softmax(-1).gather(-1, tokens[:, None])[:, 0]
    return out


def _check_layout(batch: RolloutBatch, g: int, n_prompts: int, eos: set[int]):
    n = n_prompts * g
    assert batch.completion_ids.shape[0] == n == batch.completion_mask.shape[0] == len(batch.texts)
    assert torch.equal(batch.group_index, torch.arange(n_prompts).repeat_interleave(g))
    lengths = batch.completion_mask.sum(-1)
    t = batch.completion_ids.shape[1]
    # the mask is a prefix; padding is the pad id with zero log-prob; EOS is counted and ends the row
    assert torch.equal(batch.completion_mask, torch.arange(t)[None] < lengths[:, None])
    assert torch.all(batch.completion_ids[~batch.completion_mask] == batch.pad_token_id)
    assert torch.all(batch.sampling_logprobs[~batch.completion_mask] == 0)
    assert torch.all(batch.sampling_logprobs[batch.completion_mask] <= 0)
    for r in range(n):
        toks = batch.completion_ids[r, : lengths[r]].tolist()
        assert not any(x in eos for x in toks[:-1])
        assert bool(batch.truncated[r]) == (toks[-1] not in eos)


@pytest.mark.parametrize("setup", ["text_setup", "vlm_setup"])
def test_sampling_logprobs_equal_teacher_forced_forward(request, setup):
    model, proc, prompts, *_ = request.getfixturevalue(setup)
    eos = {int(e) for e in model.generation_config.eos_token_id}
    cfg = SamplingConfig(num_generations=3, max_new_tokens=10, temperature=1.3, top_p=0.95, top_k=50, seed=0)
    batch = generate_rollouts(model, proc, prompts, cfg)
    _check_layout(batch, 3, len(prompts), eos)
    assert len(set(map(tuple, batch.completion_ids.tolist()))) > 1  # really sampled
    ref = _teacher_forced(model, batch)
    assert (batch.sampling_logprobs - ref).abs().max().item() < 1e-5
    # and the loss-side naive forward (used by Prefix Grouper tests) agrees too, at the sampling temperature
    assert batch.logprob_temperature == 1.3
    naive = naive_completion_logprobs(model, batch, temperature=1.3).logprobs.detach()
    assert (batch.sampling_logprobs - naive).abs().max().item() < 1e-5


@pytest.mark.parametrize("method", ["naive", "grouped"])
def test_sampling_logprobs_equal_the_loss_forward_at_the_sampling_temperature(text_setup, method):
    """The loss sees the policy that sampled: log pi/T with T = 0.7 (DermIQ's), on both loss forwards."""
    model, tok, prompts = text_setup
    cfg = SamplingConfig(num_generations=2, max_new_tokens=6, seed=1, temperature=0.7)
    batch = generate_rollouts(model, tok, prompts, cfg)
    assert batch.logprob_temperature == 0.7
    with torch.no_grad():
        loss_side = completion_logprobs(model, batch, method=method, temperature=0.7).logprobs
        plain = completion_logprobs(model, batch, method=method).logprobs
    mask = batch.completion_mask
    assert (batch.sampling_logprobs - loss_side)[mask].abs().max().item() < 1e-5
    assert (batch.sampling_logprobs - plain)[mask].abs().max().item() > 1e-3  # T=1 would be another policy


def test_greedy_records_plain_logprobs(text_setup):
    model, tok, prompts = text_setup
    batch = generate_rollouts(
        model, tok, prompts, SamplingConfig(num_generations=2, max_new_tokens=4, temperature=0)
    )
    assert batch.logprob_temperature == 1.0
    ref = naive_completion_logprobs(model, batch).logprobs.detach()
    assert (batch.sampling_logprobs - ref)[batch.completion_mask].abs().max().item() < 1e-5


@pytest.mark.parametrize("setup", ["text_setup", "vlm_setup"])
def test_greedy_equals_generate(request, setup):
    model, proc, prompts, *rest = request.getfixturevalue(setup)
    cfg = SamplingConfig(num_generations=2, max_new_tokens=12, top_k=1, temperature=0.8)
    batch = generate_rollouts(model, proc, prompts, cfg)
    for i, prompt in enumerate(prompts):
        if rest:  # VLM: generate from the processor's own encoding
            texts, images = rest
            enc = (
                proc(text=[texts[i]], images=images[i], return_tensors="pt")
                if images[i]
                else proc(text=[texts[i]], return_tensors="pt")
            )
        else:
            enc = {
                "input_ids": prompt.input_ids[None],
                "attention_mask": torch.ones(1, len(prompt), dtype=torch.long),
            }
        with torch.no_grad():
            ref = model.generate(**enc, do_sample=False, max_new_tokens=12)[0, len(prompt) :]
        for r in (2 * i, 2 * i + 1):
            n = int(batch.completion_mask[r].sum())
            assert batch.completion_ids[r, :n].tolist() == ref[:n].tolist()
            assert n == len(ref) or ref[n:].eq(model.generation_config.pad_token_id).all()


def test_seeded_generator_reproducible(text_setup):
    model, tok, prompts = text_setup
    cfg = SamplingConfig(num_generations=4, max_new_tokens=8, temperature=1.5, seed=123)
    a = generate_rollouts(model, tok, prompts, cfg)
    b = generate_rollouts(model, tok, prompts, cfg)
    c = generate_rollouts(model, tok, prompts, cfg, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.completion_ids, b.completion_ids) and a.texts == b.texts
    assert torch.equal(a.sampling_logprobs, b.sampling_logprobs)
    assert not torch.equal(a.completion_ids, c.completion_ids)


def test_eos_and_stop_strings_end_rows(text_setup):
    """Uneven lengths: a frequent token made EOS, and a stop string checked on the decoded text."""
    model, tok, prompts = text_setup
    free = generate_rollouts(
        model,
        tok,
        prompts,
        SamplingConfig(num_generations=4, max_new_tokens=10, seed=3, temperature=1.5, eos_token_ids=[]),
    )
    assert torch.all(free.completion_mask) and torch.all(free.truncated)
    # stop on the 4th token of row 0: rows that produce it end there, the token itself is kept
    eos_tok = int(free.completion_ids[0, 3])
    cfg = SamplingConfig(
        num_generations=4, max_new_tokens=10, seed=3, temperature=1.5, eos_token_ids=[eos_tok]
    )
    batch = generate_rollouts(model, tok, prompts, cfg)
    _check_layout(batch, 4, 2, {eos_tok})
    assert int(batch.completion_mask[0].sum()) == 4 and not bool(batch.truncated[0])
    assert torch.equal(batch.completion_ids[0, :4], free.completion_ids[0, :4])  # same seed, same draws
    # a stop string: the text of row 1 up to some character
    stop = free.texts[1][3:6]
    assert stop
    cfg = SamplingConfig(
        num_generations=4, max_new_tokens=10, seed=3, temperature=1.5, eos_token_ids=[], stop_strings=(stop,)
    )
    stopped = generate_rollouts(model, tok, prompts, cfg)
    n = int(stopped.completion_mask[1].sum())
    assert n < 10 and not bool(stopped.truncated[1]) and stopped.texts[1].endswith(stop)
    assert stop not in tok.decode(stopped.completion_ids[1, : n - 1].tolist())  # ended at the first hit
    assert torch.all(stopped.completion_ids[1, n:] == stopped.pad_token_id)


def test_mode_restored_no_grad_and_progress(text_setup, capsys):
    model, tok, prompts = text_setup
    model.train()
    try:
        batch = generate_rollouts(
            model, tok, prompts, SamplingConfig(num_generations=2, max_new_tokens=4, seed=0, progress=True)
        )
        assert model.training
    finally:
        model.eval()
    assert not batch.sampling_logprobs.requires_grad
    assert "rollout" in capsys.readouterr().err


def test_sample_next_filters():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).expand(200, 4)
    gen = torch.Generator().manual_seed(0)
    top2 = sample_next(logits, SamplingConfig(top_k=2), gen)
    assert set(top2.tolist()) == {0, 1}
    nucleus = sample_next(logits, SamplingConfig(top_p=0.7), gen)  # 0.5 + 0.3 covers 0.7
    assert set(nucleus.tolist()) == {0, 1}
    assert set(sample_next(logits, SamplingConfig(top_p=0.4), gen).tolist()) == {0}
    assert set(sample_next(logits, SamplingConfig(temperature=0), gen).tolist()) == {0}
    assert len(set(sample_next(logits, SamplingConfig(), gen).tolist())) == 4


def test_bad_config_is_a_user_error(text_setup):
    model, tok, prompts = text_setup
    with pytest.raises(MedrlError, match="top_p"):
        generate_rollouts(model, tok, prompts, SamplingConfig(top_p=0))


def test_4bit_model_rollout(text_setup):
    """A bitsandbytes nf4 model (CPU here): sampling works and the recorded log-probs match the naive forward."""
    pytest.importorskip("bitsandbytes")
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    _, tok, prompts = text_setup
    q = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.float32,
        llm_int8_skip_modules=["lm_head"],
    )
    device_map = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(
        ensure_embedded("qwen2"), quantization_config=q, device_map=device_map
    )
    batch = generate_rollouts(
        model, tok, prompts, SamplingConfig(num_generations=2, max_new_tokens=6, seed=0)
    )
    with torch.no_grad():
        ref = naive_completion_logprobs(model, batch).logprobs
    assert (batch.sampling_logprobs - ref).abs().max().item() < 1e-4


def test_diverged_weights_are_a_clear_error(text_setup):
    from transformers import AutoModelForCausalLM

    _, tok, prompts = text_setup
    model = AutoModelForCausalLM.from_pretrained(ensure_embedded("qwen2"), dtype=torch.float32)
    with torch.no_grad():
        model.model.norm.weight.fill_(float("nan"))
    with pytest.raises(MedrlError, match="logits are not finite at sampling step 0"):
        generate_rollouts(
            model, tok, prompts[:1], SamplingConfig(num_generations=2, max_new_tokens=3, seed=0)
        )


def _ragged(tok) -> list[PromptInputs]:
    """Prompts of 1 to ~70 tokens (the first is a single token: nothing of it is prefilled)."""
    prompts = encode_prompts(tok, RAGGED)
    return [PromptInputs(prompts[0].input_ids[:1])] + prompts[1:]


def _generate_greedy(model, prompt, n: int, eos: list[int] | None = None) -> list[int]:
    kwargs = {} if eos is None else {"eos_token_id": eos}
    with torch.no_grad():
        out = model.generate(
            input_ids=prompt.input_ids[None],
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            do_sample=False,
            max_new_tokens=n,
            **kwargs,
        )[0, len(prompt) :]
    return out.tolist()


def test_ragged_prompts_decoded_together_equal_generate_per_prompt(text_setup):
    """Prompts of 1 to ~40 tokens in one decode loop: each row's greedy tokens are `generate`'s for its prompt alone,
    and its log-probs are those of a teacher-forced forward."""
    model, tok, _ = text_setup
    prompts = _ragged(tok)
    lengths = [len(p) for p in prompts]
    assert min(lengths) == 1 and max(lengths) > 30
    batch = generate_rollouts(
        model,
        tok,
        prompts,
        SamplingConfig(num_generations=2, max_new_tokens=10, temperature=0, eos_token_ids=[]),
    )
    for i, prompt in enumerate(prompts):
        ref = _generate_greedy(model, prompt, 10, eos=[])
        assert batch.completion_ids[2 * i].tolist() == ref == batch.completion_ids[2 * i + 1].tolist()
    assert (batch.sampling_logprobs - _teacher_forced(model, batch)).abs().max().item() < 1e-5


def test_rows_finish_at_different_times(text_setup, monkeypatch):
    """A frequent token made EOS: rows end at many different steps (finished rows are dropped from the cache once
    at most half are alive); every row is still the policy's (log-probs = teacher-forced forward) and ends at its
    first EOS, and greedy rows equal `generate` with the same EOS."""
    model, tok, _ = text_setup
    prompts = _ragged(tok)
    free = generate_rollouts(
        model,
        tok,
        prompts,
        SamplingConfig(num_generations=2, max_new_tokens=12, seed=5, temperature=1.5, eos_token_ids=[]),
    )
    common = (
        torch.bincount(free.completion_ids.flatten()).topk(6).indices.tolist()
    )  # enough to end most rows early
    cfg = SamplingConfig(num_generations=2, max_new_tokens=12, seed=5, temperature=1.5, eos_token_ids=common)
    dropped = []
    select = RolloutKVCache.select_groups
    monkeypatch.setattr(
        RolloutKVCache, "select_groups", lambda self, gr: (dropped.append(len(gr)), select(self, gr))
    )
    batch = generate_rollouts(model, tok, prompts, cfg)
    monkeypatch.undo()
    assert dropped  # finished groups left the cache mid-loop
    _check_layout(batch, 2, len(prompts), set(common))
    lengths = batch.completion_mask.sum(-1)
    assert len(set(lengths.tolist())) >= 4 and int((lengths < 12).sum()) > len(lengths) // 2
    assert (batch.sampling_logprobs - _teacher_forced(model, batch)).abs().max().item() < 1e-5
    greedy = generate_rollouts(
        model,
        tok,
        prompts,
        SamplingConfig(num_generations=1, max_new_tokens=12, temperature=0, eos_token_ids=common),
    )
    for i, prompt in enumerate(prompts):
        n = int(greedy.completion_mask[i].sum())
        ref = _generate_greedy(model, prompt, 12, eos=common)
        assert greedy.completion_ids[i, :n].tolist() == ref[:n]
        assert n == len(ref) or ref[n] == model.generation_config.pad_token_id


def test_static_cache_layout_equals_eager(text_setup):
    """The compiled decode's layout (bucketed full-length cache, tensor write position, no row dropping) gives the
    same tokens and log-probs as the eager one; torch.compile itself only runs on CUDA (`rollout.compile: auto`).
    In float64: the two layouts sum attention in different orders, and in float32 a near-tie between two tokens can
    flip the greedy pick on another CPU's kernels."""
    model, tok, _ = text_setup
    model = copy.deepcopy(model).double()
    prompts = _ragged(tok)
    cfg = SamplingConfig(num_generations=2, max_new_tokens=8, temperature=0)
    eos = eos_ids(model, tok, cfg)
    stops = StopStrings(tok, [])
    with torch.inference_mode():
        eager = _decode_all(model, prompts, cfg, eos, stops, 0, None, static=False)
        static = _decode_all(model, prompts, cfg, eos, stops, 0, None, static=True)
        _decode_all(
            model, prompts[::-1], cfg, eos, stops, 0, None, static=True
        )  # the held buffers, overwritten
        again = _decode_all(model, prompts, cfg, eos, stops, 0, None, static=True)  # ... and reused
    assert eager[2:] == static[2:]  # each row ends at the same step, truncated or not
    # After its end a row's slots are not read (eager drops finished groups, static keeps decoding them).
    live = torch.arange(eager[0].shape[0])[:, None] < torch.tensor(eager[2])[None]
    assert torch.equal(eager[0][live], static[0][live])
    assert (eager[1][live] - static[1][live]).abs().max().item() < 1e-5  # log-probs are returned in float32
    assert torch.equal(static[0], again[0]) and torch.equal(static[1], again[1])


def test_decode_step_compiles_as_one_graph(text_setup):
    """What `rollout.compile` compiles traces whole (fullgraph: no graph break in the cache, the decode attention or
    the mask handling) and once for every step of two rollouts; TorchDynamo's eager backend here, inductor and CUDA
    graphs (`reduce-overhead`) only on a CUDA machine."""
    from torch._dynamo.testing import CompileCounterWithBackend

    model, tok, _ = text_setup
    prompts = _ragged(tok)
    cfg = SamplingConfig(num_generations=2, max_new_tokens=5, temperature=0)
    eos, stops = eos_ids(model, tok, cfg), StopStrings(tok, [])
    counter = CompileCounterWithBackend("eager")
    compiled = torch.compile(_decode_forward, backend=counter, dynamic=False, fullgraph=True)
    torch._dynamo.reset()
    with torch.inference_mode():
        ref = _decode_all(model, prompts, cfg, eos, stops, 0, None, static=True)
        for _ in range(2):
            out = _decode_all(model, prompts, cfg, eos, stops, 0, None, static=True, forward=compiled)
            assert torch.equal(out[0], ref[0]) and out[2:] == ref[2:]
    assert counter.frame_count == 1


def test_stop_string_spanning_tokens(text_setup):
    """A stop string made of the end of one sampled token and the start of the next ends the row at the second."""
    model, tok, prompts = text_setup
    assert (
        token_bytes(tok) is not None
    )  # the byte-level matcher, not the text fallback, runs for Qwen's tokenizer
    base = SamplingConfig(num_generations=4, max_new_tokens=10, seed=3, temperature=1.5, eos_token_ids=[])
    free = generate_rollouts(model, tok, prompts, base)

    def spanning_stop(r: int) -> str | None:
        """The last character of token 4 and the first of token 5, if that pair first occurs across 4|5."""
        ids = free.completion_ids[r, :5].tolist()
        if not all(
            len(tok.decode([t])) >= 2 and t < tok.vocab_size for t in ids
        ):  # ordinary tokens, 2+ characters
            return None
        stop = tok.decode([ids[3]])[-1] + tok.decode([ids[4]])[0]
        return stop if tok.decode(ids).index(stop) + len(stop) > len(tok.decode(ids[:4])) else None

    row = next(r for r in range(free.num_rows) if spanning_stop(r))
    stop = spanning_stop(row)
    cfg = SamplingConfig(**{**base.__dict__, "stop_strings": [stop]})
    stopped = generate_rollouts(model, tok, prompts, cfg)
    n = int(stopped.completion_mask[row].sum())
    first = next(k for k in range(1, 11) if stop in tok.decode(free.completion_ids[row, :k].tolist()))
    assert n == first <= 5 and not bool(stopped.truncated[row]) and stopped.texts[row].endswith(stop)
    assert torch.equal(stopped.completion_ids[row, :n], free.completion_ids[row, :n])


def test_stop_matcher_bytes_equal_text_fallback(text_setup):
    """Fed token by token, the byte automaton fires exactly where decoding the tokens first shows a stop string,
    including a character split over two byte tokens and several stop strings; the text fallback agrees."""
    _, tok, _ = text_setup
    text = "Answer: café au lait </answer> then naïve ## end"
    ids = tok(text).input_ids
    assert any("\ufffd" in tok.decode([i]) for i in ids)  # some character is split across tokens
    for stops in (["é"], ["</answer>"], ["ïve", "## e"], ["au l", "ait <"], ["not there"]):
        fast, slow = StopStrings(tok, stops), StopStrings(tok, stops)
        slow.table = None
        for m in (fast, slow):
            state, hit_at = m.start(), None
            for k, t in enumerate(ids):
                state, hit = m.feed(state, t)
                if hit:
                    hit_at = k
                    break
            expected = next(
                (k for k in range(len(ids)) if any(s in tok.decode(ids[: k + 1]) for s in stops)), None
            )
            assert hit_at == expected, (stops, m.table is None)


def test_one_host_sync_per_decode_step(text_setup, monkeypatch):
    """The decode loop reads the device once per step (sampled ids + finiteness), whatever the number of rows."""
    model, tok, _ = text_setup
    prompts = _ragged(tok)
    calls = {"n": 0}
    for name in ("tolist", "item", "__bool__", "__int__", "__float__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _original=original, **k):
            calls["n"] += 1
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)
    cfg = SamplingConfig(num_generations=3, max_new_tokens=7, seed=0, ignore_eos=True, stop_strings=["zzz"])
    batch = generate_rollouts(model, tok, prompts, cfg)
    monkeypatch.undo()
    assert batch.completion_ids.shape == (12, 7)
    assert 7 <= calls["n"] <= 7 + 2  # one per step, plus the final ids for decoding the texts


def test_compile_setting_is_checked(text_setup):
    model, tok, prompts = text_setup
    with pytest.raises(MedrlError, match="rollout.compile"):
        generate_rollouts(model, tok, prompts, SamplingConfig(compile="maybe"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="rollout.compile=auto compiles only on CUDA")
def test_compiled_decode_equals_eager_on_cuda(text_setup):
    """On CUDA, the compiled decode step (fixed-shape cache, CUDA graphs) gives the eager step's greedy tokens, and
    log-probs that a teacher-forced forward reproduces."""
    from transformers import AutoModelForCausalLM

    _, tok, _ = text_setup
    model = AutoModelForCausalLM.from_pretrained(ensure_embedded("qwen2"), dtype=torch.float32).to("cuda")
    prompts = _ragged(tok)
    runs = {
        mode: generate_rollouts(
            model,
            tok,
            prompts,
            SamplingConfig(
                num_generations=2, max_new_tokens=12, temperature=0, eos_token_ids=[], compile=mode
            ),
        )
        for mode in ("off", "on")
    }
    for a, b in zip(runs["off"].completion_ids, runs["on"].completion_ids, strict=True):
        assert a.tolist() == b.tolist()
    assert (runs["on"].sampling_logprobs - runs["off"].sampling_logprobs).abs().max().item() < 1e-3


def test_vision_placeholders_are_never_sampled(vlm_setup):
    """A policy that puts most of its mass on `<|image_pad|>` (as random 3B weights can over 151,936 ids) still never
    samples a vision placeholder: one in a completion would break the training forward's image-feature count. The
    recorded log-probs stay the unmasked policy's, so the packed training forward reproduces them."""
    model, proc, prompts, _, _ = vlm_setup
    banned = never_sampled_ids(model)
    cfg = model.config
    assert banned is not None and {cfg.image_token_id, cfg.video_token_id, cfg.vision_start_token_id} <= set(
        banned.tolist()
    )
    image_id = cfg.image_token_id

    def favour_placeholder(_module, _inputs, logits):
        logits = logits.clone()
        logits[..., image_id] += 8.0
        return logits

    handle = model.lm_head.register_forward_hook(favour_placeholder)
    try:
        batch = generate_rollouts(
            model,
            proc,
            prompts,
            SamplingConfig(num_generations=4, max_new_tokens=8, seed=0, eos_token_ids=[]),
        )
        assert not torch.isin(batch.completion_ids[batch.completion_mask], banned).any()
        with torch.no_grad():
            packed = completion_logprobs(
                model, batch
            ).logprobs  # raised 'features and tokens do not match' before
        assert (packed - batch.sampling_logprobs).abs().max().item() < 1e-4
    finally:
        handle.remove()
    assert never_sampled_ids(torch.nn.Linear(2, 2)) is None
