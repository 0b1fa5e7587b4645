"""Interactive case tab: the step-through case environment arrives with Tree-GRPO (and `clinical/cases.py`); until
then this tab draws any tree a run wrote to `trees/`, nodes coloured by reward or advantage, text on hover."""

from __future__ import annotations

import gradio as gr

from . import html
from .context import AppContext, user_errors
from .draw import tree_nodes, tree_svg

PENDING = ("**Interactive case** (the model asks, the case answers, step by step) arrives with Tree-GRPO and the "
           "multi-step case environment. Below: trees that runs wrote to `trees/`, drawn.")


def runs_with_trees(ctx: AppContext) -> list[tuple[str, str]]:
    return [(r.label, r.id) for r in ctx.reader.runs() if ctx.reader.tree_files(r.id)]


def show_tree(ctx: AppContext, run_id: str | None, name: str | None, colour_by: str) -> tuple[str, dict]:
    if not run_id or not name:
        return html.notice("Choose a run with trees and a tree file."), {}
    if colour_by not in ("reward", "advantage"):
        colour_by = "reward"
    nodes = tree_nodes(ctx.reader.read_tree(run_id, name))
    return tree_svg(nodes, colour_by), {"run": run_id, "file": name, "nodes": len(nodes)}


def build(ctx: AppContext) -> dict:
    gr.Markdown(PENDING)
    runs = runs_with_trees(ctx)
    with gr.Row():
        run = gr.Dropdown(runs, value=None, label="Run with trees", allow_custom_value=True, scale=3)
        name = gr.Dropdown([], label="Tree file", allow_custom_value=True, scale=3)
        colour = gr.Radio(["reward", "advantage"], value="reward", label="Colour by", scale=2)
        refresh = gr.Button("↻", scale=0, min_width=40)
    if not runs:
        gr.Markdown("No run has written trees yet (Tree-GRPO runs will).")
    svg = gr.HTML()
    info = gr.JSON(visible=False)

    @user_errors
    def on_run(run_id: str | None):
        files = ctx.reader.tree_files(run_id) if run_id else []
        return gr.Dropdown(choices=files, value=files[0] if files else None)

    @user_errors
    def on_tree(run_id: str | None, name: str | None, colour_by: str):
        return show_tree(ctx, run_id, name, colour_by)

    run.change(on_run, run, name, api_name=False)
    gr.on([name.change, colour.change], on_tree, [run, name, colour], [svg, info], api_name="tree_view")
    refresh.click(lambda: gr.Dropdown(choices=runs_with_trees(ctx)), None, run, api_name=False)
    return {}
