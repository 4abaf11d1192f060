"""Training: MSE on the standardised target, Adam, ReduceLROnPlateau, early
stopping on validation MAE, durable resumable checkpoints, W&B logging,
optional DistributedDataParallel (``torchrun``).

:class:`Trainer` is the run as named steps: setup (process, directory, data,
model), :meth:`~Trainer.train_epoch`, :meth:`~Trainer.end_epoch` (validation,
schedule, stop decision, checkpoints, log), :meth:`~Trainer.test`. Its
progress is a :class:`TrainState`; test-only faults plug in as
:class:`TrainerHooks` (:mod:`pyg_schnet.testing.faults`).

Why a hand-written loop and not Lightning or Ignite: the tested guarantees
(a run killed by SIGKILL at any batch, in any checkpoint write or in the final
evaluation resumes to exactly the metrics of an uninterrupted run; a full disk
keeps the previous checkpoint; the stop decision is checkpointed before it
acts) depend on what a checkpoint holds (every RNG, the scheduler, the state)
and on when it is written. A library loop would have to be shown to keep them,
and that has not been measured; this loop is about 250 lines.
"""
from __future__ import annotations

import dataclasses
import math
import os
import os.path as osp
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, cast

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from .config import Config, save_config
from .data import QM9, UNITS, Split, compute_statistics, get_split, load_split, target_index
from .errors import UserError
from .io import atomic_write, write_csv, write_json
from .loader import MoleculeBatch, MoleculeLoader
from .atomistic import AtomisticModel
from .model import SchNet, upgrade_hparams
from .models import build
from .recipe import ExponentialMovingAverage, Progress, make_schedule
from .throughput import default_threads
from .rundir import WEIGHTS_FILE, RunDir

#: Version of the run-directory layout; a run from another version is refused.
RUN_FORMAT = 1
LOG_FIELDS = ("epoch", "train_loss", "train_mae", "val_mae", "lr", "epoch_seconds",
              "molecules_per_second", "elapsed")


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""


# -- hooks -----------------------------------------------------------------------

class TrainerHooks:
    """Points in a run where tests inject faults; every method does nothing."""

    def batch(self) -> None:
        """Before each training batch."""

    def checkpoint_write(self) -> None:
        """Inside each checkpoint write: data flushed, not yet renamed."""

    def evaluate(self) -> None:
        """Before the final test evaluation."""


def default_hooks() -> TrainerHooks:
    """No-op hooks, or the fault injector when ``PYG_SCHNET_FAULT`` is set."""
    spec = os.environ.get("PYG_SCHNET_FAULT")
    if spec:
        from .testing.faults import FaultInjector
        return FaultInjector(spec)
    return TrainerHooks()


# -- checkpoints -----------------------------------------------------------------------

def atomic_save(obj: Any, path: str, before_commit: Optional[Callable[[], None]] = None) -> None:
    """``torch.save`` through :func:`pyg_schnet.io.atomic_write`: a kill leaves
    the old file or the new one; a failed write keeps the old one."""
    try:
        with atomic_write(path, "wb", before_commit=before_commit) as f:
            torch.save(obj, f)
    except OSError as exc:
        raise UserError(f"cannot write checkpoint {path}: {exc.strerror or exc}; "
                        f"the previous checkpoint is kept") from None


def load_checkpoint(path: str) -> Dict[str, Any]:
    if not osp.isfile(path):
        raise UserError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"checkpoint {path} is unreadable ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("run_format") != RUN_FORMAT:
        raise UserError(f"checkpoint {path} is from an incompatible version of pyg_schnet "
                        f"(run format {ckpt.get('run_format') if isinstance(ckpt, dict) else '?'}, "
                        f"expected {RUN_FORMAT})")
    return ckpt


def export_weights(run_dir: str) -> str:
    """``model.pt``: the best model's weights and what rebuilds it (no
    optimizer state), small enough to commit or ship;
    :func:`pyg_schnet.evaluate.load_run` opens it when best.pt is absent."""
    ckpt = load_checkpoint(osp.join(run_dir, "best.pt"))
    path = osp.join(run_dir, WEIGHTS_FILE)
    atomic_save({"run_format": ckpt["run_format"], "hparams": ckpt["hparams"],
                 "model": ckpt["model"], "config": ckpt["config"],
                 "statistics": ckpt.get("statistics"),
                 "epoch": ckpt["state"]["epoch"]}, path)
    return path


