"""Studies: a grid of training runs from one spec, resumable, with paired statistics.

    pyg-schnet study run SPEC.yaml [SPEC.yaml ...] [--quick] [--jobs N] [--out DIR]
                                [--root DIR] [--source qm9pack|pyg] [--overwrite]
    pyg-schnet study report SPEC.yaml [SPEC.yaml ...] [--quick] [--out DIR]

Several specs form a queue: all are read and checked first, then run one after
the other (``--out`` needs a single spec).

A spec (YAML) names a base config, named variants (config overrides), targets,
seeds and training-set sizes; every combination is one ordinary run directory
``OUT/runs/<target>/<variant>/n<size>_seed<seed>``. Relative paths in a spec
(``base``, ``out``) are relative to the spec file, and a relative ``root`` to
the file that sets it, so the commands work from any directory::

    name: factors
    description: one line on what the study asks
    base: {filter: gaussian, hidden_channels: 64, ...}   # or a config file path
    variants:                                 # the first one is the reference
      gaussian: {}
      distance: {filter: distance}
      conv1d: {filter: conv1d, seeds: 5, targets: [U0, gap]}   # optional: its own seeds, targets
    reference: gaussian                      # optional
    contrasts:                                # optional: one factor each, variant - baseline
      radial basis removed: [distance, gaussian]
    targets: [U0, gap]
    seeds: 3                                  # a count (0..N-1) or a list
    train_sizes: [20000]                      # a list is a learning curve
    val_size: 5000
    test_size: 10000
    size_overrides: {1000: {epochs: 300}, 50000: {seeds: [0]}}   # optional, per size
    keep_weights: [0]                         # seeds whose model-only weights are kept
    quick: {seeds: 2, train_sizes: [200], hidden_channels: 16, ...}   # --quick
    out: results/factors                      # optional, default: <spec dir>/<name>
    reuse: [factors]                          # optional: other studies' output folders

A run of a ``reuse`` folder with exactly this run's settings (the same target,
training size, seed and split) is copied instead of trained again, with a
``reused_from`` file naming its origin; its training time counts in its own
study.

Splits: for a seed, one permutation of the data set gives the test set, then
the validation set, then the training molecules (:func:`~pyg_schnet.data.qm9.
nested_split`): every variant of a seed sees the same split, and a smaller
training set is a subset of a larger one. So variants can be compared *paired*
(same seed, same split): the report gives per variant the mean difference to
the reference with a 95% t-interval over seeds, and how many seeds agree in
sign; each named contrast (a variant against the variant it changes in one
factor, not necessarily the reference) gets the same statistics.

Resuming: a finished run (metrics.json) is skipped, an interrupted one resumes
from its last.pt, and a run directory holding other settings is refused (or,
with ``--overwrite``, retrained). ``--jobs N`` trains N runs at once in worker
processes with one thread each (for small models two one-thread processes
train about 1.8x faster than one two-thread process on two cores). Several
specs form a queue (:func:`run_queue`): all are checked and prepared first,
their runs then take the workers in order, so the next study starts on a core
as soon as the one before it has no run left to give it.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from pyg_schnet.study.spec import SYMMETRY_FILE, Run, Spec, load_spec, plan, split_path
from pyg_schnet.study.stats import loglog_slope, mean, paired_difference, std, t_quantile_975

if TYPE_CHECKING:
    from pyg_schnet.study.report import cells, collect, contrasts, paired, slopes, write_report
    from pyg_schnet.study.runner import execute_run, run_queue, run_study, symmetry_metrics

#: Names of the modules that import the trainer, PyG's dataset and matplotlib, imported
#: on first use, so that ``pyg-schnet sweep`` (which needs the spec and sweep modules
#: only) starts without them.
_LAZY = {
    **dict.fromkeys(
        ["cells", "collect", "contrasts", "paired", "slopes", "write_report"], "report"
    ),
    **dict.fromkeys(["execute_run", "run_queue", "run_study", "symmetry_metrics"], "runner"),
}

__all__ = [
    "cells",
    "collect",
    "contrasts",
    "paired",
    "slopes",
    "write_report",
    "execute_run",
    "run_queue",
    "run_study",
    "symmetry_metrics",
    "SYMMETRY_FILE",
    "Run",
    "Spec",
    "load_spec",
    "plan",
    "split_path",
    "loglog_slope",
    "mean",
    "paired_difference",
    "std",
    "t_quantile_975",
]


def __getattr__(name: str) -> Any:
    """The report's and the runner's names, imported on first use."""
    if name in _LAZY:
        return getattr(import_module(f"pyg_schnet.study.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
