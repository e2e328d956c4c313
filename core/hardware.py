"""The ``hardware:`` and ``activity:`` sections, and loading one estimate's inputs.

A model file is a normal config (network / learning / train / data / quant, validated by
:func:`core.config.parse_config`) that may add two sections read only here::

    hardware:                    # optional; or --hw FILE with a top-level hardware: section
      clock_mhz: 200             # datapath clock
      lanes: 64                  # arithmetic units, one operation per lane per cycle
      samples_in_flight: 1       # samples whose state is held at once (state memory x this)
      energy:                    # pJ per operation, one entry per compute kind (see energy.py)
        source: "..."
        ops: {add: {rule: linear, anchors: {8: 0.03, 32: 0.1}}, ...}
      sram: {anchors_kb: {8: 10, 32: 20, 1024: 100}, anchor_bits: 64}
      dram_pj_per_bit: 20
      register_pj_per_bit: 0.00375
      memories:                  # name -> kind (sram | dram | registers), size, port width
        sram_weights: {kind: sram}               # size_kb: null = sized to its contents
        sram_state:   {kind: sram, size_kb: 256, word_bits: 64, ports: 1}
      placement:                 # tensor name -> memory; 'default' for the rest;
        weight: sram_weights     # 'layerN.tensor' places one layer's tensor (wins over 'tensor')
        layer0.weight: dram
        default: sram_state

    activity:                    # optional expected activity (rates mode); --activity FILE
      input: 0.1                 # fraction of non-zero first-layer inputs per step
      default: {output: 0.1}     # per-layer defaults
      layers: {0: {output: 0.05, psi: 0.8, delta: 0.5}}

``hardware.energy`` given in a file replaces the default table as a whole: every compute
kind the estimate needs must be there (a missing one is an error naming it).
"""


from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from core.quant import per_layer_mapping
from core.counters import KINDS
from core.energy import (
    DEFAULT_ENERGY,
    DRAM_PJ_PER_BIT,
    REGISTER_PJ_PER_BIT,
    SRAM_ANCHOR_BITS,
    SRAM_ANCHORS_KB,
    parse_width,
)
from core.errors import InputError
from core.schema import StrictModel, format_validation_error

# Bounds of the hardware figures: far beyond any real design, but finite, so no figure
# can turn an energy, a size or a latency into inf (or a huge integer) downstream.
MAX_PJ = 1e9  # pJ per operation or per bit (1 mJ)
MAX_CLOCK_MHZ = 1e6  # 1 THz
MAX_LANES = 2**20
MAX_BATCH = 65536  # samples in one measured batch, or held in flight
MAX_WIDTH_BITS = 1024  # operand width in an energy table
MAX_SIZE_KB = 2.0**30  # one memory bank: 1 TiB
MAX_WORD_BITS = 2**16
MAX_PORTS = 1024
MAX_NAME = 200  # characters of a name or a source line

Positive = Annotated[float, Field(gt=0.0)]
Energy = Annotated[float, Field(gt=0.0, le=MAX_PJ)]
EnergyOrZero = Annotated[float, Field(ge=0.0, le=MAX_PJ)]
Rate = Annotated[float, Field(ge=0.0, le=1.0)]
Name = Annotated[str, Field(max_length=MAX_NAME)]
#: A memory's name: what a hardware engineer would call a bank (sram_weights, hbm0, l2.state).
MemoryName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")]


_Strict = StrictModel  # strict types, finite floats, no unknown keys (core/schema.py)


# ------------------------------------------------------------------------------ energy


#: Compute kinds an energy table may price (read/write are memory accesses, priced by placement).
COMPUTE_KINDS = tuple(kind for kind in KINDS if kind not in ("read", "write"))


def numeric_keys(value, number: type):
    """A mapping keyed by numbers may arrive with its keys as text: JSON (a saved config, a
    checkpoint) has only string keys. Decimal text becomes ``number``; anything else stays
    as it is, for the strict schema to refuse."""
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if isinstance(key, str) and key.isascii():
            try:
                key = number(key)
            except ValueError:
                pass
        out[key] = item
    return out


