"""Experiments on top of :mod:`pyg_schnet`: the filter comparison
(:mod:`experiments.compare`), its configs and the exploration notebook."""
