# Shared by the slipway-logs-* scripts (sourced, not run): paths, settings, the lock, pruning.
# shellcheck shell=bash disable=SC2034  # the variables are used by the scripts that source it
#
# Files in $LOG_DIR (the logs-data volume):
#   current.log                            rsyslog writes here (one JSON object per line)
#   slipway-<UTC yyyymmddThhmmss.ffffff>Z.log[.gz]
#                                          rotated files; the name is the rotation time, so names
#                                          sort in time order; compressed by the maintenance loop
#   .compressing-<name>.gz                 a compression in progress
# A line may be split across a rotated file and the next one (rsyslog rotates after a buffer
# write, not after a line): reading the files in name order, then current.log, as one stream
# joins it again. Every change to the directory happens under one lock, so the total size is
# bounded exactly (see prune).

LOG_DIR=/var/log/slipway
CURRENT="$LOG_DIR/current.log"
STATE_DIR=/tmp/slipway-logs
SETTINGS="$STATE_DIR/settings"
LOCK_FILE="$STATE_DIR/lock"
PID_FILE="$STATE_DIR/rsyslogd.pid"
# The current file was started at this file's mtime (age rotation).
SINCE_FILE="$LOG_DIR/.current-since"

# Settings written by logs-entrypoint (the only place that validates them).
load_settings() {
  if [ ! -r "$SETTINGS" ]; then
    printf 'slipway-logs: %s is missing: the container did not start through logs-entrypoint\n' \
      "$SETTINGS" >&2
    exit 2
  fi
  # shellcheck source=/dev/null
  . "$SETTINGS"
}

log_json() {
  local level=$1
  shift
  local message=$*
  message=${message//\\/\\\\}
  message=${message//\"/\\\"}
  printf '{"timestamp":"%s","level":"%s","service":"logs","message":"%s"}\n' \
    "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" "$level" "$message"
}

# Run "$@" holding the directory lock.
with_lock() {
  (
    flock 9
    "$@"
  ) 9>"$LOCK_FILE"
}

file_size() {
  stat -c %s -- "$1" 2>/dev/null || echo 0
}

# Rotated files, oldest first (their names sort in time order).
rotated_files() {
  find "$LOG_DIR" -maxdepth 1 -type f -name 'slipway-*.log*' -printf '%f\n' | LC_ALL=C sort
}

# Bytes the directory uses, counting a compression in progress at the most it can reach (its
# input's size plus gzip's worst-case overhead), so that the reserve below holds until it ends.
usage() {
  local total=0 name size source
  while IFS=$'\t' read -r name size; do
    if [[ $name == .compressing-* ]]; then
      source="${name#.compressing-}"
      source="$LOG_DIR/${source%.gz}"
      if [ -f "$source" ]; then
        local bound
        bound=$(file_size "$source")
        bound=$((bound + bound / 256 + 1024))
        ((size < bound)) && size=$bound
      fi
    fi
    total=$((total + size))
  done < <(find "$LOG_DIR" -maxdepth 1 -type f -printf '%f\t%s\n')
  echo "$total"
}

# Delete what retention and the size bound require (call with the lock held).
#   prune KEEP_FREE [SPARE_NAME]
# Rotated files whose newest line is older than LOG_RETENTION_DAYS go first. Then, oldest first,
# rotated files until usage + KEEP_FREE <= LOG_MAX_SIZE. Callers pass as KEEP_FREE what may still
# be written before their next prune (what current.log may grow until rsyslog rotates it, plus a
# file they are about to compress): so the directory never holds more than LOG_MAX_SIZE.
# SPARE_NAME (the file being compressed) is never deleted.
prune() {
  local keep_free=$1 spare=${2:-} name total size
  while IFS= read -r name; do
    [ "$name" = "$spare" ] && continue
    rm -f -- "${LOG_DIR:?}/$name"
    log_json info "deleted $name: older than LOG_RETENTION_DAYS=$LOG_RETENTION_DAYS"
  done < <(find "$LOG_DIR" -maxdepth 1 -type f -name 'slipway-*.log*' \
    -mmin +$((LOG_RETENTION_DAYS * 1440)) -printf '%f\n' | LC_ALL=C sort)

  total=$(usage)
  while ((total + keep_free > LOG_MAX_SIZE)); do
    name=""
    while IFS= read -r candidate; do
      if [ "$candidate" != "$spare" ]; then
        name=$candidate
        break
      fi
    done < <(rotated_files)
    if [ -z "$name" ]; then
      log_json warning "nothing left to delete: $total bytes used, $keep_free to keep free," \
        "LOG_MAX_SIZE=$LOG_MAX_SIZE"
      break
    fi
    size=$(file_size "$LOG_DIR/$name")
    rm -f -- "${LOG_DIR:?}/$name"
    total=$((total - size))
    log_json info "deleted $name ($size bytes): the logs use more than LOG_MAX_SIZE=$LOG_MAX_SIZE"
  done
}

# What current.log may still grow before rsyslog rotates it: to LOG_CHUNK_SIZE, plus one write
# buffer (rsyslog checks the size after each write).
current_headroom() {
  local size limit=$((LOG_CHUNK_SIZE + LOG_WRITE_BUFFER))
  size=$(file_size "$CURRENT")
  if ((size >= limit)); then
    echo 0
  else
    echo $((limit - size))
  fi
}

# Move current.log aside under a timestamped name (call with the lock held). Prints the new name.
move_current() {
  local name
  [ -s "$CURRENT" ] || return 0
  name="slipway-$(date -u +%Y%m%dT%H%M%S.%6NZ).log"
  while [ -e "$LOG_DIR/$name" ] || [ -e "$LOG_DIR/$name.gz" ]; do
    sleep 0.001
    name="slipway-$(date -u +%Y%m%dT%H%M%S.%6NZ).log"
  done
  mv -- "$CURRENT" "$LOG_DIR/$name"
  touch "$SINCE_FILE"
  echo "$name"
}

# Whether the process $1 (rsyslogd) holds the UDP socket bound to LOG_LISTEN_ADDRESS and
# LOG_LISTEN_PORT: rsyslogd keeps running without it when the port is taken.
listening() {
  local pid=$1 a b c d wanted local_address inode
  IFS=. read -r a b c d <<<"$LOG_LISTEN_ADDRESS"
  # /proc/net/udp: the address as little-endian hex, the port as hex.
  wanted=$(printf '%02X%02X%02X%02X:%04X' "$d" "$c" "$b" "$a" "$LOG_LISTEN_PORT")
  while read -r _ local_address _ _ _ _ _ _ _ inode _; do
    [ "$local_address" = "$wanted" ] || continue
    if find "/proc/$pid/fd" -lname "socket:\[$inode\]" 2>/dev/null | grep -q .; then
      return 0
    fi
  done < <(tail -n +2 /proc/net/udp)
  return 1
}
