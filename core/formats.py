"""`FixedFormat`: the one value that says how a tensor is stored (see the package legend).

A stored integer ``m`` in ``FixedFormat(signed, bits, frac)`` means ``m * 2**-frac``;
``bits`` includes the sign bit.  The format also carries the rounding mode used when a
value is brought into it and the overflow policy applied when it does not fit.

>>> f = FixedFormat.parse("s8.4")
>>> f.min_value, f.max_value, f.lsb
(-8.0, 7.9375, 0.0625)
>>> f.describe()
's8.4 nearest_even saturate'
>>> f.quantize([1.03125, -9.0]).tolist()   # 16.5 -> 16 (tie to even); -144 saturates
[16, -128]
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

from core.overflow import (
    FixedOverflowError,
    OverflowCounter,
    apply_overflow,
    overflow_message,
)
from core.rounding import round_float

RoundingMode = Literal["floor", "nearest_even", "nearest_away", "stochastic"]
OverflowPolicy = Literal["saturate", "wrap", "raise"]

_ROUNDING_NAMES = ("floor", "nearest_even", "nearest_away", "stochastic")
_OVERFLOW_NAMES = ("saturate", "wrap", "raise")
_TEXT = re.compile(r"^([su])(\d+)\.(-?\d+)$", re.ASCII)  # ASCII digits only: "s１６.8" is refused
_TEXT_HELP = (
    "expected s<bits>.<frac> or u<bits>.<frac> (e.g. s16.8, u8.0, s8.-2), optionally "
    "followed by a rounding mode and an overflow policy"
)
MAX_BITS = 32  # kernels accumulate products of two stored values in int64
FRAC_RANGE = (-32, 63)
# |rounded float| beyond this cannot be cast to int64 safely; see quantize
_FLOAT_INT_LIMIT = float(1 << 62)


def _parse_fields(text: str) -> dict[str, Any]:
    if not isinstance(text, str):
        raise ValueError(f"format text must be a string, got {text!r}")
    tokens = text.split()
    match = _TEXT.match(tokens[0]) if tokens else None
    if match is None:
        raise ValueError(f"cannot parse fixed-point format {text!r}: {_TEXT_HELP}")
    fields: dict[str, Any] = {
        "signed": match.group(1) == "s",
        "bits": int(match.group(2)),
        "frac": int(match.group(3)),
    }
    for token in tokens[1:]:
        key = (
            "rounding"
            if token in _ROUNDING_NAMES
            else "overflow" if token in _OVERFLOW_NAMES else None
        )
        if key is None or key in fields:
            problem = "is repeated" if key else "is neither a rounding mode nor an overflow policy"
            raise ValueError(f"cannot parse fixed-point format {text!r}: {token!r} {problem}")
        fields[key] = token
    return fields


class FixedFormat(BaseModel):
    """Fixed-point format: ``m * 2**-frac``, ``bits`` wide including the sign bit.

    Build it with keywords, from a dict (YAML), or from text: ``FixedFormat.parse("s16.8")``;
    a bare string also validates where a ``FixedFormat`` field is expected.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    signed: bool  # two's complement if True, else unsigned
    bits: int  # stored width, sign bit included: 1..32 unsigned, 2..32 signed
    frac: int  # fraction bits, lsb = 2**-frac; -32..63, may exceed bits
    rounding: RoundingMode = "nearest_even"  # used when a value is brought into the format
    overflow: OverflowPolicy = "saturate"  # used when a value does not fit

    # ---------------------------------------------------------------- validation

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        # "s16.8 floor wrap" anywhere a FixedFormat is expected (YAML convenience)
        return _parse_fields(data) if isinstance(data, str) else data

    @field_validator("signed", mode="before")
    @classmethod
    def _strict_bool(cls, v: Any) -> bool:
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        raise ValueError(f"signed must be true or false, got {v!r}")

    @field_validator("bits", "frac", mode="before")
    @classmethod
    def _strict_int(cls, v: Any, info: ValidationInfo) -> int:
        # bool is an int in Python; True as a width is always a mistake
        if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
            return int(v)
        raise ValueError(f"{info.field_name} must be an integer, got {v!r}")

    @field_validator("bits")
    @classmethod
    def _bits_range(cls, v: int, info: ValidationInfo) -> int:
        signed = info.data.get("signed")
        low = 2 if signed else 1  # a signed format needs the sign bit plus one
        if not low <= v <= MAX_BITS:
            kind = "signed" if signed else "unsigned" if signed is not None else "any"
            raise ValueError(
                f"bits = {v} is outside the supported range {low}..{MAX_BITS} for {kind} "
                "formats (bits include the sign bit; kernels use int64 accumulators)"
            )
        return v

    @field_validator("frac")
    @classmethod
    def _frac_range(cls, v: int) -> int:
        if not FRAC_RANGE[0] <= v <= FRAC_RANGE[1]:
            raise ValueError(
                f"frac = {v} is outside the supported range {FRAC_RANGE[0]}..{FRAC_RANGE[1]}"
            )
        return v

    # ---------------------------------------------------------------- constructors

    @classmethod
    def parse(cls, text: str, **overrides: Any) -> FixedFormat:
        """``"s16.8"``, ``"u8.0 floor wrap"``; keyword overrides win over the text."""
        return cls(**{**_parse_fields(text), **overrides})

    def replace(self, **changes: Any) -> FixedFormat:
        """A validated copy with some fields changed."""
        return type(self)(**{**self.model_dump(), **changes})

    # ---------------------------------------------------------------- derived

    @property
    def min_int(self) -> int:
        """Smallest stored integer."""
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max_int(self) -> int:
        """Largest stored integer."""
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def lsb(self) -> float:
        """Value of one code step, ``2**-frac`` (exact float)."""
        return math.ldexp(1.0, -self.frac)

    @property
    def min_value(self) -> float:
        """Smallest representable value, ``min_int * lsb`` (exact float)."""
        return math.ldexp(float(self.min_int), -self.frac)

    @property
    def max_value(self) -> float:
        """Largest representable value, ``max_int * lsb`` (exact float)."""
        return math.ldexp(float(self.max_int), -self.frac)

    def describe_short(self) -> str:
        """``s16.8`` / ``u8.0``: sign, bits (sign included), fraction bits."""
        return f"{'s' if self.signed else 'u'}{self.bits}.{self.frac}"

    def describe(self) -> str:
        """``s16.8 nearest_even saturate``; ``FixedFormat.parse`` reads it back."""
        return f"{self.describe_short()} {self.rounding} {self.overflow}"

    def __str__(self) -> str:
        return self.describe()

    # ---------------------------------------------------------------- values

    def _round_to_int_float(self, x: np.ndarray, u: np.ndarray | None) -> np.ndarray:
        # grid index as an integer-valued float64 (exact; see core.rounding)
        return np.ldexp(round_float(x, self.frac, self.rounding, u), self.frac)

    def _rounded_extremes(self, value: float) -> tuple[float, float]:
        # stochastic rounding may go either way: both neighbours must fit
        if self.rounding == "stochastic":
            s = math.ldexp(value, self.frac)
            if not math.isfinite(s):  # beyond float range after scaling: never fits
                return s, s
            return float(math.floor(s)), float(math.ceil(s))
        m = float(self._round_to_int_float(np.float64(value), None))
        return m, m

    def contains(self, value: float, *, exact: bool = False) -> bool:
        """True if ``value`` rounded in this format's mode lies within the range.

        With ``exact=True`` the value must also be a multiple of the lsb.
        """
        v = float(value)
        # beyond one lsb outside the range nothing rounds back in; this also keeps the
        # scaling below from overflowing
        if not (self.min_value - self.lsb <= v <= self.max_value + self.lsb):
            return False  # NaN and inf included
        lo, hi = self._rounded_extremes(v)
        if lo < self.min_int or hi > self.max_int:
            return False
        return not exact or math.ldexp(v, self.frac).is_integer()

    def check_fits(self, name: str, value: float, *, exact: bool = False) -> None:
        """Raise ``ValueError`` naming ``name`` if ``value`` does not fit (see contains).

        e.g. ``neuron.theta = 300.0 does not fit s8.4 (range -8.0 .. 7.9375)``.
        """
        if self.contains(value, exact=exact):
            return
        v = float(value)
        text = f"{name} = {v!r} does not fit {self.describe_short()}"
        rng = f"(range {self.min_value!r} .. {self.max_value!r})"
        if not math.isfinite(v):
            raise ValueError(f"{text} {rng}: not a finite number")
        if self.min_value <= v <= self.max_value:  # in range, so only exactness failed
            s = math.ldexp(v, self.frac)
            below = math.ldexp(float(math.floor(s)), -self.frac)
            above = math.ldexp(float(math.ceil(s)), -self.frac)
            raise ValueError(
                f"{text} exactly: not a multiple of the lsb {self.lsb!r} "
                f"(neighbours {below!r} and {above!r})"
            )
        raise ValueError(f"{text} {rng}")

    def to_float(self, ints: np.ndarray | int) -> np.ndarray:
        """Stored integers -> float64 values ``m * 2**-frac`` (exact for ``|m| < 2**53``)."""
        m = np.asarray(ints)
        if m.dtype == np.bool_ or not np.issubdtype(m.dtype, np.integer):
            raise ValueError(f"to_float needs integers, got dtype {m.dtype}")
        return np.ldexp(m.astype(np.float64), -self.frac)

    def quantize(
        self,
        values: np.ndarray | float,
        rng_bits: np.ndarray | int | None = None,
        *,
        tensor: str = "?",
        step: int | None = None,
        counter: OverflowCounter | None = None,
    ) -> np.ndarray:
        """Float values -> int64 stored integers: round in ``self.rounding``, then overflow.

        rng_bits: uint32 random words broadcastable to ``values`` (stochastic mode only;
        ignored otherwise).  A word ``w`` acts as the offset ``u = w / 2**32``, which is
        the same as adding the TOP bits of ``w`` on the integer path (``random_bits``).
        Overflow events go to ``counter`` under ``tensor``; ``raise`` names tensor/step.
        NaN raises ``ValueError``.
        """
        x = np.asarray(values, dtype=np.float64)
        if np.isnan(x).any():
            first = np.unravel_index(int(np.flatnonzero(np.isnan(x))[0]), x.shape)
            raise ValueError(f"{tensor}: NaN at index {tuple(int(i) for i in first)} "
                             f"cannot be quantized to {self.describe_short()}")
        u = None
        if self.rounding == "stochastic":
            if rng_bits is None:
                raise ValueError(f"{tensor}: stochastic rounding needs rng_bits (uint32 words)")
            words = np.asarray(rng_bits)
            if not np.issubdtype(words.dtype, np.integer) or (
                words.size and (int(words.min()) < 0 or int(words.max()) >= 1 << 32)
            ):
                raise ValueError(f"{tensor}: rng_bits must be 32-bit unsigned words")
            u = np.ldexp(words.astype(np.float64), -32)  # exact
        m = self._round_to_int_float(x, u)
        # |m| above 2**62 (or inf) cannot be cast to int64; replace it by an int64 that
        # is still out of range and has the same saturate/wrap result.
        big = np.abs(m) > _FLOAT_INT_LIMIT
        if big.any():
            if self.overflow == "raise":
                first = np.unravel_index(int(np.flatnonzero(big)[0]), m.shape)
                raise FixedOverflowError(
                    overflow_message(tensor, step, tuple(first), float(x[first]), self)
                )
            if self.overflow == "wrap":
                if np.isinf(m).any():
                    raise ValueError(f"{tensor}: an infinite value cannot wrap into "
                                     f"{self.describe_short()}")
                # fmod is exact; +-2 periods keep it out of range (so it is counted)
                # and congruent modulo 2**bits (so it wraps to the same code)
                period = float(1 << self.bits)
                m = np.where(big, np.fmod(m, period) + np.sign(m) * 2.0 * period, m)
            else:  # saturate: any value beyond the range clips to the same end
                m = np.clip(m, -_FLOAT_INT_LIMIT, _FLOAT_INT_LIMIT)
        ints, _ = apply_overflow(
            m.astype(np.int64), self, tensor=tensor, step=step, counter=counter
        )
        return ints
