"""The `medrl` console script: one parser, subcommands registered by each package's `cli.py`.

Registration imports no torch, so `medrl --help` and `medrl kg ...` start fast; each handler imports
what it needs (tests/app/test_cli.py checks). User errors (bad config, missing file, ...) print one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (module, function) pairs; each function takes the subparsers object and adds its commands.
REGISTRARS = [
    ("app.demo", "register"),
    ("training.cli", "register"),
    ("knowledge_graph.cli", "register"),
    ("dermiq.cli", "register"),
    ("clinical.cli", "register"),
    ("bench.cli", "register"),
    ("app.cli", "register_app"),
    ("app.reproduce", "register"),
    ("app.feedback_export", "register"),
]


def register_app(sub) -> None:
    """`medrl app`: the Gradio page (gradio and torch are imported by the handler, not here)."""
    p = sub.add_parser(
        "app", help="the clinician-facing web app (loopback only by default; research use only)"
    )
    p.add_argument(
        "--runs",
        default="runs",
        help="runs root folder: the app reads runs here and opens nothing outside it",
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (other than loopback only with --auth)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument(
        "--auth", default=None, help="user:password (default: the MEDRL_APP_AUTH environment variable)"
    )
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link (needs --auth)")
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="cap every answer at N new tokens (default: each run's own length, from its task card)",
    )
    p.add_argument("--max-loaded", type=int, default=2, help="how many (run, stage) models stay loaded")
    p.add_argument(
        "--concurrency", type=int, default=1, help="generations running at once (queue beyond that)"
    )
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")

    def handler(args) -> int:
        from app.main import run_cli

        return run_cli(args)

    p.set_defaults(handler=handler)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medrl",
        description="Post-train medical reasoning models on one GPU, and inspect them (research use only).",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module, fn in REGISTRARS:  # every package is here: a failing import is a bug to see, not to skip
        getattr(importlib.import_module(module), fn)(sub)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    from knowledge_graph.errors import KGError
    from training.errors import MedrlError

    return (MedrlError, KGError, FileNotFoundError, NotADirectoryError, PermissionError)


def _close_progress_bars() -> None:
    """Close the bars a failed command left open, so the error is the last line a person (or a test) reads rather
    than a bar's closing refresh printed later, when the bar is garbage-collected."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()


# Loggers whose warnings say nothing a user can act on. bitsandbytes' CPU backend, on a CPU with avx512_bf16, tries
# to fetch a kernel from the Hub at import and warns on every command when it cannot (no network, or an unverified
# publisher); it then uses its own kernels, which is what medrl's CPU runs use anyway. --debug shows them.
QUIET_LOGGERS = ("bitsandbytes.backends.cpu.ops",)


def main(argv: list[str] | None = None) -> int:
    import logging

    from training.run.threads import configure

    configure()  # before torch loads: threads sleep at barriers, so jobs can share the cores (training.run.threads)
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere, not only before the subcommand
    argv = [a for a in argv if a != "--debug"]
    for name in QUIET_LOGGERS if not debug else ():
        logging.getLogger(name).setLevel(logging.ERROR)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    args.debug = debug
    if args.command is None:
        parser.print_help()
        return 2
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    try:
        rc = args.handler(args)
    except _user_errors() as e:
        if args.debug:
            raise
        msg = str(e) if not isinstance(e, OSError) or not e.filename else f"{e.strerror}: {e.filename}"
        _close_progress_bars()
        print(f"medrl: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        _close_progress_bars()
        print(f"medrl: interrupted{': ' + str(e) if str(e) else ''}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `medrl kg stats | head`
        sys.stderr.close()
        return 0
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
