import json

from training.data import read_jsonl


def test_demo_quick_runs_every_stage(cli, tmp_path):
    out = tmp_path / "demo"
    assert cli("demo", "--out", out, "--quick") == 0
    summary = json.loads((out / "summary.json").read_text())
    for name, n in (("derm_sft", 26), ("clinical_sft", 24)):  # built by dermiq.records / clinical.records
        data = read_jsonl(out / "data" / f"{name}.jsonl", "sft")
        assert len(data) == n and not data.skipped
    assert set(summary) >= {"sft_vlm_loss", "sft_lm_loss", "grpopp_reward"}
    for name in ("sft_vlm", "sft_lm"):
        assert (out / "exports" / name / "adapter_model.safetensors").is_file()
        assert "For research use only" in (out / "exports" / name / "README.md").read_text()
    assert (out / "exports" / "sft_vlm" / "merged" / "model.safetensors").is_file()
    rows = [json.loads(x) for x in (out / "grpopp_toy" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2
    # a second demo run replaces its own previous output, but never a folder it did not make
    assert cli("demo", "--out", out, "--quick") == 0
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    assert cli("demo", "--out", other, "--quick") == 2
    assert (other / "keep.txt").read_text() == "x"
