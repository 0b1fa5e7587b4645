"""Synthetic MedQA-style vignettes (`clinical.synthetic`) -> the common JSONL records (README "Data formats").

Both records ask the same question (stem, then one option per line); the SFT target reasons over the vignette's
findings before naming the option, as `<think>...</think><answer>X) label</answer>` (the KG claim checker reads the
diagnosis inside `<answer>`). Torch-free.
"""

from __future__ import annotations


def question(vignette: dict) -> str:
    """The stem followed by `A) ...` to `E) ...`, one per line."""
    opts = "\n".join(f"{k}) {t}" for k, t in sorted(vignette["options"].items()))
    return f"{vignette['question']}\n{opts}"


def reference_answer(vignette: dict) -> str:
    """Key findings (history, exam, labs), then the correct option as `<answer>X) label</answer>`."""
    findings = [f for part in ("history", "exam", "labs") for f in vignette["findings"].get(part, [])]
    return (
        f"<think>Key findings: {', '.join(findings)}. These fit {vignette['answer']} best.</think>\n"
        f"<answer>{vignette['answer_idx']}) {vignette['answer']}</answer>"
    )


def sft_record(vignette: dict) -> dict:
    return {
        "messages": [
            {"role": "user", "content": question(vignette)},
            {"role": "assistant", "content": reference_answer(vignette)},
        ],
        "images": [],
    }


def rl_record(vignette: dict) -> dict:
    """The question as an RL prompt; `answer` is the option letter, the rest of the ground truth goes to `meta`
    (reward functions receive record fields as keyword arguments)."""
    meta = {
        k: vignette[k]
        for k in ("options", "condition_id", "findings", "finding_ids", "seed")
        if k in vignette
    }
    return {
        "prompt": [{"role": "user", "content": question(vignette)}],
        "images": [],
        "answer": vignette["answer_idx"],
        "meta": {**meta, "answer_text": vignette["answer"], "source": "synthetic"},
    }


def sft_records(vignettes: list[dict]) -> list[dict]:
    return [sft_record(v) for v in vignettes]


def rl_records(vignettes: list[dict]) -> list[dict]:
    return [rl_record(v) for v in vignettes]


# ---------------------------------------------------------------------------------------------- boxed traces
# Cold-start SFT targets in the Clinical-R1 format (`clinical.prompts`): the case's findings, every wrong option
# ruled out with a reason the KG gives, the conclusion, a verification sentence, then a summary and \boxed{X}.
# They are built from importer records (`medrl clinical import vignettes`: meta has options, case, condition_id,
# finding_ids, findings), so the SFT prompt is the RL prompt word for word and the cold start teaches the format
# the CRPO rewards score (accuracy 1, format 1.5 on every trace: tests/clinical/test_clinical_pipeline.py).


def _case_finding_texts(meta: dict) -> list[tuple[str, str]]:
    """(KG id, the text the case shows) for each finding of a vignette record, in case order."""
    ids, texts = meta.get("finding_ids") or {}, meta.get("findings") or {}
    out = []
    for part in ("history", "exam", "labs"):
        for nid, text in zip(ids.get(part, []), texts.get(part, []), strict=False):
            out.append((nid, text.split(" (")[0].strip()))
    return out


_PRIORITY = {"lab_finding": 0, "imaging_finding": 0, "sign": 1, "symptom": 2, "risk_factor": 3}


def rejection_reason(kg, distractor: str, gold: str, case_texts: dict[str, str], used: set[str]) -> str:
    """Why a wrong option does not fit, from the KG: a case finding that argues against it, else a case finding typical
    of the answer that it does not have (the most specific kind first, one not used yet), else a typical feature of
    it that the case lacks. Worded so the reader gets each finding's polarity right: a case finding stays present
    ('F favours X', never 'does not explain F'), a missing one is absent ('no F is reported')."""
    ids = sorted(case_texts, key=lambda i: (i in used, _PRIORITY.get(kg.type(i), 4)))
    for nid in ids:
        if kg.typicality_of(distractor, nid) == "absent":
            used.add(nid)
            return f"{case_texts[nid]} argues against it"
    theirs = kg.feature_ids(distractor)
    for nid in ids:
        if nid not in theirs and kg.typicality_of(gold, nid) == "typical":
            used.add(nid)
            return f"{case_texts[nid]} favours {kg.label(gold)}"
    missing = [f for f in kg.features(distractor, typicality="typical") if f.id not in case_texts]
    if missing:
        return f"no {missing[0].label} is reported, a typical feature of it"
    return "it does not account for these findings"


