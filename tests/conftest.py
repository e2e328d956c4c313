"""Shared test helpers: config files, dotted edits of config mappings, in-process CLI runs.

Plain functions (import them: ``from tests.conftest import write_yaml, with_value, run_cli``);
the bad-input fuzz harness is tests/fuzzkit.py.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml


def write_yaml(folder: Path, data: dict, name: str = "cfg.yaml") -> Path:
    """``data`` as ``folder/name``; returns the path."""
    path = Path(folder) / name
    path.write_text(yaml.safe_dump(data))
    return path


def with_value(base: dict, path, value) -> dict:
    """A deep copy of ``base`` with ``value`` at ``path`` (a tuple of keys/indices, or a
    dotted string); missing mappings on the way are created."""
    data = copy.deepcopy(base)
    keys = [int(k) if isinstance(k, str) and k.isdecimal() else k for k in
            (path.split(".") if isinstance(path, str) else path)]
    node = data
    for key in keys[:-1]:
        node = node[key] if isinstance(node, list) else node.setdefault(key, {})
    node[keys[-1]] = value
    return data


def run_cli(main, capsys, *argv) -> tuple[int, str, str]:
    """``main(argv)`` in process: (exit code, stdout, stderr); argparse's own refusals
    (SystemExit) give their exit code too."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err
