"""``pyg-schnet benchmark``: pyg_schnet against PyG's SchNet, one process,
the same QM9 batches, the same weights, alternating the two after warm-up.

Prints training and inference molecules per second (radius graph included),
the additional peak memory of one training step, and the ratios, at every
thread count up to the number of cores, and how the default thread count
compares with the best (processes: ``pyg-schnet throughput``)."""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
from typing import Any, Callable, Dict, List

import torch
from torch import nn

from pyg_schnet.analysis.dense_bound import dense_bound, linear_shapes
from pyg_schnet.data import QM9
from pyg_schnet.data.loader import MoleculeLoader
from pyg_schnet.errors import UserError
from pyg_schnet.nn.atomistic import count_parameters
from pyg_schnet.nn.filters import FILTERS
from pyg_schnet.nn.models import MODELS, build
from pyg_schnet.nn.pyg import RadiusInteractionGraph
from pyg_schnet.nn.schnet import SchNet, build_model
from pyg_schnet.run.throughput import default_threads


def pyg_model(
    hidden: int, filters: int, interactions: int, gaussians: int, cutoff: float, seed: int = 0
) -> nn.Module:
    from torch_geometric.nn.models import SchNet as PyGSchNet

    torch.manual_seed(seed)
    return PyGSchNet(
        hidden_channels=hidden,
        num_filters=filters,
        num_interactions=interactions,
        num_gaussians=gaussians,
        cutoff=cutoff,
        interaction_graph=RadiusInteractionGraph(cutoff, 32),
    )


