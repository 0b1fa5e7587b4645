"""Synthetic lesions -> SFT records: valid for the trainers, and the target states the KG ground truth."""

from dermiq.records import sft_records
from dermiq.synthetic import generate_dataset
from knowledge_graph.io import load_builtin
from training.data import validate_record


def test_sft_records_validate_and_explain_the_ground_truth(tmp_path):
    kg = load_builtin("derm")
    rl = generate_dataset(tmp_path, ["melanoma", "psoriasis"], n_per_class=2, seed=3, kg=kg, progress=False)
    sft = sft_records(rl, kg)
    assert len(sft) == len(rl) == 4
    for r, s in zip(rl, sft):
        assert validate_record(r, "rl", tmp_path) is None
        assert validate_record(s, "sft", tmp_path) is None  # image paths resolve from the JSONL's folder
        assert set(s) == {"messages", "images"} and s["images"] == r["images"]
        user, assistant = s["messages"]
        assert user == r["prompt"][0] and [c["type"] for c in user["content"]] == ["image", "text"]
        assert assistant["role"] == "assistant"
        text = assistant["content"]
        assert text.startswith("Findings: ") and text.endswith(f"Most likely diagnosis: {r['answer']}.")
        for ids in r["meta"]["findings"].values():
            assert all(kg.label(i) in text for i in ids)
    assert {s["messages"][1]["content"].rsplit(": ", 1)[1] for s in sft} == {"melanoma.", "psoriasis."}
