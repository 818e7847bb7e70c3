#!/usr/bin/env bash
# Stop the daemons start_slurm.sh started (by their pid files) and remove its state folder.
# Usage: tests/slurm/stop_slurm.sh [STATE_DIR]    (default /tmp/cxr-slurm, or $CXR_SLURM_STATE)
# Daemons it did not start (a munged that was already running) are left alone.
set -uo pipefail

STATE=${1:-${CXR_SLURM_STATE:-/tmp/cxr-slurm}}
[[ -d $STATE ]] || { echo "stop_slurm.sh: nothing to stop ($STATE absent)"; exit 0; }
export SLURM_CONF=$STATE/slurm.conf

stop() { # names...: TERM them together, wait up to 10 s, then KILL what is left
  local name pidfile pid t0=$EPOCHREALTIME
  local -A pids=()
  for name in "$@"; do
    pidfile=$STATE/run/$name.pid
    [[ -f $pidfile ]] || continue
    pid=$(cat "$pidfile")
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" && pids[$name]=$pid
    fi
    rm -f "$pidfile"
  done
  for name in "${!pids[@]}"; do
    pid=${pids[$name]}
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { echo "stop_slurm.sh: $name ($pid) ignored TERM, killing"; kill -KILL "$pid"; }
    echo "stop_slurm.sh: stopped $name ($pid) after $(awk "BEGIN{printf \"%.1f\", $EPOCHREALTIME - $t0}") s"
  done
}

# Jobs first, so no slurmstepd outlives its slurmd; the database last, after slurmdbd.
[[ -f $SLURM_CONF ]] && scancel --full --quiet --user=root 2>/dev/null
stop slurmd slurmctld
stop slurmdbd
stop mariadbd munged
# slurmstepd processes of killed jobs that belong to this state folder.
for p in $(pgrep -x slurmstepd 2>/dev/null); do
  grep -qs "$STATE" "/proc/$p/cmdline" "/proc/$p/environ" && kill -KILL "$p" 2>/dev/null
done

if [[ -f $STATE/etc-link && -L /etc/slurm/slurm.conf && $(readlink /etc/slurm/slurm.conf) == "$STATE/slurm.conf" ]]; then
  rm -f /etc/slurm/slurm.conf
fi
rm -rf "$STATE"
echo "stop_slurm.sh: removed $STATE"
