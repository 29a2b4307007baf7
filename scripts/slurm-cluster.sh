#!/usr/bin/env bash
# A single-node Slurm "cluster" on this machine, for trying and testing the job scripts.
#
#   scripts/slurm-cluster.sh start DIR    # config, state, logs and pid files all under DIR
#   export SLURM_CONF=DIR/slurm.conf      # then sbatch/squeue/scontrol talk to it
#   scripts/slurm-cluster.sh stop DIR     # cancels its jobs, stops its daemons
#
# Needs root and Debian's packages `munge slurmctld slurmd slurm-client
# slurm-wlm-basic-plugins` (scripts/ensure-deps.sh --slurm installs them). No systemd: the
# daemons are started directly. The controller and node daemon listen on free ports picked
# at start, so several clusters (one per DIR) can run side by side.
#
# Exit status of `start`: 0 the node is idle and takes jobs; 3 the machine cannot run it
# (not root, packages missing: the message says what); 1 a daemon failed (see DIR/*.log).
set -euo pipefail

usage() { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
ACTION=$1
DIR=$2
NODE=localhost
TIMEOUT=${SLURM_CLUSTER_TIMEOUT:-30} # seconds to wait for munged / the node

say() { echo "slurm-cluster: $*" >&2; }
cannot() { say "$*"; exit 3; }
fail() {
  say "$*"
  for f in "$DIR"/slurmctld.log "$DIR"/slurmd.log; do
    [[ -s $f ]] && { say "last lines of $f:"; tail -n 15 "$f" >&2; }
  done
  exit 1
}

# Pid from a pid file if that process is still alive, else nothing.
live_pid() {
  local pid
  [[ -r $1 ]] || return 0
  pid=$(cat "$1" 2>/dev/null || true)
  if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

# SIGTERM one pid, wait for it to go, SIGKILL after 10 s.
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  say "pid $pid ignored SIGTERM; killing"
  kill -KILL "$pid" 2>/dev/null || true
}

# Daemons this script started for a DIR that no longer exists (a test's deleted temp dir):
# found by the `-f CONF` on their command line, stopped by pid.
reap_orphans() {
  local pid conf
  for pid in $(pgrep -x slurmctld || true) $(pgrep -x slurmd || true); do
    conf=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | sed -n '/^-f$/{n;p;q}' || true)
    if [[ $conf == */zerotrain-slurm.conf && ! -e $conf ]]; then
      say "stopping orphaned daemon $pid (config $conf is gone)"
      stop_pid "$pid"
    fi
  done
}

stop_cluster() {
  local conf=$DIR/slurm.conf pid
  if [[ -e $conf ]] && command -v scancel >/dev/null && [[ -n $(live_pid "$DIR/slurmctld.pid") ]]; then
    SLURM_CONF=$conf timeout 10 scancel --full --user="$(id -un)" 2>/dev/null || true
  fi
  for name in slurmd slurmctld; do
    pid=$(live_pid "$DIR/$name.pid")
    [[ -n $pid ]] && stop_pid "$pid"
    rm -f "$DIR/$name.pid"
  done
  return 0
}

# A TCP port nothing listens on (bash's /dev/tcp: a refused connection means free).
free_port() {
  local p
  for ((p = $1; p < $1 + 2000; p++)); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  return 1
}

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

# munged as the munge user with the system key; left running on stop (other clusters and
# a system munged may share it).
start_munge() {
  munge_ok && return 0
  if [[ ! -s /etc/munge/munge.key ]]; then
    say "creating /etc/munge/munge.key"
    mkdir -p /etc/munge
    mungekey --create --keyfile=/etc/munge/munge.key
  fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown -R munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
  chmod 0700 /etc/munge /var/log/munge
  chmod 0400 /etc/munge/munge.key
  chmod 0755 /run/munge
  # --force: start even over a stale socket or pid file left by a killed munged.
  runuser -u munge -- /usr/sbin/munged --force || fail "munged did not start (see /var/log/munge/munged.log)"
  local i
  for ((i = 0; i < TIMEOUT * 10; i++)); do
    munge_ok && return 0
    sleep 0.1
  done
  fail "munged is running but credentials do not round-trip (munge -n | unmunge)"
}

