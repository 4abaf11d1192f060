"""Training loop: MSE on the standardised target, Adam, ReduceLROnPlateau,
early stopping on validation MAE, atomic resumable checkpoints, W&B logging,
optional DistributedDataParallel (``torchrun``)."""
from __future__ import annotations

import csv
import json
import math
import os
import os.path as osp
import random
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from .config import Config, save_config
from .data import QM9, UNITS, compute_statistics, get_split, load_split, \
    target_index
from .errors import UserError
from .loader import MoleculeLoader
from .model import SchNet, build_model
from .rundir import RunDir

#: Version of the run-directory layout; a run from another version is refused.
RUN_FORMAT = 1
LOG_FIELDS = ("epoch", "train_loss", "train_mae", "val_mae", "lr", "epoch_seconds",
              "molecules_per_second", "elapsed")


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""


# -- fault injection (tests) ------------------------------------------------

_FAULT_COUNTS: Dict[str, int] = {}


def fault_point(name: str) -> None:
    """Test hook: with ``PYG_SCHNET_FAULT=<name>:<n>[,...]`` the process kills
    itself with SIGKILL at the n-th time it passes point ``name``
    (``batch``, ``checkpoint``, ``evaluate``), or, for ``enospc:<n>``, the n-th
    checkpoint write fails as if the disk were full. Unset: does nothing."""
    spec = os.environ.get("PYG_SCHNET_FAULT")
    if not spec:
        return
    _FAULT_COUNTS[name] = _FAULT_COUNTS.get(name, 0) + 1
    for item in spec.split(","):
        point, _, n = item.partition(":")
        if point == name and n.isdigit() and _FAULT_COUNTS[name] == int(n):
            if name == "enospc":
                raise OSError(28, "No space left on device")
            import signal
            os.kill(os.getpid(), signal.SIGKILL)


# -- checkpoints -----------------------------------------------------------

