"""`medrl clinical import`: each real format on small fixtures written here, with a malformed row of each kind."""

import json
import random
import re

import pytest

from app.cli import main
from clinical.data import import_data, split_lettered
from clinical.prompts import MULTI_NOTE, SYSTEM, build_prompt
from training.data.records import read_jsonl, validate_record
from training.errors import DataError


def _jsonl(path, rows):
    """Rows are dicts (written as JSON), str (written as is) or bytes (written raw: the non-UTF-8 row)."""
    with open(path, "wb") as f:
        for r in rows:
            f.write(
                (r if isinstance(r, bytes) else (r if isinstance(r, str) else json.dumps(r)).encode()) + b"\n"
            )
    return path


def _read(path):
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def _all(out):
    return {s: _read(out / f"{s}.jsonl") for s in ("train", "val", "test")}


MEDQA_GOOD = {
    "question": "A 23-year-old woman has dysuria and frequency. Which is the most likely organism?",
    "options": {
        "A": "Escherichia coli",
        "B": "Proteus",
        "C": "Klebsiella",
        "D": "Enterococcus",
        "E": "Staphylococcus saprophyticus",
    },
    "answer_idx": "A",
    "answer": "Escherichia coli",
    "meta_info": "step1",
}
MEDQA_4 = {
    "question": "Which drug reverses heparin?",
    "options": {"A": "Vitamin K", "B": "Protamine sulfate", "C": "Idarucizumab", "D": "Andexanet"},
    "answer_idx": "B",
    "answer": "Protamine sulfate",
    "meta_info": "step2&3",
}


def _medqa_rows():
    return [
        MEDQA_GOOD,
        MEDQA_4,
        {
            **MEDQA_4,
            "question": "Which drug reverses dabigatran?",
            "answer_idx": "F",
            "answer": "Idarucizumab",
        },
        '{"question": "broken", "options": {"A": "x"',
        {k: v for k, v in MEDQA_GOOD.items() if k != "question"},
        b'{"question": "caf\xe9 au lait", "options": {"A": "x", "B": "y"}, "answer_idx": "A"}',
        {
            **MEDQA_4,
            "question": "Which drug reverses warfarin?",
            "answer": "Protamine",
        },  # text is not option B
        {
            **MEDQA_GOOD,
            "question": "  a 23-YEAR-old woman has dysuria and frequency.  Which is the most likely organism?",
        },
        {**MEDQA_4, "question": "Which test monitors heparin?", "options": ["aPTT", "INR"]},
    ]


def test_medqa_records_and_every_kind_of_bad_row(tmp_path):
    src = _jsonl(tmp_path / "questions.jsonl", _medqa_rows())
    out = tmp_path / "out"
    s = import_data("medqa", src, out, val_frac=0.0, test_frac=0.0)
    assert s["splits"] == {"train": 2, "val": 0, "test": 0}
    assert s["skipped"] == {
        "answer_not_option": 2,
        "bad_field": 1,
        "bad_json": 1,
        "duplicate": 1,
        "missing_field": 1,
        "not_utf8": 1,
    }
    assert s["skipped_total"] == 7 and len(s["examples"]) == 5
    assert s["examples"][0] == f"{src}:3: field 'answer_idx': expected one of A, B, C, D, got 'F'"
    assert s["examples"][1].startswith(f"{src}:4: not valid JSON")
    assert s["examples"][2] == f"{src}:5: field 'question': expected a non-empty string, got nothing"
    assert s["examples"][3] == f"{src}:6: not UTF-8 (byte 0xe9 at column 18)"
    assert s["examples"][4].startswith(f"{src}:7: field 'answer': expected the text of option B")
    recs = _read(out / "train.jsonl")
    first = recs[0]
    assert validate_record(first, "rl", tmp_path) is None and len(read_jsonl(out / "train.jsonl", "rl")) == 2
    assert first["answer"] == "A" and first["images"] == []
    assert first["prompt"] == build_prompt(MEDQA_GOOD["question"], MEDQA_GOOD["options"])
    assert first["prompt"][0] == {"role": "system", "content": SYSTEM}
    user = first["prompt"][1]["content"]
    assert user.startswith(MEDQA_GOOD["question"] + "\n\nOptions:\nA) Escherichia coli\nB) Proteus\n")
    assert user.endswith(
        "E) Staphylococcus saprophyticus\n\nGive your final choice as one letter in \\boxed{}."
    )
    assert first["meta"] == {
        "options": MEDQA_GOOD["options"],
        "source": "medqa",
        "id": "questions:1",
        "subject": "step1",
        "case": MEDQA_GOOD["question"],
    }
    assert recs[1]["meta"]["options"] == MEDQA_4["options"] and recs[1]["answer"] == "B"


