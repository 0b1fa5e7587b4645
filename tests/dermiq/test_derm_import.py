"""`medrl dermiq import` on small fixture folders written here, one per layout, with the quirks real
downloads have: missing, truncated and bomb images, unknown labels, bad fields, extra columns."""

import csv
import json
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from app.cli import main
from dermiq.data import check_image, import_data, scin_top_label
from dermiq.prompts import labels_of
from knowledge_graph.io import load_builtin
from training.data.records import read_jsonl


@pytest.fixture(scope="module")
def kg():
    return load_builtin("derm")


def jpeg(path: Path, shade: int = 120, size: tuple[int, int] = (24, 18)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (shade, 60, 40)).save(path, "JPEG")
    return path


def truncated(path: Path) -> Path:
    jpeg(path, size=(64, 64))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def png_bomb(path: Path, side: int = 200_000) -> Path:
    """A valid PNG header claiming side x side pixels, with almost no data: what a decompression bomb looks like."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def records(out: Path) -> dict[str, list[dict]]:
    return {
        s: [json.loads(x) for x in (out / f"{s}.jsonl").read_text().splitlines()]
        for s in ("train", "val", "test")
    }


# ---- HAM10000 ---------------------------------------------------------------------------------------------------
@pytest.fixture
def ham(tmp_path) -> Path:
    root = tmp_path / "ham"
    rows = []
    dxs = ["mel", "nv", "bcc", "akiec", "bkl"]
    n = 0
    for lesion in range(30):
        for _ in range(1 + lesion % 3):  # 1-3 images per lesion, as in HAM10000
            image_id = f"ISIC_{n:07d}"
            jpeg(root / f"HAM10000_images_part_{1 + n % 2}" / f"{image_id}.jpg", shade=n % 255)
            rows.append(
                [
                    f"HAM_{lesion:07d}",
                    image_id,
                    dxs[lesion % 5],
                    "histo",
                    "45.0",
                    "male",
                    "back",
                    "vidir_modern",
                    "x",
                ]
            )
            n += 1
    rows.append(["HAM_9000001", "ISIC_missing", "mel", "histo", "50", "female", "face", "rosendahl", "x"])
    truncated(root / "HAM10000_images_part_1" / "ISIC_trunc.jpg")
    rows.append(["HAM_9000002", "ISIC_trunc", "nv", "follow_up", "", "female", "trunk", "rosendahl", "x"])
    jpeg(root / "HAM10000_images_part_2" / "ISIC_unknown.jpg")
    rows.append(["HAM_9000003", "ISIC_unknown", "xyz", "histo", "30", "male", "face", "rosendahl", "x"])
    jpeg(root / "HAM10000_images_part_2" / "ISIC_badage.jpg")
    rows.append(["HAM_9000004", "ISIC_badage", "nv", "histo", "old", "male", "face", "rosendahl", "x"])
    png_bomb(root / "HAM10000_images_part_1" / "ISIC_bomb.png")
    rows.append(["HAM_9000005", "ISIC_bomb", "nv", "histo", "30", "male", "face", "rosendahl", "x"])
    write_csv(
        root / "HAM10000_metadata.csv",
        ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization", "dataset", "extra_column"],
        rows,
    )
    return root


def test_ham10000_import_skips_and_reports_quirks(ham, tmp_path, kg):
    s = import_data("ham10000", ham, tmp_path / "out", seed=1)
    assert s["kept"] == 60 and s["skipped"] == 5
    assert s["reasons"] == {
        "bad_field": 1,
        "image_too_large": 1,
        "missing_image": 1,
        "unknown_label": 1,
        "unreadable_image": 1,
    }
    assert s["unmapped"] == {"xyz": 1}
    assert any(
        "ISIC_missing.jpg is in no folder under" in e and "HAM10000_images_part_2/" in e
        for e in s["examples"]["missing_image"]
    )
    recs = records(tmp_path / "out")
    assert sum(len(v) for v in recs.values()) == 60 and all(recs.values())
    r = next(r for r in recs["train"] + recs["val"] + recs["test"] if r["meta"]["dataset_label"] == "akiec")
    assert r["answer"] == kg.label("condition:akiec") and r["meta"]["condition_id"] == "condition:akiec"
    assert {"image_id", "lesion_id", "dx_type", "age", "sex", "site", "dataset"} <= set(r["meta"])
    assert r["meta"]["site"] == "back" and r["meta"]["age"] == 45.0 and r["meta"]["source"] == "ham10000"
    assert r["prompt"][1]["content"][0] == {"type": "image"}
    assert labels_of(r["prompt"]) == sorted(
        s["labels"], key=str.lower
    )  # the run's label set, in every prompt
    ds = read_jsonl(tmp_path / "out" / "train.jsonl", "rl")  # the trainers' reader accepts every record
    assert len(ds.records) == len(recs["train"]) and not ds.skipped
    assert all(Path(p).is_file() for rec in ds.records for p in rec["images"])


def test_ham10000_split_is_by_lesion_and_deterministic(ham, tmp_path):
    import_data("ham10000", ham, tmp_path / "a", seed=3, val_frac=0.2, test_frac=0.2)
    import_data("ham10000", ham, tmp_path / "b", seed=3, val_frac=0.2, test_frac=0.2)
    import_data("ham10000", ham, tmp_path / "c", seed=4, val_frac=0.2, test_frac=0.2)
    a = records(tmp_path / "a")
    lesions = {s: {r["meta"]["lesion_id"] for r in recs} for s, recs in a.items()}
    assert not (
        lesions["train"] & lesions["val"]
        or lesions["train"] & lesions["test"]
        or lesions["val"] & lesions["test"]
    )
    assert [len(lesions[s]) for s in ("train", "val", "test")] == [18, 6, 6]  # 30 lesions, 20% / 20%
    for s in ("train", "val", "test"):
        assert (tmp_path / "a" / f"{s}.jsonl").read_text() == (tmp_path / "b" / f"{s}.jsonl").read_text()
    c = records(tmp_path / "c")
    assert {r["meta"]["lesion_id"] for r in c["val"]} != lesions["val"]
    for s in (
        "val",
        "test",
    ):  # stratified: every one of the 5 classes (6 lesions each) has a lesion in val and test
        assert len({r["meta"]["dataset_label"] for r in a[s]}) == 5


def test_cli_json_and_wrong_columns(ham, tmp_path, capsys):
    assert main(["dermiq", "import", "ham10000", str(ham), "--out", str(tmp_path / "o"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert {"kept", "skipped", "reasons", "splits"} <= set(s) and s["kept"] == sum(s["splits"].values())
    bad = write_csv(tmp_path / "other" / "HAM10000_metadata.csv", ["id", "diagnosis"], [["1", "mel"]])
    assert main(["dermiq", "import", "ham10000", str(bad.parent), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        "expected columns lesion_id, image_id, dx" in err
        and "found id, diagnosis" in err
        and len(err.splitlines()) == 1
    )
    assert (
        main(["dermiq", "import", "ham10000", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o3")]) == 2
    )


def test_lowered_pixel_limit_skips_a_large_blank_image(tmp_path):
    big = tmp_path / "big.png"
    Image.new("RGB", (300, 300)).save(big)
    check_image(big)  # fine under the default limit
    with pytest.raises(Exception, match="over the 10,000-pixel limit"):
        check_image(big, max_pixels=10_000)


# ---- Fitzpatrick17k ---------------------------------------------------------------------------------------------
def test_fitzpatrick17k_labels_types_and_unmapped(tmp_path, kg):
    root = tmp_path / "fitz"
    header = [
        "md5hash",
        "fitzpatrick_scale",
        "fitzpatrick_centaur",
        "label",
        "nine_partition_label",
        "three_partition_label",
        "qc",
        "url",
        "url_alphanum",
    ]
    rows = []
    for i, label in enumerate(
        ["psoriasis", "nevocytic nevus", "malignant melanoma", "lentigo maligna", "eczema"] * 2
    ):
        md5 = f"{i:032x}"
        jpeg(root / "images" / f"{md5}.jpg")
        rows.append([md5, str(1 + i % 6), "", label, "inflammatory", "non-neoplastic", "", "http://x", "x"])
    jpeg(root / "images" / "u1.jpg")
    rows.append(["u1", "3", "", "made up disease", "", "", "", "", ""])
    jpeg(root / "images" / "u2.jpg")
    rows.append(["u2", "-1", "", "psoriasis", "", "", "3 Wrongly labelled", "", ""])
    jpeg(root / "images" / "u3.jpg")
    rows.append(["u3", "7", "", "psoriasis", "", "", "", "", ""])
    jpeg(root / "images" / "u4.jpg")
    rows.append(["u4", "-1", "", "psoriasis", "", "", "", "", ""])
    write_csv(root / "fitzpatrick17k.csv", header, rows)
    s = import_data("fitzpatrick17k", root, tmp_path / "out", val_frac=0.2, test_frac=0.2)
    assert s["kept"] == 11 and s["reasons"] == {"bad_field": 1, "qc_wrong_label": 1, "unknown_label": 1}
    assert s["unmapped"] == {"made up disease": 1}
    recs = [r for rs in records(tmp_path / "out").values() for r in rs]
    by_label = {r["meta"]["dataset_label"]: r for r in recs}
    assert by_label["nevocytic nevus"]["meta"]["condition_id"] == "condition:melanocytic_nevus"
    assert by_label["lentigo maligna"]["answer"] == "melanoma"
    assert {r["meta"]["fitzpatrick"] for r in recs} == {1, 2, 3, 4, 5, 6, None}
    first = next(r for r in recs if r["meta"]["image_id"] == f"{0:032x}")
    assert first["meta"]["three_partition_label"] == "non-neoplastic" and first["answer"] == "psoriasis"


# ---- SCIN -------------------------------------------------------------------------------------------------------
def test_scin_label_parsing_is_safe():
    assert scin_top_label("{'Eczema': 0.41, 'Psoriasis': 0.59}") == (
        "Psoriasis",
        0.59,
        {"Eczema": 0.41, "Psoriasis": 0.59},
    )
    assert scin_top_label("{'Tinea': 0.5, 'Eczema': 0.5}")[0] == "Tinea"  # a tie goes to the first listed
    for bad in (
        "__import__('os').system('true')",
        "{'Eczema': ",
        "['Eczema']",
        "{'Eczema': 'high'}",
        "{" * 5000,
    ):
        with pytest.raises(Exception) as e:
            scin_top_label(bad)
        assert getattr(e.value, "reason", None) == "bad_field", bad
    with pytest.raises(Exception, match="no dermatologist label"):
        scin_top_label("")


def test_scin_join_images_and_case_split(tmp_path):
    root = tmp_path / "scin"
    cases, labels = [], []
    conds = ["Eczema", "Psoriasis", "Urticaria", "Tinea"]
    for c in range(16):
        paths = [f"dataset/images/{c}_{k}.png" for k in range(1 + c % 3)]
        for p in paths:
            jpeg(root / p.replace(".png", ".jpg")).rename(root / p)  # a JPEG under a .png name still decodes
        paths += [""] * (3 - len(paths))
        cases.append(
            [f"c{c}", *paths, "AGE_30_TO_39", "FEMALE", "FST3", "YES" if c % 2 else "", "NO", "extra"]
        )
        labels.append(
            [f"c{c}", str({conds[c % 4]: 0.7, "Eczema": 0.3}) if c % 4 else "{'Eczema': 1.0}", "FST2"]
        )
    cases.append(
        ["c90", "dataset/images/c90.png", "", "", "AGE_18_TO_29", "MALE", "", "", "", ""]
    )  # image missing
    labels.append(["c90", "{'Eczema': 1.0}", ""])
    jpeg(root / "dataset/images/c91.png")
    cases.append(["c91", "dataset/images/c91.png", "dataset/images/gone.png", "", "", "", "", "", "", ""])
    labels.append(["c91", "{'Psoriasis': 1.0}", ""])
    jpeg(root / "dataset/images/c92.png")
    cases.append(["c92", "dataset/images/c92.png", "", "", "", "", "", "", "", ""])
    labels.append(["c92", "", ""])  # not gradable: no label
    jpeg(root / "dataset/images/c93.png")
    cases.append(["c93", "dataset/images/c93.png", "", "", "", "", "", "", "", ""])  # no label row at all
    write_csv(
        root / "scin_cases.csv",
        [
            "case_id",
            "image_1_path",
            "image_2_path",
            "image_3_path",
            "age_group",
            "sex_at_birth",
            "fitzpatrick_skin_type",
            "body_parts_arm",
            "body_parts_leg",
            "textures_raised_or_bumpy",
        ],
        cases,
    )
    write_csv(
        root / "scin_labels.csv",
        ["case_id", "weighted_skin_condition_label", "dermatologist_fitzpatrick_skin_type_label_1"],
        labels,
    )
    s = import_data("scin", root, tmp_path / "out", val_frac=0.25, test_frac=0.25, seed=2)
    assert (
        s["kept"] == 17 and s["reasons"] == {"missing_image": 1, "no_label": 2} and s["images_dropped"] == 1
    )
    recs = records(tmp_path / "out")
    cases_in = {sp: {r["meta"]["case_id"] for r in rs} for sp, rs in recs.items()}
    assert not (
        cases_in["train"] & cases_in["val"]
        or cases_in["train"] & cases_in["test"]
        or cases_in["val"] & cases_in["test"]
    )
    allr = {r["meta"]["case_id"]: r for rs in recs.values() for r in rs}
    two = allr["c1"]
    assert len(two["images"]) == 2 and sum(p == {"type": "image"} for p in two["prompt"][1]["content"]) == 2
    assert two["answer"] == "psoriasis" and two["meta"]["label_weight"] == 0.7
    assert (
        two["meta"]["fitzpatrick"] == 2
        and two["meta"]["fitzpatrick_self"] == 3
        and two["meta"]["site"] == ["arm"]
    )
    assert len(allr["c91"]["images"]) == 1
    for split in ("train", "val", "test"):
        read_jsonl(tmp_path / "out" / f"{split}.jsonl", "rl")


# ---- DermNet folders and JSONL ------------------------------------------------------------------------------------
def test_dermnet_folders_keep_the_test_split(tmp_path, kg):
    root = tmp_path / "dermnet"
    for split, n in (("train", 10), ("test", 3)):
        for cls in (
            "Eczema Photos",
            "Psoriasis pictures Lichen Planus and related diseases",
            "Mystery Photos",
        ):
            for i in range(n):
                jpeg(root / split / cls / f"{cls[:3]}_{i}.jpg")
    (root / "train" / "Eczema Photos" / "notes.txt").write_text("not an image")
    truncated(root / "train" / "Eczema Photos" / "broken.jpg")
    s = import_data("dermnet", root, tmp_path / "out", val_frac=0.2, test_frac=0.3)
    assert s["splits"] == {"train": 16, "val": 4, "test": 6} and s["fractions"]["test"] == 0.0
    assert s["reasons"] == {"unknown_label": 13, "unreadable_image": 1} and s["unmapped"] == {
        "Mystery Photos": 13
    }
    recs = records(tmp_path / "out")
    assert all(r["meta"]["dermnet_split"] == "test" for r in recs["test"])
    ecz = next(r for r in recs["train"] if r["meta"]["dataset_label"] == "Eczema Photos")
    assert "condition:atopic_dermatitis" in ecz["meta"]["members"] or ecz["meta"]["members"]


def test_jsonl_rows_with_own_messages(tmp_path):
    jpeg(tmp_path / "img" / "a.jpg")
    jpeg(tmp_path / "img" / "b.jpg")
    rows = [
        {"image": "img/a.jpg", "label": "melanoma", "patient": "p1", "age": 61},
        {
            "image": "img/b.jpg",
            "label": "bcc",
            "messages": [
                {"role": "user", "content": "What is this?"},
                {"role": "assistant", "content": "A BCC."},
            ],
        },
        {"image": "img/a.jpg", "label": "not a disease"},
        {"image": "img/none.jpg", "label": "melanoma"},
        {"label": "melanoma"},
    ]
    src = tmp_path / "mine.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    s = import_data("jsonl", src, tmp_path / "out", val_frac=0.0, test_frac=0.0)
    assert s["kept"] == 2 and s["reasons"] == {"bad_field": 2, "missing_image": 1, "unknown_label": 1}
    recs = records(tmp_path / "out")["train"]
    assert [r["answer"] for r in recs] == ["melanoma", "basal cell carcinoma"]
    assert recs[0]["meta"]["patient"] == "p1" and recs[0]["meta"]["age"] == 61
    assert recs[1]["prompt"] == [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}
    ]
    assert read_jsonl(tmp_path / "out" / "train.jsonl", "rl").records


@pytest.mark.parametrize(
    "label,condition",
    [
        ("fixed eruptions", "condition:fixed_drug_eruption"),
        ("neurodermatitis", "condition:lichen_simplex_chronicus"),
        ("lichen simplex", "condition:lichen_simplex_chronicus"),
        ("porokeratosis actinic", "condition:dsap"),
        ("disseminated actinic porokeratosis", "condition:dsap"),
        ("lupus subacute", "condition:scle"),
        ("erythema annulare centrifigum", "condition:erythema_annulare_centrifugum"),
        ("hidradenitis", "condition:hidradenitis_suppurativa"),
        ("urticaria pigmentosa", "condition:urticaria_pigmentosa"),
        ("nevocytic nevus", "condition:melanocytic_nevus"),
    ],
)
def test_fitzpatrick17k_labels_the_kg_holds(kg, label, condition):
    from dermiq.data import condition_of

    assert condition_of(kg, label, "fitzpatrick17k") == condition


def test_fitzpatrick17k_groups_and_unmapped(kg):
    from dermiq.data import condition_of

    assert "condition:psoriasis" in kg.related(
        "condition:pustular_psoriasis"
    )  # a subtype names the same disease
    assert "condition:rosacea" in kg.related("condition:rhinophyma")
    for label in (
        "photodermatoses",
        "neutrophilic dermatoses",
        "nematode infection",
        "tick bite",
        "sun damaged skin",
    ):
        assert condition_of(kg, label, "fitzpatrick17k") is None, (
            label
        )  # groups or findings, not one condition


# ---- README path A, as written ----------------------------------------------------------------------------------
def readme_path_a() -> list[str]:
    """The commands of README path A (own dermatology images), comments stripped, and path F's first export line."""
    text = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    a = text[text.index("## A. ") : text.index("## B. ")]
    f = text[text.index("## F. ") :]
    lines = [
        ln.split("  #")[0].strip() for part in (a, f) for ln in part.splitlines() if ln.startswith("medrl ")
    ]
    return lines


