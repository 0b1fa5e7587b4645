"""Every endpoint through `gradio_client` against the served app; traversal attempts refused; a bounded load test."""

import time
import zipfile
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from gradio_client import Client, handle_file
from PIL import Image

DISCLAIMER = "For research use only"


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def test_dermatology_sample_and_answer(client):
    image, truth = client.predict("condition:melanoma/0", api_name="/derm_sample")
    assert image and "melanoma" in truth
    answer, check, ddx, record, raw = client.predict(
        None, "condition:melanoma/0", "demo/vlm@final", 8, "", api_name="/derm_answer"
    )
    assert DISCLAIMER in answer and "KG check" in check
    assert all("Research use only" in part for part in (answer, check, ddx))  # every medical output
    assert "This model's record" in record and "no medical skill" in record  # an embedded demo model says so
    assert raw["labels"] is None  # this run was trained on its own prompt, not DermIQ's: asked with that one
    assert raw["check"]["reference"] == "condition:melanoma" and raw["check"]["reference_source"] == "sample"
    assert raw["check"]["differential"]  # the KG differential of the reference


def test_dermatology_upload(client, tmp_path, png_header):
    img = tmp_path / "mine.png"
    Image.new("RGB", (300, 200), (170, 110, 90)).save(img)
    answer, check, _, _, raw = client.predict(
        handle_file(str(img)), None, "demo/vlm@final", 8, "", api_name="/derm_answer"
    )
    assert DISCLAIMER in answer and raw["run"] == "demo/vlm"
    assert (
        raw["check"]["reference"] is None and "not_checkable" in raw["check"]["flags"]
    )  # never its own diagnosis
    _, check, _, _, raw = client.predict(
        handle_file(str(img)),
        None,
        "demo/vlm@final",
        8,
        "asymmetric plaque with an irregular border and blue-white veil",
        api_name="/derm_answer",
    )
    assert raw["check"]["best_fit_source"] == "case" and raw["check"]["best_fit"]
    bomb = tmp_path / "bomb.png"
    png_header(bomb, 60000, 60000)
    with pytest.raises(Exception, match="pixels"):
        client.predict(handle_file(str(bomb)), None, "demo/vlm@final", 8, "", api_name="/derm_answer")


def test_clinical_sample_and_answer_with_crpo(client):
    case, options, key = client.predict("1", api_name="/clinical_sample")
    assert "Which of the following" in case and options.startswith("A) ") and key in "ABCDE"
    answer, crpo, check, ddx, record, raw = client.predict(
        case, options, key, "1", "demo/lm@final", 8, api_name="/clinical_answer"
    )
    assert DISCLAIMER in answer and "KG check" in check
    assert "CRPO objectives" in crpo and raw["crpo"]["accuracy"] is not None
    assert raw["check"]["reference_source"] == "sample"


def test_clinical_free_text_question_is_asked_and_flagged(client):
    case = (
        "58M, crushing central chest pain for 1 h, ST elevation in II, III, aVF. Diagnosis and first steps?"
    )
    answer, _, check, _, _, raw = client.predict(
        case, "", "", None, "demo/lm@final", 8, api_name="/clinical_answer"
    )
    assert DISCLAIMER in answer and "never measured" in answer and "info" in raw["flags"]
    assert raw["check"]["best_fit_source"] == "case"  # the KG differential is the case's, not the answer's


