#!/usr/bin/env bash
# Stop the test cluster started by cluster-up.sh: cancel jobs first (else slurmstepd outlives
# slurmd), then stop only the daemons whose pid files cluster-up.sh wrote.
set -uo pipefail
. "$(cd "$(dirname "$0")" && pwd)/lib.sh"  # alive PIDFILE PROGRAM
DIR=${MLU_SLURM_DIR:-/tmp/mlu-slurm}
say() { printf '[slurm-down] %s\n' "$*"; }
command -v scancel >/dev/null && scancel --user="$(id -un)" 2>/dev/null && sleep 1
stop() {  # only a pid that still runs the program named (a stale file may name another process)
  local pidfile=$1 name=$2 prog=$3
  if alive "$pidfile" "$prog"; then
    local pid; pid=$(cat "$pidfile")
    kill "$pid"; for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    say "$name stopped"
  fi
  rm -f "$pidfile"
}
for f in "$DIR"/run/slurmd-*.pid; do [ -e "$f" ] && stop "$f" "$(basename "$f" .pid)" slurmd; done
stop "$DIR/run/slurmctld.pid" slurmctld slurmctld
stop "$DIR/run/slurmdbd.pid" slurmdbd slurmdbd
stop "$DIR/run/mysqld.pid" mariadb mariadbd
exit 0
