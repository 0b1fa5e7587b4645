"""The clinicians' feedback store (`app.feedback`) and its export (`app.feedback_export`): verdicts checked, one row
per reviewer and pair, 20 concurrent reviewers without a lost or doubled row, a killed writer losing nothing it
acknowledged, the export's decisions and provenance, the agreement figures, and a DPO run on exported pairs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.feedback import FeedbackError, FeedbackStore
from app.feedback_export import decide, export_pairs

PROMPT = [
    {"role": "user", "content": "Which condition fits: a changing pigmented lesion with irregular border?"}
]


def pair(store, reviewer, line, verdict, source="pairs.jsonl", condition="melanoma", **kw):
    return store.add(
        reviewer=reviewer,
        kind="pair",
        source=source,
        line=line,
        verdict=verdict,
        prompt=PROMPT,
        chosen=f"chosen {line}",
        rejected=f"rejected {line}",
        condition=condition,
        **kw,
    )


def test_verdicts_are_checked_and_a_reviewer_has_one_row_per_pair(tmp_path):
    store = FeedbackStore(tmp_path / "f.sqlite")
    with pytest.raises(
        FeedbackError, match="verdict: expected one of keep, swap, reject for a pair, got 'maybe'"
    ):
        pair(store, "ana", 1, "maybe")
    with pytest.raises(FeedbackError, match="reviewer: expected a name"):
        pair(store, "  ", 1, "keep")
    pair(store, "ana", 1, "keep")
    pair(store, "ana", 1, "swap", reason="the rejected answer names the ABCDE signs")  # she changed her mind
    pair(store, "ben", 1, "keep")
    rows = store.rows("pair")
    assert [(r["reviewer"], r["verdict"]) for r in rows] == [("ana", "swap"), ("ben", "keep")]
    assert rows[0]["reason"] == "the rejected answer names the ABCDE signs" and rows[0]["prompt"] == PROMPT


def test_twenty_concurrent_reviewers_lose_and_double_nothing(tmp_path):
    store = FeedbackStore(tmp_path / "f.sqlite")

    def review(i: int) -> list[int]:
        return [pair(FeedbackStore(store.path), f"reviewer{i}", line, "keep") for line in range(25)]

    with ThreadPoolExecutor(20) as pool:
        ids = [x for chunk in pool.map(review, range(20)) for x in chunk]
    rows = store.rows()
    assert len(rows) == len(ids) == 500 and len({r["id"] for r in rows}) == 500
    assert {(r["reviewer"], r["line"]) for r in rows} == {
        (f"reviewer{i}", n) for i in range(20) for n in range(25)
    }


WRITER = """
import sys
from app.feedback import FeedbackStore
store = FeedbackStore(sys.argv[1])
for line in range(100000):
    store.add(reviewer="ana", kind="pair", source="p.jsonl", line=line, verdict="keep", prompt="q",
              chosen="a", rejected="b")
    print(line, flush=True)  # acknowledged: the verdict is committed
