"""Pipelines: stages run in a fixed order, each its own run folder under OUT, chained by adapter.

A pipeline recipe holds a `pipeline:` section (the pipeline's own settings: a `PipelineSettings` subclass) and one
ordinary trainer recipe per stage (`warmup:`, `crpo:`, ...), so each stage trains exactly what `medrl train` would
run from that section. A domain supplies a `Pipeline`: its stages (name, trainer kind, run folder, and a hook that
returns what the stage gets on top of its section: its data file, its task card's answer length, DermIQ's KG-judged
DPO pairs), its settings class, how its data folder is prepared and how a finished stage is evaluated. Everything
else is here, once: reading the recipe, `--stages`, the start adapter, seeds, resuming, the evaluation of the last
stage, and the one stage-chaining rule.

The chaining rule. DermIQ and Clinical-R1 each had a pipeline loader of their own, and they chained differently:
- DermIQ: a stage starts from the adapter of the nearest *earlier* stage (in pipeline order) found finished in OUT,
  else `pipeline.start_adapter`, else the bare base model; so any stage runs alone after the one before it.
- Clinical-R1: CRPO started from the SFT adapter only when SFT was among the stages of the same command
  (`--stages crpo` started from the bare base even with OUT/sft finished); it had no start adapter, and it evaluated
  the stage listed last rather than the last in pipeline order.
The rule kept is DermIQ's. It is the only one under which running the stages one command at a time (or re-running
after an interruption) builds the same chain as running them all at once, which is what resuming means; it needs
no memory of earlier commands, only the folders in OUT; and for a whole pipeline both rules give the same chain
(CRPO from OUT/sft/adapter), the one the tests pin. Stages run in pipeline order whatever order `stages` lists
them in; a finished stage (its adapter written) is never trained again, and a started one resumes from its latest
checkpoint, so re-running a command continues an interrupted pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from training.config import from_dict, merge, parse_overrides, read_yaml
from training.errors import ConfigError, DataError
from training.run.rundir import RunDir
from training.trainers.trainer_kinds import config_class, train_function

EVALUATE = ("last", "all", "none")  # which stages `Pipeline.run` evaluates on the held-out test.jsonl


@dataclass
class PipelineSettings:
    """The `pipeline:` keys every pipeline has; a domain's settings class adds its data keys to these."""

    # the stages to run (any order; they run in pipeline order); None: every stage
    stages: list[str] | None = None
    seed: int = 0  # the data seed, and every stage's run.seed
    start_adapter: str | None = None  # where the first stage starts when no earlier stage is finished in OUT
    eval_limit: int | None = None  # test records evaluated after the last stage (None: all of them; 0: none)
    # a stage starts from the previous one's final adapter, or from its best/ (the adapter of its best evaluation
    # during training, `run.keep_best`) when it kept one
    chain_from: Literal["final", "best"] = "final"


@dataclass
class StageContext:
    """What a stage's hook may read: the whole recipe, its pipeline settings, the data folder, OUT."""

    raw: dict  # every section of the recipe (after overrides)
    settings: PipelineSettings
    data: Path  # the folder the pipeline's data preparation returned (train.jsonl, test.jsonl, ...)
    out: Path  # one run folder per stage lives here


@dataclass(frozen=True)
class Stage:
    """One stage: the recipe section it trains from, its trainer, and what it gets on top of that section."""

    name: str  # its recipe section, and its name in `pipeline.stages` / `--stages`
    trainer: str  # the trainer kind (`training.trainers.trainer_kinds.TRAINERS`): sft, rl or dpo
    # (context, start adapter or None) -> overrides merged over the section: the stage's data file and any stage
    # specific work before it trains (e.g. sampling and judging DPO pairs). It runs only when the stage will train.
    inputs: Callable[[StageContext, Path | None], dict]
    folder: str | None = None  # its run folder under OUT (None: its name)
    aliases: tuple[str, ...] = ()  # other spellings `stages` accepts (grpopp for grpo++)

    @property
    def run_name(self) -> str:
        return self.folder or self.name


def data_folder(
    data: str, builtin: str, out: Path, write_builtin: Callable[[Path], None], importer: str
) -> Path:
    """A pipeline's data folder: the user's folder ``data`` (train.jsonl and test.jsonl from ``importer``), or, when
    ``data`` is the pipeline's ``builtin`` keyword, OUT/data, filled by ``write_builtin`` unless its test.jsonl (the
    last split written) is already there."""
    if data != builtin:
        folder = Path(data)
        if not (folder / "train.jsonl").is_file():
            raise DataError(f"{folder}: expected train.jsonl (and test.jsonl) from `{importer}`")
        return folder
    folder = Path(out) / "data"
    if not (folder / "test.jsonl").is_file():
        write_builtin(folder)
    return folder


