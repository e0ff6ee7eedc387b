#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the SLURM executor's tests: munge, slurmctld and
# slurmd, with job completion records that `sacct -c` reads. Idempotent: with the cluster
# answering it only checks. Root on Debian only (it installs slurm-wlm and munge).
set -euo pipefail

say() { printf 'slurm: %s\n' "$*"; }
die() { printf 'slurm: error: %s\n' "$*" >&2; exit 1; }

CONF=/etc/slurm/slurm.conf
LOGS=/var/log/slurm
SPOOL=/var/spool/slurm

answers() { timeout 20 srun -N1 -t 1 true >/dev/null 2>&1; }

if [ -f "$CONF" ] && pgrep -x slurmctld >/dev/null && pgrep -x slurmd >/dev/null && answers; then
  exit 0
fi
[ "$(id -u)" = 0 ] || die "needs root to start munge, slurmctld and slurmd"
if ! command -v slurmctld >/dev/null 2>&1; then
  say "installing Debian's slurm-wlm and munge"
  if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial)" ]; then
    apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge && chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! pgrep -x munged >/dev/null; then
  say "starting munged"
  runuser -u munge -- /usr/sbin/munged
fi

host=$(hostname -s)
cpus=$(nproc)
memory=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
mkdir -p "$LOGS" "$SPOOL/ctld" "$SPOOL/d"
cat > "$CONF" <<CONF
ClusterName=dsrepro
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ReturnToService=2
KillWait=10
MinJobAge=600
JobCompType=jobcomp/filetxt
JobCompLoc=$LOGS/jobcomp.log
AccountingStorageType=accounting_storage/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
pgrep -x slurmctld >/dev/null || { say "starting slurmctld"; /usr/sbin/slurmctld; }
pgrep -x slurmd >/dev/null || { say "starting slurmd"; /usr/sbin/slurmd; }
waited=0
until answers; do
  [ "$waited" -lt 60 ] || die "srun does not answer; see $LOGS/slurmctld.log and $LOGS/slurmd.log"
  sleep 2; waited=$((waited + 2))
  scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
done
say "a one-node cluster answers (srun, squeue, sacct -c)"
