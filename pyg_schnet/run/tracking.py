"""Weights & Biases tracking of a training run: config, per-epoch rows,
summary, figures and the best model as an artifact (nothing when disabled,
nothing on the non-main processes). The run is filed by the config's
``wandb_*`` keys: project, entity, name, group, tags and job type."""

from __future__ import annotations

import os
import os.path as osp
from typing import Any, Dict, Optional

from pyg_schnet.errors import UserError
from pyg_schnet.run.config import Config


class WandB:
    """Thin wrapper: does nothing when disabled, never on non-main ranks."""

    def __init__(self, cfg: Config, out: str, run_id: Optional[str], active: bool) -> None:
        self.run = None
        if not active or cfg.wandb == "disabled":
            return
        os.environ.setdefault("WANDB_SILENT", "true")
        try:
            import wandb

            self.run = wandb.init(
                project=cfg.wandb_project,
                config=cfg.to_dict(),
                mode=cfg.wandb,
                dir=out,
                entity=cfg.wandb_entity,
                # out: maybe a replacement's staging, so the name comes from cfg.out
                name=cfg.wandb_name or osp.basename(osp.abspath(cfg.out)),
                group=cfg.wandb_group,
                tags=cfg.wandb_tags or None,
                job_type=cfg.wandb_job_type,
                id=run_id,
                resume="allow",
                reinit=True,
            )
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
