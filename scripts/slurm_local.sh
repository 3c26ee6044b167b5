#!/usr/bin/env bash
# A Slurm on this machine, for the tests of slurm/*.sh (and for trying them by hand): one node, or two
# nodes in network namespaces (SNOW_SLURM_NODES=2).
#   bash scripts/slurm_local.sh install        apt-get install slurm-wlm munge when sbatch is missing (root)
#   bash scripts/slurm_local.sh start [DIR]    install if needed, write DIR/slurm.conf, start munged,
#                                              slurmctld and slurmd (root); prints SLURM_CONF=DIR/slurm.conf
#   bash scripts/slurm_local.sh stop [DIR]     stop the daemons started from DIR (by their PID files)
#   bash scripts/slurm_local.sh status [DIR]
#   bash scripts/slurm_local.sh exec DIR CMD...   run a client (sbatch, squeue, ...) where it reaches slurmctld
# DIR defaults to ${SNOW_SLURM_DIR:-/tmp/snow-slurm}. Everything (config, munge socket, state, logs,
# PID files) lives in DIR, so nothing in /etc is changed and a system Slurm, if any, is left alone.
# Ports: ${SNOW_SLURM_PORT:-6817} for slurmctld, +1 for slurmd. Clients need SLURM_CONF=DIR/slurm.conf.
#
# Two nodes (SNOW_SLURM_NODES=2 ... start): three network namespaces, <ns>c for slurmctld and <ns>0,
# <ns>1 for the nodes node0 and node1 (<ns> = ${SNOW_SLURM_NETNS:-snowslurm}), each node joined to a
# bridge in <ns>c by a veth pair whose node end is called snow0 on both nodes (SOCKET_IFNAME=snow0).
# Addresses from the private test range ${SNOW_SLURM_NET:-10.231.1}.0/24, only inside those
# namespaces: the controller .254, node0 .1, node1 .2. Each daemon runs with its own hostname (ctl,
# node0, node1) and an /etc/hosts naming all three (bind-mounted in its own mount namespace), so
# jobs on a node see themselves on that host. Clients run in the controller's namespace: use
# `exec` (or `nsenter --net=/var/run/netns/<ns>c CMD`). `stop` also removes the namespaces.
set -euo pipefail
CMD=${1:-start}
DIR=$(realpath -m "${2:-${SNOW_SLURM_DIR:-/tmp/snow-slurm}}")
PORT=${SNOW_SLURM_PORT:-6817}
CONF=$DIR/slurm.conf
NODES=${SNOW_SLURM_NODES:-1}
NS=${SNOW_SLURM_NETNS:-snowslurm}
NET=${SNOW_SLURM_NET:-10.231.1}
[ "$NODES" = 1 ] || [ "$NODES" = 2 ] || { echo "slurm_local: SNOW_SLURM_NODES must be 1 or 2, got $NODES" >&2; exit 2; }

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

two_nodes() { [ -f "$DIR/netns" ]; }  # this DIR runs the two-node mode (the file names its namespaces)

# Run a client where slurmctld is reachable (in the controller's namespace in the two-node mode).
client() {
  if two_nodes; then
    SLURM_CONF=$CONF nsenter --net="/var/run/netns/$(cat "$DIR/netns")c" "$@"
  else
    SLURM_CONF=$CONF "$@"
  fi
}

status() {
  local d
  alive "$DIR/munge/munged.pid" && alive "$DIR/slurmctld.pid" || return 1
  for d in "$DIR"/slurmd*.pid; do alive "$d" || return 1; done
  client scontrol ping 2>/dev/null | grep -q UP
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
EOF
  if [ "$NODES" = 2 ]; then
    sed -i -e "s|^SlurmctldHost=.*|SlurmctldHost=ctl($NET.254)|" -e "s|^SlurmdSpoolDir=.*|SlurmdSpoolDir=$DIR/spool/%n|" \
      -e "s|^SlurmdPidFile=.*|SlurmdPidFile=$DIR/slurmd-%n.pid|" -e "s|^SlurmdLogFile=.*|SlurmdLogFile=$DIR/slurmd-%n.log|" \
      -e "s|^# Written by.*|# Written by scripts/slurm_local.sh: two nodes in network namespaces $NS{c,0,1}, everything under $DIR.|" \
      "$CONF"
    mkdir -p "$DIR/spool/node0" "$DIR/spool/node1"
    cat >> "$CONF" <<EOF
NodeName=node0 NodeAddr=$NET.1 CPUs=$cpus RealMemory=$((mem / 2)) State=UNKNOWN
NodeName=node1 NodeAddr=$NET.2 CPUs=$cpus RealMemory=$((mem / 2)) State=UNKNOWN
PartitionName=debug Nodes=node[0-1] Default=YES MaxTime=INFINITE State=UP
EOF
  else
    cat >> "$CONF" <<EOF
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  fi
}

