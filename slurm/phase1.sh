#!/usr/bin/env bash
# Phase 1 pretraining of Arctic-SnowCoder-1.3B (500B tokens), examples/snowcoder_1.3b/phase1.yaml.
#   sbatch slurm/phase1.sh [key=value ...]        (submit from the repository root)
# Resubmitting (or a requeue: preemption, time limit near, scontrol requeue) resumes from the newest
# complete checkpoint; SIGTERM or SIGUSR1 make the trainer save at the next iteration first.
#SBATCH --job-name=snow-phase1
#SBATCH --nodes=64
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --exclusive
#SBATCH --time=7-00:00:00
#SBATCH --requeue
# SIGUSR1 to the batch shell 5 minutes before the time limit: save, stop, requeue.
#SBATCH --signal=B:USR1@300
#SBATCH --output=logs/%x-%j.out
#SBATCH --open-mode=append
set -euo pipefail
ROOT=${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
exec bash "$ROOT/slurm/launch_train.sh" "${CONFIG:-examples/snowcoder_1.3b/phase1.yaml}" "$@"
