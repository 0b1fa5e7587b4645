"""Review pairs tab: a clinician reads one preference pair at a time (the question and image, both answers, the KG's
verdict with its reasons) and keeps it, swaps it or rejects it, with an optional reason. Each verdict is stored at
once (`app.feedback`: one committed transaction, so nothing submitted is lost) and the page moves to the next pair;
the running agreement between the KG and the reviewers is shown, overall and per condition, and the reviewed pairs
download as TRL-format DPO JSONL (`medrl feedback export` does the same from the command line).

The reviewer is the signed-in user when the app runs with --auth, else the name typed in the field.
"""

from __future__ import annotations

import time

import gradio as gr

from . import html
from .context import AppContext, user_errors
from .feedback_export import export_pairs
from .review import Pair, pair_files, read_pair
from .safety import Refused


def pair_html(p: Pair) -> str:
    head = (
        f'<div class="medrl-muted">{html.escape(p.source)} · pair {p.line} of {p.total}'
        + (f" · {html.escape(p.condition)}" if p.condition else "")
        + "</div>"
    )
    question = f'<div class="medrl-rollout-prompt">{html.escape(p.question)}</div>'
    answers = html.table(
        ["", "answer"],
        [
            ["1 · the KG prefers", f'<div class="medrl-answer">{html.escape(p.chosen)}</div>'],
            ["2", f'<div class="medrl-answer">{html.escape(p.rejected)}</div>'],
        ],
        raw_cols=(1,),
    )
    verdict = f'<div class="medrl-muted">KG verdict: {html.escape(p.kg_reason)}</div>'
    return f'<div class="medrl-card">{head}{question}{answers}{verdict}</div>'


def agreement_html(ctx: AppContext) -> str:
    a = ctx.feedback.agreement()

    def row(name: str, s: dict) -> list:
        agree = "n/a" if s["agreement"] is None else f"{s['agreement']:.3f}"
        return [name, agree, s["keep"], s["swap"], s["reject"]]

    rows = [row("all pairs", a["overall"]), *[row(k, v) for k, v in a["per_condition"].items()]]
    return (
        '<div class="medrl-card"><div class="medrl-muted">Agreement with the KG: keep / (keep + swap)</div>'
        + html.table(["", "agreement", "keep", "swap", "reject"], rows)
        + "</div>"
    )


def reviewer_of(name: str | None, request: gr.Request | None) -> str:
    user = getattr(request, "username", None) if request is not None else None
    if user:
        return user
    if not (name or "").strip():
        raise Refused("type your name first (or run the app with --auth, which signs you in)")
    return name.strip()


def build(ctx: AppContext) -> dict:
    files = pair_files(ctx.runs_root)
    with gr.Row():
        source = gr.Dropdown(
            files,
            value=files[0] if files else None,
            label="Pair file",
            allow_custom_value=True,
            scale=4,
            elem_id="review-file",
        )
        reviewer = gr.Textbox(label="Reviewer (your name)", scale=2, elem_id="review-name")
        start = gr.Button("Start", scale=0, min_width=80, elem_id="review-start")
    line = gr.State(0)
    view = gr.HTML(
        html.notice(
            "Choose a pair file and press Start."
            if files
            else "No pair files under the runs folder yet (the DermIQ pipeline writes data/dpo_pairs.jsonl)."
        ),
        elem_id="review-pair",
    )
    image = gr.Gallery(label="Image", height=260, columns=2, visible=False, elem_id="review-image")
    reason = gr.Textbox(label="Reason (optional)", elem_id="review-reason")
    with gr.Row():
        keep = gr.Button("Keep: the KG is right", variant="primary", elem_id="review-keep")
        swap = gr.Button("Swap: answer 2 is better", elem_id="review-swap")
        reject = gr.Button("Reject: train on neither", elem_id="review-reject")
    agreement = gr.HTML(elem_id="review-agreement")
    with gr.Row():
        export_btn = gr.Button("Download the reviewed pairs (DPO JSONL)", scale=0, elem_id="review-export")
        download = gr.File(label="Reviewed pairs", interactive=False, elem_id="review-download")

    def show(src: str, n: int):
        p = read_pair(ctx.runs_root, src, n)
        paths = [str(x) for x in p.images]
        return n, pair_html(p), gr.Gallery(value=paths or None, visible=bool(paths)), "", agreement_html(ctx)

    @user_errors
    def on_start(src: str | None):
        if not src:
            raise Refused("choose a pair file first")
        return show(src, 1)

    def verdict_handler(verdict: str):
        @user_errors
        def handler(src: str | None, n: int, name: str | None, why: str | None, request: gr.Request):
            if not src or not n:
                raise Refused("press Start first")
            p = read_pair(ctx.runs_root, src, n)
            ctx.feedback.add(
                reviewer=reviewer_of(name, request),
                kind="pair",
                source=str(ctx.runs_root / src),
                line=n,
                verdict=verdict,
                prompt=p.prompt,
                chosen=p.chosen,
                rejected=p.rejected,
                images=[str(x) for x in p.images],
                reason=why,
                condition=p.condition,
            )
            if n >= p.total:
                done = html.notice(f"All {p.total} pairs of {src} reviewed. Thank you.")
                return n, done, gr.Gallery(visible=False), "", agreement_html(ctx)
            return show(src, n + 1)

        return handler

    @user_errors
    def on_export():
        from training.data.records import write_jsonl

        records, _ = export_pairs(ctx.feedback, "clinician")
        path = ctx.scratch / "downloads" / f"reviewed-pairs-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(path, records)
        return str(path)

    outputs = [line, view, image, reason, agreement]
    start.click(on_start, [source], outputs, api_name="review_start")
    for button, verdict in ((keep, "keep"), (swap, "swap"), (reject, "reject")):
        button.click(
            verdict_handler(verdict), [source, line, reviewer, reason], outputs, api_name=f"review_{verdict}"
        )
    export_btn.click(on_export, None, download, api_name="review_export")

    def on_refresh():
        return gr.Dropdown(choices=pair_files(ctx.runs_root))

    return {"refresh": [(on_refresh, None, source)]}
