"""What happens when an integer does not fit its format: saturate, wrap or raise.

* ``saturate``  clip to ``[min_int, max_int]`` (what a saturating adder does);
* ``wrap``      keep the low ``bits`` bits: two's complement modulo ``2**bits`` for a
                signed format, modulo ``2**bits`` for an unsigned one (what a plain
                register of that width does, no extra logic);
* ``raise``     stop with :class:`FixedOverflowError`, naming the tensor, the time step,
                the first offending index and its value (for finding the format bug).

Saturate and wrap events are counted, never silent: pass an :class:`OverflowCounter`
and the integer model prints its summary at the end of every run.

>>> from core.formats import FixedFormat
>>> vals, n = apply_overflow(np.array([-200, 5, 300]), FixedFormat.parse("s8.0"))
>>> vals.tolist(), n
([-128, 5, 127], 2)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from core.errors import InputError

if TYPE_CHECKING:  # formats imports this module; the type is only needed for hints
    from core.formats import FixedFormat

# Policy codes for numba kernels (index into OVERFLOW_POLICIES).
SATURATE = 0
WRAP = 1
RAISE = 2
OVERFLOW_POLICIES: tuple[str, ...] = ("saturate", "wrap", "raise")


def overflow_code(policy: str) -> int:
    """Integer code (0..2) of an overflow policy name, for numba kernels."""
    try:
        return OVERFLOW_POLICIES.index(policy)
    except ValueError:
        raise ValueError(
            f"overflow policy {policy!r} is not one of {', '.join(OVERFLOW_POLICIES)}"
        ) from None


class FixedOverflowError(InputError):
    """A value left its format under the ``raise`` overflow policy.

    An :class:`~core.errors.InputError`: the formats are the user's input, and every
    CLI reports it as one line (exit 2)."""

    def __str__(self) -> str:
        return f"{super().__str__()} (overflow policy 'raise' in quant)"






def _wrap_array(v: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    r = v & np.int64((1 << bits) - 1)
    if signed:
        r = np.where(r >= (1 << (bits - 1)), r - np.int64(1 << bits), r)
    return r


def _format_index(idx: tuple[int, ...]) -> str:
    # Python tuple notation: (3, 12), (5,) for 1-d, () for a scalar
    return str(tuple(int(i) for i in idx))


def overflow_message(
    tensor: str, step: int | None, index: tuple[int, ...], value: object, fmt: FixedFormat
) -> str:
    """``overflow in <tensor> at step <t>, index (i, j): value <v> outside s16.8 [lo, hi]``."""
    where = f"overflow in {tensor}" + ("" if step is None else f" at step {step}")
    return (
        f"{where}, index {_format_index(index)}: value {value} outside "
        f"{fmt.describe_short()} [{fmt.min_int}, {fmt.max_int}]"
    )


def apply_overflow(
    values: np.ndarray,
    fmt: FixedFormat,
    *,
    tensor: str = "?",
    step: int | None = None,
    counter: OverflowCounter | None = None,
) -> tuple[np.ndarray, int]:
    """Bring int64 ``values`` into ``fmt``'s integer range by ``fmt.overflow``.

    Returns ``(values_in_range, events)`` where events is the number of elements that
    were out of range.  ``tensor``/``step`` name the place in error messages and in the
    counter; ``counter`` (optional) accumulates events and elements seen.
    """
    v = np.asarray(values)
    if v.dtype == np.bool_ or not np.issubdtype(v.dtype, np.integer):
        raise ValueError(f"{tensor}: apply_overflow needs integers, got dtype {v.dtype}")
    v = v.astype(np.int64, copy=False)
    lo, hi = fmt.min_int, fmt.max_int
    out_of_range = (v < lo) | (v > hi)
    events = int(np.count_nonzero(out_of_range))
    if counter is not None:
        counter.record(tensor, fmt, events=events, elements=int(v.size))
    if events == 0:
        return v.copy(), 0
    if fmt.overflow == "raise":
        first = np.unravel_index(int(np.flatnonzero(out_of_range)[0]), v.shape)
        msg = overflow_message(tensor, step, tuple(first), int(v[first]), fmt)
        if events > 1:
            msg += f" ({events} of {v.size} elements out of range)"
        raise FixedOverflowError(msg)
    if fmt.overflow == "wrap":
        return _wrap_array(v, fmt.bits, fmt.signed), events
    return np.clip(v, lo, hi), events


class OverflowCounter:
    """Saturate/wrap events per tensor name, summed over a run (mutable on purpose).

    One tensor name has one format; recording a second format for it is a bug in the
    caller and raises ``ValueError``.
    """

    def __init__(self) -> None:
        # name -> [format text, events, elements seen]; insertion order = report order
        self._rows: dict[str, list] = {}
        # id(format) -> (format, its text): a model records the same few formats per step
        self._texts: dict[int, tuple[FixedFormat, str]] = {}

    def record(self, tensor: str, fmt: FixedFormat, *, events: int, elements: int) -> None:
        """Add ``events`` out-of-range elements among ``elements`` seen for ``tensor``."""
        if events < 0 or elements < 0 or events > elements:
            raise ValueError(
                f"{tensor}: events = {events}, elements = {elements} must satisfy "
                "0 <= events <= elements"
            )
        known = self._texts.get(id(fmt))
        if known is None or known[0] is not fmt:  # the format is kept, so its id is not reused
            known = self._texts[id(fmt)] = (fmt, fmt.describe())
        text = known[1]
        row = self._rows.setdefault(tensor, [text, 0, 0])
        if row[0] != text:
            raise ValueError(f"tensor {tensor!r} recorded as {row[0]} and as {text}")
        row[1] += int(events)
        row[2] += int(elements)

    def events(self, tensor: str) -> int:
        """Events recorded for one tensor (0 if never seen)."""
        return self._rows[tensor][1] if tensor in self._rows else 0

    @property
    def total_events(self) -> int:
        return sum(row[1] for row in self._rows.values())

    def rows(self) -> list[tuple[str, str, int, int]]:
        """``(tensor, format, events, elements)`` in first-seen order."""
        return [(name, r[0], r[1], r[2]) for name, r in self._rows.items()]

    def merge(self, other: OverflowCounter) -> None:
        """Add another counter's rows into this one (e.g. from a worker)."""
        for name, text, events, elements in other.rows():
            row = self._rows.setdefault(name, [text, 0, 0])
            if row[0] != text:
                raise ValueError(f"tensor {name!r} recorded as {row[0]} and as {text}")
            row[1] += events
            row[2] += elements

    def summary(self) -> str:
        """Plain-text table: tensor, format, events, elements seen, and a total line."""
        header = ("tensor", "format", "events", "elements")
        body = [(n, f, str(e), str(k)) for n, f, e, k in self.rows()]
        total = ("total", "", str(self.total_events), str(sum(r[3] for r in self.rows())))
        table = [header, *body, total]
        widths = [max(len(row[i]) for row in table) for i in range(4)]

        def line(row: tuple[str, ...]) -> str:
            return (
                f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  "
                f"{row[2]:>{widths[2]}}  {row[3]:>{widths[3]}}"
            ).rstrip()

        rule = "-" * len(line(header))
        if not body:
            return "overflow summary: no tensors recorded"
        return "\n".join([line(header), rule, *map(line, body), rule, line(total)])

    def __repr__(self) -> str:
        return f"OverflowCounter({len(self._rows)} tensors, {self.total_events} events)"
