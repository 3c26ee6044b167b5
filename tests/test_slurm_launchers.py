"""The sbatch scripts also run outside Slurm (single node), so they are exercised here for real:
slurm/phase1.sh trains through torchrun, slurm/preprocess_phase1.sh runs MPI ranks.
(tests/slurm/ runs them through sbatch on a real Slurm.)"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from megatron_snow.training.tiny_data import build_byte_dataset
from tests.rank_checks import assert_every_rank_did_units, assert_every_rank_saved
from tests.tiny_repo import REPOSITORIES, write_repo

REPO = Path(__file__).resolve().parents[1]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PYTHONWARNINGS="ignore", **extra)
    return env


def test_scripts_parse():
    for script in sorted((REPO / "slurm").glob("*.sh")):
        subprocess.run(["bash", "-n", str(script)], check=True)
        if script.name not in ("launch_train.sh", "launch_mpi.sh", "torchrun_node.sh"):
            assert "#SBATCH --job-name" in script.read_text(), script


@pytest.mark.distributed
def test_phase1_sbatch_script_trains_outside_slurm(tmp_path):
    assert build_byte_dataset(tmp_path / "data", [REPO / "megatron_snow"]) >= 40  # enough for a 5% valid split
    proc = subprocess.run(
        ["bash", "slurm/phase1.sh", f"data.blend=[[1.0,{tmp_path / 'data'}]]", f"data.index_cache_dir={tmp_path / 'c'}",
         "training.train_iters=4", "training.eval_interval=0", f"checkpoint.save={tmp_path / 'ckpt'}",
         "logging.tensorboard_dir=null", f"logging.metrics_file={tmp_path / 'm.jsonl'}"],
        cwd=REPO, env=_env(NPROC_PER_NODE="2", CONFIG="examples/tiny/train_tiny.yaml"),
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "single node x 2 processes" in proc.stdout
    assert (tmp_path / "ckpt" / "latest").read_text().strip() in ("4", "iter_0000004")
    assert_every_rank_saved(tmp_path / "ckpt" / "iter_0000004", 2)


@pytest.mark.mpi
def test_preprocess_sbatch_script_runs_mpi_ranks_outside_slurm(tmp_path):
    write_repo(tmp_path / "repos")
    out = tmp_path / "phase1"
    proc = subprocess.run(
        ["bash", "slurm/preprocess_phase1.sh", f"output_dir={out}",
         f"ingest.sources=[{{kind: directory, path: {tmp_path / 'repos'}, name: local, files_per_shard: 4}}]"],
        cwd=REPO, env=_env(NRANKS="2", CONFIG="examples/tiny/data_phase1.yaml"),
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "mpiexec -n 2" in proc.stdout
    assert json.loads((out / "07_grouped" / "manifest.json").read_text())["records"] == REPOSITORIES
    assert_every_rank_did_units(out, 2, stages=7)
