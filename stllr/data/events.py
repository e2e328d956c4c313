"""The generic event-tensor format every data source in this package produces.

On disk a data set is one ``.npz`` archive (``numpy.savez``, compressed or not) with

    x        uint8  (N, T, *features)  spike counts per step (0/1 for binary spikes)
    y        int    (N,)               class index per sample, 0 <= y < num_classes (any integer
                                       dtype on disk; int64 in memory)
    classes  str    (C,)               optional class names; class k is ``classes[k]``

and no other keys. ``T`` is the number of time steps; ``features`` is at least one
dimension (``(64,)`` for rate-coded digits, ``(2, H, W)`` for event cameras with channel
0 = ON and 1 = OFF polarity, ``(700,)`` for SHD channels).

In memory the same data is an :class:`EventDataset`. Bad input raises
:class:`core.errors.InputError` with a one-line message naming the file and the field.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.atomic import atomic_path
from core.errors import InputError

__all__ = ["EventDataset", "load_npz", "save_npz", "iterate_batches"]

#: The only keys an event ``.npz`` may hold; anything else is likely a different format.
NPZ_KEYS = frozenset({"x", "y", "classes"})
#: Largest array read from an ``.npz`` member, checked from its header before allocation.
MAX_ARRAY_BYTES = 2**32
#: Largest class index (labels name at most this many classes).
MAX_LABEL = 2**20 - 1


def check_npz_member(archive: zipfile.ZipFile, name: str, where: str, max_bytes: int = MAX_ARRAY_BYTES) -> None:
    """Read only the ``.npy`` header of member ``name`` and refuse an array larger than
    ``max_bytes``, so a header that claims 10^12 elements costs nothing."""
    try:
        with archive.open(name) as member:
            version = np.lib.format.read_magic(member)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(member)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{where}: cannot read '{name.removesuffix('.npy')}': {msg}") from None
    count = 1
    for dim in shape:
        count *= int(dim)
    if count * dtype.itemsize > max_bytes:
        raise InputError(f"{where}: '{name.removesuffix('.npy')}' claims shape {list(shape)} ({dtype}), "
                         f"more than {max_bytes} bytes")


def _validate(x: object, y: object, classes: Sequence[str], where: str) -> None:
    """Check the format rules; raise InputError ``"<where>: '<field>' ..."`` on the first break."""
    if not isinstance(x, np.ndarray):
        raise InputError(f"{where}: 'x' must be a numpy array, got {type(x).__name__}")
    if not isinstance(y, np.ndarray):
        raise InputError(f"{where}: 'y' must be a numpy array, got {type(y).__name__}")
    if x.dtype != np.uint8:
        raise InputError(f"{where}: 'x' must be uint8, got {x.dtype}")
    if y.dtype != np.int64:
        raise InputError(f"{where}: 'y' must be int64 in memory, got {y.dtype}")
    if x.ndim < 3:
        raise InputError(
            f"{where}: 'x' must have shape (N, T, *features) with >= 3 dims, got shape {x.shape}"
        )
    if y.ndim != 1:
        raise InputError(f"{where}: 'y' must have shape (N,), got shape {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise InputError(
            f"{where}: 'x' has {x.shape[0]} samples but 'y' has {y.shape[0]} (N must match)"
        )
    if x.size == 0:
        raise InputError(f"{where}: 'x' is empty (shape {x.shape}); need N, T and features > 0")
    if y.min() < 0:
        raise InputError(f"{where}: 'y' has negative label {int(y.min())}")
    if y.max() > MAX_LABEL:
        raise InputError(f"{where}: 'y' has label {int(y.max())}, more than {MAX_LABEL}")
    if classes and y.max() >= len(classes):
        raise InputError(
            f"{where}: 'y' has label {int(y.max())} but 'classes' names only {len(classes)}"
        )


@dataclass(frozen=True)
class EventDataset:
    """A validated set of spike/event tensors with labels.

    Attributes:
        x: uint8 (N, T, *features), spike counts per time step (treat as read-only).
        y: int64 (N,), class index of each sample.
        classes: class names, ``classes[k]`` names label k; may be empty (then the
            number of classes is ``max(y) + 1``).
        name: a short human-readable name (e.g. ``"digits-train"``); used in messages.
    """

    x: np.ndarray  # uint8 (N, T, *features)
    y: np.ndarray  # int64 (N,)
    classes: tuple[str, ...] = ()  # class names; () when the source has none
    name: str = "dataset"  # used in error messages and reports

    def __post_init__(self) -> None:
        # Accept any sequence of names but store a tuple so the object stays hashable-ish
        # and truly immutable at the field level.
        classes = tuple(str(c) for c in self.classes)
        object.__setattr__(self, "classes", classes)
        _validate(self.x, self.y, classes, f"EventDataset {self.name!r}")

    @property
    def num_samples(self) -> int:
        """N, the number of samples."""
        return int(self.x.shape[0])

    @property
    def num_steps(self) -> int:
        """T, the number of time steps per sample."""
        return int(self.x.shape[1])

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Shape of one time step of one sample, ``x.shape[2:]``."""
        return tuple(int(d) for d in self.x.shape[2:])

    @property
    def num_classes(self) -> int:
        """``len(classes)`` when names are given, else ``max(y) + 1``."""
        return len(self.classes) if self.classes else int(self.y.max()) + 1