class OpEnergy(_Strict):
    """Energy of one compute kind: a rule (see core.energy) and its data."""

    rule: Literal["linear", "product", "mac", "fixed"]
    anchors: dict[int, Energy] | None = None  # width (bits) -> pJ; product: n means n x n
    pj: EnergyOrZero | None = None  # fixed
    table: dict[str, EnergyOrZero] = {}  # explicit width string -> pJ

    @field_validator("anchors", mode="before")
    @classmethod
    def _text_widths(cls, value):
        return numeric_keys(value, int)

    @model_validator(mode="after")
    def _check(self) -> "OpEnergy":
        if self.rule in ("linear", "product") and not self.anchors:
            raise ValueError(f"rule {self.rule} needs anchors (width -> pJ)")
        if self.anchors and not all(0 < width <= MAX_WIDTH_BITS for width in self.anchors):
            raise ValueError(f"anchors: widths must be in 1..{MAX_WIDTH_BITS} bits")
        if self.rule == "fixed" and self.pj is None:
            raise ValueError("rule fixed needs pj")
        # A value the rule does not read is a mistake the user would not see in the results.
        if self.anchors is not None and self.rule in ("mac", "fixed"):
            raise ValueError(f"anchors: not used by rule {self.rule}")
        if self.pj is not None and self.rule != "fixed":
            raise ValueError(f"pj: not used by rule {self.rule} (only by rule fixed)")
        for width in self.table:
            if max(parse_width(width)) > MAX_WIDTH_BITS:
                raise ValueError(f"table: width {width!r} is wider than {MAX_WIDTH_BITS} bits")
        return self


class EnergyTable(_Strict):
    source: Annotated[str, Field(max_length=1000)] = ""
    ops: dict[str, OpEnergy]
    fp32: dict[Literal["add", "mul"], Energy] = {}

    @field_validator("ops")
    @classmethod
    def _known_kinds(cls, ops: dict) -> dict:
        for kind in ops:
            if kind not in COMPUTE_KINDS:
                raise ValueError(f"{kind}: unknown compute kind (known: {', '.join(COMPUTE_KINDS)})")
        return ops


class SramModel(_Strict):
    """Energy per access of ``anchor_bits`` at the anchor bank sizes (KB)."""

    anchors_kb: Annotated[dict[Annotated[float, Field(gt=0.0, le=MAX_SIZE_KB)], Energy],
                          Field(min_length=1)] = dict(SRAM_ANCHORS_KB)
    anchor_bits: Annotated[int, Field(gt=0, le=MAX_WORD_BITS)] = SRAM_ANCHOR_BITS

    @field_validator("anchors_kb", mode="before")
    @classmethod
    def _text_sizes(cls, value):
        return numeric_keys(value, float)


class Memory(_Strict):
    kind: Literal["sram", "dram", "registers"]
    size_kb: Annotated[float, Field(gt=0.0, le=MAX_SIZE_KB)] | None = None  # None = sized to its contents
    word_bits: Annotated[int, Field(gt=0, le=MAX_WORD_BITS)] = 64  # bits per port per cycle
    ports: Annotated[int, Field(gt=0, le=MAX_PORTS)] = 1


DEFAULT_MEMORIES = {
    "registers": {"kind": "registers"},
    "sram_weights": {"kind": "sram"},
    "sram_updates": {"kind": "sram"},
    "sram_momentum": {"kind": "sram"},
    "sram_feedback": {"kind": "sram"},
    "sram_state": {"kind": "sram"},
    "sram_activations": {"kind": "sram"},
    "dram": {"kind": "dram"},
}

#: Where each stored tensor lives by default (tensor names of fixedpoint's counters,
#: plus the parameters and BPTT's per-step activations). The weight bank holds the same
#: tensors in every mode (weights and biases only), so a weight read costs the same in
#: training as in inference; the update accumulators and the DFA matrices, which only
#: training needs, have banks of their own (lion's momentum too: it is read once per write,
#: the accumulators at every window step, so sharing their bank would make every
#: accumulator access pay for a bank twice the size).
DEFAULT_PLACEMENT = {
    "weight": "sram_weights",
    "rec_weight": "sram_weights",
    "bias": "sram_weights",
    "feedback": "sram_feedback",
    "update": "sram_updates",
    "rec_update": "sram_updates",
    "bias_update": "sram_updates",
    "momentum_weight": "sram_momentum",  # lion: one word per weight, training only
    "momentum_rec_weight": "sram_momentum",
    "momentum_bias": "sram_momentum",
    "psi_lut": "registers",
    "softmax_lut": "registers",
    "membrane": "sram_state",
    "prev_spikes": "sram_state",
    "pre_trace": "sram_state",
    "post_trace": "sram_state",
    "bias_trace": "registers",
    "rec_pre_trace": "sram_state",
    "bptt_grad": "sram_state",
    "bptt_input": "sram_activations",
    "bptt_membrane": "sram_activations",
    "bptt_spikes": "sram_activations",
    "default": "sram_state",
}