write_conf() {
  local topo ctl_port node_port
  # The node's real topology, e.g. "CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2
  # ThreadsPerCore=1 RealMemory=24105": declared as is, so slurmd registers cleanly.
  topo=$(slurmd -C | head -n 1 | sed 's/^NodeName=[^ ]* //')
  [[ $topo == *CPUs=* ]] || fail "slurmd -C printed no topology: $topo"
  ctl_port=$(free_port 16817) || fail "no free port for slurmctld"
  node_port=$(free_port $((ctl_port + 1))) || fail "no free port for slurmd"
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/tmp" "$DIR/pmix"
  cat >"$DIR/slurm.conf" <<EOF
# Written by scripts/slurm-cluster.sh: one node, no accounting, no cgroups.
ClusterName=zerotrain
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$ctl_port
SlurmdPort=$node_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
TmpFS=$DIR/tmp
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$NODE NodeAddr=127.0.0.1 $topo State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  # PMIx (srun --mpi=pmix) keeps its per-job files here, not in a /tmp shared with other
  # clusters on this machine.
  echo "PMIxCliTmpDirBase=$DIR/pmix" >"$DIR/mpi.conf"
  # Marks this config as ours for reap_orphans.
  ln -sf slurm.conf "$DIR/zerotrain-slurm.conf"
}

node_state() { SLURM_CONF=$DIR/slurm.conf sinfo -h -n "$NODE" -o %t 2>/dev/null | head -n 1; }

start_cluster() {
  [[ $(id -u) == 0 ]] || cannot "needs root (daemons run as root, munged as munge); skipping"
  local missing=() c
  for c in munged mungekey munge unmunge slurmctld slurmd sbatch squeue scontrol scancel sinfo srun runuser; do
    command -v "$c" >/dev/null 2>&1 || [[ -x /usr/sbin/$c ]] || missing+=("$c")
  done
  [[ ${#missing[@]} -eq 0 ]] || cannot "missing commands: ${missing[*]} (install: apt-get install munge slurmctld slurmd slurm-client slurm-wlm-basic-plugins, or scripts/ensure-deps.sh --slurm)"
  id munge >/dev/null 2>&1 || cannot "no munge user (is the munge package installed?)"

  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)
  stop_cluster # stale daemons of an earlier run on this DIR
  reap_orphans
  start_munge
  write_conf
  rm -rf "${DIR:?}/state/"* "${DIR:?}/spool/"*

  local conf=$DIR/zerotrain-slurm.conf
  # -c: clean start (no saved jobs); -i: ignore errors in the (empty) saved state.
  /usr/sbin/slurmctld -c -i -f "$conf" || fail "slurmctld did not start"
  /usr/sbin/slurmd -N "$NODE" -f "$conf" || fail "slurmd did not start"

  local i state=
  for ((i = 0; i < TIMEOUT * 10; i++)); do
    state=$(node_state)
    [[ $state == idle ]] && { echo "export SLURM_CONF=$DIR/slurm.conf"; return 0; }
    sleep 0.1
  done
  fail "node $NODE not idle after ${TIMEOUT}s (state: ${state:-unknown})"
}

case $ACTION in
  start) start_cluster ;;
  stop)
    [[ -d $DIR ]] || exit 0
    DIR=$(cd "$DIR" && pwd)
    stop_cluster
    ;;
  status)
    echo "slurmctld: $(live_pid "$DIR/slurmctld.pid")  slurmd: $(live_pid "$DIR/slurmd.pid")  node: $(node_state)"
    ;;
  *) usage ;;
esac
