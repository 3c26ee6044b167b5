#!/usr/bin/env bash
# One node's torchrun: started by slurm/launch_train.sh through srun (one task per node), or by hand
# on each node of a cluster without Slurm.
#   under Slurm (launch_train.sh): srun bash slurm/torchrun_node.sh --config CONFIG [key=value ...]
#   by hand, on every node:   NNODES=2 RDZV_ID=run1 MASTER_ADDR=<first node> MASTER_PORT=29400 \
#                               NPROC_PER_NODE=8 LOG_DIR=logs/run1 bash slurm/torchrun_node.sh --config ...
# Needs MASTER_ADDR, MASTER_PORT, NPROC_PER_NODE and LOG_DIR; NNODES and RDZV_ID come from Slurm
# (SLURM_NNODES, SLURM_JOB_ID) or must be given. Settings for a real cluster (slurm/README.md):
#   SOCKET_IFNAME      the interface the nodes reach each other on (e.g. ib0, eth1): exported as
#                      GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME (unless set) and this node's address on
#                      it is the one torchrun hands to the workers (--local-addr)
#   RDZV_JOIN_TIMEOUT  seconds the nodes wait for each other at the start (default 600)
#   RDZV_READ_TIMEOUT  seconds a node waits to reach the rendezvous store (default 60)
# A node that cannot meet the others ends with one line starting "torchrun:" (megatron_snow/torchrun.py).
set -euo pipefail
NNODES=${NNODES:-${SLURM_NNODES:?NNODES (or SLURM_NNODES) is not set}}
RDZV_ID=${RDZV_ID:-${SLURM_JOB_ID:?RDZV_ID (or SLURM_JOB_ID) is not set}}
NODE=${SLURM_NODEID:-$(hostname -s)}
LOCAL_ADDR=()
if [ -n "${SOCKET_IFNAME:-}" ]; then
  export GLOO_SOCKET_IFNAME=${GLOO_SOCKET_IFNAME:-$SOCKET_IFNAME} NCCL_SOCKET_IFNAME=${NCCL_SOCKET_IFNAME:-$SOCKET_IFNAME}
  ADDR=$(python -c "import fcntl, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
print(socket.inet_ntoa(fcntl.ioctl(s.fileno(), 0x8915, struct.pack('256s', sys.argv[1].encode()[:15]))[20:24]))" \
    "$SOCKET_IFNAME" 2>/dev/null) \
    || { echo "torchrun_node: $(hostname -s) has no IPv4 address on interface $SOCKET_IFNAME (SOCKET_IFNAME)" >&2; exit 2; }
  LOCAL_ADDR=(--local-addr "$ADDR")
fi
# torchrun itself ignores SIGTERM and SIGUSR1: they reach the trainer processes directly
# (Slurm signals every process of the step), which save at the next iteration boundary and
# exit 0; torchrun then exits 0 instead of killing them after its shutdown timeout.
trap '' TERM USR1
SIGNALS=()  # torchrun's default handles (and forwards) SIGTERM too; torch < 2.8 has no such option
RUN_PY=$(python -c "import importlib.util as u; print(u.find_spec('torch').submodule_search_locations[0])")/distributed/run.py
if grep -q signals_to_handle "$RUN_PY" 2>/dev/null; then SIGNALS=(--signals-to-handle SIGINT,SIGHUP,SIGQUIT); fi
# Every rank's stdout/stderr goes to LOG_DIR/node<N>/<run>/attempt_<k>/<local rank>/; each node's
# local rank 0 is also shown in the job's output, every line starting with its global rank
# ("[rank5]:"). (The c10d rendezvous numbers the nodes itself, so global rank 0, the one that logs
# training, is local rank 0 of some node; the others print their rank and host, warnings and errors.)
export TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE=${TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE:-'[rank${rank}]:'}
exec python -m megatron_snow.torchrun \
  --nnodes "$NNODES" --nproc-per-node "$NPROC_PER_NODE" \
  --rdzv-id "$RDZV_ID" --rdzv-backend c10d --rdzv-endpoint "$MASTER_ADDR:$MASTER_PORT" \
  --rdzv-conf "join_timeout=${RDZV_JOIN_TIMEOUT:-600},read_timeout=${RDZV_READ_TIMEOUT:-60}" \
  "${LOCAL_ADDR[@]}" "${SIGNALS[@]}" \
  --log-dir "$LOG_DIR/node$NODE" --tee 3 --local-ranks-filter 0 \
  pretrain_gpt.py "$@"
