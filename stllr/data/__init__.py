"""Spike/event data sets in one format: x uint8 (N, T, *features), y int64 (N,).

See ``docs/data.md``. The tonic-based loaders (N-MNIST, DVS Gesture) live in
:mod:`stllr.data.tonic_loaders` and are not imported here, so this package works
without tonic installed.
"""

from stllr.data.config import DataConfig, load_data, load_test_data
from stllr.data.digits import make_digits
from stllr.data.events import EventDataset, iterate_batches, load_npz, save_npz
from stllr.data.moving_edge import make_moving_edge
from stllr.data.shd import load_shd
from stllr.data.temporal import make_temporal

__all__ = [
    "DataConfig",
    "EventDataset",
    "iterate_batches",
    "load_data",
    "load_npz",
    "load_test_data",
    "load_shd",
    "make_digits",
    "make_moving_edge",
    "make_temporal",
    "save_npz",
]
