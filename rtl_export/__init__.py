"""Exporters: render the integer model and its formats for an RTL team (vectors, HDL/C text).

Formats are owned elsewhere (``fixedpoint``); exporters only render them.

Modules
-------
``golden``   golden vectors of the integer model (every state per layer and step) and their
             verification: ``rtl-export golden`` / ``rtl-export verify``.
``params``   RTL parameters: SystemVerilog package, C header, weight memories (``rtl-export params``).
``render``   FixedFormat / parameter lists -> SystemVerilog and C text.
``hexio``    ``$readmemh`` hex words, deterministic ``.npz``, sha256.
``manifest`` both manifests as strict models (written and read through them), paths kept inside.
``model``    config (+ checkpoint) -> IntNetwork, input data for the vectors, argument bounds.
``sim``      run rtl/stllr_layer.v against a vector set: Icarus + cocotb, Verilator, Yosys.
``cli``      the ``rtl-export`` command line.

Documentation: ``docs/rtl_export.md``. NIR interchange of the float model lives in
``interop.nir_io``.
"""
