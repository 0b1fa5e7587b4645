"""DPO trainer: grouped == naive pair log-probs, the first loss against a hand computation, learning a toy
preference, exact resume, SFT -> DPO through the real CLI, bad rows."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file

from training.config import LoraConfig, ModelConfig
from training.data.records import write_jsonl
from training.models.loading import load_policy
from training.objectives.forward import completion_logprobs
from training.trainers.dpo_trainer import encode_pairs, pair_logprobs

TEXT = "configs/dpo_qwen2_tiny.yaml"
VLM = "configs/dpo_qwen25vl_tiny.yaml"

pytestmark = pytest.mark.usefixtures("one_thread")


def pair(question: str, good: str, bad: str, images: list | None = None, image_slots: int = 0) -> dict:
    content = (
        [{"type": "image"}] * image_slots + [{"type": "text", "text": question}] if image_slots else question
    )
    return {
        "prompt": [{"role": "user", "content": content}],
        "chosen": [{"role": "assistant", "content": good}],
        "rejected": [{"role": "assistant", "content": bad}],
        "images": images or [],
    }


@pytest.fixture(scope="module")
def toy_pairs(tmp_path_factory):
    """Chosen = the right sum, rejected = a wrong one; uneven lengths so padding is exercised."""
    rows = [
        pair(
            f"What is {a} plus {b}? Reply with the number.",
            f"{a + b}",
            f"The answer is {a + b + 3}, I think.",
        )
        for a, b in [(1, 2), (2, 2), (3, 1), (0, 4), (2, 3), (4, 1), (1, 1), (3, 3)]
    ]
    path = tmp_path_factory.mktemp("dpo") / "pairs.jsonl"
    write_jsonl(path, rows)
    return path


@pytest.fixture(scope="module")
def vlm_pairs(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("dpo_vlm")
    rows = []
    for i in range(3):
        Image.new("RGB", (56, 56 + 28 * i), (180 - 40 * i, 90, 60)).save(d / f"l{i}.png")
        rows.append(
            pair(
                "Which condition is this?",
                f"<answer>melanoma {i}</answer>",
                "<answer>nevus</answer>",
                [f"l{i}.png"],
                image_slots=1,
            )
        )
    write_jsonl(d / "pairs.jsonl", rows)
    return d / "pairs.jsonl"


def rows(run_dir) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def steps(run_dir) -> list[dict]:
    return [r for r in rows(run_dir) if "loss" in r]


def dpo(cli, tmp_path, data, name, *extra, recipe=TEXT) -> int:
    return cli(
        "train",
        recipe,
        f"--data.train={data}",
        f"--run.output_dir={tmp_path}",
        f"--run.name={name}",
        "--run.save_every=0",
        *extra,
    )


def read_records(path) -> list[dict]:
    from training.data.records import read_jsonl

    return read_jsonl(path, "dpo").records


@pytest.fixture(scope="module")
def policies():
    """Policies with a non-zero LoRA (peft's B=0 would make the adapter a no-op), loaded once per kind."""
    cache: dict = {}

    def get(kind: str):
        if kind not in cache:
            torch.manual_seed(0)
            lora = LoraConfig(dropout=0.0, init_weights=False)
            cache[kind] = load_policy(ModelConfig(name=f"embedded:{kind}", lora=lora))
        return cache[kind]

    return get


# ---------------------------------------------------------------------------------------------- encoding, forward
@pytest.mark.parametrize("kind", ["qwen2", "qwen25vl"])
def test_grouped_pair_logprobs_equal_naive(kind, toy_pairs, vlm_pairs, policies):
    """A pair as a group of two: the shared-prompt forward gives the same sequence log-probs as running chosen
    and rejected each with its own copy of the prompt (and image)."""
    policy = policies(kind)
    records = read_records(vlm_pairs if kind == "qwen25vl" else toy_pairs)[:3]
    batch = encode_pairs(policy, records, max_length=512).batch
    assert batch.group_index.tolist() == [0, 0, 1, 1, 2, 2]
    assert all((p.pixel_values is not None) == (kind == "qwen25vl") for p in batch.prompts)
    with torch.no_grad():
        seq = {
            m: pair_logprobs(
                completion_logprobs(policy.model, batch, method=m).logprobs, batch.completion_mask
            )
            for m in ("grouped", "naive")
        }
    for g, n in zip(seq["grouped"], seq["naive"]):
        assert torch.all(n < 0)
        # sums of ~100 fp32 token log-probs near -130: one ulp there is 1.5e-5, so the bound is relative
        torch.testing.assert_close(g, n, rtol=1e-6, atol=1e-5)


def test_encoding_ends_turns_and_cuts_completions_to_max_length(toy_pairs, policies):
    from training.errors import DataError

    policy = policies("qwen2")
    rec = read_records(toy_pairs)[0]
    end = policy.tokenizer.convert_tokens_to_ids("<|im_end|>")
    full = encode_pairs(policy, [rec], max_length=512)
    lengths = full.batch.completion_lengths.tolist()
    assert full.truncated == 0 and lengths[0] < lengths[1]
    assert [int(full.batch.completion_ids[r, lengths[r] - 1]) for r in (0, 1)] == [end, end]
    prompt = len(full.batch.prompts[0])
    cut = encode_pairs(policy, [rec], max_length=prompt + lengths[0] - 1)
    assert cut.truncated == 2 and cut.batch.completion_lengths.tolist() == [lengths[0] - 1] * 2
    with pytest.raises(DataError, match="raise data.max_length"):
        encode_pairs(policy, [rec], max_length=prompt)


# ---------------------------------------------------------------------------------------------- the loss
def hand_pair_logprobs(model, tok, rec: dict) -> tuple[float, float]:
    """Sequence log-probs from one plain forward per sequence with full logits: nothing of the trainer's path."""
    prompt = tok(tok.apply_chat_template(rec["prompt"], tokenize=False, add_generation_prompt=True))[
        "input_ids"
    ]
    out = []
    for side in ("chosen", "rejected"):
        comp = tok(rec[side][0]["content"])["input_ids"] + [tok.convert_tokens_to_ids("<|im_end|>")]
        logits = model(input_ids=torch.tensor([prompt + comp])).logits[0, len(prompt) - 1 : -1].double()
        out.append(float(torch.log_softmax(logits, -1)[torch.arange(len(comp)), torch.tensor(comp)].sum()))
    return out[0], out[1]


def test_first_step_loss_matches_hand_computation_and_accumulation(cli, tmp_path, toy_pairs, sft_adapter):
    """Policy = SFT adapter, reference = base (adapter off): the logged step-1 loss and rewards equal the DPO
    formula on independently computed log-probs, for one batch of 4 pairs and for 4 accumulated pairs of 1."""
    common = [
        f"--model.adapter={sft_adapter}",
        "--reference.kind=base",
        "--data.shuffle=false",
        "--run.max_steps=1",
        "--dpo.beta=0.5",
        "--optim.warmup_steps=0",
    ]
    assert dpo(cli, tmp_path, toy_pairs, "one", *common, "--batch_size=4", "--grad_accum=1") == 0
    assert dpo(cli, tmp_path, toy_pairs, "acc", *common, "--batch_size=1", "--grad_accum=4") == 0

    policy = load_policy(ModelConfig(name="embedded:qwen2", adapter=str(sft_adapter)), trainable=False)
    model, tok, beta = policy.model.eval(), policy.tokenizer, 0.5
    losses, margins, chosen, acc = [], [], [], []
    with torch.no_grad():
        for rec in read_records(toy_pairs)[:4]:
            pc, pr = hand_pair_logprobs(model, tok, rec)
            with model.disable_adapter():
                rc, rr = hand_pair_logprobs(model, tok, rec)
            h = (pc - rc) - (pr - rr)
            losses.append(math.log1p(math.exp(-beta * h)))  # -log sigmoid(beta h)
            margins.append(beta * h)
            chosen.append(beta * (pc - rc))
            acc.append(float(beta * (pc - rc) > beta * (pr - rr)))
    assert abs(sum(margins)) > 1e-3  # the SFT adapter moved the policy: the loss is not trivially log 2
    for name in ("one", "acc"):
        got = steps(tmp_path / name)[0]
        assert got["loss"] == pytest.approx(sum(losses) / 4, rel=1e-5, abs=1e-6), name
        assert got["rewards/margins"] == pytest.approx(sum(margins) / 4, rel=1e-4, abs=1e-6), name
        assert got["rewards/chosen"] == pytest.approx(sum(chosen) / 4, rel=1e-4, abs=1e-6), name
        assert got["rewards/accuracies"] == pytest.approx(sum(acc) / 4), name
    one, accum = steps(tmp_path / "one")[0], steps(tmp_path / "acc")[0]
    assert one["grad_norm"] == pytest.approx(accum["grad_norm"], rel=1e-4)  # accumulation == one big batch


def test_sft_adapter_to_dpo_with_start_reference(cli, tmp_path, toy_pairs, sft_adapter):
    """SFT -> DPO via the real CLI: the start reference is the SFT adapter, so step 1 is exactly log 2 with
    zero margin; the run trains that adapter further and keeps its LoRA layout."""
    assert (
        dpo(
            cli,
            tmp_path,
            toy_pairs,
            "chain",
            f"--model.adapter={sft_adapter}",
            "--reference.kind=start",
            "--run.max_steps=2",
            "--optim.lr=5e-3",
        )
        == 0
    )
    first = steps(tmp_path / "chain")[0]
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    assert first["rewards/accuracies"] == 0.0
    start = load_file(str(sft_adapter / "adapter_model.safetensors"))
    final = load_file(str(tmp_path / "chain" / "adapter" / "adapter_model.safetensors"))
    assert start.keys() == final.keys()
    assert any(not torch.equal(start[k], final[k]) for k in start)
    assert (tmp_path / "chain" / "config.yaml").read_text().count(str(sft_adapter)) == 1


def test_toy_preference_raises_the_margin(cli, tmp_path, toy_pairs):
    """8 steps on the embedded Qwen2 from a fresh adapter: the chosen answer pulls ahead of the rejected one."""
    assert dpo(cli, tmp_path, toy_pairs, "toy", "--optim.lr=5e-3", "--run.max_steps=8") == 0
    got = steps(tmp_path / "toy")
    assert len(got) == 8 and got[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    assert got[-1]["rewards/margins"] > 0.5 and got[-1]["rewards/accuracies"] > 0.5, got[-1]
    assert got[-1]["loss"] < math.log(2) - 0.2
    for key in ("rewards/chosen", "rewards/rejected", "logps/chosen", "grad_norm", "lr", "tokens_per_s"):
        assert key in got[-1], key
    assert (tmp_path / "toy" / "adapter" / "adapter_model.safetensors").is_file()


def test_resume_equals_uninterrupted(cli, tmp_path, toy_pairs):
    """2 steps + resume + 2 steps == 4 steps, bit for bit. A lagged reference re-synced at step 2 makes the
    restored reference tensors matter (a rebuilt one would hold the step-0 adapter)."""
    common = [
        "--run.max_steps=4",
        "--run.save_every=2",
        "--optim.lr=5e-3",
        "--reference.kind=lagged",
        "--reference.sync_every=2",
        "--model.lora.dropout=0.1",
    ]
    assert dpo(cli, tmp_path, toy_pairs, "full", *common) == 0
    assert dpo(cli, tmp_path, toy_pairs, "part", *common) == 0
    shutil.rmtree(tmp_path / "part" / "checkpoints" / "step-4")
    shutil.rmtree(tmp_path / "part" / "adapter")
    assert dpo(cli, tmp_path, toy_pairs, "part", *common, "--resume") == 0
    a = load_file(str(tmp_path / "full" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "part" / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["loss"] for r in steps(tmp_path / "full")] == [r["loss"] for r in steps(tmp_path / "part")]
    assert [r["step"] for r in rows(tmp_path / "part")] == [0, 1, 2, 3, 4]


def test_vlm_recipe_runs(cli, tmp_path, vlm_pairs):
    assert (
        dpo(
            cli,
            tmp_path,
            vlm_pairs,
            "v",
            "--run.max_steps=2",
            "--batch_size=1",
            "--optim.lr=5e-3",
            recipe=VLM,
        )
        == 0
    )
    got = steps(tmp_path / "v")
    assert len(got) == 2 and got[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert got[-1]["skipped_nonfinite"] == 0


# ---------------------------------------------------------------------------------------------- data and config
def test_bad_rows_are_skipped_and_counted(cli, tmp_path, toy_pairs, capsys):
    good = toy_pairs.read_text().splitlines()[:2]
    bad = [
        '{"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "a"}]}',
        "not json",
        json.dumps(
            {
                **json.loads(good[0]),
                "chosen": [{"role": "user", "content": "two turns"}, {"role": "assistant", "content": "a"}],
            }
        ),
    ]
    data = tmp_path / "mixed.jsonl"
    data.write_text("\n".join(good + bad) + "\n")
    assert dpo(cli, tmp_path, data, "mixed", "--run.max_steps=1") == 0
    start = rows(tmp_path / "mixed")[0]
    assert start["records"] == 2 and start["records_skipped"] == 3
    out = capsys.readouterr().out
    assert "2 records, 3 skipped" in out and ":3: field 'rejected'" in out
    from training.data.records import read_jsonl

    skipped = read_jsonl(data, "dpo").skipped
    assert skipped[-1] == f"{data}:5: field 'chosen': expected one assistant message of text"

    only_bad = tmp_path / "bad.jsonl"
    only_bad.write_text("\n".join(bad) + "\n")
    assert dpo(cli, tmp_path, only_bad, "bad") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no usable dpo records" in err and str(only_bad) in err


@pytest.mark.parametrize(
    "override, message",
    [
        ("--reference.kind=none", "reference.kind: expected start, base or lagged"),
        ("--dpo.beta=0", "dpo.beta: expected a float > 0"),
        ("--dpo.loss_type=kto", "dpo.loss_type: expected one of"),
        ("--dpo.label_smoothing=0.6", "dpo.label_smoothing: expected a float in [0, 0.5)"),
        ("--loss.forward=tree", "loss.forward: expected one of"),
    ],
)
def test_config_errors_name_the_key(cli, tmp_path, toy_pairs, capsys, override, message):
    assert dpo(cli, tmp_path, toy_pairs, "cfg", override) == 2
    assert message in capsys.readouterr().err
