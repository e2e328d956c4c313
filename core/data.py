"""The ``data:`` section of a run config: which data set, which files, how many steps.

Which fields a kind needs, and which it accepts, is written once in :data:`KIND_FIELDS`;
the validator and the docs read it from there. The loaders are
:data:`stllr.data.config.LOADERS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, model_validator

from core.schema import MAX_SAMPLES, MAX_SEED, MAX_STEPS, FilePath, StrictModel

Kind = Literal["npz", "digits", "moving_edge", "temporal", "shd", "nmnist", "dvs_gesture"]


@dataclass(frozen=True)
class KindFields:
    """Fields a kind requires and the further ones it accepts (``kind``/``seed`` always)."""

    required: frozenset[str]
    optional: frozenset[str] = frozenset()


KIND_FIELDS: dict[str, KindFields] = {
    "npz": KindFields(frozenset({"train", "test"}), frozenset({"num_steps"})),
    "digits": KindFields(frozenset({"num_steps"})),
    "moving_edge": KindFields(
        frozenset({"num_steps", "num_train", "num_test"}), frozenset({"size", "noise_rate"})
    ),
    "temporal": KindFields(
        frozenset({"num_steps", "num_train", "num_test"}), frozenset({"num_channels", "noise_rate"})
    ),
    "shd": KindFields(frozenset({"train", "test", "num_steps"}), frozenset({"duration_s", "downsample"})),
    "nmnist": KindFields(frozenset({"root", "num_steps"})),
    "dvs_gesture": KindFields(frozenset({"root", "num_steps"}), frozenset({"size"})),
}
_ALWAYS = frozenset({"kind", "seed"})


#: Largest generated data set (samples x steps x features bytes).
MAX_GENERATED_BYTES = 2**32
DIGITS_SAMPLES = 1797  # sklearn's load_digits(): 8x8 images
#: ``temporal``: smallest T (its longest event sequence plus one, stllr.data.temporal.MIN_STEPS),
#: channel groups, default channels.
TEMPORAL_MIN_STEPS, TEMPORAL_GROUPS, TEMPORAL_CHANNELS = 40, 4, 48


class DataConfig(StrictModel):
    """Where the data comes from. Relative paths are kept as given here; ``load_config``
    resolves them against the config file's folder and makes them absolute.

    Fields (see KIND_FIELDS for which kind uses which):
        kind: the data source.
        train, test: files for ``npz`` (event .npz) and ``shd`` (.h5).
        root: folder for ``nmnist`` / ``dvs_gesture`` (tonic's ``save_to``).
        num_steps: T > 0; for ``npz`` taken from the files and, if given, checked.
        seed: >= 0, encoding/generation seed (``digits``, ``moving_edge``, ``temporal``).
        num_train, num_test: > 0, samples to generate (``moving_edge``, ``temporal``).
        size: frame side in px (``moving_edge`` >= 4, default 16; ``dvs_gesture``
            1..128, default 32).
        noise_rate: 0 <= r < 1, noise events per pixel (``moving_edge``) or channel
            (``temporal``, default 0.02) per step.
        num_channels: input channels of ``temporal``, a multiple of 4 in 4..4096 (default 48).
        duration_s: > 0, seconds binned (``shd``, default 1.0).
        downsample: >= 1, channel reduction factor (``shd``, default 1).
    """

    kind: Kind
    train: FilePath | None = None
    test: FilePath | None = None
    root: FilePath | None = None
    num_steps: int | None = Field(default=None, gt=0, le=MAX_STEPS)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    num_train: int | None = Field(default=None, gt=0, le=MAX_SAMPLES)
    num_test: int | None = Field(default=None, gt=0, le=MAX_SAMPLES)
    size: int | None = Field(default=None, gt=0, le=1024)
    noise_rate: float | None = Field(default=None, ge=0.0, lt=1.0)
    num_channels: int | None = Field(default=None, ge=TEMPORAL_GROUPS, le=4096)
    duration_s: float | None = Field(default=None, gt=0.0, le=3600.0)
    downsample: int | None = Field(default=None, ge=1, le=10_000)

    @model_validator(mode="after")
    def _fields_match_kind(self) -> DataConfig:
        spec = KIND_FIELDS[self.kind]
        set_fields = {name for name in type(self).model_fields if getattr(self, name) is not None}
        missing = sorted(spec.required - set_fields)
        if missing:
            raise ValueError(f"'{missing[0]}' is required for kind '{self.kind}'")
        # A field the kind ignores is almost always a typo or a leftover from another
        # kind; silently ignoring it would run a different experiment than the user wrote.
        unused = sorted(set_fields - spec.required - spec.optional - _ALWAYS)
        if unused:
            raise ValueError(f"'{unused[0]}' does not apply to kind '{self.kind}'")
        if self.size is not None:
            low, high = (4, None) if self.kind == "moving_edge" else (1, 128)
            if self.size < low or (high is not None and self.size > high):
                bound = f">= {low}" if high is None else f"in {low}..{high}"
                raise ValueError(f"'size' must be {bound} for kind '{self.kind}', got {self.size}")
        if self.num_channels is not None and self.num_channels % TEMPORAL_GROUPS:
            raise ValueError(f"'num_channels' must be a multiple of {TEMPORAL_GROUPS}, got {self.num_channels}")
        if self.kind == "temporal" and self.num_steps < TEMPORAL_MIN_STEPS:
            raise ValueError(f"'num_steps' must be >= {TEMPORAL_MIN_STEPS} for kind 'temporal' (its longest "
                             f"event sequence), got {self.num_steps}")
        generated = {"temporal": lambda: (self.num_train + self.num_test) * (self.num_channels or TEMPORAL_CHANNELS),
                     "moving_edge": lambda: (self.num_train + self.num_test) * 2 * (self.size or 16) ** 2,
                     "digits": lambda: DIGITS_SAMPLES * 64}
        if self.kind in generated:
            total = generated[self.kind]() * self.num_steps
            if total > MAX_GENERATED_BYTES:
                raise ValueError(f"num_steps: the generated set would hold {total} bytes of events, more than "
                                 f"{MAX_GENERATED_BYTES}")
        return self

    def given(self, *names: str) -> dict[str, Any]:
        """The named optional fields that are set, as keyword arguments."""
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}
