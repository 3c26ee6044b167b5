#!/usr/bin/env bash
# Shared launcher behind slurm/phase{1,2,3}.sh: one torchrun per node via srun.
# Outside Slurm it runs a single-node torchrun, so the same script can be tried
# on a workstation (or on CPU: NPROC_PER_NODE=2 CONFIG=examples/tiny/... ).
#   usage: launch_train.sh CONFIG [key=value ...]
#
# Under Slurm (see slurm/README.md):
# - srun starts one task per node (slurm/torchrun_node.sh): torchrun --nnodes $SLURM_NNODES
#   --node-rank $SLURM_NODEID, c10d rendezvous on the first node of the allocation, port
#   derived from the job id (MASTER_PORT overrides).
# - Logs: this job's output file (#SBATCH --output) gets rank 0's console; every rank's
#   stdout/stderr goes to logs/<job name>-<job id>/node<N>/ (LOG_DIR overrides).
# - Stopping without losing work: Slurm's SIGTERM (scancel, preemption, requeue, time limit)
#   reaches every process of the job; the trainer saves at the next iteration boundary and
#   exits 0. SIGUSR1 from `#SBATCH --signal=B:USR1@N` reaches this shell only: it is passed on
#   to the ranks (same save-and-exit) and the job is requeued afterwards, as it is after
#   training.exit_duration_mins. A job that Slurm itself is ending (SIGTERM here too) is left
#   to Slurm: a scancel stays cancelled, a preemption or `scontrol requeue` requeues.
set -euo pipefail
ROOT=${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
cd "$ROOT"
CONFIG=$1; shift
[ -f "$CONFIG" ] || { echo "launch_train: config not found: $CONFIG (submit from the repository root)" >&2; exit 2; }

if [ -z "${NPROC_PER_NODE:-}" ]; then
  NPROC_PER_NODE=$(nvidia-smi -L 2>/dev/null | wc -l || true)
  [ "${NPROC_PER_NODE:-0}" -gt 0 ] || NPROC_PER_NODE=1
fi
export NPROC_PER_NODE
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# megatron-core: one hardware queue per device, so that TP/SP communication kernels are
# scheduled in issue order and overlap with compute as planned.
export CUDA_DEVICE_MAX_CONNECTIONS=${CUDA_DEVICE_MAX_CONNECTIONS:-1}
# NCCL prints warnings (set INFO to debug a hang); fabric settings (NCCL_SOCKET_IFNAME,
# NCCL_IB_HCA, ...) are the cluster's and are passed through from the submitting shell.
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}

if [ -z "${SLURM_JOB_ID:-}" ] || ! command -v srun >/dev/null; then
  echo "launch_train: not under Slurm; single node x $NPROC_PER_NODE processes, config $CONFIG"
  exec torchrun --standalone --nproc-per-node "$NPROC_PER_NODE" pretrain_gpt.py --config "$CONFIG" "$@"
fi

# Since Slurm 22.05 srun does not inherit --cpus-per-task from sbatch: pass it on, or each
# task (a torchrun driving 8 GPUs) is pinned to one core.
[ -z "${SLURM_CPUS_PER_TASK:-}" ] || export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK
MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
MASTER_PORT=${MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))}
LOG_DIR=${LOG_DIR:-logs/${SLURM_JOB_NAME:-train}-$SLURM_JOB_ID}
mkdir -p "$LOG_DIR"
export MASTER_ADDR MASTER_PORT LOG_DIR
# How the trainer ended ("finished" or "stopped", written by rank 0): decides the requeue.
export SNOW_EXIT_STATUS=$LOG_DIR/exit_status.json
rm -f "$SNOW_EXIT_STATUS"
echo "launch_train: job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}): $SLURM_NNODES nodes x $NPROC_PER_NODE" \
  "processes, rendezvous $MASTER_ADDR:$MASTER_PORT, config $CONFIG, rank logs in $LOG_DIR"

SRUN_PID=
ENDING=0
# SIGUSR1 (#SBATCH --signal=B:USR1@N): the ranks save at their next iteration boundary and exit.
trap 'echo "launch_train: SIGUSR1: time limit near, asking the ranks to save and stop"; [ -z "$SRUN_PID" ] || kill -USR1 "$SRUN_PID"' USR1
# SIGTERM: Slurm is ending the job and signals the ranks itself; wait for their save.
trap 'echo "launch_train: SIGTERM: job ending, the ranks save and stop"; ENDING=1' TERM
srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash "$ROOT/slurm/torchrun_node.sh" --config "$CONFIG" "$@" &
SRUN_PID=$!
RC=0
while :; do
  wait "$SRUN_PID" && RC=0 || RC=$?
  kill -0 "$SRUN_PID" 2>/dev/null || break  # else a trap interrupted the wait: keep waiting
done

STATUS=$(cat "$SNOW_EXIT_STATUS" 2>/dev/null || true)
if [ "$RC" -eq 0 ] && [ "$ENDING" -eq 0 ] && [[ "$STATUS" == *'"stopped"'* ]]; then
  echo "launch_train: the trainer stopped early and saved ($STATUS); requeueing job $SLURM_JOB_ID"
  scontrol requeue "$SLURM_JOB_ID"
fi
exit "$RC"
