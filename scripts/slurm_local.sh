#!/usr/bin/env bash
# A single-node Slurm on this machine, for the tests of slurm/*.sh (and for trying them by hand).
#   bash scripts/slurm_local.sh install        apt-get install slurm-wlm munge when sbatch is missing (root)
#   bash scripts/slurm_local.sh start [DIR]    install if needed, write DIR/slurm.conf, start munged,
#                                              slurmctld and slurmd (root); prints SLURM_CONF=DIR/slurm.conf
#   bash scripts/slurm_local.sh stop [DIR]     stop the daemons started from DIR (by their PID files)
#   bash scripts/slurm_local.sh status [DIR]
# DIR defaults to ${SNOW_SLURM_DIR:-/tmp/snow-slurm}. Everything (config, munge socket, state, logs,
# PID files) lives in DIR, so nothing in /etc is changed and a system Slurm, if any, is left alone.
# Ports: ${SNOW_SLURM_PORT:-6817} for slurmctld, +1 for slurmd. Clients need SLURM_CONF=DIR/slurm.conf.
set -euo pipefail
CMD=${1:-start}
DIR=$(realpath -m "${2:-${SNOW_SLURM_DIR:-/tmp/snow-slurm}}")
PORT=${SNOW_SLURM_PORT:-6817}
CONF=$DIR/slurm.conf

die() { echo "slurm_local: $*" >&2; exit 1; }

install() {
  if command -v sbatch >/dev/null && command -v slurmctld >/dev/null && command -v munged >/dev/null; then
    return 0
  fi
  [ "$(id -u)" = 0 ] || die "Slurm is not installed and installing it needs root (apt-get install slurm-wlm munge)"
  command -v apt-get >/dev/null || die "Slurm is not installed and there is no apt-get to install it"
  echo "slurm_local: installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq slurm-wlm munge >/dev/null \
    || die "apt-get install slurm-wlm munge failed"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

status() {
  alive "$DIR/munge/munged.pid" && alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid" \
    && SLURM_CONF=$CONF scontrol ping 2>/dev/null | grep -q UP
}

write_conf() {
  local host cpus mem
  host=$(hostname -s)
  cpus=$(getconf _NPROCESSORS_ONLN)  # (not nproc: it follows OMP_NUM_THREADS)
  mem=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) * 9 / 10 ))
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/munge"
  cat > "$CONF" <<EOF
# Written by scripts/slurm_local.sh: one node ($host), everything under $DIR.
ClusterName=snowtest
SlurmctldHost=$host
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: how long a requeued job waits before it starts again (Slurm's default: 120 s).
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=10
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
# Time between SIGTERM and SIGKILL when a job ends (cancel, requeue, time limit): room to save.
KillWait=60
# Schedule often: a test's jobs (and requeued jobs) start within a second or two.
SchedulerParameters=bf_interval=1,sched_interval=1
MinJobAge=600
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
  install
  [ "$(id -u)" = 0 ] || die "starting slurmctld/slurmd as configured here needs root"
  if status; then
    echo "slurm_local: already running from $DIR"
    echo "SLURM_CONF=$CONF"
    return 0
  fi
  stop >/dev/null 2>&1 || true
  write_conf
  # munged runs as root here (--force): DIR may sit under a directory the munge user cannot
  # enter (pytest's temporary directories are 0700); every client of this Slurm is root anyway.
  munged --force --socket="$DIR/munge/munge.socket" --pid-file="$DIR/munge/munged.pid" \
    --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed" \
    || die "munged did not start (see $DIR/munge/munged.log)"
  slurmctld -f "$CONF" || die "slurmctld did not start (see $DIR/slurmctld.log)"
  slurmd -f "$CONF" || die "slurmd did not start (see $DIR/slurmd.log)"
  for _ in $(seq 1 60); do
    if SLURM_CONF=$CONF sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      echo "slurm_local: running from $DIR (node $(hostname -s), ports $PORT/$((PORT + 1)))"
      echo "SLURM_CONF=$CONF"
      return 0
    fi
    sleep 0.5
  done
  die "the node did not become idle within 30 s (see $DIR/slurmctld.log, $DIR/slurmd.log)"
}

stop_pid() {  # PIDFILE NAME: SIGTERM, then wait up to 10 s
  local f=$1 pid
  alive "$f" || return 0
  pid=$(cat "$f")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null || true
}

stop() {
  stop_pid "$DIR/slurmd.pid"
  stop_pid "$DIR/slurmctld.pid"
  stop_pid "$DIR/munge/munged.pid"
  echo "slurm_local: stopped ($DIR)"
}

case $CMD in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) if status; then echo "slurm_local: running from $DIR"; else echo "slurm_local: not running ($DIR)"; exit 1; fi ;;
  *) die "unknown command $CMD (install | start [DIR] | stop [DIR] | status [DIR])" ;;
esac