def _peak_memory_mib(argv: List[str], name: str) -> float:
    """Additional peak RSS (MiB) of two training steps of model ``name``, measured
    in a fresh interpreter (forking a process with OpenMP threads can hang)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "pyg_schnet.cli", "benchmark", *argv, "--memory-of", name],
        capture_output=True,
        text=True,
    )
    try:
        return float(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return float("nan")


def _measure_memory(step: Callable[[], None]) -> int:
    """Print the peak RSS growth (MiB) over the RSS before two calls of ``step``,
    sampled every millisecond."""
    import threading

    import psutil

    proc = psutil.Process()
    step()  # first call: lazy allocations (optimizer state, caches)
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.001)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    step()
    done.set()
    t.join()
    print(f"{(peak[0] - base) / 2**20:.1f}")
    return 0


class _Steps:
    """One training step (Adam, fresh state per model) and one inference step."""

    def __init__(self, models: Dict[str, nn.Module], device: torch.device) -> None:
        self.models, self.device = models, device
        self.opts = {k: torch.optim.Adam(m.parameters(), lr=1e-4) for k, m in models.items()}

    def train(self, name: str, b: Any) -> None:
        m, opt = self.models[name], self.opts[name]
        m.train()
        pred = m(b.z, b.pos, b.batch).view(-1)
        loss = torch.mean(((pred - b.y) / 10.0) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()

    @torch.no_grad()
    def infer(self, name: str, b: Any) -> None:
        m = self.models[name]
        m.eval()
        m(b.z, b.pos, b.batch)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def _time_models(
    steps: _Steps, warmup: List[Any], timed: List[Any], rounds: int
) -> Dict[str, Dict[str, List[float]]]:
    """Molecules/s per model, kind and round; models alternate within rounds."""
    results: Dict[str, Dict[str, List[float]]] = {
        k: {"train": [], "infer": []} for k in steps.models
    }
    for name in steps.models:
        for b in warmup:
            steps.train(name, b)
            steps.infer(name, b)
    mols = sum(b.num_graphs for b in timed)
    for _ in range(rounds):
        for kind, fn in (("train", steps.train), ("infer", steps.infer)):
            for name in steps.models:
                steps.sync()
                t0 = time.perf_counter()
                for b in timed:
                    fn(name, b)
                steps.sync()
                results[name][kind].append(mols / (time.perf_counter() - t0))
    return results


def _print_table(
    results: Dict[str, Dict[str, List[float]]], memory: Dict[str, float], params: Dict[str, int]
) -> None:
    """Medians per model, and their ratios to the first model's (peak memory "-" where it
    was not measured)."""
    print(
        f"{'model':<18}{'parameters':>11}{'train mol/s':>12}{'infer mol/s':>13}"
        f"{'peak MiB':>10}{'train ratio':>13}{'infer ratio':>13}"
    )
    base = next(iter(results))
    base_t = statistics.median(results[base]["train"])
    base_i = statistics.median(results[base]["infer"])
    for name in results:
        t = statistics.median(results[name]["train"])
        i = statistics.median(results[name]["infer"])
        mib = f"{memory[name]:>10.0f}" if name in memory else f"{'-':>10}"
        print(
            f"{name:<18}{params[name]:>11,}{t:>12.0f}{i:>13.0f}{mib}"
            f"{t / base_t:>12.2f}x{i / base_i:>12.2f}x"
        )


def _pyg_comparison(a: argparse.Namespace, device: torch.device) -> Dict[str, nn.Module]:
    """PyG's SchNet, this project's with the same weights (and its fast mode)."""
    ref = pyg_model(
        a.hidden_channels, a.num_filters, a.num_interactions, a.num_gaussians, a.cutoff
    ).to(device)
    models: Dict[str, nn.Module] = {
        "PyG SchNet": ref,
        "pyg_schnet": SchNet.from_pyg(ref).to(device),
    }
    if a.fast:
        exact = SchNet.from_pyg(ref)
        fast = build_model(**dict(exact.hparams(), fast=True))
        fast.load_state_dict(exact.state_dict())
        models["pyg_schnet fast"] = fast.to(device)
    return models


def _registered_models(a: argparse.Namespace, device: torch.device) -> Dict[str, nn.Module]:
    """The models named by ``--models``, each with the benchmark's shared
    settings (SchNet and PyG's also with --num-filters and --num-gaussians,
    SchNet with the filter ``--filter`` names); with ``--fast``, each model
    that has a fast mode also in it."""
    names = [n.strip() for n in a.models.split(",") if n.strip()]
    if not names or len(set(names)) != len(names):
        raise UserError("benchmark: --models needs distinct model names, e.g. schnet,painn")
    models: Dict[str, nn.Module] = {}
    for name in names:
        MODELS.cls(name)  # an unknown name fails listing the choices
        kw: Dict[str, Any] = dict(
            hidden_channels=a.hidden_channels, num_interactions=a.num_interactions, cutoff=a.cutoff
        )
        takes = MODELS.entry(name).config_keys.values()
        if (
            "num_filters" in takes
        ):  # SchNet and PyG's SchNet also take --num-filters, --num-gaussians
            kw.update(num_filters=a.num_filters)
        if "filter" in takes:
            kw.update(filter=a.filter or "gaussian")
            if "num_gaussians" in FILTERS.options(kw["filter"]):
                kw.update(num_gaussians=a.num_gaussians)
        elif "num_gaussians" in takes:
            kw.update(num_gaussians=a.num_gaussians)
        torch.manual_seed(0)
        models[name] = build(name, **kw).to(device)
        if a.fast and "fast" in takes:  # its fast mode beside it, the same weights
            fast = build(name, **kw, fast=True)
            fast.load_state_dict(models[name].state_dict())
            models[f"{name} fast"] = fast.to(device)
    return models


def check_arguments(a: argparse.Namespace) -> None:
    """Refuse bad settings before any work."""
    if a.threads is not None and a.threads < 1:
        raise UserError("benchmark: --threads must be at least 1")
    for name in (
        "hidden_channels",
        "num_filters",
        "num_interactions",
        "num_gaussians",
        "batch_size",
        "batches",
        "rounds",
    ):
        if getattr(a, name) < 1:
            raise UserError(f"benchmark: --{name.replace('_', '-')} must be at least 1")
    if a.cutoff <= 0:
        raise UserError("benchmark: --cutoff must be positive")
    if a.device != "cpu" and not a.device.startswith("cuda"):
        raise UserError(f"benchmark: --device must be cpu or cuda, got {a.device!r}")
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("benchmark: no CUDA GPU available")
    if a.filter is not None and not a.models:
        raise UserError("benchmark: --filter chooses schnet's filter in --models; add --models")
    if a.models:
        _registered_models(a, torch.device("cpu"))  # bad names fail before any work


def _time_data_build() -> None:
    """A full QM9 build into a temporary root, then a cached load of it."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        QM9(tmp)
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        QM9(tmp)
        load = time.perf_counter() - t0
    print(f"data: full QM9 build {build:.1f} s, cached load {load:.2f} s")


def _sample_batches(a: argparse.Namespace, device: torch.device) -> List[Any]:
    """Warm-up and timed batches of random QM9 molecules (seed 0), on ``device``."""
    ds = QM9(a.root, source=a.source)
    gen = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(ds), generator=gen)[: (a.batches + a.warmup) * a.batch_size]
    return [b.to(device) for b in MoleculeLoader(ds, idx, a.batch_size, target=7)]


def _peak_memories(
    models: Dict[str, nn.Module], device: torch.device, batch: Any, child_argv: List[str]
) -> Dict[str, float]:
    """Additional peak memory (MiB) of a training step, per model."""
    memory = {}
    for name in models:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            _Steps(models, device).train(name, batch)
            memory[name] = torch.cuda.max_memory_allocated() / 2**20
        else:
            memory[name] = _peak_memory_mib(child_argv, name)
    return memory


