#!/usr/bin/env bash
# Job status for snakemake-executor-plugin-cluster-generic: prints success, failed or running.
# Asks sacct (accounting) first, then squeue (jobs still known to slurmctld). A job neither
# knows is reported failed with a message on stderr rather than polled forever.
set -uo pipefail
jobid=$1
state=$(sacct -n -X -P -j "$jobid" -o State 2>/dev/null | head -n1 | cut -d' ' -f1)
[[ -n $state ]] || state=$(squeue -h --states=all -j "$jobid" -o %T 2>/dev/null | head -n1)
case $state in
  COMPLETED) echo success ;;
  PENDING | CONFIGURING | RUNNING | COMPLETING | REQUEUED | REQUEUE_FED | REQUEUE_HOLD | RESIZING | SUSPENDED | STAGE_OUT | SIGNALING)
    echo running ;;
  "")
    echo "status.sh: SLURM job $jobid is unknown to sacct and squeue (no accounting and older than MinJobAge?)" >&2
    echo failed ;;
  *) echo failed ;;  # FAILED CANCELLED TIMEOUT OUT_OF_MEMORY NODE_FAIL BOOT_FAIL DEADLINE PREEMPTED
esac