def _support(kg, gold: str, case_texts: dict[str, str]) -> str:
    """The case finding most typical of the answer (the most specific kind first), for its 'fits' line."""
    rank = {"typical": 0, "possible": 1}
    ids = sorted(
        case_texts, key=lambda i: (rank.get(kg.typicality_of(gold, i) or "", 2), _PRIORITY.get(kg.type(i), 4))
    )
    return case_texts[ids[0]] if ids else "the findings"


def boxed_trace(record: dict, kg=None, style: str = "full") -> str | None:
    """The reasoning trace for one vignette RL record (None when the record carries no KG condition).

    ``full``: every finding, each wrong option named and rejected with its KG reason, the conclusion, a check.
    ``brief`` (the tiny recipe: a 4-layer model must learn it in a few dozen SFT steps and write it in ~150 new
    tokens): two findings, each wrong option rejected by letter with one case finding, the same conclusion and check.
    ``lead`` (brief, ~245 tokens): the leading option and the case finding it fits come first; then every option in
    letter order, the wrong ones rejected as in brief and the answer's line repeating the leading line word for word.
    Brief asks the writer to name its answer by the letter it left out, a set difference the tiny model cannot do (47
    of 55 of its cold-start answers ruled out the option they concluded for); here the letter finds itself above and
    copies what follows it (induction), which only the longer-range copy build does often (README, Clinical-R1).
    """
    meta = record.get("meta") or {}
    options, letter = meta.get("options") or {}, record.get("answer")
    if kg is None:
        from knowledge_graph.io import load_builtin

        kg = load_builtin("clinical")
    gold = meta.get("condition_id")
    if not isinstance(gold, str) or gold not in kg or letter not in options:
        return None
    brief, lead = style in ("brief", "lead"), style == "lead"
    case_texts = {nid: text for nid, text in _case_finding_texts(meta) if nid in kg}
    names = list(case_texts.values())
    names = names[:2] if brief else names
    lines = [f"Findings: {', '.join(names) if names else 'as described'}."]
    if lead:
        leading = f"{letter}) fits: {_support(kg, gold, case_texts)}."
        lines.append(f"Leading option: {leading}")
    used: set[str] = set()
    for k, label in sorted(options.items()):
        if k == letter:
            if lead:
                lines.append(leading)
            continue
        nid = kg.canonical(label)
        why = (
            rejection_reason(kg, nid, gold, case_texts, used)
            if nid is not None and kg.type(nid) == "condition"
            else "it does not account for these findings"
        )
        if brief:
            why = (
                why.split(" favours ")[0].split(" argues ")[0]
                if " favours " in why or " argues " in why
                else "no fit"
            )
            lines.append(f"{k}) less likely: {why}.")
        else:
            lines.append(f"{k}) {label} is less likely: {why}.")
    key = ", ".join(names[:3]) if names else "The findings"
    answer = f"{letter})" if brief else f"{letter}) {options[letter]}"
    lines.append(f"So the answer is {answer}.")
    lines.append(f"Check: {key} are consistent with {answer}.")
    summary = f"{key} point to {answer if brief else options[letter]}."
    # One sentence a line: the reward's sentence splitter keeps '... 16.8 x10^9/L. B) ...' as one sentence, so a
    # rejection cue would reach back over the findings list.
    body = "\n".join(lines)
    return (
        f"<think>\n{body}\n</think>\n<answer>\n{summary[0].upper() + summary[1:]} "
        f"\\boxed{{{letter}}}\n</answer>"
    )


def boxed_sft_records(rl_recs: list[dict], kg=None, style: str = "full") -> list[dict]:
    """SFT records (the RL prompt, then the boxed trace) for every record a trace can be built for."""
    out = []
    for r in rl_recs:
        trace = boxed_trace(r, kg, style)
        if trace is not None:
            out.append({"messages": [*r["prompt"], {"role": "assistant", "content": trace}], "images": []})
    return out
