"""Ablations: arms x seeds of one pipeline stage, each run measured, summarised per arm across seeds.

An arm is a name, what it changes in the ablated stage's recipe section, in words (``changes``) and as overrides,
and the arm it is compared with (``versus``, by default the first arm). Everything else (sampler, loss, reference,
optimiser, budget, start adapter, data) is the section's and the caller's, so two arms differ only where they say:
a domain's arms form a ladder where each arm changes one thing from the arm it is compared with. Every (seed, arm)
is its own run folder OUT/<arm>_s<seed>, trained once: a finished run is reused and a started one resumes, so
re-running an ablation continues it. A domain declares its arms, what it measures on a run (`run_arms`'
``measure``) and its table (`AblationTable`); the result goes to OUT/ablation.json (everything), OUT/ablation.csv
(the per-arm summary) and OUT/ablation.md (the summary, the differences, then every run).

Per arm and measure the summary holds the mean over seeds and the sample standard deviation; per arm with a
``versus`` arm, the mean paired difference over the seeds both ran and its 95% t-interval (mean +- t(0.975, n - 1)
x sd / sqrt(n); what `scipy.stats.ttest_rel(...).confidence_interval()` gives, tested against it). Runs of one
seed share the start adapter and the data order, so the pairing removes what the seed moves in both arms. A
difference whose interval holds 0 is printed without a star: inside the seed noise. With 2 seeds the t quantile
is 12.7 and the interval wide; 3 seeds (4.30) is the default of the demo-scale ablations. Measures a run lacks
(None) are left out of its arm's mean and of the pairs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from training.atomic import atomic_write_text
from training.config import merge
from training.trainers.evaluation import fmt, write_csv, write_json
from training.trainers.pipeline import Pipeline, train_or_reuse


@dataclass(frozen=True)
class Arm:
    """One arm: its name, what it changes in the ablated section, and the arm it is compared with."""

    name: str  # its row in the tables
    overrides: dict = field(default_factory=dict)  # merged over the section (nested keys merge)
    replaces: tuple[
        str, ...
    ] = ()  # section keys dropped first, so `overrides` sets them whole (a reward table)
    folder: str | None = None  # its run folders' prefix, OUT/<folder>_s<seed> (None: its name)
    changes: str = ""  # what it changes from `versus`, in words, printed in the table
    versus: str | None = None  # the arm its paired differences are taken from (None: the first arm)


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
            cfg = arm_config(pipeline, raw, stage, out, seed, arm, extra)
            train_or_reuse(cfg)
            rows.append({"arm": arm.name, "seed": seed, **measure(Path(cfg.run.dir), arm)})
    return rows


def config_diff(a, b, ignore: tuple[str, ...] = ("run.dir", "run.name")) -> dict[str, tuple]:
    """{dotted key: (a's value, b's value)} where two (nested dataclass) configs differ, ``ignore``d keys aside:
    what one arm changes from another, as the trainer will see it."""
    flat_a, flat_b = _flatten(a), _flatten(b)
    return {
        k: (flat_a.get(k), flat_b.get(k))
        for k in flat_a.keys() | flat_b.keys()
        if flat_a.get(k) != flat_b.get(k) and not k.startswith(ignore)
    }


def _flatten(cfg, prefix: str = "") -> dict:
    out = {}
    for f in dataclasses.fields(cfg):
        value, key = getattr(cfg, f.name), prefix + f.name
        out.update(_flatten(value, key + ".") if dataclasses.is_dataclass(value) else {key: value})
    return out


def arm_config(pipeline: Pipeline, raw: dict, stage: str, out: Path, seed: int, arm: Arm, extra: dict):
    """The stage's config for one (seed, arm) run, in OUT/<folder>_s<seed>: what `run_arms` trains, and what a
    test compares between two arms to show they differ in one setting."""
    section = {k: v for k, v in raw[stage].items() if k not in arm.replaces}
    name = f"{arm.folder or arm.name}_s{seed}"
    return pipeline.stage_config(
        {**raw, stage: section}, stage, out, seed, merge(extra, arm.overrides), name=name
    )


@dataclass(frozen=True)
class AblationTable:
    """What a domain's ablation reports: its title, the measures it summarises and the columns it prints."""

    title: str  # the table's first line, `str.format`ted with the result's keys (seeds, steps, start, ...)
    measures: tuple[str, ...]  # per run, and summarised per arm (JSON, CSV)
    shown: tuple[str, ...]  # the markdown table's columns

    def summarise(self, runs: list[dict], arms: list[Arm] = ()) -> list[dict]:
        """Per arm, in the order arms first appear: its changes, the seeds it ran, each measure's mean and sample
        std, and (for an arm compared with another) the paired difference and its 95% interval."""
        by_name = {a.name: a for a in arms}
        first = arms[0].name if arms else None
        out = []
        for arm in dict.fromkeys(r["arm"] for r in runs):
            rows = [r for r in runs if r["arm"] == arm]
            spec = by_name.get(arm)
            versus = None
            if (
                spec is not None and arm != first
            ):  # an arm compared with one not run is compared with the first
                versus = spec.versus if spec.versus in by_name else first
            row: dict = {
                "arm": arm,
                "changes": spec.changes if spec else "",
                "versus": versus,
                "seeds": len(rows),
            }
            for k in self.measures:
                vals = [r[k] for r in rows if r.get(k) is not None]
                row[k] = sum(vals) / len(vals) if vals else None
                row[f"{k}_std"] = _std(vals)
                if versus is not None:
                    base = {r["seed"]: r.get(k) for r in runs if r["arm"] == versus}
                    diffs = [
                        r[k] - base[r["seed"]]
                        for r in rows
                        if r.get(k) is not None and base.get(r["seed"]) is not None
                    ]
                    row[f"{k}_diff"], row[f"{k}_diff_low"], row[f"{k}_diff_high"] = paired_interval(diffs)
            out.append(row)
        return out

    def markdown(self, result: dict) -> str:
        """The title; the arms (mean ± sd over seeds); each arm's paired difference from the arm it is compared with
        (95% interval, * where it excludes 0); then every run."""
        sep = "|" + "---|" * (len(self.shown) + 2)
        lines = [self.title.format(**result), "", "| arm | seeds | " + " | ".join(self.shown) + " |", sep]
        for r in result["mean"]:
            cells = [_with_std(r[k], r.get(f"{k}_std")) for k in self.shown]
            lines.append(f"| {r['arm']} | {r['seeds']} | " + " | ".join(cells) + " |")
        compared = [r for r in result["mean"] if r.get("versus")]
        if compared:
            lines += [
                "",
                "Paired difference from the arm compared with, mean [95% interval] over seeds; * where the "
                "interval excludes 0 (outside the seed noise).",
                "",
            ]
            lines += [
                "| arm | changes | vs | " + " | ".join(self.shown) + " |",
                "|" + "---|" * (len(self.shown) + 3),
            ]
            for r in compared:
                cells = [
                    _diff(r.get(f"{k}_diff"), r.get(f"{k}_diff_low"), r.get(f"{k}_diff_high"))
                    for k in self.shown
                ]
                lines.append(f"| {r['arm']} | {r['changes']} | {r['versus']} | " + " | ".join(cells) + " |")
        lines += ["", "| arm | seed | " + " | ".join(self.shown) + " |", sep]
        for r in result["runs"]:
            lines.append(
                f"| {r['arm']} | {r['seed']} | " + " | ".join(fmt(r.get(k)) for k in self.shown) + " |"
            )
        return "\n".join(lines)

    def write(self, out: Path, header: dict, runs: list[dict], arms: list[Arm] = ()) -> dict:
        """The result (``header``, the per-arm summary, every run) as OUT/ablation.json, .csv and .md."""
        result = {**header, "mean": self.summarise(runs, arms), "runs": runs}
        write_json(out / "ablation.json", result)
        stats = ("", "_std", "_diff", "_diff_low", "_diff_high")
        fields = ["arm", "changes", "versus", "seeds", *(k + s for k in self.measures for s in stats)]
        write_csv(out / "ablation.csv", result["mean"], fields)
        atomic_write_text(out / "ablation.md", self.markdown(result) + "\n")
        return result


def paired_interval(
    diffs: list[float], level: float = 0.95
) -> tuple[float | None, float | None, float | None]:
    """(mean, low, high) of paired differences: the t-interval mean +- t((1 + level) / 2, n - 1) * sd / sqrt(n);
    one pair gives its mean and no interval, none gives Nones."""
    if not diffs:
        return None, None, None
    mean = sum(diffs) / len(diffs)
    if len(diffs) < 2:
        return mean, None, None
    from scipy.stats import t

    half = float(t.ppf((1 + level) / 2, len(diffs) - 1)) * _std(diffs) / math.sqrt(len(diffs))
    return mean, mean - half, mean + half


def _std(vals: list[float]) -> float | None:
    if len(vals) < 2:
        return None
    m = sum(vals) / len(vals)
    return math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


def _with_std(mean, std) -> str:
    return fmt(mean) if mean is None or std is None else f"{mean:.3f} ± {std:.3f}"


def _diff(mean, low, high) -> str:
    if mean is None:
        return "n/a"
    if low is None:
        return f"{mean:+.3f}"
    star = "*" if low > 0 or high < 0 else ""
    return f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]{star}"
