"""Writing output files whole or not at all: a temp file in the same folder, then rename."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from stllr.errors import InputError


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temp path next to ``path``; on success rename it over ``path``, else delete it."""
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"{path}: folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_json_atomic(path: str | Path, payload) -> None:
    write_text_atomic(path, json.dumps(payload, indent=1) + "\n")
