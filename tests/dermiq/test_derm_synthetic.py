"""KG-driven lesion images: records, determinism, findings faithful to the KG, speed, separability."""

import json
import time

import pytest
from PIL import Image

from dermiq.explain import describe
from dermiq.prompts import labels_of
from dermiq.render import SUPPORTED
from dermiq.synthetic import DEFAULT_CONDITIONS, contact_sheet, generate_dataset, make_sample
from knowledge_graph.io import load_builtin


@pytest.fixture(scope="module")
def kg():
    return load_builtin("derm")


def test_dataset_records_and_files(tmp_path, kg):
    recs = generate_dataset(tmp_path, ["melanoma", "psoriasis"], n_per_class=3, seed=7, kg=kg, progress=False)
    assert len(recs) == 6
    lines = [json.loads(x) for x in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert lines == recs
    r = recs[0]
    assert [m["role"] for m in r["prompt"]] == ["system", "user"]
    assert [c["type"] for c in r["prompt"][1]["content"]] == ["image", "text"]
    assert labels_of(r["prompt"]) == ["melanoma", "psoriasis"]  # the data set's label set
    assert r["answer"] == "melanoma" and r["meta"]["condition_id"] == "condition:melanoma"
    assert 1 <= r["meta"]["fitzpatrick"] <= 6 and r["meta"]["seed"] == 7
    img = Image.open(tmp_path / r["images"][0])
    assert img.size == (112, 112) and img.mode == "RGB"
    assert {x["answer"] for x in recs} == {"melanoma", "psoriasis"}


def test_findings_come_from_the_kg(kg):
    for cid in DEFAULT_CONDITIONS:
        allowed = kg.feature_ids(cid)
        for i in range(5):
            _, meta = make_sample(kg, cid, 0, i, 32)
            f = meta["findings"]
            ids = {x for v in f.values() for x in v}
            assert ids <= allowed and ids <= SUPPORTED, (cid, ids - allowed)
            assert f["colour"] and all(kg.type(x) == t for t, v in f.items() for x in v)


def test_deterministic_by_seed(kg):
    a, ma = make_sample(kg, "melanoma", 3, 1, 64)
    b, mb = make_sample(kg, "melanoma", 3, 1, 64)
    c, _ = make_sample(kg, "melanoma", 4, 1, 64)
    assert a.tobytes() == b.tobytes() and ma == mb
    assert a.tobytes() != c.tobytes()


def test_fast_enough(kg):
    make_sample(kg, "psoriasis", 0, 0)
    t = time.perf_counter()
    n = 0
    for cid in DEFAULT_CONDITIONS:
        for i in range(3):
            make_sample(kg, cid, 1, i)
            n += 1
    per = (time.perf_counter() - t) / n
    assert per < 0.06, f"{per * 1000:.1f} ms per image"  # ~15-20 ms on one core; slack for busy CI


def _features(img: Image.Image) -> list[float]:
    """Lesion-vs-skin colour statistics: a crude classifier input that ignores the skin tone."""
    small = img.resize((24, 24))
    px = list(small.getdata())
    corner = [small.getpixel((x, y)) for x in (0, 1, 22, 23) for y in (0, 1, 22, 23)]
    skin = [sum(c[k] for c in corner) / len(corner) for k in range(3)]
    diffs = [[p[k] - skin[k] for k in range(3)] for p in px]
    lesion = [d for d in diffs if sum(abs(v) for v in d) > 40] or [[0, 0, 0]]
    mean = [sum(d[k] for d in lesion) / len(lesion) for k in range(3)]
    return [*mean, len(lesion) / len(px) * 100, (mean[0] - mean[2])]


def test_conditions_visually_separable(kg):
    """A nearest-centroid classifier on colour statistics beats chance by far over the default classes."""
    conds = list(DEFAULT_CONDITIONS)
    train = {c: [_features(make_sample(kg, c, 11, i, 48)[0]) for i in range(10)] for c in conds}
    cent = {c: [sum(v[k] for v in vs) / len(vs) for k in range(5)] for c, vs in train.items()}
    correct = total = 0
    for c in conds:
        for i in range(6):
            f = _features(make_sample(kg, c, 12, i, 48)[0])
            pred = min(cent, key=lambda k: sum((a - b) ** 2 for a, b in zip(f, cent[k])))
            correct += pred == c
            total += 1
    assert correct / total > 3 / len(conds), correct / total


def test_contact_sheet(tmp_path, kg):
    p = contact_sheet(tmp_path / "sheet.png", ["melanoma", "vitiligo"], per_row=3, size=64, kg=kg)
    img = Image.open(p)
    assert img.size == (190 + 3 * 68, 2 * 68 + 4)


def test_describe(kg):
    _, meta = make_sample(kg, "psoriasis", 0, 0, 32)
    text = describe({"answer": "psoriasis", "meta": meta}, kg)
    assert text.startswith("Findings: ") and text.endswith("Most likely diagnosis: psoriasis.")
    for fid in meta["findings"]["colour"]:
        assert kg.label(fid) in text
    assert describe({"meta": {"findings": {}, "condition_id": "condition:melanoma"}}, kg) == (
        "Findings: none recorded. Most likely diagnosis: melanoma."
    )
