"""`medrl kg audit`: a clinician reviews a DPO pair file pair by pair (axes, deciding sentences), as text and HTML."""

import json
from collections import Counter

import pytest

from knowledge_graph.audit import audit, find_pairs
from knowledge_graph.errors import KGError
from knowledge_graph.io import load_builtin
from knowledge_graph.preference import abstention_summary, build_pairs, write_dpo_jsonl

ANSWERS = [
    "Most likely melanoma, less likely a naevus; excision biopsy.",
    "Naevus; reassure.",
    "<answer>blue rubber bleb</answer>",
]


@pytest.fixture()
def run(tmp_path):
    stats = Counter()
    pairs = build_pairs(
        [{"role": "user", "content": "Diagnose."}],
        ANSWERS,
        load_builtin("derm"),
        "melanoma",
        stats=stats,
        max_pairs=None,
    )
    write_dpo_jsonl(pairs, tmp_path / "run" / "data" / "dpo_pairs.jsonl")
    (tmp_path / "run" / "data" / "dpo_pairs.summary.json").write_text(json.dumps(abstention_summary(stats)))
    return tmp_path / "run", pairs, stats


def test_audit_prints_axes_and_the_sentences_that_decided(run, tmp_path):
    folder, pairs, stats = run
    assert len(pairs) == 1 and pairs[0]["meta"]["decided_by"] == ["diagnosis", "management", "safety"]
    assert stats["abstained"] == 2  # an answer naming nothing the KG knows
    text = audit(folder, tmp_path / "audit.html")
    assert "judge abstained on 2" in text and "decided by: diagnosis, management, safety" in text
    assert "CHOSEN   diagnosis=exact  management=indicated  safety=named" in text
    assert "REJECTED diagnosis=missed  management=harmful  safety=missed" in text
    assert '"Most likely melanoma, less likely a naevus"' in text
    assert "treatment:reassurance (present): contradicted - reassurance delays" in text
    page = (tmp_path / "audit.html").read_text()
    assert "<h2>Pair 1: condition:melanoma</h2>" in page and "Research use only" in page


def test_audit_errors_name_the_file(tmp_path):
    with pytest.raises(KGError, match="no dpo_pairs.jsonl"):
        find_pairs(tmp_path)
    bad = tmp_path / "dpo_pairs.jsonl"
    bad.write_text('{"prompt": "x"}\n')
    with pytest.raises(KGError, match="dpo_pairs.jsonl line 1: expected a DPO record"):
        audit(bad)
