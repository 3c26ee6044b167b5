#!/usr/bin/env bash
# Phase-3 synthetic data: an OpenAI-compatible server (vLLM or SGLang, tensor parallel over the node's
# GPUs) on every node, and the generator (python -m megatron_snow synthesize) as one MPI rank per node
# sending its share of the requests to its own node's server.
#   sbatch --nodes=4 slurm/synthesize.sh phase2=/data/phase2 out=/data/phase3_synthetic [key=value ...]
# Environment: MODEL (default meta-llama/Llama-3.1-70B-Instruct), SERVER (vllm | sglang), TP (default:
# GPUs on the node), PORT (default 8000), READY_TIMEOUT (seconds, default 3600), CONFIG (a synthesize
# YAML), SERVER_ARGS (extra server flags), SERVER_CMD (a whole server command line instead; PORT, MODEL
# and TP are exported to it), LOG_DIR (default logs/). Each node's server log is kept in
# $LOG_DIR/snow-synthesize-<job>-server-<host>.log. Re-submitting the same command resumes.
#SBATCH --job-name=snow-synthesize
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --mem=0
#SBATCH --time=2-00:00:00
#SBATCH --output=logs/%x-%j.out
set -euo pipefail
ROOT=${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
cd "$ROOT"
export MODEL=${MODEL:-meta-llama/Llama-3.1-70B-Instruct}
export SERVER=${SERVER:-vllm}
export PORT=${PORT:-8000}
export LOG_DIR=${LOG_DIR:-logs}
export READY_TIMEOUT=${READY_TIMEOUT:-3600}
mkdir -p "$LOG_DIR"

if [ "${1:-}" != "__node" ] && [ -n "${SLURM_JOB_ID:-}" ] && command -v srun >/dev/null; then
  # Batch shell: one task per node; each is an MPI rank of the generator with its own server.
  [ -z "${SLURM_CPUS_PER_TASK:-}" ] || export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK
  echo "synthesize: $SLURM_NNODES nodes, one server + one generator rank each"
  exec srun --ntasks-per-node=1 --mpi="${SRUN_MPI:-pmi2}" --kill-on-bad-exit=1 bash "$0" __node "$@"
fi
[ "${1:-}" != "__node" ] || shift

host=$(hostname -s)
server_log="$LOG_DIR/snow-synthesize-${SLURM_JOB_ID:-local}-server-$host.log"
if [ -z "${TP:-}" ]; then
  TP=$(nvidia-smi --list-gpus 2>/dev/null | wc -l || true)
  TP=${TP:-1}; [ "$TP" -ge 1 ] || TP=1
fi
export TP
if [ -z "${SERVER_CMD:-}" ]; then
  case "$SERVER" in
    vllm) SERVER_CMD="python -m vllm.entrypoints.openai.api_server --model $MODEL --served-model-name $MODEL \
--tensor-parallel-size $TP --host 127.0.0.1 --port $PORT ${SERVER_ARGS:-}" ;;
    sglang) SERVER_CMD="python -m sglang.launch_server --model-path $MODEL --served-model-name $MODEL \
--tp $TP --host 127.0.0.1 --port $PORT ${SERVER_ARGS:-}" ;;
    *) echo "synthesize: SERVER must be vllm or sglang, got '$SERVER'" >&2; exit 2 ;;
  esac
fi

echo "synthesize[$host]: starting server (log: $server_log): $SERVER_CMD"
setsid bash -c "$SERVER_CMD" >>"$server_log" 2>&1 &
server_pid=$!
stop_server() {
  kill -TERM -- "-$server_pid" 2>/dev/null || true
  for _ in $(seq 30); do kill -0 "$server_pid" 2>/dev/null || return 0; sleep 1; done
  kill -KILL -- "-$server_pid" 2>/dev/null || true
}
trap stop_server EXIT
trap 'exit 143' TERM INT

base="http://127.0.0.1:$PORT"
start=$(date +%s)
ready() { python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' "$1" >/dev/null 2>&1; }
until ready "$base/v1/models"; do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "synthesize[$host]: the server exited before it was ready; last lines of $server_log:" >&2
    tail -n 30 "$server_log" >&2
    exit 1
  fi
  if [ $(( $(date +%s) - start )) -ge "$READY_TIMEOUT" ]; then
    echo "synthesize[$host]: the server was not ready after $READY_TIMEOUT s (see $server_log)" >&2
    exit 1
  fi
  sleep "${READY_POLL_S:-5}"
done
echo "synthesize[$host]: server ready after $(( $(date +%s) - start )) s"

args=()
[ -z "${CONFIG:-}" ] || args+=(--config "$CONFIG")
python -m megatron_snow synthesize "${args[@]}" "server.base_url=$base/v1" "server.model=$MODEL" "$@"
