"""A wheel built from the checkout, installed into a fresh venv in another folder, runs without the checkout:
`medrl recipes`, `medrl dermiq train --help`, `medrl recipes --data` and `medrl train sft_qwen2_tiny` for one step.

The fresh venv has no pip and no site packages; the wheel goes in with `pip --python VENV install --no-deps`, and the
heavy dependencies (torch, transformers, ...) are borrowed from the project venv through one .pth line appended to
the fresh venv's site-packages. Lines of a .pth file only extend sys.path (the project venv's own .pth files, among
them the editable install's finder, are not run), and the fresh site-packages comes first, so `training`, `dermiq`,
... are imported from the wheel: the test checks that too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _copy_tree(dst: Path) -> Path:
    """The working tree as git sees it (tracked and untracked-not-ignored files; links kept), without .venv/runs."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, out.split("\0")):
        src = ROOT / rel
        if not (src.exists() or src.is_symlink()):
            continue  # deleted in the working tree
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(os.readlink(src))
        elif src.is_file():
            shutil.copy2(src, target)
    return dst


@pytest.mark.slow
def test_installed_wheel_runs_recipes_by_name_outside_the_checkout(tmp_path):
    src = _copy_tree(tmp_path / "src")
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(dist),
            str(src),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    wheel = next(dist.glob("medrl-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert (
        "training/recipes/sft_qwen2_tiny.yaml" in names and "knowledge_graph/data/dermatology.json" in names
    )
    assert not any(n.startswith(("configs/", "tests/")) for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    site = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "zz_project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", MEDRL_PROGRESS="0", TOKENIZERS_PARALLELISM="false")

    def medrl(*args: str) -> subprocess.CompletedProcess:
        res = subprocess.run(
            [str(venv / "bin" / "medrl"), *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert res.returncode == 0, (args, res.stderr[-2000:])
        return res

    where = subprocess.run(
        [str(py), "-c", "import training, dermiq; print(training.__file__, dermiq.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(ROOT) not in where and str(site) in where, where

    listing = medrl("recipes").stdout
    assert "sft_qwen2_tiny" in listing and "dermiq_pipeline_tiny" in listing and str(site) in listing
    assert "--recipe" in medrl("dermiq", "train", "--help").stdout
    medrl("recipes", "--data")
    medrl("train", "sft_qwen2_tiny", "--run.max_steps=1", "--run.save_every=0")
    assert (work / "runs" / "sft_qwen2_tiny" / "adapter" / "adapter_config.json").is_file()
