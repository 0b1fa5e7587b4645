"""`medrl dermiq synth --preview` writes images, records.jsonl and a contact sheet."""

import json

from PIL import Image

from app.cli import main


def test_synth_preview(tmp_path, capsys):
    out = tmp_path / "synth"
    rc = main(
        [
            "dermiq",
            "synth",
            "--out",
            str(out),
            "--n-per-class",
            "2",
            "--seed",
            "5",
            "--conditions",
            "melanoma,bcc,psoriasis",
            "--preview",
        ]
    )
    assert rc == 0
    recs = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert [r["answer"] for r in recs] == ["melanoma"] * 2 + ["basal cell carcinoma"] * 2 + ["psoriasis"] * 2
    assert all((out / r["images"][0]).exists() for r in recs)
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.size[1] > 3 * 150
    assert "contact_sheet.png" in capsys.readouterr().out


def test_synth_bad_condition(tmp_path, capsys):
    rc = main(["dermiq", "synth", "--out", str(tmp_path), "--conditions", "not a disease"])
    assert rc == 2
    assert "'not a disease' is not a known condition" in capsys.readouterr().err
