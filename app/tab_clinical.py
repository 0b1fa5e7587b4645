"""Clinical case tab: a vignette and its options (pasted, or a synthetic sample) -> the chosen adapter's answer ->
the CRPO objective breakdown (when `clinical.rewards` is present) with its evidence highlighted, and the KG check.

The prompt is the one that trained the run, read from its task card (`clinical.task`): its system turn, the case
laid out as its training questions were, its answer length. A question without options is asked too, flagged as
never measured. The KG check and the CRPO breakdown judge the answer; the model's record sits beside it.
"""

from __future__ import annotations

import functools
import re

import gradio as gr

from clinical import task
from clinical.prompts import BOX_RE, parse_response
from clinical.rewards import format_score
from clinical.synthetic import generate_vignettes

from . import answer_feedback, crpo, html
from .answer_view import Flag, answer_card, answer_flags, record_card
from .context import AppContext, user_errors
from .kgcheck import check, condition_in
from .safety import Refused, limit_text

N_SAMPLES = 12
SAMPLE_SEED = 7
_OPTION = re.compile(r"^\s*\(?([A-J])\s*[).:\-]\s*(.+?)\s*$")


@functools.lru_cache(maxsize=1)
def samples() -> list[dict]:
    return generate_vignettes(N_SAMPLES, seed=SAMPLE_SEED)


def sample_fields(key: str | None) -> tuple[str, str, str]:
    """(case text, options text, answer key) of sample `key` ('1'..'12')."""
    if not key:
        return "", "", ""
    if key not in {str(i + 1) for i in range(N_SAMPLES)}:
        raise Refused(f"{key!r} is not one of the sample vignettes")
    v = samples()[int(key) - 1]
    case = v["question"]
    options = "\n".join(f"{k}) {t}" for k, t in sorted(v["options"].items()))
    return case, options, v["answer_idx"]


def parse_options(text: str) -> dict[str, str]:
    """`A) text` lines -> {letter: text}; no options at all is a free-text question; one option, or option-like text
    that has none, is refused with the layout to use."""
    out = {}
    for line in (text or "").splitlines():
        m = _OPTION.match(line)
        if m:
            out[m.group(1)] = m.group(2)
    if (text or "").strip() and len(out) < 2:
        raise Refused(
            "give at least two options, one per line, as 'A) text' (or none, for a free-text question)"
        )
    return out


def ask(
    ctx: AppContext,
    run_id: str,
    stage: str,
    case: str,
    options: dict[str, str] | None,
    max_new_tokens: float | None = None,
):
    """The run's greedy answer to one question, asked as it was trained (its task card's system turn and layout,
    its answer length). Returns (generation, the budget it was trained to). The reproduction test drives this over
    a run's held-out questions and compares with `medrl clinical eval`."""
    card = ctx.card(run_id)
    trained = task.max_new_tokens(card)
    gen = ctx.service.generate(
        run_id,
        stage,
        task.messages(card, case, options or None),
        None,
        ctx.answer_budget(trained, max_new_tokens),
    )
    return gen, trained


def readable(text: str, options: dict[str, str]) -> str:
    """The answer with each boxed letter followed by its option's text, so the KG check reads the diagnosis a
    letter stands for ('\\boxed{B}' alone names nothing)."""
    if not options:
        return text
    return BOX_RE.sub(
        lambda m: (
            f"{m.group(0)} (Diagnosis: {options[m.group(1).strip()]})"
            if m.group(1).strip() in options
            else m.group(0)
        ),
        text,
    )


def _sample_meta(key: str | None, case: str) -> dict | None:
    """The sample's ground truth, if the case text is still the sample's (not edited)."""
    if not key or key not in {str(i + 1) for i in range(N_SAMPLES)}:
        return None
    v = samples()[int(key) - 1]
    return v if v["question"] == case else None


def crpo_card(
    ctx: AppContext, case: str, options: dict[str, str], text: str, gold: str | None, meta: dict | None
) -> tuple[str, dict | None]:
    b = crpo.breakdown(case, options, text, gold, meta)
    kg = ctx.kg("clinical")
    f, c = b["faithfulness_parts"], b["comprehensiveness_parts"]
    rows = [
        [
            "accuracy",
            "—" if b["accuracy"] is None else f"{b['accuracy']:+.2f}",
            f"boxed {b['boxed'] or 'none'}, key {gold or 'unknown'}",
        ],
        ["format", f"{b['format']:.2f}", "<think>…</think><answer>… \\boxed{X}</answer>"],
        [
            "faithfulness",
            f"{b['faithfulness']:+.2f}",
            f"evidence {f['evidence']:.2f} · hallucination {f['hallucination']:.2f} · consistency {f['consistency']:+.0f}",
        ],
        [
            "comprehensiveness",
            f"{b['comprehensiveness']:.2f}",
            f"rejection {c['rejection']:.2f}{' (rules out its own answer)' if b['self_rejected'] else ''}"
            f" · coverage {'—' if c['coverage'] is None else format(c['coverage'], '.2f')}"
            f" · verification {c['verification']:.0f}",
        ],
    ]
    bad = set(b["hallucinated"]) | set(b["misreported"])
    body = (
        html.table(["objective", "score", "parts"], rows)
        + '<div class="medrl-muted">Case, with the findings the answer cites as evidence in green:</div>'
        + f'<div class="medrl-answer">{crpo.highlight(case, kg, set(b["cited"]), set())}</div>'
        + '<div class="medrl-muted">Answer, cited evidence in green, findings not in the case (or misreported) '
        "in red:</div>" + f'<div class="medrl-answer">{crpo.highlight(text, kg, set(b["cited"]), bad)}</div>'
    )
    return f'<div class="medrl-card medrl-crpo"><h3>CRPO objectives</h3>{body}</div>', b