def _print_report(
    a: argparse.Namespace,
    models: Dict[str, nn.Module],
    tables: Dict[int, Dict[str, Dict[str, List[float]]]],
    memory: Dict[str, float],
    timed: int,
    default: int,
    cores: int,
) -> None:
    """One table per thread count, then the default thread count against the best."""
    print(
        f"settings: hidden {a.hidden_channels}, filters {a.num_filters}, "
        f"{a.num_interactions} interactions, "
        f"{a.num_gaussians} Gaussians, cutoff {a.cutoff} Å, batch {a.batch_size}; "
        f"{'' if a.filter is None else f'filter {a.filter}; '}"
        f"{a.rounds} rounds x {timed} batches, median of rounds; one process"
    )
    for n, results in tables.items():
        mark = " (the default for one process)" if n == default else ""
        print(f"\n{n} thread(s){mark}")
        _print_table(results, memory, {k: count_parameters(m) for k, m in models.items()})
    if len(tables) > 1:
        mine = "pyg_schnet" if "pyg_schnet" in models else next(iter(models))
        ours = {n: statistics.median(t[mine]["train"]) for n, t in tables.items()}
        best = max(ours, key=lambda n: ours[n])
        print(
            f"\n{mine} training: default {default} thread(s) {ours[default]:.0f} mol/s, "
            f"best {best} thread(s) {ours[best]:.0f} mol/s ({ours[default] / ours[best]:.2f}"
            f" of best); processes: see pyg-schnet throughput (train's default runs "
            f"{cores} x 1 thread)"
        )


def _print_dense_bound(
    models: Dict[str, nn.Module],
    results: Dict[str, Dict[str, List[float]]],
    timed: List[Any],
    device: torch.device,
) -> None:
    """Each model's one-thread training step against the time its dense layers
    alone would take at this CPU's measured matrix-multiply rate
    (:mod:`pyg_schnet.analysis.dense_bound`)."""
    if device.type != "cpu":
        return
    torch.set_num_threads(1)
    print(
        "\ndense layers of a training step, one thread (products timed alone at the model's shapes)"
    )
    print(
        f"{'model':<18}{'GFLOP/step':>11}{'peak GFLOP/s':>13}{'at peak ms':>11}"
        f"{'at shapes ms':>13}{'step ms':>9}{'share':>7}"
    )
    mols = sum(b.num_graphs for b in timed) / len(timed)
    for name, model in models.items():
        b = timed[0]
        model.train()
        shapes = linear_shapes(model, functools.partial(model, b.z, b.pos, b.batch))
        bound = dense_bound(shapes)
        step = mols / statistics.median(results[name]["train"])
        print(
            f"{name:<18}{bound.flops / 1e9:>11.2f}{bound.peak_gflops:>13.1f}"
            f"{bound.peak_seconds * 1e3:>11.1f}{bound.dense_seconds * 1e3:>13.1f}"
            f"{step * 1e3:>9.1f}{bound.dense_seconds / step:>7.0%}"
        )
    print(
        "share: the products at their own shapes' rate as a fraction of the measured step; "
        "at peak: all of them at the best rate"
    )


def run(a: argparse.Namespace, argv: List[str]) -> int:
    """Time the models as the command line ``argv`` (parsed: ``a``) asks."""
    check_arguments(a)
    device = torch.device(a.device)
    # as pyg-schnet train does, for both models: float32 denormals to zero
    torch.set_flush_denormal(True)
    if a.memory_of is None:
        print(
            f"torch {torch.__version__}, {os.cpu_count()} cores, device {device}, "
            f"denormals flushed, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '')}"
        )
    if not a.skip_build:
        _time_data_build()
    batches = _sample_batches(a, device)
    warmup, timed = batches[: a.warmup], batches[a.warmup :]
    models = _registered_models(a, device) if a.models else _pyg_comparison(a, device)
    if a.memory_of is not None:  # the child process of _peak_memory_mib
        step = _Steps(models, device)
        return _measure_memory(lambda: step.train(a.memory_of, batches[0]))

    cores = os.cpu_count() or 1
    default = default_threads(a.num_filters, a.num_interactions, a.cutoff, 1, cores)
    counts = [a.threads] if a.threads else sorted({default, *range(1, cores + 1)})
    tables = {}
    for n in counts:  # every thread count, same batches and weights
        torch.set_num_threads(n)
        tables[n] = _time_models(_Steps(models, device), warmup, timed, a.rounds)
    child_argv = [x for x in argv if x != "--skip-build"] + ["--skip-build"]
    memory = {} if a.no_memory else _peak_memories(models, device, timed[0], child_argv)
    _print_report(a, models, tables, memory, len(timed), default, cores)
    if 1 in tables:
        _print_dense_bound(models, tables[1], timed, device)
    return 0
