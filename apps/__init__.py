"""Entry points: the ``stllr`` command and the demo. They know every package; nothing
imports them (docs/ARCHITECTURE: the top layer)."""
