"""`medrl app`: registered without importing gradio or torch; loopback unless a password is set."""

import subprocess
import sys

import pytest


def test_registration_imports_neither_gradio_nor_torch():
    code = ("import sys, app.cli; p = app.cli.build_parser(); p.parse_args(['app', '--port', '7999']); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'gradio')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_off_loopback_needs_a_password(cli, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MEDRL_APP_AUTH", raising=False)
    assert cli("app", "--runs", tmp_path, "--host", "0.0.0.0", "--port", "7999") == 2
    assert "needs --auth" in capsys.readouterr().err
    assert cli("app", "--runs", tmp_path, "--share") == 2


def test_auth_from_flag_or_environment(monkeypatch):
    from app.main import parse_auth
    from training.errors import MedrlError

    monkeypatch.delenv("MEDRL_APP_AUTH", raising=False)
    assert parse_auth(None) is None
    assert parse_auth("ana:s3cret:x") == ("ana", "s3cret:x")
    monkeypatch.setenv("MEDRL_APP_AUTH", "bo:pw")
    assert parse_auth(None) == ("bo", "pw")
    with pytest.raises(MedrlError):
        parse_auth("nopassword")
