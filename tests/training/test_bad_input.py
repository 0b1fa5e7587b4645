"""Bad input a user will hand us, through the real CLI: a clear one-line error or a counted skip, never a crash
mid-run, and nothing already written lost.

The rest of the suite lives beside the code it guards: zero-byte, non-image and bomb images
(tests/training/test_data.py), wrong CSV columns and an unknown label (tests/dermiq/test_derm_import.py,
tests/clinical/test_clinical_import.py), a reward that raises and non-finite updates (tests/training/test_faults.py),
a tokenizer without a chat template (tests/training/test_chat.py), config typos (tests/training/test_config.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from training.data.records import read_jsonl
from training.objectives.toy_task import write_records

TOY = "configs/grpopp_qwen2_toy.yaml"
SFT = "configs/sft_qwen2_tiny.yaml"
FAST = [
    "--prompts_per_step=2",
    "--rollout.num_generations=2",
    "--rollout.max_new_tokens=3",
    "--run.tensorboard=false",
    "--run.keep_checkpoints=0",
]
QA = [
    {"role": "user", "content": "Fever and cough. Diagnosis?"},
    {"role": "assistant", "content": "pneumonia"},
]


def last_error(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("medrl: error:")]
    assert len(err) == 1, err
    return err[0]


def test_truncated_png_and_jpeg_are_skipped_and_counted(tmp_path):
    img = Image.new("RGB", (64, 64), (200, 100, 50))
    for x in range(64):
        img.putpixel((x, x), (3 * x, 20, 200))
    slot = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]},
        {"role": "assistant", "content": "a macule"},
    ]
    names = ["ok.png"]
    img.save(tmp_path / "ok.png")
    for ext in ("png", "jpg"):
        img.save(tmp_path / f"full.{ext}")
        data = (tmp_path / f"full.{ext}").read_bytes()
        (tmp_path / f"cut.{ext}").write_bytes(data[: len(data) // 2])  # a download that stopped half-way
        names.append(f"cut.{ext}")
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"messages": slot, "images": [n]}) + "\n" for n in names))
    ds = read_jsonl(path, "sft")
    assert [Path(r["images"][0]).name for r in ds.records] == ["ok.png"]
    assert ds.skipped == [
        f"{path}:2: field 'images[0]': cut.png: unreadable image (Truncated File Read)",
        f"{path}:3: field 'images[0]': cut.jpg: unreadable image (Truncated File Read)",
    ]


def test_a_row_that_is_not_utf8_is_skipped_and_the_rest_trains(cli, tmp_path, capsys):
    good = json.dumps({"messages": QA}).encode()
    latin1 = (
        json.dumps({"messages": QA}).replace("Fever", "F\\u00e9ver").encode().replace(b"F\\u00e9", b"F\xe9")
    )
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf" + good + b"\n" + latin1 + b"\n" + good + b"\n"
    )  # a BOM, then a latin-1 row
    ds = read_jsonl(path, "sft")
    column = latin1.index(b"\xe9") + 1
    assert len(ds) == 2 and ds.skipped == [f"{path}:2: not UTF-8 text (byte 0xe9 at column {column})"]
    assert (
        cli(
            "train",
            SFT,
            f"--data.train={path}",
            f"--run.output_dir={tmp_path}",
            "--run.name=r",
            "--run.max_steps=1",
            "--run.save_every=0",
            "--batch_size=1",
            "--grad_accum=1",
        )
        == 0
    )
    assert "1 skipped" in capsys.readouterr().out
    assert (tmp_path / "r" / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty.jsonl: no usable sft records"),
        (b"\n\n", "empty.jsonl: no usable sft records"),
    ],
)
def test_an_empty_data_set_is_one_line_before_any_model_loads(cli, tmp_path, capsys, content, message):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    assert cli("train", SFT, f"--data.train={path}", f"--run.output_dir={tmp_path}", "--run.name=r") == 2
    assert last_error(capsys).endswith(message)
    assert not (tmp_path / "r").exists()  # refused before the run folder was made


@pytest.mark.parametrize(
    "text, message",
    [
        ("- trainer: sft\n- data: {}\n", "expected a mapping at the top level, got list"),
        ("just words\n", "expected a mapping at the top level, got str"),
    ],
)
def test_a_yaml_file_that_is_not_a_mapping(cli, tmp_path, capsys, text, message):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    assert cli("train", recipe) == 2
    err = last_error(capsys)
    assert str(recipe) in err and err.endswith(message)


NAN_LATER = '''
CALLS = []


def nan_on_third_call(prompts, completions, **fields):
    """Healthy for two steps, NaN on the third (a reward that breaks on one odd record), healthy after."""
    CALLS.append(len(completions))
    return [float("nan") if len(CALLS) == 3 else 1.0 for _ in completions]
'''


def test_a_reward_that_returns_nan_mid_run_keeps_the_checkpoints_and_resumes(
    cli, tmp_path, capsys, monkeypatch
):
    (tmp_path / "flaky_rewards.py").write_text(NAN_LATER)
    monkeypatch.syspath_prepend(str(tmp_path))
    data = write_records(tmp_path / "toy.jsonl", 16, seed=0)
    args = [
        "train",
        TOY,
        f"--data.train={data}",
        f"--run.output_dir={tmp_path}",
        "--run.name=r",
        "--run.max_steps=4",
        "--run.save_every=2",
        "--rewards={flaky_rewards:nan_on_third_call: 1.0}",
        "--advantages.estimator=grpo",
        "--advantages.correct_reward=null",
        *FAST,
    ]
    assert cli(*args) == 2
    assert (
        last_error(capsys)
        == "medrl: error: reward 'flaky_rewards:nan_on_third_call' returned a non-finite value (nan)"
    )
    run = tmp_path / "r"
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-2"]
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2]
    assert cli(*args, "--resume") == 0  # the reward is healthy again: the run continues from step 2
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 3, 4] and (run / "adapter" / "adapter_model.safetensors").is_file()


def test_a_disk_too_full_for_a_checkpoint_is_an_error_before_training(
    cli, tmp_path, text_sft_file, capsys, monkeypatch
):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(
        shutil, "disk_usage", lambda path: usage(10 * 2**30, 10 * 2**30 - 2**20, 2**20)
    )  # 1 MB free
    assert (
        cli("train", SFT, f"--data.train={text_sft_file}", f"--run.output_dir={tmp_path}", "--run.name=r")
        == 2
    )
    err = last_error(capsys)
    assert (
        "1 MB free on this disk, but the run's checkpoints need about" in err and str(tmp_path / "r") in err
    )
    assert (
        not (tmp_path / "r" / "checkpoints").exists() and not (tmp_path / "r" / "metrics.jsonl").read_text()
    )