def test_declared_splits_by_file_name_and_test_first_dedup(tmp_path):
    folder = tmp_path / "US"
    folder.mkdir()
    _jsonl(folder / "train.jsonl", [MEDQA_GOOD, {**MEDQA_4, "question": "Q train only?"}])
    _jsonl(folder / "dev.jsonl", [{**MEDQA_4, "question": "Q dev?"}])
    _jsonl(folder / "test.jsonl", [MEDQA_GOOD])  # the same question as train row 1: it stays in test only
    (folder / "notes.txt").write_text("not data")
    s = import_data("medqa", folder, tmp_path / "out", val_frac=0.5, test_frac=0.4)
    assert s["fractions"] == {"val": 0.0, "test": 0.0}  # declared splits take no pooled rows
    assert s["splits"] == {"train": 1, "val": 1, "test": 1} and s["skipped"] == {"duplicate": 1}
    got = _all(tmp_path / "out")
    assert got["test"][0]["meta"]["id"] == "test:1" and got["val"][0]["meta"]["case"] == "Q dev?"
    assert got["train"][0]["meta"]["case"] == "Q train only?"


def test_pooled_split_is_seeded_deterministic_and_order_free(tmp_path):
    rows = [{**MEDQA_4, "question": f"Question number {i}?"} for i in range(200)]
    a = import_data(
        "medqa", _jsonl(tmp_path / "a.jsonl", rows), tmp_path / "a", val_frac=0.2, test_frac=0.1, seed=3
    )
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    b = import_data(
        "medqa", _jsonl(tmp_path / "b.jsonl", shuffled), tmp_path / "b", val_frac=0.2, test_frac=0.1, seed=3
    )
    import_data("medqa", tmp_path / "a.jsonl", tmp_path / "c", val_frac=0.2, test_frac=0.1, seed=4)
    assert a["splits"] == b["splits"] and sum(a["splits"].values()) == 200
    assert 25 <= a["splits"]["val"] <= 55 and 8 <= a["splits"]["test"] <= 35
    by_case = {s: {r["meta"]["case"] for r in recs} for s, recs in _all(tmp_path / "a").items()}
    assert by_case == {s: {r["meta"]["case"] for r in recs} for s, recs in _all(tmp_path / "b").items()}
    assert by_case != {s: {r["meta"]["case"] for r in recs} for s, recs in _all(tmp_path / "c").items()}
    again = import_data("medqa", tmp_path / "a.jsonl", tmp_path / "a2", val_frac=0.2, test_frac=0.1, seed=3)
    assert again["splits"] == a["splits"]
    assert (tmp_path / "a" / "train.jsonl").read_bytes() == (tmp_path / "a2" / "train.jsonl").read_bytes()


