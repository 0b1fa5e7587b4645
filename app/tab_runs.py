"""Training runs tab: curves from metrics.jsonl (reward, per-objective, accuracy, loss), two runs compared on the
same axes and summarised side by side, and each run's evaluations (eval/*.json tables, eval/*.png plots)."""

from __future__ import annotations

import gradio as gr
import pandas as pd
from PIL import Image

from . import html
from .context import AppContext, user_errors
from .safety import load_upload

N_PLOTS = 4
NONE = ""


def metric_choices(ctx: AppContext, run_a: str | None, run_b: str | None) -> list[str]:
    names: list[str] = []
    for rid in (run_a, run_b):
        if rid:
            names += [m for m in ctx.reader.metric_names(rid) if m not in names]
    return names


def frame(ctx: AppContext, metric: str, runs: list[str]) -> pd.DataFrame:
    rows = [{"step": s, "value": v, "run": rid} for rid in runs for s, v in ctx.reader.series(rid, metric)]
    return pd.DataFrame(rows, columns=["step", "value", "run"])


def summary_html(ctx: AppContext, run_id: str | None) -> str:
    if not run_id:
        return html.notice("Choose a run to compare.")
    s = ctx.reader.summary(run_id)
    parts = [f'<div class="medrl-card"><h3>{html.escape(run_id)}</h3>',
             html.table(["", ""], [[k, "" if v is None else v] for k, v in s.items() if k != "run"])]
    stages = ctx.reader.stage_table(run_id)
    if stages is not None:
        header, rows = stages
        parts.append('<div class="medrl-muted">Pipeline stages (this run\'s folder, oldest first)</div>'
                     + html.table(header, rows))
    for name, rows in ctx.reader.eval_tables(run_id):
        parts.append(f'<div class="medrl-muted">Evaluation: {html.escape(name)}</div>' + html.table(["metric", "value"], rows))
    if not ctx.reader.eval_files(run_id):
        parts.append('<div class="medrl-muted">No evaluation yet (eval/ arrives with the pipelines\' evaluate step).</div>')
    return "".join(parts) + "</div>"


def eval_images(ctx: AppContext, run_id: str | None) -> list[Image.Image]:
    """eval/*.png (confusion matrices, calibration plots), verified like uploads, as images for a gallery."""
    if not run_id:
        return []
    return [load_upload(ctx.reader.eval_file(run_id, n)) for n in ctx.reader.eval_files(run_id) if n.endswith(".png")]


def compare(ctx: AppContext, run_a: str | None, run_b: str | None, metrics: list[str] | None) -> list:
    """N_PLOTS plot updates (one metric each, both runs on the same axes), then the two summaries."""
    runs = [r for r in (run_a, run_b) if r]
    for r in runs:
        ctx.reader.run(r)  # confined and a run, else Refused
    available = metric_choices(ctx, run_a, run_b)
    chosen = [m for m in (metrics or []) if m in available][:N_PLOTS] or available[:2]
    plots = []
    for i in range(N_PLOTS):
        if i < len(chosen):
            plots.append(gr.LinePlot(frame(ctx, chosen[i], runs), x="step", y="value", color="run", title=chosen[i],
                                     visible=True))
        else:
            plots.append(gr.LinePlot(visible=False))
    images = eval_images(ctx, run_a) + eval_images(ctx, run_b)
    return [*plots, summary_html(ctx, run_a), summary_html(ctx, run_b), gr.Gallery(images, visible=bool(images))]


def build(ctx: AppContext) -> dict:
    choices = ctx.run_choices()
    with gr.Row():
        run_a = gr.Dropdown(choices, value=choices[0][1] if choices else None, label="Run A", allow_custom_value=True,
                            scale=4, elem_id="runs-a")
        run_b = gr.Dropdown([("(none)", NONE), *choices], value=NONE, label="Run B (compare)", allow_custom_value=True,
                            scale=4)
        refresh = gr.Button("↻", scale=0, min_width=40)
    metrics = gr.Dropdown([], multiselect=True, max_choices=N_PLOTS, label="Metrics (up to 4; default: the first two)",
                          allow_custom_value=True)
    show = gr.Button("Plot", variant="primary", elem_id="runs-plot")
    if not choices:
        gr.Markdown(ctx.no_runs_text())
    with gr.Row():
        plots = [gr.LinePlot(visible=False, height=260, elem_classes=["medrl-plot"]) for _ in range(N_PLOTS)]
    with gr.Row():
        sum_a, sum_b = gr.HTML(), gr.HTML()
    gallery = gr.Gallery(label="Evaluation plots (eval/*.png)", height=240, columns=4, visible=False)

    @user_errors
    def on_compare(run_a: str | None, run_b: str | None, metrics: list[str] | None):
        return compare(ctx, run_a, run_b, metrics)

    @user_errors
    def on_runs_changed(run_a: str | None, run_b: str | None):
        for r in (run_a, run_b):
            if r:
                ctx.reader.run(r)
        return gr.Dropdown(choices=metric_choices(ctx, run_a, run_b), value=[])

    def on_refresh():
        ch = ctx.run_choices()
        return gr.Dropdown(choices=ch), gr.Dropdown(choices=[("(none)", NONE), *ch])

    show.click(on_compare, [run_a, run_b, metrics], [*plots, sum_a, sum_b, gallery], api_name="runs_compare")
    run_a.change(on_runs_changed, [run_a, run_b], metrics, api_name=False)
    run_b.change(on_runs_changed, [run_a, run_b], metrics, api_name=False)
    refresh.click(on_refresh, None, [run_a, run_b], api_name="runs_list")
    return {"run_a": run_a, "run_b": run_b}
