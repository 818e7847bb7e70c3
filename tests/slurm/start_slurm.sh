#!/usr/bin/env bash
# Start a real single-node SLURM (with accounting) for tests, on a root machine without systemd.
#
# Usage: tests/slurm/start_slurm.sh [STATE_DIR]     (default /tmp/cxr-slurm, or $CXR_SLURM_STATE)
#   CXR_SLURM_ACCOUNTING=0  skip MariaDB + slurmdbd (then use `--slurm-status-command squeue`)
#
# Idempotent: a second call with the cluster up only waits for the node to be idle.
# Writes slurm.conf etc. into STATE_DIR; clients find it through SLURM_CONF (printed at the end;
# /etc/slurm/slurm.conf is linked to it when that path is free). Stop with stop_slurm.sh STATE_DIR.
# Why by hand: apt's policy-rc.d blocks service starts and there is no systemd; see
# shared/docs/slurm-on-one-machine.md for the traps this script avoids.
set -euo pipefail

STATE=${1:-${CXR_SLURM_STATE:-/tmp/cxr-slurm}}
ACCOUNTING=${CXR_SLURM_ACCOUNTING:-1}
CLUSTER=cxr
DB_PORT=${CXR_SLURM_DB_PORT:-13306}
WAIT_S=${CXR_SLURM_WAIT_S:-60}
PKGS=(slurmctld slurmd slurm-client slurm-wlm-basic-plugins munge)
[[ $ACCOUNTING == 1 ]] && PKGS+=(slurmdbd slurm-wlm-mysql-plugin mariadb-server)

die() { echo "start_slurm.sh: ERROR: $*" >&2; echo "start_slurm.sh: logs are in $STATE/log" >&2; exit 1; }
log() { echo "start_slurm.sh: $*"; }
alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

[[ $(id -u) == 0 ]] || die "must run as root (it installs packages and starts daemons)"
T0=$(date +%s)

# ---- packages ------------------------------------------------------------------------------
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  apt-get update -qq >/dev/null || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >"/tmp/cxr-slurm-apt.log" 2>&1 || die "apt-get install failed, see /tmp/cxr-slurm-apt.log"
fi
for b in slurmctld slurmd sinfo sbatch munged; do command -v "$b" >/dev/null || die "$b not found after install"; done

mkdir -p "$STATE"/{log,run,spool/ctld,spool/d}
export SLURM_CONF=$STATE/slurm.conf

# ---- configuration (rewritten only when absent, so a running cluster keeps its config) ------
if [[ -f $SLURM_CONF ]]; then
  has_dbd=0
  grep -q '^AccountingStorageType=accounting_storage/slurmdbd' "$SLURM_CONF" && has_dbd=1
  [[ $has_dbd == "$ACCOUNTING" ]] ||
    die "$STATE was set up with accounting=$has_dbd, asked for $ACCOUNTING: run stop_slurm.sh $STATE first"
else
  cpus=$(nproc)
  # slurmd refuses a node whose RealMemory exceeds what it measures: take 90 % of it.
  mem_mb=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  [[ -n $mem_mb ]] || die "slurmd -C did not report RealMemory"
  mem_mb=$((mem_mb * 9 / 10))
  def_mem=$((mem_mb / cpus / 2))
  if [[ $ACCOUNTING == 1 ]]; then
    acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStorageTRES=gres/gpu"
  else
    acct="AccountingStorageType=accounting_storage/none"
  fi
  cat >"$SLURM_CONF" <<EOF
# Written by tests/slurm/start_slurm.sh: single node, fake GPU, everything on 127.0.0.1.
ClusterName=$CLUSTER
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups without systemd: plain process tracking.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default, a job lacking --mem takes the whole node and jobs run one at a time.
DefMemPerCPU=$def_mem
MinJobAge=600
# sacct shows the plugin's --comment (rule name), handy when reading a run back.
AccountingStoreFlags=job_comment
MailProg=/bin/true
InactiveLimit=0
KillWait=5
Waittime=0
GresTypes=gpu
$acct
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost Default=NO MaxTime=INFINITE State=UP
EOF
  # slurmd drops a GPU without a device file and rejects a regular file: /dev/null is a device.
  echo "NodeName=localhost Name=gpu File=/dev/null" >"$STATE/gres.conf"
  cat >"$STATE/cgroup.conf" <<EOF
# Not used (proctrack/linuxproc, task/none); present so nothing looks for /etc/slurm/cgroup.conf.
CgroupAutomount=no
EOF
fi
# Plain `sinfo` in a shell works when the default path is free; never overwrite a real site config.
if [[ ! -e /etc/slurm/slurm.conf ]]; then
  mkdir -p /etc/slurm && ln -s "$SLURM_CONF" /etc/slurm/slurm.conf && touch "$STATE/etc-link"
