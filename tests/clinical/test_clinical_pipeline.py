"""Clinical-R1 pipeline: boxed cold-start traces, `medrl clinical train|eval|ablate` on the tiny model through the real
CLI (one SFT step, one RL step, a few tokens: the machinery, not the learning), and the eval measures on
hand-written responses."""

import csv
import json

import pytest
import yaml

from clinical.data import import_data
from clinical.evaluate import score_response
from clinical.records import boxed_sft_records, boxed_trace
from clinical.rewards import (
    accuracy_score,
    analysis,
    comprehensiveness_parts,
    faithfulness_parts,
    format_score,
)
from training.data.records import read_jsonl, validate_record

pytestmark = pytest.mark.slow  # cold start -> CRPO end to end


TINY = [
    "--sft-steps",
    "1",
    "--crpo.rollout.max_new_tokens=6",
    "--crpo.rollout.num_generations=2",
    "--crpo.prompts_per_step=1",
    "--sft.batch_size=1",
    "--sft.data.max_length=640",
    "--pipeline.vignettes=12",
    "--pipeline.eval_limit=2",
]


@pytest.fixture(scope="module")
def vignettes(tmp_path_factory):
    out = tmp_path_factory.mktemp("vignettes")
    import_data("vignettes", "embedded", out, n=24, seed=3)
    return read_jsonl(out / "train.jsonl", "rl").records


@pytest.mark.parametrize("style", ["full", "brief", "lead"])
def test_boxed_traces_score_top_on_every_objective(vignettes, tmp_path, style):
    """A built trace is the answer the CRPO rules want: boxed gold letter, full format, every wrong option ruled out
    with a reason, case findings cited and none invented, a verification sentence."""
    sft = boxed_sft_records(vignettes, style=style)
    assert len(sft) == len(vignettes)
    for rec, s in zip(vignettes, sft, strict=True):
        assert validate_record(s, "sft", tmp_path) is None
        assert s["messages"][:-1] == rec["prompt"]  # the SFT prompt is the RL prompt word for word
        text = s["messages"][-1]["content"]
        assert accuracy_score(text, rec["answer"]) == 1.0 and format_score(text) == 1.5
        a = analysis(rec["prompt"], text, rec["answer"], rec["meta"])
        faith = faithfulness_parts(a)
        assert faith["hallucination"] == 0.0 and faith["evidence"] == 1.0 and faith["consistency"] == 1.0
        assert comprehensiveness_parts(a, rec["meta"]["options"], rec["answer"])["rejection"] == 1.0
        assert a.verifications >= 1


def test_lead_trace_states_its_answer_first_then_goes_through_every_option_in_order(vignettes):
    for rec in vignettes[:6]:
        think = boxed_trace(rec, style="lead").split("<think>\n")[1].split("\n</think>")[0].splitlines()
        assert think[0].startswith("Findings: ") and think[1].startswith(
            f"Leading option: {rec['answer']}) fits: "
        )
        options = sorted(rec["meta"]["options"])
        assert [line[0] for line in think[2:7]] == options
        for k, line in zip(
            options, think[2:7], strict=True
        ):  # the answer's line is the leading line word for word
            assert (
                line == think[1].removeprefix("Leading option: ")
                if k == rec["answer"]
                else "less likely: " in line
            )
        assert think[7] == f"So the answer is {rec['answer']})."


def test_boxed_trace_needs_a_kg_condition(vignettes):
    rec = json.loads(json.dumps(vignettes[0]))
    rec["meta"].pop("condition_id")
    assert boxed_trace(rec) is None


def test_score_response_by_hand(vignettes):
    rec = vignettes[0]
    gold, wrong = rec["answer"], next(k for k in rec["meta"]["options"] if k != rec["answer"])
    good = score_response(rec, boxed_trace(rec))
    assert good["accuracy"] == 1.0 and good["format_ok"] == 1.0 and good["rejection_coverage"] == 1.0
    assert (
        good["evidence"] == 1.0 and good["hallucination_rate"] == 0.0 and good["evidence_per_100_words"] > 0
    )
    lazy = score_response(
        rec, f"<think>Hmm.</think><answer>Wait, let me reconsider. \\boxed{{{wrong}}}</answer>"
    )
    assert lazy["accuracy"] == 0.0 and lazy["format_ok"] == 1.0 and lazy["rejection_coverage"] == 0.0
    assert (
        lazy["evidence"] == 0.0 and lazy["backtracks"] == 0.0
    )  # backtracking is counted in the reasoning only
    assert score_response(rec, f"\\boxed{{{gold}}} \\boxed{{{gold}}}")["accuracy"] == 0.0  # two boxes


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    """One `medrl clinical train` run on the tiny recipe, shared by the CLI tests below."""
    from app.cli import main

    out = tmp_path_factory.mktemp("clinical") / "pipe"
    rc = main(["clinical", "train", "--out", str(out), "--steps", "1", *TINY])
    assert rc == 0
    return out


