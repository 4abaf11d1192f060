"""Training: MSE on the standardised target, Adam, the configured learning-rate
schedule and weight average (:mod:`pyg_schnet.run.recipe`), early stopping on
validation MAE, durable resumable checkpoints (:mod:`pyg_schnet.run.checkpoint`),
W&B logging, optional DistributedDataParallel (``torchrun``).

:class:`Trainer` is the run as named steps: setup (process, directory, data,
model), :meth:`~Trainer.train_epoch`, :meth:`~Trainer.end_epoch` (validation,
schedule, stop decision, checkpoints, log), :meth:`~Trainer.test`. Its
progress is a :class:`TrainState`; test-only faults plug in as
:class:`TrainerHooks` (:mod:`pyg_schnet.run.faults`).

Why a hand-written loop and not Lightning or Ignite: the tested guarantees
(a run killed by SIGKILL at any batch, in any checkpoint write or in the final
evaluation resumes to exactly the metrics of an uninterrupted run; a full disk
keeps the previous checkpoint; the stop decision is checkpointed before it
acts) depend on what a checkpoint holds (every RNG, the scheduler, the state)
and on when it is written. A library loop would have to be shown to keep them,
and that has not been measured; the loop itself (:class:`Trainer`) is about 340
lines.
"""

from __future__ import annotations

import dataclasses
import math
import os
import os.path as osp
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, cast

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from pyg_schnet.data import (
    QM9,
    UNITS,
    Split,
    compute_statistics,
    get_split,
    load_split,
    target_index,
)
from pyg_schnet.data.loader import MoleculeBatch, MoleculeLoader, PairTable, apply_model
from pyg_schnet.errors import UserError
from pyg_schnet.io import replace_dir, write_csv, write_json
from pyg_schnet.metrics import ErrorSums
from pyg_schnet.nn.atomistic import AtomisticModel, count_parameters
from pyg_schnet.nn.models import build
from pyg_schnet.nn.schnet import SchNet
from pyg_schnet.plots import filter_plot, parity_plot
from pyg_schnet.run.checkpoint import (
    RUN_FORMAT,
    atomic_save,
    check_config,
    export_weights,
    load_checkpoint,
    load_training_checkpoint,
)
from pyg_schnet.run.config import Config, save_config
from pyg_schnet.run.distributed import allreduce, broadcast, init_distributed
from pyg_schnet.run.faults import TrainerHooks, default_hooks
from pyg_schnet.run.inference import errors, predict_loader, resolve_device
from pyg_schnet.run.recipe import ExponentialMovingAverage, Progress, make_schedule
from pyg_schnet.run.rundir import BEST_FILE, LAST_FILE, METRICS_FILE, NEW, RunDir
from pyg_schnet.run.throughput import default_threads
from pyg_schnet.run.tracking import WandB
from pyg_schnet.version import code_version

