"""MedQA-format vignettes from the clinical KG."""

import json

import pytest

from app.cli import main
from clinical.synthetic import generate_vignettes
from knowledge_graph.io import load_builtin


@pytest.fixture(scope="module")
def kg():
    return load_builtin("clinical")


def test_vignette_format_and_truth(kg):
    recs = generate_vignettes(60, seed=3, kg=kg)
    assert len(recs) == 60
    assert len({r["condition_id"] for r in recs}) == min(60, len(kg.conditions()))  # balanced cycling
    for r in recs:
        assert set(r["options"]) == set("ABCDE") and len(set(r["options"].values())) == 5
        assert r["options"][r["answer_idx"]] == r["answer"] == kg.label(r["condition_id"])
        assert r["meta_info"] == "synthetic" and r["question"].endswith("most likely diagnosis?")
        assert set(r["findings"]) == {"history", "exam", "labs"} and r["findings"]["history"]
        feats = kg.feature_ids(r["condition_id"])
        for section, ids in r["finding_ids"].items():
            assert set(ids) <= feats
            assert len(ids) == len(r["findings"][section])
        for text in r["findings"]["labs"]:
            assert text in r["question"]
        ddx = {kg.label(c) for c in kg.differential(r["condition_id"])}
        wrong = set(r["options"].values()) - {r["answer"]}
        assert wrong & ddx or not ddx


def test_deterministic_and_seed_dependent(kg):
    assert generate_vignettes(5, seed=1, kg=kg) == generate_vignettes(5, seed=1, kg=kg)
    assert generate_vignettes(5, seed=1, kg=kg) != generate_vignettes(5, seed=2, kg=kg)


def test_lab_values_appear(kg):
    recs = generate_vignettes(len(kg.conditions()), seed=0, kg=kg)
    stemi = next(r for r in recs if r["condition_id"] == "condition:stemi")
    assert "troponin I 2.1 ng/mL" in stemi["question"] or "ST elevation" in stemi["question"]


def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "v.jsonl"
    assert main(["clinical", "synth", "--out", str(out), "--n", "7", "--seed", "2"]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 7 and all(r["answer_idx"] in "ABCDE" for r in rows)
    assert main(["clinical", "synth", "--out", str(out), "--n", "0"]) == 2
