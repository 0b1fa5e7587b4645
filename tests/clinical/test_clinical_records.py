"""Synthetic vignettes -> SFT and RL records: valid for the trainers, one question, the right answer."""

from clinical.records import question, rl_records, sft_records
from clinical.synthetic import generate_vignettes
from training.data.records import validate_record


def test_sft_records_reason_then_answer(tmp_path):
    vignettes = generate_vignettes(6, seed=1)
    for v, s in zip(vignettes, sft_records(vignettes), strict=True):
        assert validate_record(s, "sft", tmp_path) is None
        assert s["images"] == []
        user, assistant = s["messages"]
        assert user == {"role": "user", "content": question(v)}
        assert user["content"].startswith(v["question"] + "\nA) ")
        assert all(f"\n{k}) {t}" in user["content"] for k, t in v["options"].items())
        text = assistant["content"]
        assert assistant["role"] == "assistant" and text.startswith("<think>Key findings: ")
        assert all(f in text for part in ("history", "exam", "labs") for f in v["findings"][part])
        assert text.endswith(f"</think>\n<answer>{v['answer_idx']}) {v['answer']}</answer>")


def test_rl_records_carry_the_letter_and_the_ground_truth(tmp_path):
    vignettes = generate_vignettes(6, seed=1)
    for v, r in zip(vignettes, rl_records(vignettes), strict=True):
        assert validate_record(r, "rl", tmp_path) is None
        assert r["prompt"] == [{"role": "user", "content": question(v)}] and r["images"] == []
        assert r["answer"] == v["answer_idx"] and r["meta"]["options"][r["answer"]] == v["answer"]
        assert r["meta"]["answer_text"] == v["answer"] and r["meta"]["condition_id"] == v["condition_id"]
        assert r["meta"]["finding_ids"] == v["finding_ids"] and r["meta"]["source"] == "synthetic"
