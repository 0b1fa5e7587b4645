"""Feedback on a live answer (Dermatology and Clinical case tabs): a clinician marks the answer just shown right, wrong
or unsafe, optionally with the corrected answer, which the export turns into a pair (the correction chosen over the
model's answer; `app.feedback_export`).

The verdict is stored with what the model was asked (the messages as the run was trained to be asked, and the image,
copied into RUNS/feedback/images/ by its content hash so the pair still trains after the app's scratch folder is
gone), the run and stage, and the answer's text. The same reviewer marking the same answer again replaces the
earlier verdict.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zlib
from pathlib import Path

import gradio as gr

from . import html
from .context import AppContext, user_errors
from .safety import Refused

VERDICTS = (("right", "Right"), ("wrong", "Wrong"), ("unsafe", "Unsafe"))


def persist_image(ctx: AppContext, path: str) -> str:
    """A copy of the asked image under RUNS/feedback/images/<sha256>.png (written once); its path."""
    data = Path(path).read_bytes()
    dest = (
        ctx.runs_root / "feedback" / "images" / f"{hashlib.sha256(data).hexdigest()[:32]}{Path(path).suffix}"
    )
    if not dest.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(dest.suffix + ".tmp")
        shutil.copyfile(path, tmp)
        tmp.replace(dest)
    return str(dest)


def record_verdict(
    ctx: AppContext, tab: str, result: dict | None, verdict: str, reviewer: str, correction: str | None
) -> str:
    """Store the verdict on the answer in ``result`` (the tab's raw result); returns the line the page shows."""
    if not result or "text" not in result or "prompt" not in result:
        raise Refused("ask the model first: the verdict is on the answer shown")
    if correction and verdict == "right":
        raise Refused("a corrected answer goes with Wrong or Unsafe")
    images = [persist_image(ctx, p) for p in result.get("images") or []]
    key = json.dumps([result["run"], result["stage"], result["prompt"], result["text"]], sort_keys=True)
    ctx.feedback.add(
        reviewer=reviewer,
        kind="answer",
        source=f"app:{tab}",
        line=zlib.crc32(key.encode()),
        verdict=verdict,
        prompt=result["prompt"],
        rejected=result["text"],
        images=images,
        adapter=f"{result['run']}@{result['stage']}",
        correction=correction,
    )
    pair = " With your correction it becomes a training pair." if (correction or "").strip() else ""
    return html.notice(f"Stored: {verdict}, by {reviewer}.{pair}")


def build(ctx: AppContext, tab: str, result: gr.JSON) -> None:
    """The feedback row under a tab's answer: reviewer, optional correction, the three verdicts, the stored line."""
    from .tab_review import reviewer_of

    with gr.Accordion("Your verdict on this answer (stored for review and training)", open=False):
        with gr.Row():
            name = gr.Textbox(label="Reviewer (your name)", scale=1, elem_id=f"{tab}-fb-name")
            fix = gr.Textbox(
                label="Corrected answer (optional; with Wrong or Unsafe)",
                lines=2,
                scale=3,
                elem_id=f"{tab}-fb-fix",
            )
        with gr.Row():
            buttons = [gr.Button(label, elem_id=f"{tab}-fb-{v}") for v, label in VERDICTS]
        status = gr.HTML(elem_id=f"{tab}-fb-status")

    def handler(verdict: str):
        @user_errors
        def on_verdict(res: dict | None, who: str | None, correction: str | None, request: gr.Request):
            return record_verdict(ctx, tab, res, verdict, reviewer_of(who, request), correction)

        return on_verdict

    for button, (verdict, _) in zip(buttons, VERDICTS, strict=True):
        button.click(handler(verdict), [result, name, fix], status, api_name=f"{tab}_feedback_{verdict}")
