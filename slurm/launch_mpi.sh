#!/usr/bin/env bash
# Shared launcher behind the data-preparation scripts: N MPI ranks (mpi4py) via
# srun under Slurm, or mpiexec -n ${NRANKS:-2} on a workstation.
#   usage: launch_mpi.sh SCRIPT [args ...]
set -euo pipefail
ROOT=${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
cd "$ROOT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
if [ -n "${SLURM_JOB_ID:-}" ] && command -v srun >/dev/null; then
  # Since Slurm 22.05 srun does not inherit --cpus-per-task from sbatch: pass it on, or each
  # task (a torchrun driving 8 GPUs, or a tokenizing rank with its workers) is pinned to one core.
  [ -z "${SLURM_CPUS_PER_TASK:-}" ] || export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK
  echo "launch_mpi: $SLURM_NTASKS ranks on $SLURM_NNODES nodes: $*"
  srun --mpi="${SRUN_MPI:-pmi2}" --kill-on-bad-exit=1 python "$@"
else
  echo "launch_mpi: not under Slurm; mpiexec -n ${NRANKS:-2}: $*"
  mpiexec -n "${NRANKS:-2}" python "$@"
fi
