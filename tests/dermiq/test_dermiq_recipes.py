"""The DermIQ recipes: the seed's settings, and the tiny one runs through the real CLI on synthetic lesions."""

import json

import pytest

from dermiq.synthetic import generate_dataset
from training.config import load_config
from training.trainers.rl_config import RLConfig

SEED_SETTINGS = {
    ("rollout", "num_generations"): 3,
    ("rollout", "temperature"): 0.7,
    ("optim", "lr"): 3e-5,
    ("optim", "scheduler"): "cosine",
    ("optim", "warmup_steps"): 50,
    ("optim", "max_grad_norm"): 1.0,
    ("loss", "epsilon"): 0.2,
    ("loss", "kl_estimator"): "k1",
    ("loss", "beta"): 1e-3,
    ("loss", "entropy_coef"): 1e-3,
    ("reference", "kind"): "lagged",
    ("reference", "sync_every"): 10,
    ("reference", "as_old_policy"): True,
    ("advantages", "estimator"): "grpo++",
    ("advantages", "correct_reward"): "derm_accuracy",
}


@pytest.mark.parametrize(
    "recipe,new_tokens", [("configs/dermiq_tiny.yaml", 160), ("configs/dermiq_qwen25vl_3b.yaml", 250)]
)
def test_recipes_carry_the_seed_settings(recipe, new_tokens):
    cfg = load_config(RLConfig, recipe)
    for (section, key), value in SEED_SETTINGS.items():
        assert getattr(getattr(cfg, section), key) == value, (recipe, section, key)
    assert cfg.rollout.max_new_tokens == new_tokens
    assert set(cfg.rewards) == {"derm_accuracy", "derm_format", "derm_kg_consistency"}
    assert cfg.reward_modules == ["dermiq.rewards"]
    binary = load_config(RLConfig, recipe, ["--advantages.estimator=binary"])  # the other GRPO++ reading
    assert binary.advantages.estimator == "binary"


def test_3b_recipe_is_qlora():
    cfg = load_config(RLConfig, "configs/dermiq_qwen25vl_3b.yaml")
    assert cfg.model.name == "Qwen/Qwen2.5-VL-3B-Instruct" and cfg.model.quantization == "4bit"
    assert cfg.model.lora.enabled and cfg.model.gradient_checkpointing


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    d = tmp_path_factory.mktemp("derm_rl")
    generate_dataset(d, n_per_class=1, seed=0, progress=False)  # the 13 default classes, one image each
    return d / "records.jsonl"


def _rows(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_tiny_recipe_runs_two_steps(cli, tmp_path, synthetic, one_thread):
    assert (
        cli(
            "train",
            "configs/dermiq_tiny.yaml",
            f"--data.train={synthetic}",
            f"--run.output_dir={tmp_path}",
            "--run.max_steps=2",
            "--run.save_every=0",
            "--prompts_per_step=2",
        )
        == 0
    )
    rows = [r for r in _rows(tmp_path / "dermiq_tiny") if "reward/mean" in r]
    assert [r["step"] for r in rows] == [1, 2]
    last = rows[-1]
    assert last["skipped_nonfinite"] == 0 and (tmp_path / "dermiq_tiny" / "adapter").is_dir()
    for name in ("derm_accuracy", "derm_format", "derm_kg_consistency"):
        assert f"reward/{name}/mean" in last
    assert -1.0 <= last["reward/derm_accuracy/mean"] <= 7.0
    assert (
        0.0 <= last["reward/derm_format/mean"] <= 1.0
        and -1.0 <= last["reward/derm_kg_consistency/mean"] <= 1.0
    )
    assert "adv/frac_binary_groups" in last and "loss/kl/mean" in last and "loss/entropy/mean" in last


def test_tiny_recipe_binary_estimator(cli, tmp_path, synthetic, one_thread):
    assert (
        cli(
            "train",
            "configs/dermiq_tiny.yaml",
            f"--data.train={synthetic}",
            f"--run.output_dir={tmp_path}",
            "--run.name=binary",
            "--run.max_steps=1",
            "--run.save_every=0",
            "--prompts_per_step=2",
            "--advantages.estimator=binary",
        )
        == 0
    )
    last = [r for r in _rows(tmp_path / "binary") if "reward/mean" in r][-1]
    assert last["adv/frac_binary_groups"] == 1.0 and last["adv/abs_mean"] == 1.0  # +-1 for every completion
