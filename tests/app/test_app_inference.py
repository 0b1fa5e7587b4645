"""The inference service (cached, bounded, greedy) and the KG check of answers, without a browser."""

from app.inference import InferenceService, split_answer
from app.kgcheck import check
from app.runs import RunsReader

LESION = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the lesion."}]}]


def test_loads_once_per_run_and_stage_and_answers_greedily(app_ctx):
    from dermiq.synthetic import make_sample

    svc = app_ctx.service
    img, _ = make_sample(app_ctx.kg("derm"), "melanoma", 0, 0)
    a = svc.generate("demo/vlm", "final", LESION, [img], max_new_tokens=6)
    before = svc.loads
    b = svc.generate("demo/vlm", "final", LESION, [img], max_new_tokens=6)
    assert svc.loads == before and b.load_seconds == 0.0  # cached
    assert a.text == b.text and 1 <= a.new_tokens <= 6  # greedy: the same answer twice
    assert ("demo/vlm", "final") in svc.loaded()


def test_the_cache_is_bounded(app_runs):
    svc = InferenceService(RunsReader(app_runs), max_loaded=1)
    chat = [{"role": "user", "content": "Fever and cough. Diagnosis?"}]
    svc.generate("demo/lm", "final", chat, max_new_tokens=2)
    svc.generate("demo/lm", "step-2", chat, max_new_tokens=2)
    assert svc.loaded() == [("demo/lm", "step-2")] and svc.loads == 2
    svc.generate("demo/lm", "final", chat, max_new_tokens=2)
    assert svc.loads == 3  # evicted, so loaded again


def test_split_answer():
    assert split_answer("<think>fever</think><answer>B) pneumonia</answer>") == ("fever", "B) pneumonia")
    assert split_answer("Findings: brown macule. Most likely diagnosis: melanoma.") == (
        "Findings: brown macule.",
        "Most likely diagnosis: melanoma.",
    )
    assert split_answer("melanoma") == ("", "melanoma")


def test_claims_checked_against_the_reference(app_ctx):
    kg = app_ctx.kg("derm")
    res = check(
        "Asymmetric lesion with irregular border. Most likely diagnosis: melanoma.",
        kg,
        "condition:melanoma",
        "sample",
    )
    assert res.diagnosis == "condition:melanoma"
    assert {c.badge for c in res.claims} == {"supported"}
    assert any("melanoma" in c.kg_path for c in res.claims if c.kind == "finding")  # the KG path is shown
    assert any(d["must_not_miss"] for d in res.differential) or res.differential

    wrong = check("Most likely diagnosis: seborrheic keratosis.", kg, "condition:melanoma", "sample")
    assert wrong.counts()["contradicted"] == 1
    hedged = check("Melanocytic nevus, but melanoma cannot be ruled out.", kg, "condition:melanoma", "sample")
    assert "hedged" in {c.badge for c in hedged.claims}


def test_without_a_reference_the_answer_is_never_judged_against_itself(app_ctx):
    kg = app_ctx.kg("derm")
    res = check("Most likely diagnosis: melanoma. Blue-white veil.", kg)
    assert res.reference is None and "not_checkable" in res.flags  # the diagnosis is left unchecked, visibly
    assert res.best_fit and res.best_fit_source == "answer"  # the answer's own findings, labelled as such
    case = "Stuck-on, well-demarcated waxy brown plaques on the trunk with milia-like cysts."
    res = check("Most likely diagnosis: melanoma. Blue-white veil.", kg, case_text=case)
    assert res.reference_source == "case" and res.reference == "condition:seborrheic_keratosis"
    assert "diagnosis_not_supported" in res.flags and "invented_findings" in res.flags
    assert [c.verdict for c in res.claims if c.kind == "diagnosis"] == ["contradicted"]
