"""``stllr sweep``: hardware co-design studies over formats, window, Psi and recipe.

A sweep spec (YAML, :mod:`sweep.spec`) names a base config, the config paths to vary and
the training seeds. Every design point is trained on chip (the integer model, the
``stllr int-train`` code path), its activity is measured on the trained model and costed
by ``hwmodel`` (inference, S-TLLR, BPTT); the runs execute on a Dask cluster
(:mod:`sweep.engine`), land in ``OUT/results.parquet`` (:mod:`sweep.store`), and the
report ranks them on an accuracy x energy x memory Pareto front (:mod:`sweep.report`).

This package is an entry-point layer: it imports every other package, none imports it
(``stllr.cli`` registers its subcommand lazily).
"""
