#!/usr/bin/env bash
# Shared launcher behind slurm/phase{1,2,3}.sh: one torchrun per node via srun.
# Outside Slurm it runs a single-node torchrun, so the same script can be tried
# on a workstation (or on CPU: NPROC_PER_NODE=2 CONFIG=examples/tiny/... ).
#   usage: launch_train.sh CONFIG [key=value ...]
set -euo pipefail
ROOT=${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
cd "$ROOT"
CONFIG=$1; shift
[ -f "$CONFIG" ] || { echo "launch_train: config not found: $CONFIG (submit from the repository root)" >&2; exit 2; }

if [ -z "${NPROC_PER_NODE:-}" ]; then
  NPROC_PER_NODE=$(nvidia-smi -L 2>/dev/null | wc -l || true)
  [ "${NPROC_PER_NODE:-0}" -gt 0 ] || NPROC_PER_NODE=1
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export CUDA_DEVICE_MAX_CONNECTIONS=${CUDA_DEVICE_MAX_CONNECTIONS:-1}   # megatron-core's TP/SP overlap expects it

if [ -n "${SLURM_JOB_ID:-}" ] && command -v srun >/dev/null; then
  # Since Slurm 22.05 srun does not inherit --cpus-per-task from sbatch: pass it on, or each
  # task (a torchrun driving 8 GPUs, or a tokenizing rank with its workers) is pinned to one core.
  [ -z "${SLURM_CPUS_PER_TASK:-}" ] || export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK
  MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
  MASTER_PORT=${MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))}
  echo "launch_train: $SLURM_NNODES nodes x $NPROC_PER_NODE processes, rendezvous $MASTER_ADDR:$MASTER_PORT, config $CONFIG"
  srun --ntasks-per-node=1 --kill-on-bad-exit=1 \
    torchrun --nnodes "$SLURM_NNODES" --nproc-per-node "$NPROC_PER_NODE" \
      --rdzv-id "$SLURM_JOB_ID" --rdzv-backend c10d --rdzv-endpoint "$MASTER_ADDR:$MASTER_PORT" \
      pretrain_gpt.py --config "$CONFIG" "$@"
else
  echo "launch_train: not under Slurm; single node x $NPROC_PER_NODE processes, config $CONFIG"
  torchrun --standalone --nproc-per-node "$NPROC_PER_NODE" pretrain_gpt.py --config "$CONFIG" "$@"
fi
