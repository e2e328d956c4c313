"""Float-model interchange with other tools (a layer beside ``rtl_export`` and ``hwmodel``).

Modules
-------
``nir_io``   NIR graph export/import of the float network (docs/nir.md).
"""
