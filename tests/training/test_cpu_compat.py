"""megatron_snow.training.cpu_compat: each CUDA assumption it answers, on a
real process (the layer is process-wide, so probes run in subprocesses)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from training_helpers import REPO, _free_port

PROBE = Path(__file__).with_name("cpu_compat_probe.py")


def _probe(mode: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, str(PROBE), mode, str(_free_port())], capture_output=True, text=True,
                          timeout=180, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE ")][-1]
    return json.loads(line[len("PROBE "):])


def test_layer_rewrites_cuda_assumptions_and_megatron_runs():
    out = _probe("active")
    assert out["installed"] and out["installed_again"]
    # (2) devices named literally
    assert out["zeros_device"] == "cpu" and out["zeros_device_int"] == "cpu"
    assert out["cuda_is_identity"] and out["to_cuda_device"] == "cpu" and out["to_cuda_dtype"] == "torch.bfloat16"
    assert out["current_device"] == 0
    # (3) type strings the optimizers assert on
    assert out["type_fp32"] == "torch.cuda.FloatTensor" and out["type_bf16"] == "torch.cuda.BFloat16Tensor"
    assert out["type_convert"] == "torch.float16"
    # (1) RNG: CUDA seeding/state drive the CPU generator; the tracker keeps its own streams
    assert out["cuda_seed_drives_cpu"] and out["cuda_rng_state_roundtrip"]
    assert out["tracker_stream"] and out["default_stream"]
    # megatron-core GPTModel (local spec) builds, runs forward/backward; sizes match flops.model_size
    for counted, predicted in out["param_counts"]:
        assert counted == predicted
    assert out["param_counts"][1][0] < out["param_counts"][0][0]  # GQA has fewer K/V weights
    assert out["no_output_layer_weight"] and out["loss_finite"] and out["grads"]


def test_layer_is_inactive_when_cuda_is_present():
    out = _probe("cuda")
    assert out == {"installed": False, "is_active": False, "current_device_untouched": True, "function_modes": 0}
