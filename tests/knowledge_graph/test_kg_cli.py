"""`medrl kg stats` / `medrl kg check` through the real argument parser (and once as a fresh process)."""

import re
import subprocess
import sys
from pathlib import Path

from app.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_kg_stats_counts(capsys):
    assert main(["kg", "stats"]) == 0
    out = capsys.readouterr().out
    assert "KG dermatology" in out
    assert re.search(r"^  condition\s+121$", out, re.M) and "has_feature" in out and "alias_of" in out
    m = re.search(r"^specific citations: (\d+)/(\d+) edges", out, re.M)
    assert m and int(m.group(1)) >= 0.95 * int(m.group(2))  # guideline id + title or textbook chapter
    assert main(["kg", "stats", "--kg", "clinical"]) == 0
    out = capsys.readouterr().out
    assert "lab_finding" in out and "treated_by" in out


def test_kg_check_ok_and_error(tmp_path, capsys):
    good = tmp_path / "mine.csv"
    good.write_text("head,relation,tail,source\ncondition:x,has_feature,colour:red,notes\n")
    assert main(["kg", "check", str(good)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK {good}") and re.search(r"^  condition\s+1$", out, re.M)
    bad = tmp_path / "bad.csv"
    bad.write_text("condition:x,has_feature,colour:red,notes\ncondition:x,has_feat,colour:red,notes\n")
    assert main(["kg", "check", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medrl: error: bad.csv row 2: unknown relation 'has_feat'") and "\n" not in err
    assert main(["kg", "check", str(tmp_path / "missing.json")]) == 2
    assert main(["kg", "stats", "--kg", str(good), "--extend"]) == 0
    assert re.search(r"^  condition\s+122$", capsys.readouterr().out, re.M)


def test_kg_stats_fresh_process():
    r = subprocess.run(
        [sys.executable, "-m", "app.cli", "kg", "stats", "--kg", "clinical"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "KG clinical" in r.stdout


def test_kg_claims_and_score(tmp_path, capsys):
    import json

    assert (
        main(
            [
                "kg",
                "claims",
                "--kg",
                "clinical",
                "--condition",
                "pulmonary embolism",
                "No fever, cough, or haemoptysis.",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "diagnosis: none" in out and re.search(r"symptom:haemoptysis\s+absent\s+unverifiable", out)
    assert (
        main(
            [
                "kg",
                "claims",
                "--kg",
                "derm",
                "--condition",
                "melanoma",
                "--json",
                "Melanoma cannot be ruled out.",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["claims"][0]["node_id"] == "condition:melanoma" and data["claims"][0]["polarity"] == "hedged"
    case = tmp_path / "case.json"
    case.write_text(json.dumps({"findings": {"border": ["border:rolled"]}}))
    assert (
        main(
            [
                "kg",
                "score",
                "--kg",
                "derm",
                "--condition",
                "bcc",
                "--case",
                str(case),
                "--json",
                "Rolled border: BCC.",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["correct"] and data["coverage"] == 1.0 and data["parts"]["diagnosis"] == 8.0
    assert main(["kg", "score", "--kg", "derm", "--condition", "melanoma", "Melanocytic nevus."]) == 0
    assert re.search(r"^score: -2\.0 .*safe: False", capsys.readouterr().out, re.M)
    assert main(["kg", "score", "--kg", "derm", "--condition", "not a disease", "x"]) == 2
    assert "'not a disease' is not a known condition" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert main(["kg", "claims", "--condition", "melanoma", "--case", str(bad), "x"]) == 2
    assert capsys.readouterr().err.startswith("medrl: error: bad.json: expected an object")
