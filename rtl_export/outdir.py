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

from stllr.errors import InputError


def check_target(out: Path) -> None:
    """The target may not exist yet, or be an empty directory."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: output directory exists and is not empty")


def write_tree(out: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (relative path -> bytes) as directory ``out``, atomically."""
    out = Path(out)
    check_target(out)
    parent = out.parent if str(out.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        for name, payload in files.items():
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o755)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
