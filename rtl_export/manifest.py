"""The manifests of a vector set and of a parameter export, as strict pydantic models.

``rtl-export golden`` and ``params`` write their ``manifest.json`` through these models
and ``verify`` / ``sim`` read it back through the same models, so a field the writer
produces is a field the reader accepts, and nothing else is: unknown or missing keys,
``true`` for an integer, negative or absurd shapes, a format text that disagrees with
its bits, a path outside the folder, a config section that does not validate -- each
is one line naming ``manifest.json`` and the field (:func:`read_manifest`).

Every file a manifest names is opened with :func:`inside` first: the path must stay in
the folder after symlinks are resolved, be a regular file and not exceed the size its
entry implies (:func:`read_listed`), so a manifest can neither make ``verify`` read
``/etc/passwd`` nor make it allocate for a claimed 10^12 words.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, ValidationError, field_validator, model_serializer, model_validator

from core.formats import FixedFormat, OverflowPolicy, RoundingMode
from rtl_export import hexio
from rtl_export.model import RTL_MAX_BITS
from core.config import Config
from core.errors import InputError
from core.schema import MAX_SIZE, MAX_STEPS, Samples, Seed, Size, Steps, StrictModel, parse_json_text

GOLDEN_SCHEMA = "stllr-rtl-golden/2"
PARAMS_SCHEMA = "stllr-rtl-params/1"
MANIFEST = "manifest.json"
NPZ = "golden.npz"
ELEMENT_ORDER = "row-major (C order) over dims; one word per line"
PARAMS_ORDER = "row-major (C order) over dims"
HEX_RULE = "two's complement masked to the format's bits, ceil(bits/4) lowercase hex digits, one word per line"
SV_FILE = "stllr_params.sv"
C_FILE = "stllr_params.h"
#: Largest manifest.json read (a real one is a few hundred kB at most).
MAX_MANIFEST_BYTES = 16 * 2**20
#: Most words a vector set may hold, all files together (int64 in memory: 2 GiB).
MAX_SET_WORDS = 2**28
#: Most files one manifest may list.
MAX_FILES = 4096

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Count = Annotated[int, Field(ge=0, le=2**62)]
Dim = Annotated[int, Field(ge=1, le=MAX_SET_WORDS)]
Name = Annotated[str, Field(pattern=r"^[a-z][a-z_]{0,39}$")]
Text = Annotated[str, Field(max_length=400)]
LayerIndex = Annotated[int, Field(ge=0, le=MAX_SIZE)]


# ------------------------------------------------------------------------------ formats


class ParamsFormat(StrictModel):
    """A stored word's format: ``text`` must be what signed / bits / frac say."""

    text: str
    signed: bool
    bits: int
    frac: int

    @field_validator("bits")
    @classmethod
    def _width(cls, bits: int) -> int:
        if bits > RTL_MAX_BITS:
            raise ValueError(f"= {bits} is wider than the RTL supports ({RTL_MAX_BITS} bits)")
        if bits < 1:
            raise ValueError(f"= {bits} must be >= 1")
        return bits

    @model_validator(mode="after")
    def _consistent(self):
        try:
            fmt = self.fixed()
        except ValidationError as error:
            raise ValueError(error.errors()[0]["msg"].removeprefix("Value error, ")) from None
        if self.text != fmt.describe_short():
            raise ValueError(f"text = {self.text!r:.40} does not match signed/bits/frac ({fmt.describe_short()})")
        return self

    def fixed(self) -> FixedFormat:
        return FixedFormat(signed=self.signed, bits=self.bits, frac=self.frac)

    @classmethod
    def of(cls, fmt: FixedFormat) -> dict:
        return {"text": fmt.describe_short(), "signed": fmt.signed, "bits": fmt.bits, "frac": fmt.frac}


class GoldenFormat(ParamsFormat):
    rounding: RoundingMode
    overflow: OverflowPolicy

    def fixed(self) -> FixedFormat:
        return FixedFormat(signed=self.signed, bits=self.bits, frac=self.frac, rounding=self.rounding,
                           overflow=self.overflow)

    @classmethod
    def of(cls, fmt: FixedFormat) -> dict:
        return {**ParamsFormat.of(fmt), "rounding": fmt.rounding, "overflow": fmt.overflow}