# Two nodes: the namespaces, the bridge, the links and the hosts file (see the top of this file).
make_network() {
  local i
  command -v ip >/dev/null && command -v nsenter >/dev/null && command -v unshare >/dev/null \
    || die "the two-node mode needs ip (iproute2), nsenter and unshare"
  remove_network
  ip netns add "${NS}c" || die "cannot create network namespaces here (ip netns add ${NS}c failed)"
  echo "$NS" > "$DIR/netns"
  ip netns add "${NS}0" && ip netns add "${NS}1"
  ip -n "${NS}c" link add br0 type bridge
  ip -n "${NS}c" addr add "$NET.254/24" dev br0
  ip -n "${NS}c" link set br0 up
  ip -n "${NS}c" link set lo up
  for i in 0 1; do
    ip link add "${NS}v$i" type veth peer name "${NS}p$i"
    ip link set "${NS}p$i" netns "${NS}c"
    ip -n "${NS}c" link set "${NS}p$i" master br0 up
    ip link set "${NS}v$i" netns "${NS}$i"
    ip -n "${NS}$i" link set "${NS}v$i" name snow0
    ip -n "${NS}$i" addr add "$NET.$((i + 1))/24" dev snow0
    ip -n "${NS}$i" link set snow0 up
    ip -n "${NS}$i" link set lo up
  done
  printf '127.0.0.1 localhost\n%s ctl\n%s node0\n%s node1\n' "$NET.254" "$NET.1" "$NET.2" > "$DIR/hosts"
}

remove_network() {
  local n
  for n in c 0 1; do ip netns del "$NS$n" 2>/dev/null || true; done
  for n in 0 1; do ip link del "${NS}v$n" 2>/dev/null || true; done
  rm -f "$DIR/netns"
}

# Run a daemon as host NAME in namespace NETNS: its own hostname and the hosts file. nsenter --net, not
# `ip netns exec`: that one mounts a fresh /sys, which hides the cgroups slurmd needs.
on_host() {  # NETNS NAME CMD...
  local netns=$1 name=$2
  shift 2
  nsenter --net="/var/run/netns/$netns" unshare --uts --mount --propagation private \
    sh -c 'mount --bind "$0" /etc/hosts && hostname "$1" && shift && exec "$@"' "$DIR/hosts" "$name" "$@"
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
  if [ "$NODES" = 2 ]; then
    make_network
    on_host "${NS}c" ctl slurmctld -f "$CONF" || die "slurmctld did not start (see $DIR/slurmctld.log)"
    for i in 0 1; do
      on_host "$NS$i" "node$i" slurmd -f "$CONF" -N "node$i" \
        || die "slurmd node$i did not start (see $DIR/slurmd-node$i.log)"
    done
  else
    slurmctld -f "$CONF" || die "slurmctld did not start (see $DIR/slurmctld.log)"
    slurmd -f "$CONF" || die "slurmd did not start (see $DIR/slurmd.log)"
  fi
  for _ in $(seq 1 60); do
    if [ "$(client sinfo -h -N -o %T 2>/dev/null | grep -cE '^(idle|mixed|allocated)')" -ge "$NODES" ]; then
      if [ "$NODES" = 2 ]; then
        echo "slurm_local: running from $DIR (nodes node0 $NET.1 and node1 $NET.2, controller ctl $NET.254" \
          "in network namespace ${NS}c: run clients with  bash scripts/slurm_local.sh exec $DIR CMD...)"
      else
        echo "slurm_local: running from $DIR (node $(hostname -s), ports $PORT/$((PORT + 1)))"
      fi
      echo "SLURM_CONF=$CONF"
      return 0
    fi
    sleep 0.5
  done
  die "the nodes did not become idle within 30 s (see $DIR/slurmctld.log, $DIR/slurmd*.log)"
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
  local f
  for f in "$DIR"/slurmd*.pid; do stop_pid "$f"; done
  stop_pid "$DIR/slurmctld.pid"
  stop_pid "$DIR/munge/munged.pid"
  if two_nodes; then NS=$(cat "$DIR/netns"); remove_network; fi
  echo "slurm_local: stopped ($DIR)"
}

case $CMD in
  exec) shift 2; client "$@" ;;
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) if status; then echo "slurm_local: running from $DIR"; else echo "slurm_local: not running ($DIR)"; exit 1; fi ;;
  *) die "unknown command $CMD (install | start [DIR] | stop [DIR] | status [DIR] | exec DIR CMD...)" ;;
esac
