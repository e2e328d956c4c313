"""Export a float :class:`~stllr.network.SpikingNetwork` to NIR and import it back.

NIR (the Neuromorphic Intermediate Representation, ``nir`` 1.0) describes neurons in
continuous time. Our LIF is discrete (STLLR.md)::

    u[t] = beta v[t-1] + W x[t] + b  (+ W_rec o[t-1])
    o[t] = 1 if u[t] - theta > 0 else 0
    v[t] = u[t] - theta o[t]   (soft)   or   u[t] (1 - o[t])   (hard)

NIR's LIF is ``tau dv/dt = (v_leak - v) + r I``; spike when ``v > v_threshold``, then
``v = v_reset``. Forward Euler with step ``dt``, the input taken at the new step::

    v[t] = v[t-1] + (dt/tau) (v_leak - v[t-1] + r I[t])
         = (1 - dt/tau) v[t-1] + (dt/tau) r I[t] + (dt/tau) v_leak

reproduces ours exactly with the mapping (all arrays float64, one value per neuron,
equal within a layer):

=================  ====================================  ===============================
ours               NIR field                             back (import)
=================  ====================================  ===============================
beta               ``tau = dt / (1 - beta)``             ``beta = 1 - dt / tau`` (*)
input gain 1       ``r = tau / dt``                      check ``r dt / tau = 1`` (1e-9)
no leak target     ``v_leak = 0``                        must be 0
theta              ``v_threshold = theta``               exact
hard reset         ``v_reset = 0`` (NIR's own reset)     exact
soft reset         ``v_reset = 0`` + metadata (**)       metadata ``stllr_reset``
readout beta_out   ``LI``: tau, r, v_leak as above       as above, no threshold
W, b (dense)       ``Affine(weight, bias)``              float32, bit-identical
W (dense, no b)    ``Linear(weight)``                    bias = False
W, b (conv2d)      ``Conv2d`` stride, padding, bias;     no bias: zeros + metadata
                   dilation 1, groups 1                  ``stllr_bias = "none"``
conv -> dense      ``Flatten(start_dim=0, end_dim=-1)``  (C, H, W) row-major
W_rec              ``Linear`` in a cycle LIF -> rec -> LIF, summed with the feed-forward
                   current at the LIF input; the cycle carries o[t-1] (one-step delay)
=================  ====================================  ===============================

(*) ``beta -> tau -> beta`` is not exact in float64 (about one value in ten is off by
an ulp), so every neuron node also carries the exact discrete ``stllr_beta`` in its
metadata; import uses it when it agrees with ``1 - dt/tau`` to 1e-9, and rejects the
graph when it does not.

(**) NIR 1.0 neurons only reset *to* ``v_reset``; subtracting theta is not expressible
in the LIF node. A soft-reset layer is exported with ``v_reset = 0`` and metadata
``stllr_reset = "soft"``; a NIR backend that ignores metadata (as NIR asks backends to
do) simulates it with a hard reset, which differs after the first spike.

Also carried only in metadata (training-side, not part of NIR): each LIF's Psi
(``stllr_psi``), per-layer S-TLLR factor overrides (``stllr_factors``), and in the graph
metadata ``dt``, the network-wide neuron defaults and Psi. The learning config is not
exported; :func:`import_nir` takes one (default ``LearningConfig()``).

Node names: ``input``, ``layer{i}_flatten``, ``layer{i}_synapse``, ``layer{i}_lif`` or
``layer{i}_li``, ``layer{i}_rec``, ``output``. Import does not rely on names: it walks
the chain from the ``Input`` node.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import h5py
import nir
import numpy as np
import torch
from pydantic import ValidationError

from core.config import (Conv2dLayerConfig, LearningConfig, NetworkConfig, format_validation_error,
                          layer_output_shape)
from core.atomic import atomic_path
from core.errors import InputError
from stllr.network import SpikingNetwork

__all__ = ["export_nir", "write_nir", "import_nir", "read_nir", "SUPPORTED_NODES", "FORMAT"]

#: Graph metadata tag written by :func:`export_nir`.
FORMAT = "stllr-nir/1"
#: NIR node types :func:`import_nir` understands.
SUPPORTED_NODES = ("Input", "Output", "Affine", "Linear", "Conv2d", "Flatten", "LIF", "LI")
#: Agreement required between a metadata beta and ``1 - dt/tau``, and between ``r dt/tau`` and 1.
TOLERANCE = 1e-9


# ------------------------------------------------------------------------- export


def _weights(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().copy()


def _neuron_arrays(shape: tuple[int, ...], beta: float, dt: float) -> dict[str, np.ndarray]:
    tau = dt / (1.0 - beta)
    full = lambda value: np.full(shape, value, dtype=np.float64)  # noqa: E731
    return {"tau": full(tau), "r": full(tau / dt), "v_leak": full(0.0)}


def _factors_dict(factors) -> dict[str, float]:
    return {k: float(v) for k, v in factors.model_dump().items() if v is not None}


def export_nir(net: SpikingNetwork, dt: float = 1e-3) -> nir.NIRGraph:
    """The network as a NIR graph (mapping in the module docstring).

    Args:
        net: a float :class:`SpikingNetwork`; weights are copied (dtype kept, float32 normally).
        dt: the Euler step in NIR's time unit (seconds by convention), > 0; only the
            ratio dt/tau matters to the discrete model.
    Returns:
        A type-checked :class:`nir.NIRGraph` with metadata ``stllr_format``, ``dt``,
        ``stllr_neuron`` and ``stllr_psi``.
    """
    if not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
        raise ValueError(f"dt: must be a finite number > 0, got {dt!r}")
    dt = float(dt)
    cfg = net.network_config
    shape = tuple(cfg.input_shape)
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array(shape))}
    edges: list[tuple[str, str]] = []
    prev = "input"
    for index, (layer, layer_cfg) in enumerate(zip(net.layers, cfg.layers)):
        p, name = layer.params, f"layer{index}"
        if layer.kind != "conv2d" and len(shape) > 1:
            nodes[f"{name}_flatten"] = nir.Flatten(input_type=np.array(shape), start_dim=0, end_dim=-1)
            edges.append((prev, f"{name}_flatten"))
            prev, shape = f"{name}_flatten", (math.prod(shape),)
        weight = _weights(layer.weight)
        bias = _weights(layer.bias) if layer.bias is not None else None
        if layer.kind == "conv2d":
            synapse = nir.Conv2d(
                input_shape=tuple(int(s) for s in shape[1:]), weight=weight,
                stride=(layer.stride, layer.stride), padding=(layer.padding, layer.padding),
                dilation=(1, 1), groups=1, bias=bias if bias is not None else np.zeros(weight.shape[0], weight.dtype),
                metadata={} if bias is not None else {"stllr_bias": "none"},
            )
        elif bias is not None:
            synapse = nir.Affine(weight=weight, bias=bias)
        else:
            synapse = nir.Linear(weight=weight)
        nodes[f"{name}_synapse"] = synapse
        edges.append((prev, f"{name}_synapse"))
        out_shape = tuple(layer.out_shape)
        meta: dict[str, Any] = {"stllr_beta": float(p.beta)}
        if layer_cfg.factors is not None:
            meta["stllr_factors"] = _factors_dict(layer_cfg.factors)
        if layer.kind == "readout":
            neuron_name = f"{name}_li"
            nodes[neuron_name] = nir.LI(**_neuron_arrays(out_shape, p.beta, dt), metadata=meta)
        else:
            neuron_name = f"{name}_lif"
            meta.update(stllr_reset=p.reset, stllr_psi=p.psi.model_dump())
            nodes[neuron_name] = nir.LIF(
                **_neuron_arrays(out_shape, p.beta, dt),
                v_threshold=np.full(out_shape, float(p.theta), dtype=np.float64),
                v_reset=np.zeros(out_shape, dtype=np.float64), metadata=meta,
            )
        edges.append((f"{name}_synapse", neuron_name))
        if layer.kind == "recurrent":
            nodes[f"{name}_rec"] = nir.Linear(weight=_weights(layer.rec_weight))
            edges += [(neuron_name, f"{name}_rec"), (f"{name}_rec", neuron_name)]
        prev, shape = neuron_name, out_shape
    nodes["output"] = nir.Output(output_type=np.array(shape))
    edges.append((prev, "output"))
    metadata = {
        "stllr_format": FORMAT,
        "dt": dt,
        "stllr_neuron": cfg.neuron.model_dump(),
        "stllr_psi": cfg.psi.model_dump(),
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=True)


def write_nir(net: SpikingNetwork, path: str | Path, dt: float = 1e-3) -> Path:
    """Export ``net`` and write it with :func:`nir.write` (HDF5), atomically.

    The graph goes to a temp file in the target folder, which is then renamed over
    ``path``: readers never see a half-written file. Returns the path.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"{path}: folder {path.parent} does not exist")
    graph = export_nir(net, dt)
    with atomic_path(path) as tmp:
        nir.write(str(tmp), graph)
    return path


