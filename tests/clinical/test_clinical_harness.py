"""lm-evaluation-harness tasks from `medrl clinical harness`, run by lm-eval itself against `medrl clinical eval`."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clinical.harness import UTILS, write_tasks
from clinical.rewards import accuracy_score
from training.errors import MedrlError


@pytest.mark.parametrize(
    "text",
    [
        r"<think>x</think><answer>so \boxed{B}</answer>",
        r"\boxed{B} and \boxed{B}",
        r"\boxed{ B }",
        r"\boxed{b}",
        r"\boxed{C}",
        r"\boxed{B. coeliac disease}",
        r"\boxed{B",
        "B",
        "",
    ],
)
def test_the_tasks_score_as_clinical_eval_does(text):
    """The tasks' utils.py (self-contained, so the folder runs without medrl) against the rule it copies."""
    ns: dict = {}
    exec(UTILS, ns)
    assert ns["process_results"]({"answer": "B"}, [text])["acc"] == float(accuracy_score(text, "B") == 1.0)


def _records(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path.write_text(
        "".join(
            json.dumps(
                {
                    "prompt": [
                        {"role": "system", "content": "Box one letter."},
                        {"role": "user", "content": q},
                    ],
                    "answer": a,
                    "meta": {"source": src, "id": f"{src}-{i}"},
                }
            )
            + "\n"
            for i, (q, a, src) in enumerate(rows)
        )
    )
    return path


def test_tasks_per_source_and_group(tmp_path):
    data = _records(
        tmp_path / "test.jsonl", [("Q1?", "A", "medqa"), ("Q2?", "B", "pubmedqa"), ("Q3?", "C", "medqa")]
    )
    done = write_tasks(tmp_path, tmp_path / "tasks", max_new_tokens=32)
    assert done["tasks"] == ["medrl_clinical_medqa", "medrl_clinical_pubmedqa"] and done["questions"] == 3
    docs = [
        json.loads(x) for x in (tmp_path / "tasks" / "medrl_clinical_medqa.jsonl").read_text().splitlines()
    ]
    assert [d["question"] for d in docs] == ["Q1?", "Q3?"] and docs[0]["answer"] == "A"
    assert docs[0]["system"]  # Clinical-R1's system turn when no run is named
    yaml_text = (tmp_path / "tasks" / "medrl_clinical_medqa.yaml").read_text()
    assert "max_gen_toks: 32" in yaml_text and "process_results: !function utils.process_results" in yaml_text
    assert "  - medrl_clinical_pubmedqa" in (tmp_path / "tasks" / "medrl_clinical.yaml").read_text()
    assert data.is_file()
    with pytest.raises(MedrlError, match="no task card"):
        write_tasks(tmp_path, tmp_path / "t2", run=tmp_path / "not_a_run")


@pytest.mark.slow
def test_lm_eval_on_the_tasks_equals_clinical_eval_on_the_same_items(cli, tmp_path):
    """A run taught to box a letter, evaluated on the same held-out vignettes (9 of them) by `medrl clinical eval` and by
    lm-evaluation-harness (its `hf` model with the PEFT adapter, the chat template, greedy) over the tasks written for
    the run: the same answer text on every item, and so the same accuracy."""
    data = tmp_path / "data"
    assert cli("clinical", "import", "vignettes", "embedded", "--out", data, "--n", "120") == 0
    train = [json.loads(x) for x in (data / "train.jsonl").read_text().splitlines()]
    sft = tmp_path / "sft.jsonl"
    sft.write_text(
        "".join(
            json.dumps(
                {"messages": [*r["prompt"], {"role": "assistant", "content": f"\\boxed{{{r['answer']}}}"}]}
            )
            + "\n"
            for r in train
        )
    )
    assert (
        cli(
            "train",
            "configs/sft_qwen2_tiny.yaml",
            f"--data.train={sft}",
            f"--run.output_dir={tmp_path}",
            "--run.name=box",
            "--run.max_steps=80",
            "--run.save_every=0",
            "--optim.lr=5e-3",
        )
        == 0
    )
    run = tmp_path / "box"
    tokens = 8
    assert cli("clinical", "eval", run, "--data", data / "test.jsonl", "--max-new-tokens", tokens) == 0
    ours = list(csv.DictReader((run / "eval" / "predictions.csv").open()))
    n = len(ours)
    done = write_tasks(data, tmp_path / "tasks", run=run, max_new_tokens=tokens)
    from training.models.embedded import resolve_model_path

    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    model_args = f"pretrained={resolve_model_path('embedded:qwen2')},peft={run / 'adapter'},dtype=float32"
    cmd = [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", model_args, "--device", "cpu"]
    cmd += ["--include_path", str(tmp_path / "tasks"), "--tasks", done["group"], "--apply_chat_template"]
    cmd += ["--batch_size", "1", "--log_samples", "--output_path", str(tmp_path / "lm")]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    samples = [
        json.loads(x)
        for f in sorted((tmp_path / "lm").rglob("samples_medrl_clinical_*.jsonl"))
        for x in f.read_text().splitlines()
    ]
    theirs = sorted(
        samples, key=lambda x: x["doc_id"]
    )  # one source: its task's documents in the file's order
    assert len(theirs) == n >= 8
    for row, sample in zip(ours, theirs):
        assert sample["doc"]["id"] == row["id"] and sample["doc"]["answer"] == row["gold"]
        assert sample["resps"][0][0] == row["response"], row["id"]
        assert sample["acc"] == float(row["accuracy"])
    accuracy = sum(float(r["accuracy"]) for r in ours) / n
    assert 0 < accuracy  # the run boxes letters, some of them right: the comparison is not 0 against 0
    result = json.loads(next((tmp_path / "lm").rglob("results_*.json")).read_text())
    assert result["results"][done["group"]]["acc,none"] == pytest.approx(accuracy)
