"""The run reader over real tiny runs (trained by `medrl train` in the session fixture), without a browser."""

import pytest
import yaml

from app.runs import RunsReader, method_of
from app.safety import Refused


def test_lists_runs_with_stages_and_kind(app_runs):
    r = RunsReader(app_runs)
    assert r.run_ids() == ["demo/lm", "demo/vlm"]
    lm, vlm = r.info("demo/lm"), r.info("demo/vlm")
    assert (lm.method, lm.vlm, lm.finished, lm.steps_logged) == ("SFT", False, True, 3)
    assert lm.stages == ["final", "step-3", "step-2"]  # the final step is checkpointed too
    assert vlm.vlm and vlm.stages[0] == "final"
    assert r.adapter_dir("demo/lm", "step-2").name == "adapter"


def test_metrics_summary_card_eval_trees(app_runs):
    r = RunsReader(app_runs)
    assert r.metric_names("demo/lm")[0] == "loss"
    series = r.series("demo/lm", "loss")
    assert [s for s, _ in series] == [1, 2, 3]
    assert "→" in r.summary("demo/lm")["loss"]
    card = r.model_card("demo/lm")
    assert "For research use only" in card and "embedded:qwen2" in card
    assert dict(r.eval_tables("demo/lm")[0][1])["per_condition/pneumonia"] == 0.5
    assert r.tree_files("demo/lm") == ["step-1.json"]
    assert len(r.read_tree("demo/lm", "step-1.json")["nodes"]) == 3


@pytest.mark.parametrize("bad", ["../..", "demo/../../..", "/etc", "demo/lm/../../../x", "demo", "demo/none"])
def test_ids_outside_the_root_or_not_runs_are_refused(app_runs, bad):
    with pytest.raises(Refused):
        RunsReader(app_runs).run(bad)


def test_stage_and_tree_names_are_confined(app_runs):
    r = RunsReader(app_runs)
    for stage in ("../../../lm", "step-99", "/etc"):
        with pytest.raises(Refused):
            r.adapter_dir("demo/lm", stage)
    for name in ("../config.yaml", "../../vlm/config.yaml", "/etc/passwd"):
        with pytest.raises(Refused):
            r.read_tree("demo/lm", name)


def test_a_fresh_clone_has_no_runs(tmp_path):
    assert RunsReader(tmp_path / "runs").runs() == []


def test_method_labels():
    toy = yaml.safe_load(open("configs/grpopp_qwen2_toy.yaml"))
    assert method_of(toy) == "GRPO++"
    assert method_of({**toy, "rewards": {"clinical_accuracy": 10, "clinical_faithfulness": 1}}) == "CRPO"
    assert method_of({"trainer": "dpo"}) == "DPO"
    assert method_of({"trainer": "sft"}) == "SFT"


def test_a_pipelines_stages_side_by_side(tmp_path):
    """Stage runs in one folder (as `medrl dermiq train` writes them): one row each, in adapter-chain order."""
    import json
    import os

    prev = ""
    for i, (stage, bacc) in enumerate([("warmup", 0.2), ("grpopp", 0.35), ("sft", 0.3), ("dpo", 0.4)]):
        run = tmp_path / "derm" / stage
        (run / "eval").mkdir(parents=True)
        start = f"{tmp_path / 'derm' / prev}/adapter" if i else ""
        (run / "config.yaml").write_text(
            f"trainer: sft\nmodel: {{name: embedded:qwen25vl, adapter: '{start}'}}\n"
        )
        os.utime(
            run / "config.yaml", (2000 - i, 2000 - i)
        )  # a resumed stage rewrites its config: not the order
        prev = stage
        (run / "eval" / "metrics.json").write_text(
            json.dumps(
                {"balanced_accuracy": bacc, "format_valid": 1.0, "labels": ["a"], "n": 36, "run": str(run)}
            )
        )
    alone = tmp_path / "other"
    (alone / "eval").mkdir(parents=True)
    (alone / "config.yaml").write_text("trainer: sft\n")
    r = RunsReader(tmp_path)
    header, rows = r.stage_table("derm/sft")
    assert header == ["stage", "balanced_accuracy", "format_valid", "n"]
    assert rows == [
        ["warmup", "0.200", "1.000", "36"],
        ["grpopp", "0.350", "1.000", "36"],
        ["sft", "0.300", "1.000", "36"],
        ["dpo", "0.400", "1.000", "36"],
    ]
    assert r.stage_table("other") is None
