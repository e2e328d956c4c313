"""Spiking Heidelberg Digits (SHD) from its ``.h5`` files, binned into T steps.

The SHD layout (Cramer et al., 2020, https://zenkelab.org/resources/spiking-heidelberg-datasets-shd/):

    spikes/times   vlen float (N,)  spike times per sample in seconds (float16 in the release)
    spikes/units   vlen uint16 (N,) channel of each spike, 0..699
    labels         uint16 (N,)      class 0..19
    extra/keys     bytes (20,)      optional class names, e.g. b'english-zero'

No download happens here: pass the path of ``shd_train.h5`` / ``shd_test.h5``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import os
from pathlib import Path

import numpy as np

from stllr.data.events import MAX_ARRAY_BYTES, EventDataset
from core.errors import InputError

if TYPE_CHECKING:
    import h5py

__all__ = ["load_shd", "bin_spikes", "SHD_NUM_CLASSES", "SHD_NUM_CHANNELS"]

SHD_NUM_CLASSES = 20
SHD_NUM_CHANNELS = 700
COUNT_MAX = 255  # uint8 ceiling for counts per bin per channel


def bin_spikes(
    times: np.ndarray, units: np.ndarray, num_steps: int, duration_s: float, num_out: int,
    downsample: int,
) -> np.ndarray:
    """Count spikes per (step, channel): uint8 (T, num_out), saturating at 255.

    Step of a spike at time t (seconds): ``floor(t * T / duration_s)`` in float64, so
    bins are [k*duration/T, (k+1)*duration/T); spikes at t >= duration_s are dropped.
    Channel: ``unit // downsample``.
    """
    t = np.asarray(times, dtype=np.float64)
    keep = t < duration_s
    step = np.floor(t[keep] * num_steps / duration_s).astype(np.int64)
    # Rounding at the top edge can give T for t just below duration_s; that spike
    # belongs in the last bin, not outside the tensor.
    np.minimum(step, num_steps - 1, out=step)
    chan = np.asarray(units, dtype=np.int64)[keep] // downsample
    counts = np.bincount(step * num_out + chan, minlength=num_steps * num_out)
    return np.minimum(counts, COUNT_MAX).astype(np.uint8).reshape(num_steps, num_out)


def _dataset(f: h5py.File, key: str, where: str) -> h5py.Dataset:
    import h5py

    obj = f.get(key)
    if not isinstance(obj, h5py.Dataset):
        raise InputError(f"{where}: missing dataset '{key}' (SHD layout: spikes/times, spikes/units, labels)")
    return obj


def load_shd(
    path: str | os.PathLike[str],
    num_steps: int,
    duration_s: float = 1.0,
    num_channels: int = SHD_NUM_CHANNELS,
    downsample: int = 1,
    *,
    field: str | None = None,
) -> EventDataset:
    """Load an SHD ``.h5`` file as x uint8 (N, T, ceil(num_channels / downsample)).

    Args:
        path: the ``.h5`` file.
        num_steps: T > 0 equal bins over [0, duration_s).
        duration_s: binned window in seconds, > 0; later spikes are dropped.
        num_channels: input channels; a unit >= num_channels is an error.
        downsample: integer factor >= 1; channel c maps to ``c // downsample``
            (neighbouring cochlea channels are summed).
        field: optional config field name prefixed to error messages.

    Returns:
        EventDataset with y int64 labels and 20 class names (``extra/keys`` decoded
        from bytes when present, else '0'..'19').
    """
    path = Path(path)
    where = f"{field}: {path}" if field else str(path)
    for name, value, ok in (
        ("num_steps", num_steps, num_steps > 0),
        ("duration_s", duration_s, duration_s > 0),
        ("num_channels", num_channels, num_channels > 0),
        ("downsample", downsample, downsample >= 1),
    ):
        if not ok:
            raise InputError(f"{where}: '{name}' must be positive, got {value}")
    if not path.is_file():
        raise InputError(f"{where}: file not found")
    try:
        import h5py  # lazy: only SHD needs it

        f = h5py.File(path, "r")
    except OSError as err:
        raise InputError(f"{where}: not an HDF5 file ({str(err).splitlines()[0]})") from None
    with f:
        times_ds = _dataset(f, "spikes/times", where)
        units_ds = _dataset(f, "spikes/units", where)
        labels_ds = _dataset(f, "labels", where)
        # Reading whole vlen datasets at once is far faster than per-sample access.
        all_times = times_ds[()]
        all_units = units_ds[()]
        labels = np.asarray(labels_ds[()])
        keys = f["extra/keys"][()] if isinstance(f.get("extra/keys"), h5py.Dataset) else None

    n = labels.shape[0] if labels.ndim == 1 else -1
    if labels.ndim != 1 or len(all_times) != n or len(all_units) != n:
        raise InputError(
            f"{where}: 'labels', 'spikes/times', 'spikes/units' must be 1-D of equal length, "
            f"got {labels.shape}, {len(all_times)}, {len(all_units)}"
        )
    if n == 0:
        raise InputError(f"{where}: 'labels' is empty")
    if labels.dtype.kind not in "iu":
        raise InputError(f"{where}: 'labels' must be integers, got {labels.dtype}")
    num_out = -(-num_channels // downsample)  # ceil division
    if n * num_steps * num_out > MAX_ARRAY_BYTES:
        raise InputError(f"{where}: {n} samples x {num_steps} steps x {num_out} channels is more than "
                         f"{MAX_ARRAY_BYTES} bytes")
    if keys is not None:
        classes = tuple(k.decode("utf-8") if isinstance(k, bytes) else str(k) for k in keys.tolist())
    else:
        classes = tuple(str(k) for k in range(SHD_NUM_CLASSES))
    if labels.min() < 0 or labels.max() >= len(classes):
        raise InputError(
            f"{where}: 'labels' must be in 0..{len(classes) - 1}, got {int(labels.min())}..{int(labels.max())}"
        )

    x = np.empty((n, num_steps, num_out), dtype=np.uint8)
    for i in range(n):
        t, u = np.asarray(all_times[i]), np.asarray(all_units[i])
        if t.dtype.kind not in "fiu" or u.dtype.kind not in "iu":
            raise InputError(f"{where}: sample {i}: 'spikes/times' must be numbers and 'spikes/units' integers, "
                             f"got {t.dtype} and {u.dtype}")
        if t.shape != u.shape:
            raise InputError(
                f"{where}: sample {i}: 'spikes/times' has {t.size} entries, 'spikes/units' {u.size}"
            )
        if u.size and int(u.max()) >= num_channels:
            raise InputError(
                f"{where}: sample {i}: 'spikes/units' has unit {int(u.max())} >= num_channels={num_channels}"
            )
        if u.size and int(u.min()) < 0:
            raise InputError(f"{where}: sample {i}: 'spikes/units' has negative unit {int(u.min())}")
        if t.size and (not np.all(np.isfinite(t)) or float(t.min()) < 0):
            raise InputError(f"{where}: sample {i}: 'spikes/times' must be finite and >= 0")
        x[i] = bin_spikes(t, u, num_steps, duration_s, num_out, downsample)
    return EventDataset(x=x, y=labels.astype(np.int64), classes=classes, name=path.stem)