def finished_adapter(run_dir: Path) -> Path | None:
    """The adapter of a finished run, said on stdout (a re-run reuses it); None while the run is not finished."""
    from training.run.rundir import RunDir

    run = RunDir(run_dir)
    if not run.is_finished():
        return None
    print(f"medrl: {run.path} already finished; using {run.adapter_dir}")
    return run.adapter_dir


def changed_settings(section: dict, ran: dict, prefix: str = "") -> dict[str, tuple]:
    """{dotted key: (the recipe's value, the finished run's)} for each setting the recipe section (after overrides)
    gives that the run's config.yaml holds with another value; what the pipeline sets itself (run.name,
    run.output_dir, run.seed) is left out."""
    out: dict[str, tuple] = {}
    for key, value in section.items():
        dotted = f"{prefix}{key}"
        if dotted in ("run.name", "run.output_dir", "run.seed") or key not in ran:
            continue
        if isinstance(value, dict) and isinstance(ran[key], dict):
            out.update(changed_settings(value, ran[key], dotted + "."))
        elif not _same(value, ran[key]):
            out[dotted] = (value, ran[key])
    return out


def _same(a, b) -> bool:
    try:  # YAML reads 1e-3 as a string and 1.0e-3 as a float: the same setting
        return a == b or (not isinstance(a, (bool, list, dict)) and float(a) == float(b))
    except (TypeError, ValueError):
        return False


def train(cfg) -> Path:
    """Train one trainer config, resuming from its run's latest checkpoint when it has one; returns its adapter."""
    from training.run.rundir import RunDir

    run = RunDir(cfg.run.dir)
    train_function(cfg.trainer)(cfg, resume=run.latest_checkpoint() is not None)
    return run.adapter_dir


def train_or_reuse(cfg) -> Path:
    """The run's adapter: reused when the run finished, else trained (resumed when started)."""
    return finished_adapter(cfg.run.dir) or train(cfg)