def _check_shape(shape: list[int], info) -> list[int]:
    if "dims" in info.data and len(shape) != len(info.data["dims"]):
        raise ValueError(f"= {shape} has {len(shape)} dims, dims lists {len(info.data['dims'])}")
    if math.prod(shape) > MAX_SET_WORDS:
        raise ValueError(f"= {shape} holds more than {MAX_SET_WORDS} words")
    return shape


def _check_entry_words(words: int, info) -> int:
    if "shape" in info.data and words != math.prod(info.data["shape"]):
        raise ValueError(f"= {words} does not match shape {info.data['shape']} ({math.prod(info.data['shape'])} words)")
    return words


def _check_digits(digits: int, info) -> int:
    fmt = info.data.get("format")
    if fmt is not None and digits != hexio.digits(fmt.bits):
        raise ValueError(f"= {digits} does not match {fmt.bits} bits ({hexio.digits(fmt.bits)} digits)")
    return digits


class HexTensor(StrictModel):
    """What a hex file entry of either manifest must keep consistent: its shape with its
    dims, its word count with its shape, its digits with its format's bits (the fields
    are declared by the subclasses, in the order the checks read them)."""

    @field_validator("shape", check_fields=False)
    @classmethod
    def _shape(cls, shape: list[int], info) -> list[int]:
        return _check_shape(shape, info)

    @field_validator("words", check_fields=False)
    @classmethod
    def _words(cls, words: int, info) -> int:
        return _check_entry_words(words, info)

    @field_validator("digits", check_fields=False)
    @classmethod
    def _digits(cls, digits: int, info) -> int:
        return _check_digits(digits, info)


# ------------------------------------------------------------------------------ golden


class GoldenFile(HexTensor):
    """One tensor of a vector set: one hex file and one npz array."""

    path: Annotated[str, Field(pattern=r"^(layer[0-9]{1,7}/)?[a-z][a-z_]{0,39}\.hex$")]
    npz_key: Annotated[str, Field(pattern=r"^(layer[0-9]{1,7}/)?[a-z][a-z_]{0,39}$")]
    layer: LayerIndex | None
    tensor: Name
    phase: Literal["step", "window", "write", "static", "sample"]
    dims: Annotated[list[Name], Field(min_length=1, max_length=6)]
    shape: Annotated[list[Dim], Field(min_length=1, max_length=6)]
    words: Count
    format: GoldenFormat
    digits: Annotated[int, Field(ge=1, le=8)]
    order: Literal[ELEMENT_ORDER]
    meaning: Text
    sha256: Sha256

    @field_validator("npz_key")
    @classmethod
    def _key(cls, key: str, info) -> str:
        if "path" in info.data and info.data["path"] != f"{key}.hex":
            raise ValueError(f"= {key!r:.60} does not match path {info.data['path']!r:.60}")
        return key

    @field_validator("tensor")
    @classmethod
    def _tensor(cls, tensor: str, info) -> str:
        layer, key = info.data.get("layer", -1), info.data.get("npz_key")
        if layer != -1 and key is not None and key != (tensor if layer is None else f"layer{layer}/{tensor}"):
            raise ValueError(f"= {tensor!r:.40} does not match npz_key {key!r:.60} and layer {layer}")
        return tensor


class NpzInfo(StrictModel):
    path: Literal[NPZ]
    sha256: Sha256
    keys: Annotated[list[str], Field(max_length=MAX_FILES)]
    dtype: Literal["int64"]


class LayerInfo(StrictModel):
    index: LayerIndex
    name: Annotated[str, Field(pattern=r"^layer[0-9]{1,7}$")]
    kind: Literal["linear", "recurrent", "conv2d", "readout"]
    n_in: Size
    n_out: Size
    channels: Size
    positions: Size
    taps: Size
    reset: Literal["soft", "hard", "none"]
    psi: Literal["rational", "triangle", ""]
    learns: bool
    binary_input: bool


class RandomInput(StrictModel):
    source: Literal["random"]
    density: Annotated[float, Field(ge=0.0, le=1.0)]
    seed: Seed


class DataInput(StrictModel):
    source: Literal["data"]
    split: Literal["test"]
    first: Samples
    kind: Annotated[str, Field(max_length=64)]


