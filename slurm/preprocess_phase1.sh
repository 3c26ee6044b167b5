#!/usr/bin/env bash
# Phase-1 data: raw code -> filtered, deduplicated, decontaminated, redacted, grouped documents.
#   sbatch slurm/preprocess_phase1.sh [key=value ...]     (submit from the repository root)
# One MPI rank per core; re-running the same command skips finished shards and stages.
#SBATCH --job-name=snow-data-phase1
#SBATCH --nodes=8
#SBATCH --ntasks-per-node=64
#SBATCH --cpus-per-task=1
#SBATCH --mem=0
#SBATCH --time=2-00:00:00
#SBATCH --output=logs/%x-%j.out
set -euo pipefail
ROOT=${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
exec bash "$ROOT/slurm/launch_mpi.sh" tools/preprocess/phase1.py --config "${CONFIG:-examples/snowcoder_1.3b/data_phase1.yaml}" "$@"