# ------------------------------------------------------------------------- import


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _unsupported(name: str, type_name: str) -> InputError:
    return InputError(f"NIR node {name!r}: unsupported node type {type_name} "
                      f"(supported: {', '.join(SUPPORTED_NODES)})")


def read_nir(path: str | Path) -> nir.NIRGraph:
    """Read a NIR HDF5 file with :func:`nir.read`; bad files raise a one-line InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: NIR file not found")
    try:
        with h5py.File(path, "r") as handle:
            if "node" not in handle or "nodes" not in handle["node"]:
                raise InputError(f"{path}: not a NIR graph file (no node/nodes group)")
            stored = handle["node"]["nodes"]
            for name in stored:  # name the node before nir.read meets a type it may not know
                type_name = stored[name]["type"][()] if "type" in stored[name] else b"?"
                type_name = type_name.decode() if isinstance(type_name, bytes) else str(type_name)
                if type_name not in SUPPORTED_NODES:
                    raise InputError(f"{path}: {_unsupported(name, type_name)}")
    except OSError:
        raise InputError(f"{path}: not an HDF5 file") from None
    try:
        return nir.read(path)
    except (ValueError, KeyError, AssertionError, TypeError, OSError) as error:
        raise InputError(f"{path}: NIR graph could not be read: {_first_line(error)}") from None


def _uniform(node_name: str, field: str, values: Any) -> float:
    """The one value of a per-neuron array that must be equal within a layer."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise InputError(f"NIR node {node_name!r}: {field} is empty")
    first = float(array.flat[0])
    if not np.all(array == first):
        raise InputError(f"NIR node {node_name!r}: {field} differs between neurons; "
                         "only one value per layer is supported")
    return first