class SourceInfo(StrictModel):
    """Where the float weights came from: train.seed init, or a checkpoint (its sha256)."""

    weights: Literal["init", "checkpoint"]
    seed: Seed
    checkpoint_sha256: Sha256 | None = None

    @model_validator(mode="after")
    def _hash_iff_checkpoint(self):
        if (self.weights == "checkpoint") != (self.checkpoint_sha256 is not None):
            raise ValueError("checkpoint_sha256 is required with weights 'checkpoint' and only then")
        return self

    @model_serializer(mode="wrap")
    def _drop_missing_hash(self, handler):
        out = handler(self)
        if out.get("checkpoint_sha256") is None:
            out.pop("checkpoint_sha256", None)
        return out


class OverflowRow(StrictModel):
    tensor: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.]{0,79}$")]
    format: Annotated[str, Field(max_length=80)]
    events: Count
    elements: Count

    @model_validator(mode="after")
    def _within(self):
        if self.events > self.elements:
            raise ValueError(f"events = {self.events} exceeds elements = {self.elements}")
        return self


class OverflowInfo(StrictModel):
    """Saturate / wrap events of the run that produced the vectors (never silent)."""

    total: Count
    tensors: Annotated[list[OverflowRow], Field(max_length=MAX_FILES)]

    @model_validator(mode="after")
    def _sum(self):
        events = sum(row.events for row in self.tensors)
        if self.total != events:
            raise ValueError(f"total = {self.total} is not the sum of the tensors' events ({events})")
        names = [row.tensor for row in self.tensors]
        if len(set(names)) != len(names):
            raise ValueError(f"tensors: {next(n for n in names if names.count(n) > 1)!r} is listed twice")
        return self

    @classmethod
    def of(cls, counter) -> dict:
        rows = [{"tensor": name, "format": fmt, "events": events, "elements": elements}
                for name, fmt, events, elements in counter.rows()]
        return {"total": counter.total_events, "tensors": rows}


class GoldenManifest(StrictModel):
    """``manifest.json`` of a vector set (docs/rtl_export.md section 3)."""

    schema_: Literal[GOLDEN_SCHEMA] = Field(alias="schema")
    kind: Literal["golden"]
    samples: Samples
    steps: Steps
    window: Steps
    window_start: Annotated[int, Field(ge=0, le=MAX_STEPS)]
    batch: Annotated[int, Field(ge=1, le=1)]  # not Literal[1]: that would take true
    update: Literal["batch", "online"]
    write_steps: Annotated[list[Annotated[int, Field(ge=0, le=MAX_STEPS)]], Field(min_length=1, max_length=MAX_STEPS)]
    etas: dict[Annotated[str, Field(pattern=r"^[0-9]{1,7}$")], Annotated[int, Field(ge=0, le=2**32)]]
    learning_signal: Literal["bp", "dfa", "sdfa"]
    bias_update: Literal["reference", "exact"]
    input: Annotated[Union[RandomInput, DataInput], Field(discriminator="source")]
    source: SourceInfo
    layers: Annotated[list[LayerInfo], Field(min_length=1, max_length=MAX_FILES)]
    element_order: Literal[ELEMENT_ORDER]
    hex: Literal[HEX_RULE]
    files: Annotated[list[GoldenFile], Field(min_length=1, max_length=MAX_FILES)]
    npz: NpzInfo
    overflow: OverflowInfo
    config: Config

    @model_validator(mode="after")
    def _consistent(self):
        if self.window > self.steps:
            raise ValueError(f"window = {self.window} exceeds steps = {self.steps}")
        if self.window_start != self.steps - self.window:
            raise ValueError(f"window_start = {self.window_start} is not steps - window = {self.steps - self.window}")
        writes = list(range(self.window_start, self.steps)) if self.update == "online" else [self.steps - 1]
        if self.write_steps != writes:
            raise ValueError(f"write_steps = {self.write_steps!s:.60} is not {writes!s:.60} ({self.update} update)")
        for n, layer in enumerate(self.layers):
            if (layer.index, layer.name) != (n, f"layer{n}"):
                raise ValueError(f"layers[{n}]: index/name = {layer.index}/{layer.name} is not {n}/layer{n}")
        if self.source.seed != self.config.train.seed:
            raise ValueError(f"source.seed = {self.source.seed} is not config.train.seed = {self.config.train.seed}")
        if isinstance(self.input, DataInput) and self.input.first != self.samples:
            raise ValueError(f"input.first = {self.input.first} is not samples = {self.samples}")
        paths = [f.path for f in self.files]
        if len(set(paths)) != len(paths):
            raise ValueError(f"files: {next(p for p in paths if paths.count(p) > 1)!r} is listed twice")
        if self.npz.keys != [f.npz_key for f in self.files]:
            raise ValueError("npz.keys is not the files' npz_key list")
        lead = {"step": self.steps, "window": self.window, "write": len(self.write_steps)}
        total = 0
        for n, entry in enumerate(self.files):
            where = f"files[{n}] ({entry.path})"
            if entry.layer is not None and entry.layer >= len(self.layers):
                raise ValueError(f"{where}.layer = {entry.layer} but there are {len(self.layers)} layers")
            if entry.phase != "static" and entry.shape[0] != self.samples:
                raise ValueError(f"{where}.shape = {entry.shape} does not start with samples = {self.samples}")
            if entry.phase in lead and (len(entry.shape) < 2 or entry.shape[1] != lead[entry.phase]):
                raise ValueError(f"{where}.shape = {entry.shape}: a {entry.phase} tensor has {lead[entry.phase]} "
                                 "in its second dim")
            total += entry.words
        if total > MAX_SET_WORDS:
            raise ValueError(f"files: {total} words in all, more than {MAX_SET_WORDS}")
        return self


