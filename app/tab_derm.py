"""Dermatology tab: an uploaded or synthetic lesion image -> the chosen adapter's reasoning and answer, asked as the
run was trained (its task card: labels, layout, length) -> the KG check of each claim, the KG differential, the
model's record (held-out accuracy, per-class recall), the disclaimer.

A synthetic sample is named by a key (`condition:melanoma/0`) and regenerated from the KG on the server, so its true
label is known and the check is judged against it. An upload is verified (`app.safety.load_upload`); its answer is
judged against the findings the clinician describes (optional), else its diagnosis is left unchecked, visibly: never
against the answer's own diagnosis.
"""

from __future__ import annotations

import functools

import gradio as gr

from dermiq import task
from dermiq.evaluate import NONE, label_map
from dermiq.prompts import parse_response
from dermiq.rewards import resolve_answer
from dermiq.synthetic import DEFAULT_CONDITIONS, make_sample

from . import answer_feedback, html
from .answer_view import answer_card, answer_flags, record_card
from .context import AppContext, user_errors
from .kgcheck import check
from .safety import MODEL_SIDE, Refused, check_upload, limit_text, load_upload, upload_path

SAMPLES_PER_CONDITION = 3
SAMPLE_SEED = 7  # not the demo's training seed: samples the tiny models did not see


def sample_choices(ctx: AppContext) -> list[tuple[str, str]]:
    kg = ctx.kg("derm")
    return [
        (f"{kg.label(c)} · sample {i + 1}", f"{c}/{i}")
        for c in DEFAULT_CONDITIONS
        for i in range(SAMPLES_PER_CONDITION)
    ]


# what the page shows; the model gets the sample rendered at its training side (the task card)
SAMPLE_SIDE = 224


def sample(ctx: AppContext, key: str, side: int | None = None):
    """(image, meta) of a sample key, rendered `side` pixels wide (default SAMPLE_SIDE); Refused for anything not in
    the sample list."""
    cond, _, idx = (key or "").rpartition("/")
    if cond not in DEFAULT_CONDITIONS or idx not in {str(i) for i in range(SAMPLES_PER_CONDITION)}:
        raise Refused(f"{key!r} is not one of the synthetic samples")
    return make_sample(ctx.kg("derm"), cond, SAMPLE_SEED, int(idx), size=side or SAMPLE_SIDE)


