"""The training loop: megatron-core model, DDP, optimizer, schedule and
pipeline schedules, driven by a TrainConfig.

Launched by torchrun (pretrain_gpt.py): nccl on GPU, gloo on CPU. Every check
that can fail on user input runs in ``preflight`` before the process group,
model or datasets exist, and fails with one line.
"""
from __future__ import annotations

import math
import os
import socket
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path

import torch

from megatron_snow.config import ConfigError, dump_config, to_dict
from megatron_snow.training import checkpoint as ckpt
from megatron_snow.training import cpu_compat
from megatron_snow.training.config import TrainConfig, padded_vocab_size
from megatron_snow.training.data import TokenFacts, build_datasets, check_data, microbatches, token_facts
from megatron_snow.training.flops import model_size
from megatron_snow.training.logger import MetricsLogger
from megatron_snow.training.profiling import StepProfiler
from megatron_snow.training.stopping import StopConditions, write_status


@dataclass
class Plan:
    """What preflight worked out; everything the run needs before heavy work."""

    facts: TokenFacts
    padded_vocab: int
    shape: dict
    dp_size: int
    num_microbatches: int
    resume_dir: Path | None  # this run's own latest checkpoint
    init_dir: Path | None  # previous phase's checkpoint (weights only)
    dtype: torch.dtype


