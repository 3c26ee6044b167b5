"""What a benchmark's JSON records of the machine it ran on: rates differ by processor, so every committed
result names its own (tests/test_claims.py prints it in the run line)."""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path


def cpu_name() -> str:
    """The processor, as /proc/cpuinfo names it (with family and model where the name is only the brand)."""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines() if ":" in line)
    except OSError:
        return platform.processor() or platform.machine()
    info = {k.strip(): v.strip() for k, v in info.items()}
    name = info.get("model name", platform.machine())
    if "family" not in name and "cpu family" in info:
        name += f" (family {info['cpu family']}, model {info.get('model', '?')})"
    return name


def run_info(load_start: float) -> dict:
    """The ``run`` entry of a bench's JSON: its command line, the machine, the load before and after."""
    command = " ".join(["python", f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    return {"command": command, "cpus": os.cpu_count(), "cpu": cpu_name(),
            "load_average": [round(load_start, 1), round(os.getloadavg()[0], 1)],
            "python": platform.python_version()}
