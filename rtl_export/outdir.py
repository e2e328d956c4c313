"""All-or-nothing output directories.

Exporters build every file in memory first (so range checks and model errors happen
before the disk is touched), then :func:`write_tree` writes them into a temporary
directory next to the target and renames it into place. A failure at any point leaves
no target directory behind (and no temporary one either).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from core.atomic import check_output_dir, dir_mode, file_mode, fsync_dir
from core.errors import InputError


class OutputError(InputError, OSError):
    """The output directory could not be written (permissions, disk full): one line, exit 2."""


def check_target(out: Path, flag: str = "--out ") -> None:
    """The target may not exist yet, or be an empty directory (not a file, not under one,
    not a symlink: the rename would replace the link, not fill the folder it points to)."""
    out = Path(out)
    if out.is_symlink():
        raise InputError(f"{flag}{out}: is a symlink, expected a folder name")
    if not out.name or out.name in (".", ".."):
        raise InputError(f"{flag}{out}: name a new folder (not '{out}')")
    check_output_dir(out, flag, may_exist=False)


def write_tree(out: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (relative path -> bytes) as directory ``out``, atomically."""
    out = Path(out)
    check_target(out)
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.", suffix=".tmp"))
    except OSError as error:
        raise OutputError(f"--out {out}: cannot create it ({error.strerror or type(error).__name__})") from None
    try:
        for name, payload in files.items():
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(path, file_mode())
        for folder in [tmp, *(p for p in tmp.rglob("*") if p.is_dir())]:
            os.chmod(folder, dir_mode())
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
        fsync_dir(parent)
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"--out {out}: cannot write it ({error.strerror or error})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
