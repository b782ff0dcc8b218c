#!/bin/bash
# Start a real single-node SLURM cluster on this machine, for the tests marked `slurm`.
#
# Parameters (environment):
#   SLURM_DIR     scratch folder for the config, state, spool, logs and pid files (required)
#   SLURM_CPUS    CPUs the node advertises (default: the cores; more oversubscribes them)
#   CTLD_PORT, SLURMD_PORT   the daemons' ports (default 6817, 6818; the tests pick free ones)
# Needs root and the Debian packages slurmctld slurmd slurm-client munge (installed by .ci/run:
#   apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge).
# No cgroup plugins (proctrack/linuxproc, task/none) and no accounting, so it runs in a
# container or VM without systemd. Clients find the cluster through SLURM_CONF=$SLURM_DIR/slurm.conf.
# Exit status 77: SLURM or munge is not installed, or not root (the tests skip).
# Stop it with slurm-down.sh (same SLURM_DIR).
set -euo pipefail
SLURM_DIR=${SLURM_DIR:?set SLURM_DIR to a scratch folder}
PATH=$PATH:/usr/sbin:/sbin
for tool in slurmctld slurmd sinfo munged munge; do
    command -v "$tool" >/dev/null || { echo "SLURM is not installed ($tool not found)"; exit 77; }
done
[ "$(id -u)" = 0 ] || { echo "starting slurmd and munged needs root"; exit 77; }

HOST=$(hostname -s)
NCPUS=${SLURM_CPUS:-$(nproc)}
MEM=$(free -m | awk '/^Mem:/{print $2}')
mkdir -p "$SLURM_DIR"/{state,spool,log}

# munge: the packages' scripts start nothing without systemd; one munged serves every cluster
# on the machine, so it is started only if none runs (and then stopped by slurm-down.sh).
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 0755 /run/munge
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- munged
    touch "$SLURM_DIR/munged.ours"
    for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi
munge -n </dev/null | unmunge >/dev/null

EXTRA=""
[ "$NCPUS" -gt "$(nproc)" ] && EXTRA="SlurmdParameters=config_overrides"
cat > "$SLURM_DIR/slurm.conf" <<CONF
ClusterName=largeemb-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=${CTLD_PORT:-6817}
SlurmdPort=${SLURMD_PORT:-6818}
SlurmUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$SLURM_DIR/log/jobcomp.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
EnforcePartLimits=ALL
ReturnToService=2
KillWait=5
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=$SLURM_DIR/spool
SlurmctldPidFile=$SLURM_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/slurmd.pid
SlurmctldLogFile=$SLURM_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_DIR/log/slurmd.log
$EXTRA
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$NCPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$SLURM_DIR/slurm.conf

# Both daemonize and write their pid files; -c: no saved state from an earlier run.
slurmctld -c -f "$SLURM_CONF"
slurmd -c -f "$SLURM_CONF" -N "$HOST"
for _ in $(seq 150); do
    [ "$(sinfo -h -o %T 2>/dev/null)" = idle ] && break
    sleep 0.2
done
if [ "$(sinfo -h -o %T 2>/dev/null)" != idle ]; then
    echo "the SLURM node did not become idle within 30 s"
    tail -n 20 "$SLURM_DIR"/log/*.log
    exit 1
fi
sinfo