LOG_FIELDS = (
    "epoch",
    "train_loss",
    "train_mae",
    "val_mae",
    "lr",
    "epoch_seconds",
    "molecules_per_second",
    "elapsed",
)


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: ``what`` happened (the message adds
    where the best model so far is, if anywhere)."""

    def __init__(self, what: str, kept: str) -> None:
        super().__init__(f"{what}; stopped; {kept}")
        self.what = what


# -- helpers ---------------------------------------------------------------


def _rng_state() -> Dict[str, Any]:
    _, keys, pos, _, _ = cast(Tuple[str, np.ndarray, int, int, float], np.random.get_state())
    return {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(keys.copy()),
        "numpy_pos": int(pos),
        "python": repr(random.getstate()),
    }


def _set_rng_state(state: Dict[str, Any]) -> None:
    import ast

    torch.set_rng_state(state["torch"])
    np.random.set_state(
        ("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0)
    )
    random.setstate(ast.literal_eval(state["python"]))


def _progress(iterable, total: int, desc: str, quiet: bool, leave: bool = True):
    if quiet or not sys.stderr.isatty():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=leave, dynamic_ncols=True)


@dataclass
class TrainState:
    """Progress of a run; saved in every checkpoint as :meth:`state_dict`."""

    epoch: int = 0
    best_val: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the best validation MAE
    elapsed: float = 0.0  # seconds of training and validation
    history: List[Dict[str, float]] = field(default_factory=list)  # log.csv rows
    wandb_id: Optional[str] = None
    done: bool = False  # training finished (only the test evaluation may be left)
    lr_decays: int = 0
    stop_reason: str = "epochs"
    steps: int = 0  # optimizer steps taken

    def state_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        names = {f.name for f in dataclasses.fields(self)}
        for key, value in state.items():
            if key in names:  # checkpoints of older versions lack the newer fields
                setattr(self, key, value)

    def stop_reason_now(self, cfg: Config) -> Optional[str]:
        """Why training stops after this epoch, or None to go on (the epoch
        cap is the loop's own end)."""
        if cfg.patience is not None and self.bad_epochs >= cfg.patience:
            return "patience"
        if cfg.max_lr_decays is not None and self.lr_decays >= cfg.max_lr_decays:
            return "lr decays"
        if cfg.time_budget is not None and self.elapsed >= cfg.time_budget:
            return "time budget"
        if cfg.max_steps is not None and self.steps >= cfg.max_steps:
            return "max steps"
        return None

    def progress(self, seconds_in_epoch: float = 0.0) -> Progress:
        """Where the run is, for the learning-rate schedule."""
        return Progress(self.epoch, self.steps, self.elapsed + seconds_in_epoch)


# -- the run -----------------------------------------------------------------


class Trainer:
    """One training run as configured (see the module docstring).

    Args:
        cfg (Config): The resolved configuration; ``cfg.out`` is the run directory.
        run (RunDir): Where the run's files are written, prepared by
            :func:`train`: ``cfg.out``, or the staging directory of a
            replacement (:meth:`~pyg_schnet.run.rundir.RunDir.prepare`).
        resume (bool): Continue the run in ``run`` from its ``last.pt``.
        quiet (bool): No progress bars.
        hooks (TrainerHooks, optional): Test hooks. (default: :func:`default_hooks`)
        dataset (QM9, optional): The data set of ``cfg`` (root, source,
            max_molecules), already loaded (a study reuses it across runs).
            (default: loaded here)
    """

    def __init__(
        self,
        cfg: Config,
        run: RunDir,
        resume: bool = False,
        quiet: bool = False,
        hooks: Optional[TrainerHooks] = None,
        dataset: Optional[QM9] = None,
    ) -> None:
        self.cfg, self.out, self.quiet = cfg, cfg.out, quiet
        self.run = run
        self.hooks = hooks or default_hooks()
        self._setup_process()
        ckpt = self._setup_directory(resume)
        self._setup_data(resumed=ckpt is not None, dataset=dataset)
        self._setup_model()
        self._setup_loaders()
        self._setup_training(ckpt)

    # -- setup ----------------------------------------------------------------------
    def _setup_process(self) -> None:
        self.info = init_distributed(self.cfg.device)
        self.device = resolve_device(self.cfg.device)
        cfg = self.cfg
        self.threads = cfg.num_threads or default_threads(
            cfg.num_filters, cfg.num_interactions, cfg.cutoff, self.info.world_size
        )
        torch.set_num_threads(self.threads)
        # Flush float32 denormals (below 1.2e-38) to zero: x86 CPUs can handle
        # them ~100x slower. SchNet makes none (tests/nn/test_denormals.py), but
        # the other registered models may (PyG's SchNet's Gaussians do); no
        # value that matters is that small.
        torch.set_flush_denormal(True)

    def _setup_directory(self, resume: bool) -> Optional[Dict[str, Any]]:
        """Resuming, check the run directory and its ``last.pt`` (a training
        checkpoint of the settings in ``cfg``: :func:`check_config`) before
        anything changes; the checkpoint to resume from, if any."""
        rd = self.run
        ckpt = None
        if resume:
            ckpt = load_training_checkpoint(rd.last_path)
            if rd.has(METRICS_FILE):
                raise UserError(f"{self.out} holds a finished run; nothing to resume")
            check_config(ckpt, rd.last_path, self.cfg)
            if self.info.main:
                rd.remove_temporary()
        self._barrier()
        return ckpt

    def _setup_data(self, resumed: bool, dataset: Optional[QM9]) -> None:
        cfg, info = self.cfg, self.info
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        random.seed(cfg.seed)
        self.dataset = (
            dataset
            if dataset is not None
            else QM9(cfg.root, source=cfg.source, max_molecules=cfg.max_molecules)
        )
        self.split = self._split(resumed)
        if len(self.split.train_idx) < info.world_size:
            raise UserError(
                f"{len(self.split.train_idx)} training molecule(s) cannot be shared by "
                f"{info.world_size} processes; use more molecules or --processes 1"
            )
        if info.main:
            save_config(cfg, self.run.config_path)
        self.target = target_index(cfg.target)
        self.stats = compute_statistics(self.dataset, self.split.train_idx, cfg.target)

    def _split(self, resumed: bool) -> Split:
        cfg, n = self.cfg, len(self.dataset)
        path = self.run.split_path
        if resumed:
            return load_split(path, n)
        if cfg.split_file:
            split = load_split(cfg.split_file, n)
            if self.info.main:
                split.save(path, n)
            return split
        if self.info.main:
            get_split(path, n, cfg.train_size, cfg.val_size, cfg.test_size, cfg.seed)
        self._barrier()
        return load_split(path, n)

    def _loader(self, idx: Any) -> MoleculeLoader:
        """An evaluation loader (every molecule once over the ranks)."""
        return MoleculeLoader(
            self.dataset,
            idx,
            self.cfg.batch_size,
            self.target,
            rank=self.info.rank,
            world_size=self.info.world_size,
            pairs=self.pairs,
        )

    def _setup_model(self) -> None:
        cfg, stats = self.cfg, self.stats
        self.hparams = dict(cfg.model_hparams(), readout=stats.readout)
        self.model: AtomisticModel = build(
            **self.hparams, mean=stats.mean, std=stats.std, atomref=stats.atomref
        ).to(self.device)
        self.num_params = count_parameters(self.model)

    def _setup_loaders(self) -> None:
        """The training and validation loaders. For a model that takes pairs,
        each molecule's pairs within its cutoff are found once
        (:class:`~pyg_schnet.data.loader.PairTable`), not at every step: for the
        validation and test molecules, and for the training molecules unless
        they are rotated (a training step 1.11x faster at the studies' size and
        1.07x at the shipped size; docs/speed.md)."""
        cfg, info, split = self.cfg, self.info, self.split
        rotate = cfg.rotation_augmentation
        self.pairs: Optional[PairTable] = None
        if self.model.takes_pairs:
            molecules = [split.val_idx, split.test_idx] + ([] if rotate else [split.train_idx])
            self.pairs = PairTable.build(
                self.dataset,
                np.concatenate([np.asarray(i, dtype=np.int64) for i in molecules]),
                self.model.cutoff,
                self.model.max_num_neighbors,
            )
        self.train_loader = MoleculeLoader(
            self.dataset,
            split.train_idx,
            cfg.batch_size,
            self.target,
            shuffle=True,
            seed=cfg.seed,
            rank=info.rank,
            world_size=info.world_size,
            rotate=rotate,
            pairs=None if rotate else self.pairs,
        )
        self.val_loader = self._loader(split.val_idx)

    def _setup_training(self, ckpt: Optional[Dict[str, Any]]) -> None:
        """The optimizer, schedule, weight average and state, restored from
        ``ckpt`` when resuming; W&B."""
        cfg, stats = self.cfg, self.stats
        # fused: one kernel over all parameters, not a loop of small ones (the
        # step 0.6 ms against 2.0 at the shipped size; experiments/results/optimizer)
        self.opt = torch.optim.Adam(
            self.model.parameters(), lr=cfg.lr, fused=self.device.type in ("cpu", "cuda")
        )
        self.sched = make_schedule(cfg, self.opt, len(self.train_loader))
        self._epoch_start = time.perf_counter()
        self.average = (
            None if cfg.ema_decay is None else ExponentialMovingAverage(self.model, cfg.ema_decay)
        )
        self.state = TrainState()
        self.resumed = ckpt is not None
        if ckpt is not None:
            self.model.load_state_dict(ckpt["model"])
            self.opt.load_state_dict(ckpt["optimizer"])
            self.sched.load_state_dict(ckpt["scheduler"])
            self.state.load_state_dict(ckpt["state"])
            if self.average is not None:
                if "ema" not in ckpt:
                    raise UserError(
                        f"{self.out}/last.pt holds no weight average, but the "
                        f"config asks for one (ema_decay {cfg.ema_decay})"
                    )
                self.average.load_state_dict(ckpt["ema"])
            _set_rng_state(ckpt["rng"])
        self.train_model: nn.Module = self.model
        if self.info.world_size > 1:
            self.train_model = nn.parallel.DistributedDataParallel(self.model)
        self.scale = float(stats.std)  # the loss is on the standardised target
        self.wandb = WandB(cfg, self.run.path, self.state.wandb_id, self.info.main)
        self.state.wandb_id = self.wandb.id
        self.wandb.config(
            {
                "processes": self.info.world_size,
                "threads": self.threads,
                "effective_batch_size": self.effective_batch_size,
            }
        )
        if self.info.main and not self.quiet:
            w = self.info.world_size
            share = (
                f", shared by the processes: {cfg.batch_size // w}"
                + (f"-{-(-cfg.batch_size // w)}" if cfg.batch_size % w else "")
                + " each"
                if w > 1
                else ""
            )
            print(
                f"{w} process(es) x {self.threads} thread(s); effective batch size "
                f"{self.effective_batch_size}{share}",
                file=sys.stderr,
            )
            print(
                f"schedule: {self.sched.describe()}; weight average: "
                f"{self.average.describe() if self.average else 'none'}",
                file=sys.stderr,
            )

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated, tested and saved as the best model:
        the moving average if there is one."""
        return self.model if self.average is None else self.average.module

    @property
    def effective_batch_size(self) -> int:
        """Molecules per optimizer step: ``batch_size``, however many
        data-parallel processes share it (:class:`~pyg_schnet.data.loader.MoleculeLoader`)."""
        return self.cfg.batch_size

    def _barrier(self) -> None:
        if self.info.world_size > 1:
            dist.barrier()

    # -- the loop -------------------------------------------------------------------
    def fit(self) -> Dict[str, Any]:
        """Train to the end (or resume and finish), test the best model;
        returns the final metrics (also written to ``metrics.json``)."""
        exit_code = 1
        try:
            if self.info.main and not self.resumed:
                self.checkpoint(LAST_FILE)  # epoch 0: resumable from the start
            first = self.cfg.epochs if self.state.done else self.state.epoch
            epochs = _progress(
                range(first, self.cfg.epochs), self.cfg.epochs - first, "epochs", self.quiet
            )
            for epoch in epochs:
                t0 = time.perf_counter()
                sums = self.train_epoch(epoch, t0)
                if self.end_epoch(epoch, sums, epochs) is not None:
                    break
            if not self.state.done:  # the epoch cap
                self.state.done = True
                if self.info.main:
                    self.checkpoint(LAST_FILE)
            if hasattr(self.sched, "finish"):
                self.sched.finish(self.state.progress())
            metrics = self.test()
            exit_code = 0
            return metrics
        finally:
            self.wandb.finish(exit_code)

    def train_epoch(self, epoch: int, t0: float) -> Tuple[float, float, float]:
        """One pass over the training set; summed loss, absolute error and
        molecule count over all ranks. A time budget can end it early."""
        self.train_model.train()
        self.train_loader.set_epoch(epoch)
        loss_sum = 0.0
        train_err = ErrorSums()
        self._epoch_start = t0
        batches = _progress(
            self.train_loader, len(self.train_loader), f"epoch {epoch + 1}", self.quiet, leave=False
        )
        for bi, b in enumerate(batches):
            self.hooks.batch()
            loss, pred, b = self.step(b.to(self.device), epoch, bi)
            loss_sum += float(loss) * b.num_graphs
            train_err.add(pred, b.y)
            if self._over_budget():
                break
        loss_sum, abs_sum, n = allreduce([loss_sum, train_err.abs, float(train_err.n)], self.info)
        if n == 0:
            raise UserError(f"epoch {epoch + 1} trained on no molecule: the training set is empty")
        return loss_sum, abs_sum, n

    def step(self, b: MoleculeBatch, epoch: int, bi: int) -> Tuple[Tensor, Tensor, MoleculeBatch]:
        """One optimizer step on batch ``b``; the loss and predictions (detached)."""
        pred = apply_model(self.train_model, b).view(-1)
        loss = torch.mean(((pred - b.y) / self.scale) ** 2)
        if not torch.isfinite(loss):
            raise self._diverged(
                f"loss became {float(loss.detach())} at epoch {epoch + 1}, batch {bi + 1}"
            )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        # the clock only when the schedule reads it: it costs a collective per step
        seconds = self._seconds_in_epoch() if self.sched.uses_clock else 0.0
        self.sched.before_step(self.state.progress(seconds))
        self.opt.step()
        self.state.steps += 1
        if self.average is not None:
            self.average.update(self.model)
        return loss.detach(), pred.detach(), b

    def _seconds_in_epoch(self) -> float:
        """Seconds since this epoch started by rank 0's clock, on every rank:
        the ranks' clocks differ slightly, and a time budget or a schedule
        over seconds read from each would stop them at different steps (one
        rank left waiting for the other) or give them different learning
        rates. Rank 0 broadcasts its clock; only the one process reads its own."""
        mine = self.hooks.clock(time.perf_counter() - self._epoch_start)
        return broadcast([mine], self.info)[0]

    def _over_budget(self) -> bool:
        """The time budget or the step cap is used up (checked after every
        step; the step count and rank 0's clock agree on every rank)."""
        cfg = self.cfg
        if cfg.max_steps is not None and self.state.steps >= cfg.max_steps:
            return True
        if cfg.time_budget is None:
            return False
        return self.state.elapsed + self._seconds_in_epoch() >= cfg.time_budget

    def end_epoch(
        self, epoch: int, sums: Tuple[float, float, float], progress: Any = None
    ) -> Optional[str]:
        """Validate, step the schedule, decide whether to stop, then write the
        checkpoints and the log (the decision is in them, so a resumed run
        agrees). Returns why training stops, or None."""
        st = self.state
        val_mae = self.validate(epoch)
        lr = self.sched.current
        if self.sched.after_epoch(val_mae):
            st.lr_decays += 1
        seconds = self._seconds_in_epoch()  # training and validation, by rank 0's clock
        st.elapsed += seconds
        st.epoch = epoch + 1
        loss_sum, abs_sum, n = sums
        row = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(n, 1),
            "train_mae": abs_sum / max(n, 1),
            "val_mae": val_mae,
            "lr": lr,
            "epoch_seconds": seconds,
            "molecules_per_second": n / seconds,
            "elapsed": st.elapsed,
        }
        st.history.append(row)
        improved = val_mae < st.best_val
        if improved:
            st.best_val, st.best_epoch, st.bad_epochs = val_mae, epoch + 1, 0
        else:
            st.bad_epochs += 1
        reason = st.stop_reason_now(self.cfg)
        if reason is not None:
            st.stop_reason, st.done = reason, True
        if self.info.main:
            if improved:
                self.checkpoint(BEST_FILE)
            self.checkpoint(LAST_FILE)
            write_csv(self.run.log_path, LOG_FIELDS, st.history)
            self.wandb.log(row)
        if hasattr(progress, "set_postfix"):
            progress.set_postfix(val_mae=f"{val_mae:.4g}")
        elif self.info.main and not self.quiet:  # no terminal (a log file): a line per epoch
            print(self._epoch_line(row), file=sys.stderr, flush=True)
        return reason

    def _epoch_line(self, row: Dict[str, float]) -> str:
        """One plain line for an epoch, with the time left to the epoch cap or
        the time budget, whichever comes first (the schedule may stop sooner)."""
        cfg, st = self.cfg, self.state
        left = (cfg.epochs - st.epoch) * st.elapsed / max(st.epoch, 1)
        if cfg.time_budget is not None:
            left = min(left, max(0.0, cfg.time_budget - st.elapsed))
        return (
            f"epoch {int(row['epoch'])}/{cfg.epochs}: train loss {row['train_loss']:.4g}, "
            f"train MAE {row['train_mae']:.4g}, val MAE {row['val_mae']:.4g}, "
            f"lr {row['lr']:.3g}, {row['molecules_per_second']:.0f} molecules/s, "
            f"{row['epoch_seconds']:.1f} s, at most {left / 60:.1f} min left"
        )

    def validate(self, epoch: int) -> float:
        val_mae, _ = errors(self.eval_model, self.val_loader, self.device, self.info)
        if not math.isfinite(val_mae):
            raise self._diverged(f"validation MAE became {val_mae} at epoch {epoch + 1}")
        return val_mae

    def _diverged(self, what: str) -> TrainingDiverged:
        """The error of a run whose loss or validation MAE stopped being finite:
        what happened, and where its best model is, if an epoch finished."""
        if self.run.has(BEST_FILE):
            kept = f"the best checkpoint so far is kept in {self.run.best_path}"
        else:
            kept = "no epoch finished, so there is no best checkpoint (a smaller lr may help)"
        return TrainingDiverged(what, kept)

    def checkpoint(self, name: str) -> None:
        """Write ``last.pt`` or ``best.pt``. ``last.pt`` is what ``--resume``
        needs: the trained weights, the optimizer, the schedule, the state, the
        weight average apart and every RNG. ``best.pt`` is the best model only
        (with a weight average, the average: what every reader of the best model
        uses), its settings, statistics and state, no optimizer state: a quarter
        of ``last.pt``'s size with a weight average, so a run carried to another
        machine takes its ``last.pt`` and a small ``best.pt``."""
        stats = self.stats
        payload: Dict[str, Any] = {
            "run_format": RUN_FORMAT,
            "hparams": self.hparams,
            "config": self.cfg.to_dict(),
            "state": self.state.state_dict(),
            "statistics": {"mean": stats.mean, "std": stats.std, "readout": stats.readout},
        }
        if name == BEST_FILE:
            payload["model"] = self.eval_model.state_dict()
        else:
            payload["model"] = self.model.state_dict()
            payload["optimizer"] = self.opt.state_dict()
            payload["scheduler"] = self.sched.state_dict()
            payload["rng"] = _rng_state()
            if self.average is not None:
                payload["ema"] = self.average.state_dict()
        atomic_save(payload, self.run.file(name), before_commit=self.hooks.checkpoint_write)

    def test(self) -> Dict[str, Any]:
        """Test MAE and RMSE of the best model; writes ``metrics.json``."""
        cfg, st, split = self.cfg, self.state, self.split
        if self.info.main and not self.run.has(BEST_FILE):
            raise UserError("no epoch finished, so there is no best model to test")
        self._barrier()
        self.model.load_state_dict(load_checkpoint(self.run.best_path)["model"])
        self.hooks.evaluate()
        test_mae, test_rmse = errors(
            self.model, self._loader(split.test_idx), self.device, self.info
        )
        unit = UNITS[cfg.target]
        metrics = {
            "target": cfg.target,
            "unit": unit,
            "test_mae": test_mae,
            "test_rmse": test_rmse,
            "best_val_mae": st.best_val,
            "best_epoch": st.best_epoch,
            "epochs": st.epoch,
            "train_seconds": st.elapsed,
            "num_train": len(split.train_idx),
            "num_val": len(split.val_idx),
            "num_test": len(split.test_idx),
            "num_params": self.num_params,
            "model": cfg.model_name,
            "filter": cfg.filter_name,
            "processes": self.info.world_size,
            "threads": self.threads,
            "effective_batch_size": self.effective_batch_size,
            "stop_reason": st.stop_reason,
            "lr_decays": st.lr_decays,
            "final_lr": self.sched.current,
            "steps": st.steps,
            "schedule": self.sched.describe(),
            "schedule_completed": self.sched.completed(st.progress(), st.lr_decays),
            "ema_decay": cfg.ema_decay,
            "code": code_version(),  # the code that finished and tested it
        }
        if unit == "eV":
            metrics["test_mae_meV"] = test_mae * 1000.0
            metrics["test_rmse_meV"] = test_rmse * 1000.0
        if self.info.main:
            write_json(self.run.metrics_path, metrics)
            self.wandb.summary(
                {f"final/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}
            )
            if self.wandb.active:
                self._wandb_results(metrics)
        return metrics

    def _wandb_results(self, metrics: Dict[str, Any]) -> None:
        """What a W&B user opens: the test parity plot, the learned filters
        (also kept in the run directory) and the best model as an artifact."""
        cfg, unit = self.cfg, metrics["unit"]
        loader = MoleculeLoader(self.dataset, self.split.test_idx, cfg.batch_size, self.target)
        pred, y, _ = predict_loader(self.model, loader, self.device)
        parity = self.run.file("parity_test.png")
        parity_plot(
            y.cpu().numpy(),
            pred.cpu().numpy(),
            f"{cfg.label}, {cfg.target} (test): MAE {metrics['test_mae']:.4g} {unit}",
            unit,
            parity,
        )
        images = {"parity_test": parity}
        if isinstance(self.model, SchNet):  # the learned filters of this project's SchNet
            images["filters"] = self.run.file("filters.png")
            filter_plot(self.model.cpu(), images["filters"])
        self.wandb.images(images)
        self.wandb.artifact(
            export_weights(self.run),
            {
                k: metrics[k]
                for k in (
                    "target",
                    "unit",
                    "test_mae",
                    "best_epoch",
                    "num_params",
                    "model",
                    "filter",
                )
            },
        )


def train(
    cfg: Config,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
    hooks: Optional[TrainerHooks] = None,
    dataset: Optional[QM9] = None,
) -> Dict[str, Any]:
    """Train one model as configured; returns the final metrics. The main
    process holds the run directory's lock for the whole run.

    ``overwrite`` replaces a run already in ``cfg.out`` all or nothing: the
    new run is built in a staging directory beside it
    (:meth:`~pyg_schnet.run.rundir.RunDir.prepare`) and swapped in whole when
    it is finished (:func:`~pyg_schnet.io.replace_dir`; the ``swap`` fault
    points). Until then the old run stays as it was: bad settings (split
    file, sizes, seed, data), a failure or a kill leave it untouched."""
    hooks = hooks or default_hooks()
    rd = RunDir(cfg.out)
    try:
        if int(os.environ.get("RANK", "0")) != 0:  # where rank 0 writes (it holds the lock)
            staged = overwrite and not resume and rd.status() != NEW
            return Trainer(cfg, rd.staging() if staged else rd, resume, quiet, hooks, dataset).fit()
        if resume and not osp.isdir(cfg.out):
            raise UserError(f"run directory {cfg.out} does not exist")
        with rd.lock():
            where = rd if resume else rd.prepare(overwrite)
            if where is rd:
                return Trainer(cfg, rd, resume, quiet, hooks, dataset).fit()
            with where.lock():
                try:
                    metrics = Trainer(cfg, where, False, quiet, hooks, dataset).fit()
                except BaseException as exc:
                    shutil.rmtree(where.path, ignore_errors=True)  # the old run stays
                    if isinstance(exc, TrainingDiverged):  # its best.pt went with the staging
                        raise TrainingDiverged(
                            exc.what, f"the new run is discarded; {rd.path} keeps the run it held"
                        ) from None
                    raise
                replace_dir(where.path, rd.path, hooks.swap)
            return metrics
    finally:
        # an undestroyed gloo group can abort the interpreter at exit
        # ("terminate called without an active exception")
        if dist.is_initialized():
            dist.destroy_process_group()


def resume_config(out: str) -> Config:
    """The saved configuration of an interrupted run, checked against its
    ``last.pt`` (a training checkpoint of those settings: :func:`check_config`)
    here, before any process starts; :class:`Trainer` checks again for
    library callers."""
    rd = RunDir(out)
    cfg = rd.resume_config()
    check_config(load_training_checkpoint(rd.last_path), rd.last_path, cfg)
    return cfg
