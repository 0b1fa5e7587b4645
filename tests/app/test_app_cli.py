"""`medrl app`: registered without importing gradio or torch; loopback unless a password is set."""

import subprocess
import sys

import pytest


def test_registration_imports_neither_gradio_nor_torch():
    code = (
        "import sys, app.cli; p = app.cli.build_parser(); p.parse_args(['app', '--port', '7999']); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'gradio')))"
    )
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


def test_a_fresh_clone_without_runs(tmp_path):
    """No runs yet: the page builds and says how to make them; the samples and the KG work at once."""
    from app import tab_clinical, tab_derm, tab_kg
    from app.context import AppContext
    from app.main import build_app, header
    from app.safety import Refused

    ctx = AppContext(tmp_path / "runs", scratch=tmp_path / "scratch")
    build_app(ctx)
    assert "make demo" in header(ctx)
    with pytest.raises(Refused, match="make demo"):
        tab_derm.answer(ctx, None, "condition:melanoma/0", None, 8)
    image, truth = tab_derm.sample_file(ctx, "condition:psoriasis/1")
    assert image.endswith(".png") and "psoriasis" in truth
    assert tab_clinical.sample_fields("3")[2] in "ABCDE"
    card, svg = tab_kg.lookup(ctx, "clinical", "STEMI")
    assert "ST-elevation myocardial infarction" in card and "<svg" in svg
    with pytest.raises(Refused, match="did you mean"):
        tab_kg.lookup(ctx, "derm", "melanomma")
