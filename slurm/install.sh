#!/usr/bin/env bash
# Install the Debian packages of a single-machine Slurm test cluster (with accounting, which
# submitit needs: it reads job states through sacct). Idempotent; needs root.
set -euo pipefail
say() { printf '[slurm-install] %s\n' "$*"; }
pkgs=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -eq 0 ]; then say "packages present"; exit 0; fi
if [ "$(id -u)" != 0 ]; then echo "slurm/install.sh: root is needed to install ${missing[*]}" >&2; exit 1; fi
# No init system here: keep package scripts from starting services during the install.
made_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1; fi
say "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
  || { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
[ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
say "done"
