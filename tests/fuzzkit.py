"""Harness of the bad-input fuzz suite (tests/test_fuzz_*.py).

Every case runs one subcommand in process (``main(argv)`` of ``stllr``, ``hwmodel`` or
``rtl-export``) and is classified as exactly one of

- ``refused``:   exit code 2, one stderr line ``PROG[ SUB]: error: ...`` (naming what the case
                 says it must name), no traceback, and the watched folders unchanged
                 (nothing written, nothing removed, nothing modified);
- ``accepted``:  exit code 0 (or the documented 1 of ``verify`` / ``sim``), no traceback;

and fails on a traceback (any exception escaping ``main``), a silent acceptance (exit 0
for an input the case's oracle says is invalid), a partial output (a refusal that
changed a watched folder), or a hang (no answer within ``timeout`` seconds).

The oracle is the case itself: each test states, independently of the code under test,
whether its input is valid, and what the one-line error must name when it is not.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import signal
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable


class Hang(Exception):
    """A case ran past its time limit."""


@dataclass
class Outcome:
    argv: list[str]
    code: int | None
    stdout: str
    stderr: str
    error: str | None = None  # formatted traceback of an exception that escaped main()

    def describe(self) -> str:
        text = f"argv={self.argv} code={self.code}\nstderr: {self.stderr[-2000:]}"
        return text + (f"\n{self.error}" if self.error else "")


def _alarm(signum, frame):
    raise Hang()


def run(main: Callable[[list[str]], int], argv: Iterable, timeout: float = 120.0) -> Outcome:
    """Run ``main(argv)`` in process with captured output and a time limit."""
    argv = [str(a) for a in argv]
    out, err = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    code, error = None, None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse: usage errors exit 2
                code = exc.code if isinstance(exc.code, int) else 1
    except Hang:
        error = f"HANG: no answer within {timeout} s"
    except BaseException:  # noqa: BLE001 - any escaping exception is a finding
        error = traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return Outcome(argv, code, out.getvalue(), err.getvalue(), error)


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every file and folder under ``roots``: path -> (kind, mode, sha256 of the content)."""
    state: dict[str, tuple] = {}
    for root in roots:
        root = Path(root)
        if not root.exists():
            state[str(root)] = ("missing",)
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            state[dirpath] = ("dir", os.stat(dirpath).st_mode)
            for name in filenames:
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest() if os.path.isfile(path) else ""
                state[path] = ("file", st.st_mode, digest)
    return state


def changes(before: dict, after: dict) -> list[str]:
    keys = sorted(set(before) | set(after))
    return [f"{'added' if k not in before else 'removed' if k not in after else 'changed'} {k}"
            for k in keys if before.get(k) != after.get(k)]


@dataclass
class Watch:
    """Folders a refused case must leave exactly as they were."""

    roots: list[Path] = field(default_factory=list)
    state: dict = field(default_factory=dict)

    def __enter__(self) -> "Watch":
        self.state = snapshot(*self.roots)
        return self

    def __exit__(self, *exc) -> None:
        return None

    def diff(self) -> list[str]:
        return changes(self.state, snapshot(*self.roots))


def assert_refused(outcome: Outcome, prog: str, names: str | Iterable[str] = (), watch: Watch | None = None) -> None:
    """Clean refusal: exit 2, one line ``PROG: error: ...`` naming each of ``names``,
    no traceback, nothing written or changed under ``watch``."""
    assert outcome.error is None, f"traceback instead of a one-line error:\n{outcome.describe()}"
    assert outcome.code == 2, f"expected exit 2 (refusal), got {outcome.code} (silent acceptance?)\n" \
                              f"{outcome.describe()}"
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{outcome.describe()}"
    line = lines[0]
    assert "Traceback" not in line
    # argparse refusals of a subcommand say "PROG SUBCOMMAND: error: ..."
    if not (line.startswith(prog) and ": error: " in line):
        raise AssertionError(f"stderr line is not '{prog}[ SUBCOMMAND]: error: ...':\n{outcome.describe()}")
    for name in [names] if isinstance(names, str) else names:
        assert name in line, f"the error does not name {name!r}:\n{line}"
    if watch is not None:
        diff = watch.diff()
        assert not diff, f"refused, but left changes behind: {diff[:5]}\n{outcome.describe()}"


def assert_accepted(outcome: Outcome, codes: tuple[int, ...] = (0,)) -> None:
    """Valid input: the documented exit code and no traceback."""
    assert outcome.error is None, f"traceback:\n{outcome.describe()}"
    assert outcome.code in codes, f"expected exit {codes} (valid input), got {outcome.code}\n{outcome.describe()}"