"""


def test_a_killed_app_keeps_every_verdict_it_acknowledged(tmp_path):
    db = tmp_path / "f.sqlite"
    FeedbackStore(db)
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    acknowledged = []
    deadline = time.monotonic() + 60
    while len(acknowledged) < 40 and time.monotonic() < deadline:
        acknowledged.append(int(proc.stdout.readline()))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stored = {r["line"] for r in FeedbackStore(db).rows()}
    assert len(acknowledged) == 40 and set(acknowledged) <= stored


def test_decide_needs_a_clear_majority_of_enough_reviewers():
    assert decide(["keep", "keep", "swap"], 1) == "keep"
    assert decide(["keep", "swap"], 1) is None  # a tie decides nothing
    assert decide(["swap", "swap"], 3) is None and decide(["swap", "swap", "swap"], 3) == "swap"


def test_export_applies_the_decisions_and_keeps_their_provenance(tmp_path):
    store = FeedbackStore(tmp_path / "f.sqlite")
    src = tmp_path / "pairs.jsonl"
    kg_pairs = [
        {
            "prompt": PROMPT,
            "chosen": [{"role": "assistant", "content": f"chosen {n}"}],
            "rejected": [{"role": "assistant", "content": f"rejected {n}"}],
            "images": [],
            "meta": {"margin": 1.0},
        }
        for n in range(1, 5)
    ]
    src.write_text("".join(json.dumps(p) + "\n" for p in kg_pairs))
    for who, line, verdict in [
        ("ana", 1, "keep"),
        ("ben", 1, "keep"),
        ("ana", 2, "swap"),
        ("ana", 3, "reject"),
    ]:
        pair(store, who, line, verdict, source=str(src))
    store.add(
        reviewer="ana",
        kind="answer",
        source="app:derm",
        line=0,
        verdict="wrong",
        prompt=PROMPT,
        rejected="It is a seborrheic keratosis.",
        correction="Melanoma must be excluded: refer for excision.",
        adapter="runs/demo/dpo/adapter",
    )
    clinician, counts = export_pairs(store, "clinician")
    got = [
        (p["chosen"][0]["content"], p["rejected"][0]["content"], p["meta"]["feedback"]["from"])
        for p in clinician
    ]
    assert got == [
        ("chosen 1", "rejected 1", "clinician"),
        ("rejected 2", "chosen 2", "clinician"),  # swapped
        ("Melanoma must be excluded: refer for excision.", "It is a seborrheic keratosis.", "correction"),
    ]  # line 3 was rejected: left out
    assert clinician[0]["meta"]["feedback"]["reviewers"] == ["ana", "ben"] and counts["decided reject"] == 1
    assert (
        len(export_pairs(store, "clinician", min_agreement=2)[0]) == 2
    )  # only line 1 had two reviewers, + the fix
    kg, _ = export_pairs(store, "kg")
    assert [p["chosen"][0]["content"] for p in kg] == ["chosen 1", "chosen 2", "chosen 3"]
    both, counts = export_pairs(store, "both")
    assert [p["chosen"][0]["content"] for p in both][:3] == ["chosen 1", "rejected 2", "chosen 4"]
    assert counts["kg (unreviewed)"] == 1 and both[2]["meta"]["margin"] == 1.0  # line 4 as the KG had it
    agreement = store.agreement()
    assert agreement["overall"] == {"keep": 2, "swap": 1, "reject": 1, "agreement": pytest.approx(2 / 3)}
    assert set(agreement["per_condition"]) == {"melanoma"}


@pytest.mark.slow
def test_a_dpo_run_trains_on_exported_clinician_pairs(tmp_path, cli, capsys):
    """End to end on the embedded default: verdicts -> `medrl feedback export` -> `medrl train dpo_qwen2_tiny`."""
    db = tmp_path / "f.sqlite"
    store = FeedbackStore(db)
    for line in range(1, 5):
        pair(store, "ana", line, "swap" if line % 2 else "keep")
    out = tmp_path / "clinician_pairs.jsonl"
    assert cli("feedback", "export", "--db", db, "--out", out) == 0
    assert "4 pairs ->" in capsys.readouterr().out
    assert cli("feedback", "stats", "--db", db) == 0
    assert "all pairs" in capsys.readouterr().out
    args = [f"--data.train={out}", f"--run.output_dir={tmp_path}", "--run.name=dpo", "--run.max_steps=2"]
    assert cli("train", "dpo_qwen2_tiny", *args, "--batch_size=2", "--grad_accum=1") == 0
    assert (tmp_path / "dpo" / "adapter" / "adapter_model.safetensors").is_file()
    rows = [json.loads(x) for x in (tmp_path / "dpo" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]


@pytest.mark.slow
def test_the_served_app_keeps_every_verdict_through_20_reviewers_and_a_kill(tmp_path):
    """`medrl app` in its own process: 20 reviewers submit verdicts on live answers at once through its API; every
    verdict the app acknowledged is in the store after the app is killed with SIGKILL."""
    import socket

    from gradio_client import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tmp_path / "runs"
    root.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "MEDRL_APP_AUTH"}
    env["PYTHONPATH"] = os.getcwd()
    app = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "app", "--runs", str(root), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=os.getcwd(),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        client = None
        while client is None and time.monotonic() < deadline:
            try:
                client = Client(url, verbose=False)
            except Exception:
                time.sleep(0.5)
        assert client is not None, "the app did not start"

        def review(i: int) -> list[str]:
            c = Client(url, verbose=False)
            said = []
            for n in range(5):
                result = {
                    "run": "p/lm",
                    "stage": "final",
                    "prompt": [{"role": "user", "content": f"case {i}-{n}"}],
                    "text": f"answer {i}-{n}",
                }
                said.append(
                    c.predict(result, f"reviewer{i}", f"fix {i}-{n}", api_name="/clinical_feedback_wrong")
                )
            return said

        with ThreadPoolExecutor(20) as pool:
            acknowledged = [x for chunk in pool.map(review, range(20)) for x in chunk]
    finally:
        os.kill(app.pid, signal.SIGKILL)
        app.wait()
    assert len(acknowledged) == 100 and all("Stored: wrong" in a for a in acknowledged)
    rows = FeedbackStore(root / "feedback.sqlite").rows("answer")
    assert len(rows) == 100 and {r["correction"] for r in rows} == {
        f"fix {i}-{n}" for i in range(20) for n in range(5)
    }
