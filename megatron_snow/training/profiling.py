"""torch.profiler over a few training iterations (logging.profile_iters = [start, end)).

Where the time of a step goes is the first question when a run is slower than it should
be (Megatron-LM's --profile-step-start/--profile-step-end). On global rank 0 only, the
iterations start..end-1 run under torch.profiler (CPU and, when present, CUDA activity);
at the end the top operators and kernels by self device time (CPU time without CUDA) are
written to PROFILE_DIR/top_kernels.txt and logged, and a Chrome trace (chrome://tracing,
Perfetto) to PROFILE_DIR/trace_rank0.json.
"""
from __future__ import annotations

from pathlib import Path

import torch


class StepProfiler:
    def __init__(self, iters: list[int] | None, out_dir: str | Path | None, rank: int, log):
        self.start, self.end = iters if iters else (0, 0)
        self.active = bool(iters) and rank == 0
        self.out_dir = Path(out_dir) if out_dir else Path("profile")
        self.log = log
        self.prof = None

    def before_step(self, iteration: int) -> None:
        """``iteration``: the number the coming step will have (1-based, as logged)."""
        if not self.active or iteration != self.start:
            return
        activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(torch.profiler.ProfilerActivity.CUDA)
            torch.cuda.synchronize()
        self.prof = torch.profiler.profile(activities=activities)
        self.prof.__enter__()

    def after_step(self, iteration: int) -> None:
        """``iteration``: the number of the step just done."""
        if self.prof is None or iteration < self.end - 1:
            return
        self.finish()

    def finish(self) -> None:
        if self.prof is None:
            return
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.prof.__exit__(None, None, None)
        prof, self.prof, self.active = self.prof, None, False
        self.out_dir.mkdir(parents=True, exist_ok=True)
        sort = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
        table = prof.key_averages().table(sort_by=sort, row_limit=20)
        (self.out_dir / "top_kernels.txt").write_text(table + "\n")
        prof.export_chrome_trace(str(self.out_dir / "trace_rank0.json"))
        self.log(f"profile of iterations {self.start}-{self.end - 1} ({sort}), trace in {self.out_dir}:\n{table}")
