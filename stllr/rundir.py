"""Run folders of ``stllr train`` and ``stllr int-train``: what may be started, resumed or
restarted, and what a resumed run may change.

A run folder holds only the run's own files: ``config.yaml``, ``metrics.json``, the
checkpoint, and (after a kill) ``.NAME.*.tmp`` files of an unfinished atomic write.

- a fresh run needs a missing or empty folder, or one that a killed run left before its
  first checkpoint (own files only, no checkpoint): that one restarts from scratch;
- ``--resume`` continues from the checkpoint; in a folder that a run killed before its
  first checkpoint left, it starts from scratch; on a missing or empty folder it is
  refused (most likely a mistyped path);
- a resumed run may change ``train.epochs`` and ``train.threads`` (and the cost-model
  sections ``hardware`` / ``activity``) and nothing else: another seed, learning rate,
  batch size, optimizer, rule or network would not continue the same run.

Nothing here writes: :func:`plan_run` decides, the trainer writes after every input
has been validated (then :func:`core.atomic.remove_stale_temps` clears the folder).
"""

from __future__ import annotations

from pathlib import Path

from core.atomic import TEMP_SUFFIX, check_output_dir
from core.errors import InputError

RUN_FILES = frozenset({"config.yaml", "metrics.json"})
#: Config fields a resumed run may change (dotted paths).
RESUMABLE_CHANGES = frozenset({"train.epochs", "train.threads", "hardware", "activity"})


def _own_files_only(out_dir: Path, checkpoint_name: str) -> bool:
    for entry in out_dir.iterdir():
        temp = entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX)
        if not (entry.is_file() and (temp or entry.name in RUN_FILES or entry.name == checkpoint_name)):
            return False
    return True


def plan_run(out_dir: Path, checkpoint_name: str, resume: bool) -> bool:
    """Check ``out_dir`` for a run; True when a checkpoint is to be resumed, False for a
    fresh start. Raises InputError (one line, naming ``--out``) when neither is allowed."""
    out_dir = check_output_dir(out_dir, "--out ")
    checkpoint = out_dir / checkpoint_name
    if not out_dir.exists() or not any(out_dir.iterdir()):
        if resume:  # most likely a mistyped folder: starting a new run there would hide it
            raise InputError(f"--out {out_dir}: {out_dir / checkpoint_name}: checkpoint not found "
                             "(nothing to resume; drop --resume to start a run)")
        return False
    own = _own_files_only(out_dir, checkpoint_name)
    if checkpoint.is_file():
        if not resume:
            raise InputError(f"--out {out_dir}: not empty, holds a run ({checkpoint_name}); use --resume to continue it "
                             "or choose another folder")
        return True
    if own:
        return False  # killed before its first checkpoint: restart from scratch
    raise InputError(f"--out {out_dir}: output folder is not empty and holds no run of this tool")


def first_difference(saved, current, prefix: str = "") -> str | None:
    """Dotted path of the first field where two config mappings differ, or None."""
    if isinstance(saved, dict) and isinstance(current, dict):
        for key in sorted(set(saved) | set(current), key=str):
            found = first_difference(saved.get(key), current.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    return None if saved == current else prefix.rstrip(".")


def check_resume_config(saved: dict, current: dict, source: str) -> None:
    """Refuse to resume with a config that changes anything but :data:`RESUMABLE_CHANGES`."""
    saved = {k: v for k, v in saved.items() if k not in RESUMABLE_CHANGES}
    current = {k: v for k, v in current.items() if k not in RESUMABLE_CHANGES}
    for dotted in RESUMABLE_CHANGES:
        section, _, field = dotted.partition(".")
        for mapping in (saved, current):
            if field and isinstance(mapping.get(section), dict):
                mapping[section] = {k: v for k, v in mapping[section].items() if k != field}
    field = first_difference(saved, current)
    if field is not None:
        def value(mapping):
            for part in field.split("."):
                mapping = mapping.get(part) if isinstance(mapping, dict) else None
            return mapping

        raise InputError(f"{source}: the run was started with {field} = {value(saved)!r}, the config now has "
                         f"{value(current)!r}; a resumed run may change only train.epochs and train.threads")
