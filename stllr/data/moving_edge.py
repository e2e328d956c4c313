"""A generated event-camera task whose label lives only in the temporal order of events.

A bar (2 or 3 px wide, spanning the frame) moves 1 px per step on a torus in one of
four directions. Its start position is uniform and it wraps around, so where it ends
says nothing about the class; each sample is a bright bar on a dark background or a
dark bar on a bright one, with equal probability, so the polarity of the leading edge
says nothing either. Events are brightness changes between consecutive frames, as a
DVS sees them.

Why the sum over time cannot classify: a bright bar moving left from column p and a
dark bar moving right from column p - T + 1 produce the same event frames in reverse
time order (see :func:`render_bar_events`), so their time-summed counts are equal.
The sums still tell the axis (vertical bar for left/right, horizontal for up/down),
so a static classifier is capped near 50 %; the rest needs temporal order.
"""

from __future__ import annotations

import numpy as np

from stllr.data.events import EventDataset, generated_pair
from core.errors import InputError

__all__ = ["CLASSES", "make_moving_edge", "render_bar_events"]

CLASSES: tuple[str, ...] = ("left", "right", "up", "down")
# Per class: (axis the bar moves along, step). Axis "x" = columns (last dim, a vertical
# bar), "y" = rows (a horizontal bar); image coordinates, so "up" decreases the row.
_MOTION: dict[str, tuple[str, int]] = {
    "left": ("x", -1),
    "right": ("x", +1),
    "up": ("y", -1),
    "down": ("y", +1),
}
ON, OFF = 0, 1  # channel index of each polarity in x[:, t]
MIN_WIDTH, MAX_WIDTH = 2, 3  # bar width in px, inclusive


def _edge_events_1d(
    start: np.ndarray, step: np.ndarray, width: np.ndarray, bright: np.ndarray,
    num_steps: int, size: int,
) -> np.ndarray:
    """Events along the moving axis for a batch of bars.

    Args:
        start, step, width: int (N,), bar start position, -1/+1 px per step, width px.
        bright: bool (N,), True for a bright bar on dark, False for dark on bright.

    Returns:
        uint8 (N, T, 2, size): ON/OFF events per position; all zero at t = 0.
    """
    t = np.arange(num_steps)
    pos = start[:, None] + step[:, None] * t[None, :]  # (N, T) lowest-index edge of the bar
    offs = (np.arange(size)[None, None, :] - pos[:, :, None]) % size  # (N, T, S)
    on_bar = offs < width[:, None, None]
    level = np.where(bright[:, None, None], on_bar, ~on_bar).astype(np.int8)
    diff = np.zeros_like(level)
    diff[:, 1:] = level[:, 1:] - level[:, :-1]  # t = 0 has no previous frame
    ev = np.empty((start.size, num_steps, 2, size), dtype=np.uint8)
    ev[:, :, ON] = diff > 0
    ev[:, :, OFF] = diff < 0
    return ev


def _to_frames(ev1d: np.ndarray, axis: np.ndarray, size: int) -> np.ndarray:
    """Spread 1-D events (N, T, 2, S) over the bar's length: uint8 (N, T, 2, S, S)."""
    n, t = ev1d.shape[:2]
    frames = np.empty((n, t, 2, size, size), dtype=np.uint8)
    along_x = axis == "x"
    # A vertical bar moving along x: every row sees the same column events.
    frames[along_x] = ev1d[along_x][:, :, :, None, :]
    frames[~along_x] = ev1d[~along_x][:, :, :, :, None]
    return frames


def render_bar_events(
    direction: str, start: int, width: int, bright: bool, num_steps: int, size: int = 16
) -> np.ndarray:
    """Noise-free events of one bar: uint8 (T, 2, size, size), channel 0 ON, 1 OFF.

    The bar occupies positions ``(start + d*t + k) mod size`` for k in [0, width) at
    step t, with d = -1 for left/up and +1 for right/down. ``x[t]`` is ON where a pixel
    goes dark -> bright between frames t-1 and t, OFF where it goes bright -> dark;
    ``x[0]`` is zero.
    """
    if direction not in _MOTION:
        raise InputError(f"render_bar_events: 'direction' must be one of {CLASSES}, got {direction!r}")
    axis, step = _MOTION[direction]
    ev = _edge_events_1d(
        np.array([start]), np.array([step]), np.array([width]), np.array([bright]),
        num_steps, size,
    )
    return _to_frames(ev, np.array([axis]), size)[0]


def _make_split(
    num: int, num_steps: int, size: int, noise_rate: float, rng: np.random.Generator, name: str
) -> EventDataset:
    # Exact balance: labels 0,1,2,3,0,1,... then shuffled (counts differ by <= 1 when
    # num is not a multiple of 4).
    y = rng.permutation(np.arange(num, dtype=np.int64) % len(CLASSES))
    start = rng.integers(0, size, num)
    width = rng.integers(MIN_WIDTH, MAX_WIDTH + 1, num)
    bright = rng.random(num) < 0.5
    axis = np.array([_MOTION[CLASSES[k]][0] for k in y])
    step = np.array([_MOTION[CLASSES[k]][1] for k in y])
    x = _to_frames(_edge_events_1d(start, step, width, bright, num_steps, size), axis, size)
    if noise_rate > 0:
        # One noise event per (sample, step, pixel) with probability noise_rate, of a
        # uniformly random polarity; merged by OR so x stays binary.
        fire = rng.random((num, num_steps, size, size)) < noise_rate
        pol = rng.integers(0, 2, (num, num_steps, size, size))
        x[:, :, ON] |= fire & (pol == ON)
        x[:, :, OFF] |= fire & (pol == OFF)
    return EventDataset(x=x, y=y, classes=CLASSES, name=name)


def make_moving_edge(
    num_train: int,
    num_test: int,
    num_steps: int,
    size: int = 16,
    seed: int = 0,
    noise_rate: float = 0.01,
) -> tuple[EventDataset, EventDataset]:
    """Moving-bar event data: (train, test) with x uint8 (N, T, 2, size, size) in {0, 1}.

    Classes ('left', 'right', 'up', 'down'), balanced exactly (counts differ by at most
    one when N is not a multiple of 4). Drawn from the split's generator in this
    order, each as one vector over the split's N samples: the label permutation, start
    positions uniform in [0, size), widths uniform in {2, 3}, bright-or-dark with
    probability 1/2; then, if noise_rate > 0, the (N, T, size, size) noise mask and its
    polarities.

    Args:
        num_train, num_test: N per split, > 0.
        num_steps: T >= 2 (step 0 carries only noise: there is no previous frame).
        size: frame side in px, >= 4 (so a 3 px bar does not fill the frame).
        seed: >= 0; ``SeedSequence(seed).spawn(2)`` gives the train and test streams.
        noise_rate: probability per pixel per step of a noise event, 0 <= r < 1.
    """
    for field, value, low in (("num_train", num_train, 1), ("num_test", num_test, 1),
                              ("num_steps", num_steps, 2), ("size", size, 4), ("seed", seed, 0)):
        if value < low:
            raise InputError(f"make_moving_edge: '{field}' must be >= {low}, got {value}")
    if not 0.0 <= noise_rate < 1.0:
        raise InputError(f"make_moving_edge: 'noise_rate' must be in [0, 1), got {noise_rate}")
    sizes = {"moving_edge-train": num_train, "moving_edge-test": num_test}
    return generated_pair(seed, lambda rng, split: _make_split(sizes[split], num_steps, size, noise_rate, rng,
                                                               split), "moving_edge")
