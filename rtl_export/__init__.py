"""Exporters: render the trained network and its formats for other tools (NIR graphs, HDL/C text).

Formats are owned elsewhere (``fixedpoint``); exporters only render them.
"""
