"""DermIQ evaluation measures on known predictions: values against scikit-learn and by hand, the file layout."""

import csv
import json

import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score

from dermiq.evaluate import NONE, class_metrics, label_map, score_response, summarise, write_eval
from dermiq.records import sft_record
from dermiq.synthetic import make_record, make_sample
from knowledge_graph.io import load_builtin

LABELS = ["melanoma", "psoriasis", "vitiligo"]


def test_class_metrics_match_sklearn_and_hand():
    gold = ["melanoma"] * 4 + ["psoriasis"] * 2 + ["vitiligo"] * 2
    pred = ["melanoma", "melanoma", "psoriasis", NONE, "psoriasis", "psoriasis", "melanoma", "vitiligo"]
    m = class_metrics(gold, pred, LABELS)
    # recalls by hand: melanoma 2/4, psoriasis 2/2, vitiligo 1/2 -> balanced accuracy 2/3
    assert m["per_class_recall"] == {"melanoma": 0.5, "psoriasis": 1.0, "vitiligo": 0.5}
    assert m["balanced_accuracy"] == pytest.approx(2 / 3) == balanced_accuracy_score(gold, pred)
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["macro_f1"] == pytest.approx(f1_score(gold, pred, labels=LABELS, average="macro"))
    assert list(m["per_class_recall"].values()) == list(recall_score(gold, pred, labels=LABELS, average=None))
    assert m["confusion_labels"] == [*LABELS, NONE] and m["confusion"][0] == [2, 1, 0, 1]


def test_auc_from_probabilities():
    gold = ["melanoma", "psoriasis", "vitiligo", "melanoma"]
    perfect = [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]]
    assert class_metrics(gold, gold, LABELS, perfect)["auc_macro_ovr"] == pytest.approx(1.0)
    flat = [[1 / 3] * 3] * 4
    assert class_metrics(gold, gold, LABELS, flat)["auc_macro_ovr"] == pytest.approx(0.5)


def test_label_map_through_the_kg():
    to_label = label_map(LABELS)
    assert to_label("Melanoma") == "melanoma" and to_label(" psoriasis. ") == "psoriasis"
    assert to_label("malignant melanoma") == "melanoma"  # a KG alias of a listed label
    assert to_label("basal cell carcinoma") == NONE and to_label(None) == NONE


def test_reference_response_scores_faithful_and_valid():
    kg = load_builtin("derm")
    _, meta = make_sample(kg, "melanoma", seed=0, index=1)
    rec = make_record("x.png", kg, meta, LABELS)
    text = sft_record(rec, kg)["messages"][-1]["content"]
    s = score_response(rec, text, label_map(LABELS))
    assert s["pred"] == "melanoma" and s["format_ok"] == 1.0
    assert s["kg_stated"] > 0 and s["kg_supported"] == s["kg_stated"]  # every finding is a melanoma finding
    assert s["image_stated"] > 0 and s["image_supported"] == s["image_stated"]  # and what the image shows
    wrong = text.replace("<answer>melanoma</answer>", "<answer>vitiligo</answer>")
    w = score_response(rec, wrong, label_map(LABELS))
    assert (
        w["pred"] == "vitiligo" and w["kg_supported"] < s["kg_supported"]
    )  # the same findings do not fit vitiligo
    assert w["image_supported"] == s["image_supported"]  # the image's truth does not depend on the answer
    bad = score_response(rec, "melanoma", label_map(LABELS))
    assert bad["pred"] == NONE and bad["format_ok"] == 0.0


def test_summary_and_files(tmp_path):
    rows = [
        {
            "image": f"img{i}",
            "gold": g,
            "pred": p,
            "format_ok": f,
            "kg_supported": ks,
            "kg_stated": kn,
            "image_supported": 0,
            "image_stated": 0,
            "response": "r",
        }
        for i, (g, p, f, ks, kn) in enumerate(
            [
                ("melanoma", "melanoma", 1.0, 3, 4),
                ("psoriasis", NONE, 0.0, 0, 0),
                ("vitiligo", "vitiligo", 1.0, 1, 2),
            ]
        )
    ]
    probs = [[0.7, 0.2, 0.1], [0.3, 0.4, 0.3], [0.1, 0.1, 0.8]]
    m = summarise(rows, LABELS, probs)
    assert m["format_valid"] == pytest.approx(2 / 3) and m["kg_faithfulness"] == pytest.approx(4 / 6)
    assert (
        m["image_faithfulness"] is None
        and m["answered"] == pytest.approx(2 / 3)
        and m["prob_accuracy"] == 1.0
    )
    m.update(data="d", max_new_tokens=1)
    write_eval(tmp_path, "metrics", m, rows, LABELS, probs)
    with open(tmp_path / "metrics_probabilities.csv") as f:
        table = list(csv.reader(f))
    assert table[0] == ["image", *LABELS] and table[1] == ["img0", "0.7", "0.2", "0.1"]
    assert json.loads((tmp_path / "metrics.json").read_text())["balanced_accuracy"] == pytest.approx(2 / 3)
    assert (tmp_path / "metrics_confusion.png").stat().st_size > 0
