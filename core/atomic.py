"""Output files are written whole or not at all: a temp file in the same folder, then rename.

Readers see the old file or the new one, never a half-written one; a failure (or Ctrl-C)
leaves no temp file behind, and a temp file left by a killed process is removed by the
next run in that folder (:func:`remove_stale_temps`). After the rename the folder itself
is fsync'ed, so the new name survives a power cut. Files get the usual mode
``0o666 & ~umask`` (``mkstemp`` alone would make them 0600).

Every writer in the project goes through :func:`atomic_path`; every output location is
checked up front with :func:`check_output_file` / :func:`check_output_dir`, before any
work, so a bad ``--out`` fails with one line and nothing written.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from core.errors import InputError

TEMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode of a new regular file under the current umask (what ``open(..., 'w')`` gives)."""
    return 0o666 & ~_umask()


def dir_mode() -> int:
    """Mode of a new folder under the current umask (what ``mkdir`` gives)."""
    return 0o777 & ~_umask()


def fsync_dir(folder: str | Path) -> None:
    """Make a rename inside ``folder`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _check_parent(path: Path, flag: str) -> None:
    for ancestor in path.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise InputError(f"{flag}{path}: {ancestor} is a file, not a folder")
            return


def check_output_file(path: str | Path, flag: str = "") -> Path:
    """``path`` may be written as a file: it is not a folder and no part of its parent is a file.

    Missing parent folders are allowed (callers create them). ``flag`` (e.g. ``"--out "``)
    prefixes the message so the user knows which argument to fix."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{flag}{path}: is a folder, expected a file name")
    _check_parent(path, flag)
    return path


def check_output_dir(path: str | Path, flag: str = "", may_exist: bool = True) -> Path:
    """``path`` may be used as an output folder: not a file, not under a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{flag}{path}: is a file, expected a folder")
    if path.exists() and not may_exist and any(path.iterdir()):
        raise InputError(f"{flag}{path}: output folder exists and is not empty")
    _check_parent(path, flag)
    return path


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete ``.NAME.*.tmp`` files that a killed writer left in ``folder``; returns them."""
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX) and entry.is_file():
                entry.unlink(missing_ok=True)
                removed.append(entry)
    return removed


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success fsync it and rename it over ``path``."""
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"{path}: folder {path.parent} does not exist")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a file name")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, payload: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, payload, indent: int = 1) -> None:
    atomic_write_text(path, json.dumps(payload, indent=indent) + "\n")
