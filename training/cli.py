"""`medrl train RECIPE [--key=value ...] [--resume]`, `medrl recipes [--data]`, `medrl export RUN_DIR --out DIR
[--merge] [--format gguf]`, `medrl gguf-setup` and `medrl plan`. RECIPE is a shipped recipe's name or a YAML path
(`training.recipes.resolve`)."""

from __future__ import annotations

import argparse
import json
import sys

from training.errors import ConfigError, MedrlError
from training.gguf import LLAMA_CPP_PYTHON
from training.gguf import TYPES as GGUF_TYPES


def run_recipe(path: str | None, overrides: list[str], resume: bool = False) -> dict:
    """Load a recipe, pick its trainer, train; returns the last metrics."""
    from training.config import load_config, merge, parse_overrides, read_yaml
    from training.recipes import resolve
    from training.trainers.trainer_kinds import check_trainer, config_class, train_function

    path = str(resolve(path)) if path else None
    raw = merge(read_yaml(path) if path else {}, parse_overrides(overrides))
    name = check_trainer(raw.get("trainer", "sft"), str(path))
    cfg = load_config(config_class(name), path, overrides)
    return train_function(name)(cfg, resume=resume)


def _train(args: argparse.Namespace) -> int:
    from training.trainers.session import graceful_interrupt

    with graceful_interrupt():
        last = run_recipe(args.config, args.overrides, resume=args.resume)
    print(json.dumps({k: v for k, v in last.items() if isinstance(v, (int, float, str))}))
    return 0


def _recipes(args: argparse.Namespace) -> int:
    from training import recipes

    if args.data:
        written = recipes.write_data(args.out, seed=args.seed)
        print(
            f"wrote {len(written)} files under {args.out}/ (the single-stage tiny recipes read {recipes.DATA_DIR}/):"
        )
        for name in written:
            print(f"  {name}")
        return 0
    paths = recipes.recipe_paths()
    width = max(len(p.stem) for p in paths)
    for p in paths:
        print(f"{p.stem:<{width}}  {recipes.header(p)}")
    print(
        f"\n{len(paths)} recipes in {recipes.RECIPES_DIR}; `medrl train NAME` runs one (a pipeline recipe: "
        "`medrl dermiq train --recipe NAME`, `medrl clinical train --recipe NAME`, "
        "`medrl clinical tree-ablate --recipe NAME` for the case pipeline)."
    )
    return 0


def _plan(args: argparse.Namespace) -> int:
    from training.plan import Shape, plan_recipe, table

    for key in ("gpu_gb", "prompt_tokens", "image_px", "processes"):
        if getattr(args, key) <= 0:
            raise ConfigError(f"--{key.replace('_', '-')}: must be > 0, got {getattr(args, key)}")
    shape = Shape(args.prompt_tokens, max(args.images, 0), args.image_px, args.processes)
    result = plan_recipe(args.recipe, args.gpu_gb, shape, args.overrides)
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0 if result["fits"] else 1


def _export(args: argparse.Namespace) -> int:
    from training.export import export_run

    gguf = (args.quant or "f16") if args.format == "gguf" else None
    if args.quant and args.format != "gguf":
        raise ConfigError("--quant: only with --format gguf")
    result = export_run(
        args.run_dir,
        args.out,
        merge=args.merge,
        dtype=args.dtype,
        gguf=gguf,
        llama_cpp=args.llama_cpp,
    )
    print(json.dumps(result, indent=2))
    if "check" in result:
        from training.export_gguf import summary

        print(f"medrl: {summary(result['check'])}", file=sys.stderr)
        if result.get("verdict"):
            raise MedrlError(f"{result['gguf']}: {result['verdict']} (the file is kept for inspection)")
    return 0


def _gguf_setup(args: argparse.Namespace) -> int:
    from training.gguf import setup

    print(json.dumps(setup(args.home, args.version), indent=2))
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="train from a YAML recipe (--key=value overrides, --resume)")
    p.add_argument(
        "config",
        metavar="RECIPE",
        help="a shipped recipe's name (`medrl recipes` lists them, e.g. sft_qwen2_tiny) or a YAML file",
    )
    p.add_argument("--resume", action="store_true", help="continue runs/<name>/ from its latest checkpoint")
    p.set_defaults(handler=_train, accepts_overrides=True)

    p = sub.add_parser(
        "recipes",
        help="list the shipped recipes with their first header line (--data: write the "
        "data the tiny recipes read)",
    )
    p.add_argument(
        "--data",
        action="store_true",
        help="write the data the single-stage tiny recipes read "
        "(toy prompts, SFT records, DPO pairs, cases, synthetic lesions) instead of listing",
    )
    p.add_argument(
        "--out", default="runs/demo_data", help="where --data writes (the recipes read runs/demo_data)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the data --data writes")
    p.set_defaults(handler=_recipes)

    p = sub.add_parser("export", help="export a run's LoRA adapter (and optionally a merged 16-bit model)")
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, help="folder to write the adapter (and merged/) into")
    p.add_argument("--merge", action="store_true", help="also merge onto a 16-bit copy of the base")
    p.add_argument(
        "--dtype",
        default="bfloat16",
        choices=["bfloat16", "float16", "float32"],
        help="dtype of the merged model",
    )
    p.add_argument(
        "--format",
        choices=["peft", "gguf"],
        default="peft",
        help="gguf: also a llama.cpp/Ollama file (a VLM's language model + its projector), merged, converted and "
        "checked in llama.cpp",
    )
    p.add_argument(
        "--quant",
        choices=list(GGUF_TYPES),
        help="the GGUF's number type (default f16; q4_k_m etc. through llama.cpp's quantizer)",
    )
    p.add_argument("--llama-cpp", help="a llama.cpp checkout whose converter to use (default: `make gguf`'s)")
    p.set_defaults(handler=_export)

    p = sub.add_parser(
        "gguf-setup",
        help="install the GGUF tools: llama.cpp's converter and llama-cpp-python, built for this CPU (minutes)",
    )
    p.add_argument("--home", help="where the converter goes (default: $MEDRL_CACHE/llama.cpp-VERSION)")
    p.add_argument("--version", default=LLAMA_CPP_PYTHON, help="the llama-cpp-python source package to use")
    p.set_defaults(handler=_gguf_setup)

    p = sub.add_parser(
        "plan", help="a recipe's planned peak GPU memory per stage, part by part, and whether it fits"
    )
    p.add_argument("recipe", help="a recipe name (`medrl recipes`), single-stage or pipeline, or a YAML path")
    p.add_argument("--gpu-gb", type=float, default=12.0, help="the GPU's memory in GiB (default 12)")
    p.add_argument("--prompt-tokens", type=int, default=512, help="text tokens per RL prompt (default 512)")
    p.add_argument("--images", type=int, default=1, help="images per prompt for a VLM (default 1)")
    p.add_argument("--image-px", type=int, default=448, help="image side in pixels (default 448: 256 tokens)")
    p.add_argument("--processes", type=int, default=1, help="torchrun processes sharing a step (default 1)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=_plan, accepts_overrides=True)
