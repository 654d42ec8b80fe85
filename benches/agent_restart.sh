#!/usr/bin/env bash
# What an agent restart costs a running job, on a booted Debian 12 with a real systemd
# (tests/e2e/lib.sh): `systemctl restart flink-agent` (--restarts times) and a package upgrade
# (dpkg -i of NEW over OLD; its postinst try-restarts the agent), each with the test jobs'
# KeyedCounter running and checkpointing every second. Per event:
#
#   exec→READY     the restarted agent's exec to its READY=1, both from systemd:
#                  ExecMainStartTimestampMonotonic → ActiveEnterTimestampMonotonic (a Type=notify
#                  unit turns active on READY=1)
#   event→READY    from the event's start (the restart or dpkg command) to that READY=1
#   RUNNING gap    the longest time without a RUNNING sample of the job, Flink's REST polled every
#                  200 ms inside the container (tests/e2e/samples.py): ~200 ms = nothing missed
#   ckpt gap       the longest time between consecutive completed checkpoints (Flink's
#                  acknowledgement times, of any job) from the last one before the event to the end
#                  of the window, against the usual gap (~ the 1 s interval)
#   job id, restored   whether the job is still the same Flink job, and whether Flink restored it
#
# Usage (root; take the benchmark lock; the container has its own network, so Flink's ports
# clash with nothing):
#   flock /tmp/fa-bench.lock benches/agent_restart.sh [--restarts N] [--label NAME] [OLD.deb NEW.deb]
# Without .deb files the current tree is built twice, the second with a higher version (the same
# binary, as tests/e2e/run.sh does). Prints a table and, last, the ratio of the worst checkpoint
# gap at an event to the checkpoint interval (1.0: the event cost no checkpoint).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/../tests/e2e/lib.sh"
repo=$E2E_REPO

restarts=3 label=current old="" new=""
while [ $# -gt 0 ]; do
  case "$1" in
    --restarts) restarts=$2; shift 2 ;;
    --label) label=$2; shift 2 ;;
    -*) echo "usage: $0 [--restarts N] [--label NAME] [OLD.deb NEW.deb]" >&2; exit 2 ;;
    *) [ -z "$old" ] && old=$1 || new=$1; shift ;;
  esac
done
if [ -n "$old" ] && [ -z "$new" ]; then
  echo "usage: $0 [--restarts N] [--label NAME] [OLD.deb NEW.deb]" >&2; exit 2
fi
if [ "$(id -u)" != 0 ]; then
  echo "agent_restart: must run as root (mount, systemd-nspawn)" >&2
  exit 2
fi

