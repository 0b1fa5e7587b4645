"""What every tab shares: the runs reader, the inference service, the KGs, the scratch folder, and the choice lists
(adapters as `run_id@stage`). Gradio-free; the tab modules wire these into components."""

from __future__ import annotations

import functools
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from knowledge_graph.kg import KnowledgeGraph

from .inference import InferenceService
from .runs import RunInfo, RunsReader
from .safety import Refused

NO_RUNS = (
    "No trained runs under {root} yet. `make demo` (CPU, a few minutes) creates SFT runs of the tiny "
    "image+text and text models and a GRPO++ run; then press ↻. The samples, the KG check and the "
    "Knowledge graph tab work without any run."
)


@dataclass
class AppContext:
    runs_root: Path
    # None: each run's own answer length (its task card); a number caps every answer
    max_new_tokens: int | None = None
    max_loaded: int = 2
    concurrency: int = 1
    scratch: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="medrl-app-")))
    reader: RunsReader = field(init=False)
    service: InferenceService = field(init=False)
    _kgs: dict[str, KnowledgeGraph] = field(default_factory=dict, init=False)
    _kg_lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.runs_root = Path(self.runs_root)
        self.reader = RunsReader(self.runs_root)
        self.service = InferenceService(self.reader, self.max_loaded, self.max_new_tokens)

    @functools.cached_property
    def feedback(self):
        """The clinicians' verdicts (`app.feedback.FeedbackStore`), RUNS/feedback.sqlite, opened on first use."""
        from .feedback import FeedbackStore

        return FeedbackStore(self.runs_root / "feedback.sqlite")

    def kg(self, name: str) -> KnowledgeGraph:
        """The built-in KG `derm` or `clinical`, loaded once."""
        if name not in ("derm", "clinical"):
            raise Refused(f"unknown knowledge graph {name!r}")
        with self._kg_lock:
            if name not in self._kgs:
                from knowledge_graph.io import load_builtin

                self._kgs[name] = load_builtin(name)
            return self._kgs[name]

    def card(self, run_id: str) -> dict | None:
        """The run's task card (how it was trained to be asked; `training.run.task_card`), None when it has none."""
        from training.run.task_card import read_card

        return read_card(self.reader.run(run_id).path)

    def answer_budget(self, card_tokens: int, asked: float | None) -> int:
        """New tokens for an answer: what the user set (> 0), else the run's own length, capped by the app's limit."""
        n = int(asked) if asked else int(card_tokens)
        return min(n, self.max_new_tokens) if self.max_new_tokens else n

    def no_runs_text(self) -> str:
        return NO_RUNS.format(root=self.runs_root)

    def adapter_choices(self, vlm: bool | None = None) -> list[tuple[str, str]]:
        """(label, 'run_id@stage') for every adapter of the runs (only image+text runs when `vlm` is True)."""
        out = []
        runs: list[RunInfo] = self.reader.runs()
        if vlm is True:  # an image needs an image+text model
            runs = [r for r in runs if r.vlm]
        elif vlm is False:  # text questions: text models first, image+text models can answer too
            runs = sorted(runs, key=lambda r: r.vlm)
        for r in runs:
            for s in r.stages:
                out.append(
                    (f"{r.id} · {r.method} · {s} · {'image+text' if r.vlm else 'text'}", f"{r.id}@{s}")
                )
        return out

    def run_choices(self, with_adapter: bool = False) -> list[tuple[str, str]]:
        return [(r.label, r.id) for r in self.reader.runs() if r.stages or not with_adapter]

    def parse_adapter(self, value: str | None) -> tuple[str, str]:
        """'run_id@stage' from the browser -> (run_id, stage), both confined and existing; Refused otherwise."""
        if not value or "@" not in value:
            raise Refused(
                "choose a trained adapter (run and stage) first"
                if self.reader.run_ids()
                else self.no_runs_text()
            )
        run_id, stage = value.rsplit("@", 1)
        self.reader.adapter_dir(run_id, stage)
        return run_id, stage


def error_text(exc: Exception) -> str:
    """A user error as the browser shows it. Gradio renders an error's message as HTML, so an unescaped
    `<ask>history</ask>` example is taken for a tag and vanishes ("type an action, e.g. , , or")."""
    from html import escape

    return escape(str(exc), quote=False)


def user_errors(fn):
    """Handlers raise Refused / MedrlError / ValueError for the user's input: show the message (escaped: gradio renders
    it as HTML), not a traceback."""
    import gradio as gr

    from training.errors import MedrlError

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (Refused, MedrlError, ValueError, FileNotFoundError) as e:
            raise gr.Error(error_text(e), print_exception=False) from None

    return wrapper
