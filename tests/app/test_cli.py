"""The console script's registration: every package registers, none imports torch, a broken import is loud."""

import subprocess
import sys

import pytest

import app.cli


def test_registration_imports_no_torch():
    """`medrl --help` and `medrl kg ...` must start without torch's ~2 s import (handlers import it)."""
    code = (
        "import sys, app.cli; app.cli.build_parser(); app.cli._user_errors(); "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_package_registers():
    sub = next(a for a in app.cli.build_parser()._actions if a.dest == "command")
    assert {"demo", "train", "kg", "dermiq", "clinical", "bench"} <= set(sub.choices)


def test_a_package_that_fails_to_import_is_an_error(monkeypatch):
    monkeypatch.setattr(
        app.cli, "REGISTRARS", [*app.cli.REGISTRARS, ("medrl_no_such_package.cli", "register")]
    )
    with pytest.raises(ModuleNotFoundError, match="medrl_no_such_package"):
        app.cli.build_parser()
