#!/usr/bin/env bash
# Start a real Slurm cluster on this machine: munge, MariaDB (unix socket only), slurmdbd,
# slurmctld and one slurmd per virtual node (default 2: n1, n2). No systemd, no cgroups.
# Idempotent: daemons already running (live pid files) are left alone. Stop with cluster-down.sh.
#   bash slurm/cluster-up.sh [NODES]        state in $MLU_SLURM_DIR (default /tmp/mlu-slurm)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
NODES=${1:-2}
DIR=${MLU_SLURM_DIR:-/tmp/mlu-slurm}
CPUS=$(nproc)
MEM=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 / NODES ))  # half the RAM, split over nodes
say() { printf '[slurm-up] %s\n' "$*"; }
. "$here/lib.sh"  # alive PIDFILE PROGRAM

bash "$here/install.sh"
mkdir -p "$DIR"/{log,spool,state,db,run}
chmod 755 "$DIR"
host=$(hostname -s)
getent hosts "$host" >/dev/null || echo "127.0.0.1 $host" >> /etc/hosts
for n in $(seq 1 "$NODES"); do grep -qE "^127\.0\.0\.1.*\bn$n\b" /etc/hosts || echo "127.0.0.1 n$n" >> /etc/hosts; done

# --- munge ---------------------------------------------------------------------------------------
if ! alive /run/munge/munged.pid munged; then
  [ -f /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
  chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge; chown munge:munge /run/munge
  runuser -u munge -- /usr/sbin/munged
  say "munged started"
fi

# --- MariaDB + slurmdbd (accounting: submitit reads job states with sacct) ----------------------
SOCK=/run/mysqld/mysqld.sock  # the default place, where slurmdbd's MySQL client looks
mkdir -p /run/mysqld
if ! alive "$DIR/run/mysqld.pid" mariadbd; then
  # A socket left by a server that is gone would make the wait below succeed at once.
  rm -f "$SOCK" "$DIR/run/mysqld.pid"
  if [ ! -d "$DIR/db/mysql" ]; then
    mariadb-install-db --user=root --datadir="$DIR/db" --auth-root-authentication-method=normal >/dev/null 2>&1
  fi
  (mariadbd --user=root --datadir="$DIR/db" --socket="$SOCK" --pid-file="$DIR/run/mysqld.pid" \
     --skip-networking --log-error="$DIR/log/mysqld.log" >/dev/null 2>&1 &)
  # Wait until the server answers, not just until its socket exists.
  for _ in $(seq 1 300); do mariadb-admin --socket="$SOCK" -uroot ping >/dev/null 2>&1 && break; sleep 0.1; done
  mariadb-admin --socket="$SOCK" -uroot ping >/dev/null 2>&1 \
    || { echo "mariadb did not start; see $DIR/log/mysqld.log" >&2; tail -5 "$DIR/log/mysqld.log" >&2; exit 1; }
  mariadb --socket="$SOCK" -uroot -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db; \
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm'; \
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  say "mariadb started"
fi
mkdir -p /etc/slurm
cat > /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=slurm
CONF
chmod 600 /etc/slurm/slurmdbd.conf
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! alive "$DIR/run/slurmdbd.pid" slurmdbd; then
  /usr/sbin/slurmdbd
  say "slurmdbd started"
fi
# slurmctld registers the cluster with slurmdbd at start and exits if it cannot: wait for it
for _ in $(seq 1 100); do port_open 6819 && break; sleep 0.1; done
port_open 6819 || { echo "slurmdbd does not listen on 6819; see $DIR/log/slurmdbd.log" >&2; exit 1; }

# --- slurm.conf ------------------------------------------------------------------------------------
{
cat <<CONF
ClusterName=mlu
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
MailProg=/bin/true
ReturnToService=2
SchedulerParameters=batch_sched_delay=0,bf_interval=1,sched_interval=2
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmdLogFile=$DIR/log/slurmd-%n.log
SlurmdSpoolDir=$DIR/spool/%n
StateSaveLocation=$DIR/state
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none
MinJobAge=300
KillWait=5
InactiveLimit=0
CONF
for n in $(seq 1 "$NODES"); do
  echo "NodeName=n$n NodeHostname=n$n NodeAddr=127.0.0.1 Port=$((6808 + 10 * n)) CPUs=$CPUS RealMemory=$MEM State=UNKNOWN"
done
echo "PartitionName=debug Nodes=$(seq -s, -f 'n%g' 1 "$NODES") Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO"
} > /etc/slurm/slurm.conf

if ! alive "$DIR/run/slurmctld.pid" slurmctld; then
  /usr/sbin/slurmctld -c  # -c: start clean, never rerun jobs saved by an earlier cluster
  say "slurmctld started"
fi
for n in $(seq 1 "$NODES"); do
  mkdir -p "$DIR/spool/n$n"
  if ! alive "$DIR/run/slurmd-n$n.pid" slurmd; then
    /usr/sbin/slurmd -N "n$n"
    say "slurmd n$n started"
  fi
done
idle=0
for _ in $(seq 1 100); do
  idle=$(timeout 3 sinfo -h -N -o '%T' 2>/dev/null | grep -c idle || true)
  [ "$idle" -ge "$NODES" ] && break
  alive "$DIR/run/slurmctld.pid" slurmctld || { echo "slurmctld died; see $DIR/log/slurmctld.log" >&2; exit 1; }
  sleep 0.2
done
timeout 3 sinfo -N -o '%N %T %c %m' | sed 's/^/[slurm-up] /'
[ "$idle" -ge "$NODES" ] || { echo "slurm nodes are not idle; logs in $DIR/log" >&2; exit 1; }
say "cluster up ($NODES node(s)); sacct: $(sacct -n -X -S now-1minutes >/dev/null 2>&1 && echo ok || echo 'not ready')"