# ------------------------------------------------------------------------------ params


class ParamsMemory(HexTensor):
    """A ``$readmemh`` memory of a parameter export (weights, lanes, Psi table, feedback)."""

    path: Annotated[str, Field(pattern=r"^layer[0-9]{1,7}_[a-z][a-z_]{0,39}\.hex$")]
    layer: LayerIndex
    tensor: Literal["weight", "rec_weight", "bias", "weight_lanes", "rec_weight_lanes", "bias_lanes", "psi_lut",
                    "feedback"]
    dims: Annotated[list[Name], Field(min_length=1, max_length=4)]
    shape: Annotated[list[Dim], Field(min_length=1, max_length=4)]
    words: Count
    format: ParamsFormat
    digits: Annotated[int, Field(ge=1, le=8)]
    order: Literal[PARAMS_ORDER]
    sha256: Sha256

    @field_validator("tensor")
    @classmethod
    def _tensor(cls, tensor: str, info) -> str:
        if "path" in info.data and "layer" in info.data \
                and info.data["path"] != f"layer{info.data['layer']}_{tensor}.hex":
            raise ValueError(f"= {tensor!r} does not match path {info.data['path']!r} and layer {info.data['layer']}")
        return tensor


class ParamsText(StrictModel):
    path: Literal[SV_FILE, C_FILE]
    sha256: Sha256


def _params_file_kind(value: Any) -> str:
    # called with the JSON mapping when reading and with the model when writing
    path = value.get("path") if isinstance(value, dict) else getattr(value, "path", None)
    return "text" if path in (SV_FILE, C_FILE) else "memory"


ParamsFile = Annotated[Union[Annotated[ParamsMemory, Tag("memory")], Annotated[ParamsText, Tag("text")]],
                       Discriminator(_params_file_kind)]


class ParamsManifest(StrictModel):
    """``manifest.json`` of a parameter export."""

    schema_: Literal[PARAMS_SCHEMA] = Field(alias="schema")
    kind: Literal["params"]
    steps: Steps
    window: Steps
    source: SourceInfo
    files: Annotated[list[ParamsFile], Field(min_length=2, max_length=MAX_FILES)]
    config: Config

    @model_validator(mode="after")
    def _consistent(self):
        if self.window > self.steps:
            raise ValueError(f"window = {self.window} exceeds steps = {self.steps}")
        if self.source.seed != self.config.train.seed:
            raise ValueError(f"source.seed = {self.source.seed} is not config.train.seed = {self.config.train.seed}")
        paths = [f.path for f in self.files]
        if len(set(paths)) != len(paths):
            raise ValueError(f"files: {next(p for p in paths if paths.count(p) > 1)!r} is listed twice")
        for name in (SV_FILE, C_FILE):
            if name not in paths:
                raise ValueError(f"files: {name} is not listed")
        if sum(f.words for f in self.files if isinstance(f, ParamsMemory)) > MAX_SET_WORDS:
            raise ValueError(f"files: more than {MAX_SET_WORDS} words in all")
        return self

    def memory(self, path: str) -> ParamsMemory | None:
        return next((f for f in self.files if isinstance(f, ParamsMemory) and f.path == path), None)


