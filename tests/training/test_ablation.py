"""The ablation summary (`training.trainers.ablation.AblationTable`): per-arm means and standard deviations across
seeds, paired differences with their 95% interval against scipy's paired t-test, the markdown table, and the three
files on disk."""

import csv
import json

import pytest
from scipy import stats

from training.trainers.ablation import AblationTable, Arm, paired_interval

TABLE = AblationTable("arms from {start}, seeds {seeds}", ("acc", "reward"), ("acc",))
ARMS = [Arm("a"), Arm("b", changes="lr x2")]
RUNS = [
    {"arm": "start", "seed": 0, "acc": 0.25, "reward": None},
    {"arm": "a", "seed": 0, "acc": 0.5, "reward": 1.0},
    {"arm": "b", "seed": 0, "acc": 0.75, "reward": 2.0},
    {"arm": "a", "seed": 1, "acc": 1.0, "reward": None},
    {"arm": "b", "seed": 1, "acc": 0.25, "reward": 4.0},
]


def test_means_stds_and_paired_differences_across_seeds():
    start, a, b = TABLE.summarise(RUNS, ARMS)
    assert start["arm"] == "start" and start["versus"] is None and start["seeds"] == 1
    assert start["acc"] == 0.25 and start["acc_std"] is None and start["reward"] is None
    assert a["seeds"] == 2 and a["acc"] == pytest.approx(0.75) and a["acc_std"] == pytest.approx(0.5 / 2**0.5)
    assert a["versus"] is None  # the first arm is the one the others are compared with
    assert a["reward"] == 1.0 and a["reward_std"] is None  # a run without the measure is left out of its mean
    assert b["versus"] == "a" and b["changes"] == "lr x2"
    want = stats.ttest_rel([0.75, 0.25], [0.5, 1.0]).confidence_interval(0.95)
    assert b["acc_diff"] == pytest.approx(-0.25)
    assert (b["acc_diff_low"], b["acc_diff_high"]) == pytest.approx((want.low, want.high))
    assert b["reward_diff"] == pytest.approx(1.0) and b["reward_diff_low"] is None  # one pair: no interval


@pytest.mark.parametrize("n", [3, 5, 8])
def test_paired_interval_is_scipys_paired_t_interval(n):
    gen = __import__("random").Random(n)
    x = [gen.random() for _ in range(n)]
    y = [v + gen.gauss(0.1, 0.2) for v in x]
    mean, low, high = paired_interval([b - a for a, b in zip(x, y)])
    ci = stats.ttest_rel(y, x).confidence_interval(0.95)
    assert (low, high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert mean == pytest.approx(sum(y) / n - sum(x) / n)
    assert paired_interval([]) == (None, None, None)


def test_markdown_shows_mean_and_std_then_differences_then_every_run():
    result = {"start": "s/adapter", "seeds": [0, 1], "mean": TABLE.summarise(RUNS, ARMS), "runs": RUNS}
    lines = TABLE.markdown(result).splitlines()
    assert lines[0] == "arms from s/adapter, seeds [0, 1]" and lines[2] == "| arm | seeds | acc |"
    assert lines[4:7] == ["| start | 1 | 0.250 |", "| a | 2 | 0.750 ± 0.354 |", "| b | 2 | 0.500 ± 0.354 |"]
    ci = stats.ttest_rel([0.75, 0.25], [0.5, 1.0]).confidence_interval(0.95)
    assert "| b | lr x2 | a | -0.250 " + f"[{ci.low:+.3f}, {ci.high:+.3f}] |" in lines  # holds 0: no star
    i = lines.index("| arm | seed | acc |")
    assert lines[i + 2 :] == [
        "| start | 0 | 0.250 |",
        "| a | 0 | 0.500 |",
        "| b | 0 | 0.750 |",
        "| a | 1 | 1.000 |",
        "| b | 1 | 0.250 |",
    ]


def test_a_difference_outside_the_noise_is_starred():
    runs = [
        {"arm": arm, "seed": s, "acc": v}
        for s in range(3)
        for arm, v in (("a", 0.5 + s / 100), ("b", 0.7 + s / 90))
    ]
    table = AblationTable("t", ("acc",), ("acc",))
    md = table.markdown({"mean": table.summarise(runs, [Arm("a"), Arm("b", changes="x")]), "runs": runs})
    assert any(line.startswith("| b | x | a | +0.2") and line.endswith("]* |") for line in md.splitlines())


def test_written_as_json_csv_and_markdown(tmp_path):
    result = TABLE.write(tmp_path, {"start": "s", "seeds": [0, 1]}, RUNS, ARMS)
    assert list(result) == ["start", "seeds", "mean", "runs"]
    assert json.loads((tmp_path / "ablation.json").read_text()) == result
    with open(tmp_path / "ablation.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:6] == ["arm", "changes", "versus", "seeds", "acc", "acc_std"]
    assert "acc_diff_low" in rows[0] and "reward_diff_high" in rows[0]
    assert [r["arm"] for r in rows] == ["start", "a", "b"] and float(rows[1]["acc"]) == pytest.approx(0.75)
    assert rows[0]["reward"] == ""  # no value
    assert (tmp_path / "ablation.md").read_text() == TABLE.markdown(result) + "\n"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind
