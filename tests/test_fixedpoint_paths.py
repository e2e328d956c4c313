"""The integer model's numba fast paths == its numpy reference paths, bit for bit.

``int_layer_step`` runs the forward through one fused numba kernel (``_lif_fused``), the
Psi table through ``psi_lookup``, the trace updates of a layer through one ``trace_steps``
call (else ``trace_step`` per trace) and requantizations through ``round_overflow``; each
falls back to a numpy path for what the fast path does not do (a ``raise`` policy that
fires, stochastic rounding, unusual shifts). The emulation tests reach the numpy paths
only in those rare cases, so here every case runs twice, once with the fast paths
switched off, and every logged tensor, weight, lane, overflow count and op count must
agree. (A changed soft reset in the numpy path fails this test.)
"""

from __future__ import annotations

import contextlib

from unittest import mock

import numpy as np
from hypothesis import given

from fixedpoint import network as int_network
from core.quant import QuantConfig
from core.overflow import FixedOverflowError
from core.errors import InputError
from tests.test_fixedpoint_emulation import build, case, hyp


def _numpy_paths():
    """Patches that make every fast path decline, so the numpy reference runs."""
    return (mock.patch.object(int_network, "_lif_fused", lambda *args, **kwargs: None),
            mock.patch.object(int_network, "trace_step", lambda *args, **kwargs: (0, False, 0)),
            mock.patch.object(int_network, "trace_steps", lambda *args, **kwargs: None),
            mock.patch.object(int_network, "psi_lookup", lambda *args, **kwargs: False),
            mock.patch.object(int_network, "round_overflow", lambda *args, **kwargs: (0, False)))


def _run(net, quant, x, y, lr, train, optimizer):
    model = int_network.IntNetwork.from_float(net, quant, lr=lr, **optimizer)
    try:
        result = model.run(x, y, train=train, log=True)
    except FixedOverflowError as error:
        return model, None, str(error)
    return model, result, None


def _check(data) -> None:
    network, learning, quant, x, y, scale, seed, lr, optimizer = data
    net = build(network, learning, scale, seed)
    try:
        q = QuantConfig(**quant)
        int_network.IntNetwork.from_float(net, q, lr=lr, **optimizer)
    except InputError:
        return  # a drawn constant does not fit its drawn format: validation's job
    for train in (True, False):
        fast, fast_result, fast_error = _run(net, q, x, y, lr, train, optimizer)
        with contextlib.ExitStack() as patches:
            for patch in _numpy_paths():
                patches.enter_context(patch)
            slow, slow_result, slow_error = _run(net, q, x, y, lr, train, optimizer)
        assert fast_error == slow_error
        if fast_error is not None:
            continue
        assert set(fast_result.log) == set(slow_result.log)
        for key in sorted(fast_result.log):
            assert np.array_equal(fast_result.log[key], slow_result.log[key]), key
        for a, b in zip(fast.params.layers, slow.params.layers):
            for tensor in ("weight", "rec_weight", "bias"):
                if getattr(a, tensor) is not None:
                    assert np.array_equal(getattr(a, tensor), getattr(b, tensor)), (a.name, tensor)
        assert np.array_equal(fast.lanes, slow.lanes)
        assert fast.overflow.rows() == slow.overflow.rows()
        assert fast.ops.rows() == slow.ops.rows()


@hyp(120)
@given(case(["linear", "recurrent", "readout"]))
def test_dense_fast_paths_equal_numpy_paths(data):
    _check(data)


@hyp(40)
@given(case(["conv2d"]))
def test_conv_fast_paths_equal_numpy_paths(data):
    _check(data)