def atomic_save(obj: Any, path: str) -> None:
    """Write ``obj`` to ``path`` via a temporary file and a rename, so a kill
    at any moment leaves either the old or the new file, never a torn one."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            fault_point("enospc")
            fault_point("checkpoint")  # killed here: a complete temporary file, no rename
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.remove(tmp)
        except OSError:
            pass
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


def model_from_checkpoint(ckpt: Dict[str, Any]) -> SchNet:
    model = build_model(**ckpt["hparams"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise UserError(f"checkpoint weights do not fit the saved hyperparameters: "
                        f"{str(exc).splitlines()[0]}") from None
    return model


# -- helpers -----------------------------------------------------------------

def _write_log(path: str, history: List[Dict[str, float]]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        w.writeheader()
        for row in history:
            w.writerow({k: row[k] for k in LOG_FIELDS})
    os.replace(tmp, path)


def _write_json(path: str, obj: Dict[str, Any]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


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


def _errors(model: nn.Module, loader: MoleculeLoader, device: torch.device,
            info: DistInfo) -> Tuple[float, float]:
    """MAE and RMSE over the loader (summed over ranks)."""
    pred, y, _ = predict_loader(model, loader, device)
    diff = (pred.double() - y.double())
    s_abs, s_sq, n = _allreduce([float(diff.abs().sum()), float((diff ** 2).sum()), len(diff)],
                                info)
    if n == 0:
        return float("nan"), float("nan")
    return s_abs / n, math.sqrt(s_sq / n)


def _rng_state() -> Dict[str, Any]:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(np_state[1].copy()),
            "numpy_pos": int(np_state[2]), "python": repr(random.getstate())}


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
        except Exception as exc:
            raise UserError(f"cannot start W&B in {cfg.wandb} mode: {exc}") from None

    @property
    def id(self) -> Optional[str]:
        return None if self.run is None else self.run.id

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


def _stop_reason(cfg: Config, state: Dict[str, Any]) -> Optional[str]:
    """Why training stops after this epoch, or None to go on (the epoch cap
    is the loop's own end)."""
    if state["bad_epochs"] >= cfg.patience:
        return "patience"
    if cfg.max_lr_decays is not None and state["lr_decays"] >= cfg.max_lr_decays:
        return "lr decays"
    if cfg.time_budget is not None and state["elapsed"] >= cfg.time_budget:
        return "time budget"
    return None


# -- the run -----------------------------------------------------------------

def train(cfg: Config, resume: bool = False, overwrite: bool = False, quiet: bool = False
          ) -> Dict[str, Any]:
    """Train one model as configured; returns the final metrics."""
    info = _init_distributed(cfg.device)
    out = cfg.out
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device cuda asked for, but no CUDA GPU is available")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    # Flush float32 denormals (below 1.2e-38) to zero: the Gaussians' tails and
    # the gradients they multiply produce them, and x86 CPUs handle them ~100x
    # slower; training measured 2x faster with the flag (1,400 -> 2,900
    # molecules/s, fast mode, 1 thread), and no value that matters is that small.
    torch.set_flush_denormal(True)

    ckpt: Optional[Dict[str, Any]] = None
    if resume:
        ckpt = load_checkpoint(osp.join(out, "last.pt"))
        if osp.exists(osp.join(out, "metrics.json")):
            raise UserError(f"{out} holds a finished run; nothing to resume")
        if info.main:
            RunDir(out).remove_temporary()
    elif info.main:
        RunDir(out).prepare(overwrite)
    if info.world_size > 1:
        dist.barrier()

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)

    dataset = QM9(cfg.root, source=cfg.source, max_molecules=cfg.max_molecules)
    split_path = osp.join(out, "split.npz")
    if resume:
        split = load_split(split_path, len(dataset))
    elif cfg.split_file:
        split = load_split(cfg.split_file, len(dataset))
        if info.main:
            split.save(split_path, len(dataset))
    else:
        if info.main:
            split = get_split(split_path, len(dataset), cfg.train_size, cfg.val_size,
                              cfg.test_size, cfg.seed)
        if info.world_size > 1:
            dist.barrier()
        split = load_split(split_path, len(dataset))
    if info.main:
        save_config(cfg, osp.join(out, "config.yaml"))

    t_idx = target_index(cfg.target)
    stats = compute_statistics(dataset, split.train_idx, cfg.target)
    hparams = dict(cfg.model_hparams(), readout=stats.readout)
    model = build_model(**hparams, mean=stats.mean, std=stats.std, atomref=stats.atomref)
    model.to(device)
    num_params = count_parameters(model)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=cfg.lr_factor,
                                                       patience=cfg.lr_patience, min_lr=cfg.min_lr)
    state = {"epoch": 0, "best_val": math.inf, "best_epoch": 0, "bad_epochs": 0,
             "elapsed": 0.0, "history": [], "wandb_id": None, "done": False,
             "lr_decays": 0, "stop_reason": "epochs"}
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        state.update(ckpt["state"])
        _set_rng_state(ckpt["rng"])

    train_model: nn.Module = model
    if info.world_size > 1:
        train_model = nn.parallel.DistributedDataParallel(model)
    train_loader = MoleculeLoader(dataset, split.train_idx, cfg.batch_size, t_idx, shuffle=True,
                                  seed=cfg.seed, rank=info.rank, world_size=info.world_size,
                                  rotate=cfg.rotation_augmentation)
    val_loader = MoleculeLoader(dataset, split.val_idx, cfg.batch_size, t_idx,
                                rank=info.rank, world_size=info.world_size)
    scale = float(stats.std)
    wb = _WandB(cfg, out, state["wandb_id"], info.main)
    state["wandb_id"] = wb.id

    def checkpoint(path: str) -> None:
        atomic_save({"run_format": RUN_FORMAT, "hparams": hparams, "config": cfg.to_dict(),
                     "model": model.state_dict(), "optimizer": opt.state_dict(),
                     "scheduler": sched.state_dict(), "state": state, "rng": _rng_state(),
                     "statistics": {"mean": stats.mean, "std": stats.std,
                                    "readout": stats.readout}}, path)

    exit_code = 1
    try:
        if info.main and ckpt is None:
            checkpoint(osp.join(out, "last.pt"))  # epoch 0: resumable from the start
        stop = bool(state.get("done"))  # a resumed run that had finished training
        first = cfg.epochs if stop else state["epoch"]
        epochs = _progress(range(first, cfg.epochs), cfg.epochs - first, "epochs", quiet)
        for epoch in epochs:
            if stop:
                break
            t0 = time.perf_counter()
            train_model.train()
            train_loader.set_epoch(epoch)
            loss_sum, abs_sum, n_seen = 0.0, 0.0, 0
            for bi, b in enumerate(_progress(train_loader, len(train_loader), f"epoch {epoch + 1}",
                                             quiet, leave=False)):
                fault_point("batch")
                b = b.to(device)
                pred = train_model(b.z, b.pos, b.batch, num_graphs=b.num_graphs).view(-1)
                loss = torch.mean(((pred - b.y) / scale) ** 2)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"loss became {float(loss.detach())} at epoch {epoch + 1}, batch {bi + 1}; "
                        f"stopped; the best checkpoint so far is kept in {out}/best.pt")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += float(loss.detach()) * b.num_graphs
                abs_sum += float((pred.detach() - b.y).abs().sum())
                n_seen += b.num_graphs
                if cfg.time_budget is not None:
                    over = state["elapsed"] + time.perf_counter() - t0 >= cfg.time_budget
                    if _allreduce([float(over)], info)[0] > 0:
                        stop = True
                        break
            loss_sum, abs_sum, n_seen = _allreduce([loss_sum, abs_sum, n_seen], info)
            val_mae, _ = _errors(model, val_loader, device, info)
            if not math.isfinite(val_mae):
                raise TrainingDiverged(f"validation MAE became {val_mae} at epoch {epoch + 1}; "
                                       f"stopped; the best checkpoint so far is kept in "
                                       f"{out}/best.pt")
            lr = opt.param_groups[0]["lr"]
            sched.step(val_mae)
            if opt.param_groups[0]["lr"] < lr:
                state["lr_decays"] += 1
            seconds = time.perf_counter() - t0
            state["elapsed"] += seconds
            state["epoch"] = epoch + 1
            row = {"epoch": epoch + 1, "train_loss": loss_sum / max(n_seen, 1),
                   "train_mae": abs_sum / max(n_seen, 1), "val_mae": val_mae, "lr": lr,
                   "epoch_seconds": seconds, "molecules_per_second": n_seen / seconds,
                   "elapsed": state["elapsed"]}
            state["history"].append(row)
            improved = val_mae < state["best_val"]
            if improved:
                state["best_val"], state["best_epoch"], state["bad_epochs"] = val_mae, epoch + 1, 0
            else:
                state["bad_epochs"] += 1
            reason = _stop_reason(cfg, state)
            if reason is not None:  # decided before the checkpoint: a resumed run agrees
                state["stop_reason"], state["done"] = reason, True
            if info.main:
                if improved:
                    checkpoint(osp.join(out, "best.pt"))
                checkpoint(osp.join(out, "last.pt"))
                _write_log(osp.join(out, "log.csv"), state["history"])
                wb.log(row)
            if hasattr(epochs, "set_postfix"):
                epochs.set_postfix(val_mae=f"{val_mae:.4g}")
            if reason is not None:
                break

        if not state.get("done"):
            state["done"] = True
            if info.main:
                checkpoint(osp.join(out, "last.pt"))
        # test MAE of the best model
        if info.main and not osp.exists(osp.join(out, "best.pt")):
            raise UserError("no epoch finished, so there is no best model to test")
        if info.world_size > 1:
            dist.barrier()
        best = load_checkpoint(osp.join(out, "best.pt"))
        model.load_state_dict(best["model"])
        test_loader = MoleculeLoader(dataset, split.test_idx, cfg.batch_size, t_idx,
                                     rank=info.rank, world_size=info.world_size)
        fault_point("evaluate")
        test_mae, test_rmse = _errors(model, test_loader, device, info)
        unit = UNITS[cfg.target]
        metrics = {"target": cfg.target, "unit": unit, "test_mae": test_mae,
                   "test_rmse": test_rmse, "best_val_mae": state["best_val"],
                   "best_epoch": state["best_epoch"], "epochs": state["epoch"],
                   "train_seconds": state["elapsed"],
                   "num_train": len(split.train_idx), "num_val": len(split.val_idx),
                   "num_test": len(split.test_idx), "num_params": num_params,
                   "filter": cfg.filter, "stop_reason": state["stop_reason"],
                   "lr_decays": state["lr_decays"], "final_lr": opt.param_groups[0]["lr"]}
        if unit == "eV":
            metrics["test_mae_meV"] = test_mae * 1000.0
            metrics["test_rmse_meV"] = test_rmse * 1000.0
        if info.main:
            _write_json(osp.join(out, "metrics.json"), metrics)
            wb.summary({f"final/{k}": v for k, v in metrics.items()
                        if isinstance(v, (int, float))})
        exit_code = 0
        return metrics
    finally:
        wb.finish(exit_code)


def resume_config(out: str) -> Config:
    """The saved configuration of a run directory."""
    return RunDir(out).resume_config()