class HardwareConfig(_Strict):
    name: Name = "45 nm edge learner (default)"
    clock_mhz: Annotated[float, Field(gt=0.0, le=MAX_CLOCK_MHZ)] = 200.0
    lanes: Annotated[int, Field(gt=0, le=MAX_LANES)] = 64
    samples_in_flight: Annotated[int, Field(gt=0, le=MAX_BATCH)] = 1
    energy: EnergyTable = EnergyTable.model_validate(DEFAULT_ENERGY)
    sram: SramModel = SramModel()
    dram_pj_per_bit: Energy = DRAM_PJ_PER_BIT
    register_pj_per_bit: Energy = REGISTER_PJ_PER_BIT
    memories: dict[MemoryName, Memory] = {k: Memory(**v) for k, v in DEFAULT_MEMORIES.items()}
    placement: dict[str, MemoryName] = dict(DEFAULT_PLACEMENT)

    @model_validator(mode="after")
    def _check_placement(self) -> "HardwareConfig":
        for key, memory in self.placement.items():
            layer, tensor = split_placement_key(key)
            if tensor not in DEFAULT_PLACEMENT or (layer is not None and tensor == "default"):
                # a typo would leave the tensor in the default memory
                raise ValueError(f"placement.{key}: unknown tensor (known: {', '.join(DEFAULT_PLACEMENT)}; "
                                 "one layer's tensor: layerN.<tensor>)")
            if memory not in self.memories:
                raise ValueError(f"placement.{key}: unknown memory {memory!r} "
                                 f"(memories: {', '.join(sorted(self.memories))})")
        if "default" not in self.placement:
            unplaced = [t for t in DEFAULT_PLACEMENT if t != "default" and t not in self.placement]
            if unplaced:
                raise ValueError(f"placement.{unplaced[0]}: no memory for this tensor (name it or add a default)")
        return self

    def memory_of(self, tensor: str, layer: str | None = None) -> str:
        """The memory holding ``tensor`` (of ``layer``): 'layerN.tensor', else 'tensor', else 'default'."""
        name = self.placement.get(f"{layer}.{tensor}") if layer is not None else None
        if name is None:
            name = self.placement.get(tensor, self.placement.get("default"))
        if name is None:
            raise InputError(f"hardware.placement.{tensor}: no memory for this tensor (name it or add a default)")
        return name

    def placed_layers(self) -> list[int]:
        """Layer indices named by per-layer placement keys."""
        return sorted({layer for layer, _ in map(split_placement_key, self.placement) if layer is not None})


def split_placement_key(key: str) -> tuple[int | None, str]:
    """'layer3.weight' -> (3, 'weight'); 'weight' -> (None, 'weight')."""
    match = re.fullmatch(r"layer([0-9]{1,6})\.(.+)", key)
    if match:
        return int(match.group(1)), match.group(2)
    return None, key


# ---------------------------------------------------------------------------- activity


class LayerActivity(_Strict):
    """Expected activity of one layer (fractions of elements that are non-zero per step).

    output: spike rate of a spiking layer (its next layer's input rate);
    psi: non-zero Psi (both rules: S-TLLR's eligibility, BPTT's surrogate);
    signal: non-zero learning signal L (S-TLLR, window steps);
    delta: non-zero BPTT membrane gradient du[t] (all T steps; unset: as ``signal``);
    pre_trace / post_trace: non-zero traces.
    """

    output: Rate | None = None
    psi: Rate | None = None
    signal: Rate | None = None
    delta: Rate | None = None
    pre_trace: Rate | None = None
    post_trace: Rate | None = None


DEFAULT_LAYER_ACTIVITY = {"output": 0.1, "psi": 1.0, "signal": 1.0, "pre_trace": 1.0, "post_trace": 1.0}


class ActivityRates(_Strict):
    input: Rate = 0.1
    default: LayerActivity = LayerActivity()
    layers: dict[int, LayerActivity] = {}

    @field_validator("layers", mode="before")
    @classmethod
    def _list_to_dict(cls, value):
        return per_layer_mapping(value)

    def layer(self, index: int) -> dict[str, float]:
        """Effective rates of layer ``index``: layer entry, then default, then built-in
        (``delta`` unset: the layer's ``signal``)."""
        out = dict(DEFAULT_LAYER_ACTIVITY)
        for source in (self.default, self.layers.get(index)):
            if source is not None:
                out.update({k: v for k, v in source.model_dump().items() if v is not None})
        if out.get("delta") is None:
            out["delta"] = out["signal"]
        return out


# ------------------------------------------------------------------------------ inputs


def first_error(error: ValidationError, prefix: str = "") -> str:
    """First pydantic error as ``prefix.dotted.field: message`` (one line)."""
    return format_validation_error(error, "", prefix=prefix)


def _parse_section(model, name: str, data, source: str):
    """Validate the mapping of section ``name`` as ``model``; one-line InputError."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: {name}: must be a mapping")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InputError(f"{source}: {first_error(error, name)}") from None


def parse_hardware(data, source: str) -> HardwareConfig:
    """The ``hardware:`` section (absent: the built-in design)."""
    return HardwareConfig() if data is None else _parse_section(HardwareConfig, "hardware", data, source)


def parse_activity_rates(data, source: str) -> ActivityRates | None:
    """The ``activity:`` section (absent: None, the estimate's default rates)."""
    return None if data is None else _parse_section(ActivityRates, "activity", data, source)
