"""Tests of stllr.data: the npz format, generated data sets and file loaders.

Every loader is checked against hand-computed values on tiny files written here in
the exact on-disk format it reads.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from pydantic import ValidationError

from stllr.data import (
    DataConfig,
    EventDataset,
    iterate_batches,
    load_data,
    load_npz,
    load_shd,
    make_digits,
    make_moving_edge,
    make_temporal,
    save_npz,
)
from stllr.data.config import KIND_FIELDS, LOADERS
from stllr.data.digits import digits_split, rate_encode
from stllr.data.moving_edge import CLASSES, render_bar_events
from stllr.data import temporal
from core.errors import InputError


def _ds(n: int = 6, t: int = 3, f: int = 4, seed: int = 0) -> EventDataset:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, (n, t, f), dtype=np.uint8)
    y = np.arange(n, dtype=np.int64) % 3
    return EventDataset(x=x, y=y, classes=("a", "b", "c"), name="toy")


# --------------------------------------------------------------------------- events


def test_event_dataset_properties() -> None:
    ds = _ds(n=6, t=3, f=4)
    assert (ds.num_samples, ds.num_steps, ds.feature_shape, ds.num_classes) == (6, 3, (4,), 3)
    no_names = EventDataset(x=ds.x, y=np.array([0, 4, 1, 1, 0, 2]), classes=(), name="n")
    assert no_names.num_classes == 5  # max(y) + 1
    with pytest.raises(InputError, match="'x' must be uint8"):
        EventDataset(x=ds.x.astype(np.int16), y=ds.y)
    with pytest.raises(Exception):  # frozen
        ds.name = "other"  # type: ignore[misc]


def test_npz_round_trip(tmp_path: Path) -> None:
    ds = _ds()
    path = tmp_path / "d.npz"
    save_npz(path, ds)
    back = load_npz(path)
    np.testing.assert_array_equal(back.x, ds.x)
    np.testing.assert_array_equal(back.y, ds.y)
    assert back.x.dtype == np.uint8 and back.y.dtype == np.int64
    assert back.classes == ds.classes and back.name == "d"
    # Only the target file is left: the temporary file was renamed, not copied.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]
    # Without classes the key is absent and the count comes from the labels.
    bare = EventDataset(x=ds.x, y=ds.y, classes=(), name="b")
    save_npz(path, bare)
    with np.load(path) as z:
        assert sorted(z.files) == ["x", "y"]
    assert load_npz(path).num_classes == 3


def test_save_npz_is_atomic_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "d.npz"
    save_npz(path, _ds(seed=1))
    before = path.read_bytes()

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(OSError, match="disk full"):
        save_npz(path, _ds(seed=2))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]


X_OK = np.zeros((4, 3, 2), np.uint8)
Y_OK = np.array([0, 1, 2, 1], np.int64)

# (case id, arrays to save, text the message must contain)
BAD_NPZ = [
    ("missing_x", {"y": Y_OK}, "'x'"),
    ("missing_y", {"x": X_OK}, "'y'"),
    ("extra_key", {"x": X_OK, "y": Y_OK, "labels": Y_OK}, "'labels'"),
    ("x_dtype", {"x": X_OK.astype(np.float32), "y": Y_OK}, "'x' must be uint8, got float32"),
    ("y_dtype", {"x": X_OK, "y": Y_OK.astype(np.float32)}, "'y' must be an integer array, got float32"),
    ("y_range", {"x": X_OK, "y": (Y_OK - 1).astype(np.int32)}, "'y' has label -1"),
    ("y_huge", {"x": X_OK, "y": np.array([0, 1, 2, 2**40])}, "'y' has label 1099511627776"),
    ("x_ndim", {"x": X_OK[:, :, 0], "y": Y_OK}, "'x'"),
    ("y_ndim", {"x": X_OK, "y": Y_OK[:, None]}, "'y'"),
    ("n_mismatch", {"x": X_OK[:3], "y": Y_OK}, "'x' has 3 samples but 'y' has 4"),
    ("negative_label", {"x": X_OK, "y": np.array([0, -1, 2, 1])}, "'y' has negative label -1"),
    (
        "label_ge_classes",
        {"x": X_OK, "y": Y_OK, "classes": np.array(["a", "b"])},
        "'classes' names only 2",
    ),
    ("empty", {"x": X_OK[:0], "y": Y_OK[:0]}, "'x' is empty"),
    ("empty_steps", {"x": X_OK[:, :0], "y": Y_OK}, "'x' is empty"),
    ("classes_2d", {"x": X_OK, "y": Y_OK, "classes": np.array([["a", "b", "c"]])}, "'classes'"),
    ("classes_numeric", {"x": X_OK, "y": Y_OK, "classes": np.arange(3)}, "'classes'"),
    ("classes_pickled", {"x": X_OK, "y": Y_OK, "classes": np.array(["a", 1, None], dtype=object)}, "'classes'"),
]


@pytest.mark.parametrize("arrays,expected", [c[1:] for c in BAD_NPZ], ids=[c[0] for c in BAD_NPZ])
def test_bad_npz_names_file_and_field(tmp_path: Path, arrays: dict, expected: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(InputError) as info:
        load_npz(path, field="data.train")
    msg = str(info.value)
    assert msg.startswith(f"data.train: {path}: ")
    assert expected in msg
    assert "\n" not in msg


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.int32, np.uint32, np.uint64])
def test_labels_of_any_integer_dtype_are_read_as_int64(tmp_path: Path, dtype) -> None:
    path = tmp_path / "labels.npz"
    np.savez(path, x=X_OK, y=Y_OK.astype(dtype))
    ds = load_npz(path)
    assert ds.y.dtype == np.int64 and ds.y.tolist() == [0, 1, 2, 1]


def test_npz_header_claiming_a_huge_array_is_refused_before_reading(tmp_path: Path) -> None:
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                   "shape": (10**6, 10**3, 10**3)})
    labels = io.BytesIO()
    np.save(labels, Y_OK)
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", header.getvalue() + b"\0" * 64)  # 64 bytes of a claimed 10^12
        archive.writestr("y.npy", labels.getvalue())
    with pytest.raises(InputError, match=r"'x' claims shape \[1000000, 1000, 1000\] \(uint8\), more than"):
        load_npz(path)


def test_npz_message_matches_documented_example(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    np.savez(path, x=X_OK.astype(np.float32), y=Y_OK)
    with pytest.raises(InputError) as info:
        load_npz(path, field="data.train")
    assert str(info.value) == f"data.train: {path}: 'x' must be uint8, got float32"


def test_npz_missing_and_not_npz(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        load_npz(tmp_path / "nope.npz")
    text = tmp_path / "t.npz"
    text.write_text("hello")
    with pytest.raises(InputError, match="not an .npz archive"):
        load_npz(text)
    npy = tmp_path / "a.npy"
    np.save(npy, X_OK)
    with pytest.raises(InputError, match="not an .npz archive"):
        load_npz(npy)
    # A zip holding something other than .npy members.
    odd = tmp_path / "odd.npz"
    with zipfile.ZipFile(odd, "w") as zf:
        zf.writestr("x.npy", b"not a numpy file")
        zf.writestr("y.npy", b"nor this")
    with pytest.raises(InputError, match="cannot read 'x'"):
        load_npz(odd)


def test_iterate_batches_deterministic_and_resumable() -> None:
    ds = _ds(n=10, t=2, f=3)
    batches = list(iterate_batches(ds, 4, shuffle=True, seed=7, epoch=3))
    assert [b[0].shape for b in batches] == [(4, 2, 3), (4, 2, 3), (2, 2, 3)]
    assert all(b[0].dtype == np.uint8 and b[1].dtype == np.int64 for b in batches)
    order = np.random.default_rng([7, 3]).permutation(10)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), ds.y[order])
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), ds.x[order])
    # Resuming at epoch 3 in a fresh process = same call: nothing depends on history.
    _ = list(iterate_batches(ds, 4, shuffle=True, seed=7, epoch=2))
    again = list(iterate_batches(ds, 4, shuffle=True, seed=7, epoch=3))
    for (xa, ya), (xb, yb) in zip(batches, again, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    # Another epoch is another permutation, again a pure function of (seed, epoch).
    order4 = np.random.default_rng([7, 4]).permutation(10)
    assert not np.array_equal(order4, order)
    other = np.concatenate([b[1] for b in iterate_batches(ds, 4, True, 7, 4)])
    np.testing.assert_array_equal(other, ds.y[order4])
    plain = list(iterate_batches(ds, 4, shuffle=False, seed=0, epoch=0, drop_last=True))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in plain]), ds.y[:8])
    with pytest.raises(InputError, match="'batch_size'"):
        next(iterate_batches(ds, 0, True, 0, 0))


# --------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits_a() -> tuple[EventDataset, EventDataset]:
    return make_digits(num_steps=8, seed=1)


def test_digits_shapes_and_split(digits_a: tuple[EventDataset, EventDataset]) -> None:
    train, test = digits_a
    assert train.x.shape == (1437, 8, 64) and test.x.shape == (360, 8, 64)
    assert train.x.dtype == np.uint8 and train.y.dtype == np.int64
    assert set(np.unique(train.x)) <= {0, 1}
    assert train.classes == tuple("0123456789") and test.num_classes == 10
    idx_train, idx_test = digits_split()
    assert np.intersect1d(idx_train, idx_test).size == 0
    assert idx_train.size + idx_test.size == 1797
    # Stratified by class; pinned so a change of sklearn's splitter is noticed.
    assert np.bincount(test.y).tolist() == [36, 36, 35, 37, 36, 37, 36, 36, 35, 36]
    assert idx_test[:5].tolist() == [21, 24, 28, 34, 35]


def test_digits_determinism_and_split_independence(digits_a: tuple[EventDataset, EventDataset]) -> None:
    train, test = digits_a
    train2, test2 = make_digits(num_steps=8, seed=1)
    np.testing.assert_array_equal(train.x, train2.x)
    np.testing.assert_array_equal(test.x, test2.x)
    train3, test3 = make_digits(num_steps=8, seed=2)
    assert not np.array_equal(train.x, train3.x)
    assert not np.array_equal(test.x, test3.x)
    # The encoding seed changes spikes, never which images are in which split.
    np.testing.assert_array_equal(test.y, test3.y)
    np.testing.assert_array_equal(train.y, train3.y)
    from sklearn.datasets import load_digits

    img = load_digits().data
    _, idx_test = digits_split()
    # Pixels at 0 never fire, pixels at 16 always fire: ties spikes to the test images.
    for x, i in ((test.x, idx_test), (test3.x, idx_test)):
        per_pixel = x.transpose(0, 2, 1)  # (N, 64, T)
        assert not per_pixel[img[i] == 0].any()
        assert per_pixel[img[i] == 16].all()
    # The documented streams: SeedSequence(seed).spawn(2) -> (train, test).
    ss_train, ss_test = np.random.SeedSequence(1).spawn(2)
    idx_train, _ = digits_split()
    np.testing.assert_array_equal(test.x, rate_encode(img[idx_test] / 16, 8, np.random.default_rng(ss_test)))
    np.testing.assert_array_equal(train.x, rate_encode(img[idx_train] / 16, 8, np.random.default_rng(ss_train)))


def test_digits_rate_matches_pixel_over_16(digits_a: tuple[EventDataset, EventDataset]) -> None:
    from sklearn.datasets import load_digits

    train, _ = digits_a
    idx_train, _ = digits_split()
    p = load_digits().data[idx_train] / 16.0  # (N, 64)
    for v in range(1, 16):  # one check per pixel value, pooled over all its occurrences
        mask = np.rint(p * 16) == v
        n = int(mask.sum()) * train.num_steps
        rate = train.x.transpose(0, 2, 1)[mask].mean()
        sd = np.sqrt(v / 16 * (1 - v / 16) / n)
        assert abs(rate - v / 16) < 5 * sd, (v, rate)


def test_rate_encode_chunking_does_not_change_stream() -> None:
    prob = np.random.default_rng(0).random((600, 5))
    a = rate_encode(prob, 3, np.random.default_rng(9))
    u = np.random.default_rng(9).random((600, 3, 5))  # one draw, C order over (n, t, j)
    np.testing.assert_array_equal(a, (u < prob[:, None, :]).astype(np.uint8))


# ----------------------------------------------------------------------- moving edge


def test_moving_edge_shapes_balance_determinism() -> None:
    train, test = make_moving_edge(10, 6, num_steps=5, size=8, seed=3)
    assert train.x.shape == (10, 5, 2, 8, 8) and test.x.shape == (6, 5, 2, 8, 8)
    assert train.x.dtype == np.uint8 and set(np.unique(train.x)) <= {0, 1}
    assert train.classes == CLASSES == ("left", "right", "up", "down")
    # Labels are 0,1,2,3,0,1,... shuffled: 10 samples give counts 3, 3, 2, 2.
    assert np.bincount(train.y, minlength=4).tolist() == [3, 3, 2, 2]
    again, _ = make_moving_edge(10, 6, num_steps=5, size=8, seed=3)
    np.testing.assert_array_equal(train.x, again.x)
    np.testing.assert_array_equal(train.y, again.y)
    other, _ = make_moving_edge(10, 6, num_steps=5, size=8, seed=4)
    assert not np.array_equal(train.x, other.x)
    with pytest.raises(InputError, match="'noise_rate'"):
        make_moving_edge(4, 4, 5, noise_rate=1.0)
    with pytest.raises(InputError, match="'num_steps'"):
        make_moving_edge(4, 4, 1)


def test_moving_edge_noise_free_structure() -> None:
    size, steps = 12, 9
    train, _ = make_moving_edge(40, 4, num_steps=steps, size=size, seed=5, noise_rate=0.0)
    x = train.x.astype(np.int64)
    assert not x[:, 0].any()  # no previous frame at t = 0
    # Each step one full line turns on and one turns off.
    np.testing.assert_array_equal(x[:, 1:, 0].sum(axis=(2, 3)), size)
    np.testing.assert_array_equal(x[:, 1:, 1].sum(axis=(2, 3)), size)
    # The class is the shift between consecutive event frames (temporal order).
    shift = {"left": (-1, 3), "right": (1, 3), "up": (-1, 2), "down": (1, 2)}
    for n in range(train.num_samples):
        d, axis = shift[CLASSES[train.y[n]]]
        np.testing.assert_array_equal(np.roll(x[n, 1:-1], d, axis=axis), x[n, 2:])


def test_time_reversal_pairs_have_equal_sums() -> None:
    # A bright bar moving left from p and a dark bar moving right from p - T + 1 give
    # the same event frames in reverse order: the time sum cannot tell them apart.
    steps, size = 7, 10
    for p in range(size):
        for width in (2, 3):
            left = render_bar_events("left", p, width, True, steps, size)
            right = render_bar_events("right", (p - steps + 1) % size, width, False, steps, size)
            np.testing.assert_array_equal(left[1:], right[1:][::-1])
            np.testing.assert_array_equal(left.sum(0), right.sum(0))
            up = render_bar_events("up", p, width, True, steps, size)
            down = render_bar_events("down", (p - steps + 1) % size, width, False, steps, size)
            np.testing.assert_array_equal(up[1:], down[1:][::-1])


def test_moving_edge_time_sum_does_not_determine_class() -> None:
    from sklearn.linear_model import LogisticRegression

    train, test = make_moving_edge(400, 400, num_steps=16, size=16, seed=0, noise_rate=0.01)
    assert np.bincount(train.y).tolist() == [100] * 4
    assert np.bincount(test.y).tolist() == [100] * 4
    f_train = train.x.sum(axis=1).reshape(400, -1).astype(np.float64)
    f_test = test.x.sum(axis=1).reshape(400, -1).astype(np.float64)
    clf = LogisticRegression(max_iter=500).fit(f_train, train.y)
    assert clf.score(f_test, test.y) < 0.65


# -------------------------------------------------------------------------- temporal


def test_temporal_shapes_balance_determinism() -> None:
    train, test = make_temporal(10, 6, seed=3)
    assert train.x.shape == (10, 40, 48) and test.x.shape == (6, 40, 48)
    assert train.x.dtype == np.uint8 and train.y.dtype == np.int64
    assert set(np.unique(train.x)) == {0, 1}
    assert train.classes == temporal.CLASSES == ("A>B", "B>A", "C>D", "D>C")
    assert (train.name, test.name) == ("temporal-train", "temporal-test")
    assert np.bincount(train.y, minlength=4).tolist() == [3, 3, 2, 2]
    again_train, again_test = make_temporal(10, 6, seed=3)
    np.testing.assert_array_equal(train.x, again_train.x)
    np.testing.assert_array_equal(train.y, again_train.y)
    np.testing.assert_array_equal(test.x, again_test.x)
    assert not np.array_equal(train.x, make_temporal(10, 6, seed=4)[0].x)
    assert not np.array_equal(train.x[:6], test.x)
    assert make_temporal(4, 4, num_steps=50, num_channels=8)[0].x.shape == (4, 50, 8)
    assert temporal.MIN_STEPS == 40


def _group_activity(x: np.ndarray, groups: int = 4) -> np.ndarray:
    """(T, C) events -> bool (T, groups): does any channel of the group fire at the step."""
    return x.reshape(x.shape[0], groups, -1).any(axis=2)


def test_temporal_noise_free_structure() -> None:
    """Without noise: only the class's pair fires on adjacent steps, first group first;
    every group fires 3 events, each channel at most once per event."""
    train, _ = make_temporal(200, 1, seed=5, noise_rate=0.0)
    pairs = {0: (0, 1), 1: (1, 0), 2: (2, 3), 3: (3, 2)}
    for x, label in zip(train.x, train.y):
        act = _group_activity(x)
        adjacent = act[:-1, :, None] & act[1:, None, :]  # [t, g, h]: g at t and h at t + 1
        counts = adjacent.sum(axis=0)
        first, second = pairs[int(label)]
        assert counts[first, second] >= 1
        off = counts.copy()
        off[first, second] = 0
        np.fill_diagonal(off, 0)  # a group's own event spans two steps (jitter)
        assert off.sum() == 0, (label, counts)
        per_channel = x.sum(axis=0)
        assert per_channel.max() <= 3
        # 3 events x 12 channels x P_FIRE 0.9 = 32.4 on average per group.
        assert (x.reshape(40, 4, 12).sum(axis=(0, 2)) >= 20).all()


def test_temporal_time_sum_carries_no_label() -> None:
    from sklearn.linear_model import LogisticRegression

    train, test = make_temporal(2000, 800, seed=0)
    counts = train.x.sum(axis=1).astype(np.float64)  # (N, 48)
    means = np.stack([counts[train.y == k].mean(axis=0) for k in range(4)])  # (class, channel)
    # Expected per channel: 3 x 0.9 (events) + about 40 x 0.02 (noise) = about 3.5.
    assert 3.2 < means.mean() < 3.8
    # 500 samples per class, sd of a channel's count about 0.8: SE about 0.04.
    assert np.abs(means - means.mean(axis=0)).max() < 0.2
    clf = LogisticRegression(max_iter=2000).fit(counts, train.y)
    assert clf.score(test.x.sum(axis=1).astype(np.float64), test.y) < 0.33


def test_temporal_bad_arguments() -> None:
    with pytest.raises(InputError, match=r"^make_temporal: 'num_steps' must be >= 40, got 39$"):
        make_temporal(4, 4, num_steps=39)
    with pytest.raises(InputError, match=r"^make_temporal: 'num_channels' must be a multiple of 4, got 50$"):
        make_temporal(4, 4, num_channels=50)
    with pytest.raises(InputError, match="'noise_rate'"):
        make_temporal(4, 4, noise_rate=1.0)
    with pytest.raises(InputError, match="'num_train'"):
        make_temporal(0, 4)


# ------------------------------------------------------------------------------- SHD


def _write_shd(path: Path, times: list[list[float]], units: list[list[int]], labels: list[int],
               keys: list[bytes] | None = None) -> None:
    with h5py.File(path, "w") as f:
        t = f.create_dataset("spikes/times", (len(times),), dtype=h5py.vlen_dtype(np.float16))
        u = f.create_dataset("spikes/units", (len(units),), dtype=h5py.vlen_dtype(np.uint16))
        for i, (ti, ui) in enumerate(zip(times, units, strict=True)):
            t[i] = np.asarray(ti, dtype=np.float16)
            u[i] = np.asarray(ui, dtype=np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
        if keys is not None:
            f.create_dataset("extra/keys", data=np.array(keys))


SHD_TIMES = [[0.0, 0.1, 0.25, 0.5, 0.75, 0.99, 1.0, 1.5], [], [0.3] * 300]
SHD_UNITS = [[0, 1, 1, 7, 3, 3, 2, 2], [], [5] * 300]


def test_shd_binning_exact(tmp_path: Path) -> None:
    path = tmp_path / "shd_train.h5"
    keys = [f"english-{k}".encode() for k in range(10)] + [f"german-{k}".encode() for k in range(10)]
    _write_shd(path, SHD_TIMES, SHD_UNITS, [3, 0, 19], keys)
    ds = load_shd(path, num_steps=4, duration_s=1.0, num_channels=8)
    assert ds.x.shape == (3, 4, 8) and ds.x.dtype == np.uint8
    np.testing.assert_array_equal(ds.y, [3, 0, 19])
    assert ds.classes[0] == "english-0" and ds.num_classes == 20
    want = np.zeros((3, 4, 8), np.uint8)
    # float16(0.1) = 0.09998 -> bin 0; 0.25 -> 1; 0.5 -> 2; 0.75, float16(0.99) -> 3;
    # 1.0 and 1.5 are at/after duration_s and dropped.
    want[0, 0, 0] = want[0, 0, 1] = want[0, 1, 1] = want[0, 2, 7] = 1
    want[0, 3, 3] = 2
    want[2, 1, 5] = 255  # 300 spikes in one bin saturate
    np.testing.assert_array_equal(ds.x, want)

    down = load_shd(path, num_steps=4, duration_s=1.0, num_channels=8, downsample=3)
    assert down.x.shape == (3, 4, 3)  # ceil(8 / 3)
    want_d = np.zeros((3, 4, 3), np.uint8)
    want_d[0, 0, 0] = 2  # units 0, 1
    want_d[0, 1, 0] = 1  # unit 1
    want_d[0, 2, 2] = 1  # unit 7
    want_d[0, 3, 1] = 2  # unit 3, 3
    want_d[2, 1, 1] = 255  # unit 5
    np.testing.assert_array_equal(down.x, want_d)

    # A shorter window: T = 2 over 0.5 s -> edges 0, 0.25, 0.5.
    short = load_shd(path, num_steps=2, duration_s=0.5, num_channels=8)
    np.testing.assert_array_equal(short.x[0, 0], [1, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(short.x[0, 1], [0, 1, 0, 0, 0, 0, 0, 0])


def test_shd_errors(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    _write_shd(path, SHD_TIMES, SHD_UNITS, [3, 0, 1])
    ds = load_shd(path, num_steps=4, num_channels=8)
    assert ds.classes == tuple(str(k) for k in range(20))  # no extra/keys
    with pytest.raises(InputError, match=r"unit 7 >= num_channels=7"):
        load_shd(path, num_steps=4, num_channels=7)
    with h5py.File(path, "a") as f:
        del f["labels"]
    with pytest.raises(InputError) as info:
        load_shd(path, num_steps=4, field="data.test")
    assert str(info.value).startswith(f"data.test: {path}: missing dataset 'labels'")
    with pytest.raises(InputError, match="file not found"):
        load_shd(tmp_path / "none.h5", num_steps=4)
    bad = tmp_path / "b.h5"
    bad.write_text("no")
    with pytest.raises(InputError, match="not an HDF5 file"):
        load_shd(bad, num_steps=4)
    _write_shd(path, SHD_TIMES, SHD_UNITS, [3, 0, 20])
    with pytest.raises(InputError, match="'labels' must be in 0..19"):
        load_shd(path, num_steps=4, num_channels=8)


# ----------------------------------------------------------------------------- tonic


def _nmnist_bytes(events: list[tuple[int, int, int, int]]) -> bytes:
    """N-MNIST 40-bit records: x, y, p<<7 | t[22:16], t[15:8], t[7:0]."""
    out = bytearray()
    for x, y, p, t in events:
        out += bytes([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF])
    return bytes(out)


def test_nmnist_binning(tmp_path: Path) -> None:
    tonic_loaders = pytest.importorskip("stllr.data.tonic_loaders")
    base = tmp_path / "NMNIST" / "Train"
    # t = 0, 10, 25, 39, 40 us; T = 4 -> w = (40 - 0) // 4 = 10; last event dropped.
    ev_a = [(0, 0, 0, 0), (1, 0, 1, 10), (2, 1, 1, 25), (2, 1, 1, 26), (3, 1, 0, 39), (4, 2, 1, 40)]
    ev_b = [(33, 33, 1, 100_000), (5, 6, 0, 100_200), (7, 8, 1, 100_400)]  # t > 2**16
    (base / "3").mkdir(parents=True)
    (base / "7").mkdir(parents=True)
    (base / "3" / "00001.bin").write_bytes(_nmnist_bytes(ev_a))
    (base / "7" / "00002.bin").write_bytes(_nmnist_bytes(ev_b))
    ds = tonic_loaders.load_nmnist(tmp_path, train=True, num_steps=4)
    assert ds.x.shape == (2, 4, 2, 34, 34) and ds.x.dtype == np.uint8
    np.testing.assert_array_equal(ds.y, [3, 7])
    want = np.zeros((2, 4, 2, 34, 34), np.uint8)  # index (t, p, y, x)
    want[0, 0, 0, 0, 0] = 1
    want[0, 1, 1, 0, 1] = 1
    want[0, 2, 1, 1, 2] = 2
    want[0, 3, 0, 1, 3] = 1
    # Sample b: w = 400 // 4 = 100 -> bins start at 100000, 100100, 100200, 100300.
    want[1, 0, 1, 33, 33] = 1
    want[1, 2, 0, 6, 5] = 1
    np.testing.assert_array_equal(ds.x, want)
    assert ds.classes[3] == "3 - three"
    with pytest.raises(InputError) as info:
        tonic_loaders.load_nmnist(tmp_path, train=False, num_steps=4)
    assert str(tmp_path / "NMNIST" / "Test") in str(info.value)


def test_dvs_gesture_binning(tmp_path: Path) -> None:
    tonic_loaders = pytest.importorskip("stllr.data.tonic_loaders")
    user = tmp_path / "DVSGesture" / "ibmGestureTrain" / "user01_fluorescent"
    user.mkdir(parents=True)
    # Columns x, y, p, t[ms]; size 32 -> coordinates * 0.25 truncated.
    ev = np.array([[100, 7, 1, 0], [127, 127, 0, 1], [3, 4, 1, 2], [0, 0, 0, 3], [9, 9, 1, 4]],
                  dtype=np.int64)
    np.save(user / "4.npy", ev)
    other = tmp_path / "DVSGesture" / "ibmGestureTrain" / "user02_led"
    other.mkdir(parents=True)
    np.save(other / "10.npy", np.array([[64, 64, 1, 0], [64, 65, 1, 10]], dtype=np.int64))
    ds = tonic_loaders.load_dvs_gesture(tmp_path, train=True, num_steps=2, size=32)
    assert ds.x.shape == (2, 2, 2, 32, 32) and ds.x.dtype == np.uint8
    np.testing.assert_array_equal(ds.y, [4, 10])
    assert ds.num_classes == 11
    want = np.zeros((2, 2, 2, 32, 32), np.uint8)  # (sample, t, p, y, x)
    # t = 0..4000 us, w = 4000 // 2 = 2000: bin 0 gets t 0, 1000; bin 1 gets 2000, 3000.
    want[0, 0, 1, 1, 25] = 1
    want[0, 0, 0, 31, 31] = 1
    want[0, 1, 1, 1, 0] = 1
    want[0, 1, 0, 0, 0] = 1
    want[1, 0, 1, 16, 16] = 1  # w = 5000: (64, 64) at t = 0; the event at 10000 us is dropped
    np.testing.assert_array_equal(ds.x, want)
    with pytest.raises(InputError, match="ibmGestureTest"):
        tonic_loaders.load_dvs_gesture(tmp_path, train=False, num_steps=2)


# ---------------------------------------------------------------------------- config


def test_config_registry_covers_every_kind() -> None:
    kinds = set(DataConfig.model_fields["kind"].annotation.__args__)
    assert kinds == set(KIND_FIELDS) == set(LOADERS)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"kind": "digits"}, "num_steps"),
        ({"kind": "digits", "num_steps": 0}, "num_steps"),
        ({"kind": "npz", "train": "a.npz"}, "test"),
        ({"kind": "moving_edge", "num_steps": 4, "num_train": 8}, "num_test"),
        ({"kind": "moving_edge", "num_steps": 4, "num_train": 8, "num_test": 8, "noise_rate": 1.0}, "noise_rate"),
        ({"kind": "moving_edge", "num_steps": 4, "num_train": 8, "num_test": 8, "size": 3}, "size"),
        ({"kind": "digits", "num_steps": 4, "size": 16}, "size"),
        ({"kind": "temporal", "num_steps": 40, "num_train": 8}, "num_test"),
        ({"kind": "temporal", "num_steps": 39, "num_train": 8, "num_test": 8}, "num_steps"),
        ({"kind": "temporal", "num_steps": 40, "num_train": 8, "num_test": 8, "num_channels": 50}, "num_channels"),
        ({"kind": "temporal", "num_steps": 40, "num_train": 8, "num_test": 8, "num_channels": 0}, "num_channels"),
        ({"kind": "temporal", "num_steps": 40, "num_train": 8, "num_test": 8, "noise_rate": 1.0}, "noise_rate"),
        ({"kind": "temporal", "num_steps": 40, "num_train": 8, "num_test": 8, "size": 16}, "size"),
        ({"kind": "temporal", "num_steps": 40, "num_train": 10_000_000, "num_test": 8, "num_channels": 48},
         "num_steps"),
        ({"kind": "digits", "num_steps": 4, "num_channels": 48}, "num_channels"),
        ({"kind": "digits", "num_steps": 4, "seeds": 1}, "seeds"),
        ({"kind": "shd", "train": "a", "test": "b", "num_steps": 4, "downsample": 0}, "downsample"),
        ({"kind": "nmnist", "num_steps": 4}, "root"),
        ({"kind": "dvs_gesture", "root": "r", "num_steps": 4, "size": 256}, "size"),
        ({"kind": "tidigits", "num_steps": 4}, "kind"),
    ],
)
def test_config_errors_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        DataConfig(**kwargs)
    assert field in str(info.value)


@pytest.mark.parametrize(
    "field,value,expected",
    [
        ("num_steps", 20, "data: 'num_steps' must be >= 40 for kind 'temporal' (its longest event sequence), got 20"),
        ("num_channels", 50, "data: 'num_channels' must be a multiple of 4, got 50"),
        ("noise_rate", 1.0, "data.noise_rate: "),
        ("num_train", 0, "data.num_train: "),
    ],
)
def test_temporal_config_errors_are_one_line(field: str, value: object, expected: str) -> None:
    from core.config import config_to_dict, load_config, parse_config

    root = Path(__file__).resolve().parent.parent
    data = config_to_dict(load_config(root / "configs" / "temporal.yaml"))
    given = {k: v for k, v in data["data"].items() if v is not None}
    assert given == {"kind": "temporal", "num_steps": 40, "seed": 0, "num_train": 2000, "num_test": 1000}
    data["data"][field] = value
    with pytest.raises(InputError) as info:
        parse_config(data, "t.yaml")
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"t.yaml: {expected}"), message


def test_config_is_frozen_and_keeps_relative_paths() -> None:
    cfg = DataConfig(kind="npz", train="rel/a.npz", test=Path("b.npz"))
    assert cfg.train == Path("rel/a.npz")
    with pytest.raises(ValidationError):
        cfg.seed = 3  # type: ignore[misc]


def test_load_data_dispatch(tmp_path: Path) -> None:
    tr, te = load_data(DataConfig(kind="moving_edge", num_steps=3, num_train=4, num_test=8, size=6,
                                  noise_rate=0.0, seed=2))
    assert tr.x.shape == (4, 3, 2, 6, 6) and te.x.shape == (8, 3, 2, 6, 6)
    np.testing.assert_array_equal(tr.x, make_moving_edge(4, 8, 3, size=6, seed=2, noise_rate=0.0)[0].x)
    tr, te = load_data(DataConfig(kind="temporal", num_steps=41, num_train=5, num_test=3, num_channels=16,
                                  noise_rate=0.0, seed=7))
    assert tr.x.shape == (5, 41, 16) and te.x.shape == (3, 41, 16)
    np.testing.assert_array_equal(te.x, make_temporal(5, 3, 41, num_channels=16, seed=7, noise_rate=0.0)[1].x)

    save_npz(tmp_path / "tr.npz", _ds(n=6, t=3))
    save_npz(tmp_path / "te.npz", _ds(n=4, t=3, seed=1))
    tr, te = load_data(DataConfig(kind="npz", train=tmp_path / "tr.npz", test=tmp_path / "te.npz"))
    assert (tr.num_samples, te.num_samples) == (6, 4)
    with pytest.raises(InputError, match=r"^data.num_steps: 5 but data.train has T = 3$"):
        load_data(DataConfig(kind="npz", train=tmp_path / "tr.npz", test=tmp_path / "te.npz", num_steps=5))
    save_npz(tmp_path / "te5.npz", _ds(n=4, t=3, f=5))
    with pytest.raises(InputError, match="data.test"):
        load_data(DataConfig(kind="npz", train=tmp_path / "tr.npz", test=tmp_path / "te5.npz"))
    with pytest.raises(InputError, match=r"^data.train: .*missing.npz: file not found$"):
        load_data(DataConfig(kind="npz", train=tmp_path / "missing.npz", test=tmp_path / "te.npz"))

    _write_shd(tmp_path / "s.h5", SHD_TIMES, SHD_UNITS, [3, 0, 1])
    tr, te = load_data(DataConfig(kind="shd", train=tmp_path / "s.h5", test=tmp_path / "s.h5",
                                  num_steps=4, downsample=350))
    assert tr.x.shape == (3, 4, 2)  # 700 channels // 350
    with pytest.raises(InputError, match=r"^data.root: "):
        load_data(DataConfig(kind="dvs_gesture", root=tmp_path / "nothing", num_steps=4))
