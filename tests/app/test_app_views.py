"""Robust views, without a browser: charts hold the selected runs' data only and hidden charts are
emptied; the run lists are re-read and a deleted run is refused in one line; bad uploads become one-line messages
without a server path; a KG lookup in the wrong graph says so and leaves no old card. The runs are written by hand
(a config and a metrics file are a run to the app), so these tests need no training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gradio as gr
import pytest
import yaml
from PIL import Image

from app import tab_kg, tab_runs
from app.context import AppContext, user_errors
from app.safety import MAX_PIXELS, Refused, check_upload, load_upload, upload_path


def make_run(
    root: Path,
    run_id: str,
    metrics: dict[str, list[float]],
    eval_png: tuple[int, int] | None = None,
    config: dict | None = None,
) -> Path:
    """A run as the app reads it: config.yaml (plus ``config``), metrics.jsonl (one row a step), optionally
    eval/confusion.png."""
    d = root / run_id
    d.mkdir(parents=True)
    cfg = {"trainer": "sft", "model": {"name": "embedded:qwen2"}, **(config or {})}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    steps = max(len(v) for v in metrics.values())
    rows = [{"step": i + 1, **{k: v[i] for k, v in metrics.items() if i < len(v)}} for i in range(steps)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if eval_png:
        (d / "eval").mkdir()
        Image.new("RGB", eval_png, (200, 40, 40)).save(d / "eval" / "confusion.png")
    return d


def make_runs(root: Path) -> Path:
    """p/a logs loss and reward (and has a wide confusion plot), p/b logs loss only, p/c is there to be deleted."""
    make_run(root, "p/a", {"loss": [5.0, 4.0, 3.0], "reward/mean": [0.1, 0.2, 0.3]}, eval_png=(1200, 400))
    make_run(root, "p/b", {"loss": [50.0, 40.0, 30.0, 20.0]})
    make_run(root, "p/c", {"loss": [1.0]})
    return root


@pytest.fixture
def ctx(tmp_path) -> AppContext:
    return AppContext(make_runs(tmp_path / "runs"), scratch=tmp_path / "scratch")


def runs_in(plot: gr.LinePlot) -> set[str]:
    """The runs whose points a plot update carries (its data frame's `run` column)."""
    col = plot.value["columns"].index("run")
    return {row[col] for row in plot.value["data"]}


def no_server_path(message: str, *paths: Path) -> bool:
    return "/tmp" not in message and all(str(p) not in message for p in paths) and "\n" not in message


# ---- charts -------------------------------------------------------------------------------------------------------
def test_plot_b_after_a_carries_only_b(ctx):
    first = tab_runs.compare(ctx, "p/a", "", None)[: tab_runs.N_PLOTS]
    assert [p.constructor_args["title"] for p in first[:2]] == ["reward/mean", "loss"]  # the usual order
    second = tab_runs.compare(ctx, "p/b", "", None)
    plots = second[: tab_runs.N_PLOTS]
    shown = [p for p in plots if p.constructor_args["visible"] is True]
    assert [p.constructor_args["title"] for p in shown] == ["loss"]  # B logs one metric: one chart
    assert runs_in(shown[0]) == {"p/b"} and [r[1] for r in shown[0].value["data"]] == [50.0, 40.0, 30.0, 20.0]
    assert shown[0].constructor_args["color_map"] == {
        "p/b": tab_runs.RUN_COLORS[0]
    }  # the legend names B only
    for hidden in plots[1:]:  # hidden and emptied, title cleared: nothing of run A survives
        assert hidden.constructor_args == {"value": None, "title": None, "visible": False}


def test_fewer_metrics_hide_and_empty_the_other_charts(ctx):
    plots = tab_runs.compare(ctx, "p/a", "p/b", ["loss", "no-such-metric"])[: tab_runs.N_PLOTS]
    assert plots[0].constructor_args["visible"] is True and runs_in(plots[0]) == {"p/a", "p/b"}
    assert plots[0].constructor_args["color_map"] == dict(zip(("p/a", "p/b"), tab_runs.RUN_COLORS))
    assert all(p.value is None and p.constructor_args["visible"] is False for p in plots[1:])


def test_the_same_run_twice_is_one_series(ctx):
    out = tab_runs.compare(ctx, "p/b", "p/b", ["loss"])
    assert runs_in(out[0]) == {"p/b"} and len(out[0].value["data"]) == 4
    assert "Choose a run" in out[tab_runs.N_PLOTS + 1]  # no second summary of the same run


def test_plot_first_clears_every_view(ctx):
    view = tab_runs.cleared()
    assert len(view) == tab_runs.N_PLOTS + 3
    assert all(p.value is None and p.constructor_args["visible"] is False for p in view[: tab_runs.N_PLOTS])
    assert view[tab_runs.N_PLOTS : tab_runs.N_PLOTS + 2] == ["", ""]
    assert view[-1].constructor_args == {"value": None, "visible": False}


def test_eval_pngs_are_shown_whole(ctx):
    gallery = tab_runs.compare(ctx, "p/a", "", None)[-1]
    ((img, caption),) = gallery.constructor_args["value"]
    assert img.size == (1200, 400) and caption == "p/a · confusion.png"  # not cut to the model's 448 pixels
    (ctx.runs_root / "p/a/eval/broken.png").write_text("not a png")
    assert len(tab_runs.eval_images(ctx, "p/a")) == 1  # an unreadable plot is left out, the view still draws


def test_gallery_fits_images_uncropped(ctx):
    with gr.Blocks() as demo:
        tab_runs.build(ctx)
    gallery = next(b for b in demo.blocks.values() if isinstance(b, gr.Gallery))
    assert gallery.object_fit == "contain" and gallery.allow_preview and gallery.preview  # whole, enlargeable


# ---- run lists ----------------------------------------------------------------------------------------------------
def test_run_lists_are_reread(ctx):
    a, b, note = tab_runs.run_lists(ctx, "p/c", "p/b")
    assert a.constructor_args["value"] == "p/c" and b.constructor_args["value"] == "p/b"
    shutil.rmtree(ctx.runs_root / "p/c")
    make_run(ctx.runs_root, "p/new", {"loss": [2.0]})
    a, b, note = tab_runs.run_lists(ctx, "p/c", "p/c")
    ids = [rid for _, rid in a.constructor_args["choices"]]
    assert ids == ["p/a", "p/b", "p/new"]  # the deleted run is gone, the new one listed
    assert a.constructor_args["value"] == "p/a" and b.constructor_args["value"] == tab_runs.NONE
    assert note.constructor_args["visible"] is False


def test_no_runs_note_shows_when_the_folder_empties(ctx):
    shutil.rmtree(ctx.runs_root)
    a, _, note = tab_runs.run_lists(ctx, "p/a", "")
    assert a.constructor_args["choices"] == [] and a.constructor_args["value"] is None
    assert note.constructor_args["visible"] is True


def test_a_deleted_run_is_one_line_without_a_path(ctx):
    shutil.rmtree(ctx.runs_root / "p/c")
    handler = user_errors(tab_runs.readable(tab_runs.compare))
    with pytest.raises(gr.Error) as err:
        handler(ctx, "p/c", "", None)
    assert "not a run" in err.value.message and "↻" in err.value.message
    assert no_server_path(err.value.message, ctx.runs_root)


def test_a_run_vanishing_mid_read_is_one_line_without_a_path(ctx, monkeypatch):
    def gone(*_):
        raise FileNotFoundError(2, "No such file or directory", str(ctx.runs_root / "p/a/metrics.jsonl"))

    monkeypatch.setattr(ctx.reader, "series", gone)
    with pytest.raises(gr.Error) as err:
        user_errors(tab_runs.readable(tab_runs.compare))(ctx, "p/a", "", None)
    assert err.value.message == tab_runs.GONE and no_server_path(err.value.message, ctx.runs_root)


def test_a_half_written_config_does_not_break_the_list(ctx):
    (ctx.runs_root / "p/c/config.yaml").write_text("trainer: [unclosed")
    assert [r.id for r in ctx.reader.runs()] == ["p/a", "p/b"]


def test_page_load_rereads_the_run_lists(ctx):
    from app.main import build_app

    demo = build_app(ctx)
    ids = {b.elem_id: b._id for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    loads = [d for d in demo.config["dependencies"] if any(t[1] == "load" for t in d["targets"])]
    assert any({ids["runs-a"], ids["runs-b"]} <= set(d["outputs"]) for d in loads)
    deps = demo.config["dependencies"]
    compare = next(d for d in deps if d["api_name"] == "runs_compare")
    first = deps[compare["trigger_after"]]  # Plot empties every chart first, then draws
    assert [tuple(t) for t in first["targets"]] == [(ids["runs-plot"], "click")] and set(
        first["outputs"]
    ) == set(compare["outputs"])


# ---- uploads ------------------------------------------------------------------------------------------------------
def _png(path: Path, size=(300, 200)) -> Path:
    Image.new("RGB", size, (170, 110, 90)).save(path, format="PNG")
    return path


def _bad_uploads(d: Path, png_header) -> dict[str, Path]:
    text = d / "x.png"
    text.write_text("clinic notes, not an image\n")
    empty = d / "empty.png"
    empty.write_bytes(b"")
    cut = _png(d / "cut.png")
    cut.write_bytes(cut.read_bytes()[:120])
    gif = d / "anim.gif"
    Image.new("RGB", (8, 8)).save(gif)
    renamed_gif = d / "anim.png"
    renamed_gif.write_bytes(gif.read_bytes())
    return {
        "text renamed .png": text,
        "empty": empty,
        "truncated": cut,
        "gif": gif,
        "gif renamed .png": renamed_gif,
        "png named .txt": _png(d / "photo.txt"),
        "no extension": _png(d / "photo"),
        "bomb": png_header(d / "bomb.png", 60000, 60000),
        "missing": d / "gone.png",
    }


def test_bad_uploads_are_refused_in_one_line_without_a_path(tmp_path, png_header):
    for kind, path in _bad_uploads(tmp_path, png_header).items():
        with pytest.raises(Refused) as err:
            load_upload(path)
        message = str(err.value)
        assert no_server_path(message, tmp_path) and "/" not in message, (kind, message)
        assert check_upload(str(path)) == message, kind  # the same line at upload time
        assert check_upload({"path": str(path), "orig_name": path.name}) == message, (
            kind
        )  # preprocess=False payload
    assert "pixels than the 36 MP limit" in check_upload(tmp_path / "bomb.png") and 60000**2 > MAX_PIXELS
    assert check_upload(tmp_path / "x.png").startswith("x.png is not a readable image")


def test_too_big_upload_names_only_the_file(tmp_path):
    big = _png(tmp_path / "big.png", (900, 900))
    with pytest.raises(Refused, match="big.png is .* MB; the limit is") as err:
        load_upload(big, max_bytes=1000)
    assert no_server_path(str(err.value), tmp_path)


def test_file_names_in_messages_cannot_become_markup(tmp_path):
    odd = tmp_path / "<img src=q onerror=alert(1)>.png"
    odd.write_text("nope")
    message = check_upload(odd)
    assert message and "<" not in message and ">" not in message and "=" not in message


def test_good_uploads_pass_in_every_form(tmp_path):
    good = _png(tmp_path / "lesion.png")
    assert check_upload(good) == check_upload(str(good)) == check_upload({"path": str(good)}) == ""
    assert check_upload(None) == check_upload("") == ""  # a cleared upload is not an error
    assert upload_path({"path": str(good)}) == good and upload_path(None) is None
    jpeg_named_png = tmp_path / "phone.png"  # the content decides, not the extension, among image types
    Image.new("RGB", (64, 64)).save(jpeg_named_png, format="JPEG")
    assert check_upload(jpeg_named_png) == ""
    phone = tmp_path / "IMG_0001.JPG"  # phone cameras write multi-picture JPEGs, which PIL reads as MPO
    Image.new("RGB", (64, 48)).save(phone, "MPO", save_all=True, append_images=[Image.new("RGB", (64, 48))])
    assert Image.open(phone).format == "MPO" and check_upload(phone) == ""
    assert load_upload(good).size == (300, 200) and load_upload(
        _png(tmp_path / "wide.png", (1000, 500))
    ).size == (448, 224)


# ---- knowledge graph ----------------------------------------------------------------------------------------------
def kg_handler(ctx: AppContext, api_name: str):
    """The tab's own event handler (as the page calls it), from a Blocks holding only this tab."""
    with gr.Blocks() as demo:
        tab_kg.build(ctx)
    return next(f.fn for f in demo.fns.values() if f.api_name == api_name)


@pytest.mark.parametrize(
    "graph,term,home,other",
    [("clinical", "melanoma", "dermatology", "clinical"), ("derm", "STEMI", "clinical", "dermatology")],
)
def test_lookup_in_the_wrong_graph_says_so_and_clears_the_card(ctx, graph, term, home, other):
    on_lookup = kg_handler(ctx, "kg_lookup")
    card, svg = on_lookup(graph, term)
    assert f"is in the {home} KG, not the {other} KG" in card
    assert "medrl-kg-card" not in card and svg == ""  # the old card and graph are replaced, not left standing
    card, svg = on_lookup("derm" if home == "dermatology" else "clinical", term)
    assert "medrl-kg-card" in card and svg.startswith("<svg")


def test_unknown_terms_and_checks_replace_the_card_too(ctx):
    card, svg = kg_handler(ctx, "kg_lookup")("derm", "melanomma")
    assert "not in the dermatology KG; did you mean melanoma" in card and svg == ""
    card, ddx, raw = kg_handler(ctx, "kg_check")("derm", "Chest pain; STEMI likely.", "STEMI")
    assert "is in the clinical KG, not the dermatology KG" in card and ddx == "" and "refused" in raw
