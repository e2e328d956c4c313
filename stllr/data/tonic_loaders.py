"""N-MNIST and DVS Gesture from files you already have, read with tonic (1.7).

Nothing is downloaded. ``tonic.datasets.NMNIST`` / ``DVSGesture`` check for the
archive file and download when it is missing, so we do not instantiate them: we walk
the extracted folder ourselves (sorted, so the order is deterministic) and call
tonic's own reader (``tonic.io.read_mnist_file``; ``np.load`` for DVS Gesture, as
tonic does) and transforms (``Downsample``, ``ToFrame``). The frames are therefore
what tonic's datasets would give with the same transforms.

Binning, ``ToFrame(sensor_size, n_time_bins=T)`` (tonic's ``SliceByTimeBins``): per
sample, with t0, t1 the first and last event time in microseconds,
``w = (t1 - t0) // T`` and frame k counts events with
``t0 + k*w <= t < t0 + (k+1)*w``. So bins depend on the sample's own time span and
events at ``t >= t0 + T*w`` are dropped -- always including the last event. A
sample shorter than T microseconds gives all-zero frames. (tonic issue #264.)

Frames: uint8 (T, 2, H, W), counts clipped to 255. The channel index is tonic's
polarity value p unchanged (not remapped to the ON = 0 convention of
:mod:`stllr.data.moving_edge`), so frames match tonic-based pipelines bit for bit.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from numpy.lib import recfunctions

from stllr.data.events import EventDataset
from core.errors import InputError

__all__ = ["load_nmnist", "load_dvs_gesture", "events_to_frames"]

COUNT_MAX = 255
DVS_GESTURE_SENSOR = (128, 128, 2)  # tonic order: (W, H, P)


def _tonic():
    """Import tonic lazily: it is an optional (test) dependency."""
    try:
        import tonic.io
        import tonic.transforms
        from tonic.datasets import DVSGesture, NMNIST
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("stllr.data.tonic_loaders needs tonic: pip install tonic==1.7.0") from err
    return tonic, NMNIST, DVSGesture


def events_to_frames(events: np.ndarray, sensor_size: tuple[int, int, int], num_steps: int) -> np.ndarray:
    """tonic ``ToFrame(sensor_size, n_time_bins=T)``, clipped: uint8 (T, P, H, W).

    ``events`` is a tonic structured array with fields x, y, t (us), p; ``sensor_size``
    is tonic's (W, H, P). See the module docstring for the bin edges.
    """
    tonic, _, _ = _tonic()
    frames = tonic.transforms.ToFrame(sensor_size=sensor_size, n_time_bins=num_steps)(events)
    return np.clip(frames, 0, COUNT_MAX).astype(np.uint8)


def _find_folder(root: Path, tonic_name: str, folder: str, where: str) -> Path:
    """``root/<tonic_name>/<folder>`` (tonic's layout) or ``root/<folder>`` (bare unpack)."""
    for candidate in (root / tonic_name / folder, root / folder):
        if candidate.is_dir():
            return candidate
    raise InputError(
        f"{where}: expected extracted data at {root / tonic_name / folder} (or {root / folder}); "
        "nothing is downloaded"
    )


def _check_steps(num_steps: int, where: str) -> None:
    if num_steps <= 0:
        raise InputError(f"{where}: 'num_steps' must be > 0, got {num_steps}")


def load_nmnist(
    root: str | os.PathLike[str],
    train: bool,
    num_steps: int,
    *,
    first_saccade_only: bool = False,
    max_per_class: int | None = None,
    field: str | None = None,
) -> EventDataset:
    """N-MNIST as x uint8 (N, T, 2, 34, 34), y int64 digit, 10 classes.

    Layout read (as tonic extracts it): ``root/NMNIST/{Train,Test}/<digit>/*.bin``, or
    ``root/{Train,Test}/<digit>/*.bin``. Each ``.bin`` is N-MNIST's 40-bit records
    (x, y, polarity bit + 23-bit timestamp in us), read by ``tonic.io.read_mnist_file``.

    Args:
        root: the folder given to tonic as ``save_to`` (or holding ``Train``/``Test``).
        train: Train or Test folder.
        num_steps: T > 0 frames per sample (see the module docstring for bin edges).
        first_saccade_only: keep events with t < 100 ms, as tonic's option does.
        max_per_class: if set, the first k files (sorted by name) of each digit.
        field: optional config field name prefixed to error messages.

    Memory: N * T * 2312 bytes (60000 train samples at T = 10 is 1.4 GB).
    """
    tonic, NMNIST, _ = _tonic()
    root = Path(root)
    where = f"{field}: {root}" if field else str(root)
    _check_steps(num_steps, where)
    folder = _find_folder(root, "NMNIST", NMNIST.train_folder if train else NMNIST.test_folder, where)
    files: list[tuple[Path, int]] = []
    for digit in range(10):
        paths = sorted((folder / str(digit)).glob("*.bin"))
        files.extend((p, digit) for p in paths[:max_per_class])
    if not files:
        raise InputError(f"{where}: no .bin files under {folder}/<digit>/")
    x = np.empty((len(files), num_steps, 2, 34, 34), dtype=np.uint8)
    for i, (path, _) in enumerate(files):
        if path.stat().st_size % 5:
            raise InputError(f"{path}: size {path.stat().st_size} is not a multiple of 5 (40-bit records)")
        events = tonic.io.read_mnist_file(str(path), dtype=NMNIST.dtype)
        if first_saccade_only:
            events = events[events["t"] < 100_000]
        x[i] = events_to_frames(events, NMNIST.sensor_size, num_steps)
    y = np.array([d for _, d in files], dtype=np.int64)
    split = "train" if train else "test"
    return EventDataset(x=x, y=y, classes=tuple(NMNIST.classes), name=f"nmnist-{split}")


def load_dvs_gesture(
    root: str | os.PathLike[str],
    train: bool,
    num_steps: int,
    size: int = 32,
    *,
    field: str | None = None,
) -> EventDataset:
    """DVS Gesture (tonic's preprocessed release) as x uint8 (N, T, 2, size, size), 11 classes.

    Layout read: ``root/DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy``
    (``ibmGestureTest`` for the test split), or the same without ``DVSGesture/``. Each
    ``.npy`` is float/int (n, 4) with columns x, y, p, t in milliseconds; as tonic does,
    t is multiplied by 1000 (to us) and the rows become a structured (x, y, p, t) array.
    Coordinates are scaled 128 -> size with ``tonic.transforms.Downsample``
    (``x * size / 128``, truncated to int16), then binned with ``ToFrame``.

    Args:
        root: the folder given to tonic as ``save_to``.
        train: ibmGestureTrain or ibmGestureTest.
        num_steps: T > 0.
        size: output side in px, 1..128.
        field: optional config field name prefixed to error messages.
    """
    tonic, _, DVSGesture = _tonic()
    root = Path(root)
    where = f"{field}: {root}" if field else str(root)
    _check_steps(num_steps, where)
    if not 1 <= size <= DVS_GESTURE_SENSOR[0]:
        raise InputError(f"{where}: 'size' must be in 1..128, got {size}")
    folder = _find_folder(root, "DVSGesture", "ibmGestureTrain" if train else "ibmGestureTest", where)
    files = sorted(p for p in folder.glob("*/*.npy"))
    if not files:
        raise InputError(f"{where}: no <user>_<lighting>/<label>.npy files under {folder}")
    down = tonic.transforms.Downsample(sensor_size=DVS_GESTURE_SENSOR, target_size=(size, size))
    x = np.empty((len(files), num_steps, 2, size, size), dtype=np.uint8)
    y = np.empty(len(files), dtype=np.int64)
    for i, path in enumerate(files):
        try:
            y[i] = int(path.stem)
        except ValueError:
            raise InputError(f"{path}: file name must be '<label>.npy'") from None
        raw = np.array(np.load(path, allow_pickle=False), copy=True)
        if raw.ndim != 2 or raw.shape[1] != 4:
            raise InputError(f"{path}: events must have shape (n, 4) [x, y, p, t_ms], got {raw.shape}")
        raw[:, 3] *= 1000  # ms -> us, as tonic.datasets.DVSGesture.__getitem__ does
        events = recfunctions.unstructured_to_structured(raw, DVSGesture.dtype)
        x[i] = events_to_frames(down(events), (size, size, 2), num_steps)
    if y.min() < 0 or y.max() >= len(DVSGesture.classes):
        raise InputError(f"{where}: labels must be 0..10, found {int(y.min())}..{int(y.max())}")
    split = "train" if train else "test"
    return EventDataset(x=x, y=y, classes=tuple(DVSGesture.classes), name=f"dvs_gesture-{split}")
