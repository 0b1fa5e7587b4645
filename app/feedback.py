"""Clinicians' verdicts, stored so that none is lost: one SQLite file (standard library `sqlite3`, WAL).

Two kinds of verdict reach the store:
- ``pair``: a reviewer read one preference pair (a line of a DPO pair file, e.g. the DermIQ pipeline's KG-judged
  `data/dpo_pairs.jsonl`) and chose ``keep`` (the chosen answer is better: the KG was right), ``swap`` (the rejected
  one is better) or ``reject`` (neither should train the model);
- ``answer``: a reviewer marked a live answer in the app ``right``, ``wrong`` or ``unsafe``, optionally with the
  corrected answer (which then becomes a pair: the correction chosen over the model's answer).

Every verdict is one transaction (`with connection:`), committed before the call returns, so an app killed at any
moment keeps every verdict it acknowledged; WAL lets readers (the agreement figures) run while reviewers write, and a
busy database waits (``timeout``) instead of failing. A reviewer's later verdict on the same pair replaces their
earlier one (one row per reviewer and pair), so nothing is counted twice. A row keeps its provenance: reviewer, time
(UTC), source file and line, adapter, reason, and the prompt, images and both answers as they were shown.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

PAIR_VERDICTS = ("keep", "swap", "reject")
ANSWER_VERDICTS = ("right", "wrong", "unsafe")
SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('pair', 'answer')),
    source TEXT NOT NULL,
    line INTEGER NOT NULL,
    adapter TEXT,
    verdict TEXT NOT NULL,
    reason TEXT,
    condition TEXT,
    prompt TEXT NOT NULL,
    images TEXT NOT NULL,
    chosen TEXT,
    rejected TEXT,
    correction TEXT,
    UNIQUE (reviewer, kind, source, line)
)
"""


class FeedbackError(ValueError):
    """A verdict the store refuses (unknown verdict, empty reviewer): one line naming the field."""


class FeedbackStore:
    """The verdicts in one SQLite file; safe to use from many threads and processes at once."""

    def __init__(self, path: str | Path, timeout: float = 30.0):
        self.path = Path(path)
        self.timeout = timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=self.timeout)
        con.execute(
            "PRAGMA synchronous=FULL"
        )  # a committed verdict survives a power cut, not only a killed app
        return con

    def add(
        self,
        *,
        reviewer: str,
        kind: str,
        source: str,
        line: int,
        verdict: str,
        prompt: Any,
        chosen: str | None = None,
        rejected: str | None = None,
        images: list[str] | None = None,
        adapter: str | None = None,
        reason: str | None = None,
        condition: str | None = None,
        correction: str | None = None,
    ) -> int:
        """Store one verdict (replacing the reviewer's earlier verdict on the same item); returns its row id."""
        allowed = PAIR_VERDICTS if kind == "pair" else ANSWER_VERDICTS if kind == "answer" else None
        if allowed is None:
            raise FeedbackError(f"kind: expected pair or answer, got {kind!r}")
        if verdict not in allowed:
            raise FeedbackError(
                f"verdict: expected one of {', '.join(allowed)} for a {kind}, got {verdict!r}"
            )
        if not (reviewer or "").strip():
            raise FeedbackError("reviewer: expected a name (the signed-in user, or the name field)")
        row = (
            datetime.now(timezone.utc).isoformat(timespec="seconds"),
            reviewer.strip(),
            kind,
            str(source),
            int(line),
            adapter,
            verdict,
            (reason or "").strip() or None,
            condition,
            json.dumps(prompt, ensure_ascii=False),
            json.dumps(list(images or []), ensure_ascii=False),
            chosen,
            rejected,
            (correction or "").strip() or None,
        )
        con = self._connect()
        try:
            with con:  # one transaction: committed here, or not at all
                cur = con.execute(
                    "INSERT INTO verdicts (time, reviewer, kind, source, line, adapter, verdict, reason, condition, "
                    "prompt, images, chosen, rejected, correction) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (reviewer, kind, source, line) DO UPDATE SET time = excluded.time, "
                    "adapter = excluded.adapter, verdict = excluded.verdict, reason = excluded.reason, "
                    "correction = excluded.correction",
                    row,
                )
                return int(cur.lastrowid)
        finally:
            con.close()

    def rows(self, kind: str | None = None) -> list[dict]:
        """Every verdict (of one kind), oldest first, with prompt and images decoded."""
        con = self._connect()
        con.row_factory = sqlite3.Row
        try:
            query = "SELECT * FROM verdicts" + (" WHERE kind = ?" if kind else "") + " ORDER BY id"
            out = []
            for r in con.execute(query, (kind,) if kind else ()):
                d = dict(r)
                d["prompt"], d["images"] = json.loads(d["prompt"]), json.loads(d["images"])
                out.append(d)
            return out
        finally:
            con.close()

    def agreement(self) -> dict:
        """How often reviewers agreed with the KG on the pairs they judged (keep / (keep + swap); reject counts
        apart), overall and per condition, with the counts."""
        overall: Counter = Counter()
        per: dict[str, Counter] = defaultdict(Counter)
        for r in self.rows("pair"):
            overall[r["verdict"]] += 1
            per[r["condition"] or "(none)"][r["verdict"]] += 1

        def share(c: Counter) -> dict:
            decided = c["keep"] + c["swap"]
            return {
                "keep": c["keep"],
                "swap": c["swap"],
                "reject": c["reject"],
                "agreement": c["keep"] / decided if decided else None,
            }

        return {"overall": share(overall), "per_condition": {k: share(v) for k, v in sorted(per.items())}}