def test_medmcqa_letters_eval_only_rows_and_multi(tmp_path):
    base = {
        "question": "Drug of choice for absence seizures?",
        "opa": "Ethosuximide",
        "opb": "Phenytoin",
        "opc": "Carbamazepine",
        "opd": "Gabapentin",
        "subject_name": "Pharmacology",
        "topic_name": "CNS",
        "choice_type": "single",
        "exp": "Ethosuximide blocks T-type calcium channels.",
    }
    rows = [
        {**base, "id": "m1", "cop": 1},
        {**base, "id": "m2", "question": "Which is a loop diuretic?", "opd": "Furosemide", "cop": 4},
        {**base, "id": "m3", "question": "Which are antiepileptics?", "choice_type": "multi", "cop": 2},
        {k: v for k, v in {**base, "id": "m4", "question": "Test-split question?"}.items() if k != "exp"},
        {**base, "id": "m5", "question": "Broken key?", "cop": 5},
        {k: v for k, v in {**base, "id": "m6", "question": "No option C?", "cop": 1}.items() if k != "opc"},
        '{"id": "m7", "question": ',
        {**base, "id": "m8", "question": "Hugging Face style test row?", "cop": -1},
    ]
    s = import_data(
        "medmcqa", _jsonl(tmp_path / "train.json", rows), tmp_path / "out", val_frac=0, test_frac=0
    )
    assert s["eval_only"] == 2 and s["splits"] == {"train": 3, "val": 0, "test": 2}
    assert s["skipped"] == {"answer_not_option": 1, "bad_json": 1, "missing_field": 1}
    assert any(e.endswith(":5: field 'cop': expected 1-4, got 5") for e in s["examples"])
    assert any(
        e.endswith(":6: field 'opc': expected option C as a non-empty string, got nothing")
        for e in s["examples"]
    )
    got = _all(tmp_path / "out")
    train = {r["meta"]["id"]: r for r in got["train"]}
    assert train["m1"]["answer"] == "A" and train["m2"]["answer"] == "D" and train["m3"]["answer"] == "B"
    assert train["m1"]["meta"]["options"] == {
        "A": "Ethosuximide",
        "B": "Phenytoin",
        "C": "Carbamazepine",
        "D": "Gabapentin",
    }
    assert train["m1"]["meta"]["subject"] == "Pharmacology" and train["m1"]["meta"]["topic_name"] == "CNS"
    assert train["m1"]["meta"]["explanation"].startswith("Ethosuximide blocks")
    assert (
        MULTI_NOTE in train["m3"]["prompt"][1]["content"]
        and MULTI_NOTE not in train["m1"]["prompt"][1]["content"]
    )
    for r in got["test"]:
        assert (
            r["answer"] is None
            and r["meta"]["eval_only"] is True
            and validate_record(r, "rl", tmp_path) is None
        )
    assert {r["meta"]["id"] for r in got["test"]} == {"m4", "m8"}


PQA = {
    "pubid": 21645374,
    "question": "Do mitochondria play a role in remodelling lace plant leaves?",
    "context": {
        "contexts": ["Programmed cell death occurs in lace plant leaves.", "Mitochondria were imaged."],
        "labels": ["BACKGROUND", "RESULTS"],
        "meshes": ["Mitochondria", "Apoptosis"],
    },
    "long_answer": "Results show mitochondria are involved.",
    "final_decision": "yes",
}


