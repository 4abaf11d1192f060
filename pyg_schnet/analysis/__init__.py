"""What is done with trained models: evaluation and prediction
(:mod:`~pyg_schnet.analysis.evaluate`), symmetry checks
(:mod:`~pyg_schnet.analysis.invariance`) and the speed benchmark
(:mod:`~pyg_schnet.analysis.benchmark`). Above :mod:`pyg_schnet.run` and
:mod:`pyg_schnet.hub`; below :mod:`pyg_schnet.study` and :mod:`pyg_schnet.cli`."""
