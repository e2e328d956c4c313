"""Render formats and parameter lists as SystemVerilog and C text. Owns no format.

A :class:`~core.formats.FixedFormat` becomes five integer parameters
(``<P>_BITS``, ``<P>_FRAC``, ``<P>_SIGNED``, ``<P>_ROUND``, ``<P>_OVF``: bits include the
sign bit, rounding and overflow as the integer model's codes) plus a type
(``logic signed [bits-1:0]`` / the smallest ``<stdint.h>`` type). A list of
:class:`Param` renders once as a SV package and once as C ``#define``s, so the two
files cannot disagree.

>>> from core.formats import FixedFormat
>>> [p.name for p in format_params("WEIGHT", FixedFormat.parse("s8.6 stochastic"))]
['WEIGHT_BITS', 'WEIGHT_FRAC', 'WEIGHT_SIGNED', 'WEIGHT_ROUND', 'WEIGHT_OVF']
>>> sv_type(FixedFormat.parse("s8.6")), c_type(FixedFormat.parse("u12.12"))
('logic signed [7:0]', 'uint16_t')
"""

from __future__ import annotations

from dataclasses import dataclass

from core.formats import FixedFormat
from core.overflow import overflow_code
from core.rounding import mode_code

ROUND_NAMES = "0 floor, 1 nearest_even, 2 nearest_away, 3 stochastic"
OVF_NAMES = "0 saturate, 1 wrap, 2 raise"


@dataclass(frozen=True)
class Param:
    """One named value: int (``wide``: a 64-bit signed code), str (a file name) or a LUT."""

    name: str
    value: int | str | tuple[int, ...]
    comment: str = ""
    wide: bool = False  # constant code: SV logic signed [63:0], C int64_t
    fmt: FixedFormat | None = None  # LUT entries' format


def format_params(prefix: str, fmt: FixedFormat, what: str = "") -> list[Param]:
    """The five integer parameters of one format."""
    text = f"{what + ': ' if what else ''}{fmt.describe()}"
    return [
        Param(f"{prefix}_BITS", fmt.bits, f"{text} (bits include the sign bit)"),
        Param(f"{prefix}_FRAC", fmt.frac, "fraction bits: value = code * 2**-FRAC"),
        Param(f"{prefix}_SIGNED", int(fmt.signed), "1 two's complement, 0 unsigned"),
        Param(f"{prefix}_ROUND", mode_code(fmt.rounding), ROUND_NAMES),
        Param(f"{prefix}_OVF", overflow_code(fmt.overflow), OVF_NAMES),
    ]


def sv_type(fmt: FixedFormat) -> str:
    return f"logic {'signed ' if fmt.signed else ''}[{fmt.bits - 1}:0]"


def c_type(fmt: FixedFormat) -> str:
    width = next(w for w in (8, 16, 32, 64) if fmt.bits <= w)
    return f"{'' if fmt.signed else 'u'}int{width}_t"


def _sv_literal(value: int, wide: bool) -> str:
    if not wide:
        return str(int(value))
    return f"-64'sd{-int(value)}" if value < 0 else f"64'sd{int(value)}"


def _sv_word(value: int, fmt: FixedFormat) -> str:
    return f"{fmt.bits}'h{int(value) & ((1 << fmt.bits) - 1):0{(fmt.bits + 3) // 4}x}"


def _comment(text: str) -> str:
    return f"  // {text}" if text else ""


def render_sv_package(name: str, params: list[Param], header: str, types: dict[str, FixedFormat]) -> str:
    """``package name; localparam ...; endpackage`` (one value per line, comment after it).

    LUTs become a packed vector, entry ``i`` at bits ``[i*BITS +: BITS]``.
    """
    lines = [f"// {line}" if line else "//" for line in header.splitlines()]
    lines += ["/* verilator lint_off UNUSEDPARAM */", "/* verilator lint_off DECLFILENAME */", f"package {name};"]
    for tname, fmt in types.items():
        lines.append(f"  typedef {sv_type(fmt)} {tname}_t;  // {fmt.describe_short()}")
    for p in params:
        if isinstance(p.value, str):
            lines.append(f'  localparam {p.name} = "{p.value}";{_comment(p.comment)}')
        elif isinstance(p.value, tuple):
            fmt = p.fmt
            words = ", ".join(_sv_word(v, fmt) for v in reversed(p.value))
            lines.append(f"  // {p.comment}; entry i at bits [i*{fmt.bits} +: {fmt.bits}]")
            lines.append(f"  localparam logic [{len(p.value) * fmt.bits - 1}:0] {p.name} = {{{words}}};")
        elif p.wide:
            lines.append(f"  localparam logic signed [63:0] {p.name} = {_sv_literal(p.value, True)};"
                         f"{_comment(p.comment)}")
        else:
            lines.append(f"  localparam integer {p.name} = {int(p.value)};{_comment(p.comment)}")
    lines += [f"endpackage : {name}", "/* verilator lint_on DECLFILENAME */", "/* verilator lint_on UNUSEDPARAM */", ""]
    return "\n".join(lines)


def _c_literal(value: int, wide: bool) -> str:
    if wide:
        return f"INT64_C({int(value)})" if value >= 0 else f"(-INT64_C({-int(value)}))"
    return str(int(value)) if value >= 0 else f"({int(value)})"


def render_c_header(guard: str, sections: list[tuple[str, list[Param], dict[str, FixedFormat]]],
                    header: str) -> str:
    """``#define <PREFIX><NAME> value`` for every section (prefix, params, types)."""
    lines = ["/*"] + [f" * {line}" if line else " *" for line in header.splitlines()] + [" */"]
    lines += [f"#ifndef {guard}", f"#define {guard}", "", "#include <stdint.h>", ""]
    for prefix, params, types in sections:
        for tname, fmt in types.items():
            lines.append(f"typedef {c_type(fmt)} {prefix.lower()}{tname}_t;  /* {fmt.describe_short()} */")
        for p in params:
            name = f"{prefix}{p.name}"
            note = f"  /* {p.comment} */" if p.comment else ""
            if isinstance(p.value, str):
                lines.append(f'#define {name} "{p.value}"{note}')
            elif isinstance(p.value, tuple):
                values = ", ".join(str(int(v)) for v in p.value)
                lines.append(f"/* {p.comment} */")
                lines.append(f"static const {c_type(p.fmt)} {name}[{len(p.value)}] = {{{values}}};")
            else:
                lines.append(f"#define {name} {_c_literal(p.value, p.wide)}{note}")
        lines.append("")
    lines += [f"#endif /* {guard} */", ""]
    return "\n".join(lines)