def test_runs_adapters_kg_and_trees(client):
    labels = client.predict(api_name="/runs_list")
    assert labels
    out = client.predict("demo/lm", "demo/vlm", ["loss"], api_name="/runs_compare")
    plot = out[0]
    assert {row[2] for row in plot["value"]["data"]} == {"demo/lm", "demo/vlm"}
    assert "per_condition/pneumonia" in out[4]  # eval table in the summary of run A
    card = client.predict("demo/lm", api_name="/adapter_card")
    assert DISCLAIMER in card
    path, result = client.predict("demo/lm", False, api_name="/adapter_export")
    names = zipfile.ZipFile(path).namelist()
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md", "medrl_config.yaml"} <= set(
        names
    )
    card_html, svg = client.predict("derm", "mel", api_name="/kg_lookup")  # a HAM10000 code
    assert "melanoma" in card_html and DISCLAIMER in card_html and svg.startswith("<svg")
    check, _, raw = client.predict(
        "clinical", "Chest pain with ST elevation; STEMI likely.", "STEMI", api_name="/kg_check"
    )
    assert "supported" in raw["badges"]
    svg, info = client.predict("demo/lm", "step-1.json", "advantage", api_name="/tree_view")
    assert svg.count("<circle") == 3 and info["nodes"] == 3


def test_step_through_a_case(app_url):
    """The case stepper keeps its state per browser session: one client is one session."""
    c = Client(app_url, verbose=False)
    shown, outcome = c.predict("1", api_name="/case_start")
    assert "Presenting complaint:" in shown and DISCLAIMER in outcome
    shown, outcome, cleared = c.predict("<ask>exam</ask>", api_name="/case_send")
    assert "Examination:" in shown and cleared == "" and "1 question(s) asked so far" in outcome
    with pytest.raises(
        Exception, match="demo/lm was not trained on multi-step cases"
    ):  # an SFT run may not play
        c.predict("demo/lm@final", api_name="/case_model_turn")
    with pytest.raises(Exception, match="press Start first"):
        Client(app_url, verbose=False).predict("<ask>exam</ask>", api_name="/case_send")  # a new session
    with pytest.raises(Exception, match="refused|not a run"):
        c.predict("../../..@final", api_name="/case_model_turn")


@pytest.mark.parametrize(
    "endpoint,args",
    [
        ("/derm_answer", (None, "condition:melanoma/0", "../../..@final", 8, "")),
        ("/derm_answer", (None, "condition:melanoma/0", "demo/vlm@../../../../etc", 8, "")),
        ("/derm_answer", (None, "../../etc/passwd", "demo/vlm@final", 8, "")),
        ("/clinical_answer", ("case", "A) x\nB) y", "", None, "/etc@final", 8)),
        ("/runs_compare", ("demo/../../..", "", [])),
        ("/adapter_card", ("../../../etc",)),
        ("/adapter_export", ("demo/lm/../../..", False)),
        ("/tree_view", ("demo/lm", "../config.yaml", "reward")),
        ("/tree_view", ("demo/lm", "../../../../../../etc/passwd", "reward")),
    ],
)
def test_traversal_attempts_are_refused(client, endpoint, args):
    with pytest.raises(Exception, match="refused|not a run|not one of|not in the list of choices|outside"):
        client.predict(*args, api_name=endpoint)


def test_gradio_serves_no_file_outside_its_cache(app_url, app_runs):
    for target in ("/etc/passwd", str(app_runs / "demo" / "lm" / "config.yaml")):
        r = httpx.get(f"{app_url}/gradio_api/file={target}")
        assert r.status_code in (403, 404) and "root:" not in r.text and "trainer" not in r.text


def test_load_20_concurrent_clients(app_url):
    """20 clients at once each get an answer through the queue; none errors. Timing is printed, not asserted."""

    def one(i: int) -> float:
        t = time.perf_counter()
        c = Client(app_url, verbose=False)
        ans, *_ = c.predict(
            None,
            f"condition:{['melanoma', 'psoriasis'][i % 2]}/{i % 3}",
            "demo/vlm@final",
            8,
            "",
            api_name="/derm_answer",
        )
        assert DISCLAIMER in ans
        return time.perf_counter() - t

    t = time.perf_counter()
    with ThreadPoolExecutor(20) as pool:
        times = list(pool.map(one, range(20)))
    total = time.perf_counter() - t
    print(
        f"\nload test: 20 concurrent clients, all answered in {total:.1f} s; per client "
        f"min {min(times):.1f} s, median {sorted(times)[10]:.1f} s, max {max(times):.1f} s"
    )
    assert len(times) == 20
