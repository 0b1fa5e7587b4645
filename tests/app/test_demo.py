import json

import pytest

from app import interactive
from app.runs import RunsReader

pytestmark = pytest.mark.slow  # the quick demo end to end (~25 s)


def assert_trees_on_disk(out, summary) -> None:
    """The Tree-GRPO stage wrote a case-trained run whose trees the app's viewer reads: files on disk, each line
    one parseable tree rooted at the prompt."""
    run = out / "cases"
    files = sorted((run / "trees").glob("step-*.jsonl"))
    assert [p.name for p in files] == ["step-1.jsonl"] and summary["cases"]["tree_files"] == [str(files[0])]
    trees = [json.loads(line) for line in files[0].read_text().splitlines() if line.strip()]
    assert len(trees) == summary["cases"]["trees"] == 2  # one prompt, two trees
    for tree in trees:
        nodes = tree["nodes"]
        assert tree["step"] == 1 and nodes[0]["parent"] is None and len(nodes) > 1
        assert all(n["parent"] in {m["id"] for m in nodes} for n in nodes[1:])
        assert any(n["kept"] for n in nodes)
    reader = RunsReader(out.parent)
    assert reader.tree_files("demo/cases") == ["step-1.jsonl#0", "step-1.jsonl#1"]
    assert reader.read_tree("demo/cases", "step-1.jsonl#1") == trees[1]
    assert [r.id for r in interactive.case_runs(reader)] == [
        "demo/cases"
    ]  # the run the interactive case offers


def test_demo_quick_runs_every_stage(cli, tmp_path, one_thread, capsys):
    out = tmp_path / "demo"
    assert cli("demo", "--out", out, "--quick", "--parallel") == 0
    printed = capsys.readouterr().out
    assert f"are under {out / 'cases' / 'trees'}/" in printed
    summary = json.loads((out / "summary.json").read_text())
    # --parallel: the Qwen2 stages ran in a second process (their log kept); the timings close the output
    assert summary["parallel"] and "Clinical-R1" in (out / "text_part.log").read_text()
    assert "Stage timings (stages 4-5 in a second process, beside 1-3):" in printed
    assert all(summary[k] > 0 for k in ("train_s", "eval_s", "clinical_s", "cases_s", "total_s"))
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
    assert_trees_on_disk(out, summary)
    # a second demo run replaces its own previous output, but never a folder it did not make
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    assert cli("demo", "--out", other, "--quick") == 2
    assert (other / "keep.txt").read_text() == "x"