def test_train_chains_sft_into_crpo(trained):
    sft, crpo = trained / "sft", trained / "crpo"
    assert (sft / "adapter" / "adapter_model.safetensors").is_file()
    assert (crpo / "adapter" / "adapter_model.safetensors").is_file()
    cfg = yaml.safe_load((crpo / "config.yaml").read_text())
    assert cfg["model"]["adapter"] == str(sft / "adapter") and cfg["reference"]["kind"] == "start"
    assert cfg["advantages"]["aggregation"] == "normalize_then_sum" and len(cfg["rewards"]) == 5
    assert cfg["data"]["train"] == str(trained / "data" / "train.jsonl")
    traces = read_jsonl(trained / "data" / "sft_traces.jsonl", "sft").records
    assert traces and "\\boxed{" in traces[0]["messages"][-1]["content"]
    metrics = json.loads((crpo / "eval" / "metrics.json").read_text())
    n_test = len(read_jsonl(trained / "data" / "test.jsonl", "rl").records)
    assert (
        metrics["n"] == min(2, n_test) >= 1
        and "vignettes" in metrics["by_source"]
        and 0 <= metrics["accuracy"] <= 1
    )
    rows = list(csv.DictReader(open(crpo / "eval" / "predictions.csv", encoding="utf-8")))
    assert len(rows) == metrics["n"] and {"gold", "boxed", "response", "rejection_coverage"} <= set(rows[0])


def test_eval_cli_and_rerun_skips_finished_stages(trained, cli, capsys):
    test = trained / "data" / "test.jsonl"
    assert (
        cli(
            "clinical",
            "eval",
            trained / "sft",
            "--data",
            test,
            "--limit",
            1,
            "--max-new-tokens",
            4,
            "--tag",
            "quick",
            "--json",
        )
        == 0
    )
    m = json.loads(capsys.readouterr().out)
    assert m["n"] == 1 and m["max_new_tokens"] == 4 and (trained / "sft" / "eval" / "quick.json").is_file()
    assert cli("clinical", "train", "--out", trained, "--no-eval", *TINY) == 0
    assert capsys.readouterr().out.count("already finished") == 2


def test_ablate_arms_share_the_start(trained, cli, capsys):
    """Both arms start from the pipeline's SFT adapter (reused, not retrained) with the same budget."""
    assert (
        cli("clinical", "ablate", "--out", trained, "--seeds", "0", "--steps", "1", "--limit", "1", *TINY)
        == 0
    )
    table = capsys.readouterr().out
    assert "| grpo | 1 |" in table and "| crpo | 1 |" in table and "| start (sft) | 1 |" in table
    result = json.loads((trained / "ablation.json").read_text())
    assert [r["arm"] for r in result["runs"]] == ["start (sft)", "grpo", "crpo"]
    assert "| truncated |" in table and all(0.0 <= r["truncated"] <= 1.0 for r in result["runs"])
    grpo = yaml.safe_load((trained / "grpo_s0" / "config.yaml").read_text())
    crpo = yaml.safe_load((trained / "crpo_s0" / "config.yaml").read_text())
    assert set(grpo["rewards"]) == {"clinical_accuracy", "clinical_format", "clinical_language"}
    assert (
        grpo["advantages"]["aggregation"] == crpo["advantages"]["aggregation"] and len(crpo["rewards"]) == 5
    )
    assert grpo["model"]["adapter"] == crpo["model"]["adapter"] == str(trained / "sft" / "adapter")
    assert grpo["run"]["max_steps"] == crpo["run"]["max_steps"] == 1
    md = (trained / "ablation.md").read_text()
    assert md.startswith("GRPO vs CRPO") and "| crpo | CRPO rewards | grpo |" in md


def test_bad_recipe_and_stage_are_one_line_errors(tmp_path, cli, capsys):
    bad = tmp_path / "r.yaml"
    bad.write_text("trainer: sft\n")
    assert cli("clinical", "train", "--recipe", bad, "--out", tmp_path / "o") == 2
    assert "expected a 'pipeline:' section" in capsys.readouterr().err
    assert cli("clinical", "train", "--stages", "sft,dpo", "--out", tmp_path / "o") == 2
    assert "pipeline.stages" in capsys.readouterr().err