def model_from_checkpoint(ckpt: Dict[str, Any]) -> AtomisticModel:
    model = build(**upgrade_hparams(ckpt["hparams"]))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise UserError(f"checkpoint weights do not fit the saved hyperparameters: "
                        f"{str(exc).splitlines()[0]}") from None
    return model


# -- helpers ---------------------------------------------------------------

@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: str) -> DistInfo:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size())


def _allreduce(values: List[float], info: DistInfo) -> List[float]:
    if info.world_size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def predict_loader(model: nn.Module, loader: MoleculeLoader, device: torch.device
                   ) -> Tuple[Tensor, Tensor, Tensor]:
    """Predictions, targets and dataset positions over a loader."""
    model.eval()
    preds, ys, idx = [], [], []
    for b in loader:
        b = b.to(device)
        preds.append(model(b.z, b.pos, b.batch, num_graphs=b.num_graphs).view(-1).cpu())
        ys.append(b.y.cpu())
        idx.append(b.index)
    if not preds:
        return torch.zeros(0), torch.zeros(0), torch.zeros(0, dtype=torch.long)
    return torch.cat(preds), torch.cat(ys), torch.cat(idx)


def errors(model: nn.Module, loader: MoleculeLoader, device: torch.device,
           info: Optional[DistInfo] = None) -> Tuple[float, float]:
    """MAE and RMSE over the loader (summed over ranks under data parallelism)."""
    info = info or DistInfo()
    pred, y, _ = predict_loader(model, loader, device)
    diff = (pred.double() - y.double())
    s_abs, s_sq, n = _allreduce([float(diff.abs().sum()), float((diff ** 2).sum()), len(diff)],
                                info)
    if n == 0:
        return float("nan"), float("nan")
    return s_abs / n, math.sqrt(s_sq / n)


def _rng_state() -> Dict[str, Any]:
    _, keys, pos, _, _ = cast(Tuple[str, np.ndarray, int, int, float], np.random.get_state())
    return {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(keys.copy()),
            "numpy_pos": int(pos), "python": repr(random.getstate())}


def _set_rng_state(state: Dict[str, Any]) -> None:
    import ast
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32),
                         state["numpy_pos"], 0, 0.0))
    random.setstate(ast.literal_eval(state["python"]))


