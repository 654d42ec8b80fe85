#!/usr/bin/env bash
# Packaging figures: package sizes; `systemctl start` → active inside a booted Debian 12 container
# vs. the agent's own time to READY when started directly (no systemd) on this machine; the
# agent's RSS under systemd. Needs root (see tests/e2e/run.sh). Usage: benches/packaging.sh [RUNS]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/../tests/e2e/lib.sh"
repo=$E2E_REPO
runs=${1:-3}

pkgs="" direct_pid="" direct_dir=""
cleanup() {
  if [ -n "$direct_pid" ] && kill -0 "$direct_pid" 2>/dev/null; then
    kill "$direct_pid" 2>/dev/null || true
    # The agent stops Flink itself (up to 2 x stop_grace_secs); bounded, then SIGKILL.
    wait_until 70 not_running || kill -KILL "$direct_pid" 2>/dev/null || true
    wait "$direct_pid" 2>/dev/null || true
  fi
  [ -n "$direct_dir" ] && rm -rf "$direct_dir"
  container_teardown
  [ -n "$pkgs" ] && rm -rf "$pkgs"
}
not_running() { ! kill -0 "$direct_pid" 2>/dev/null || [ "$(awk '{print $3}' "/proc/$direct_pid/stat" 2>/dev/null)" = Z ]; }
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
median() { tr ' ' '\n' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

"$repo/tests/setup/deps.sh"
pkgs=$(mktemp -d /var/tmp/flink-agent-bench.XXXXXX)
"$repo/packaging/build.sh" --out "$pkgs" >/dev/null
deb=$(ls "$pkgs"/flink-agent_*.deb)
rpm=$(ls "$pkgs"/flink-agent-*.rpm)
echo "package sizes:"
printf '  %-40s %6d KiB (installed: %s KiB)\n' "$(basename "$deb")" $(( $(stat -c %s "$deb") / 1024 )) "$(dpkg-deb -f "$deb" Installed-Size)"
printf '  %-40s %6d KiB\n' "$(basename "$rpm")" $(( $(stat -c %s "$rpm") / 1024 ))
printf '  %-40s %6d KiB\n' "flink-agent binary (stripped)" $(( $(stat -c %s "$repo/target/release/flink-agent") / 1024 ))

# --- The agent's own time to READY, started directly (no systemd) ---------------------------------
# In a private network namespace: default ports cannot clash, and its nftables table stays out of
# this machine's firewall. Flink runs as root here (no flink.user).
flink_home=$("$repo/tests/setup/flink.sh")
direct_dir=$(mktemp -d /var/tmp/flink-agent-bench-direct.XXXXXX)
cat >"$direct_dir/agent.toml" <<TOML
[agent]
state_dir = "$direct_dir/state"
socket = "$direct_dir/agent.sock"
[flink]
home = "$flink_home"
data_dir = "$direct_dir/data"
log_dir = "$direct_dir/log"
TOML
direct_times=()
direct_ready() { "$repo/target/release/flink-agent" status --socket "$direct_dir/agent.sock" >/dev/null 2>&1; }
for _ in $(seq "$runs"); do
  t0=$(now)
  unshare --net -- sh -c 'ip link set lo up && exec "$0" run --config "$1"' \
    "$repo/target/release/flink-agent" "$direct_dir/agent.toml" 2>"$direct_dir/agent.log" &
  direct_pid=$!
  wait_until 180 direct_ready || { echo "the directly started agent did not get ready:" >&2; tail "$direct_dir/agent.log" >&2; exit 1; }
  direct_times+=("$(secs "$t0" "$(now)")")
  kill "$direct_pid"
  wait_until 70 not_running
  wait "$direct_pid" 2>/dev/null || true
  direct_pid=""
done

# --- Under systemd in the container -----------------------------------------------------------------
mkdir -p "$pkgs/in" && cp "$deb" "$pkgs/in/agent.deb"
container_boot "$pkgs/in"
inside dpkg -i /root/pkgs/agent.deb >/dev/null 2>&1
active() { [ "$(inside systemctl is-active flink-agent 2>/dev/null)" = active ]; }
wait_until 180 active
unit_times=() agent_times=()
for _ in $(seq "$runs"); do
  inside systemctl stop flink-agent
  t0=$(now)
  inside systemctl start flink-agent   # blocks until READY=1 (Type=notify)
  unit_times+=("$(secs "$t0" "$(now)")")
  # The agent's share: from its exec to READY, as systemd recorded them.
  start_us=$(inside systemctl show -P ExecMainStartTimestampMonotonic flink-agent)
  active_us=$(inside systemctl show -P ActiveEnterTimestampMonotonic flink-agent)
  agent_times+=("$(awk -v a="$start_us" -v b="$active_us" 'BEGIN { printf "%.2f", (b - a) / 1e6 }')")
done
main_pid=$(inside systemctl show -P MainPID flink-agent)
rss_kib=$(inside awk '/^VmRSS:/ { print $2 }' "/proc/$main_pid/status")
# For scale: the two Flink JVMs the agent supervises (the container has no memory accounting
# for the unit's cgroup, so MemoryCurrent is not available).
jvm_kib=$(inside ps -o rss= -C java | awk '{ s += $1 } END { print s + 0 }')

echo "start to ready ($runs runs each, median):"
echo "  systemctl start → active (container):                             $(echo "${unit_times[*]}" | median) s   [${unit_times[*]}]"
echo "  agent exec → READY=1 under systemd:                                $(echo "${agent_times[*]}" | median) s   [${agent_times[*]}]"
echo "  agent started directly → ready (no systemd, host):                 $(echo "${direct_times[*]}" | median) s   [${direct_times[*]}]"
echo "memory under systemd:"
echo "  agent RSS: $((rss_kib / 1024)) MiB ($rss_kib KiB); JobManager + TaskManager JVMs: $((jvm_kib / 1024)) MiB"