@pytest.mark.slow  # the whole tiny DermIQ pipeline, 2 steps a stage (~2 min)
def test_readme_path_a_runs_as_written_on_a_ham10000_folder(ham, tmp_path, monkeypatch, capsys):
    """A HAM10000-layout folder with broken rows goes through README path A's own commands: import, train (the one
    change: every stage 2 steps and short answers, through the README's documented --KEY=VALUE overrides), evaluate,
    export. It ends in an evaluation table and an exported adapter that carries how to ask it."""
    cmds = readme_path_a()
    want = {
        "import": "medrl dermiq import ham10000 data/HAM10000 --out data/dermiq",
        "train": "medrl dermiq train --data data/dermiq --out runs/derm",
        "eval": "medrl dermiq eval runs/derm/dpo --data data/dermiq/test.jsonl",
        "export": "medrl export runs/derm/dpo --out exported/derm",
    }
    assert set(want.values()) <= set(cmds), [c for c in cmds if c.split()[:3] == ["medrl", "dermiq", "train"]]
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "data" / "HAM10000").symlink_to(ham, target_is_directory=True)
    monkeypatch.chdir(work)
    short = [
        "--warmup.run.max_steps=2",
        "--grpo++.run.max_steps=2",
        "--sft.run.max_steps=2",
        "--dpo.run.max_steps=2",
        "--grpo++.prompts_per_step=1",
        "--grpo++.rollout.max_new_tokens=8",
        "--pipeline.dpo_prompts=3",
        "--pipeline.dpo_max_new_tokens=8",
        "--pipeline.dpo_min_margin=0",
        "--pipeline.dpo_well_formed=false",
        "--pipeline.dpo_reference=true",  # 8-token samples may all tie; the reference answer always pairs
        "--pipeline.eval_max_new_tokens=8",
        "--dpo.batch_size=1",
        "--dpo.grad_accum=1",
    ]
    assert main(want["import"].split()[1:]) == 0
    imported = capsys.readouterr().out
    assert "kept" in imported and "unknown_label" in imported  # the broken rows are counted, not fatal
    assert main([*want["train"].split()[1:], *short]) == 0
    assert main(want["eval"].split()[1:]) == 0
    table = capsys.readouterr().out
    assert "balanced_accuracy" in table and "recall[" in table
    assert main(want["export"].split()[1:]) == 0
    exported = work / "exported" / "derm"
    assert (exported / "adapter_model.safetensors").is_file() and (exported / "task.json").is_file()
    card = (exported / "README.md").read_text()
    assert "How to ask it" in card and "Labels: " in card and "For research use only" in card