class _WandB:
    """Thin wrapper: does nothing when disabled, never on non-main ranks."""

    def __init__(self, cfg: Config, out: str, run_id: Optional[str], active: bool) -> None:
        self.run = None
        if not active or cfg.wandb == "disabled":
            return
        os.environ.setdefault("WANDB_SILENT", "true")
        try:
            import wandb
            self.run = wandb.init(project=cfg.wandb_project, config=cfg.to_dict(), mode=cfg.wandb,
                                  dir=out, name=osp.basename(osp.abspath(out)), id=run_id,
                                  resume="allow", reinit=True)
            self.run.define_metric("val_mae", summary="min")  # the best epoch, not the last
        except Exception as exc:
            raise UserError(f"cannot start W&B in {cfg.wandb} mode: {exc}") from None

    @property
    def active(self) -> bool:
        return self.run is not None

    def images(self, paths: Dict[str, str]) -> None:
        """Figures of the run (name -> PNG path) as W&B images."""
        if self.run is not None:
            import wandb
            self.run.log({k: wandb.Image(p) for k, p in paths.items()})

    def artifact(self, path: str, metadata: Dict[str, Any]) -> None:
        """The best model's model-only weights as a ``model`` artifact."""
        if self.run is not None:
            import wandb
            art = wandb.Artifact(f"model-{self.run.id}", type="model", metadata=metadata)
            art.add_file(path)
            self.run.log_artifact(art, aliases=["best"])

    @property
    def id(self) -> Optional[str]:
        return None if self.run is None else self.run.id

    def config(self, values: Dict[str, Any]) -> None:
        """Settings the config file does not hold (how the run was launched)."""
        if self.run is not None:
            self.run.config.update(values, allow_val_change=True)

    def log(self, row: Dict[str, Any]) -> None:
        if self.run is not None:
            self.run.log(row, step=int(row["epoch"]))

    def summary(self, metrics: Dict[str, Any]) -> None:
        if self.run is not None:
            for k, v in metrics.items():
                self.run.summary[k] = v

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None


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
        if self.bad_epochs >= cfg.patience:
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
        resume (bool): Continue the run in ``cfg.out`` from its ``last.pt``.
        overwrite (bool): Replace a run already in ``cfg.out``.
        quiet (bool): No progress bars.
        hooks (TrainerHooks, optional): Test hooks. (default: :func:`default_hooks`)
        dataset (QM9, optional): The data set of ``cfg`` (root, source,
            max_molecules), already loaded (a study reuses it across runs).
            (default: loaded here)
    """

    def __init__(self, cfg: Config, resume: bool = False, overwrite: bool = False,
                 quiet: bool = False, hooks: Optional[TrainerHooks] = None,
                 dataset: Optional[QM9] = None) -> None:
        self.cfg, self.out, self.quiet = cfg, cfg.out, quiet
        self.hooks = hooks or default_hooks()
        self._setup_process()
        ckpt = self._setup_directory(resume, overwrite)
        self._setup_data(resumed=ckpt is not None, dataset=dataset)
        self._setup_model(ckpt)

    # -- setup ----------------------------------------------------------------------
    def _setup_process(self) -> None:
        self.info = _init_distributed(self.cfg.device)
        self.device = torch.device(self.cfg.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise UserError("device cuda asked for, but no CUDA GPU is available")
        cfg = self.cfg
        self.threads = cfg.num_threads or default_threads(
            cfg.num_filters, cfg.num_interactions, cfg.cutoff, self.info.world_size)
        torch.set_num_threads(self.threads)
        # Flush float32 denormals (below 1.2e-38) to zero: the Gaussians' tails
        # and the gradients they multiply produce them, and x86 CPUs handle them
        # ~100x slower; training measured 2x faster with the flag (1,400 -> 2,900
        # molecules/s, fast mode, 1 thread), and no value that matters is that small.
        torch.set_flush_denormal(True)

    def _setup_directory(self, resume: bool, overwrite: bool) -> Optional[Dict[str, Any]]:
        """Prepare (or, resuming, check) the run directory; the checkpoint to
        resume from, if any."""
        rd = RunDir(self.out)
        ckpt = None
        if resume:
            ckpt = load_checkpoint(rd.file("last.pt"))
            if rd.has("metrics.json"):
                raise UserError(f"{self.out} holds a finished run; nothing to resume")
            if self.info.main:
                rd.remove_temporary()
        elif self.info.main:
            rd.prepare(overwrite)
        self._barrier()
        return ckpt

    def _setup_data(self, resumed: bool, dataset: Optional[QM9]) -> None:
        cfg, info = self.cfg, self.info
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        random.seed(cfg.seed)
        self.dataset = dataset if dataset is not None else \
            QM9(cfg.root, source=cfg.source, max_molecules=cfg.max_molecules)
        self.split = self._split(resumed)
        if info.main:
            save_config(cfg, osp.join(self.out, "config.yaml"))
        self.target = target_index(cfg.target)
        self.stats = compute_statistics(self.dataset, self.split.train_idx, cfg.target)
        self.train_loader = MoleculeLoader(
            self.dataset, self.split.train_idx, cfg.batch_size, self.target, shuffle=True,
            seed=cfg.seed, rank=info.rank, world_size=info.world_size,
            rotate=cfg.rotation_augmentation)
        self.val_loader = self._loader(self.split.val_idx)

    def _split(self, resumed: bool) -> Split:
        cfg, n = self.cfg, len(self.dataset)
        path = osp.join(self.out, "split.npz")
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
        return MoleculeLoader(self.dataset, idx, self.cfg.batch_size, self.target,
                              rank=self.info.rank, world_size=self.info.world_size)

    def _setup_model(self, ckpt: Optional[Dict[str, Any]]) -> None:
        cfg, stats = self.cfg, self.stats
        self.hparams = dict(cfg.model_hparams(), readout=stats.readout)
        self.model: AtomisticModel = build(**self.hparams, mean=stats.mean, std=stats.std,
                                           atomref=stats.atomref).to(self.device)
        self.num_params = count_parameters(self.model)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.sched = make_schedule(cfg, self.opt, len(self.train_loader))
        self._epoch_start = time.perf_counter()
        self.average = None if cfg.ema_decay is None else \
            ExponentialMovingAverage(self.model, cfg.ema_decay)
        self.state = TrainState()
        self.resumed = ckpt is not None
        if ckpt is not None:
            self.model.load_state_dict(ckpt["model"])
            self.opt.load_state_dict(ckpt["optimizer"])
            self.sched.load_state_dict(ckpt["scheduler"])
            self.state.load_state_dict(ckpt["state"])
            if self.average is not None:
                if "ema" not in ckpt:
                    raise UserError(f"{self.out}/last.pt holds no weight average, but the "
                                    f"config asks for one (ema_decay {cfg.ema_decay})")
                self.average.load_state_dict(ckpt["ema"])
            _set_rng_state(ckpt["rng"])
        self.train_model: nn.Module = self.model
        if self.info.world_size > 1:
            self.train_model = nn.parallel.DistributedDataParallel(self.model)
        self.scale = float(stats.std)  # the loss is on the standardised target
        self.wandb = _WandB(cfg, self.out, self.state.wandb_id, self.info.main)
        self.state.wandb_id = self.wandb.id
        self.wandb.config({"processes": self.info.world_size, "threads": self.threads,
                           "effective_batch_size": self.effective_batch_size})
        if self.info.main and not self.quiet:
            w = self.info.world_size
            share = f", shared by the processes: {cfg.batch_size // w}" + \
                (f"-{-(-cfg.batch_size // w)}" if cfg.batch_size % w else "") + " each" \
                if w > 1 else ""
            print(f"{w} process(es) x {self.threads} thread(s); effective batch size "
                  f"{self.effective_batch_size}{share}", file=sys.stderr)
            print(f"schedule: {self.sched.describe()}; weight average: "
                  f"{self.average.describe() if self.average else 'none'}", file=sys.stderr)

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated, tested and saved as the best model:
        the moving average if there is one."""
        return self.model if self.average is None else self.average.module

    @property
    def effective_batch_size(self) -> int:
        """Molecules per optimizer step: ``batch_size``, however many
        data-parallel processes share it (:class:`~pyg_schnet.loader.MoleculeLoader`)."""
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
                self.checkpoint("last.pt")  # epoch 0: resumable from the start
            first = self.cfg.epochs if self.state.done else self.state.epoch
            epochs = _progress(range(first, self.cfg.epochs), self.cfg.epochs - first,
                               "epochs", self.quiet)
            for epoch in epochs:
                t0 = time.perf_counter()
                sums = self.train_epoch(epoch, t0)
                if self.end_epoch(epoch, sums, t0, epochs) is not None:
                    break
            if not self.state.done:  # the epoch cap
                self.state.done = True
                if self.info.main:
                    self.checkpoint("last.pt")
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
        loss_sum = abs_sum = 0.0
        n_seen = 0
        self._epoch_start = t0
        batches = _progress(self.train_loader, len(self.train_loader), f"epoch {epoch + 1}",
                            self.quiet, leave=False)
        for bi, b in enumerate(batches):
            self.hooks.batch()
            loss, pred, b = self.step(b.to(self.device), epoch, bi)
            loss_sum += float(loss) * b.num_graphs
            abs_sum += float((pred - b.y).abs().sum())
            n_seen += b.num_graphs
            if self._over_budget(t0):
                break
        loss_sum, abs_sum, n = _allreduce([loss_sum, abs_sum, float(n_seen)], self.info)
        return loss_sum, abs_sum, n

    def step(self, b: MoleculeBatch, epoch: int, bi: int) -> Tuple[Tensor, Tensor, MoleculeBatch]:
        """One optimizer step on batch ``b``; the loss and predictions (detached)."""
        pred = self.train_model(b.z, b.pos, b.batch, num_graphs=b.num_graphs).view(-1)
        loss = torch.mean(((pred - b.y) / self.scale) ** 2)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"loss became {float(loss.detach())} at epoch {epoch + 1}, batch {bi + 1}; "
                f"stopped; the best checkpoint so far is kept in {self.out}/best.pt")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.sched.before_step(self.state.progress(time.perf_counter() - self._epoch_start))
        self.opt.step()
        self.state.steps += 1
        if self.average is not None:
            self.average.update(self.model)
        return loss.detach(), pred.detach(), b

    def _over_budget(self, t0: float) -> bool:
        """The time budget or the step cap is used up (checked after every step)."""
        cfg = self.cfg
        if cfg.time_budget is None and cfg.max_steps is None:
            return False
        over = (cfg.max_steps is not None and self.state.steps >= cfg.max_steps) or \
            (cfg.time_budget is not None
             and self.state.elapsed + time.perf_counter() - t0 >= cfg.time_budget)
        return _allreduce([float(over)], self.info)[0] > 0

    def end_epoch(self, epoch: int, sums: Tuple[float, float, float], t0: float,
                  progress: Any = None) -> Optional[str]:
        """Validate, step the schedule, decide whether to stop, then write the
        checkpoints and the log (the decision is in them, so a resumed run
        agrees). Returns why training stops, or None."""
        st = self.state
        val_mae = self.validate(epoch)
        lr = self.sched.current
        if self.sched.after_epoch(val_mae):
            st.lr_decays += 1
        seconds = time.perf_counter() - t0
        st.elapsed += seconds
        st.epoch = epoch + 1
        loss_sum, abs_sum, n = sums
        row = {"epoch": epoch + 1, "train_loss": loss_sum / max(n, 1),
               "train_mae": abs_sum / max(n, 1), "val_mae": val_mae, "lr": lr,
               "epoch_seconds": seconds, "molecules_per_second": n / seconds,
               "elapsed": st.elapsed}
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
                self.checkpoint("best.pt")
            self.checkpoint("last.pt")
            write_csv(osp.join(self.out, "log.csv"), LOG_FIELDS, st.history)
            self.wandb.log(row)
        if hasattr(progress, "set_postfix"):
            progress.set_postfix(val_mae=f"{val_mae:.4g}")
        return reason

    def validate(self, epoch: int) -> float:
        val_mae, _ = errors(self.eval_model, self.val_loader, self.device, self.info)
        if not math.isfinite(val_mae):
            raise TrainingDiverged(f"validation MAE became {val_mae} at epoch {epoch + 1}; "
                                   f"stopped; the best checkpoint so far is kept in "
                                   f"{self.out}/best.pt")
        return val_mae

    def checkpoint(self, name: str) -> None:
        """Write ``best.pt`` or ``last.pt``: weights, optimizer, scheduler,
        state and every RNG. With a weight average, ``best.pt``'s ``model`` is
        the average (what every reader of the best model uses) and ``last.pt``
        holds the trained weights and the average apart."""
        stats = self.stats
        best = name == "best.pt"
        payload = {"run_format": RUN_FORMAT, "hparams": self.hparams,
                   "config": self.cfg.to_dict(),
                   "model": (self.eval_model if best else self.model).state_dict(),
                   "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                   "state": self.state.state_dict(), "rng": _rng_state(),
                   "statistics": {"mean": stats.mean, "std": stats.std,
                                  "readout": stats.readout}}
        if self.average is not None and not best:
            payload["ema"] = self.average.state_dict()
        atomic_save(payload, osp.join(self.out, name), before_commit=self.hooks.checkpoint_write)

    def test(self) -> Dict[str, Any]:
        """Test MAE and RMSE of the best model; writes ``metrics.json``."""
        cfg, st, split = self.cfg, self.state, self.split
        if self.info.main and not osp.exists(osp.join(self.out, "best.pt")):
            raise UserError("no epoch finished, so there is no best model to test")
        self._barrier()
        self.model.load_state_dict(load_checkpoint(osp.join(self.out, "best.pt"))["model"])
        self.hooks.evaluate()
        test_mae, test_rmse = errors(self.model, self._loader(split.test_idx), self.device,
                                      self.info)
        unit = UNITS[cfg.target]
        metrics = {"target": cfg.target, "unit": unit, "test_mae": test_mae,
                   "test_rmse": test_rmse, "best_val_mae": st.best_val,
                   "best_epoch": st.best_epoch, "epochs": st.epoch,
                   "train_seconds": st.elapsed, "num_train": len(split.train_idx),
                   "num_val": len(split.val_idx), "num_test": len(split.test_idx),
                   "num_params": self.num_params, "model": cfg.model_name,
                   "filter": cfg.filter_name,
                   "processes": self.info.world_size, "threads": self.threads,
                   "effective_batch_size": self.effective_batch_size,
                   "stop_reason": st.stop_reason, "lr_decays": st.lr_decays,
                   "final_lr": self.sched.current, "steps": st.steps,
                   "schedule": self.sched.describe(),
                   "schedule_completed": self.sched.completed(st.progress(), st.lr_decays),
                   "ema_decay": cfg.ema_decay}
        if unit == "eV":
            metrics["test_mae_meV"] = test_mae * 1000.0
            metrics["test_rmse_meV"] = test_rmse * 1000.0
        if self.info.main:
            write_json(osp.join(self.out, "metrics.json"), metrics)
            self.wandb.summary({f"final/{k}": v for k, v in metrics.items()
                                if isinstance(v, (int, float))})
            if self.wandb.active:
                self._wandb_results(metrics)
        return metrics

    def _wandb_results(self, metrics: Dict[str, Any]) -> None:
        """What a W&B user opens: the test parity plot, the learned filters
        (also kept in the run directory) and the best model as an artifact."""
        from .plots import filter_plot, parity_plot
        cfg, unit = self.cfg, metrics["unit"]
        loader = MoleculeLoader(self.dataset, self.split.test_idx, cfg.batch_size, self.target)
        pred, y, _ = predict_loader(self.model, loader, self.device)
        parity = osp.join(self.out, "parity_test.png")
        parity_plot(y.cpu().numpy(), pred.cpu().numpy(), f"{cfg.label}, {cfg.target} "
                    f"(test): MAE {metrics['test_mae']:.4g} {unit}", unit, parity)
        images = {"parity_test": parity}
        if isinstance(self.model, SchNet):  # the learned filters of this project's SchNet
            images["filters"] = osp.join(self.out, "filters.png")
            filter_plot(self.model.cpu(), images["filters"])
        self.wandb.images(images)
        self.wandb.artifact(export_weights(self.out), {k: metrics[k] for k in (
            "target", "unit", "test_mae", "best_epoch", "num_params", "model", "filter")})


def train(cfg: Config, resume: bool = False, overwrite: bool = False, quiet: bool = False,
          hooks: Optional[TrainerHooks] = None, dataset: Optional[QM9] = None
          ) -> Dict[str, Any]:
    """Train one model as configured; returns the final metrics. The main
    process holds the run directory's lock for the whole run."""
    try:
        if int(os.environ.get("RANK", "0")) != 0:
            return Trainer(cfg, resume, overwrite, quiet, hooks, dataset).fit()
        if resume and not osp.isdir(cfg.out):
            raise UserError(f"run directory {cfg.out} does not exist")
        with RunDir(cfg.out).lock():
            return Trainer(cfg, resume, overwrite, quiet, hooks, dataset).fit()
    finally:
        # an undestroyed gloo group can abort the interpreter at exit
        # ("terminate called without an active exception")
        if dist.is_initialized():
            dist.destroy_process_group()


def resume_config(out: str) -> Config:
    """The saved configuration of a run directory."""
    return RunDir(out).resume_config()
