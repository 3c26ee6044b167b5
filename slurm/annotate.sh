#!/usr/bin/env bash
# Phase 2: score every phase-1 document with the quality annotator, one MPI rank per GPU (each rank
# takes its node-local GPU); resumable per shard, byte-identical for any rank count.
#   sbatch slurm/annotate.sh corpus=/data/phase1/06_pii model=/data/annotator      (from the repository root)
#SBATCH --job-name=snow-annotate
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --output=logs/%x-%j.out
set -euo pipefail
ROOT=${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
exec bash "$ROOT/slurm/launch_mpi.sh" tools/preprocess/annotate.py "$@"
