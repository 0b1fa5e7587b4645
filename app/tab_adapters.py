"""Adapters tab: each run's adapter with its model card; export (optionally merged onto a 16-bit base) through
`training.export.export_run`, downloaded as a zip. Exports are written to the app's scratch folder, never into the
runs root, so the browser only ever reads runs."""

from __future__ import annotations

import re
import shutil
import time

import gradio as gr

from . import html
from .context import AppContext, user_errors


def card(ctx: AppContext, run_id: str | None) -> str:
    if not run_id:
        return ctx.no_runs_text() if not ctx.reader.run_ids() else "Choose a run."
    info = ctx.reader.info(run_id)
    if not info.stages:
        return f"`{run_id}` has no adapter yet (no adapter/ and no checkpoint with one)."
    return ctx.reader.model_card(run_id).split("---\n", 2)[-1]  # drop the YAML front matter


def export(ctx: AppContext, run_id: str | None, merge: bool) -> tuple[str, dict]:
    """(zip path, export result): the adapter, medrl_config.yaml, the model card, and merged/ when asked."""
    from training.export import export_run

    if not run_id:
        raise ValueError("choose a run first")
    run = ctx.reader.run(run_id)  # confined
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = ctx.scratch / "exports" / f"{slug}-{stamp}"
    res = export_run(run.path, out, merge=bool(merge), dtype="bfloat16")
    archive = shutil.make_archive(
        str(ctx.scratch / "downloads" / f"{slug}{'-merged' if merge else ''}-{stamp}"), "zip", root_dir=out
    )
    shutil.rmtree(out, ignore_errors=True)
    res = {k: v for k, v in res.items() if k not in ("adapter", "merged", "source")}
    return archive, {"run": run_id, "merged": bool(merge), **res, "zip": archive.rsplit("/", 1)[-1]}


def build(ctx: AppContext) -> dict:
    choices = ctx.run_choices(with_adapter=True)
    with gr.Row():
        run = gr.Dropdown(
            choices, value=choices[0][1] if choices else None, label="Run", allow_custom_value=True, scale=5
        )
        refresh = gr.Button("↻", scale=0, min_width=40)
    with gr.Row():
        with gr.Column(scale=3):
            card_md = gr.Markdown(
                card(ctx, choices[0][1]) if choices else ctx.no_runs_text(), elem_id="adapter-card"
            )
        with gr.Column(scale=2):
            gr.HTML(html.disclaimer())
            merge = gr.Checkbox(
                label="Also merge onto a 16-bit copy of the base (bigger; loads the base model)"
            )
            go = gr.Button("Export and download (.zip)", variant="primary")
            file = gr.File(label="Download", interactive=False)
            result = gr.JSON(label="Export result")

    @user_errors
    def on_card(run_id: str | None):
        return card(ctx, run_id)

    @user_errors
    def on_export(run_id: str | None, merge: bool):
        return export(ctx, run_id, merge)

    run.change(on_card, run, card_md, api_name="adapter_card")

    def on_refresh():
        return gr.Dropdown(choices=ctx.run_choices(with_adapter=True))

    refresh.click(on_refresh, None, run, api_name=False)
    go.click(
        on_export,
        [run, merge],
        [file, result],
        api_name="adapter_export",
        concurrency_id="model",
        concurrency_limit=ctx.concurrency,
    )
    return {"run": run, "refresh": [(on_refresh, None, run)]}
