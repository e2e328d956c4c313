"""Operation counts of the integer model, kind by kind (see docs/fixedpoint_model.md).

Every count is keyed by ``OpKey(layer, phase, kind, width, tensor)``:

* ``layer``  ``"layer0"``, ``"layer1"``, ... (index in network.layers);
* ``phase``  one of :data:`PHASES`;
* ``kind``   one of :data:`KINDS`;
* ``width``  operand widths: ``"16x12"`` for a multiply/MAC (first operand first), the
             adder width (result register bits) for adds, the operand width for shifts,
             compares, LUT and memory accesses;
* ``tensor`` the stored tensor a memory access or LUT read touches (``""`` otherwise).

One count is one execution of one operation on one element for one sample; counts are
added in bulk by the kernels (e.g. active inputs x fan-out), never per operation.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

PHASES = ("forward", "traces", "learning_signal", "eligibility_causal", "eligibility_noncausal",
          "accumulate", "weight_write")
KINDS = (
    "syn_add",  # spike-driven accumulate: one weight added into one current accumulator
    "mac",  # multiply-accumulate (product added to an accumulator), width AxB
    "mul",  # multiply, width AxB (constant operand first)
    "add",  # add or subtract, width = result register bits
    "shift",  # requantizing shift by a declared non-zero amount (incl. its rounding)
    "cmp",  # compare (threshold, clamp), width = operand bits
    "lut",  # table read (Psi LUT), width = entry bits
    "rng",  # one xorshift32 lane step (32-bit)
    "read",  # one element read from a stored tensor, width = element bits
    "write",  # one element written to a stored tensor, width = element bits
)


@dataclass(frozen=True, order=True)
class OpKey:
    layer: str
    phase: str
    kind: str
    width: str
    tensor: str = ""


class OpCounter:
    """Counts of executed operations per :class:`OpKey` (mutable on purpose, like OverflowCounter)."""

    def __init__(self) -> None:
        self._counts: dict[OpKey, int] = defaultdict(int)

    def add(self, layer: str, phase: str, kind: str, width: str | int, count: int, tensor: str = "") -> None:
        if phase not in PHASES or kind not in KINDS:
            raise ValueError(f"unknown phase/kind {phase!r}/{kind!r}")
        count = int(count)
        if count < 0:
            raise ValueError(f"negative count {count} for {layer}.{phase}.{kind}")
        if count:
            self._counts[OpKey(layer, phase, kind, str(width), tensor)] += count

    def get(self, layer: str | None = None, phase: str | None = None, kind: str | None = None,
            width: str | None = None, tensor: str | None = None) -> int:
        """Sum of the counts whose key matches every given field."""
        want = {"layer": layer, "phase": phase, "kind": kind, "width": width, "tensor": tensor}
        return sum(n for key, n in self._counts.items()
                   if all(v is None or getattr(key, f) == v for f, v in want.items()))

    def as_dict(self) -> dict[OpKey, int]:
        return dict(sorted(self._counts.items()))

    def merge(self, other: "OpCounter") -> None:
        for key, n in other._counts.items():
            self._counts[key] += n

    def rows(self) -> list[tuple[str, str, str, str, str, int]]:
        return [(k.layer, k.phase, k.kind, k.width, k.tensor, n) for k, n in self.as_dict().items()]

    def summary(self) -> str:
        rows = [("layer", "phase", "kind", "width", "tensor", "count")]
        rows += [(*r[:5], str(r[5])) for r in self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)

    def __repr__(self) -> str:
        return f"OpCounter({len(self._counts)} keys, {sum(self._counts.values())} operations)"
