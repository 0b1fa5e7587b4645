"""The task card: how a trained model is to be asked, written to RUN/task.json when its training starts.

A model answers well only when it is asked the way it was trained: the same system turn (format, label set), the
same layout of the question, room for an answer as long as the ones it learned. Before the card, the app, the
evaluations and the export each rebuilt that prompt on their own and drifted apart (the app asked a 6-label model to
choose among 13 and cut its answers at 48 tokens). Now the trainer records the prompt it trained on, and every reader
(`medrl dermiq eval`, `medrl clinical eval`, the app, the exported model card) reads this one card.

The card is domain-blind: the first training record's prompt (its images as slots), the answer length and sampling,
the data and the base model. The domain packages read it (`dermiq.task`, `clinical.task`): DermIQ takes its label set
from the system turn, Clinical-R1 puts a new case under the same system turn. Runs trained before the card existed
get one inferred from their config's training file when it is still on disk (`read_card`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.config import check

CARD_FILE = "task.json"
VERSION = 1


@dataclass
class TaskConfig:
    """Config section `task`: what the run's task card (task.json) says about answering; the prompt itself comes
    from the data. Evaluations, the app and exported model cards ask the model this way.

    Fields:
        max_new_tokens (int | None, default None): the answer length the model is asked for; None: the RL rollout
            length, else the reader's own default (DermIQ 160, Clinical-R1 512).
        temperature (float, default 0.0): how evaluations and the app sample; 0 is greedy.
    """

    # the answer length the model is asked for; None: the RL rollout length, else the reader's own default
    # (DermIQ 160, Clinical-R1 512)
    max_new_tokens: int | None = None
    temperature: float = 0.0  # how evaluations and the app sample; 0 is greedy

    def validate(self, key: str) -> None:
        if self.max_new_tokens is not None:
            check(
                self.max_new_tokens >= 1,
                f"{key}.max_new_tokens",
                "an integer >= 1 (or null)",
                self.max_new_tokens,
            )
        check(self.temperature >= 0, f"{key}.temperature", "a float >= 0 (0: greedy)", self.temperature)


def prompt_of(record: dict) -> list[dict]:
    """The messages a record asks with: an RL/DPO record's `prompt`, an SFT record's turns before the first answer."""
    if isinstance(record.get("prompt"), list):
        return list(record["prompt"])
    out = []
    for msg in record.get("messages") or []:
        if isinstance(msg, dict) and msg.get("role") == "assistant":
            break
        out.append(msg)
    return out


def _slots(messages: list[dict]) -> list[dict]:
    """The messages with every image part reduced to a slot (no paths or pixels in the card)."""
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = [
                {"type": "image"} if isinstance(p, dict) and p.get("type") == "image" else p for p in content
            ]
        out.append({"role": m.get("role"), "content": content})
    return out


def lineage(adapter: str | None) -> list[dict]:
    """What the start adapter was trained on, oldest first: the `trained_on` of the run that wrote it (its card sits
    in the run folder above `adapter/` or `checkpoints/step-N/adapter/`)."""
    if not adapter:
        return []
    for folder in Path(adapter).parents:
        card = folder / CARD_FILE
        if card.is_file():
            try:
                return list(json.loads(card.read_text(encoding="utf-8")).get("trained_on") or [])
            except (ValueError, OSError):
                return []
        if (folder / "config.yaml").is_file():
            return []
    return []


def build_card(cfg: Any, records: list[dict], skipped: int = 0) -> dict:
    """The card of a run about to train on `records` with config `cfg` (an SFT, RL or DPO config)."""
    task = getattr(cfg, "task", None) or TaskConfig()
    rollout = getattr(cfg, "rollout", None)
    max_new = task.max_new_tokens or (
        getattr(rollout, "max_new_tokens", None) if rollout is not None else None
    )
    prompt = _slots(prompt_of(records[0])) if records else []
    this = {
        "trainer": cfg.trainer,
        "run": cfg.run.name,
        "data": str(cfg.data.train),
        "records": len(records),
        "skipped": skipped,
    }
    return {
        "version": VERSION,
        "prompt": prompt,
        "max_new_tokens": max_new,
        "temperature": task.temperature,
        "image_side": image_side(records),
        "base_model": cfg.model.name,
        "start_adapter": cfg.model.adapter,
        "trained_on": [*lineage(cfg.model.adapter), this],
        "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def image_side(records: list[dict], n: int = 8) -> int | None:
    """The longest side of the training images (the largest among the first `n` records'), None without images.

    A VLM sees an image as visual tokens, so its size is part of how the model was asked: the tiny model trained on
    112-pixel lesions degenerates on 224-pixel ones (4x the tokens). Readers render or downscale to this side."""
    from PIL import Image

    sides = []
    for r in records[:n]:
        for img in r.get("images") or []:
            try:
                if isinstance(img, (str, Path)):
                    with Image.open(img) as im:
                        sides.append(max(im.size))
                elif hasattr(img, "size"):
                    sides.append(max(img.size))
            except OSError:
                continue
    return max(sides) if sides else None


def write_card(run_path: str | Path, card: dict) -> Path:
    from training.atomic import atomic_write_text

    path = Path(run_path) / CARD_FILE
    atomic_write_text(path, json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    return path


def read_card(run_path: str | Path) -> dict | None:
    """RUN/task.json; for a run trained before cards existed, one inferred from its config's training file (when
    that file is still there); None when neither can be had."""
    path = Path(run_path) / CARD_FILE
    if path.is_file():
        try:
            card = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            card = None
        if isinstance(card, dict) and isinstance(card.get("prompt"), list):
            return card
    return _inferred(Path(run_path))


def _inferred(run_path: Path) -> dict | None:
    import yaml

    cfg_path = run_path / "config.yaml"
    if not cfg_path.is_file():
        return None
    cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
    train = (cfg.get("data") or {}).get("train")
    if not train or not Path(train).is_file():
        return None
    try:
        with open(train, encoding="utf-8") as f:
            first = json.loads(f.readline())
    except (ValueError, OSError):
        return None
    task = cfg.get("task") or {}
    max_new = task.get("max_new_tokens") or (cfg.get("rollout") or {}).get("max_new_tokens")
    images = [
        p if Path(p).is_absolute() else str(Path(train).parent / p)
        for p in first.get("images") or []
        if isinstance(p, str)
    ]
    return {
        "version": VERSION,
        "prompt": _slots(prompt_of(first)),
        "max_new_tokens": max_new,
        "temperature": float(task.get("temperature") or 0.0),
        "image_side": image_side([{"images": images}]),
        "base_model": (cfg.get("model") or {}).get("name"),
        "start_adapter": (cfg.get("model") or {}).get("adapter"),
        "trained_on": [{"trainer": cfg.get("trainer"), "data": train, "records": None, "skipped": None}],
        "inferred": True,
    }


def system_text(card: dict | None) -> str | None:
    """The card's system turn (the fixed instructions every record of the run shared), if it has one."""
    for m in (card or {}).get("prompt") or []:
        if m.get("role") == "system":
            c = m.get("content")
            return (
                c
                if isinstance(c, str)
                else " ".join(p.get("text", "") for p in c or [] if isinstance(p, dict))
            )
    return None
