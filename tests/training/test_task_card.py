"""The task card (RUN/task.json): written by every trainer when it starts, read back by the evaluations and the app."""

import json

import yaml

from training.run.task_card import build_card, prompt_of, read_card, system_text


def test_sft_run_writes_its_card_with_the_trained_prompt_and_lineage(cli, tmp_path, text_sft_file):
    common = [
        f"--data.train={text_sft_file}",
        f"--run.output_dir={tmp_path}",
        "--run.max_steps=1",
        "--run.tensorboard=false",
    ]
    assert (
        cli("train", "configs/sft_qwen2_tiny.yaml", "--run.name=a", "--task.max_new_tokens=77", *common) == 0
    )
    card = json.loads((tmp_path / "a" / "task.json").read_text())
    first = json.loads(open(text_sft_file).readline())
    assert card["prompt"] == prompt_of(first) and card["prompt"] and card["prompt"][-1]["role"] != "assistant"
    assert card["max_new_tokens"] == 77 and card["temperature"] == 0.0
    assert card["base_model"] == "embedded:qwen2"
    assert card["trained_on"] == [
        {
            "trainer": "sft",
            "run": "a",
            "data": str(text_sft_file),
            "records": sum(1 for _ in open(text_sft_file)),
            "skipped": 0,
        }
    ]
    # a second stage from a's adapter carries a's training data before its own
    assert (
        cli(
            "train",
            "configs/sft_qwen2_tiny.yaml",
            "--run.name=b",
            f"--model.adapter={tmp_path / 'a' / 'adapter'}",
            *common,
        )
        == 0
    )
    b = read_card(tmp_path / "b")
    assert [t["run"] for t in b["trained_on"]] == ["a", "b"] and b["max_new_tokens"] is None


def test_unknown_task_key_is_a_config_error(cli, tmp_path, text_sft_file):
    assert (
        cli(
            "train",
            "configs/sft_qwen2_tiny.yaml",
            f"--data.train={text_sft_file}",
            f"--run.output_dir={tmp_path}",
            "--task.max_tokens=5",
        )
        == 2
    )


def test_card_of_a_run_without_one_is_inferred_from_its_training_file(tmp_path):
    data = tmp_path / "train.jsonl"
    rec = {
        "prompt": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "image", "image": "x.png"}, {"type": "text", "text": "Q"}]},
        ],
        "images": ["x.png"],
        "answer": "a",
    }
    data.write_text(json.dumps(rec) + "\n")
    run = tmp_path / "old"
    run.mkdir()
    (run / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "trainer": "rl",
                "model": {"name": "embedded:qwen25vl"},
                "data": {"train": str(data)},
                "rollout": {"max_new_tokens": 96},
            }
        )
    )
    card = read_card(run)
    assert card["inferred"] and card["max_new_tokens"] == 96 and system_text(card) == "Be brief."
    assert card["prompt"][1]["content"][0] == {"type": "image"}  # slots only: no paths in a card
    data.unlink()
    assert read_card(run) is None  # nothing to infer from: the readers fall back to their own defaults


def test_rl_card_takes_the_rollout_length():
    from training.config import from_dict
    from training.trainers.rl_config import RLConfig

    cfg = from_dict(
        RLConfig,
        {
            "data": {"train": "t.jsonl"},
            "rewards": {"r": 1.0},
            "rollout": {"max_new_tokens": 33, "num_generations": 2},
        },
    )
    card = build_card(cfg, [{"prompt": [{"role": "user", "content": "q"}], "answer": "a"}])
    assert card["max_new_tokens"] == 33 and card["prompt"] == [{"role": "user", "content": "q"}]
