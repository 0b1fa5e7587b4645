"""Robust views in headless Chromium: a chart shows only the runs just plotted (read from the
drawn SVG's data labels), the run list drops a deleted run on ↻ and picks up a new one on reload, a text file named
x.png gets the app's one-line message with no server path on the page, and a KG lookup in the wrong graph says so
and clears the old card. The app is served over its own hand-written runs (no training), so every test is quick and
may delete runs without touching the session's trained ones. Screenshots go to each test's tmp folder."""

from __future__ import annotations

import json
import re
import shutil
import socket
import time
from pathlib import Path

import pytest
from test_app_views import make_run, make_runs

import app.tab_derm

pytestmark = pytest.mark.slow  # headless Chromium; `make test` installs it

TIMEOUT = 30_000  # ms
POINT = re.compile(r"step: ([\d.]+); value: ([-\d.e]+); run: (.+)$")
# The Dermatology tab shows check_upload's message once the tab calls it at upload time (the lead's wiring).
DERM_WIRED = "check_upload" in Path(app.tab_derm.__file__).read_text()


@pytest.fixture(scope="module")
def views_app(tmp_path_factory):
    """(url, runs root): the app over p/a, p/b, p/c and p/gone, on a free loopback port; PIL's process-wide pixel
    limit, which the server sets, is put back after."""
    from PIL import Image

    from app.context import AppContext
    from app.main import launch

    root = make_runs(tmp_path_factory.mktemp("views") / "runs")
    make_run(root, "p/gone", {"loss": [9.0, 8.0]})
    pixels = Image.MAX_IMAGE_PIXELS
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = launch(
        AppContext(root, scratch=tmp_path_factory.mktemp("views_scratch")), "127.0.0.1", port, block=False
    )
    yield demo.local_url.rstrip("/"), root
    demo.close()
    Image.MAX_IMAGE_PIXELS = pixels


@pytest.fixture
def page(new_page, views_app):
    pg = new_page(views_app[0], timeout=TIMEOUT)
    pg.get_by_text("medrl · model inspection").wait_for()
    return pg


def options(page, elem_id: str) -> list[str]:
    """The labels a Dropdown offers now (opened, read, closed)."""
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option").first.wait_for()
    labels = page.get_by_role("option").all_inner_texts()
    page.keyboard.press("Escape")
    return labels


def page_text(page) -> str:
    """Everything the page says except the header (which names the runs folder on purpose)."""
    return page.evaluate("""() => { const h = document.getElementById('medrl-header');
        return document.body.innerText.replace(h ? h.innerText : '', ''); }""")


def charts(page) -> list[dict]:
    """Each visible chart as drawn: its title and the (step, value, run) of every point in its SVG (vega labels
    every mark for screen readers, so this is the data on screen, not what the server meant to send)."""
    raw = page.evaluate("""() => Array.from(document.querySelectorAll('.medrl-plot'))
        .filter(el => el.offsetParent !== null).map(el => {
            const svg = el.querySelector('svg');
            if (!svg) return null;
            const labels = role => Array.from(svg.querySelectorAll(`[aria-roledescription="${role}"]`))
                .map(n => n.getAttribute('aria-label'));
            return {title: labels('title'), points: labels('point'), legend: labels('legend')};
        })""")
    out = []
    for c in raw:
        if c is None:
            out.append(None)
            continue
        points = [POINT.search(p).groups() for p in c["points"] if POINT.search(p)]
        out.append(
            {
                "title": " ".join(c["title"]),
                "legend": " ".join(c["legend"]),
                "points": [(float(s), float(v), r) for s, v, r in points],
            }
        )
    return out


