"""Bit-exact file I/O for exported vectors: ``$readmemh`` hex, deterministic ``.npz``, sha256.

Hex files (what ``$readmemh`` reads)
------------------------------------
One word per line, ``\\n`` after every word (the last one too), lowercase, exactly
``digits(bits) = ceil(bits / 4)`` hex digits, no ``@address`` lines, no comments. A word
is the value's two's complement masked to ``bits`` (unsigned formats: the value itself)::

    s8.x   -3 -> fd        s12.x  -3 -> ffd        u1.0  1 -> 1        u32.0 -> 8 digits

The writer range-checks every value against its format first: a value that does not
fit is an error naming the file and the element (``$readmemh`` would cut it silently).
The reader checks the word count (a short file is "truncated": Icarus would read X and
Verilator 0 for the missing words, silently), the line length, the hex characters and
that the top digit holds no bits above ``bits`` (odd widths).

``.npz`` archives are written without timestamps (zip entries dated 1980-01-01, stored,
keys in the given order) so the same arrays give the same bytes in every run.

>>> from core.formats import FixedFormat
>>> encode_hex([-3, 5], FixedFormat.parse("s8.4"), "w.hex")
b'fd\\n05\\n'
>>> decode_hex(b'fd\\n05\\n', FixedFormat.parse("s8.4"), 2, "w.hex").tolist()
[-3, 5]
"""

from __future__ import annotations

import hashlib
import io
import zipfile

import numpy as np

from core.formats import FixedFormat
from core.errors import InputError

