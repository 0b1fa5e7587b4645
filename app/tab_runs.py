"""Training runs tab: curves from metrics.jsonl (reward, per-objective, accuracy, loss), two runs compared on the
same axes and summarised side by side, and each run's evaluations (eval/*.json tables, eval/*.png plots).

Views that cannot go stale: gradio's line plot swaps new data into a drawn chart without rebuilding its spec (title,
run colours), and when the title changes in the same update it rebuilds from the data it had, so a chart titled
"loss" drew the previous run's curve. Plot therefore first unmounts and empties every chart, summary and gallery,
then draws the chosen ones afresh. The run lists are re-read on page load and on ↻, and a run deleted since the
list was drawn is refused with one line (never a traceback or a server path).
"""

from __future__ import annotations

import functools

import gradio as gr
import pandas as pd
import yaml
from PIL import Image

from . import html
from .context import AppContext, user_errors
from .rollouts_view import ALL_PARTS, parts_of, rollouts_html
from .safety import Refused, load_upload

N_PLOTS = 4
NONE = ""
RUN_COLORS = ("#1d4ed8", "#c2410c")  # run A blue, run B orange, on every chart
EVAL_SIDE = 1600  # eval PNGs (confusion matrices) keep their detail; uploads are cut to the model's 448
GONE = (
    "a run's files changed while they were read (deleted, or still being written?); press ↻ to refresh the "
    "run lists and try again"
)