def test_pubmedqa_both_layouts(tmp_path):
    labeled = [
        PQA,
        {**PQA, "pubid": 2, "question": "Is X better than Y?", "final_decision": "maybe"},
        {**PQA, "pubid": 3, "question": "Unclear label?", "final_decision": "perhaps"},
        {k: v for k, v in {**PQA, "pubid": 4, "question": "No context?"}.items() if k != "context"},
    ]
    s = import_data("pubmedqa", _jsonl(tmp_path / "pqa_labeled.jsonl", labeled), tmp_path / "a", 0, 0)
    assert s["splits"]["train"] == 2 and s["skipped"] == {"answer_not_option": 1, "missing_field": 1}
    rec = _all(tmp_path / "a")["train"][0]
    assert rec["answer"] == "A" and rec["meta"]["options"] == {"A": "yes", "B": "no", "C": "maybe"}
    case = rec["meta"]["case"]
    assert case == (
        "Abstract:\nBACKGROUND: Programmed cell death occurs in lace plant leaves.\n"
        "RESULTS: Mitochondria were imaged.\n\n"
        "Question: Do mitochondria play a role in remodelling lace plant leaves?"
    )
    assert rec["meta"]["id"] == "21645374" and rec["meta"]["mesh"] == ["Mitochondria", "Apoptosis"]
    assert rec["meta"]["explanation"] == PQA["long_answer"]
    assert rec["prompt"][1]["content"].startswith(case + "\n\nOptions:\nA) yes\nB) no\nC) maybe")
    ori = {
        "21645374": {
            "QUESTION": PQA["question"],
            "CONTEXTS": PQA["context"]["contexts"],
            "LABELS": ["BACKGROUND", "RESULTS"],
            "MESHES": ["Mitochondria"],
            "YEAR": "2011",
            "LONG_ANSWER": "Involved.",
            "final_decision": "no",
        },
        "16418930": {"QUESTION": "Broken entry?", "LABELS": [], "final_decision": "yes"},
        "9488747": {"QUESTION": "Another?", "CONTEXTS": ["Text."], "final_decision": "maybe"},
    }
    (tmp_path / "ori_pqal.json").write_text(json.dumps(ori, indent=1))
    s = import_data("pubmedqa", tmp_path / "ori_pqal.json", tmp_path / "b", 0, 0)
    assert s["splits"]["train"] == 2 and s["skipped"] == {"missing_field": 1}
    assert s["examples"] == [
        f"{tmp_path / 'ori_pqal.json'}:16418930: field 'CONTEXTS': expected a list of passages, got nothing"
    ]
    recs = {r["meta"]["id"]: r for r in _all(tmp_path / "b")["train"]}
    assert recs["21645374"]["answer"] == "B" and recs["21645374"]["meta"]["case"] == case
    assert (
        recs["9488747"]["meta"]["case"] == "Abstract:\nText.\n\nQuestion: Another?"
        and recs["9488747"]["answer"] == "C"
    )


def test_medxpertqa_options_inside_the_text(tmp_path):
    q = (
        "A 45-year-old man has sudden painful visual loss and a fixed mid-dilated pupil. What is the next step? "
        "Answer Choices: (A) Topical timolol (B) Observation (C) MRI brain (D) Lumbar puncture (E) Laser iridotomy "
        "(F) Oral aspirin (G) Warm compresses (H) Topical steroids (I) Vitamin A (J) Referral in a month"
    )
    rows = [
        {
            "id": "Text-1",
            "question": q,
            "label": "A",
            "medical_task": "Treatment",
            "body_system": "Nervous",
            "question_type": "Reasoning",
        },
        {
            "id": "Text-2",
            "question": "Which nerve? (A) Ulnar (B) Median",
            "options": {"A": "Ulnar", "B": "Median"},
            "label": "B",
        },
        {"id": "Text-3", "question": q, "label": "K"},
        {"id": "Text-4", "question": "A question with no options at all?", "label": "A"},
        {"id": "Text-5", "question": q},
    ]
    s = import_data("medxpertqa", _jsonl(tmp_path / "test.jsonl", rows), tmp_path / "out")
    assert s["splits"] == {"train": 0, "val": 0, "test": 2}  # 'test.jsonl' declares its split
    assert s["skipped"] == {"answer_not_option": 1, "bad_field": 1, "missing_field": 1}
    recs = {r["meta"]["id"]: r for r in _all(tmp_path / "out")["test"]}
    r = recs["Text-1"]
    assert r["meta"]["case"] == q.split(" Answer Choices:")[0] and r["answer"] == "A"
    assert len(r["meta"]["options"]) == 10 and r["meta"]["options"]["J"] == "Referral in a month"
    assert r["meta"]["subject"] == "Nervous" and r["meta"]["medical_task"] == "Treatment"
    assert recs["Text-2"]["meta"]["case"] == "Which nerve?" and recs["Text-2"]["answer"] == "B"
    assert split_lettered("Stem (A) one (B) two") == ("Stem", {"A": "one", "B": "two"})
    assert split_lettered("Stem (B) one (A) two")[1] == {"A": "two"}  # one option: the row is then rejected


