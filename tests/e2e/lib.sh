# Shared by tests/e2e/run.sh, benches/packaging.sh and benches/agent_restart.sh: a throw-away
# booted Debian 12 container, and a sampler of a job's state inside it.
# Source it, then:  container_boot  →  inside <cmd...>  →  container_teardown (also from a trap).
#
# The cached rootfs (tests/e2e/rootfs.sh) is the read-only lower layer of an overlay, so a run
# never modifies it and starting costs no copy; Flink is copied into the upper layer at /opt/flink.
# The container gets its own network namespace (--private-network, loopback only): Flink's
# default ports cannot clash with other tests on this machine, and the agent's nftables table
# lands in the container's namespace instead of the host's firewall.
# shellcheck shell=bash

E2E_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=""          # per-run directory: overlay layers, merged root, logs
nspawn_pid=""    # the systemd-nspawn process (host pid)
leader=""        # the container's PID 1 (host pid), target of nsenter

# Polls `cmd` every 0.5 s until it succeeds or `timeout` seconds pass. Returns 1 on timeout.
wait_until() { # <timeout-secs> <cmd...>
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

# Runs a command inside the container, with a clean environment (the host's must not leak in).
inside() {
  nsenter -t "$leader" -m -u -i -n -p -- \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"
}

container_boot() { # <dir to copy into the container's /root/pkgs>
  local rootfs flink_home state
  rootfs=$("$E2E_REPO/tests/e2e/rootfs.sh")
  flink_home=$("$E2E_REPO/tests/setup/flink.sh")
  work=$(mktemp -d /var/tmp/flink-agent-e2e.XXXXXX)
  mkdir -p "$work/upper" "$work/ovl" "$work/root"
  mount -t overlay overlay -o "lowerdir=$rootfs,upperdir=$work/upper,workdir=$work/ovl" "$work/root"
  mkdir -p "$work/root/opt" "$work/root/root/pkgs"
  cp -a "$flink_home" "$work/root/opt/flink"
  # As on a VM, the host name resolves (Flink's log4j and RPC look it up); the minimal rootfs has
  # no nss-myhostname to answer for it.
  printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "$(cat "$work/root/etc/hostname")" > "$work/root/etc/hosts"
  cp -a "$1"/. "$work/root/root/pkgs/"
  systemd-nspawn -D "$work/root" --register=no --keep-unit --private-network -b \
    --console=passive </dev/null >"$work/nspawn.log" 2>&1 &
  nspawn_pid=$!
  # nspawn's child is the container's init once it has exec'ed systemd.
  find_leader() {
    leader=$(pgrep -P "$nspawn_pid" | head -n1)
    [ -n "$leader" ] && [ "$(readlink "/proc/$leader/exe" 2>/dev/null)" != "$(readlink "/proc/$nspawn_pid/exe")" ]
  }
  if ! wait_until 30 find_leader; then
    echo "e2e: the container did not start; nspawn log:" >&2
    tail -n 20 "$work/nspawn.log" >&2
    return 1
  fi
  booted() {
    state=$(inside systemctl is-system-running 2>/dev/null) || true
    [ "$state" = running ] || [ "$state" = degraded ]
  }
  if ! wait_until 60 booted; then
    echo "e2e: the container did not finish booting (state: ${state:-unknown}); jobs:" >&2
    inside systemctl list-jobs --no-pager >&2 || true
    return 1
  fi
}

# Idempotent; safe to call from a trap at any point of container_boot.
container_teardown() {
  sampler_stop
  if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
    # SIGTERM asks nspawn to shut the container down cleanly; SIGKILL if that takes too long.
    kill "$nspawn_pid" 2>/dev/null || true
    # nspawn is our child: once it exits it stays a zombie (still "alive" for kill -0) until reaped.
    gone() {
      local st
      st=$(awk '{print $3}' "/proc/$nspawn_pid/stat" 2>/dev/null) || true
      [ -z "$st" ] || [ "$st" = Z ]
    }
    if ! wait_until 20 gone; then
      kill -KILL "$nspawn_pid" 2>/dev/null || true
      wait_until 10 gone || echo "e2e: nspawn $nspawn_pid did not exit" >&2
    fi
    wait "$nspawn_pid" 2>/dev/null || true
  fi
  nspawn_pid=""
  if [ -n "$work" ]; then
    mountpoint -q "$work/root" && umount "$work/root"
    rm -rf "$work"
    work=""
  fi
}

# --- A job seen from Flink's REST API, every 200 ms ---------------------------------------------
# Runs inside the container (its network namespace is private), started before an event and stopped
# after it. Each line: the time in epoch microseconds, `GET /jobs/overview` (every job the
# JobManager knows, with its id and state: a second or re-submitted job shows up too), then
# `<jid> GET /jobs/<jid>/checkpoints` (counts, newest completed, restored) for each job the
# previous tick listed, tab-separated; `-` for a request that failed. Ticks are scheduled on a
# fixed 200 ms grid, so one slow answer does not shift the following ones, and each costs one
# process (a curl fetching every URL over one connection): the loop itself forks nothing, so
# it keeps its period on a busy machine. tests/e2e/samples.py reads the file.
# shellcheck disable=SC2016 # expanded by the bash inside the container
E2E_SAMPLER='
stop=$1 period=200000 tab=$(printf "\t") rest=http://127.0.0.1:8081 jids=()
exec {pause}<> <(:)
next=${EPOCHREALTIME/./}
while [ ! -e "$stop" ]; do
  record=${EPOCHREALTIME/./}
  urls=("$rest/jobs/overview")
  for jid in "${jids[@]}"; do urls+=("$rest/jobs/$jid/checkpoints"); done
  # One line per URL: the body, then the HTTP status (000: no answer).
  mapfile -t lines <<<"$(curl -s -m 1 -w "%{http_code}\n" "${urls[@]}")"
  bodies=()
  for i in "${!urls[@]}"; do
    line=${lines[i]:-000}
    if [ "${line: -3}" = 200 ]; then bodies+=("${line:0:${#line}-3}"); else bodies+=(-); fi
  done
  record+="$tab${bodies[0]}"
  for i in "${!jids[@]}"; do record+="$tab${jids[i]} ${bodies[i+1]}"; done
  printf "%s\n" "$record"
  jids=() left=${bodies[0]}
  while [[ $left =~ \"jid\":\"([0-9a-f]+)\" ]]; do
    jids+=("${BASH_REMATCH[1]}") left=${left#*"${BASH_REMATCH[0]}"}
  done
  next=$((next + period)) now=${EPOCHREALTIME/./}
  if [ "$next" -gt "$now" ]; then
    printf -v wait "0.%06d" $((next - now))
    read -r -t "$wait" -u "$pause" || true
  else
    next=$now
  fi
done'
sampler_pid=""
E2E_SAMPLER_STOP=/run/flink-agent-e2e-sampler.stop

sampler_start() { # <file on the host>
  inside rm -f "$E2E_SAMPLER_STOP"
  # exec: $sampler_pid is nsenter itself, which ends with the sampler.
  (exec nsenter -t "$leader" -m -u -i -n -p -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    bash -c "$E2E_SAMPLER" sampler "$E2E_SAMPLER_STOP" >"$1" 2>/dev/null) &
  sampler_pid=$!
}

# Idempotent; the sampler finishes its current tick and exits (killed if it has not within 5 s:
# its process inside the container then ends with the container).
sampler_stop() {
  [ -n "$sampler_pid" ] || return 0
  [ -n "$leader" ] && inside touch "$E2E_SAMPLER_STOP" 2>/dev/null
  sampler_gone() { ! kill -0 "$sampler_pid" 2>/dev/null || [ "$(awk '{print $3}' "/proc/$sampler_pid/stat" 2>/dev/null)" = Z ]; }
  wait_until 5 sampler_gone || kill "$sampler_pid" 2>/dev/null || true
  wait "$sampler_pid" 2>/dev/null || true
  sampler_pid=""
}

# The clocks systemd's *TimestampMonotonic properties use: the container shares the host's
# CLOCK_MONOTONIC (there is no time namespace), so they compare with the host's.
epoch_us() { date +%s%6N; }
# Epoch microseconds of a CLOCK_MONOTONIC microsecond value.
mono_to_epoch_us() {
  python3 -c 'import sys, time; print(int(sys.argv[1]) + int(time.time() * 1e6) - time.monotonic_ns() // 1000)' "$1"
}
