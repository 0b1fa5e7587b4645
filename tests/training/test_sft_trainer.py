import json

import pytest
import torch
from safetensors.torch import load_file


def train(cli, tmp_path, data, name, *extra):
    rc = cli(
        "train",
        "configs/sft_qwen2_tiny.yaml",
        f"--data.train={data}",
        f"--run.output_dir={tmp_path}",
        f"--run.name={name}",
        "--model.lora.dropout=0.05",
        *extra,
    )
    assert rc == 0
    return tmp_path / name


def adapter(run_dir, sub="adapter"):
    return load_file(str(run_dir / sub / "adapter_model.safetensors"))


@pytest.mark.slow
def test_resume_equals_uninterrupted(cli, tmp_path, text_sft_file):
    """2 steps + resume + 2 steps == 4 uninterrupted steps (same seed): identical adapter weights."""
    common = ["--run.max_steps=4", "--run.save_every=2", "--optim.scheduler=cosine", "--optim.warmup_steps=1"]
    full = train(cli, tmp_path, text_sft_file, "full", *common)
    # Interrupt after step 2: same recipe, but stop there (the checkpoint at step 2 is all that survives).
    part = train(cli, tmp_path, text_sft_file, "part", *common)
    import shutil

    shutil.rmtree(part / "checkpoints" / "step-4")
    shutil.rmtree(part / "adapter")
    rows_before = [json.loads(x) for x in (part / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in rows_before) == 4
    assert (
        cli(
            "train",
            "configs/sft_qwen2_tiny.yaml",
            f"--data.train={text_sft_file}",
            f"--run.output_dir={tmp_path}",
            "--run.name=part",
            "--model.lora.dropout=0.05",
            *common,
            "--resume",
        )
        == 0
    )
    a, b = adapter(full), adapter(part)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [json.loads(x)["step"] for x in (part / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 3, 4]  # rows after the checkpoint were replaced, not duplicated


def test_run_layout_metrics_and_checkpoints(cli, tmp_path, text_sft_file):
    run = train(
        cli,
        tmp_path,
        text_sft_file,
        "r",
        "--run.max_steps=6",
        "--run.save_every=2",
        "--run.keep_checkpoints=2",
        "--optim.lr=5e-3",
    )
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-4", "step-6"]
    ck = run / "checkpoints" / "step-4"
    for f in (
        "adapter/adapter_model.safetensors",
        "optimizer.pt",
        "scheduler.pt",
        "rng.pt",
        "trainer_state.json",
    ):
        assert (ck / f).is_file(), f
    state = json.loads((ck / "trainer_state.json").read_text())
    assert state == {"data_pos": 4 * 2 * 2, "step": 4}  # steps x batch_size x grad_accum records consumed
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "config.yaml").read_text().count("sft_qwen2_tiny") == 0  # resolved name was overridden
    assert not [p for p in run.rglob(".*tmp*")]  # atomic writes leave no temporaries
    assert (
        cli(
            "train",
            "configs/sft_qwen2_tiny.yaml",
            f"--data.train={text_sft_file}",
            f"--run.output_dir={tmp_path}",
            "--run.name=r",
        )
        == 2
    )  # refuses to overwrite


def test_grad_accumulation_matches_one_big_batch(cli, tmp_path, text_sft_file):
    one = train(
        cli,
        tmp_path,
        text_sft_file,
        "one",
        "--run.max_steps=1",
        "--batch_size=4",
        "--grad_accum=1",
        "--model.lora.dropout=0.0",
        "--data.shuffle=false",
        "--optim.warmup_steps=0",
    )
    acc = train(
        cli,
        tmp_path,
        text_sft_file,
        "acc",
        "--run.max_steps=1",
        "--batch_size=1",
        "--grad_accum=4",
        "--model.lora.dropout=0.0",
        "--data.shuffle=false",
        "--optim.warmup_steps=0",
    )
    # Adam's first step is ~lr*sign(g), too sensitive to compare weights; the loss and the whole gradient's
    # norm (logged before clipping) must match instead.
    ra, rb = (json.loads((r / "metrics.jsonl").read_text().splitlines()[-1]) for r in (one, acc))
    assert ra["label_tokens"] == rb["label_tokens"]
    assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-5)
    assert ra["grad_norm"] == pytest.approx(rb["grad_norm"], rel=1e-4)


@pytest.mark.parametrize("quant", ["none", "4bit"])
def test_vlm_sft_trains_on_images(cli, tmp_path, vlm_sft_file, quant):
    rc = cli(
        "train",
        "configs/sft_qwen25vl_tiny.yaml",
        f"--data.train={vlm_sft_file}",
        f"--run.output_dir={tmp_path}",
        "--run.name=v",
        "--run.max_steps=3",
        "--run.save_every=0",
        f"--model.quantization={quant}",
        "--optim.lr=5e-3",
    )
    assert rc == 0
    rows = [json.loads(x) for x in (tmp_path / "v" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["vlm"] is True and rows[0]["quantization"] == quant
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert (tmp_path / "v" / "adapter" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "v" / "adapter" / "processor_config.json").is_file()