def wait_for_charts(page, titles: list[str], timeout: float = 30) -> list[dict]:
    """The visible charts once they are exactly `titles`, drawn, and stable for half a second."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        now = charts(page)
        ready = len(now) == len(titles) and all(
            c and c["points"] and repr(t) in c["title"] for c, t in zip(now, titles)
        )
        if ready and now == last:
            return now
        last = now if ready else None
        page.wait_for_timeout(250)
    pytest.fail(f"charts never settled on {titles}: {charts(page)}")


def test_plot_a_then_b_shows_only_b(page, choose, tmp_path):
    page.get_by_role("tab", name="Training runs").click()
    choose(page, "runs-a", "p/a")
    page.locator("#runs-plot").click()
    first = wait_for_charts(page, ["reward/mean", "loss"])
    assert {p[2] for c in first for p in c["points"]} == {"p/a"}
    preview = page.locator("#runs-gallery img").first  # the confusion plot, shown whole: fitted, not cropped
    preview.wait_for()
    assert preview.evaluate("i => i.naturalWidth / i.naturalHeight") == pytest.approx(3.0)
    assert preview.evaluate("i => getComputedStyle(i).objectFit") == "contain"
    img, frame = preview.bounding_box(), page.locator("#runs-gallery").bounding_box()
    assert (
        frame["y"] <= img["y"] and img["y"] + img["height"] <= frame["y"] + frame["height"]
    )  # inside the view
    page.screenshot(path=str(tmp_path / "1-run-a.png"), full_page=True)

    choose(page, "runs-a", "p/b")
    page.locator("#runs-plot").click()
    (loss,) = wait_for_charts(page, ["loss"])  # B logs one metric: one chart, the others hidden
    assert loss["points"] == [(1.0, 50.0, "p/b"), (2.0, 40.0, "p/b"), (3.0, 30.0, "p/b"), (4.0, 20.0, "p/b")]
    assert "p/b" in loss["legend"] and "p/a" not in loss["legend"]
    assert not page.locator("#runs-gallery img").count()  # B has no eval plots: no gallery of A's
    page.screenshot(path=str(tmp_path / "2-run-b.png"), full_page=True)


def test_held_out_evaluation_is_drawn_beside_the_reward(page, choose, views_app, tmp_path):
    """A run that evaluated during training (`eval.every`): its headline held-out metric is the chart right after the
    reward, read from the same metrics.jsonl rows."""
    _, root = views_app
    metrics = {
        "reward/mean": [0.2, 0.6, 0.9],
        "eval/accuracy": [0.3, 0.4, 0.5],
        "eval/balanced_accuracy": [0.25, 0.5, 0.375],
        "loss": [1.0, 0.8, 0.7],
    }
    make_run(
        root,
        "p/evaluated",
        metrics,
        config={"trainer": "rl", "eval": {"every": 1, "metric": "balanced_accuracy"}},
    )
    page.reload()
    page.get_by_role("tab", name="Training runs").click()
    choose(page, "runs-a", "p/evaluated")
    page.locator("#runs-plot").click()
    reward, held_out = wait_for_charts(page, ["reward/mean", "eval/balanced_accuracy"])
    assert held_out["points"] == [
        (1.0, 0.25, "p/evaluated"),
        (2.0, 0.5, "p/evaluated"),
        (3.0, 0.375, "p/evaluated"),
    ]
    assert [p[1] for p in reward["points"]] == [0.2, 0.6, 0.9]
    page.screenshot(path=str(tmp_path / "eval-beside-reward.png"), full_page=True)


def test_rollout_inspector_shows_a_steps_groups_and_filters_by_reward_part(page, choose, views_app, tmp_path):
    """An RL run's rollouts/step-N.jsonl: each group's completions side by side with their reward parts, total and
    advantage; a reward part keeps only the groups it told apart."""
    _, root = views_app
    run = make_run(
        root,
        "p/rl",
        {"reward/mean": [0.5, 0.75]},
        config={"trainer": "rl", "reward_modules": ["dermiq.rewards"]},
    )
    rows = [
        {
            "step": 2,
            "group": g,
            "row": 2 * g + i,
            "prompt": f"case {g}",
            "answer": "melanoma",
            "completion": text,
            "rewards": {"acc": acc, "fmt": fmt},
            "weighted": {"acc": acc, "fmt": 0.5 * fmt},
            "reward": acc + 0.5 * fmt,
            "advantage": adv,
        }
        for g, i, text, acc, fmt, adv in [
            (0, 0, "<think>asymmetric, irregular border</think><answer>melanoma</answer>", 1.0, 1.0, 0.707),
            (0, 1, "<answer>B</answer>", 0.0, 1.0, -0.707),
            (1, 0, "A, surely", 1.0, 0.0, -0.707),
            (1, 1, "<answer>A</answer>", 1.0, 1.0, 0.707),
        ]
    ]
    (run / "rollouts").mkdir()
    (run / "rollouts" / "step-1.jsonl").write_text(json.dumps({**rows[0], "step": 1}) + "\n")
    (run / "rollouts" / "step-2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    page.reload()
    page.get_by_role("tab", name="Training runs").click()
    choose(page, "runs-a", "p/rl")
    page.get_by_text("Rollouts: what an RL step sampled").click()
    page.wait_for_function(
        "() => document.querySelector('#runs-rollout-step input').value === '2'"
    )  # the last
    page.locator("#runs-rollout-show").click()
    view = page.locator("#runs-rollouts")
    view.get_by_text("step 2: 2 group(s)").wait_for()
    cards = view.locator(".medrl-card")
    assert cards.count() == 2 and "<answer>B</answer>" in cards.nth(0).inner_text()
    assert view.locator(".medrl-adv-neg").count() == 2 and view.locator(".medrl-adv-pos").count() == 2
    assert (
        "KG claims" in view.inner_text()
    )  # the run's rewards read the dermatology KG: claims judged against it
    assert cards.nth(0).locator(".medrl-badge.medrl-supported").count() >= 1
    page.screenshot(path=str(tmp_path / "1-rollouts.png"), full_page=True)
    choose(page, "runs-rollout-part", "fmt")
    page.locator("#runs-rollout-show").click()
    view.get_by_text("step 2: 1 group(s)").wait_for()  # only group 1's format differed
    assert "A, surely" in view.inner_text() and "<answer>B</answer>" not in view.inner_text()
    page.screenshot(path=str(tmp_path / "2-rollouts-fmt.png"), full_page=True)


def test_a_review_session_keeps_swaps_rejects_and_exports(page, choose, views_app, tmp_path):
    """The Review pairs tab: three KG-judged pairs reviewed (keep, swap with a reason, reject), each verdict stored
    as it is given, the running agreement shown, and the reviewed pairs downloaded as DPO JSONL."""
    from app.feedback import FeedbackStore

    _, root = views_app
    pairs = root / "p" / "pipe" / "data" / "dpo_pairs.jsonl"
    pairs.parent.mkdir(parents=True)
    q = [
        {"role": "user", "content": "A changing pigmented lesion with an irregular border: which condition?"}
    ]
    pairs.write_text(
        "".join(
            json.dumps(
                {
                    "prompt": q,
                    "chosen": [{"role": "assistant", "content": f"good {n}"}],
                    "rejected": [{"role": "assistant", "content": f"poor {n}"}],
                    "images": [],
                    "meta": {"condition_id": "melanoma", "decided_by": ["findings"], "margin": 0.5},
                }
            )
            + "\n"
            for n in (1, 2, 3)
        )
    )
    page.reload()
    page.get_by_role("tab", name="Review pairs").click()
    choose(page, "review-file", "p/pipe/data/dpo_pairs.jsonl")
    page.locator("#review-name textarea, #review-name input").first.fill("ana")
    page.locator("#review-start").click()
    view = page.locator("#review-pair")
    view.get_by_text("pair 1 of 3").wait_for()
    assert "good 1" in view.inner_text() and "decided by findings; margin 0.5" in view.inner_text()
    page.screenshot(path=str(tmp_path / "1-pair.png"), full_page=True)
    page.locator("#review-keep").click()
    view.get_by_text("pair 2 of 3").wait_for()
    page.locator("#review-reason textarea, #review-reason input").first.fill("answer 2 names the ABCDE signs")
    page.locator("#review-swap").click()
    view.get_by_text("pair 3 of 3").wait_for()
    page.locator("#review-reject").click()
    view.get_by_text("All 3 pairs of p/pipe/data/dpo_pairs.jsonl reviewed").wait_for()
    agreement = page.locator("#review-agreement").inner_text()
    assert "0.500" in agreement and "melanoma" in agreement
    page.screenshot(path=str(tmp_path / "2-reviewed.png"), full_page=True)
    rows = FeedbackStore(root / "feedback.sqlite").rows("pair")
    assert [(r["line"], r["verdict"], r["reviewer"]) for r in rows] == [
        (1, "keep", "ana"),
        (2, "swap", "ana"),
        (3, "reject", "ana"),
    ]
    assert rows[1]["reason"] == "answer 2 names the ABCDE signs"
    with page.expect_download() as dl:
        page.locator("#review-export").click()
        page.locator("#review-download a").first.click()
    exported = [json.loads(x) for x in open(dl.value.path()).read().splitlines()]
    assert [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in exported] == [
        ("good 1", "poor 1"),
        ("poor 2", "good 2"),
    ]


def test_deleted_run_is_refused_then_gone_after_refresh(page, choose, views_app, tmp_path):
    _, root = views_app
    page.get_by_role("tab", name="Training runs").click()
    choose(page, "runs-a", "p/gone")
    shutil.rmtree(root / "p" / "gone")
    page.locator("#runs-plot").click()
    page.get_by_text("'p/gone' is not a run under the runs folder").first.wait_for()
    assert "/tmp/" not in page_text(page) and "Traceback" not in page_text(page)
    page.screenshot(path=str(tmp_path / "1-deleted-run.png"), full_page=True)

    page.locator("#runs-refresh").click()
    page.wait_for_function("() => !document.querySelector('#runs-a input').value.startsWith('p/gone')")
    assert not [o for o in options(page, "runs-a") if o.startswith("p/gone")]
    assert not [o for o in options(page, "runs-b") if o.startswith("p/gone")]
    page.screenshot(path=str(tmp_path / "2-refreshed.png"), full_page=True)

    make_run(root, "p/late", {"loss": [1.0, 0.5]})  # trained after the page was drawn: a reload lists it
    page.reload()
    page.get_by_role("tab", name="Training runs").click()
    page.wait_for_function("() => document.querySelector('#runs-a input') !== null")
    deadline = time.monotonic() + 15
    while not any(o.startswith("p/late") for o in options(page, "runs-a")) and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    assert any(o.startswith("p/late") for o in options(page, "runs-a"))


@pytest.mark.xfail(
    not DERM_WIRED,
    reason="the Dermatology tab does not call app.safety.check_upload at upload time "
    "yet (tab_derm.py is wired by the lead)",
    strict=False,
)
def test_text_file_named_png_gets_one_line_and_no_server_path(page, tmp_path):
    fake = tmp_path / "x.png"
    fake.write_text("clinic notes, not an image\n")
    page.locator("#derm-image input[type=file]").set_input_files(str(fake))
    page.get_by_text("x.png is not a readable image").first.wait_for(timeout=15_000)
    assert "/tmp/" not in page_text(page)
    page.screenshot(path=str(tmp_path / "1-upload.png"), full_page=True)
    page.locator("#derm-run").click()
    for _ in range(
        20
    ):  # whatever Answer says in the next 5 s, it never shows a server path or gradio's internals
        text = page_text(page)
        assert "/tmp/" not in text and "Could not preprocess" not in text
        page.wait_for_timeout(250)
    page.screenshot(path=str(tmp_path / "2-answer.png"), full_page=True)


def test_kg_lookup_in_the_wrong_graph_says_so_and_clears_the_card(page, tmp_path):
    page.get_by_role("tab", name="Knowledge graph").click()
    card = page.locator("#kg-card")
    card.locator(".medrl-kg-card", has_text="melanoma").wait_for()  # the page looks up melanoma on load
    page.locator("#kg-name").get_by_text("clinical").click()
    page.locator("#kg-lookup").click()
    card.get_by_text("'melanoma' is in the dermatology KG, not the clinical KG").wait_for()
    assert card.locator(".medrl-kg-card").count() == 0 and page.locator("#kg-graph svg").count() == 0
    page.screenshot(path=str(tmp_path / "1-melanoma-in-clinical.png"), full_page=True)

    page.locator("#kg-term textarea, #kg-term input").first.fill("STEMI")
    page.locator("#kg-lookup").click()
    card.locator(".medrl-kg-card", has_text="ST-elevation").wait_for()
    page.locator("#kg-name").get_by_text("derm").click()
    page.locator("#kg-lookup").click()
    card.get_by_text("'STEMI' is in the clinical KG, not the dermatology KG").wait_for()
    assert card.locator(".medrl-kg-card").count() == 0 and page.locator("#kg-graph svg").count() == 0
    page.screenshot(path=str(tmp_path / "2-stemi-in-derm.png"), full_page=True)
