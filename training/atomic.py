"""Atomic writes: a file (or several, or a folder) appears whole under its final name, or not at all.

Each file is written under a temporary name in its own folder (the same filesystem, so the rename is atomic),
flushed and fsynced, then renamed over its target with `os.replace`; an error midway removes the temporaries and
leaves every target as it was. Several files (a data set's train/val/test splits) are renamed together only after
all of them were written, so an import that fails on its last row leaves none of its outputs half-new. Readers
(the app, a resumed run, another process) therefore never see a half-written file. Torch-free: data importers use it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO


@contextmanager
def atomic_files(paths: Sequence[str | Path]) -> Iterator[list[TextIO]]:
    """Open a temporary text file beside each path; on a clean exit all are fsynced, then renamed over the paths."""
    opened: list[tuple[TextIO, Path, Path]] = []
    try:
        for path in map(Path, paths):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            opened.append((os.fdopen(fd, "w", encoding="utf-8"), Path(tmp), path))
        yield [f for f, _, _ in opened]
        for f, _, _ in opened:
            f.flush()
            os.fsync(f.fileno())
            f.close()
        for _, tmp, path in opened:
            os.replace(tmp, path)
    except BaseException:
        for f, tmp, _ in opened:
            f.close()
            tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_files([path]) as (f,):
        f.write(text)


class JsonlFiles:
    """`folder/<name>.jsonl` for each name, one JSON record per line (UTF-8 as written, not escaped)."""

    def __init__(self, files: dict[str, TextIO], paths: dict[str, str]):
        self.files, self.paths = files, paths  # paths: name -> the final file, as a string

    def write(self, name: str, record: dict) -> None:
        self.files[name].write(json.dumps(record, ensure_ascii=False) + "\n")


@contextmanager
def atomic_jsonl(folder: str | Path, names: Sequence[str]) -> Iterator[JsonlFiles]:
    """Write records into several JSONL files of one folder, streamed, all renamed into place together at the end."""
    paths = {n: str(Path(folder) / f"{n}.jsonl") for n in names}
    with atomic_files(list(paths.values())) as files:
        yield JsonlFiles(dict(zip(names, files)), paths)


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces `final` in one rename."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.rename(final, old)
        os.rename(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
