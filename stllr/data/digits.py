"""scikit-learn's 8x8 digits, rate-coded as Bernoulli spike trains.

A small, offline data set for smoke tests and demos: 1797 grey-scale 8x8 images with
integer pixel values 0..16, classes '0'..'9'. No download: the data ships with sklearn.
"""

from __future__ import annotations

import numpy as np

from stllr.data.events import EventDataset
from core.errors import InputError

__all__ = ["make_digits", "digits_split", "rate_encode", "SPLIT_SEED", "TEST_FRACTION"]

#: The train/test split is fixed by this seed alone, never by the encoding seed, so the
#: test set is the same 360 images in every run and every experiment.
SPLIT_SEED = 0
TEST_FRACTION = 0.2
PIXEL_MAX = 16  # load_digits() pixel values are integers 0..16
_CHUNK = 256  # samples encoded per draw: bounds memory, does not change the stream


def digits_split() -> tuple[np.ndarray, np.ndarray]:
    """Indices into ``load_digits()`` of the train (1437) and test (360) images, sorted.

    ``train_test_split(test_size=0.2, stratify=target, random_state=SPLIT_SEED)``; the
    indices are sorted so samples keep the order of ``load_digits()``.
    """
    from sklearn.datasets import load_digits  # lazy: sklearn costs ~1 s of import time
    from sklearn.model_selection import train_test_split

    target = load_digits().target
    idx_train, idx_test = train_test_split(
        np.arange(target.size),
        test_size=TEST_FRACTION,
        stratify=target,
        random_state=SPLIT_SEED,
    )
    return np.sort(idx_train), np.sort(idx_test)


def rate_encode(prob: np.ndarray, num_steps: int, rng: np.random.Generator) -> np.ndarray:
    """Bernoulli rate code: ``spike[n, t, j] = rng.random() < prob[n, j]``.

    Args:
        prob: float (N, F) firing probability per step, in [0, 1].
        num_steps: T > 0.
        rng: the generator; draws are taken in C order over (n, t, j), one float64
            per entry, so the result does not depend on internal chunking.

    Returns:
        uint8 (N, T, F) of 0/1 spikes.
    """
    n, f = prob.shape
    out = np.empty((n, num_steps, f), dtype=np.uint8)
    for start in range(0, n, _CHUNK):
        p = prob[start : start + _CHUNK, None, :]
        u = rng.random((p.shape[0], num_steps, f))
        out[start : start + _CHUNK] = u < p
    return out


def make_digits(num_steps: int, seed: int) -> tuple[EventDataset, EventDataset]:
    """Rate-coded digits: (train, test) with x uint8 (N, T, 64), y int64 (N,).

    Encoding: pixel j (row-major over the 8x8 image) of an image with value v in 0..16
    fires at each of the T steps independently with probability ``v / 16`` (so a pixel
    at 16 fires every step, a pixel at 0 never). Spikes are 0/1.

    Split: fixed (:func:`digits_split`), 1437 train / 360 test, stratified by class,
    independent of ``seed``.

    Randomness: ``SeedSequence(seed).spawn(2)`` gives independent streams for train
    and test; each draws ``default_rng(child).random((N, T, 64))`` in C order and
    compares with the probabilities. Same (T, seed) -> identical arrays.

    Args:
        num_steps: T > 0.
        seed: encoding seed >= 0.
    """
    if num_steps <= 0:
        raise InputError(f"make_digits: 'num_steps' must be > 0, got {num_steps}")
    if seed < 0:
        raise InputError(f"make_digits: 'seed' must be >= 0, got {seed}")
    from sklearn.datasets import load_digits

    digits = load_digits()
    prob = digits.data / PIXEL_MAX  # float64 (1797, 64) in [0, 1]
    target = digits.target.astype(np.int64)
    classes = tuple(str(k) for k in range(10))
    idx_train, idx_test = digits_split()
    ss_train, ss_test = np.random.SeedSequence(seed).spawn(2)
    out = []
    for split, idx, ss in (("train", idx_train, ss_train), ("test", idx_test, ss_test)):
        x = rate_encode(prob[idx], num_steps, np.random.default_rng(ss))
        out.append(EventDataset(x=x, y=target[idx], classes=classes, name=f"digits-{split}"))
    return out[0], out[1]
