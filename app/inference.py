"""The inference service: a run's adapter loaded once per (run, stage), kept in a bounded LRU, answering greedily.

Loading a policy costs seconds (a real 3B model: a minute and gigabytes), so a loaded (run, stage) is reused by every
request until `max_loaded` others push it out. Loads of the same key are serialised (two clicks load once); requests
on one loaded model run one at a time (the sampler toggles eval mode and is not re-entrant). How many requests run at
once overall is Gradio's queue's job (`concurrency_limit`), not this module's. Torch is imported on first use.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from training.rollout.responses import ANSWER, THINK, tagged

from .runs import RunsReader

_DX = re.compile(r"(most likely diagnosis|diagnosis|impression)\s*:", re.I)


@dataclass
class Generation:
    """One greedy answer and how it was produced."""

    run_id: str
    stage: str
    text: str
    reasoning: str
    answer: str
    new_tokens: int
    seconds: float
    load_seconds: float  # 0 when the model was already loaded
    max_new_tokens: int = 0  # the budget it was given
    finished: bool = True  # ended by itself (end of turn or a stop string), not cut at the budget

    @property
    def truncated(self) -> bool:
        return not self.finished


def split_answer(text: str) -> tuple[str, str]:
    """(reasoning, answer): `<think>`/`<answer>` tags, else 'Findings ... Diagnosis: X', else all of it is the answer."""
    think, ans = tagged(text, THINK, closed=False), tagged(text, ANSWER, closed=False)
    if think is not None or ans is not None:
        return (think or "").strip(), (ans or "").strip()
    m = ([None] + list(_DX.finditer(text)))[-1]  # the last 'diagnosis:' cue
    if m is not None and m.start() > 0:
        return text[: m.start()].strip(), text[m.start() :].strip()
    return "", text.strip()


class InferenceService:
    """Loaded policies keyed by (run id, stage), at most `max_loaded` at a time."""

    def __init__(self, reader: RunsReader, max_loaded: int = 2, max_new_tokens: int | None = None):
        self.reader = reader
        self.max_loaded = max(1, max_loaded)
        self.max_new_tokens = max_new_tokens
        self._cache: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = threading.Lock()  # guards _cache and _key_locks
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}
        self.loads = 0  # how many times a policy was loaded (tests check the cache with it)

    def loaded(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._cache)

    def _key_lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def policy(self, run_id: str, stage: str) -> tuple[Any, float]:
        """(the loaded policy, seconds spent loading it now: 0 on a cache hit)."""
        key = (run_id, stage)
        with self._key_lock(key):  # held while this key loads and while it generates
            with self._lock:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    return self._cache[key], 0.0
            t = time.perf_counter()
            pol = self._load(run_id, stage)
            with self._lock:
                self._cache[key] = pol
                self.loads += 1
                while len(self._cache) > self.max_loaded:
                    self._cache.popitem(last=False)  # a request still holding it finishes; memory goes after
            return pol, time.perf_counter() - t

    def _load(self, run_id: str, stage: str):
        from training.export import run_model_config
        from training.models.loading import load_policy

        adapter = self.reader.adapter_dir(run_id, stage)  # confined; Refused if missing
        cfg, _ = run_model_config(self.reader.run(run_id))
        cfg = replace(cfg, gradient_checkpointing=False, adapter=None)
        pol = load_policy(cfg, adapter=adapter, trainable=False)
        pol.model.eval()
        return pol

    def generate(
        self,
        run_id: str,
        stage: str,
        messages: list[dict],
        images: list | None = None,
        max_new_tokens: int | None = None,
        continuation: str = "",
        stop_strings: list[str] | None = None,
    ) -> Generation:
        """Greedy answer of one (run, stage) to a chat; images (PIL) only for a VLM.

        `continuation`: text the assistant turn already holds (a multi-step case's earlier actions and
        observations), generation goes on from it; `stop_strings` end the new text (kept in it).
        """
        from training.data.batch import encode_prompts
        from training.models.chat import render
        from training.rollout.generation import generate_completions

        pol, load_s = self.policy(run_id, stage)
        if images and not pol.is_vlm:
            raise ValueError(f"{run_id} is a text model; choose an image+text run for images")
        n = max(1, min(int(max_new_tokens or self.max_new_tokens or 160), 1024))
        with self._key_lock((run_id, stage)):
            t = time.perf_counter()
            text = render(pol.processor, messages, add_generation_prompt=True) + continuation
            prompts = encode_prompts(pol.processor, [text], [images] if images else None)
            out = generate_completions(pol, prompts, n, stop_strings=stop_strings or (), precision="fp32")[0][
                0
            ]
            seconds = time.perf_counter() - t
        reasoning, answer = split_answer(out.text)
        used = out.length
        ended = (
            used < n
            or _ends_turn(pol, out.token_ids)
            or any(out.text.endswith(s) for s in stop_strings or [])
        )
        return Generation(run_id, stage, out.text, reasoning, answer, used, seconds, load_s, n, bool(ended))


def _ends_turn(policy, token_ids: list[int]) -> bool:
    """Did the completion's last kept token end the turn (an answer exactly `budget` long that finished)?"""
    if not token_ids:
        return False
    eos = policy.tokenizer.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos]) | {
        policy.tokenizer.convert_tokens_to_ids("<|im_end|>")
    }
    return int(token_ids[-1]) in eos