_HEX_CHARS = np.frombuffer(b"0123456789abcdef", np.uint8)
_NIBBLE = np.full(256, -1, np.int64)  # byte -> nibble value, -1 = not a hex digit
for _i, _c in enumerate(b"0123456789abcdef"):
    _NIBBLE[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _NIBBLE[_c] = 10 + _i
NEWLINE = ord("\n")
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def digits(bits: int) -> int:
    """Hex digits per word: ``ceil(bits / 4)``."""
    return (int(bits) + 3) // 4


def sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def check_range(values: np.ndarray, fmt: FixedFormat, where: str) -> np.ndarray:
    """int64 copy of ``values``; ValueError naming ``where`` and the element if one does not fit."""
    v = np.asarray(values)
    if v.dtype == np.bool_ or not np.issubdtype(v.dtype, np.integer):
        raise ValueError(f"{where}: values must be integers, got dtype {v.dtype}")
    if v.dtype == np.uint64 and v.size and int(v.max()) >= 1 << 63:
        raise ValueError(f"{where}: values above the int64 range")
    v = v.astype(np.int64)
    bad = (v < fmt.min_int) | (v > fmt.max_int)
    if bad.any():
        first = np.unravel_index(int(np.flatnonzero(bad)[0]), v.shape)
        index = tuple(int(i) for i in first)
        raise ValueError(f"{where}: value {int(v[first])} at index {index} does not fit "
                         f"{fmt.describe_short()} (range {fmt.min_int} .. {fmt.max_int}); "
                         "a wider value would be cut silently by $readmemh")
    return v


def encode_hex(values, fmt: FixedFormat, where: str) -> bytes:
    """Range-checked ``$readmemh`` text of ``values`` (flattened in C order) in ``fmt``."""
    v = check_range(values, fmt, where).reshape(-1)
    d = digits(fmt.bits)
    words = (v & np.int64((1 << fmt.bits) - 1)).astype(np.uint64)
    shifts = np.uint64(4) * np.arange(d - 1, -1, -1, dtype=np.uint64)
    nibbles = (words[:, None] >> shifts[None, :]) & np.uint64(15)
    out = np.empty((v.size, d + 1), np.uint8)
    out[:, :d] = _HEX_CHARS[nibbles.astype(np.int64)]
    out[:, d] = NEWLINE
    return out.tobytes()


def decode_hex(payload: bytes, fmt: FixedFormat, count: int, where: str) -> np.ndarray:
    """Parse ``count`` words written by :func:`encode_hex`; InputError naming ``where``.

    Returns int64 values (sign-extended for signed formats). Upper-case digits are read
    too; anything else (blank lines, comments, ``@`` addresses, short or long words) is an
    error, since the vectors are only ever written by :func:`encode_hex`.
    """
    d = digits(fmt.bits)
    lines = payload.count(b"\n")
    if payload and not payload.endswith(b"\n"):
        lines += 1
    if lines < count:
        raise InputError(f"{where}: truncated: {lines} words, expected {count}")
    if lines > count:
        raise InputError(f"{where}: {lines} words, expected {count}")
    if len(payload) != count * (d + 1) or (count and not payload.endswith(b"\n")):
        lengths = [len(line) for line in payload.split(b"\n")[:count]]
        first = next((i for i, n in enumerate(lengths) if n != d), len(lengths) - 1)
        raise InputError(f"{where}: line {first + 1}: expected {d} hex digits per word "
                         f"({fmt.describe_short()}), got {lengths[first] if lengths else 0}")
    raw = np.frombuffer(payload, np.uint8).reshape(count, d + 1)
    if count and not (raw[:, d] == NEWLINE).all():
        first = int(np.flatnonzero(raw[:, d] != NEWLINE)[0])
        raise InputError(f"{where}: line {first + 1}: expected {d} hex digits per word")
    nib = _NIBBLE[raw[:, :d]]
    if (nib < 0).any():
        first = int(np.flatnonzero((nib < 0).any(axis=1))[0])
        text = raw[first, :d].tobytes().decode("latin-1")
        raise InputError(f"{where}: line {first + 1}: {text!r} is not a hex word")
    words = np.zeros(count, np.int64)
    for k in range(d):
        words = (words << np.int64(4)) | nib[:, k]
    if fmt.bits < 4 * d:
        wide = words >> np.int64(fmt.bits)
        if wide.any():
            first = int(np.flatnonzero(wide)[0])
            raise InputError(f"{where}: line {first + 1}: word {raw[first, :d].tobytes().decode()!r} is wider "
                             f"than {fmt.bits} bits ({fmt.describe_short()})")
    if fmt.signed:
        top = np.int64(1) << np.int64(fmt.bits - 1)
        words = np.where(words >= top, words - (top << np.int64(1)), words)
    return words


def encode_npz(arrays: dict[str, np.ndarray]) -> bytes:
    """A ``.npz`` (readable by ``numpy.load``) with fixed zip metadata: same arrays, same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.create_system = 3  # unix, whatever the host
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(value), allow_pickle=False)
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def decode_npz(payload: bytes, where: str, shapes: dict[str, tuple[int, ...]] | None = None
               ) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz``; InputError naming ``where`` for a torn or foreign file.

    With ``shapes`` (key -> shape), the archive must hold exactly those keys as int64
    arrays of those shapes, checked from each ``.npy`` header before any array is read,
    so a header that claims 10^12 elements allocates nothing."""
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            names = archive.namelist()
            if shapes is not None:
                keys = [name.removesuffix(".npy") for name in names]
                if len(set(keys)) != len(keys) or sorted(keys) != sorted(shapes) \
                        or not all(name.endswith(".npy") for name in names):
                    odd = sorted(set(keys) ^ set(shapes)) or keys
                    raise InputError(f"{where}: array set differs from the hex files ('{odd[0]:.60}')")
                for name in names:
                    with archive.open(name) as member:
                        version = np.lib.format.read_magic(member)
                        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                       else np.lib.format.read_array_header_2_0)
                        shape, _, dtype = read_header(member)
                    key = name.removesuffix(".npy")
                    if tuple(shape) != tuple(shapes[key]) or dtype != np.dtype(np.int64):
                        raise InputError(f"{where}: array '{key}' is {dtype} {list(shape)}, the hex file holds int64 "
                                         f"{list(shapes[key])}")
        with np.load(io.BytesIO(payload), allow_pickle=False) as loaded:
            return {key: loaded[key] for key in loaded.files}
    except InputError:
        raise
    except Exception as error:  # a torn or foreign file: one line naming it
        raise InputError(f"{where}: not a readable .npz ({type(error).__name__})") from None
