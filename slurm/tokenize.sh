#!/usr/bin/env bash
# Documents -> Megatron indexed dataset (PREFIX.bin/.idx + sidecar); byte-identical for any rank count.
#   sbatch slurm/tokenize.sh --input data/phase1/07_grouped --tokenizer data/tokenizer/snowcoder.model \
#       --output-prefix data/index/phase1 --workers 16      (submit from the repository root)
#SBATCH --job-name=snow-tokenize
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=4
#SBATCH --cpus-per-task=16
#SBATCH --time=12:00:00
#SBATCH --output=logs/%x-%j.out
set -euo pipefail
ROOT=${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
exec bash "$ROOT/slurm/launch_mpi.sh" tools/preprocess/build_index.py "$@"
