# Shared by cluster-up.sh and cluster-down.sh (sourced, not run).

# A pid file is live only if its process still runs the program that wrote it: state copied from
# another machine (or left by a reboot) can name a pid that now belongs to something else.
alive() {
  local pid; [ -f "$1" ] && pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1  # a zombie is not alive
  [ -z "${2:-}" ] || grep -q "$2" "/proc/$pid/comm" 2>/dev/null
}
