"""NIR export/import of the float model (interop/nir_io.py, docs/nir.md).

- Round trip: ``import_nir(export_nir(net))`` and the same through an HDF5 file give the
  same config, bit-identical weights, the same resolved neuron parameters, and the same
  spikes (torch.equal) and readout on the digits test set.
- The mapping itself is checked against an independent path: a small forward-Euler
  simulator of the NIR graph written here from the NIR equations (tau, r, v_leak,
  v_threshold, v_reset, a one-step delay on the recurrent edge) in float64.
- Bad input raises a one-line InputError naming the node or the file.
"""

from __future__ import annotations

import math
import os

import h5py
import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interop import nir_io
from interop.nir_io import export_nir, import_nir, write_nir
from core.config import LearningConfig, NetworkConfig, resolve_layer
from stllr.data import make_digits
from core.errors import InputError
from stllr.learning import stllr_batch
from stllr.network import SpikingNetwork

DT = 1e-3

NETS = {
    # dense, soft reset, per-layer beta/theta overrides, a layer without bias
    "linear_soft": dict(
        input_shape=[64], neuron=dict(beta=0.9, theta=0.6, reset="soft"),
        layers=[dict(kind="linear", size=32, beta=0.8),
                dict(kind="linear", size=16, theta=0.4, bias=False),
                dict(kind="readout", size=10, beta=0.7)]),
    # recurrent, hard reset
    "recurrent_hard": dict(
        input_shape=[64], neuron=dict(beta=0.85, theta=0.5, reset="hard"),
        layers=[dict(kind="recurrent", size=24, theta=0.7), dict(kind="readout", size=10, beta=0.0)]),
    # conv: padding, stride, no bias, a per-layer reset override, Psi and factor overrides, flatten
    "conv_mixed": dict(
        input_shape=[1, 8, 8], neuron=dict(beta=0.9, theta=0.6, reset="soft"),
        layers=[dict(kind="conv2d", channels=4, kernel=3, padding=1, beta=0.75, reset="hard"),
                dict(kind="conv2d", channels=6, kernel=2, stride=2, bias=False, theta=0.45),
                dict(kind="recurrent", size=16, psi=dict(kind="triangle", scale=0.3, width=1.0),
                     factors=dict(lambda_post=0.2, lambda_pre=0.75, alpha_post=-1.0, alpha_pre=1.0)),
                dict(kind="readout", size=10, beta=0.95)]),
}
#: weight scale per net so every spiking layer fires on digits (checked below)
GAIN = {"linear_soft": 2.5, "recurrent_hard": 2.0, "conv_mixed": 2.5}