def preflight(cfg: TrainConfig, world_size: int, scan_tokens: bool = True) -> Plan:
    """The checks that need the world size, the environment or the files, before any process group,
    model or dataset is built (the settings checked themselves when the config was built).

    ``scan_tokens``: read every token id once to check it fits the vocabulary
    (one memmap pass, remembered in data.index_cache_dir). The launcher does it
    on global rank 0 only; if it fails there, torchrun stops the other ranks.
    """
    m, par, t = cfg.model, cfg.parallel, cfg.training
    tp, pp = par.tensor_model_parallel_size, par.pipeline_model_parallel_size
    if world_size % (tp * pp):
        raise ConfigError(f"parallel: world size {world_size} is not divisible by TP x PP = {tp} x {pp}")
    dp = world_size // (tp * pp)
    if t.global_batch_size % (t.micro_batch_size * dp):
        raise ConfigError(
            f"training.global_batch_size ({t.global_batch_size}) is not divisible by "
            f"micro_batch_size x data-parallel size ({t.micro_batch_size} x {dp})"
        )
    from megatron_snow.training.model import use_transformer_engine

    te = use_transformer_engine(m)  # fails here when TE is asked for but missing
    if par.sequence_parallel and tp > 1:
        if not te:
            raise ConfigError("parallel.sequence_parallel needs the Transformer Engine layer spec (CUDA + TE); "
                              "megatron-core's local spec (torch norms) does not support it")

    facts = token_facts(cfg)
    check_data(cfg, facts.vocab_size, scan_tokens=scan_tokens)

    padded = padded_vocab_size(facts.vocab_size, m.make_vocab_size_divisible_by, tp)
    shape = ckpt.model_shape(m, padded)
    resume_dir, init_dir = ckpt.find_resume(cfg, shape, say=_say_rank0)

    if t.precision == "auto":
        dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    else:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[t.precision]
    return Plan(facts, padded, shape, dp, t.global_batch_size // (t.micro_batch_size * dp), resume_dir, init_dir, dtype)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(cfg: TrainConfig) -> None:
    """Process group (nccl on GPU, gloo on CPU) and megatron's parallel groups."""
    from megatron.core import parallel_state, tensor_parallel

    if "RANK" not in os.environ:  # plain `python pretrain_gpt.py`: a world of one
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        backend = "nccl"
    else:
        backend = "gloo"
    cpu_compat.install()
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(
            backend=backend, timeout=timedelta(minutes=cfg.parallel.distributed_timeout_minutes))
    par = cfg.parallel
    parallel_state.initialize_model_parallel(
        tensor_model_parallel_size=par.tensor_model_parallel_size,
        pipeline_model_parallel_size=par.pipeline_model_parallel_size,
        distributed_timeout_minutes=par.distributed_timeout_minutes,  # a float is fine (a timedelta)
    )
    # Megatron's seeding: one stream per pipeline stage, TP ranks share the
    # default stream (so sliced weights match a TP=1 init) and get their own
    # tracker stream for tensor-parallel regions.
    import random

    import numpy as np

    seed = cfg.training.seed + 100 * parallel_state.get_pipeline_model_parallel_rank()
    if not torch.cuda.is_available() and cfg.training.cpu_threads:
        torch.set_num_threads(cfg.training.cpu_threads)  # same losses whatever OMP_NUM_THREADS says
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    tensor_parallel.model_parallel_cuda_manual_seed(seed)


def _loss_func(loss_mask: torch.Tensor, output_tensor: torch.Tensor):
    losses = output_tensor.float().view(-1)
    mask = loss_mask.view(-1).float()
    total = torch.sum(losses * mask)
    num_tokens = mask.sum().to(torch.int)
    return total, num_tokens, {"lm loss": torch.stack([total.detach().clone(), mask.sum().detach()])}


def _forward_step(data_iterator, model):
    batch = next(data_iterator)
    dev = torch.cuda.current_device() if torch.cuda.is_available() else "cpu"
    batch = {k: v.to(dev, non_blocking=True) for k, v in batch.items()}
    output = model(
        batch["tokens"], batch["position_ids"], batch.get("attention_mask"), labels=batch["labels"]
    )
    return output, partial(_loss_func, batch["loss_mask"])


def _reduce_losses(losses: list) -> float:
    """Mean token loss over the global batch, the same value on every rank."""
    from megatron.core import parallel_state as ps

    dev = torch.cuda.current_device() if torch.cuda.is_available() else "cpu"
    acc = torch.zeros(2, dtype=torch.float64, device=dev)
    if ps.is_pipeline_last_stage() and ps.get_tensor_model_parallel_rank() == 0:
        for item in losses:
            acc += item["lm loss"].to(acc)
    torch.distributed.all_reduce(acc)
    return float(acc[0] / acc[1].clamp(min=1))


class NonFiniteGrads(Exception):
    """Raised on every rank together when some rank's local gradients are not finite."""


class NonFiniteStop(RuntimeError):
    """training.max_nonfinite_in_a_row iterations in a row were skipped: the run stops, unsaved."""


def _device():
    return torch.cuda.current_device() if torch.cuda.is_available() else "cpu"


def _finalize_unless_nonfinite(finalize, ddp, *args, **kwargs):
    """megatron's finalize_model_grads (the gradient reduction), after a collective check
    that no rank holds a non-finite local gradient. Without it, megatron's own
    check_for_nan_in_grad would stop the run on the one rank that saw the NaN while the
    others wait in the reduction; here every rank raises NonFiniteGrads together and the
    iteration is skipped. (With overlap_grad_reduce the reduction starts during backward,
    so megatron's check, which ends the run, is the one in charge of gradients.)"""
    if not ddp.ddp_config.overlap_grad_reduce:
        bad = torch.zeros(1, device=_device())
        for buffer in ddp.buffers + ddp.expert_parallel_buffers:
            if not torch.isfinite(buffer.grad_data.norm(p=2)):
                bad.fill_(1.0)
        torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
        if bad.item() > 0:
            raise NonFiniteGrads()
    return finalize(*args, **kwargs)


def _guarded_step(optimizer, loss: float) -> tuple[str, float]:
    """megatron's optimizer step (as ChainedOptimizer.step: prepare, norm, clip, step), except
    that an update whose loss or gradient norm is not finite is not applied. Both are reduced
    over ranks, so every rank decides the same. Returns (status, grad_norm): status "ok",
    "nonfinite" or "overflow" (fp16 loss scaling skipped it)."""
    from megatron.core.optimizer.clip_grads import clip_grad_by_total_norm_fp32

    if optimizer.prepare_grads():
        return "overflow", float("nan")
    grad_norm = float(optimizer.get_grad_norm())
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
        return "nonfinite", grad_norm
    for opt in getattr(optimizer, "chained_optimizers", [optimizer]):
        params = [] if getattr(opt, "is_stub_optimizer", False) else opt.get_parameters()
        if params and opt.config.clip_grad > 0.0:
            clip_grad_by_total_norm_fp32(params, max_norm=opt.config.clip_grad, total_norm=grad_norm,
                                         use_decoupled_grad=opt.config.use_precision_aware_optimizer_no_fp8_or_ds_fp8)
    return ("ok" if optimizer.step_with_ready_grads() else "overflow"), grad_norm


def _say_rank0(line: str) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        print(line, file=sys.stderr, flush=True)


def build_scheduler(optimizer, o, train_iters: int):
    """megatron's OptimizerParamScheduler, stepped once per iteration: linear
    warm-up from lr_warmup_init to lr, then cosine / linear / constant / WSD."""
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    decay_iters = o.lr_decay_iters if o.lr_decay_iters is not None else train_iters
    return OptimizerParamScheduler(
        optimizer,
        init_lr=o.lr_warmup_init,
        max_lr=o.lr,
        min_lr=o.min_lr,
        lr_warmup_steps=o.lr_warmup_iters,
        lr_decay_steps=max(decay_iters, o.lr_warmup_iters + 1),
        lr_decay_style=o.lr_decay_style,
        start_wd=o.weight_decay,
        end_wd=o.weight_decay,
        wd_incr_steps=max(decay_iters, 1),
        wd_incr_style="constant",
        wsd_decay_steps=o.lr_wsd_decay_iters,
        lr_wsd_decay_style=o.lr_wsd_decay_style,
    )


class Trainer:
    def __init__(self, cfg: TrainConfig, plan: Plan):
        from megatron.core import parallel_state as ps
        from megatron.core.distributed import (DistributedDataParallel, DistributedDataParallelConfig,
                                               finalize_model_grads)
        from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer

        from megatron_snow.training.model import build_model, config_kwargs, kernels

        self.cfg, self.plan = cfg, plan
        # SIGTERM / SIGUSR1 / training.exit_duration_mins: save at the next iteration boundary and exit.
        self.stop = StopConditions(cfg.training.exit_duration_mins)
        self.rank = torch.distributed.get_rank()
        self.world = torch.distributed.get_world_size()
        t, par, o = cfg.training, cfg.parallel, cfg.optimizer
        self.log = MetricsLogger(cfg.logging, self.rank, to_dict(cfg))
        # First line: which layer spec and attention kernel (never a silent fallback), then
        # the memory estimate, with a warning before the model is built when it will not fit.
        self.kernels = kernels(cfg.model, plan.dtype)
        self.log.info(self.kernels.describe())
        self._check_memory(plan)

        t0 = time.time()
        self.train_ds, self.valid_ds = build_datasets(cfg, plan.facts)
        self.log.info(f"datasets ready in {time.time() - t0:.1f}s: train {len(self.train_ds)} samples, "
                      f"valid {len(self.valid_ds) if self.valid_ds is not None else 0}")

        self.model = build_model(cfg.model, par, plan.facts.vocab_size, cfg.data.seq_length, plan.dtype,
                                 training=t, kern=self.kernels)
        config = self.model.config
        module = self.model
        if plan.dtype != torch.float32:
            # As Megatron-LM: bf16/fp16 weights, fp32 loss out of the last stage.
            from megatron.core.transformer.module import Float16Module

            module = Float16Module(config, self.model)
        self.ddp = DistributedDataParallel(
            config=config,
            ddp_config=DistributedDataParallelConfig(
                grad_reduce_in_fp32=True,
                # Nothing to overlap with one data-parallel rank; without overlap the
                # trainer's collective non-finite check runs before any reduction.
                overlap_grad_reduce=par.overlap_grad_reduce and plan.dp_size > 1,
                use_distributed_optimizer=par.use_distributed_optimizer,
                check_for_nan_in_grad=t.check_for_nan_in_grad,
            ),
            module=module,
        )
        self.iteration = 0
        if plan.resume_dir is None and plan.init_dir is not None:
            # Phase continuation: previous phase's weights, everything else fresh.
            it = ckpt.load_checkpoint(plan.init_dir, self.model)
            self.log.info(f"initialised weights from {plan.init_dir} (its iteration {it}); iteration counter 0")

        self.optimizer = get_megatron_optimizer(
            OptimizerConfig(
                optimizer="adam",
                **config_kwargs(o, "lr", "min_lr", "weight_decay", "adam_beta1", "adam_beta2", "adam_eps", "clip_grad"),
                bf16=plan.dtype == torch.bfloat16,
                fp16=plan.dtype == torch.float16,
                params_dtype=plan.dtype,
                use_distributed_optimizer=par.use_distributed_optimizer,
            ),
            [self.ddp],
        )
        self.scheduler = build_scheduler(self.optimizer, o, t.train_iters)
        config.finalize_model_grads_func = partial(_finalize_unless_nonfinite, finalize_model_grads, self.ddp)
        config.no_sync_func = self.ddp.no_sync
        config.grad_scale_func = self.optimizer.scale_loss

        if plan.resume_dir is not None:
            self.iteration = ckpt.load_checkpoint(plan.resume_dir, self.model, self.optimizer, self.scheduler)
            self.log.info(f"resumed from {plan.resume_dir} at iteration {self.iteration}")

        self.dp_rank = ps.get_data_parallel_rank()
        size = model_size(cfg.model, plan.facts.vocab_size, cfg.data.seq_length, par.tensor_model_parallel_size)
        self.flops_per_token = size.flops_per_token
        self.log.info(
            f"model: {size.params / 1e6:.2f}M parameters, {size.flops_per_token:,.0f} FLOPs/token "
            f"(Megatron-LM formula, as tools/model_info.py); "
            f"TP={par.tensor_model_parallel_size} PP={par.pipeline_model_parallel_size} DP={plan.dp_size}, "
            f"{plan.num_microbatches} micro-batches of {t.micro_batch_size}, {str(plan.dtype).replace('torch.', '')}, "
            f"{'cuda' if torch.cuda.is_available() else 'cpu (megatron_snow.training.cpu_compat active)'}"
        )
        if cfg.checkpoint.save and self.rank == 0:
            Path(cfg.checkpoint.save).mkdir(parents=True, exist_ok=True)
            dump_config(cfg, Path(cfg.checkpoint.save) / "config.yaml")

    def _check_memory(self, plan: Plan) -> None:
        """Log the memory estimate; warn (before the model is built) when it exceeds the device."""
        from megatron_snow.training.memory import device_memory_bytes, estimate_memory, memory_warning

        est = estimate_memory(self.cfg, plan.facts.vocab_size, self.kernels.attention, dp=plan.dp_size,
                              swiglu_fusion=self.kernels.swiglu_fusion,
                              on_gpu=torch.cuda.is_available(), num_microbatches=plan.num_microbatches)
        capacity, device = device_memory_bytes()
        if not torch.cuda.is_available():  # the ranks on this machine share its RAM
            capacity /= int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        self.log.info(f"memory estimate per rank (megatron_snow.training.memory): {est.describe()}")
        warning = memory_warning(est, capacity, device)
        if warning and self.rank == 0:
            print(warning, file=sys.stderr, flush=True)

    def _run_batches(self, dataset, start: int, forward_only: bool) -> list:
        from megatron.core.pipeline_parallel import get_forward_backward_func

        t = self.cfg.training
        data = microbatches(dataset, start, t.global_batch_size, t.micro_batch_size, self.dp_rank, self.plan.dp_size)
        return get_forward_backward_func()(
            forward_step_func=_forward_step,
            data_iterator=data,
            model=[self.ddp],
            num_microbatches=self.plan.num_microbatches,
            seq_length=self.cfg.data.seq_length,
            micro_batch_size=t.micro_batch_size,
            forward_only=forward_only,
        )

    def train_step(self) -> dict:
        t = self.cfg.training
        self.ddp.zero_grad_buffer()
        self.optimizer.zero_grad()
        lr = self.optimizer.param_groups[0]["lr"]
        try:
            losses = self._run_batches(self.train_ds, self.iteration * t.global_batch_size, forward_only=False)
            loss = _reduce_losses(losses)
            status, grad_norm = _guarded_step(self.optimizer, loss)
        except NonFiniteGrads:  # raised on every rank together, before any gradient reduction
            loss, status, grad_norm = float("nan"), "nonfinite", float("nan")
        if status == "ok":
            self.scheduler.step(increment=1)
        self.iteration += 1
        return {"loss": loss, "lr": float(lr), "grad_norm": grad_norm, "skipped": int(status != "ok"),
                "nonfinite": int(status == "nonfinite")}

    def evaluate(self) -> float | None:
        if self.valid_ds is None:
            return None
        t = self.cfg.training
        self.ddp.eval()
        losses = []
        with torch.no_grad():
            for k in range(t.eval_iters):
                losses += self._run_batches(self.valid_ds, k * t.global_batch_size, forward_only=True)
        self.ddp.train()
        return _reduce_losses(losses)

    def save(self) -> None:
        c = self.cfg.checkpoint
        if not c.save:
            return
        t0 = time.time()
        meta = {**ckpt.recorded_facts(self.cfg, self.plan.shape),
                "consumed_samples": self.iteration * self.cfg.training.global_batch_size}
        path = ckpt.save_checkpoint(c.save, self.iteration, self.model, self.optimizer, self.scheduler, meta,
                                    c.keep_last, optimizer_format=c.optimizer_format)
        self.log.info(f"saved checkpoint {path} in {time.time() - t0:.1f}s")

    def train(self) -> dict:
        t, lcfg = self.cfg.training, self.cfg.logging
        tokens_per_step = t.global_batch_size * self.cfg.data.seq_length
        saved_at = self.iteration if self.plan.resume_dir is not None else None
        last: dict = {}
        stop = t.train_iters if not t.exit_at_iter else min(t.train_iters, t.exit_at_iter)
        nonfinite_total, streak = 0, 0
        profile_dir = lcfg.profile_dir or (Path(lcfg.metrics_file).parent / "profile" if lcfg.metrics_file else None)
        profiler = StepProfiler(lcfg.profile_iters, profile_dir, self.rank, self.log.info)
        while self.iteration < stop:
            profiler.before_step(self.iteration + 1)
            t0 = time.time()
            metrics = self.train_step()
            profiler.after_step(self.iteration)
            streak = streak + 1 if metrics["nonfinite"] else 0
            nonfinite_total += metrics["nonfinite"]
            metrics["nonfinite_total"] = nonfinite_total
            dt = time.time() - t0
            metrics["tokens_per_s"] = tokens_per_step / dt
            metrics["step_s"] = dt
            if torch.cuda.is_available():
                achieved = self.flops_per_token * metrics["tokens_per_s"]
                metrics["mfu"] = achieved / (self.world * lcfg.peak_tflops * 1e12)
            last = metrics
            if lcfg.log_interval and (self.iteration % lcfg.log_interval == 0 or self.iteration == stop
                                      or metrics["nonfinite"]):
                self.log.log(self.iteration, metrics)
            if streak >= t.max_nonfinite_in_a_row:
                self.log.close()
                kept = f"the last checkpoint is iteration {saved_at}" if saved_at else "no checkpoint from this run"
                raise NonFiniteStop(
                    f"{streak} iterations in a row ({self.iteration - streak + 1}-{self.iteration}) had a non-finite "
                    "loss or gradient norm and were skipped "
                    f"(training.max_nonfinite_in_a_row={t.max_nonfinite_in_a_row}); "
                    f"stopping without saving; {kept}")
            if t.eval_interval and self.iteration % t.eval_interval == 0 and self.iteration < stop:
                self.log.log(self.iteration, {"loss": self.evaluate()}, prefix="valid")
            c = self.cfg.checkpoint
            # Never save right after a skipped (non-finite) iteration: a run that may be diverging
            # keeps its last good checkpoint as the newest.
            if c.save and c.save_interval and self.iteration % c.save_interval == 0 and not streak:
                self.save()
                saved_at = self.iteration
            if self.iteration < stop and self.stop.requested():  # a signal or the time budget, on all ranks
                break
        profiler.finish()  # a run that stopped inside the profiled iterations
        # (Nothing to save before the first step: the optimizer has no state yet, and a
        # restart then starts the same way again.)
        if saved_at != self.iteration and self.iteration > 0 and not streak:
            self.save()
        if self.stop.reason:
            kept = "saved" if self.cfg.checkpoint.save else "not saved: checkpoint.save is not set"
            self.log.info(f"stopped at iteration {self.iteration} of {stop} ({self.stop.reason}); {kept}; "
                          f"the same command resumes")
            self.log.close()
            return {"iteration": self.iteration, "stopped": self.stop.reason, **last}
        val = self.evaluate()
        if val is not None:
            self.log.log(self.iteration, {"loss": val}, prefix="valid")
        self.log.close()
        return {"iteration": self.iteration, "valid_loss": val, **last}


def run(cfg: TrainConfig) -> dict:
    """preflight -> process groups -> Trainer -> train (the whole entry point)."""
    plan = preflight(cfg, world_size_from_env(), scan_tokens=os.environ.get("RANK", "0") == "0")
    init_distributed(cfg)
    try:
        plan.resume_dir = ckpt.verified_resume(cfg, plan.shape, plan.resume_dir, plan.init_dir, say=_say_rank0)
        result = Trainer(cfg, plan).train()
        write_status("stopped" if result.get("stopped") else "finished", result["iteration"], result.get("stopped"))
        return result
    except NonFiniteStop as e:  # a failure, in one line (exit status 1)
        if torch.distributed.get_rank() == 0:
            print(f"error: {e}", file=sys.stderr, flush=True)
        torch.distributed.barrier()  # every rank stops here, after the line is out
        raise SystemExit(1) from None
    finally:
        from megatron.core import parallel_state

        parallel_state.destroy_model_parallel()
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
