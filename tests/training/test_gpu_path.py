"""CPU guards of what the GPU measurement (bench/gpu_checks.py on an H200) changed:

- the compiled fusions the GPU path turns on (megatron-core's SwiGLU and fused vocab-parallel
  cross entropy, torch.compile) give the plain ops' loss and gradients inside a real GPTModel
  (run here on CPU through inductor); cross entropy only in bf16 runs, since its backward
  returns bf16 logit gradients (seen here: 2e-3 relative error in an fp32 run);
- the kernel choice turns them on exactly on a GPU with Triton, and says so in its log line;
- the memory estimate knows the fused SwiGLU keeps less (what made it 0.98x of the H200's
  measured peak at sequence 8192);
- logging.profile_iters profiles the chosen iterations and writes the top kernels and a trace.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from training_helpers import REPO, _env, launch, tiny_overrides

PROBE = REPO / "tests" / "training" / "fusion_probe.py"


def test_fusions_match_plain_ops(tmp_path):
    env = _env()
    env["OMP_NUM_THREADS"] = "1"
    subprocess.run([sys.executable, str(PROBE), str(tmp_path)], cwd=REPO, env=env, check=True, timeout=600,
                   capture_output=True)
    r = json.loads((tmp_path / "rank0.json").read_text())
    assert r["fused_flags"] == [True, True]  # the fused model really had both on
    assert r["swiglu"]["loss_diff"] <= 1e-6 and r["swiglu"]["grad_diff"] <= 1e-5, r
    # fused cross entropy: the same loss; gradients rounded to bf16 (relative 2^-8), never more
    assert r["cross_entropy"]["loss_diff"] <= 1e-5, r
    assert r["cross_entropy"]["grad_diff"] <= 2 ** -7, r
    # the comparison can fail: one changed label moves the per-token loss by O(1)
    assert r["changed_label_diff"] > 0.1, r


def test_fusion_choice():
    from megatron_snow.training.config import ModelConfig, load_train_config
    from megatron_snow.training.memory import estimate_memory
    from megatron_snow.training.model import choose_kernels

    gpu = choose_kernels(ModelConfig(), te_present=False, on_gpu=True, bf16=True)
    triton = __import__("importlib").util.find_spec("triton") is not None
    assert (gpu.swiglu_fusion, gpu.cross_entropy_fusion) == (triton, triton)
    assert "SwiGLU fusion " + ("on" if triton else "off") in gpu.describe()
    fp32 = choose_kernels(ModelConfig(), te_present=False, on_gpu=True, bf16=False)
    assert fp32.swiglu_fusion == triton and fp32.cross_entropy_fusion is False
    assert not choose_kernels(ModelConfig(fusions="none"), te_present=False, on_gpu=True).swiglu_fusion
    cpu = choose_kernels(ModelConfig(), te_present=False, on_gpu=False)
    assert not (cpu.swiglu_fusion or cpu.cross_entropy_fusion)

    cfg = load_train_config(str(REPO / "examples" / "snowcoder_1.3b" / "phase1.yaml"))
    fused = estimate_memory(cfg, 64000, "sdpa", swiglu_fusion=True).activations
    plain = estimate_memory(cfg, 64000, "sdpa", swiglu_fusion=False).activations
    # two fewer [s, b, ffn] bf16 tensors per layer: 24 layers x 2 x 8192 x micro-batch x 5632 x 2 bytes
    assert plain - fused == 24 * 2 * 8192 * cfg.training.micro_batch_size * 5632 * 2


def test_profile_iters_write_top_kernels(tiny_data, tmp_path):
    prof = tmp_path / "prof"
    over = tiny_overrides(tiny_data, tmp_path / "run", **{"training.train_iters": 4})
    res = launch(1, over + ["logging.profile_iters=[2,4]", f"logging.profile_dir={prof}"])
    table = (prof / "top_kernels.txt").read_text()
    assert "aten::mm" in table and "Self CPU" in table
    trace = json.loads((prof / "trace_rank0.json").read_text())
    assert any(e.get("name") == "aten::mm" for e in trace["traceEvents"])
    assert "profile of iterations 2-3" in res.stdout


@pytest.mark.parametrize("bad", ["[3]", "[0,2]", "[4,2]"])
def test_profile_iters_are_checked(bad):
    from megatron_snow.config import ConfigError
    from megatron_snow.training.config import load_train_config

    with pytest.raises(ConfigError, match="logging.profile_iters"):
        load_train_config(None, [f"logging.profile_iters={bad}"])