fi

# ---- munge ---------------------------------------------------------------------------------
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
  mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
  [[ -s /etc/munge/munge.key ]] || { mungekey --create --force 2>/dev/null || create-munge-key -f; chown munge:munge /etc/munge/munge.key; }
  runuser -u munge -- munged --force </dev/null >"$STATE/log/munged.out" 2>&1 || die "munged did not start"
  cp /run/munge/munged.pid "$STATE/run/munged.pid" 2>/dev/null || pgrep -n -x munged >"$STATE/run/munged.pid"
  munge -n </dev/null | unmunge >/dev/null || die "munge does not work"
  log "munged started"
fi

# ---- accounting: private MariaDB + slurmdbd ------------------------------------------------
if [[ $ACCOUNTING == 1 ]]; then
  DB=$STATE/mysql
  if ! alive "$STATE/run/mariadbd.pid"; then
    mysqld_bin=$(command -v mariadbd || command -v mysqld || echo /usr/sbin/mariadbd)
    if [[ ! -d $DB/mysql ]]; then
      mkdir -p "$DB" && chown mysql:mysql "$DB"
      mariadb-install-db --user=mysql --datadir="$DB" --auth-root-authentication-method=socket \
        --skip-test-db >"$STATE/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed"
    fi
    chown mysql:mysql "$STATE/run"
    "$mysqld_bin" --no-defaults --user=mysql --datadir="$DB" --bind-address=127.0.0.1 --port="$DB_PORT" \
      --socket="$STATE/run/mysqld.sock" --pid-file="$STATE/run/mariadbd.pid" \
      --log-error="$STATE/log/mariadb.log" --innodb-buffer-pool-size=64M --skip-log-bin </dev/null >>"$STATE/log/mariadb.log" 2>&1 &
    for _ in $(seq 1 60); do
      mariadb-admin --no-defaults --socket="$STATE/run/mysqld.sock" -uroot ping >/dev/null 2>&1 && break
      sleep 0.5
    done
    mariadb-admin --no-defaults --socket="$STATE/run/mysqld.sock" -uroot ping >/dev/null 2>&1 || die "MariaDB did not start"
    mariadb --no-defaults --socket="$STATE/run/mysqld.sock" -uroot <<'EOF' || die "could not create the slurm database user"
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
    log "MariaDB started on 127.0.0.1:$DB_PORT"
  fi
  if ! alive "$STATE/run/slurmdbd.pid"; then
    cat >"$STATE/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$STATE/slurmdbd.conf"
    slurmdbd </dev/null >>"$STATE/log/slurmdbd.log" 2>&1 || die "slurmdbd did not start (see $STATE/log/slurmdbd.log)"
    for _ in $(seq 1 40); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.5; done
    sacctmgr -n list cluster >/dev/null 2>&1 || die "slurmdbd does not answer (see $STATE/log/slurmdbd.log)"
    log "slurmdbd started"
  fi
  sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" ||
    sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr add cluster failed"
fi

# ---- slurmctld + slurmd --------------------------------------------------------------------
if ! alive "$STATE/run/slurmctld.pid"; then
  slurmctld </dev/null >>"$STATE/log/slurmctld.log" 2>&1 || die "slurmctld did not start (see $STATE/log/slurmctld.log)"
  log "slurmctld started"
fi
if ! alive "$STATE/run/slurmd.pid"; then
  slurmd -N localhost </dev/null >>"$STATE/log/slurmd.log" 2>&1 || die "slurmd did not start (see $STATE/log/slurmd.log)"
  log "slurmd started"
fi

# ---- wait for the node -------------------------------------------------------------------
state=""
for _ in $(seq 1 $((WAIT_S * 2))); do
  state=$(sinfo -h -n localhost -o %T 2>/dev/null | head -n1 || true)
  case $state in
    idle | mixed | allocated) break ;;
    *inval* | *drain* | down*) scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 0.5
done
case $state in
  idle | mixed | allocated) ;;
  *) die "node localhost is '${state:-unknown}' after ${WAIT_S}s, not idle (see $STATE/log/slurmd.log, slurmctld.log)" ;;
esac

log "SLURM up in $(($(date +%s) - T0)) s: $(sinfo --version), accounting=$ACCOUNTING, node $state"
log "state and logs: $STATE (log/slurmctld.log, log/slurmd.log, log/slurmdbd.log, log/mariadb.log)"
log "clients need: export SLURM_CONF=$SLURM_CONF"