def _net(name: str, seed: int = 0, learning: LearningConfig | None = None) -> SpikingNetwork:
    torch.manual_seed(seed)
    net = SpikingNetwork(NetworkConfig(**NETS[name]), learning or LearningConfig())
    with torch.no_grad():
        for layer in net.layers[:-1]:
            layer.weight.mul_(GAIN[name])
            if layer.kind == "recurrent":
                layer.rec_weight.mul_(0.5)
    return net


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These nets are tiny: intra-op threads only cost time (a lot on a loaded machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    train, test = make_digits(20, 0)
    return train, torch.from_numpy(test.x)


def _assert_same_network(a: SpikingNetwork, b: SpikingNetwork, same_config: bool = True) -> None:
    """Bit-identical weights and identical resolved layers; with ``same_config`` also the
    same config (it differs only where the original repeats a default as an override)."""
    if same_config:
        assert b.network_config == a.network_config
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key
    for index in range(len(a.layers)):
        ra = resolve_layer(a.network_config, a.learning_config, index).model_dump()
        rb = resolve_layer(b.network_config, b.learning_config, index).model_dump()
        if ra["kind"] == "readout":  # theta is NaN there
            assert math.isnan(ra.pop("theta")) and math.isnan(rb.pop("theta"))
        assert rb == ra


def _behaviour(net: SpikingNetwork, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Readout (B, T, classes) and every spiking layer's spikes over the sample."""
    return net.forward(x), net.spikes(x)


def _assert_same_behaviour(reference: tuple, b: SpikingNetwork, x: torch.Tensor) -> None:
    y, spikes = reference
    assert torch.equal(y, b.forward(x))
    for sa, sb in zip(spikes, b.spikes(x), strict=True):
        assert torch.equal(sa, sb)


# ------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", sorted(NETS))
def test_round_trip_memory_and_file(name, digits, tmp_path):
    _, x = digits
    net = _net(name)
    reference = _behaviour(net, x)
    rates = [float(s.mean()) for s in reference[1]]
    assert all(0.01 < r < 0.9 for r in rates), rates  # the comparison means something
    back = import_nir(export_nir(net))
    _assert_same_network(net, back)
    _assert_same_behaviour(reference, back, x)
    # through write_nir (atomic) and through plain nir.write / nir.read
    from_file = import_nir(write_nir(net, tmp_path / "net.nir"))
    _assert_same_network(net, from_file)
    _assert_same_behaviour(reference, from_file, x)
    nir.write(tmp_path / "plain.nir", export_nir(net))
    from_read = import_nir(nir.read(tmp_path / "plain.nir"))
    _assert_same_network(net, from_read)


def test_briefly_trained_round_trip(digits):
    train, x = digits
    net = _net("recurrent_hard")
    initial = net.layers[0].weight.detach().clone()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for start in range(0, 32, 16):
        optimizer.zero_grad()
        stllr_batch(net, torch.from_numpy(train.x[start:start + 16]), torch.from_numpy(train.y[start:start + 16]),
                    apply_update=optimizer.step)
    assert not torch.equal(net.layers[0].weight, initial)
    back = import_nir(export_nir(net), LearningConfig())
    _assert_same_network(net, back)
    _assert_same_behaviour(_behaviour(net, x), back, x)


def test_learning_config_is_taken_not_exported():
    learning = LearningConfig(window=3, learning_signal="dfa", feedback_seed=7)
    net = _net("linear_soft", learning=learning)
    assert import_nir(export_nir(net)).learning_config == LearningConfig()
    back = import_nir(export_nir(net), learning)
    assert back.learning_config == learning
    assert torch.equal(back.feedback(0), net.feedback(0))


@pytest.mark.parametrize("dt", [1.0, 1e-4, 0.37])
def test_any_dt_round_trips(dt, tmp_path):
    net = _net("conv_mixed")
    _assert_same_network(net, import_nir(export_nir(net, dt=dt)))
    _assert_same_network(net, import_nir(write_nir(net, tmp_path / "n.nir", dt=dt)))


def test_float64_network_stays_float64():
    net = _net("recurrent_hard").double()
    back = import_nir(export_nir(net))
    _assert_same_network(net, back)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(beta=st.floats(0.0, 0.999999), beta_out=st.floats(0.0, 0.999999),
       theta=st.floats(1e-3, 8.0), reset=st.sampled_from(["soft", "hard"]))
def test_neuron_parameters_exact(beta, beta_out, theta, reset):
    cfg = NetworkConfig(input_shape=[5], neuron=dict(beta=beta, theta=theta, reset=reset),
                        layers=[dict(kind="recurrent", size=4), dict(kind="readout", size=3, beta=beta_out)])
    net = SpikingNetwork(cfg, LearningConfig())
    _assert_same_network(net, import_nir(export_nir(net)), same_config=False)


def test_beta_needs_the_metadata():
    """beta -> tau -> beta is not exact in float64; the metadata makes the round trip exact."""
    inexact = [b for b in np.linspace(0.5, 0.99, 200) if 1.0 - DT / (DT / (1.0 - b)) != b]
    assert inexact  # why stllr_beta exists
    beta = float(inexact[0])
    cfg = NetworkConfig(input_shape=[4], neuron=dict(beta=beta), layers=[dict(kind="linear", size=3),
                                                                         dict(kind="readout", size=2)])
    back = import_nir(export_nir(SpikingNetwork(cfg, LearningConfig())))
    assert back.layers[0].params.beta == beta


# ------------------------------------------------------------- the mapping itself


def test_graph_structure_and_fields():
    net = _net("conv_mixed")
    g = export_nir(net, dt=DT)
    kinds = {name: type(node).__name__ for name, node in g.nodes.items()}
    assert kinds == {
        "input": "Input", "layer0_synapse": "Conv2d", "layer0_lif": "LIF",
        "layer1_synapse": "Conv2d", "layer1_lif": "LIF",
        "layer2_flatten": "Flatten", "layer2_synapse": "Affine", "layer2_lif": "LIF", "layer2_rec": "Linear",
        "layer3_synapse": "Affine", "layer3_li": "LI", "output": "Output"}
    assert ("layer2_lif", "layer2_rec") in g.edges and ("layer2_rec", "layer2_lif") in g.edges
    assert list(g.nodes["input"].input_type["input"]) == [1, 8, 8]
    assert list(g.nodes["output"].output_type["output"]) == [10]
    assert list(g.nodes["layer2_flatten"].output_type["output"]) == [6 * 4 * 4]
    conv = g.nodes["layer1_synapse"]
    assert conv.stride == (2, 2) and conv.padding == (0, 0) and conv.metadata == {"stllr_bias": "none"}
    assert not conv.bias.any()
    for index, neuron_name in enumerate(["layer0_lif", "layer1_lif", "layer2_lif", "layer3_li"]):
        node, p = g.nodes[neuron_name], net.layers[index].params
        assert node.tau.shape == tuple(net.layers[index].out_shape)
        np.testing.assert_array_equal(node.tau, DT / (1 - p.beta))
        np.testing.assert_array_equal(node.r, node.tau / DT)
        assert not node.v_leak.any()
        assert node.metadata["stllr_beta"] == p.beta
        if isinstance(node, nir.LIF):
            np.testing.assert_array_equal(node.v_threshold, p.theta)
            assert not node.v_reset.any()
            assert node.metadata["stllr_reset"] == p.reset
    assert g.nodes["layer0_lif"].metadata["stllr_reset"] == "hard"
    assert g.nodes["layer1_lif"].metadata["stllr_reset"] == "soft"
    assert g.metadata["dt"] == DT and g.metadata["stllr_format"] == nir_io.FORMAT


def _simulate_nir(graph: nir.NIRGraph, x: torch.Tensor, dt: float, soft_from_metadata: bool = True):
    """Forward Euler of a NIR graph, from the NIR equations only, in float64.

    Each step visits nodes breadth-first from the Input; a node sums the outputs of its
    sources, taking this step's value where the source was already visited and last
    step's otherwise (the recurrent edge: o[t-1]). LIF: v += dt/tau (v_leak - v + r I);
    spike if v > v_threshold; v = v_reset (or v - v_threshold when metadata says soft).
    """
    order, seen = [], set()
    frontier = [name for name, node in graph.nodes.items() if isinstance(node, nir.Input)]
    while frontier:
        name = frontier.pop(0)
        if name in seen:
            continue
        seen.add(name)
        order.append(name)
        frontier += [b for a, b in graph.edges if a == name]
    sources = {name: [a for a, b in graph.edges if b == name] for name in graph.nodes}
    t64 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    batch = x.shape[0]
    prev: dict[str, torch.Tensor] = {}
    state: dict[str, torch.Tensor] = {}
    outputs, spikes = [], {n: [] for n, node in graph.nodes.items() if isinstance(node, nir.LIF)}
    for t in range(x.shape[1]):
        now: dict[str, torch.Tensor] = {}
        for name in order:
            node = graph.nodes[name]
            if isinstance(node, nir.Input):
                now[name] = x[:, t].to(torch.float64).reshape(batch, *node.input_type["input"])
                continue
            parts = [now[s] if s in now else prev.get(s) for s in sources[name]]
            parts = [p for p in parts if p is not None]
            inp = sum(parts[1:], parts[0])
            if isinstance(node, nir.Affine):
                out = inp @ t64(node.weight).T + t64(node.bias)
            elif isinstance(node, nir.Linear):
                out = inp @ t64(node.weight).T
            elif isinstance(node, nir.Conv2d):
                out = F.conv2d(inp, t64(node.weight), t64(node.bias), tuple(node.stride), tuple(node.padding))
            elif isinstance(node, nir.Flatten):
                out = inp.reshape(batch, -1)
            elif isinstance(node, (nir.LIF, nir.LI)):
                v = state.get(name, torch.zeros_like(inp))
                v = v + dt / t64(node.tau) * (t64(node.v_leak) - v + t64(node.r) * inp)
                if isinstance(node, nir.LIF):
                    threshold = t64(node.v_threshold)
                    out = (v > threshold).to(torch.float64)
                    if soft_from_metadata and node.metadata.get("stllr_reset") == "soft":
                        v = v - threshold * out
                    else:
                        v = torch.where(out > 0, t64(node.v_reset), v)
                    spikes[name].append(out)
                else:
                    out = v
                state[name] = v
            elif isinstance(node, nir.Output):
                outputs.append(inp)
                out = inp
            else:  # pragma: no cover
                raise AssertionError(type(node).__name__)
            now[name] = out
        prev = now
    return torch.stack(outputs, 1), [torch.stack(s, 1) for s in spikes.values()]


@pytest.mark.parametrize("name", sorted(NETS))
def test_nir_semantics_match_the_float_model(name, digits):
    """An independent Euler simulation of the exported graph equals our float64 network."""
    _, x = digits
    x = x[:64]
    net = _net(name).double()
    y_nir, spikes_nir = _simulate_nir(export_nir(net, DT), x, DT)
    y = net.forward(x)
    assert float((y - y_nir).abs().max()) <= 1e-9 * float(y.abs().max())
    for ours, theirs in zip(net.spikes(x), spikes_nir, strict=True):
        assert torch.equal(ours, theirs.reshape(ours.shape))


def test_backend_ignoring_metadata_sees_hard_reset(digits):
    """Documented limit: without the metadata a soft-reset layer runs as a hard reset."""
    _, x = digits
    net = _net("linear_soft").double()
    y_nir, _ = _simulate_nir(export_nir(net, DT), x[:32], DT, soft_from_metadata=False)
    assert not torch.allclose(net.forward(x[:32]), y_nir)


def test_foreign_graph_without_metadata(digits):
    """A plain NIR chain (names from NIRGraph.from_list, no metadata) imports; beta from tau."""
    _, x = digits
    rng = np.random.default_rng(0)
    beta, beta_out, theta = 0.8, 0.6, 0.5
    tau, tau_out = DT / (1 - beta), DT / (1 - beta_out)
    w1 = (rng.standard_normal((20, 64)) * 0.3).astype(np.float32)
    w2 = (rng.standard_normal((10, 20)) * 0.3).astype(np.float32)
    b1 = np.zeros(20, np.float32)
    full = lambda n, v: np.full(n, v, dtype=np.float64)  # noqa: E731
    graph = nir.NIRGraph.from_list(
        nir.Affine(weight=w1, bias=b1),
        nir.LIF(tau=full(20, tau), r=full(20, tau / DT), v_leak=full(20, 0.0), v_threshold=full(20, theta)),
        nir.Linear(weight=w2),
        nir.LI(tau=full(10, tau_out), r=full(10, tau_out / DT), v_leak=full(10, 0.0)),
    )
    net = import_nir(graph)
    p0, p1 = net.layers[0].params, net.layers[1].params
    assert (p0.reset, p0.theta) == ("hard", theta)  # NIR's own reset semantics
    assert abs(p0.beta - beta) <= 1e-15 and abs(p1.beta - beta_out) <= 1e-15
    assert net.layers[1].bias is None
    assert np.array_equal(net.layers[0].weight.detach().numpy(), w1)
    y_nir, spikes_nir = _simulate_nir(graph, x[:32], DT)
    y = net.double().forward(x[:32])
    assert float((y - y_nir).abs().max()) <= 1e-9 * float(y.abs().max())
    assert torch.equal(net.spikes(x[:32])[0], spikes_nir[0])


# -------------------------------------------------------------------- atomic write


def test_write_nir_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "net.nir"
    write_nir(_net("linear_soft"), path)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(nir_io.nir, "write", broken)
    with pytest.raises(RuntimeError):
        write_nir(_net("recurrent_hard"), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["net.nir"]


def test_write_nir_missing_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        write_nir(_net("linear_soft"), tmp_path / "nope" / "net.nir")


def test_export_rejects_bad_dt():
    with pytest.raises(ValueError, match="dt"):
        export_nir(_net("linear_soft"), dt=0.0)


# ------------------------------------------------------------------------ bad input


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


def _replace(graph: nir.NIRGraph, name: str, node: nir.NIRNode) -> nir.NIRGraph:
    nodes = dict(graph.nodes)
    nodes[name] = node
    return nir.NIRGraph(nodes=nodes, edges=list(graph.edges), metadata=dict(graph.metadata), type_check=False)


def _cuba(n: int) -> nir.CubaLIF:
    ones = np.ones(n)
    return nir.CubaLIF(tau_syn=ones, tau_mem=ones, r=ones, v_leak=0 * ones, v_threshold=ones)


def test_unsupported_node_in_memory():
    graph = _replace(export_nir(_net("linear_soft")), "layer0_lif", _cuba(32))
    with pytest.raises(InputError) as error:
        import_nir(graph)
    message = _one_line(error)
    assert "'layer0_lif'" in message and "CubaLIF" in message


def test_unsupported_node_in_file(tmp_path):
    path = tmp_path / "cuba.nir"
    nir.write(path, _replace(export_nir(_net("linear_soft")), "layer0_lif", _cuba(32)))
    with pytest.raises(InputError) as error:
        import_nir(path)
    message = _one_line(error)
    assert str(path) in message and "'layer0_lif'" in message and "CubaLIF" in message


def test_node_type_unknown_to_nir_in_file(tmp_path):
    path = tmp_path / "odd.nir"
    write_nir(_net("linear_soft"), path)
    with h5py.File(path, "r+") as handle:
        group = handle["node"]["nodes"]["layer1_synapse"]
        del group["type"]
        group.create_dataset("type", data="SpikingTransformer", dtype=h5py.string_dtype())
    with pytest.raises(InputError) as error:
        import_nir(path)
    message = _one_line(error)
    assert str(path) in message and "'layer1_synapse'" in message and "SpikingTransformer" in message


def test_missing_file(tmp_path):
    path = tmp_path / "missing.nir"
    with pytest.raises(InputError) as error:
        import_nir(path)
    assert str(path) in _one_line(error) and "not found" in str(error.value)


def test_not_an_hdf5_file(tmp_path):
    path = tmp_path / "text.nir"
    path.write_text("hello")
    with pytest.raises(InputError) as error:
        import_nir(str(path))
    assert str(path) in _one_line(error)


def test_metadata_beta_disagreeing_with_tau():
    graph = export_nir(_net("recurrent_hard"))
    graph.nodes["layer1_li"].metadata["stllr_beta"] = 0.5
    with pytest.raises(InputError) as error:
        import_nir(graph)
    assert "'layer1_li'" in _one_line(error)
    # a dt the graph was not made with breaks the input gain r dt/tau = 1 first
    with pytest.raises(InputError) as error:
        import_nir(export_nir(_net("recurrent_hard"), dt=DT), dt=2 * DT)
    assert "'layer0_lif'" in _one_line(error) and "dt = 0.002" in str(error.value)


def test_per_neuron_parameters_rejected():
    graph = export_nir(_net("linear_soft"))
    graph.nodes["layer1_lif"].v_threshold[3] = 9.0
    with pytest.raises(InputError) as error:
        import_nir(graph)
    message = _one_line(error)
    assert "'layer1_lif'" in message and "v_threshold" in message


def test_input_gain_must_be_one():
    graph = export_nir(_net("linear_soft"))
    graph.nodes["layer0_lif"].r *= 2
    with pytest.raises(InputError) as error:
        import_nir(graph)
    assert "'layer0_lif'" in _one_line(error) and "r*dt/tau" in str(error.value)


def test_node_off_the_chain():
    graph = export_nir(_net("linear_soft"))
    nodes = dict(graph.nodes)
    nodes["stray"] = nir.Linear(weight=np.ones((2, 10), np.float32))
    edges = list(graph.edges) + [("layer2_li", "stray")]
    with pytest.raises(InputError) as error:
        import_nir(nir.NIRGraph(nodes=nodes, edges=edges, metadata=graph.metadata, type_check=False))
    assert "'layer2_li'" in _one_line(error)


def test_readout_must_be_last():
    graph = export_nir(_net("linear_soft"))
    edges = [e for e in graph.edges if e != ("layer2_li", "output")]
    nodes = {k: v for k, v in graph.nodes.items() if k not in ("output", "layer2_synapse", "layer2_li")}
    nodes["output"] = nir.Output(output_type=np.array([16]))
    edges = [e for e in edges if "layer2" not in e[0] and "layer2" not in e[1]] + [("layer1_lif", "output")]
    with pytest.raises(InputError) as error:
        import_nir(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))
    assert "'output'" in _one_line(error) and "LI readout" in str(error.value)
