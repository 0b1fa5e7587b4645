"""The ablation summary (`training.trainers.ablation.AblationTable`): per-arm means and spreads across seeds by hand, the
markdown table with its intervals, and the three files on disk."""

import csv
import json

import pytest

from training.trainers.ablation import AblationTable

TABLE = AblationTable("arms from {start}, seeds {seeds}", ("acc", "reward"), ("acc",))
RUNS = [
    {"arm": "start", "seed": 0, "acc": 0.25, "reward": None},
    {"arm": "a", "seed": 0, "acc": 0.5, "reward": 1.0},
    {"arm": "b", "seed": 0, "acc": 0.75, "reward": 2.0},
    {"arm": "a", "seed": 1, "acc": 1.0, "reward": None},
    {"arm": "b", "seed": 1, "acc": 0.25, "reward": 4.0},
]


def test_means_and_spreads_across_seeds():
    start, a, b = TABLE.summarise(RUNS)
    assert start == {
        "arm": "start",
        "seeds": 1,
        "acc": 0.25,
        "acc_spread": 0.0,
        "reward": None,
        "reward_spread": None,
    }
    assert a["seeds"] == 2 and a["acc"] == pytest.approx(0.75) and a["acc_spread"] == pytest.approx(0.5)
    assert (
        a["reward"] == 1.0 and a["reward_spread"] == 0.0
    )  # a run without the measure is left out of its mean
    assert b["acc"] == pytest.approx(0.5) and b["reward"] == pytest.approx(3.0) and b["reward_spread"] == 2.0


def test_markdown_shows_mean_and_half_the_spread_then_every_run():
    result = {"start": "s/adapter", "seeds": [0, 1], "mean": TABLE.summarise(RUNS), "runs": RUNS}
    lines = TABLE.markdown(result).splitlines()
    assert lines[0] == "arms from s/adapter, seeds [0, 1]" and lines[2] == "| arm | seeds | acc |"
    assert lines[4:7] == ["| start | 1 | 0.250 |", "| a | 2 | 0.750 ± 0.250 |", "| b | 2 | 0.500 ± 0.250 |"]
    assert lines[8] == "| arm | seed | acc |" and lines[10:] == [
        "| start | 0 | 0.250 |",
        "| a | 0 | 0.500 |",
        "| b | 0 | 0.750 |",
        "| a | 1 | 1.000 |",
        "| b | 1 | 0.250 |",
    ]


def test_written_as_json_csv_and_markdown(tmp_path):
    result = TABLE.write(tmp_path, {"start": "s", "seeds": [0, 1]}, RUNS)
    assert list(result) == ["start", "seeds", "mean", "runs"]
    assert json.loads((tmp_path / "ablation.json").read_text()) == result
    with open(tmp_path / "ablation.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["arm", "seeds", "acc", "acc_spread", "reward", "reward_spread"]
    assert [r["arm"] for r in rows] == ["start", "a", "b"] and float(rows[1]["acc"]) == pytest.approx(0.75)
    assert rows[0]["reward"] == ""  # no value
    assert (tmp_path / "ablation.md").read_text() == TABLE.markdown(result) + "\n"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind
