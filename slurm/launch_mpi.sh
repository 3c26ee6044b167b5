#!/usr/bin/env bash
# Shared launcher behind the data-preparation scripts: N MPI ranks (mpi4py) via
# srun under Slurm, or mpiexec -n ${NRANKS:-2} on a workstation.
#   usage: launch_mpi.sh SCRIPT [args ...]
set -euo pipefail
ROOT=${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
cd "$ROOT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
if [ -n "${SLURM_JOB_ID:-}" ] && command -v srun >/dev/null; then
  echo "launch_mpi: $SLURM_NTASKS ranks on $SLURM_NNODES nodes: $*"
  srun --mpi="${SRUN_MPI:-pmi2}" --kill-on-bad-exit=1 python "$@"
else
  echo "launch_mpi: not under Slurm; mpiexec -n ${NRANKS:-2}: $*"
  mpiexec -n "${NRANKS:-2}" python "$@"
fi
