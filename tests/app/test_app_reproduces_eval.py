"""The app answers the way each run was evaluated: for every stage of the quick demo, the app's inference path
(`tab_derm.ask` / `tab_clinical.ask`: task card prompt and length, the inference service) over the held-out split
gives the same responses, predictions and accuracy as the run's own evaluation (`medrl dermiq eval`,
`medrl clinical eval`). Before the task card the app scored 0.14 where the evaluation said 0.83."""

import pytest

pytestmark = pytest.mark.slow  # the quick demo, then every stage answered again through the app (~2 min)


@pytest.fixture(scope="module")
def demo(quick_demo):
    return quick_demo


@pytest.mark.parametrize(
    "kind,runs,tag",
    [
        ("dermiq", ["dermiq/warmup", "dermiq/grpopp", "dermiq/sft", "dermiq/dpo"], "metrics"),
        ("clinical", ["clinical/sft", "clinical/grpo_s0", "clinical/crpo_s0"], "ablation"),
    ],
)
def test_app_inference_reproduces_the_run_evaluation(demo, kind, runs, tag, tmp_path):
    import json

    from app.context import AppContext
    from app.reproduce import compare

    ctx = AppContext(demo, scratch=tmp_path)
    data = demo / kind / "data" / "test.jsonl"
    for run in runs:
        r = compare(ctx, run, data, tag)
        assert r["kind"] == kind and r["n"] >= 1
        assert r["same_response"] == r["n"], r  # word for word: same prompt, same length, same model
        assert r["same_prediction"] == r["n"] and r["app_accuracy"] == pytest.approx(r["eval_accuracy"]), r
        card = json.loads((demo / run / "task.json").read_text())
        metrics = json.loads((demo / run / "eval" / f"{tag}.json").read_text())
        assert metrics["max_new_tokens"] == card["max_new_tokens"]  # the evaluation read the card's length
        assert card["image_side"] == (
            112 if kind == "dermiq" else None
        )  # the app renders samples at this side
