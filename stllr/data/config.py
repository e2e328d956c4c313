"""The ``data:`` section of a run config and the one entry point that loads it.

Which fields a kind needs, and which it accepts, is written once in :data:`KIND_FIELDS`;
the validator and the docs read it from there. Loaders are looked up in
:data:`LOADERS` by kind. Defaults of optional fields (``size``, ``noise_rate``, ``num_channels``,
``duration_s``, ``downsample``) live in the loader signatures: a field left ``None``
is simply not passed on.
"""

from __future__ import annotations

from collections.abc import Callable

from core.data import KIND_FIELDS, DataConfig  # noqa: F401 - re-exported with the loaders
from core.errors import InputError
from stllr.data.digits import make_digits
from stllr.data.events import EventDataset, load_npz
from stllr.data.moving_edge import make_moving_edge
from stllr.data.shd import load_shd
from stllr.data.temporal import make_temporal

__all__ = ["DataConfig", "KIND_FIELDS", "LOADERS", "load_data", "load_test_data"]
#: Prefix of error messages from files named in the config (the config section name).
SECTION = "data"


Loader = Callable[[DataConfig], tuple[EventDataset, EventDataset]]


def _load_npz_pair(cfg: DataConfig) -> tuple[EventDataset, EventDataset]:
    train = load_npz(cfg.train, field=f"{SECTION}.train")
    test = load_npz(cfg.test, field=f"{SECTION}.test")
    for split, ds in (("train", train), ("test", test)):
        if cfg.num_steps is not None and ds.num_steps != cfg.num_steps:
            raise InputError(
                f"{SECTION}.num_steps: {cfg.num_steps} but {SECTION}.{split} has T = {ds.num_steps}"
            )
    if train.x.shape[1:] != test.x.shape[1:]:
        raise InputError(
            f"{SECTION}.test: per-sample shape {test.x.shape[1:]} differs from "
            f"{SECTION}.train {train.x.shape[1:]}"
        )
    return train, test


def _load_digits(cfg: DataConfig) -> tuple[EventDataset, EventDataset]:
    return make_digits(cfg.num_steps, cfg.seed)


def _load_moving_edge(cfg: DataConfig) -> tuple[EventDataset, EventDataset]:
    return make_moving_edge(
        cfg.num_train, cfg.num_test, cfg.num_steps, seed=cfg.seed, **cfg.given("size", "noise_rate")
    )


def _load_temporal(cfg: DataConfig) -> tuple[EventDataset, EventDataset]:
    return make_temporal(
        cfg.num_train, cfg.num_test, cfg.num_steps, seed=cfg.seed, **cfg.given("num_channels", "noise_rate")
    )


def _load_shd(cfg: DataConfig) -> tuple[EventDataset, EventDataset]:
    opts = cfg.given("duration_s", "downsample")
    return (
        load_shd(cfg.train, cfg.num_steps, field=f"{SECTION}.train", **opts),
        load_shd(cfg.test, cfg.num_steps, field=f"{SECTION}.test", **opts),
    )


def _load_nmnist(cfg: DataConfig) -> tuple[EventDataset, EventDataset]:
    # Imported here: tonic is optional, and only these two kinds need it.
    from stllr.data.tonic_loaders import load_nmnist

    field = f"{SECTION}.root"
    return (
        load_nmnist(cfg.root, True, cfg.num_steps, field=field),
        load_nmnist(cfg.root, False, cfg.num_steps, field=field),
    )


def _load_dvs_gesture(cfg: DataConfig) -> tuple[EventDataset, EventDataset]:
    from stllr.data.tonic_loaders import load_dvs_gesture

    field, opts = f"{SECTION}.root", cfg.given("size")
    return (
        load_dvs_gesture(cfg.root, True, cfg.num_steps, field=field, **opts),
        load_dvs_gesture(cfg.root, False, cfg.num_steps, field=field, **opts),
    )


LOADERS: dict[str, Loader] = {
    "npz": _load_npz_pair,
    "digits": _load_digits,
    "moving_edge": _load_moving_edge,
    "temporal": _load_temporal,
    "shd": _load_shd,
    "nmnist": _load_nmnist,
    "dvs_gesture": _load_dvs_gesture,
}


def load_data(cfg: DataConfig) -> tuple[EventDataset, EventDataset]:
    """Load (train, test) for ``cfg`` through :data:`LOADERS`; bad files raise InputError."""
    return LOADERS[cfg.kind](cfg)


def load_test_data(cfg: DataConfig) -> EventDataset:
    """The test split alone: file-backed kinds read only ``data.test`` (``stllr eval``
    needs no training file); generated kinds are made whole and split as usual."""
    if cfg.kind == "npz":
        test = load_npz(cfg.test, field=f"{SECTION}.test")
        if cfg.num_steps is not None and test.num_steps != cfg.num_steps:
            raise InputError(f"{SECTION}.num_steps: {cfg.num_steps} but {SECTION}.test has T = {test.num_steps}")
        return test
    if cfg.kind == "shd":
        return load_shd(cfg.test, cfg.num_steps, field=f"{SECTION}.test", **cfg.given("duration_s", "downsample"))
    return LOADERS[cfg.kind](cfg)[1]
