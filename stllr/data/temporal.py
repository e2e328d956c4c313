"""A generated event-stream task whose label lives only in the order and timing of events.

Channels (``num_channels``, default 48) form four groups A, B, C, D of ``num_channels / 4``
consecutive channels (A = the first quarter, ...). A group *event* at step s: each channel
of the group fires with probability ``P_FIRE`` (0.9), at step s or s + 1 (uniform jitter
``JITTER`` = 1 step per channel). The four classes are tight ordered pairs ("motifs"):

    'A>B': A then B     'B>A': B then A     'C>D': C then D     'D>C': D then C

Generative process of one sample of class (first, second), all steps in time steps:

1. Units: the motif (first, second) ``REPEATS`` (3) times, and each of the two other
   groups alone ``REPEATS`` times: 9 units. Every group so has exactly 3 events in every
   class, so the time-summed counts per channel carry no label.
2. A uniform random order of the 9 units; gaps between consecutive units uniform in
   ``GAP`` = {3, 4} steps; one motif gap g uniform in ``MOTIF_GAP`` = {1, 2} per sample
   (second fires g steps after first); onset uniform in [0, T - span), span = sum of
   unit gaps + 3 g + JITTER (at most 39 steps, so T >= ``MIN_STEPS`` = 40).
3. Background noise: every (step, channel) fires with probability ``noise_rate``
   (default 0.02), merged by OR: x stays binary.

What separates the classes: which pair of groups comes as a tight pair (1-2 steps) rather
than 3-4 steps apart (timing), and which of the two comes first (order). The singles of
the other pair are distractors: in 'A>B' C and D still fire 3 times each, at random
places, in any order. A linear readout of exponentially filtered inputs sees the same
mean timing of every group in every class; a logistic regression on time-summed counts
is at chance (25 %).

Randomness: ``SeedSequence(seed).spawn(2)``, first stream train, second test. Draw order
in a split: the label permutation (N,); then per sample in index order: unit order
(permutation of 9: index 0..2 the motifs, 3..5 the lower single group, 6..8 the higher),
the 8 gaps, the motif gap, the onset, then per event in time order of the units the
(channels,) fire mask and the (channels,) jitter; finally the (N, T, C) noise mask.
"""

from __future__ import annotations

import numpy as np

from core.errors import InputError
from stllr.data.events import EventDataset, generated_pair

__all__ = ["CLASSES", "MIN_STEPS", "NUM_GROUPS", "make_temporal"]

CLASSES: tuple[str, ...] = ("A>B", "B>A", "C>D", "D>C")
_MOTIFS: tuple[tuple[int, int], ...] = ((0, 1), (1, 0), (2, 3), (3, 2))  # (first, second) group
NUM_GROUPS = 4
REPEATS = 3           # occurrences of the motif and of each single group per sample
GAP = (3, 4)          # steps between consecutive units, inclusive
MOTIF_GAP = (1, 2)    # steps from the motif's first to its second group, inclusive
JITTER = 1            # a channel fires at the event step + 0..JITTER
P_FIRE = 0.9          # probability that a channel of the group fires in an event
_UNITS = 3 * REPEATS
#: Smallest T: the longest sequence (8 gaps of 4, 3 motif gaps of 2, jitter 1) plus one.
MIN_STEPS = (_UNITS - 1) * GAP[1] + REPEATS * MOTIF_GAP[1] + JITTER + 1


def _sample(x: np.ndarray, label: int, gsize: int, rng: np.random.Generator) -> None:
    """Write the noise-free events of one sample of class ``label`` into x (T, C)."""
    first, second = _MOTIFS[label]
    single = sorted(set(range(NUM_GROUPS)) - {first, second})
    units = [(first, second)] * REPEATS + [(single[0],)] * REPEATS + [(single[1],)] * REPEATS
    order = rng.permutation(_UNITS)
    gaps = rng.integers(GAP[0], GAP[1] + 1, _UNITS - 1)
    motif_gap = int(rng.integers(MOTIF_GAP[0], MOTIF_GAP[1] + 1))
    span = int(gaps.sum()) + REPEATS * motif_gap + JITTER
    t = int(rng.integers(0, x.shape[0] - span))
    for i, unit in enumerate(order):
        groups = units[unit]
        times = (t,) if len(groups) == 1 else (t, t + motif_gap)
        for group, step in zip(groups, times):
            fire = rng.random(gsize) < P_FIRE
            jitter = rng.integers(0, JITTER + 1, gsize)
            x[step + jitter[fire], group * gsize + np.flatnonzero(fire)] = 1
        if i < _UNITS - 1:
            t = times[-1] + int(gaps[i])


def _make_split(num: int, num_steps: int, num_channels: int, noise_rate: float,
                rng: np.random.Generator, name: str) -> EventDataset:
    # Exact balance: labels 0,1,2,3,0,... shuffled (counts differ by <= 1).
    y = rng.permutation(np.arange(num, dtype=np.int64) % len(CLASSES))
    x = np.zeros((num, num_steps, num_channels), dtype=np.uint8)
    gsize = num_channels // NUM_GROUPS
    for n in range(num):
        _sample(x[n], int(y[n]), gsize, rng)
    if noise_rate > 0:
        x |= (rng.random(x.shape) < noise_rate).astype(np.uint8)
    return EventDataset(x=x, y=y, classes=CLASSES, name=name)


def make_temporal(
    num_train: int,
    num_test: int,
    num_steps: int = 40,
    num_channels: int = 48,
    seed: int = 0,
    noise_rate: float = 0.02,
) -> tuple[EventDataset, EventDataset]:
    """Ordered-pair event data: (train, test) with x uint8 (N, T, num_channels) in {0, 1}.

    Classes ('A>B', 'B>A', 'C>D', 'D>C'), balanced exactly; see the module docstring for
    the generative process.

    Args:
        num_train, num_test: N per split, > 0.
        num_steps: T >= MIN_STEPS (40) steps.
        num_channels: input channels, a positive multiple of 4 (four equal groups).
        seed: >= 0; ``SeedSequence(seed).spawn(2)`` gives the train and test streams.
        noise_rate: background events per channel per step, 0 <= r < 1.
    """
    for field, value, low in (("num_train", num_train, 1), ("num_test", num_test, 1),
                              ("num_steps", num_steps, MIN_STEPS), ("num_channels", num_channels, NUM_GROUPS),
                              ("seed", seed, 0)):
        if value < low:
            raise InputError(f"make_temporal: '{field}' must be >= {low}, got {value}")
    if num_channels % NUM_GROUPS:
        raise InputError(f"make_temporal: 'num_channels' must be a multiple of {NUM_GROUPS}, got {num_channels}")
    if not 0.0 <= noise_rate < 1.0:
        raise InputError(f"make_temporal: 'noise_rate' must be in [0, 1), got {noise_rate}")
    sizes = {"temporal-train": num_train, "temporal-test": num_test}
    return generated_pair(seed, lambda rng, split: _make_split(sizes[split], num_steps, num_channels, noise_rate, rng,
                                                               split), "temporal")
