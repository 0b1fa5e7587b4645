"""Dermatology tab: an uploaded or synthetic lesion image -> the chosen adapter's reasoning and answer -> the KG
check of each claim, the KG differential, the disclaimer.

A synthetic sample is named by a key (`condition:melanoma/0`) and regenerated from the KG on the server, so its true
label is known and the check is judged against it; an upload is verified (`app.safety.load_upload`) and judged
against the model's own diagnosis.
"""

from __future__ import annotations

import functools

import gradio as gr

from dermiq.prompts import build_prompt
from dermiq.synthetic import DEFAULT_CONDITIONS, make_sample

from . import html
from .context import AppContext, user_errors
from .kgcheck import check
from .safety import Refused, load_upload

SAMPLES_PER_CONDITION = 3
SAMPLE_SEED = 7  # not the demo's training seed: samples the tiny models did not see


def sample_choices(ctx: AppContext) -> list[tuple[str, str]]:
    kg = ctx.kg("derm")
    return [(f"{kg.label(c)} · sample {i + 1}", f"{c}/{i}") for c in DEFAULT_CONDITIONS
            for i in range(SAMPLES_PER_CONDITION)]


def sample(ctx: AppContext, key: str):
    """(image, meta) of a sample key; Refused for anything not in the sample list."""
    cond, _, idx = (key or "").rpartition("/")
    if cond not in DEFAULT_CONDITIONS or idx not in {str(i) for i in range(SAMPLES_PER_CONDITION)}:
        raise Refused(f"{key!r} is not one of the synthetic samples")
    return make_sample(ctx.kg("derm"), cond, SAMPLE_SEED, int(idx), size=224)


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
    found = "; ".join(f"{t}: {', '.join(kg.label(i) for i in ids)}" for t, ids in meta["findings"].items() if ids)
    truth = (f"Synthetic sample (rendered from the KG). True label: **{kg.label(meta['condition_id'])}**, "
             f"Fitzpatrick type {meta['fitzpatrick']}. Drawn findings: {found}.")
    return str(out), truth


@functools.lru_cache(maxsize=4)
def default_labels(kg) -> tuple[str, ...]:
    """The synthetic data's label set (the DermIQ recipes' default); a run trained on other labels answers in its own."""
    return tuple(kg.label(kg.require(c, "condition")) for c in DEFAULT_CONDITIONS)


def answer(ctx: AppContext, image: str | None, sample_key: str | None, adapter: str | None,
           max_new_tokens: float | None) -> tuple[str, str, str, dict]:
    """The model's answer, the KG check card, the differential card, and the raw result as JSON."""
    run_id, stage = ctx.parse_adapter(adapter)
    if sample_key:
        img, meta = sample(ctx, sample_key)
        reference, source, case = meta["condition_id"], "sample", meta["findings"]
    elif image:
        img, reference, source, case = load_upload(image), None, None, None
    else:
        raise Refused("upload an image or pick a synthetic sample")
    kg = ctx.kg("derm")
    messages = build_prompt(default_labels(kg))  # the format and label list DermIQ runs are trained with
    gen = ctx.service.generate(run_id, stage, messages, [img], max_new_tokens)
    res = check(gen.text, kg, reference, source, case)
    meta_line = (f"{run_id} ({stage}) · greedy · {gen.new_tokens} new tokens in {gen.seconds:.2f} s"
                 + (f" · model loaded in {gen.load_seconds:.1f} s" if gen.load_seconds else ""))
    out = {"run": run_id, "stage": stage, "text": gen.text, "reasoning": gen.reasoning, "answer": gen.answer,
           "check": res.to_dict(), "disclaimer": html.DISCLAIMER}
    return (html.answer_card("Model answer", gen.reasoning, gen.answer, meta_line),
            html.check_card(res, "dermatology KG"), html.differential_card(res), out)


def build(ctx: AppContext) -> dict:
    """The tab's components; returns the adapter dropdown so the page can refresh it on load."""
    with gr.Row():
        with gr.Column(scale=2):
            pick = gr.Dropdown(sample_choices(ctx), value=None, label="Synthetic sample (from the dermatology KG)",
                               elem_id="derm-sample",
                               info="or upload your own image below")
            image = gr.Image(type="filepath", sources=["upload"], label="Lesion image (PNG, JPEG, WebP or BMP; ≤ 10 MB)",
                             height=260, elem_id="derm-image")
            truth = gr.Markdown()
            with gr.Row():
                adapter = gr.Dropdown(ctx.adapter_choices(vlm=True), label="Model (run · method · stage)",
                                      allow_custom_value=True, scale=5, elem_id="derm-adapter")
                refresh = gr.Button("↻", scale=0, min_width=40)
            tokens = gr.Slider(8, 256, value=ctx.max_new_tokens, step=8, label="Max new tokens (greedy)")
            go = gr.Button("Answer and check against the KG", variant="primary", elem_id="derm-run")
            if not ctx.reader.run_ids():
                gr.Markdown(ctx.no_runs_text())
        with gr.Column(scale=3):
            out_answer = gr.HTML(html.disclaimer(), elem_id="derm-answer")
            out_check = gr.HTML(elem_id="derm-check")
            out_ddx = gr.HTML(elem_id="derm-ddx")
            with gr.Accordion("Raw result (JSON)", open=False):
                out_json = gr.JSON()

    @user_errors
    def on_sample(sample_key: str | None):
        if not sample_key:  # cleared because the user uploaded an image: keep that image
            return gr.update(), ""
        return sample_file(ctx, sample_key)

    @user_errors
    def on_answer(image: str | None, sample_key: str | None, adapter: str | None, max_new_tokens: float | None):
        return answer(ctx, image, sample_key, adapter, max_new_tokens)

    pick.change(on_sample, pick, [image, truth], api_name="derm_sample")
    image.upload(lambda: (None, ""), None, [pick, truth], api_name=False)
    refresh.click(lambda: gr.Dropdown(choices=ctx.adapter_choices(vlm=True)), None, adapter, api_name=False)
    go.click(on_answer, [image, pick, adapter, tokens],
             [out_answer, out_check, out_ddx, out_json], api_name="derm_answer", concurrency_id="model",
             concurrency_limit=ctx.concurrency)
    return {"adapter": adapter, "vlm": True}