def sample_file(ctx: AppContext, key: str | None) -> tuple[str | None, str]:
    """The sample's PNG (in the app's scratch folder) for the image box, and its ground truth for the page."""
    if not key:
        return None, ""
    img, meta = sample(ctx, key)
    out = ctx.scratch / "samples" / (key.replace(":", "_").replace("/", "_") + ".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists():
        img.save(out)
    kg = ctx.kg("derm")
    found = "; ".join(
        f"{t}: {', '.join(kg.label(i) for i in ids)}" for t, ids in meta["findings"].items() if ids
    )
    truth = (
        f"Synthetic sample (rendered from the KG). True label: **{kg.label(meta['condition_id'])}**, "
        f"Fitzpatrick type {meta['fitzpatrick']}. Drawn findings: {found}."
    )
    return str(out), truth


@functools.lru_cache(maxsize=4)
def default_labels(kg) -> tuple[str, ...]:
    """The synthetic data's label set: only for a run with no task card and no training file left to read."""
    return tuple(kg.label(kg.require(c, "condition")) for c in DEFAULT_CONDITIONS)


def asked_messages(ctx: AppContext, run_id: str) -> list[dict]:
    """The messages one image is asked with, as the run was trained (its task card; the KG's labels without one)."""
    return task.messages(ctx.card(run_id), 1, fallback_labels=list(default_labels(ctx.kg("derm"))))


def saved_image(ctx: AppContext, img) -> str:
    """The asked image as a PNG in the app's scratch folder (named by its content), for a verdict to keep."""
    import hashlib
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    data = buf.getvalue()
    path = ctx.scratch / "answers" / f"{hashlib.sha256(data).hexdigest()[:32]}.png"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return str(path)


def ask(ctx: AppContext, run_id: str, stage: str, img, max_new_tokens: float | None):
    """The run's greedy answer to one image, asked as it was trained (its task card: labels, layout, length).

    Returns (generation, the parsed response, the run's labels or None, the budget it was trained to). The
    reproduction test drives this function over a run's held-out split and compares with `medrl dermiq eval`.
    """
    card = ctx.card(run_id)
    labels = task.labels(card)
    messages = asked_messages(ctx, run_id)
    trained = task.max_new_tokens(card)
    gen = ctx.service.generate(run_id, stage, messages, [img], ctx.answer_budget(trained, max_new_tokens))
    return gen, parse_response(gen.text), labels, trained


def answer(
    ctx: AppContext,
    image: str | None,
    sample_key: str | None,
    adapter: str | None,
    max_new_tokens: float | None,
    description: str | None = None,
) -> tuple[str, str, str, str, dict]:
    """The model's answer, the KG check card, the differential card, the model's record, and the raw result."""
    run_id, stage = ctx.parse_adapter(adapter)
    side = (ctx.card(run_id) or {}).get("image_side")  # the size it was trained on: asked at that size
    if sample_key:
        img, meta = sample(ctx, sample_key, side)
        reference, source, case = meta["condition_id"], "sample", meta["findings"]
    elif image:
        img, reference, source, case = (
            load_upload(upload_path(image), max_side=side or MODEL_SIDE),
            None,
            None,
            None,
        )
    else:
        raise Refused("upload an image or pick a synthetic sample")
    kg = ctx.kg("derm")
    gen, parsed, labels, trained = ask(ctx, run_id, stage, img, max_new_tokens)
    predicted = label_map(labels)(parsed.answer) if labels else None
    flags = answer_flags(
        gen,
        parsed.well_formed if labels else None,
        None if not labels else predicted != NONE,
        trained,
        labels,
    )
    asked = (
        f"Asked as it was trained: the DermIQ prompt over its {len(labels)} labels, up to {trained} new tokens."
        if labels
        else "Asked with the prompt it was trained on (its task card); it has no label set."
    )
    res = check(gen.text, kg, reference, source, case, case_text=limit_text(description, "the description"))
    run = ctx.reader.run(run_id)
    out = {
        "run": run_id,
        "stage": stage,
        "text": gen.text,
        "reasoning": gen.reasoning,
        "answer": gen.answer,
        "predicted_label": predicted,
        "labels": labels,
        "truncated": gen.truncated,
        "flags": [f.kind for f in flags],
        "check": res.to_dict(),
        "prompt": asked_messages(
            ctx, run_id
        ),  # what was asked, for a clinician's verdict (app.answer_feedback)
        "images": [saved_image(ctx, img)],
        "disclaimer": html.DISCLAIMER,
    }
    return (
        answer_card("Model answer", gen, flags, asked),
        html.check_card(res, "dermatology KG"),
        html.differential_card(res),
        record_card(run, ctx.card(run_id), kg, resolve_answer),
        out,
    )


def build(ctx: AppContext) -> dict:
    """The tab's components; returns the adapter dropdown so the page can refresh it on load."""
    with gr.Row():
        with gr.Column(scale=2):
            pick = gr.Dropdown(
                sample_choices(ctx),
                value=None,
                label="Synthetic sample (from the dermatology KG)",
                elem_id="derm-sample",
                info="or upload your own image below",
            )
            image = gr.Image(
                type="filepath",
                sources=["upload"],
                label="Lesion image (PNG, JPEG, WebP or BMP; ≤ 10 MB)",
                height=260,
                elem_id="derm-image",
            )
            truth = gr.Markdown()
            description = gr.Textbox(
                label="What you see (optional): lets the KG check judge an upload's answer",
                placeholder="e.g. asymmetric 9 mm plaque, irregular border, blue-white veil",
                lines=2,
                max_length=2000,
                elem_id="derm-description",
            )
            with gr.Row():
                adapter = gr.Dropdown(
                    ctx.adapter_choices(vlm=True),
                    label="Model (run · method · stage)",
                    allow_custom_value=True,
                    scale=5,
                    elem_id="derm-adapter",
                )
                refresh = gr.Button("↻", scale=0, min_width=40)
            tokens = gr.Slider(
                0,
                512,
                value=0,
                step=8,
                label="Max new tokens (greedy; 0: the run's own length)",
                elem_id="derm-tokens",
            )
            go = gr.Button("Answer and check against the KG", variant="primary", elem_id="derm-run")
            if not ctx.reader.run_ids():
                gr.Markdown(ctx.no_runs_text())
        with gr.Column(scale=3):
            out_answer = gr.HTML(html.disclaimer(), elem_id="derm-answer")
            out_check = gr.HTML(elem_id="derm-check")
            out_ddx = gr.HTML(elem_id="derm-ddx")
            out_record = gr.HTML(elem_id="derm-record")
            with gr.Accordion("Raw result (JSON)", open=False):
                out_json = gr.JSON()
            answer_feedback.build(ctx, "derm", out_json)

    @user_errors
    def on_sample(sample_key: str | None):
        if not sample_key:  # cleared because the user uploaded an image: keep that image
            return gr.update(), ""
        return sample_file(ctx, sample_key)

    @user_errors
    def on_answer(
        image: str | None,
        sample_key: str | None,
        adapter: str | None,
        max_new_tokens: float | None,
        description: str | None,
    ):
        return answer(ctx, image, sample_key, adapter, max_new_tokens, description)

    pick.change(on_sample, pick, [image, truth], api_name="derm_sample")

    @user_errors
    def on_upload(value):
        """Check the file at once: a bad one is cleared with the app's one-line reason (never gradio's error, which
        names a server path: hence preprocess=False, so gradio does not open it first)."""
        msg = check_upload(value)
        if (
            msg
        ):  # the sample choice is left alone: clearing it would fire its change event, which blanks this line
            return None, gr.update(), f"**Upload refused:** {msg}"
        return gr.update(), None, ""

    image.upload(on_upload, image, [image, pick, truth], api_name=False, preprocess=False)
    refresh.click(lambda: gr.Dropdown(choices=ctx.adapter_choices(vlm=True)), None, adapter, api_name=False)
    go.click(
        on_answer,
        [image, pick, adapter, tokens, description],
        [out_answer, out_check, out_ddx, out_record, out_json],
        api_name="derm_answer",
        concurrency_id="model",
        concurrency_limit=ctx.concurrency,
        preprocess=False,
    )  # the upload reaches our checks, not gradio's PIL
    return {"adapter": adapter, "vlm": True}
