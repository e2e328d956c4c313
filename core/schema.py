"""Schema plumbing shared by every config and file format: strict models, bounded
numbers, a hardened YAML reader, one-line validation errors.

The rules every user-facing schema follows:

- unknown keys are errors (a typo names the key);
- types are strict: ``true`` is not an integer, ``1.5`` is not an integer, ``"3"`` is
  not a number; integers are accepted where a real number is expected;
- floats are finite (``.inf`` and ``.nan`` are refused);
- every number has bounds (seeds, sizes, steps, samples), so nothing downstream
  allocates or shifts by an absurd amount;
- YAML files are UTF-8, at most :data:`MAX_YAML_BYTES`, nested at most
  :data:`MAX_YAML_DEPTH` deep, at most :data:`MAX_YAML_NODES` values after anchors are
  expanded, and a key may appear only once per mapping.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import InputError

#: Largest seed: numpy's and torch's seeds are 32-bit (xorshift lanes are derived from it).
MAX_SEED = 2**32 - 1
#: Largest layer (neurons) or channel count, and largest input dimension.
MAX_SIZE = 2**20
#: Largest number of time steps per sample.
MAX_STEPS = 100_000
#: Largest number of samples asked for on a command line or generated.
MAX_SAMPLES = 10_000_000

MAX_YAML_BYTES = 4 * 2**20
MAX_YAML_DEPTH = 64
MAX_YAML_NODES = 200_000

Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Size = Annotated[int, Field(gt=0, le=MAX_SIZE)]
Steps = Annotated[int, Field(gt=0, le=MAX_STEPS)]
Samples = Annotated[int, Field(gt=0, le=MAX_SAMPLES)]
#: A file or folder path: given as a YAML string, so not strict.
FilePath = Annotated[Path, Field(strict=False)]


class StrictModel(BaseModel):
    """Base of every config section and file format: see the module docstring."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _location(loc: tuple, data) -> str:
    """Dotted path of an error; the tag pydantic inserts for a discriminated union
    (``layers.0.linear.size``) is dropped when the input names it (``layers.0.size``)."""
    parts, node = [], data
    for part in loc:
        if isinstance(node, dict) and part not in node and node.get("kind") == part:
            continue
        parts.append(str(part))
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return ".".join(parts)


def format_validation_error(error: ValidationError, source: str, data=None, prefix: str = "") -> str:
    """First pydantic error as one line: ``source: prefix.dotted.field: message``.

    A validator's message that starts with a field below the error's location
    (``"layers.0: conv2d needs ..."``) extends the path; pydantic's "Value error, " is
    dropped; a type error says what it got."""
    first = error.errors()[0]
    location = ".".join(part for part in (prefix, _location(first["loc"], data)) if part)
    message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"].replace("\n", " ")
    message = message.removeprefix("Value error, ")
    if first["type"] == "union_tag_invalid":
        message = f"unknown layer kind {first['input'].get('kind')!r}" if isinstance(first.get("input"), dict) else message
    if first["type"] in ("int_type", "float_type", "bool_type", "string_type", "dict_type") and "input" in first:
        message = f"{message}, got {type(first['input']).__name__} {first['input']!r:.40}"
    if location and first["type"] == "value_error" and re.match(r"[\w.-]+: ", message):
        text = f"{location}.{message}"
    else:
        text = f"{location}: {message}" if location else message
    return f"{source}: {text}" if source else text


def validate(model: type[BaseModel], data, source: str):
    """``model.model_validate(data)`` with a failure turned into a one-line InputError."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InputError(format_validation_error(error, source, data)) from None


# ------------------------------------------------------------------------------ YAML


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and nesting deeper than MAX_YAML_DEPTH."""

    depth = 0

    def compose_node(self, parent, index):
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: let the base class say so
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _count_nodes(data, limit: int) -> int:
    """Values reachable from ``data`` with anchors expanded, counted up to ``limit`` + 1."""
    count, stack = 0, [data]
    while stack:
        item = stack.pop()
        count += 1
        if count > limit:
            break
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def parse_yaml_text(text: str, source: str):
    """Parse YAML text with the rules of the module docstring; errors name ``source``."""
    try:
        data = yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "syntax error"
        raise InputError(f"{source}:{where} not valid YAML ({problem})") from None
    except RecursionError:
        raise InputError(f"{source}: not valid YAML (nested too deep)") from None
    if _count_nodes(data, MAX_YAML_NODES) > MAX_YAML_NODES:
        raise InputError(f"{source}: more than {MAX_YAML_NODES} values (anchors expanded)")
    return data


def read_text_file(path: str | Path, what: str, max_bytes: int) -> str:
    """A UTF-8 text file of at most ``max_bytes``; a folder, a missing or unreadable file,
    a larger one, bytes that are not UTF-8 or NUL bytes are one-line InputErrors."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a {what}")
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise InputError(f"{path}: {what} is {size} bytes, larger than {max_bytes}")
        raw = path.read_bytes()
    except OSError as error:
        raise InputError(f"{path}: cannot read {what} ({error.strerror or type(error).__name__})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: {what} is not UTF-8 text (byte {error.start})") from None
    if "\x00" in text:
        raise InputError(f"{path}: {what} is binary (holds NUL bytes), expected text")
    return text


def read_yaml(path: str | Path, what: str = "file"):
    """Read and parse a YAML file; every failure is a one-line :class:`InputError`."""
    return parse_yaml_text(read_text_file(path, what, MAX_YAML_BYTES), str(Path(path)))


# ------------------------------------------------------------------------------ JSON


def _unique_keys(pairs: list) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r:.40}")
        out[key] = value
    return out


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number in JSON")


def parse_json_text(text: str, source: str):
    """Strict JSON (the file formats' reader): a key may appear once per object, NaN and
    Infinity are refused, nesting is bounded by the interpreter; one-line InputError."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        raise InputError(f"{source}: not valid JSON (line {error.lineno}: {error.msg})") from None
    except ValueError as error:  # duplicate key, NaN, an integer of thousands of digits
        raise InputError(f"{source}: not valid JSON ({' '.join(str(error).split())[:80]})") from None
    except RecursionError:
        raise InputError(f"{source}: not valid JSON (nested too deep)") from None


def read_json(path: str | Path, what: str, max_bytes: int):
    """:func:`read_text_file` then :func:`parse_json_text`."""
    return parse_json_text(read_text_file(path, what, max_bytes), str(Path(path)))
