"""Training metrics to the console, a JSON-lines file, TensorBoard and (when
asked) Weights & Biases. Only global rank 0 writes; metrics are already
reduced over ranks by the trainer.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from megatron_snow.training.config import LoggingConfig


class MetricsLogger:
    def __init__(self, cfg: LoggingConfig, rank: int, run_config: dict | None = None):
        self.active = rank == 0
        self._tb = None
        self._wandb = None
        self._file = None
        if not self.active:
            return
        if cfg.metrics_file:
            Path(cfg.metrics_file).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(cfg.metrics_file, "a")
        if cfg.tensorboard_dir:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=cfg.tensorboard_dir)
        if cfg.wandb_project:
            try:
                import wandb
            except ImportError as err:
                raise RuntimeError(
                    "logging.wandb_project is set but wandb is not installed (pip install -e '.[wandb]')"
                ) from err
            self._wandb = wandb.init(project=cfg.wandb_project, name=cfg.wandb_run_name, config=run_config,
                                     resume="allow")

    def log(self, iteration: int, metrics: dict, prefix: str = "train") -> None:
        if not self.active:
            return
        parts = [f"[{prefix}] iter {iteration}"]
        for k, v in metrics.items():
            if isinstance(v, float):
                parts.append(f"{k} {v:.6g}" if math.isfinite(v) else f"{k} {v}")
            else:
                parts.append(f"{k} {v}")
        print(" | ".join(parts), flush=True)
        if self._file is not None:
            self._file.write(json.dumps({"split": prefix, "iteration": iteration, **metrics}) + "\n")
            self._file.flush()
        if self._tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)):
                    self._tb.add_scalar(f"{prefix}/{k}", v, iteration)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log({f"{prefix}/{k}": v for k, v in metrics.items()}, step=iteration)

    def info(self, text: str) -> None:
        if self.active:
            print(text, file=sys.stdout, flush=True)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
