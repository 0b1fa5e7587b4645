"""Atomic writes: files appear whole or not at all, several split files together."""

from __future__ import annotations

import json

import pytest

from training.atomic import atomic_jsonl, atomic_write_text


def test_jsonl_splits_appear_together_and_an_error_leaves_the_old_files(tmp_path):
    with atomic_jsonl(tmp_path / "out", ["train", "val"]) as files:
        files.write("train", {"q": "café"})
        files.write("val", {"q": 2})
        assert not (tmp_path / "out" / "train.jsonl").exists()  # nothing renamed before the end
    assert files.paths == {
        "train": str(tmp_path / "out" / "train.jsonl"),
        "val": str(tmp_path / "out" / "val.jsonl"),
    }
    assert (tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8") == '{"q": "café"}\n'
    with pytest.raises(RuntimeError), atomic_jsonl(tmp_path / "out", ["train", "val"]) as files:
        files.write("train", {"q": "new"})
        raise RuntimeError("the last row was bad")
    assert json.loads((tmp_path / "out" / "train.jsonl").read_text()) == {"q": "café"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "train.jsonl",
        "val.jsonl",
    ]  # no temporaries


def test_text_replaces_whole(tmp_path):
    atomic_write_text(tmp_path / "a" / "x.json", "1\n")
    atomic_write_text(tmp_path / "a" / "x.json", "2\n")
    assert (tmp_path / "a" / "x.json").read_text() == "2\n" and len(list((tmp_path / "a").iterdir())) == 1