def answer(
    ctx: AppContext,
    case: str,
    options_text: str,
    gold: str | None,
    sample_key: str | None,
    adapter: str | None,
    max_new_tokens: float | None,
) -> tuple[str, str, str, str, dict]:
    run_id, stage = ctx.parse_adapter(adapter)
    case = limit_text(case, "the case")
    if not case:
        raise Refused("paste a case (or pick a sample) first")
    options = parse_options(limit_text(options_text, "the options"))
    gold = gold if gold in options else None
    meta = _sample_meta(sample_key, case)
    gen, trained = ask(ctx, run_id, stage, case, options, max_new_tokens)
    boxes = parse_response(gen.text).boxes
    well_formed = format_score(gen.text) == 1.5
    picked = None if not options else (boxes[-1].strip() in options if boxes else False)
    flags = answer_flags(gen, well_formed, picked, trained, sorted(options) if options else None)
    if not options:
        flags.append(
            Flag(
                "info",
                "A free-text question: this model was trained on lettered options, so how well it "
                "answers without them was never measured.",
            )
        )
    asked = (
        f"Asked as it was trained: its system turn and the {'case and options' if options else 'case'}, "
        f"up to {trained} new tokens."
    )
    kg = ctx.kg("clinical")
    reference, source, case_findings = None, None, None
    if meta is not None:
        reference, source, case_findings = meta["condition_id"], "sample", meta["finding_ids"]
    elif gold and condition_in(options[gold], kg):
        reference, source = condition_in(options[gold], kg), "key"
    res = check(readable(gen.text, options), kg, reference, source, case_findings, case_text=case)
    if options:
        crpo_html, parts = crpo_card(
            ctx,
            case,
            options,
            gen.text,
            gold,
            {"finding_ids": meta["finding_ids"], "findings": meta["findings"]} if meta else None,
        )
    else:  # the CRPO objectives weigh options (ruled out, chosen): a free-text answer has none to weigh
        crpo_html, parts = html.notice("CRPO objectives: not scored, the question has no options."), None
    out = {
        "run": run_id,
        "stage": stage,
        "text": gen.text,
        "answer": gen.answer,
        "boxed": boxes[-1] if boxes else None,
        "truncated": gen.truncated,
        "flags": [f.kind for f in flags],
        "crpo": parts,
        "check": res.to_dict(),
        "prompt": task.messages(
            ctx.card(run_id), case, options or None
        ),  # what was asked (app.answer_feedback)
        "images": [],
        "disclaimer": html.DISCLAIMER,
    }
    return (
        answer_card("Model answer", gen, flags, asked),
        crpo_html,
        html.check_card(res, "clinical KG"),
        html.differential_card(res),
        record_card(ctx.reader.run(run_id), ctx.card(run_id)),
        out,
    )


def build(ctx: AppContext) -> dict:
    with gr.Row():
        with gr.Column(scale=2):
            pick = gr.Dropdown(
                [(f"Sample vignette {i + 1}", str(i + 1)) for i in range(N_SAMPLES)],
                value=None,
                label="Synthetic sample (from the clinical KG)",
                info="or paste your own case",
            )
            case = gr.Textbox(label="Case (vignette)", lines=7, max_length=8000, elem_id="clin-case")
            options = gr.Textbox(
                label="Options, one per line: A) ... (leave empty for a free-text question)",
                lines=5,
                max_length=2000,
            )
            gold = gr.Dropdown(["", *"ABCDEFGHIJ"], value="", label="Answer key (optional: enables accuracy)")
            with gr.Row():
                adapter = gr.Dropdown(
                    ctx.adapter_choices(vlm=False),
                    label="Model (run · method · stage)",
                    allow_custom_value=True,
                    scale=5,
                    elem_id="clin-adapter",
                )
                refresh = gr.Button("↻", scale=0, min_width=40)
            tokens = gr.Slider(
                0, 1024, value=0, step=8, label="Max new tokens (greedy; 0: the run's own length)"
            )
            go = gr.Button("Answer and check", variant="primary", elem_id="clin-run")
        with gr.Column(scale=3):
            out_answer = gr.HTML(html.disclaimer(), elem_id="clin-answer")
            out_crpo = gr.HTML()
            out_check = gr.HTML(elem_id="clin-check")
            out_ddx = gr.HTML(elem_id="clin-ddx")
            out_record = gr.HTML(elem_id="clin-record")
            with gr.Accordion("Raw result (JSON)", open=False):
                out_json = gr.JSON()
            answer_feedback.build(ctx, "clinical", out_json)

    @user_errors
    def on_sample(sample_key: str | None):
        return sample_fields(sample_key)

    @user_errors
    def on_answer(
        case: str,
        options: str,
        gold: str | None,
        sample_key: str | None,
        adapter: str | None,
        max_new_tokens: float | None,
    ):
        return answer(ctx, case, options, gold, sample_key, adapter, max_new_tokens)

    pick.change(on_sample, pick, [case, options, gold], api_name="clinical_sample")
    refresh.click(lambda: gr.Dropdown(choices=ctx.adapter_choices(vlm=False)), None, adapter, api_name=False)
    go.click(
        on_answer,
        [case, options, gold, pick, adapter, tokens],
        [out_answer, out_crpo, out_check, out_ddx, out_record, out_json],
        api_name="clinical_answer",
        concurrency_id="model",
        concurrency_limit=ctx.concurrency,
    )
    return {"adapter": adapter, "vlm": False}