# ------------------------------------------------------------------------------ reading


_TAGS = {"memory", "text", "random", "data"}


def _location(loc: tuple, data: Any) -> str:
    """``files[2] (layer0/u.hex).format.bits`` from pydantic's ``('files', 2, 'format', 'bits')``."""
    out, node, parent = "", data, None
    for part in loc:
        if isinstance(part, str) and part in _TAGS and (isinstance(parent, int) or parent == "input"):
            parent = part
            continue  # a union tag, not a key
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("path"), str):
                out += f" ({node['path']:.80})"
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
        parent = part
    return out


def describe_error(error: ValidationError, data: Any, source: str) -> str:
    """First pydantic error as one line: ``SOURCE: field: message[, got VALUE]``."""
    first = error.errors(include_url=False)[0]
    where = _location(tuple(first["loc"]), data)
    kind, message = first["type"], first["msg"].replace("\n", " ")
    if kind == "extra_forbidden":
        return f"{source}: {where}: unknown key"
    if kind == "missing":
        return f"{source}: {where}: missing"
    if kind in ("value_error", "assertion_error"):
        message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if not where:
            return f"{source}: {message}"
        return f"{source}: {where} {message}" if message.startswith("= ") else f"{source}: {where}: {message}"
    if kind == "string_pattern_mismatch" and first["loc"] and first["loc"][-1] in ("path", "npz_key"):
        message = "must name a file inside the folder, as the exporter does (e.g. layer0/u.hex)"
    value = first.get("input")
    got = ""
    if isinstance(value, (bool, int, float, str)) or value is None:
        got = f", got {type(value).__name__} {value!r:.40}"
    elif isinstance(value, (list, dict)):
        got = f", got {type(value).__name__}"
    return f"{source}: {where}: {message}{got}" if where else f"{source}: {message}{got}"


def inside(root: Path, rel: str, where: str) -> Path:
    """``root / rel`` if it stays inside ``root`` once symlinks are resolved; else InputError."""
    root = Path(root)
    path = root / rel
    try:
        real_root, real = root.resolve(), path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise InputError(f"{where} = {rel!r:.80}: cannot resolve the path (symlink loop?)") from None
    if real != real_root and real_root not in real.parents:
        raise InputError(f"{where} = {rel!r:.80} resolves outside {root} (symlink?): refused")
    return path


def read_listed(path: Path, max_bytes: int, what: str = "file listed in the manifest") -> bytes:
    """Bytes of a regular file (after :func:`inside`), at most ``max_bytes``; InputError naming it."""
    if not path.is_file():
        raise InputError(f"{path}: {what} is missing" if not path.exists() else f"{path}: {what} is not a regular file")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise InputError(f"{path}: {size} bytes, more than the {max_bytes} expected")
        return path.read_bytes()
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror or type(error).__name__})") from None


def read_manifest(root: Path, model: type[StrictModel], schema: str, what: str):
    """Read ``root/manifest.json`` and validate it as ``model``; InputError names the field."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory")
    path = inside(root, MANIFEST, f"{root}: {MANIFEST}")
    if not path.exists():
        raise InputError(f"{path}: {what} not found")
    payload = read_listed(path, MAX_MANIFEST_BYTES, what)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 (byte {error.start})") from None
    data = parse_json_text(text, str(path))
    if not isinstance(data, dict):
        raise InputError(f"{path}: top level must be an object")
    if data.get("schema") != schema:
        older = re.fullmatch(re.escape(schema.rsplit("/", 1)[0]) + r"/[0-9]+", str(data.get("schema", "")))
        raise InputError(f"{path}: schema = {data.get('schema')!r:.60}, expected {schema!r}"
                         + (" (written by another rtl-export version: export it again)" if older else ""))
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InputError(describe_error(error, data, str(path))) from None


def dump(model: type[StrictModel], data: dict, where: str) -> bytes:
    """``data`` validated as ``model`` (what the reader will accept), as manifest.json bytes."""
    try:
        manifest = model.model_validate(data)
    except ValidationError as error:
        raise InputError(describe_error(error, data, where)) from None
    return (json.dumps(manifest.model_dump(mode="json", by_alias=True), indent=1) + "\n").encode()