def readable(fn):
    """A run deleted or rewritten between the check and the read raises OSError (or a half-written config a YAML
    error), whose text carries the server path: turn it into the tab's one-line message instead."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (OSError, yaml.YAMLError):
            raise Refused(GONE) from None

    return wrapper


def selected_runs(ctx: AppContext, run_a: str | None, run_b: str | None) -> list[str]:
    """The chosen runs, each once, A first; each must still be a run now (Refused otherwise), because the lists
    the browser shows may be older than the runs folder."""
    runs: list[str] = []
    for rid in (run_a, run_b):
        if rid and rid not in runs:
            ctx.reader.run(rid)  # confined and a run, else Refused
            runs.append(rid)
    return runs


def metric_choices(ctx: AppContext, run_a: str | None, run_b: str | None) -> list[str]:
    names: list[str] = []
    for rid in selected_runs(ctx, run_a, run_b):
        names += [m for m in ctx.reader.metric_names(rid) if m not in names]
    return names


def chosen_metrics(available: list[str], metrics: list[str] | None) -> list[str]:
    """The asked metrics the runs have (at most N_PLOTS), else the first two: unknown names are dropped, not
    drawn as empty charts."""
    return [m for m in (metrics or []) if m in available][:N_PLOTS] or available[:2]


def frame(ctx: AppContext, metric: str, runs: list[str]) -> pd.DataFrame:
    rows = [{"step": s, "value": v, "run": rid} for rid in runs for s, v in ctx.reader.series(rid, metric)]
    return pd.DataFrame(rows, columns=["step", "value", "run"])


def shown_plot(ctx: AppContext, metric: str, runs: list[str]) -> gr.LinePlot:
    """One metric, the chosen runs on the same axes; the colour map names exactly these runs, so the legend can
    never list a run that is not drawn."""
    colors = {rid: RUN_COLORS[i % len(RUN_COLORS)] for i, rid in enumerate(runs)}
    return gr.LinePlot(
        frame(ctx, metric, runs),
        x="step",
        y="value",
        color="run",
        color_map=colors,
        title=metric,
        visible=True,
    )


def hidden_plot() -> gr.LinePlot:
    """An unmounted chart with no data: nothing of an earlier plot survives, even if it is shown again later."""
    return gr.LinePlot(value=None, title=None, visible=False)


def plot_updates(ctx: AppContext, runs: list[str], metrics: list[str] | None) -> list[gr.LinePlot]:
    """N_PLOTS updates: the chosen metrics drawn, the rest hidden and emptied."""
    available: list[str] = []
    for rid in runs:
        available += [m for m in ctx.reader.metric_names(rid) if m not in available]
    chosen = chosen_metrics(available, metrics)
    return [shown_plot(ctx, chosen[i], runs) if i < len(chosen) else hidden_plot() for i in range(N_PLOTS)]


def summary_html(ctx: AppContext, run_id: str | None) -> str:
    if not run_id:
        return html.notice("Choose a run to compare.")
    s = ctx.reader.summary(run_id)
    parts = [
        f'<div class="medrl-card"><h3>{html.escape(run_id)}</h3>',
        html.table(["", ""], [[k, "" if v is None else v] for k, v in s.items() if k != "run"]),
    ]
    stages = ctx.reader.stage_table(run_id)
    if stages is not None:
        header, rows = stages
        parts.append(
            '<div class="medrl-muted">Pipeline stages (this run\'s folder, oldest first)</div>'
            + html.table(header, rows)
        )
    for name, rows in ctx.reader.eval_tables(run_id):
        parts.append(
            f'<div class="medrl-muted">Evaluation: {html.escape(name)}</div>'
            + html.table(["metric", "value"], rows)
        )
    if not ctx.reader.eval_files(run_id):
        parts.append(
            '<div class="medrl-muted">No evaluation yet (eval/ arrives with the pipelines\' evaluate step).</div>'
        )
    return "".join(parts) + "</div>"


def eval_images(ctx: AppContext, run_id: str | None) -> list[tuple[Image.Image, str]]:
    """eval/*.png (confusion matrices, calibration plots), verified like uploads but kept near full size, each with
    its run and name as caption; an unreadable one is left out rather than failing the whole view."""
    if not run_id:
        return []
    out = []
    for name in ctx.reader.eval_files(run_id):
        if name.endswith(".png"):
            try:
                out.append(
                    (
                        load_upload(ctx.reader.eval_file(run_id, name), max_side=EVAL_SIDE),
                        f"{run_id} · {name}",
                    )
                )
            except Refused:
                continue
    return out


def cleared() -> list:
    """What Plot shows first: every chart hidden and emptied, no summaries, no gallery (see the module note)."""
    return [*[hidden_plot() for _ in range(N_PLOTS)], "", "", gr.Gallery(value=None, visible=False)]


def compare(ctx: AppContext, run_a: str | None, run_b: str | None, metrics: list[str] | None) -> list:
    """N_PLOTS plot updates (one metric each, both runs on the same axes), then the two summaries and the gallery."""
    runs = selected_runs(ctx, run_a, run_b)
    b = run_b if run_b and run_b != run_a else None
    images = [img for rid in runs for img in eval_images(ctx, rid)]
    return [
        *plot_updates(ctx, runs, metrics),
        summary_html(ctx, run_a or None),
        summary_html(ctx, b),
        gr.Gallery(value=images or None, visible=bool(images)),
    ]


def run_lists(ctx: AppContext, run_a: str | None = None, run_b: str | None = None) -> tuple:
    """The two run dropdowns re-read from the runs folder (runs trained since appear, deleted ones go); a choice
    that no longer exists falls back to the first run (A) or none (B). Then the no-runs note, shown only when
    there is no run at all."""
    choices = ctx.run_choices()
    ids = {rid for _, rid in choices}
    a = run_a if run_a in ids else (choices[0][1] if choices else None)
    b = run_b if run_b in ids and run_b != a else NONE
    return (
        gr.Dropdown(choices=choices, value=a),
        gr.Dropdown(choices=[("(none)", NONE), *choices], value=b),
        gr.Markdown(visible=not choices),
    )


def rollout_choices(ctx: AppContext, run_id: str | None):
    """The steps run A wrote rollouts for (the last chosen) and the reward parts of that step; the view cleared."""
    steps = ctx.reader.rollout_steps(run_id) if run_id else []
    parts = parts_of(ctx.reader.rollouts(run_id, steps[-1])) if steps else []
    return (
        gr.Dropdown(choices=[str(s) for s in steps], value=str(steps[-1]) if steps else None),
        gr.Dropdown(choices=[("every group", ALL_PARTS), *[(p, p) for p in parts]], value=ALL_PARTS),
        "" if steps else html.notice("This run wrote no rollouts (RL runs do: run.log_rollouts)."),
    )


def show_rollouts(ctx: AppContext, run_id: str | None, step: str | None, part: str | None) -> str:
    if not run_id or not step:
        return html.notice("Choose run A and a step.")
    try:
        n = int(step)
    except ValueError:
        raise Refused(f"step: expected a step number, got {step!r}") from None
    return rollouts_html(ctx.reader.rollouts(run_id, n), part or ALL_PARTS, kg_claims(ctx, run_id))


# The KG a run's rewards read, by its reward modules: its completions' claims are judged against it.
REWARD_KGS = {"dermiq.rewards": "derm", "clinical.rewards": "clinical"}


def kg_claims(ctx: AppContext, run_id: str):
    """A function row -> its completion's claims as badges, for runs whose rewards use a KG; None for others.
    A row whose gold answer is a KG condition (DermIQ's label) is judged against it; others (Clinical-R1's letters)
    against the case in their prompt."""
    from .kgcheck import check

    modules = ctx.reader.run(run_id).read_config().get("reward_modules") or []
    name = next((REWARD_KGS[m] for m in modules if m in REWARD_KGS), None)
    if name is None:
        return None
    kg = ctx.kg(name)

    def reference(answer) -> str | None:
        """The row's gold answer as a KG condition id (DermIQ's label), None when it names none (a letter)."""
        from knowledge_graph.errors import KGError

        try:
            return kg.require(str(answer), "condition") if answer else None
        except KGError:
            return None

    def claims(row: dict) -> str:
        text, ref = str(row.get("completion", "")), reference(row.get("answer"))
        res = check(text, kg, ref) if ref else check(text, kg, case_text=str(row.get("prompt", "")))
        if not res.claims:
            return '<span class="medrl-muted">no KG term</span>'
        return " ".join(f"{html.escape(c.label)} {html.badge(c.badge)}" for c in res.claims)

    return claims


def build(ctx: AppContext) -> dict:
    """The tab's components; returns the run dropdowns and the refresh (fn, inputs, outputs) the page runs on load."""
    choices = ctx.run_choices()
    with gr.Row():
        run_a = gr.Dropdown(
            choices,
            value=choices[0][1] if choices else None,
            label="Run A",
            allow_custom_value=True,
            scale=4,
            elem_id="runs-a",
        )
        run_b = gr.Dropdown(
            [("(none)", NONE), *choices],
            value=NONE,
            label="Run B (compare)",
            allow_custom_value=True,
            scale=4,
            elem_id="runs-b",
        )
        refresh = gr.Button("↻", scale=0, min_width=40, elem_id="runs-refresh")
    metrics = gr.Dropdown(
        [],
        multiselect=True,
        max_choices=N_PLOTS,
        label="Metrics (up to 4; default: the first two)",
        allow_custom_value=True,
        elem_id="runs-metrics",
    )
    show = gr.Button("Plot", variant="primary", elem_id="runs-plot")
    no_runs = gr.Markdown(ctx.no_runs_text(), visible=not choices)
    with gr.Row():
        plots = [
            gr.LinePlot(visible=False, height=260, elem_id=f"runs-chart-{i}", elem_classes=["medrl-plot"])
            for i in range(N_PLOTS)
        ]
    with gr.Row():
        sum_a, sum_b = gr.HTML(elem_id="runs-summary-a"), gr.HTML(elem_id="runs-summary-b")
    gallery = gr.Gallery(
        label="Evaluation plots (eval/*.png; click one to enlarge)",
        height=440,
        columns=3,
        object_fit="contain",
        allow_preview=True,
        preview=True,
        format="png",
        visible=False,
        elem_id="runs-gallery",
    )
    view = [*plots, sum_a, sum_b, gallery]
    with gr.Accordion("Rollouts: what an RL step sampled, beside what scored it (run A)", open=False):
        with gr.Row():
            roll_step = gr.Dropdown([], label="Step", allow_custom_value=True, elem_id="runs-rollout-step")
            roll_part = gr.Dropdown(
                [("every group", ALL_PARTS)],
                value=ALL_PARTS,
                label="Only groups this reward part told apart",
                allow_custom_value=True,
                elem_id="runs-rollout-part",
            )
            roll_show = gr.Button("Show", scale=0, min_width=80, elem_id="runs-rollout-show")
        roll_html = gr.HTML(elem_id="runs-rollouts")

    @user_errors
    @readable
    def on_rollout_choices(run_a: str | None):
        return rollout_choices(ctx, run_a)

    @user_errors
    @readable
    def on_rollouts(run_a: str | None, step: str | None, part: str | None):
        return show_rollouts(ctx, run_a, step, part)

    @user_errors
    @readable
    def on_compare(run_a: str | None, run_b: str | None, metrics: list[str] | None):
        return compare(ctx, run_a, run_b, metrics)

    @user_errors
    @readable
    def on_runs_changed(run_a: str | None, run_b: str | None):
        return gr.Dropdown(choices=metric_choices(ctx, run_a, run_b), value=[])

    @user_errors
    @readable
    def on_refresh(run_a: str | None = None, run_b: str | None = None):
        return run_lists(ctx, run_a, run_b)

    show.click(cleared, None, view, api_name=False, show_progress="hidden").then(
        on_compare, [run_a, run_b, metrics], view, api_name="runs_compare"
    )
    run_a.change(on_runs_changed, [run_a, run_b], metrics, api_name=False)
    run_a.change(on_rollout_choices, [run_a], [roll_step, roll_part, roll_html], api_name=False)
    roll_show.click(on_rollouts, [run_a, roll_step, roll_part], roll_html, api_name="runs_rollouts")
    run_b.change(on_runs_changed, [run_a, run_b], metrics, api_name=False)
    refresh.click(on_refresh, [run_a, run_b], [run_a, run_b, no_runs], api_name="runs_list")
    return {"run_a": run_a, "run_b": run_b, "refresh": (on_refresh, [run_a, run_b], [run_a, run_b, no_runs])}
