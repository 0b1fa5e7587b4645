import json

import pytest

pytestmark = pytest.mark.slow  # the quick demo end to end (~25 s)


def test_demo_quick_runs_every_stage(cli, tmp_path, one_thread):
    out = tmp_path / "demo"
    assert cli("demo", "--out", out, "--quick") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["stages"]) == ["warmup", "grpo++", "sft", "dpo"]
    for stage, m in summary["stages"].items():
        assert 0.0 <= m["balanced_accuracy"] <= 1.0 and 0.0 <= m["format_valid"] <= 1.0, stage
        assert (out / "dermiq" / {"grpo++": "grpopp"}.get(stage, stage) / "eval" / "metrics.json").is_file()
    for stage, adapter in summary["adapters"].items():
        assert adapter.startswith(str(out)) and adapter.endswith("adapter"), stage
    rows = [json.loads(x) for x in (out / "dermiq" / "grpopp" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2
    # one seed of the Clinical-R1 ablation: the cold start, then a GRPO and a CRPO arm from it, each evaluated
    assert [m["arm"] for m in summary["clinical"]["mean"]] == ["start (sft)", "grpo", "crpo"]
    for arm in ("sft", "grpo_s0", "crpo_s0"):
        assert (out / "clinical" / arm / "adapter" / "adapter_model.safetensors").is_file(), arm
    assert "GRPO vs CRPO" in (out / "clinical" / "ablation.md").read_text()
    # a second demo run replaces its own previous output, but never a folder it did not make
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    assert cli("demo", "--out", other, "--quick") == 2
    assert (other / "keep.txt").read_text() == "x"