pkgs=""
cleanup() {
  container_teardown
  [ -n "$pkgs" ] && rm -rf "$pkgs"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$repo/tests/setup/deps.sh"
pkgs=$(mktemp -d /var/tmp/flink-agent-bench.XXXXXX)
mkdir -p "$pkgs/in"
if [ -z "$old" ]; then
  "$repo/packaging/build.sh" --out "$pkgs/v1" >/dev/null
  old=$(ls "$pkgs"/v1/flink-agent_*.deb)
  version=$(dpkg-deb -f "$old" Version)
  "$repo/packaging/build.sh" --version "${version%-*}.1" --out "$pkgs/v2" >/dev/null
  new=$(ls "$pkgs"/v2/flink-agent_*.deb)
fi
cp "$old" "$pkgs/in/old.deb"
cp "$new" "$pkgs/in/new.deb"
jar=$(bash "$repo/tests/jobs/build.sh" "$pkgs/jobs")
cp "$jar" "$pkgs/in/test-jobs.jar"
echo "agent_restart: $label: $(dpkg-deb -f "$old" Version) → $(dpkg-deb -f "$new" Version)"

container_boot "$pkgs/in"
unit=flink-agent.service
config=/etc/flink-agent/agent.toml
sock=/run/flink-agent/agent.sock
prop() { inside systemctl show -P "$1" "$unit"; }
status_py() {
  inside flink-agent status --json --socket $sock 2>/dev/null \
    | python3 -c "import json,sys; s=json.load(sys.stdin); print($1)" 2>/dev/null
}
jobs_py() {
  inside flink-agent jobs --json --socket $sock 2>/dev/null \
    | python3 -c "import json,sys; j=json.load(sys.stdin); print($1)" 2>/dev/null
}
ready() { [ "$(status_py "s['ready']")" = True ]; }
pids() { status_py "' '.join(str(p['pid']) for p in s['processes'])"; }
die() { echo "agent_restart: $*" >&2; inside journalctl -u $unit -n 30 --no-pager >&2 || true; exit 1; }

inside dpkg -i /root/pkgs/old.deb >/dev/null
wait_until 180 ready || die "the agent did not become ready after install"
# Checkpoints every second (default 10 s): the gap around an event is measured against 1 s.
before=$(pids)
inside sed -i 's/^checkpoint_interval_ms = .*/checkpoint_interval_ms = 1000/' $config
inside systemctl reload $unit
restarted() { ready && [ "$(pids)" != "$before" ]; }
wait_until 180 restarted || die "the reload did not restart Flink with a 1 s checkpoint interval"
inside install -D -m 0644 /root/pkgs/test-jobs.jar /opt/jobs/test-jobs.jar
inside flink-agent jobs deploy counter --jar /opt/jobs/test-jobs.jar \
  --entry-class flinkagent.testjobs.KeyedCounter --parallelism 1 -- /var/lib/flink/counts.txt 20 >/dev/null
# A RUNNING job of which a checkpoint completed after epoch-ms $1: the job is back in business.
checkpointing_since() {
  local jid ck
  jid=$(inside curl -sf -m 2 http://127.0.0.1:8081/jobs/overview \
    | python3 -c 'import json,sys; print(" ".join(j["jid"] for j in json.load(sys.stdin)["jobs"] if j["state"] == "RUNNING"))' 2>/dev/null) || return 1
  [ -n "$jid" ] || return 1
  ck=$(inside curl -sf -m 2 "http://127.0.0.1:8081/jobs/${jid%% *}/checkpoints") || return 1
  python3 -c 'import json,sys; c=(json.loads(sys.argv[1])["latest"] or {}).get("completed") or {}; sys.exit(0 if c.get("latest_ack_timestamp", 0) > int(sys.argv[2]) else 1)' "$ck" "$1"
}

# Flink's own answer, not the agent's: the older agent lists no checkpoint under its packaged unit.
wait_until 120 checkpointing_since 0 || die "the job did not run and checkpoint"
sleep 5

rows=()
measure() { # <event> <cmd...>
  local event=$1 before_agent file t_event a exec_us active_us; shift
  before_agent=$(prop MainPID)
  file="$work/samples.txt"
  sampler_start "$file"
  sleep 3
  t_event=$(epoch_us)
  "$@" >/dev/null
  back() { [ "$(prop MainPID)" != "$before_agent" ] && [ "$(prop ActiveState)" = active ] && ready; }
  # A timeout is a result too (an old agent restarting Flink on a loaded machine): the row says so.
  wait_until 240 back || echo "agent_restart: $event: the agent was not back within 240 s" >&2
  wait_until 240 checkpointing_since $((t_event / 1000)) \
    || echo "agent_restart: $event: no checkpoint completed within 240 s" >&2
  sleep 3
  sampler_stop
  exec_us=$(prop ExecMainStartTimestampMonotonic) active_us=$(prop ActiveEnterTimestampMonotonic)
  a=$(python3 "$repo/tests/e2e/samples.py" "$file" --event "$t_event")
  rows+=("$(python3 -c '
import json, sys
a = json.loads(sys.argv[1])
event, exec_ms, event_ms = sys.argv[2], int(sys.argv[3]) / 1000, int(sys.argv[4]) / 1000
print("\t".join(str(v) for v in [event, round(exec_ms), round(event_ms), a["running_gap_ms"],
      a["checkpoint_gap_at_event_ms"], a["checkpoint_gap_median_ms"],
      "same" if len(a["jobs"]) == 1 else "changed", "yes" if a["restored"] else "no"]))' \
    "$a" "$event" $((active_us - exec_us)) $(($(mono_to_epoch_us "$active_us") - t_event)))")
  echo "agent_restart: $label: ${rows[-1]//$'\t'/ | }" >&2
}

for i in $(seq 1 "$restarts"); do
  measure "systemctl restart #$i" inside systemctl restart $unit
done
measure "package upgrade" inside dpkg -i /root/pkgs/new.deb

echo
echo "agent restart, $label ($(dpkg-deb -f "$old" Version) → $(dpkg-deb -f "$new" Version)); times in ms"
printf '%s\n' "event	exec→READY	event→READY	RUNNING gap	ckpt gap at event	usual ckpt gap	job id	restored" "${rows[@]}" \
  | column -t -s $'\t'
printf '%s\n' "${rows[@]}" | python3 -c '
import sys
rows = [l.rstrip("\n").split("\t") for l in sys.stdin if l.strip()]
ratios = [int(r[4]) / int(r[5]) for r in rows if r[4] not in ("None", "") and r[5] not in ("None", "", "0")]
worst_exec = max(int(r[1]) for r in rows)
print(f"ratio worst checkpoint gap at an event / usual gap = {max(ratios):.2f} (goal <= 2.0: at most one checkpoint late); "
      f"worst exec→READY {worst_exec} ms (goal < 1000 ms)" if ratios else "ratio: no checkpoint completed after an event")'
