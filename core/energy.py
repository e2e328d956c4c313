"""Energy per operation and per memory access: the default table and the interpolation rules.

Source of every default figure (45 nm, 0.9 V):
    M. Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014,
    Digest of Technical Papers, pp. 10-14.
    int8 add 0.03 pJ, int32 add 0.1 pJ, int8 mult 0.2 pJ, int32 mult 3.1 pJ,
    fp32 add 0.9 pJ, fp32 mult 3.7 pJ;
    SRAM, per 64-bit access: 8 KB 10 pJ, 32 KB 20 pJ, 1 MB 100 pJ;
    DRAM 1.3-2.6 nJ per 64-bit access, i.e. 20-40 pJ/bit: we take 20 pJ/bit (the low end,
    which favours BPTT, the rule that needs DRAM first).

Rules (each an entry of ``hardware.energy.ops``, see :class:`OpEnergy`):

* ``linear``  E(w) linear in the width w (bits), through the anchors; beyond the first
  or last anchor the end segment is extended; one anchor means E proportional to w.
  Used for adds: an n-bit ripple/prefix adder's energy grows about linearly with n.
* ``product`` E(a x b) linear in the product a*b of the operand widths, through anchors
  given at square widths n (meaning n x n). Used for multiplies: an array multiplier
  has a*b partial-product cells. A single width w reads as w x w.
* ``mac``     E(a x b) = mul(a x b) + add(a + b bits): a multiply and the add of its
  product into an accumulator (uses the table's ``mul`` and ``add`` entries).
* ``fixed``   one value in pJ whatever the width.
* ``table``   explicit values for given width strings ("16x8": 0.4); wins over the rule.

Defaults not in the source, stated as assumptions (change them in ``hardware.energy``):

* ``syn_add``, ``shift``, ``cmp``, ``lut`` cost an add of the same width: a synaptic
  accumulate is an add; a shift by a declared constant is wiring plus the rounding
  increment (an add); a compare is a subtract; a Psi table read is a small register
  file read, about an adder's energy per bit.
* ``rng`` (one xorshift32 lane step: three constant shifts, which are wiring, and three
  32-bit XORs) costs three 32-bit adds (0.3 pJ), an upper bound for three XORs.
* registers: 0.00375 pJ per bit (an int8 add per 8 bits), used for tensors placed in
  ``registers`` (e.g. the Psi LUT).
* SRAM below 8 KB: E scales with sqrt(size) (bit-line length of a square array); between
  anchors, linear in log2(size); above 1 MB the last segment is extended. Word width:
  energy per bit = E_64(size) / 64 (accesses are costed by the bits they move).
"""

from __future__ import annotations

import math

SOURCE = ("M. Horowitz, 'Computing's energy problem (and what we can do about it)', "
          "ISSCC 2014, 45 nm; DRAM at 20 pJ/bit (low end of 1.3-2.6 nJ per 64 bits)")

ADD_ANCHORS = {8: 0.03, 32: 0.1}  # pJ, int add at width
MUL_ANCHORS = {8: 0.2, 32: 3.1}  # pJ, int mult at n x n
FP32 = {"add": 0.9, "mul": 3.7}  # pJ, for reference (float training on a general processor)
SRAM_ANCHORS_KB = {8: 10.0, 32: 20.0, 1024: 100.0}  # pJ per 64-bit access
SRAM_ANCHOR_BITS = 64
DRAM_PJ_PER_BIT = 20.0
REGISTER_PJ_PER_BIT = 0.03 / 8

#: The default ``hardware.energy`` section (YAML shape), one entry per compute kind of
#: core.counters.KINDS (read/write are memory accesses, costed by placement).
DEFAULT_ENERGY = {
    "source": SOURCE,
    "ops": {
        "add": {"rule": "linear", "anchors": dict(ADD_ANCHORS)},
        "syn_add": {"rule": "linear", "anchors": dict(ADD_ANCHORS)},
        "shift": {"rule": "linear", "anchors": dict(ADD_ANCHORS)},
        "cmp": {"rule": "linear", "anchors": dict(ADD_ANCHORS)},
        "lut": {"rule": "linear", "anchors": dict(ADD_ANCHORS)},
        "mul": {"rule": "product", "anchors": dict(MUL_ANCHORS)},
        "mac": {"rule": "mac"},
        "rng": {"rule": "fixed", "pj": 3 * ADD_ANCHORS[32]},
    },
    "fp32": dict(FP32),
}


def parse_width(width: str) -> tuple[int, ...]:
    """``"16"`` -> (16,), ``"16x8"`` -> (16, 8); ValueError otherwise."""
    parts = str(width).split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"width {width!r} is not <bits> or <bits>x<bits>") from None
    if not values or len(values) > 2 or min(values) <= 0:
        raise ValueError(f"width {width!r} is not <bits> or <bits>x<bits>")
    return values


def interpolate(points: dict[float, float], x: float) -> float:
    """Piecewise-linear through sorted points, end segments extended; one point: E ~ x."""
    keys = sorted(points)
    if len(keys) == 1:
        return points[keys[0]] * x / keys[0]
    if x <= keys[0]:
        a, b = keys[0], keys[1]
    elif x >= keys[-1]:
        a, b = keys[-2], keys[-1]
    else:
        b = next(k for k in keys if k >= x)
        a = keys[keys.index(b) - 1]
    value = points[a] + (points[b] - points[a]) * (x - a) / (b - a)
    return max(value, 0.0)


def linear_energy(anchors: dict[int, float], width: tuple[int, ...]) -> float:
    """E(w) for an add-like op: linear in the width (a product width uses its larger side)."""
    return interpolate({float(k): v for k, v in anchors.items()}, float(max(width)))


def product_energy(anchors: dict[int, float], width: tuple[int, ...]) -> float:
    """E(a x b) for a multiply: linear in a*b, anchors at n x n."""
    a, b = (width[0], width[0]) if len(width) == 1 else width
    return interpolate({float(k * k): v for k, v in anchors.items()}, float(a * b))


def sram_pj_per_bit(size_bits: float, anchors_kb: dict[float, float] | None = None,
                    anchor_bits: int = SRAM_ANCHOR_BITS) -> float:
    """Energy per bit accessed in an SRAM bank of ``size_bits`` (see the module rules)."""
    anchors = anchors_kb or SRAM_ANCHORS_KB
    keys = sorted(anchors)
    size_kb = max(size_bits, 1.0) / 8192.0
    if size_kb < keys[0]:
        per_access = anchors[keys[0]] * math.sqrt(size_kb / keys[0])
    elif len(keys) == 1:
        per_access = anchors[keys[0]]
    else:
        per_access = interpolate({math.log2(k): anchors[k] for k in keys}, math.log2(size_kb))
    return per_access / anchor_bits
