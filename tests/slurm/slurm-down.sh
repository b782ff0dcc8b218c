#!/bin/bash
# Stop what slurm-up.sh started (by its pid files only) and remove SLURM_DIR.
#
# Parameters (environment):
#   SLURM_DIR     the folder given to slurm-up.sh
set -u
SLURM_DIR=${SLURM_DIR:?set SLURM_DIR to the folder given to slurm-up.sh}
PATH=$PATH:/usr/sbin:/sbin
export SLURM_CONF=$SLURM_DIR/slurm.conf
if [ -s "$SLURM_CONF" ]; then
    squeue -h -o %i 2>/dev/null | xargs -r scancel 2>/dev/null
    scontrol shutdown 2>/dev/null    # slurmctld and slurmd
fi
stop() {  # pid file, then wait up to 5 s before SIGKILL
    [ -s "$1" ] || return 0
    local pid
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
}
stop "$SLURM_DIR/slurmctld.pid"
stop "$SLURM_DIR/slurmd.pid"
[ -e "$SLURM_DIR/munged.ours" ] && stop /run/munge/munged.pid
rm -rf "$SLURM_DIR"
true
