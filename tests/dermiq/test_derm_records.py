"""Synthetic lesions -> SFT records: valid for the trainers, and the target is a DermIQ-format response that states
the KG ground truth and scores full marks on every reward."""

from dermiq.prompts import SECTIONS, parse_response
from dermiq.records import sft_records
from dermiq.rewards import accuracy, consistency_parts, format_reward
from dermiq.synthetic import generate_dataset
from knowledge_graph.io import load_builtin
from training.data.records import validate_record


def test_sft_records_validate_and_explain_the_ground_truth(tmp_path):
    kg = load_builtin("derm")
    rl = generate_dataset(tmp_path, ["melanoma", "psoriasis"], n_per_class=2, seed=3, kg=kg, progress=False)
    sft = sft_records(rl, kg)
    assert len(sft) == len(rl) == 4
    for r, s in zip(rl, sft):
        assert validate_record(r, "rl", tmp_path) is None
        assert validate_record(s, "sft", tmp_path) is None  # image paths resolve from the JSONL's folder
        assert set(s) == {"messages", "images"} and s["images"] == r["images"]
        system, user, assistant = s["messages"]
        assert [system, user] == r["prompt"] and [c["type"] for c in user["content"]] == ["image", "text"]
        assert assistant["role"] == "assistant"
        text = assistant["content"]
        parsed = parse_response(text)
        assert parsed.well_formed and list(parsed.sections) == list(SECTIONS) and parsed.answer == r["answer"]
        for ids in r["meta"]["findings"].values():
            assert all(kg.label(i) in parsed.think for i in ids)
        assert accuracy([r["prompt"]], [text], answer=[r["answer"]], meta=[r["meta"]]) == [7.0]
        assert format_reward([r["prompt"]], [text]) == [1.0]
        supported, contradicted, n = consistency_parts(text)
        # every finding read back is supported (a name inside another, 'irregular' in 'irregular border', reads once)
        assert (
            0 < n <= sum(len(v) for v in r["meta"]["findings"].values())
            and supported == n
            and contradicted == 0
        )
    assert {parse_response(s["messages"][2]["content"]).answer for s in sft} == {"melanoma", "psoriasis"}
