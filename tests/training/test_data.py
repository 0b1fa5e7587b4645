import json

import pytest

from training.data.records import read_jsonl
from training.errors import DataError


def test_bad_rows_are_skipped_and_counted(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    rows = [
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
        {"messages": [{"role": "user", "content": "q"}]},
        {"messages": [{"role": "doctor", "content": "q"}, {"role": "assistant", "content": "a"}]},
        {
            "messages": [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "q"}]},
                {"role": "assistant", "content": "a"},
            ],
            "images": [],
        },
        {
            "messages": [
                {"role": "user", "content": [{"type": "image"}]},
                {"role": "assistant", "content": "a"},
            ],
            "images": ["missing.png"],
        },
    ]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{oops\n")
    ds = read_jsonl(path, "sft")
    assert len(ds) == 1 and len(ds.skipped) == 5
    assert f"{path}:2: field 'messages': no assistant message" in ds.skipped[0]
    assert "field 'messages[0]'" in ds.skipped[1]
    assert "1 image slots" in ds.skipped[2] or "0 images for 1 image slots" in ds.skipped[2]
    assert "missing.png" in ds.skipped[3]
    assert f"{path}:6: not valid JSON" in ds.skipped[4]
    assert "5 skipped" in ds.summary()


def test_no_usable_records_is_an_error(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "not messages"}\n')
    with pytest.raises(DataError, match=r"no usable rl records \(first problem: .*d.jsonl:1: field 'prompt'"):
        read_jsonl(path, "rl")


def test_image_paths_resolve_relative_to_file(tmp_path):
    from PIL import Image

    (tmp_path / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "sub" / "x.png")
    path = tmp_path / "sub" / "d.jsonl"
    path.write_text(
        json.dumps(
            {"prompt": [{"role": "user", "content": [{"type": "image"}]}], "images": ["x.png"], "answer": "a"}
        )
        + "\n"
    )
    ds = read_jsonl(path, "rl")
    assert ds.records[0]["images"] == [str(tmp_path / "sub" / "x.png")]


def test_unusable_images_are_skipped_and_counted_before_training(tmp_path, png_header):
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 100, 50)).save(tmp_path / "ok.png")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    png_header(tmp_path / "bomb.png", 60000, 60000)
    slot = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "q"}]},
        {"role": "assistant", "content": "a"},
    ]
    path = tmp_path / "d.jsonl"
    path.write_text(
        "".join(
            json.dumps({"messages": slot, "images": [name]}) + "\n"
            for name in ("ok.png", "empty.png", "text.png", "bomb.png")
        )
    )
    ds = read_jsonl(path, "sft")
    assert len(ds) == 1 and ds.records[0]["images"] == [str(tmp_path / "ok.png")]
    assert [s.split(": ", 1)[0] for s in ds.skipped] == [f"{path}:{row}" for row in (2, 3, 4)]
    assert "unreadable image" in ds.skipped[0] and "unreadable image" in ds.skipped[1]
    assert "bomb.png: over the 40,000,000-pixel limit" in ds.skipped[2]