def test_vignette_bank_is_the_embedded_default(tmp_path):
    s = import_data("vignettes", "embedded", tmp_path / "a", seed=1, n=40)
    assert sum(s["splits"].values()) + s["skipped"].get("duplicate", 0) == 40 and s["skipped_total"] == 0
    recs = [r for rs in _all(tmp_path / "a").values() for r in rs]
    for r in recs:
        m = r["meta"]
        assert validate_record(r, "rl", tmp_path) is None and m["source"] == "vignettes"
        assert m["options"][r["answer"]] == m["answer_text"] and m["condition_id"].startswith("condition:")
        assert set(m["findings"]) == set(m["finding_ids"]) == {"history", "exam", "labs"}
        assert m["case"].endswith("most likely diagnosis?") and m["id"].startswith("vignette-1-")
        assert isinstance(m["subject"], str) and m["subject"]
        assert r["prompt"][1]["content"].startswith(m["case"] + "\n\nOptions:\nA) ")
    import_data("vignettes", "embedded", tmp_path / "b", seed=1, n=40)
    assert (tmp_path / "a" / "train.jsonl").read_bytes() == (tmp_path / "b" / "train.jsonl").read_bytes()
    assert main(["clinical", "synth", "--out", str(tmp_path / "bank.jsonl"), "--n", "6", "--seed", "2"]) == 0
    s = import_data("vignettes", tmp_path / "bank.jsonl", tmp_path / "c", val_frac=0, test_frac=0)
    assert s["splits"]["train"] == 6 and all(
        "finding_ids" in r["meta"] for r in _read(tmp_path / "c" / "train.jsonl")
    )


def test_cli_table_json_and_errors(tmp_path, capsys):
    src = _jsonl(tmp_path / "q.jsonl", _medqa_rows())
    out = tmp_path / "out"
    assert main(["clinical", "import", "medqa", str(src), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["skipped_total"] == 7 and sum(summary["splits"].values()) == 2
    assert summary["files"]["train"] == str(out / "train.jsonl")
    assert (
        main(
            [
                "clinical",
                "import",
                "medqa",
                str(src),
                "--out",
                str(out),
                "--val-frac",
                "0",
                "--test-frac",
                "0",
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert (
        re.search(r"(?m)^train +2$", table)
        and "not_utf8" in table
        and f"e.g. {src}:3: field 'answer_idx'" in table
    )
    before = (out / "train.jsonl").read_bytes()
    bad = _jsonl(tmp_path / "bad.jsonl", ['{"oops"', {"question": "no options"}])
    assert main(["clinical", "import", "medqa", str(bad), "--out", str(out)]) == 2
    assert "no usable medqa rows (first problem: " in capsys.readouterr().err
    assert (out / "train.jsonl").read_bytes() == before  # a failed import leaves the last outputs alone
    assert sorted(p.name for p in out.iterdir()) == [
        "test.jsonl",
        "train.jsonl",
        "val.jsonl",
    ]  # no temporaries
    assert main(["clinical", "import", "medqa", "--out", str(out)]) == 2
    assert (
        main(
            [
                "clinical",
                "import",
                "medqa",
                str(src),
                "--out",
                str(out),
                "--val-frac",
                "0.7",
                "--test-frac",
                "0.5",
            ]
        )
        == 2
    )
    assert main(["clinical", "import", "medqa", str(tmp_path / "missing.jsonl"), "--out", str(out)]) == 2
    assert main(["clinical", "import", "vignettes", "--out", str(tmp_path / "v"), "--n", "5"]) == 0


@pytest.mark.parametrize(
    "bad,message",
    [
        (b"[1, 2", "ori_pqal.json: not valid JSON"),
        (b'{"a": 1}\n\xff\xfe', "ori_pqal.json: no usable pubmedqa rows"),
        (b'[{"QUESTION": "caf\xe9"}]', "ori_pqal.json: not UTF-8"),
    ],
)
def test_a_broken_json_document_names_the_file(tmp_path, bad, message):
    (tmp_path / "ori_pqal.json").write_bytes(bad)
    with pytest.raises(DataError, match=message):
        import_data("pubmedqa", tmp_path / "ori_pqal.json", tmp_path / "out")
