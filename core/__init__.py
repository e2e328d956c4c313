"""The bottom layer: the one config schema, the numeric formats and the plumbing.

Every other package imports from here; this package imports from none of them (no
numba, no torch). docs/ARCHITECTURE.md (shared) has the layering.

Modules
-------
``errors``    InputError (one line, exit 2) and the CLI runner.
``atomic``    whole-or-nothing file writes, output-path checks.
``schema``    strict pydantic base, bounded numbers, the hardened YAML reader.
``config``    the run config: network, learning, train, data, quant, hardware, activity.
``data``      the ``data:`` section.
``quant``     the ``quant:`` section (formats of the integer model).
``hardware``  the ``hardware:`` and ``activity:`` sections of the cost model.
``energy``    default energy table and its interpolation rules.
``formats``   FixedFormat; ``rounding``, ``overflow``, ``rng``: its numpy primitives.
``counters``  the operation taxonomy (OpKey, OpCounter).
"""