def load_npz(path: str | os.PathLike[str], *, field: str | None = None) -> EventDataset:
    """Read and validate an event ``.npz`` (see the module docstring for the format).

    Args:
        path: the ``.npz`` file.
        field: optional config field the path came from (e.g. ``"data.train"``); it
            prefixes every error message so the user knows which setting to fix.

    Returns:
        An :class:`EventDataset` named after the file stem.

    Raises:
        InputError: missing file, not an npz, missing/unknown keys, wrong dtype or
            shape, mismatched N, bad labels, empty data.
    """
    path = Path(path)
    where = f"{field}: {path}" if field else str(path)
    if not path.is_file():
        raise InputError(f"{where}: file not found")
    # np.load would happily return a plain array for .npy or try to unpickle other
    # files; checking for a zip first gives one clear message for every non-npz file.
    if not zipfile.is_zipfile(path):
        raise InputError(f"{where}: not an .npz archive (expected keys x, y[, classes])")
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            for key in ("x", "y"):
                if key not in keys:
                    raise InputError(f"{where}: missing key '{key}' (found {sorted(keys)})")
            extra = sorted(keys - NPZ_KEYS)
            if extra:
                raise InputError(
                    f"{where}: unknown key(s) {extra}; only 'x', 'y', 'classes' are allowed"
                )
            for key in sorted(keys):
                check_npz_member(archive.zip, f"{key}.npy", where)
                try:
                    arrays[key] = archive[key]
                except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
                    # Object arrays (pickles) and corrupt members land here.
                    msg = str(err).splitlines()[0] if str(err) else type(err).__name__
                    raise InputError(f"{where}: cannot read '{key}': {msg}") from None
                # NpzFile hands back raw bytes for a member without the .npy header.
                if not isinstance(arrays[key], np.ndarray):
                    raise InputError(f"{where}: cannot read '{key}': member is not a .npy array")
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{where}: cannot read archive: {msg}") from None
    x, y, raw_classes = arrays["x"], arrays["y"], arrays.get("classes")
    # Labels may be stored in any integer dtype (int32 from MATLAB, uint8 from a small
    # set); they are checked for range by _validate and held as int64.
    if y.dtype.kind in "iu" and y.dtype != np.int64:
        if y.size and (int(y.min()) < 0 or int(y.max()) > MAX_LABEL):
            raise InputError(f"{where}: 'y' has label {int(y.min()) if y.min() < 0 else int(y.max())} "
                             f"outside 0..{MAX_LABEL}")
        y = y.astype(np.int64)
    elif y.dtype != np.int64:
        raise InputError(f"{where}: 'y' must be an integer array, got {y.dtype}")

    classes: tuple[str, ...] = ()
    if raw_classes is not None:
        if raw_classes.ndim != 1 or raw_classes.dtype.kind not in "US":
            raise InputError(
                f"{where}: 'classes' must be a 1-D str array, got dtype {raw_classes.dtype} "
                f"shape {raw_classes.shape}"
            )
        if raw_classes.size == 0:
            raise InputError(f"{where}: 'classes' is empty; omit the key instead")
        try:
            classes = tuple(
                c.decode("utf-8") if isinstance(c, bytes) else str(c) for c in raw_classes.tolist()
            )
        except UnicodeDecodeError:
            raise InputError(f"{where}: 'classes' holds bytes that are not UTF-8") from None
    _validate(x, y, classes, where)
    return EventDataset(x=x, y=y, classes=classes, name=path.stem)


def save_npz(path: str | os.PathLike[str], ds: EventDataset) -> None:
    """Write ``ds`` as a compressed event ``.npz`` at exactly ``path``, atomically.

    The data goes to a temporary file in the same directory, which then replaces
    ``path`` with ``os.replace``: readers see the old file or the new one, never a
    partial write. ``ds.name`` is not stored (``load_npz`` names a data set after the
    file stem). Compression matters: spike tensors are mostly zeros.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {"x": ds.x, "y": ds.y}
    if ds.classes:
        arrays["classes"] = np.array(ds.classes, dtype=np.str_)
    # A file object, not a name: np.savez would append ".npz" to the temp file's name.
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def generated_pair(seed: int, make_split, name: str) -> tuple[EventDataset, EventDataset]:
    """(train, test) of a generated task: two independent streams spawned from ``seed``;
    ``make_split(rng, split_name)`` builds one split."""
    ss_train, ss_test = np.random.SeedSequence(seed).spawn(2)
    return (make_split(np.random.default_rng(ss_train), f"{name}-train"),
            make_split(np.random.default_rng(ss_test), f"{name}-test"))


def epoch_permutation(num_samples: int, seed: int, epoch: int) -> np.ndarray:
    """The sample order of one epoch: ``default_rng([seed, epoch]).permutation(N)``.

    Seeding with the pair (not a stream advanced epoch after epoch) is what makes a run
    resumed at epoch e see the same batches as an uninterrupted one.
    """
    return np.random.default_rng([seed, epoch]).permutation(num_samples)


def iterate_batches(
    ds: EventDataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    epoch: int,
    *,
    drop_last: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(x_batch, y_batch)`` for one epoch, deterministically.

    Args:
        ds: the data set.
        batch_size: B > 0; the last batch is smaller unless ``drop_last``.
        shuffle: if True the order is :func:`epoch_permutation` ``(N, seed, epoch)``,
            else samples come in stored order (seed and epoch are then unused).
        seed, epoch: non-negative ints selecting the permutation.
        drop_last: skip a final batch smaller than ``batch_size``.

    Yields:
        x_batch uint8 (B, T, *features) and y_batch int64 (B,), fresh copies.
    """
    if batch_size <= 0:
        raise InputError(f"iterate_batches: 'batch_size' must be > 0, got {batch_size}")
    if seed < 0 or epoch < 0:
        raise InputError(f"iterate_batches: 'seed' and 'epoch' must be >= 0, got {seed}, {epoch}")
    n = ds.num_samples
    order = epoch_permutation(n, seed, epoch) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        yield ds.x[idx], ds.y[idx]