def _meta_float(node_name: str, meta: dict, key: str) -> float | None:
    if key not in meta:
        return None
    try:
        return float(meta[key])
    except (TypeError, ValueError):
        raise InputError(f"NIR node {node_name!r}: metadata {key} is not a number") from None


def _meta_dict(node_name: str, meta: dict, key: str) -> dict | None:
    if key not in meta:
        return None
    value = meta[key]
    if not isinstance(value, dict):
        raise InputError(f"NIR node {node_name!r}: metadata {key} is not a mapping")
    return {str(k): (v.decode() if isinstance(v, bytes) else v.item() if isinstance(v, np.generic) else v)
            for k, v in value.items()}


def _meta_str(meta: dict, key: str) -> str | None:
    value = meta.get(key)
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode()
    return str(value.item() if isinstance(value, np.ndarray) else value)


def _neuron_params(name: str, node, dt: float) -> dict[str, Any]:
    """beta (and for LIF theta and reset) of one neuron node, checked against the mapping."""
    meta = node.metadata if isinstance(node.metadata, dict) else {}
    tau = _uniform(name, "tau", node.tau)
    r = _uniform(name, "r", node.r)
    if _uniform(name, "v_leak", node.v_leak) != 0.0:
        raise InputError(f"NIR node {name!r}: v_leak must be 0 (our neurons have no leak target)")
    if not (tau > 0 and math.isfinite(tau)):
        raise InputError(f"NIR node {name!r}: tau must be finite and > 0, got {tau}")
    if abs(r * dt / tau - 1.0) > TOLERANCE:
        raise InputError(f"NIR node {name!r}: input gain r*dt/tau = {r * dt / tau!r} with dt = {dt!r}; "
                         "must be 1 (r = tau/dt)")
    beta = 1.0 - dt / tau
    exact = _meta_float(name, meta, "stllr_beta")
    if exact is not None:
        if abs(exact - beta) > TOLERANCE:
            raise InputError(f"NIR node {name!r}: metadata stllr_beta = {exact!r} disagrees with "
                             f"1 - dt/tau = {beta!r} (dt = {dt!r})")
        beta = exact
    params: dict[str, Any] = {"beta": beta}
    factors = _meta_dict(name, meta, "stllr_factors")
    if factors is not None:
        params["factors"] = factors
    if isinstance(node, nir.LIF):
        if _uniform(name, "v_reset", node.v_reset) != 0.0:
            raise InputError(f"NIR node {name!r}: v_reset must be 0 (hard reset sets v = 0)")
        params["theta"] = _uniform(name, "v_threshold", node.v_threshold)
        reset = _meta_str(meta, "stllr_reset") or "hard"  # NIR's own semantics: reset to v_reset
        if reset not in ("soft", "hard"):
            raise InputError(f"NIR node {name!r}: metadata stllr_reset must be soft or hard, got {reset!r}")
        params["reset"] = reset
        psi = _meta_dict(name, meta, "stllr_psi")
        if psi is not None:
            params["psi"] = psi
    return params


