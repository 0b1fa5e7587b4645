"""Read the runs root for the app: runs, their stages (adapters), model cards, metrics, evaluations and trees.

Everything goes through `training.run.rundir.RunDir`, and every id that comes from the browser through `app.safety.confine`,
so the app opens nothing outside the runs root. Torch- and gradio-free: the tests read runs without a browser.

A run id is the run folder relative to the root (`demo/sft_vlm`); a *stage* of a run is one adapter it holds:
`final` (adapter/) or `step-N` (a checkpoint). A pipeline that writes one run per method (GRPO++ -> SFT -> DPO)
shows up as one run per method, each labelled by what trained it (`method`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from training.run.rundir import ADAPTER_WEIGHTS, RunDir, read_json_lines

from .safety import Refused, confine

MAX_DEPTH = 3  # runs/<pipeline>/<run> and one level more
MAX_TABLE_ROWS = 200
FINAL = "final"
BEST = "best"  # RUN/best/: the adapter of the best held-out evaluation during training (`run.keep_best`)
# Metrics worth plotting first, in this order; the rest follow alphabetically.
PREFERRED_METRICS = (
    "reward/mean",
    "loss",
    "adv/frac_correct",
    "reward/std",
    "loss/kl/mean",
    "loss/entropy/mean",
    "grad_norm",
    "lr",
    "completion_len_mean",
)
_SKIP_METRICS = {"step", "time", "epoch"}
_ROLLOUT_FILE = re.compile(r"^step-(\d+)\.jsonl$")


@dataclass
class RunInfo:
    """One run as the app lists it."""

    id: str
    path: Path
    trainer: str
    method: str
    base: str
    vlm: bool
    stages: list[str] = field(default_factory=list)  # "final", then checkpoints newest first
    steps_logged: int = 0
    finished: bool = False

    @property
    def label(self) -> str:
        state = "finished" if self.finished else "in progress / stopped"
        return f"{self.id} · {self.method} · {'image+text' if self.vlm else 'text'} · {state}"


def method_of(cfg: dict) -> str:
    """What trained the run, as a clinician-facing label: SFT, GRPO, GRPO++, CRPO, Tree-GRPO, DPO."""
    trainer = str(cfg.get("trainer", "sft"))
    if trainer != "rl":
        return trainer.upper()
    if (cfg.get("rollout") or {}).get("strategy") == "tree" or "tree" in cfg:
        return "Tree-GRPO"
    rewards = cfg.get("rewards") or {}
    if any("faithfulness" in k or "comprehensiveness" in k for k in rewards):
        return "CRPO"
    return "GRPO++" if (cfg.get("advantages") or {}).get("estimator") == "grpo++" else "GRPO"


def _is_vlm(base: str, path: Path) -> bool:
    if base.startswith("embedded:"):
        return base == "embedded:qwen25vl"
    adapter_cfg = path / "adapter" / "adapter_config.json"
    name = base.lower()
    if adapter_cfg.is_file():
        name += json.loads(adapter_cfg.read_text()).get("base_model_name_or_path", "").lower()
    return "-vl" in name or "vl-" in name or "vision" in name


# Headline evaluation numbers, in this order, of whichever pipeline wrote them (DermIQ, Clinical-R1).
STAGE_COLUMNS = (
    "balanced_accuracy",
    "accuracy",
    "macro_f1",
    "auc_macro_ovr",
    "format_valid",
    "format_ok",
    "kg_faithfulness",
    "image_faithfulness",
    "faithfulness",
    "comprehensiveness",
    "rejection_coverage",
    "evidence_per_100_words",
    "hallucination_rate",
    "n",
)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _fmt(v) -> str:
    if not _is_number(v):
        return "-"
    return str(v) if isinstance(v, int) else f"{v:.3f}"


class RunsReader:
    """The runs under one root folder (which may not exist yet: a fresh clone has no runs)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def exists(self) -> bool:
        return self.root.is_dir()

    def run_ids(self) -> list[str]:
        """Every folder under the root with a config.yaml, up to MAX_DEPTH deep, sorted."""
        if not self.root.is_dir():
            return []
        found = []
        frontier = [self.root]
        for _ in range(MAX_DEPTH):
            nxt = []
            for d in frontier:
                for child in _subfolders(d):
                    if RunDir(child).is_run():
                        found.append(child.relative_to(self.root).as_posix())
                    elif child.name not in ("checkpoints", "tensorboard", "adapter"):
                        nxt.append(child)
            frontier = nxt
        return sorted(found)

    def run(self, run_id: str) -> RunDir:
        """The RunDir of a browser-given id: confined to the root and an actual run, else Refused."""
        run = RunDir(confine(self.root, run_id))
        if not run.is_run():
            raise Refused(
                f"{run_id!r} is not a run under the runs folder (deleted or moved?); press ↻ to refresh the "
                "run lists"
            )
        return run

    def info(self, run_id: str) -> RunInfo:
        run = self.run(run_id)
        cfg = run.read_config()
        base = str((cfg.get("model") or {}).get("name", "?"))
        stages = [FINAL] if run.is_finished() else []
        stages += [BEST] if run.read_best() else []
        stages += [
            f"step-{s}" for s, p in reversed(run.checkpoints()) if (p / "adapter" / ADAPTER_WEIGHTS).is_file()
        ]
        steps = sum(1 for r in run.read_metrics() if "step" in r and r.get("event") is None)
        return RunInfo(
            run_id,
            run.path,
            str(cfg.get("trainer", "sft")),
            method_of(cfg),
            base,
            _is_vlm(base, run.path),
            stages,
            steps,
            run.is_finished(),
        )

    def runs(self) -> list[RunInfo]:
        out = []
        for rid in self.run_ids():
            try:
                out.append(self.info(rid))
            except (
                OSError,
                ValueError,
                yaml.YAMLError,
            ):  # a run being written or deleted, a broken config: the others
                continue
        return out

    def adapter_dir(self, run_id: str, stage: str) -> Path:
        """The adapter folder of one stage of a run; Refused if the stage does not exist."""
        run = self.run(run_id)
        if stage == FINAL:
            path = run.adapter_dir
        elif stage == BEST:
            path = run.best_dir
        else:
            path = confine(run.checkpoints_dir, stage) / "adapter"
        if not (path / ADAPTER_WEIGHTS).is_file():
            raise Refused(f"{run_id!r} has no adapter for stage {stage!r}")
        return path

    # ---- rollouts -----------------------------------------------------------------------------------------------
    def rollout_steps(self, run_id: str) -> list[int]:
        """Steps with a rollouts/step-N.jsonl (`run.log_rollouts`), in order."""
        folder = self.run(run_id).rollouts_dir
        if not folder.is_dir():
            return []
        return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _ROLLOUT_FILE.match(p.name)))

    def rollouts(self, run_id: str, step: int) -> list[dict]:
        """The rows of one step's rollouts file (unreadable lines skipped); Refused if the step has none."""
        path = self.run(run_id).rollouts_dir / f"step-{int(step)}.jsonl"
        if not path.is_file():
            raise Refused(f"{run_id!r} has no rollouts for step {step}")
        return read_json_lines(path)

    # ---- metrics ------------------------------------------------------------------------------------------------
    def metric_names(self, run_id: str) -> list[str]:
        """Numeric per-step metrics the run logged, the usual ones first."""
        names: set[str] = set()
        run = self.run(run_id)
        headline = f"eval/{(run.read_config().get('eval') or {}).get('metric') or ''}"
        for r in run.read_metrics():
            if r.get("event") is None:
                names |= {k for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        names -= _SKIP_METRICS
        first = [m for m in PREFERRED_METRICS[:1] if m in names]
        # held-out metrics right beside the reward, the recipe's headline (`eval.metric`) first
        first += sorted((m for m in names if m.startswith("eval/")), key=lambda m: (m != headline, m))
        first += [m for m in PREFERRED_METRICS[1:] if m in names]
        return first + sorted(names - set(first))

    def series(self, run_id: str, metric: str) -> list[tuple[int, float]]:
        """(step, value) for one metric, in logged order (a resumed run's rows are already de-duplicated)."""
        out = []
        for r in self.run(run_id).read_metrics():
            v = r.get(metric)
            if (
                r.get("event") is None
                and isinstance(v, (int, float))
                and not isinstance(v, bool)
                and "step" in r
            ):
                out.append((int(r["step"]), float(v)))
        return out

    def summary(self, run_id: str) -> dict:
        """First and last value of each metric, and the run's recipe in brief."""
        info = self.info(run_id)
        cfg = self.run(run_id).read_config()
        out = {
            "run": run_id,
            "method": info.method,
            "base": info.base,
            "steps logged": info.steps_logged,
            "finished": info.finished,
            "stages": ", ".join(info.stages) or "none",
            "data": str((cfg.get("data") or {}).get("train", "")),
            "lr": (cfg.get("optim") or {}).get("lr"),
        }
        for m in self.metric_names(run_id)[:6]:
            s = self.series(run_id, m)
            if s:
                out[m] = f"{s[0][1]:.4g} → {s[-1][1]:.4g}"
        return out

    # ---- model cards, evaluations, trees -------------------------------------------------------------------------
    def model_card(self, run_id: str) -> str:
        """The adapter's medrl model card (as `medrl export` writes it), generated from the run."""
        from training.export import find_adapter, model_card, run_model_config

        run = self.run(run_id)
        _, raw = run_model_config(run)
        src = find_adapter(run)
        base = json.loads((src / "adapter_config.json").read_text()).get("base_model_name_or_path", "")
        return model_card(run, raw, src, base, None)

    def eval_files(self, run_id: str) -> list[str]:
        run = self.run(run_id)
        if not run.eval_dir.is_dir():
            return []
        return sorted(
            p.relative_to(run.eval_dir).as_posix()
            for p in run.eval_dir.rglob("*")
            if p.is_file() and p.suffix in (".json", ".jsonl", ".png", ".csv")
        )

    def eval_file(self, run_id: str, name: str) -> Path:
        run = self.run(run_id)
        return confine(run.eval_dir, name)

    def eval_tables(self, run_id: str) -> list[tuple[str, list[list]]]:
        """Each eval/*.json as a (name, rows of [key, value]) table, nested keys joined with '/'."""
        out = []
        for name in self.eval_files(run_id):
            if name.endswith(".json"):
                try:
                    data = json.loads(self.eval_file(run_id, name).read_text())
                except ValueError:
                    continue
                out.append((name, _flatten(data)[:MAX_TABLE_ROWS]))
        return out

    def stage_table(self, run_id: str) -> tuple[list[str], list[list]] | None:
        """A pipeline's stages side by side: the runs in this run's folder (warm-up, GRPO++, SFT, DPO; cold start,
        CRPO), in chain order, with the headline numbers of their evaluation (`eval/metrics.json`, else the first
        `eval/*.json`). None for a run on its own."""
        parent = run_id.rsplit("/", 1)[0] if "/" in run_id else ""
        self.run(run_id)
        rows: list[tuple[float, str, dict, str]] = []
        for rid in self.run_ids():
            if (rid.rsplit("/", 1)[0] if "/" in rid else "") != parent:
                continue
            run = self.run(rid)
            found = sorted(run.eval_dir.glob("*.json")) if run.eval_dir.is_dir() else []
            path = (
                run.eval_dir / "metrics.json"
                if (run.eval_dir / "metrics.json") in found
                else (found or [None])[0]
            )
            if path is None:
                continue
            try:
                metrics = json.loads(path.read_text())
            except (OSError, ValueError):
                metrics = None
            if isinstance(metrics, dict):
                start = str((run.read_config().get("model") or {}).get("adapter") or "")
                rows.append((run.config_path.stat().st_mtime, rid.rsplit("/", 1)[-1], metrics, start))
        if len(rows) < 2:
            return None
        # Stages chain by adapter (a stage's model.adapter is the previous stage's): order by depth in that chain,
        # then by when the stage started (ablation arms from one start).
        names = {name for _, name, _, _ in rows}
        parent = {
            name: Path(start).parent.name for _, name, _, start in rows if Path(start).parent.name in names
        }

        def depth(name: str) -> int:
            seen = 0
            while name in parent and seen < len(names):
                name, seen = parent[name], seen + 1
            return seen

        rows.sort(key=lambda r: (depth(r[1]), r[0]))
        numeric = [k for k in STAGE_COLUMNS if any(_is_number(m.get(k)) for _, _, m, _ in rows)]
        return (["stage", *numeric], [[name, *[_fmt(m.get(k)) for k in numeric]] for _, name, m, _ in rows])

    def tree_files(self, run_id: str) -> list[str]:
        """Tree files: `*.json` (one tree each) and `step-N.jsonl` lines (Tree-GRPO, one tree a line) as `FILE#LINE`."""
        run = self.run(run_id)
        if not run.trees_dir.is_dir():
            return []
        out = [p.relative_to(run.trees_dir).as_posix() for p in run.trees_dir.rglob("*.json") if p.is_file()]
        for p in run.trees_dir.rglob("*.jsonl"):
            if p.is_file():
                lines = sum(1 for line in p.read_text(encoding="utf-8").splitlines() if line.strip())
                out += [f"{p.relative_to(run.trees_dir).as_posix()}#{i}" for i in range(lines)]
        return sorted(out, key=_natural)

    def read_tree(self, run_id: str, name: str) -> dict | list:
        file, _, line = name.partition("#")
        path = confine(self.run(run_id).trees_dir, file)
        if path.is_file() and path.suffix == ".jsonl" and line.isdigit():
            rows = [x for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
            if int(line) < len(rows):
                return json.loads(rows[int(line)])
        if not path.is_file() or path.suffix != ".json" or line:
            raise Refused(f"{name!r} is not a tree file of {run_id!r}")
        return json.loads(path.read_text())


def _subfolders(d: Path) -> list[Path]:
    """Visible subfolders, sorted; none when `d` was deleted while the runs were being listed."""
    try:
        return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def _natural(name: str) -> list:
    """step-2 before step-10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _flatten(data, prefix: str = "") -> list[list]:
    if isinstance(data, dict):
        rows = []
        for k, v in data.items():
            rows += _flatten(v, f"{prefix}{k}/")
        return rows
    if isinstance(data, list) and data and all(isinstance(x, list) for x in data):  # a matrix (confusion)
        return [[prefix.rstrip("/"), json.dumps(data)]]
    return [
        [
            prefix.rstrip("/"),
            data if isinstance(data, (int, float, str, bool)) or data is None else json.dumps(data),
        ]
    ]
