#!/usr/bin/env bash
# One node's torchrun, started by slurm/launch_train.sh through srun (one task per node).
#   usage (from launch_train.sh): srun bash slurm/torchrun_node.sh --config CONFIG [key=value ...]
# Needs MASTER_ADDR, MASTER_PORT, NPROC_PER_NODE, LOG_DIR and Slurm's SLURM_NNODES,
# SLURM_NODEID and SLURM_JOB_ID.
set -euo pipefail
# torchrun itself ignores SIGTERM and SIGUSR1: they reach the trainer processes directly
# (Slurm signals every process of the step), which save at the next iteration boundary and
# exit 0; torchrun then exits 0 instead of killing them after its shutdown timeout.
trap '' TERM USR1
SIGNALS=()  # torchrun's default handles (and forwards) SIGTERM too; torch < 2.8 has no such option
RUN_PY=$(python -c "import importlib.util as u; print(u.find_spec('torch').submodule_search_locations[0])")/distributed/run.py
if grep -q signals_to_handle "$RUN_PY" 2>/dev/null; then SIGNALS=(--signals-to-handle SIGINT,SIGHUP,SIGQUIT); fi
# Every rank's stdout/stderr goes to LOG_DIR/node<N>/<run>/attempt_<k>/<local rank>/; each node's
# local rank 0 is also shown in the job's output. (The c10d rendezvous numbers the nodes itself,
# so global rank 0, the one that logs training, is local rank 0 of some node; the others print
# only warnings and errors.)
exec torchrun \
  --nnodes "$SLURM_NNODES" --nproc-per-node "$NPROC_PER_NODE" \
  --rdzv-id "$SLURM_JOB_ID" --rdzv-backend c10d --rdzv-endpoint "$MASTER_ADDR:$MASTER_PORT" \
  "${SIGNALS[@]}" \
  --log-dir "$LOG_DIR/node$SLURM_NODEID" --tee 3 --local-ranks-filter 0 \
  pretrain_gpt.py "$@"