@dataclass(frozen=True)
class Pipeline:
    """A domain's stages and hooks; the methods are the pipeline machinery every domain shares."""

    stages: tuple[Stage, ...]  # in pipeline order: the order they run in and chain along
    settings_class: type[PipelineSettings]  # the recipe's `pipeline:` section
    recipes: dict[str, str]  # short names a command offers (tiny, 3b) -> shipped recipe names
    prepare_data: Callable[
        [PipelineSettings, Path], Path
    ]  # (settings, OUT) -> the data folder (train/test.jsonl)
    evaluate: Callable[[Path, Path, PipelineSettings], dict]  # (run folder, test.jsonl, settings) -> metrics

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    def stage(self, name: str, key: str = "pipeline.stages") -> Stage:
        """The stage called ``name`` (or one of its aliases, any case); an unknown one is an error naming ``key``."""
        wanted = str(name).strip().lower()
        for s in self.stages:
            if wanted == s.name or wanted in s.aliases:
                return s
        raise ConfigError(f"{key}: unknown stage '{name}' (known: {', '.join(self.names)})")

    def load_recipe(self, recipe: str, overrides: list[str] | None = None) -> dict:
        """A pipeline recipe (a short name, a shipped recipe's name or a YAML file) with `--section.key=value`
        overrides merged in; `_path` records where it came from, for errors."""
        from training.recipes import resolve

        path = resolve(recipe, self.recipes)
        raw = merge(read_yaml(path), parse_overrides(overrides or []))
        raw = {k: v for k, v in raw.items() if not str(k).startswith("_")}  # YAML anchors (`_model: &model`)
        if not isinstance(raw.get("pipeline"), dict):
            raise ConfigError(
                f"{path}: expected a 'pipeline:' section (a pipeline recipe, not a `medrl train` one)"
            )
        known = ("pipeline", *self.names)
        unknown = set(raw) - set(known)
        if unknown:
            raise ConfigError(
                f"{path}: unknown section(s) {', '.join(sorted(unknown))} (known: {', '.join(known)})"
            )
        raw["_path"] = str(path)
        return raw

    def settings(self, raw: dict) -> PipelineSettings:
        """The recipe's `pipeline:` section; `stages` in pipeline spelling, every stage it names with a section."""
        section = dict(raw["pipeline"])
        try:
            if isinstance(section.get("stages"), list):
                section["stages"] = [self.stage(s).name for s in section["stages"]]
            pc = from_dict(self.settings_class, section, "pipeline")
            if pc.stages is not None and not pc.stages:
                raise ConfigError(
                    f"pipeline.stages: expected a non-empty list of {', '.join(self.names)}, got []"
                )
        except ConfigError as e:
            raise ConfigError(f"{raw['_path']}: {e}") from None
        pc.stages = list(self.names) if pc.stages is None else pc.stages
        for s in pc.stages:
            if not isinstance(raw.get(s), dict):
                raise ConfigError(f"{raw['_path']}: stage '{s}' has no '{s}:' section")
        return pc

    def stage_config(
        self, raw: dict, stage: str, out: Path, seed: int, extra: dict | None = None, name: str | None = None
    ):
        """The trainer config of section ``stage`` with ``extra`` merged over it, its run folder OUT/<name> (default:
        the stage's folder); errors name the recipe and the section."""
        s = self.stage(stage)
        if not isinstance(raw.get(s.name), dict):
            raise ConfigError(f"{raw['_path']}: stage '{s.name}' has no '{s.name}:' section")
        section = merge(
            raw[s.name], {"run": {"name": name or s.run_name, "output_dir": str(out), "seed": seed}}
        )
        try:
            return from_dict(config_class(s.trainer), merge(section, extra or {}))
        except ConfigError as e:
            raise ConfigError(f"{raw['_path']}: {s.name}.{e}") from None

    def previous_adapter(
        self, out: Path, stage: str, start: str | None, chain_from: str = "final"
    ) -> Path | None:
        """Where ``stage`` starts (the chaining rule): the adapter of the nearest earlier stage finished in OUT (its
        best/ with ``chain_from="best"`` when it kept one), else ``start`` (None: the bare base model)."""
        from training.run.rundir import RunDir

        for prev in reversed(self.stages[: self.names.index(self.stage(stage).name)]):
            run = RunDir(Path(out) / prev.run_name)
            if run.is_finished():
                return run.best_dir if chain_from == "best" and run.read_best() else run.adapter_dir
        return Path(start) if start else None

    def context(self, raw: dict, out: str | Path) -> StageContext:
        """Settings read, OUT made, data prepared: what every stage of one command shares."""
        pc = self.settings(raw)
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        return StageContext(raw, pc, self.prepare_data(pc, out), out)

    def run_stage(self, ctx: StageContext, stage: str) -> Path:
        """One stage: reused when finished, else its inputs built and it is trained from where the chain puts it;
        returns its adapter."""
        s = self.stage(stage)
        done = finished_adapter(ctx.out / s.run_name)
        if done is not None:
            changed = changed_settings(ctx.raw.get(s.name) or {}, RunDir(ctx.out / s.run_name).read_config())
            if changed:
                print(
                    f"medrl: warning: {s.name} is reused as it finished, but the recipe now says "
                    + ", ".join(f"{k}: {new!r} (it ran with {old!r})" for k, (new, old) in changed.items())
                    + f"; to train with these, use another --out than {ctx.out}"
                )
            return done
        start = self.previous_adapter(ctx.out, s.name, ctx.settings.start_adapter, ctx.settings.chain_from)
        extra = s.inputs(ctx, start)
        if start is not None:
            extra = merge(extra, {"model": {"adapter": str(start)}})
        return train(self.stage_config(ctx.raw, s.name, ctx.out, ctx.settings.seed, extra))

    def run(self, raw: dict, out: str | Path, evaluate: str = "last") -> dict:
        """Every stage of the recipe in pipeline order, then the evaluation on the data's test.jsonl of the 'last'
        stage run here, 'all' of them, or 'none'. Returns the data folder and, per stage, its run folder, its
        adapter and its metrics."""
        if evaluate not in EVALUATE:
            raise ConfigError(f"evaluate: expected one of {', '.join(EVALUATE)}, got {evaluate!r}")
        ctx = self.context(raw, out)
        result: dict = {"data": str(ctx.data), "runs": {}, "adapters": {}}
        for s in self.stages:
            if s.name in ctx.settings.stages:
                result["adapters"][s.name] = str(self.run_stage(ctx, s.name))
                result["runs"][s.name] = str(ctx.out / s.run_name)
        test = ctx.data / "test.jsonl"
        if evaluate != "none" and ctx.settings.eval_limit != 0 and test.is_file():
            todo = list(result["runs"]) if evaluate == "all" else list(result["runs"])[-1:]
            result["eval"] = {s: self.evaluate(Path(result["runs"][s]), test, ctx.settings) for s in todo}
        return result
