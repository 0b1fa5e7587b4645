"""The evaluator base (`training.trainers.evaluation.Evaluation`) on real run folders: which adapter and answer length it
uses, its one-line errors, and the metrics and tables it writes under RUN/eval/. The model is a stand-in (the
policy loader returns a token the subclass answers from), so these are fast; the domains' end-to-end tests run it
on tiny models."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from training.errors import MedrlError
from training.run.rundir import ADAPTER_WEIGHTS, RunDir
from training.trainers.evaluation import Evaluation, fmt, metrics_lines, write_eval


def make_run(tmp_path, rollout: int | None = None, card_tokens: int | None = None, finished: bool = True):
    run = RunDir(tmp_path / "run")
    run.path.mkdir(parents=True)
    config = {"model": {"name": "embedded:qwen2", "adapter": "somewhere/else"}}
    if rollout:
        config["rollout"] = {"max_new_tokens": rollout}
    run.config_path.write_text(yaml.safe_dump(config))
    if finished:
        run.adapter_dir.mkdir()
        (run.adapter_dir / ADAPTER_WEIGHTS).write_bytes(b"w")
    if card_tokens is not None:
        card = {"prompt": [{"role": "user", "content": "q"}], "max_new_tokens": card_tokens}
        (run.path / "task.json").write_text(json.dumps(card))
    return run


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "test.jsonl"
    rows = [{"prompt": [{"role": "user", "content": f"q{i}"}], "answer": str(i % 2)} for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


class Echo(Evaluation):
    """Answers every question with 0; scores whether that is the answer."""

    default_max_new_tokens = 99

    def ask(self):
        return [{**r, "asked": True} for r in self.records]

    def respond(self, policy, asked):
        assert policy == "policy" and all(r["asked"] for r in asked)
        return ["0" for _ in asked]

    def score(self, asked, responses):
        rows = [
            {"i": i, "gold": r["answer"], "response": t} for i, (r, t) in enumerate(zip(asked, responses))
        ]
        return rows, {"n": len(rows), "accuracy": sum(r["gold"] == r["response"] for r in rows) / len(rows)}


@pytest.fixture
def stand_in_policy(monkeypatch):
    import training.models.loading

    loaded = []
    monkeypatch.setattr(
        training.models.loading,
        "load_policy",
        lambda cfg, adapter, trainable: loaded.append((cfg.name, cfg.adapter, adapter)) or "policy",
    )
    return loaded


def test_evaluation_writes_metrics_and_predictions(tmp_path, data, stand_in_policy):
    run = make_run(tmp_path)
    m = Echo(run.path, data, limit=2, tag="quick")()
    assert stand_in_policy == [
        ("embedded:qwen2", None, run.adapter_dir)
    ]  # the run's own adapter, not its config's
    assert list(m) == ["run", "adapter", "data", "max_new_tokens", "n", "accuracy", "seconds"]
    assert (
        m["n"] == 2
        and m["accuracy"] == 0.5
        and m["adapter"] == str(run.adapter_dir)
        and m["max_new_tokens"] == 99
    )
    assert json.loads((run.eval_dir / "quick.json").read_text()) == m
    with open(run.eval_dir / "quick_predictions.csv", newline="") as f:
        assert list(csv.DictReader(f)) == [
            {"i": "0", "gold": "0", "response": "0"},
            {"i": "1", "gold": "1", "response": "0"},
        ]


def test_answer_length_is_the_flag_then_the_card_then_the_rollout_then_the_default(tmp_path, data):
    assert (
        Echo(make_run(tmp_path / "a", rollout=40, card_tokens=30), data, max_new_tokens=7).max_new_tokens == 7
    )
    assert Echo(make_run(tmp_path / "b", rollout=40, card_tokens=30), data).max_new_tokens == 30
    assert Echo(make_run(tmp_path / "c", rollout=40), data).max_new_tokens == 40
    assert Echo(make_run(tmp_path / "d"), data).max_new_tokens == 99


def test_a_run_without_adapter_or_config_and_empty_data_are_one_line_errors(tmp_path, data):
    with pytest.raises(MedrlError, match="no adapter yet"):
        Echo(make_run(tmp_path / "a", finished=False).path, data)
    with pytest.raises(MedrlError, match="not a run folder"):
        Echo(tmp_path / "nothing", data)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(MedrlError, match="empty.jsonl: no usable rl records"):
        Echo(make_run(tmp_path / "b").path, empty)


def test_tables_and_files(tmp_path):
    m = {"n": 3, "data": "d.jsonl", "max_new_tokens": 8, "acc": 2 / 3, "auc": None}
    assert metrics_lines(m, "cases", ("acc", "auc"), 6) == [
        "3 cases from d.jsonl (greedy, max_new_tokens 8)",
        "acc   0.667",
        "auc   -",
    ]
    assert fmt(None) == "-" and fmt(0.5) == "0.500"
    write_eval(tmp_path / "eval", "metrics", m, [{"a": 1, "b": "x,y"}], predictions="predictions.csv")
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text()) == m
    assert (tmp_path / "eval" / "predictions.csv").read_bytes() == b'a,b\r\n1,"x,y"\r\n'
