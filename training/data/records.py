"""Records on disk: JSONL in the one format every trainer reads (DESIGN.md "Records").

RL: {"prompt": [messages], "images": [...], "answer": ..., "meta": {...}}
SFT: {"messages": [...], "images": [...]}
DPO: {"prompt": [messages], "chosen": [messages], "rejected": [messages], "images": [...]}

A bad row is skipped and counted with a one-line reason naming the file, row and field; a file with no usable
row is an error. Image paths are relative to the JSONL file's folder unless absolute.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from training.data.images import ImageError, check_image
from training.errors import DataError

Kind = Literal["sft", "rl", "dpo"]
ROLES = {"system", "user", "assistant", "tool"}


@dataclass
class Dataset:
    records: list[dict]
    path: Path
    skipped: list[str] = field(default_factory=list)  # one reason per skipped row

    def __len__(self) -> int:
        return len(self.records)

    def summary(self) -> str:
        s = f"{self.path}: {len(self.records)} records"
        if self.skipped:
            s += f", {len(self.skipped)} skipped (first: {self.skipped[0]})"
        return s


def _check_messages(msgs: Any, fld: str, need_assistant: bool = False) -> str | None:
    if not isinstance(msgs, list) or not msgs:
        return f"field '{fld}': expected a non-empty list of messages"
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ROLES or "content" not in m:
            return f"field '{fld}[{i}]': expected {{'role': one of {sorted(ROLES)}, 'content': ...}}"
        c = m["content"]
        if isinstance(c, list):
            for j, part in enumerate(c):
                if not isinstance(part, dict) or part.get("type") not in ("text", "image"):
                    return f"field '{fld}[{i}].content[{j}]': expected {{'type': 'text'|'image', ...}}"
                if part["type"] == "text" and not isinstance(part.get("text"), str):
                    return f"field '{fld}[{i}].content[{j}].text': expected a string"
        elif not isinstance(c, str):
            return f"field '{fld}[{i}].content': expected a string or a list of parts"
    if need_assistant and not any(m["role"] == "assistant" for m in msgs):
        return f"field '{fld}': no assistant message to learn from"
    return None


def completion_text(messages: list[dict]) -> str | None:
    """The text of a completion that is one assistant message (TRL's conversational pairs); None otherwise."""
    if len(messages) != 1 or messages[0].get("role") != "assistant":
        return None
    content = messages[0]["content"]
    if isinstance(content, str):
        return content
    if any(part["type"] != "text" for part in content):
        return None  # an image inside a completion has no place in the sequence we score
    return "".join(part["text"] for part in content)


def count_image_slots(msgs: list[dict]) -> int:
    return sum(
        1 for m in msgs if isinstance(m["content"], list) for p in m["content"] if p["type"] == "image"
    )


def validate_record(rec: Any, kind: Kind, base: Path) -> str | None:
    """None if the record is usable, else the reason (without the file/row prefix)."""
    if not isinstance(rec, dict):
        return "expected a JSON object"
    if kind == "sft":
        problem = _check_messages(rec.get("messages"), "messages", need_assistant=True)
        slots = None if problem else count_image_slots(rec["messages"])
    elif kind == "rl":
        problem = _check_messages(rec.get("prompt"), "prompt")
        slots = None if problem else count_image_slots(rec["prompt"])
    else:
        problem = next(
            (
                p
                for f in ("prompt", "chosen", "rejected")
                if (p := _check_messages(rec.get(f), f)) is not None
            ),
            None,
        )
        problem = problem or next(
            (
                f"field '{f}': expected one assistant message of text"
                for f in ("chosen", "rejected")
                if completion_text(rec[f]) is None
            ),
            None,
        )
        slots = None if problem else count_image_slots(rec["prompt"])
    if problem:
        return problem
    images = rec.get("images", [])
    if not isinstance(images, list):
        return "field 'images': expected a list of image paths"
    if len(images) != slots:
        return f"field 'images': {len(images)} images for {slots} image slots in the messages"
    for i, img in enumerate(images):
        if isinstance(img, str):
            p = Path(img) if Path(img).is_absolute() else base / img
            if not p.is_file():
                return f"field 'images[{i}]': file not found: {p}"
            try:  # header only: zero-byte files, non-images and decompression bombs are skipped, not crashed on
                check_image(p, decode=False)
            except ImageError as e:
                return f"field 'images[{i}]': {e}"
        elif not hasattr(img, "convert"):
            return f"field 'images[{i}]': expected a path or a PIL image"
    return None


def read_jsonl(path: str | Path, kind: Kind, limit: int | None = None) -> Dataset:
    path = Path(path)
    if not path.is_file():
        hint = " (`medrl recipes --data` writes the tiny recipes' data)" if "demo_data" in path.parts else ""
        raise DataError(f"{path}: data file not found{hint}")
    records, skipped = [], []
    base = path.parent
    try:
        raw_lines = path.read_bytes().splitlines()
    except OSError as e:
        raise DataError(f"{path}: unreadable data file ({e})") from None
    for row, raw in enumerate(raw_lines, start=1):
        try:  # one row in another encoding (a latin-1 export) is skipped, not the whole file
            line = raw.decode("utf-8-sig" if row == 1 else "utf-8")
        except UnicodeDecodeError as e:
            skipped.append(f"{path}:{row}: not UTF-8 text (byte {raw[e.start]:#04x} at column {e.start + 1})")
            continue
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:
            skipped.append(f"{path}:{row}: not valid JSON ({e.msg})")
            continue
        problem = validate_record(rec, kind, base)
        if problem:
            skipped.append(f"{path}:{row}: {problem}")
            continue
        rec["images"] = [
            str(Path(i) if Path(i).is_absolute() else base / i) if isinstance(i, str) else i
            for i in rec.get("images", [])
        ]
        records.append(rec)
        if limit is not None and len(records) >= limit:
            break
    if not records:
        first = f" (first problem: {skipped[0]})" if skipped else ""
        raise DataError(f"{path}: no usable {kind} records{first}")
    return Dataset(records=records, path=path, skipped=skipped)


def load_images(images: list) -> list:
    """Paths -> RGB PIL images (already-loaded images pass through)."""
    from PIL import Image

    out = []
    for img in images:
        if isinstance(img, (str, Path)):
            try:
                with Image.open(img) as im:
                    out.append(im.convert("RGB"))
            except OSError as e:
                raise DataError(f"{img}: unreadable image ({e})") from None
        else:
            out.append(img.convert("RGB"))
    return out


def write_jsonl(path: str | Path, records: list[dict]) -> None:
    from training.atomic import atomic_write_text

    atomic_write_text(Path(path), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


class DataOrder:
    """Record indices in a seeded per-epoch permutation; `pos` counts records consumed so far (checkpointed,
    so a resumed run sees the same records in the same order)."""

    def __init__(self, n: int, seed: int, shuffle: bool, pos: int = 0):
        self.n, self.seed, self.shuffle, self.pos = n, seed, shuffle, pos
        self._epoch, self._perm = -1, None

    def _index(self, pos: int) -> int:
        import torch

        epoch, within = divmod(pos, self.n)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed + epoch)
            self._perm = torch.randperm(self.n, generator=g).tolist() if self.shuffle else list(range(self.n))
            self._epoch = epoch
        return self._perm[within]

    def take(self, k: int) -> list[int]:
        out = [self._index(self.pos + i) for i in range(k)]
        self.pos += k
        return out
