"""Ablations: arms x seeds of one pipeline stage, each run measured, summarised per arm across seeds.

An arm is a name and what it changes in the ablated stage's recipe section; everything else (sampler, loss,
reference, optimiser, budget, start adapter, data) is the section's and the caller's, so two arms differ only where
they say. Every (seed, arm) is its own run folder OUT/<arm>_s<seed>, trained once: a finished run is reused and a
started one resumes, so re-running an ablation continues it. A domain declares its arms, what it measures on a run
(`run_arms`' ``measure``) and its table (`AblationTable`); the result goes to OUT/ablation.json (everything),
OUT/ablation.csv (the per-arm summary) and OUT/ablation.md (the summary, then every run).

Per arm and measure the summary holds the mean over seeds and the spread (max - min), and the table prints
"mean ± half the spread". With two seeds, the usual budget here, that interval is exactly the range the seeds gave;
a t-interval would be mostly its quantile (12.7 for two seeds) and a standard deviation from two values says
little more than their range. Measures a run lacks (None) are left out of its arm's mean.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from training.atomic import atomic_write_text
from training.config import merge
from training.trainers.evaluation import fmt, write_csv, write_json
from training.trainers.pipeline import Pipeline, train_or_reuse


@dataclass(frozen=True)
class Arm:
    """One arm: its name and what it changes in the ablated section."""

    name: str  # its row in the tables
    overrides: dict = field(default_factory=dict)  # merged over the section (nested keys merge)
    replaces: tuple[
        str, ...
    ] = ()  # keys of the section dropped first, so `overrides` sets them whole (a reward table)
    folder: str | None = None  # its run folders' prefix, OUT/<folder>_s<seed> (None: its name)


def run_arms(
    pipeline: Pipeline,
    raw: dict,
    stage: str,
    out: Path,
    seeds: list[int],
    arms: list[Arm],
    extra: dict,
    measure: Callable[[Path, Arm], dict],
) -> list[dict]:
    """Train (or reuse) every (seed, arm) run of section ``stage`` with ``extra`` (what all arms share: the start
    adapter, the data) and the arm's changes, seeds outer; one row per run: arm, seed, ``measure(run folder, arm)``."""
    rows = []
    for seed in seeds:
        for arm in arms:
            name = f"{arm.folder or arm.name}_s{seed}"
            section = {k: v for k, v in raw[stage].items() if k not in arm.replaces}
            cfg = pipeline.stage_config(
                {**raw, stage: section}, stage, out, seed, merge(extra, arm.overrides), name=name
            )
            train_or_reuse(cfg)
            rows.append({"arm": arm.name, "seed": seed, **measure(Path(out) / name, arm)})
    return rows


@dataclass(frozen=True)
class AblationTable:
    """What a domain's ablation reports: its title, the measures it summarises and the columns it prints."""

    title: str  # the table's first line, `str.format`ted with the result's keys (seeds, steps, start, ...)
    measures: tuple[str, ...]  # per run, and summarised per arm (JSON, CSV)
    shown: tuple[str, ...]  # the markdown table's columns

    def summarise(self, runs: list[dict]) -> list[dict]:
        """Per arm, in the order arms first appear: the seeds it ran, each measure's mean and spread (max - min)."""
        out = []
        for arm in dict.fromkeys(r["arm"] for r in runs):
            rows = [r for r in runs if r["arm"] == arm]
            row: dict = {"arm": arm, "seeds": len(rows)}
            for k in self.measures:
                vals = [r[k] for r in rows if r.get(k) is not None]
                row[k] = sum(vals) / len(vals) if vals else None
                row[f"{k}_spread"] = max(vals) - min(vals) if vals else None
            out.append(row)
        return out

    def markdown(self, result: dict) -> str:
        """The title, the arms (mean ± half the spread when an arm ran several seeds), then every run."""
        sep = "|" + "---|" * (len(self.shown) + 2)
        lines = [self.title.format(**result), "", "| arm | seeds | " + " | ".join(self.shown) + " |", sep]
        for r in result["mean"]:
            cells = [_interval(r[k], r[f"{k}_spread"]) if r["seeds"] > 1 else fmt(r[k]) for k in self.shown]
            lines.append(f"| {r['arm']} | {r['seeds']} | " + " | ".join(cells) + " |")
        lines += ["", "| arm | seed | " + " | ".join(self.shown) + " |", sep]
        for r in result["runs"]:
            lines.append(
                f"| {r['arm']} | {r['seed']} | " + " | ".join(fmt(r.get(k)) for k in self.shown) + " |"
            )
        return "\n".join(lines)

    def write(self, out: Path, header: dict, runs: list[dict]) -> dict:
        """The result (``header``, the per-arm summary, every run) as OUT/ablation.json, .csv and .md."""
        result = {**header, "mean": self.summarise(runs), "runs": runs}
        write_json(out / "ablation.json", result)
        fields = ["arm", "seeds", *(f for k in self.measures for f in (k, f"{k}_spread"))]
        write_csv(out / "ablation.csv", result["mean"], fields)
        atomic_write_text(out / "ablation.md", self.markdown(result) + "\n")
        return result


def _interval(mean, spread) -> str:
    return fmt(mean) if mean is None or spread is None else f"{mean:.3f} ± {spread / 2:.3f}"
