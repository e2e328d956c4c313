"""Every bundled config under configs/ loads, and every on-chip one passes the integer
trainer's checks (formats, constants, learning rates of the whole lr schedule) before a
user spends an epoch on it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from core.config import load_config
from core.hardware import parse_hardware

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
ALL = sorted(CONFIGS.glob("*.yaml"))


def _kind(path: Path) -> str:
    data = yaml.safe_load(path.read_text())
    if "axes" in data:
        return "sweep"
    if "network" in data:
        return "net"
    return "hardware"


def test_every_kind_of_config_is_bundled():
    kinds = {_kind(p) for p in ALL}
    assert kinds == {"sweep", "net", "hardware"}, kinds


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_bundled_config_loads(path):
    kind = _kind(path)
    if kind == "sweep":
        from sweep.spec import load_spec

        assert min(load_spec(path).sizes) >= 1  # every axis has values
    elif kind == "hardware":
        assert parse_hardware(yaml.safe_load(path.read_text())["hardware"], str(path)).clock_mhz > 0
    else:
        config = load_config(path)
        assert config.network.layers


@pytest.mark.parametrize("path", [p for p in ALL if _kind(p) == "net" and "quant" in yaml.safe_load(p.read_text())
                                  and yaml.safe_load(p.read_text()).get("train", {}).get("optimizer") != "adam"],
                         ids=lambda p: p.name)
def test_onchip_config_passes_the_integer_checks(path):
    from fixedpoint.train import build_int_network, check_int_config, check_learning_rates

    config = load_config(path)
    check_int_config(config)
    model = build_int_network(config)
    samples = getattr(config.data, "num_train", None) or 1000
    check_learning_rates(model, config, samples, config.data.num_steps)
    assert all(code > 0 for code in model.etas(config.train.batch_size, config.data.num_steps).values())