def _pair(name: str, field: str, value: Any) -> tuple[int, int]:
    array = np.atleast_1d(np.asarray(value)).astype(np.int64).ravel()
    if array.size == 1:
        array = np.repeat(array, 2)
    if array.size != 2:
        raise InputError(f"NIR node {name!r}: {field} must be one or two integers, got {value!r}")
    return int(array[0]), int(array[1])


def _conv_geometry(name: str, node: nir.Conv2d, shape: tuple[int, ...]) -> dict[str, int]:
    weight = np.asarray(node.weight)
    if len(shape) != 3 or weight.ndim != 4 or shape[0] != weight.shape[1]:
        raise InputError(f"NIR node {name!r}: Conv2d weight {list(weight.shape)} does not fit "
                         f"input shape {list(shape)}")
    if weight.shape[2] != weight.shape[3]:
        raise InputError(f"NIR node {name!r}: only square kernels are supported, got {list(weight.shape[2:])}")
    if int(np.asarray(node.groups)) != 1 or _pair(name, "dilation", node.dilation) != (1, 1):
        raise InputError(f"NIR node {name!r}: only groups = 1 and dilation = 1 are supported")
    kernel = int(weight.shape[2])
    stride = _pair(name, "stride", node.stride)
    padding = node.padding.decode() if isinstance(node.padding, bytes) else node.padding
    if isinstance(padding, np.ndarray) and padding.dtype.kind in "SUO":
        padding = str(padding.item())
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same" and stride == (1, 1) and kernel % 2 == 1:
            padding = ((kernel - 1) // 2,) * 2
        else:
            raise InputError(f"NIR node {name!r}: padding {padding!r} is supported only as 'valid', "
                             "or 'same' with stride 1 and an odd kernel")
    padding = _pair(name, "padding", padding)
    if stride[0] != stride[1] or padding[0] != padding[1]:
        raise InputError(f"NIR node {name!r}: stride and padding must be equal in both dimensions")
    if node.input_shape is not None and tuple(int(s) for s in np.asarray(node.input_shape).ravel()) != shape[1:]:
        raise InputError(f"NIR node {name!r}: input_shape {list(np.asarray(node.input_shape))} "
                         f"does not match the incoming shape {list(shape[1:])}")
    return {"channels": int(weight.shape[0]), "kernel": kernel, "stride": stride[0], "padding": padding[0]}


def _conv_output_shape(name: str, layer: dict, shape: tuple[int, ...]) -> tuple[int, ...]:
    geometry = {k: layer[k] for k in ("kind", "channels", "kernel", "stride", "padding")}
    try:
        return layer_output_shape(Conv2dLayerConfig(**geometry), shape, name)
    except (ValueError, ValidationError) as error:
        raise InputError(f"NIR node {name!r}: {_first_line(error)}") from None


def _walk(graph: nir.NIRGraph, dt: float) -> tuple[list[int], list[dict], list[dict]]:
    """Follow the chain Input -> [Flatten] -> synapse -> neuron (-> rec cycle) ... -> Output.

    Returns the input shape, the layer configs (as dicts) and, per layer, the NIR arrays
    to load (weight, bias, rec_weight).
    """
    nodes = graph.nodes
    for name, node in nodes.items():
        if type(node).__name__ not in SUPPORTED_NODES:
            raise _unsupported(name, type(node).__name__)
    succ: dict[str, list[str]] = {name: [] for name in nodes}
    pred: dict[str, list[str]] = {name: [] for name in nodes}
    for edge in graph.edges:
        src, dst = (e.decode() if isinstance(e, bytes) else str(e) for e in edge)
        for end in (src, dst):
            if end not in nodes:
                raise InputError(f"NIR graph: edge ({src!r}, {dst!r}) names a missing node {end!r}")
        if dst in succ[src]:
            raise InputError(f"NIR graph: duplicate edge ({src!r}, {dst!r})")
        succ[src].append(dst)
        pred[dst].append(src)
    inputs = [n for n, node in nodes.items() if isinstance(node, nir.Input)]
    outputs = [n for n, node in nodes.items() if isinstance(node, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise InputError(f"NIR graph: expected one Input and one Output node, "
                         f"found {len(inputs)} and {len(outputs)}")

    def only(items: list[str], where: str, what: str) -> str:
        if len(items) != 1:
            raise InputError(f"NIR node {where!r}: expected one {what}, found {len(items)} {sorted(items)}")
        return items[0]

    pos = inputs[0]
    shape = tuple(int(s) for s in np.asarray(nodes[pos].input_type["input"]).ravel())
    input_shape = list(shape)
    visited, layers, arrays = {pos}, [], []
    rec_of_pos: str | None = None
    while True:
        name = only([s for s in succ[pos] if s != rec_of_pos], pos, "successor on the layer chain")
        node = nodes[name]
        if name in visited:
            raise InputError(f"NIR node {name!r}: the layer chain loops back here")
        visited.add(name)
        if [p for p in pred[name] if p != pos]:
            raise InputError(f"NIR node {name!r}: unexpected extra inputs {sorted(set(pred[name]) - {pos})}")
        if isinstance(node, nir.Output):
            if not layers or layers[-1]["kind"] != "readout":
                raise InputError(f"NIR node {name!r}: the last layer before Output must be an LI readout")
            break
        if layers and layers[-1]["kind"] == "readout":
            raise InputError(f"NIR node {name!r}: the LI readout must be the last layer before Output")
        if isinstance(node, nir.Flatten):
            start, end = int(node.start_dim), int(node.end_dim)
            if start != 0 or end not in (-1, len(shape) - 1):
                raise InputError(f"NIR node {name!r}: only a full Flatten (start_dim 0, end_dim -1) is supported")
            pos, rec_of_pos, shape = name, None, (math.prod(shape),)
            continue
        if not isinstance(node, (nir.Affine, nir.Linear, nir.Conv2d)):
            raise InputError(f"NIR node {name!r}: expected Affine, Linear, Conv2d or Flatten here, "
                             f"got {type(node).__name__}")
        weight = np.asarray(node.weight)
        bias = np.asarray(node.bias) if isinstance(node, (nir.Affine, nir.Conv2d)) else None
        neuron_name = only(succ[name], name, "successor (a LIF or LI neuron)")
        neuron = nodes[neuron_name]
        if not isinstance(neuron, (nir.LIF, nir.LI)):
            raise InputError(f"NIR node {neuron_name!r}: expected LIF or LI after synapse {name!r}, "
                             f"got {type(neuron).__name__}")
        visited.add(neuron_name)
        layer: dict[str, Any] = {"bias": bias is not None}
        if isinstance(node, nir.Conv2d):
            layer.update(kind="conv2d", **_conv_geometry(name, node, shape))
            if (node.metadata or {}).get("stllr_bias") in ("none", b"none") and not np.any(bias):
                layer["bias"], bias = False, None
        else:
            if weight.ndim != 2 or weight.shape[1] != math.prod(shape):
                raise InputError(f"NIR node {name!r}: weight {list(weight.shape)} does not fit "
                                 f"input shape {list(shape)}")
            layer.update(kind="linear", size=int(weight.shape[0]))
        out_shape = tuple(int(s) for s in np.shape(neuron.tau))
        rec_name, rec_weight = None, None
        extra = [p for p in pred[neuron_name] if p != name]
        if extra:
            rec_name = only(extra, neuron_name, "recurrent input")
            rec = nodes[rec_name]
            if not isinstance(rec, (nir.Linear, nir.Affine)) or pred[rec_name] != [neuron_name] \
                    or succ[rec_name] != [neuron_name]:
                raise InputError(f"NIR node {rec_name!r}: a recurrent input must be a Linear fed only by "
                                 f"{neuron_name!r} and feeding only it")
            if isinstance(rec, nir.Affine) and np.any(np.asarray(rec.bias)):
                raise InputError(f"NIR node {rec_name!r}: recurrent weights have no bias in our model")
            if layer["kind"] != "linear" or isinstance(neuron, nir.LI):
                raise InputError(f"NIR node {rec_name!r}: recurrence is supported only on a dense LIF layer")
            rec_weight = np.asarray(rec.weight)
            if rec_weight.shape != (layer["size"],) * 2:
                raise InputError(f"NIR node {rec_name!r}: weight {list(rec_weight.shape)} must be "
                                 f"[{layer['size']}, {layer['size']}]")
            layer["kind"] = "recurrent"
            visited.add(rec_name)
        if isinstance(neuron, nir.LI):
            if layer["kind"] == "conv2d":
                raise InputError(f"NIR node {neuron_name!r}: the LI readout must follow a dense synapse "
                                 "(Affine or Linear), not Conv2d")
            layer["kind"] = "readout"
        layer.update(_neuron_params(neuron_name, neuron, dt))
        expected = (layer["size"],) if layer["kind"] != "conv2d" else _conv_output_shape(name, layer, shape)
        if out_shape != tuple(expected):
            raise InputError(f"NIR node {neuron_name!r}: neuron shape {list(out_shape)} does not match the "
                             f"synapse output {list(expected)}")
        layers.append(layer)
        arrays.append({"weight": weight, "bias": bias, "rec_weight": rec_weight, "node": name})
        pos, rec_of_pos, shape = neuron_name, rec_name, out_shape
    output_shape = tuple(int(s) for s in np.asarray(nodes[name].output_type["output"]).ravel())
    if output_shape != shape:
        raise InputError(f"NIR node {name!r}: Output shape {list(output_shape)} does not match "
                         f"the readout {list(shape)}")
    for other in nodes:
        if other not in visited:
            raise InputError(f"NIR node {other!r}: not on the Input-to-Output layer chain")
    return input_shape, layers, arrays


def _network_config(graph: nir.NIRGraph, input_shape: list[int], layers: list[dict]) -> NetworkConfig:
    """Per-layer values as overrides of the graph's network-wide defaults (if any)."""
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    neuron = _meta_dict("graph", meta, "stllr_neuron")
    psi = _meta_dict("graph", meta, "stllr_psi")
    if neuron is None:  # not our export: take the first spiking layer (or the readout) as default
        first = next((layer for layer in layers if layer["kind"] != "readout"), layers[-1])
        neuron = {k: first[k] for k in ("beta", "theta", "reset") if k in first}
    if psi is None:
        psi = next((layer["psi"] for layer in layers if "psi" in layer), None)
    data: dict[str, Any] = {"input_shape": input_shape, "neuron": neuron, "layers": []}
    if psi is not None:
        data["psi"] = psi
    for layer in layers:
        entry = {k: v for k, v in layer.items() if k not in ("beta", "theta", "reset", "psi")}
        for key in ("beta", "theta", "reset"):
            if key in layer and layer[key] != neuron.get(key, object()):
                entry[key] = layer[key]
        if "psi" in layer and layer["psi"] != psi:
            entry["psi"] = layer["psi"]
        data["layers"].append(entry)
    try:
        return NetworkConfig.model_validate(data)
    except ValidationError as error:
        raise InputError(format_validation_error(error, "NIR graph")) from None


def import_nir(graph_or_path: nir.NIRGraph | str | Path, learning: LearningConfig | None = None,
               dt: float | None = None) -> SpikingNetwork:
    """Build a float :class:`SpikingNetwork` from a NIR graph (or a NIR HDF5 file).

    Args:
        graph_or_path: a :class:`nir.NIRGraph`, or a path to a file written by
            :func:`write_nir` / :func:`nir.write`.
        learning: the learning config of the new network (not part of NIR); default
            ``LearningConfig()``.
        dt: the Euler step the graph's tau values assume; default the graph's ``dt``
            metadata, else 1e-3.
    Returns:
        A network with the graph's weights (float32; float64 when every weight is
        float64) and neuron parameters; with our own export both are exact.
    Raises:
        InputError: one line naming the file or node: unsupported node types, graphs that
        are not a chain of layers, parameters outside the mapping, a missing file.
    """
    graph = read_nir(graph_or_path) if isinstance(graph_or_path, (str, Path)) else graph_or_path
    if not isinstance(graph, nir.NIRGraph):
        raise InputError(f"import_nir: expected a nir.NIRGraph or a path, got {type(graph).__name__}")
    if dt is None:
        dt = _meta_float("graph", graph.metadata if isinstance(graph.metadata, dict) else {}, "dt")
        dt = 1e-3 if dt is None else dt
    if not math.isfinite(dt) or dt <= 0:
        raise InputError(f"import_nir: dt must be finite and > 0, got {dt!r}")
    input_shape, layers, arrays = _walk(graph, float(dt))
    config = _network_config(graph, input_shape, layers)
    net = SpikingNetwork(config, learning or LearningConfig())
    every = [a for entry in arrays for a in (entry["weight"], entry["bias"], entry["rec_weight"]) if a is not None]
    if all(a.dtype == np.float64 for a in every):
        net = net.double()
    dtype = net.readout.weight.dtype
    with torch.no_grad():
        for layer, entry in zip(net.layers, arrays):
            for field in ("weight", "bias", "rec_weight"):
                if entry[field] is None:
                    continue
                target = getattr(layer, field)
                value = torch.from_numpy(np.array(entry[field], dtype=np.float64 if dtype == torch.float64
                                                  else np.float32, copy=True))
                if tuple(value.shape) != tuple(target.shape):
                    raise InputError(f"NIR node {entry['node']!r}: {field} shape {list(value.shape)} "
                                     f"does not match {list(target.shape)}")
                target.copy_(value)
    return net
