#!/usr/bin/env bash
# End-to-end test of the flink-agent packages on a booted Debian 12 with a real systemd:
# install, readiness, socket permissions, journal, a reload, then a real stateful job (the test
# jobs' KeyedCounter) that must not notice the agent going away and coming back: agent kill -9,
# `systemctl restart`, watchdog abort and package upgrade each keep the same JobManager and
# TaskManager pids, the same Flink job id, RUNNING in every 200 ms sample, no restore, checkpoints
# completing and becoming durable, and `status` shows the processes adopted with their real
# uptime. Then a refused reload, and a purge that stops Flink. Plus static checks of the .deb
# (lintian) and the .rpm (layout, scriptlets, rpmlint). Prints `e2e: ...` timings as it goes.
#
# Needs root (debootstrap, overlayfs, systemd-nspawn). The first run debootstraps a rootfs into
# ${FLINK_AGENT_CACHE:-~/.cache/flink-agent}; later runs boot a throw-away overlay of it.
# Prints `e2e: N passed, N failed` last and exits non-zero on any failure.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/lib.sh"
repo=$E2E_REPO

if [ "$(id -u)" != 0 ]; then
  echo "e2e: must run as root (debootstrap, mount, systemd-nspawn)" >&2
  exit 2
fi

passed=0 failed=0 pkgs=""
ok() { passed=$((passed + 1)); echo "ok   - $1"; }
fail() { failed=$((failed + 1)); echo "FAIL - $1${2:+: $2}"; }
# check <description> <cmd...>: passes when the command succeeds.
check() { local d=$1; shift; if "$@"; then ok "$d"; else fail "$d"; fi; }
# eventually <description> <timeout-secs> <cmd...>: passes when the command succeeds in time.
eventually() { local d=$1 t=$2; shift 2; if wait_until "$t" "$@"; then ok "$d"; else fail "$d" "not within ${t}s"; fi; }
not() { ! "$@"; }
quiet() { "$@" >/dev/null 2>&1; }
equals() { [ "$1" = "$2" ] || { echo "       expected '$2', got '$1'"; return 1; }; }
differs() { [ "$1" != "$2" ] || { echo "       expected a change from '$2'"; return 1; }; }

finish() {
  local rc=$?
  if [ -n "$leader" ] && { [ "$failed" -gt 0 ] || [ "$rc" -ne 0 ]; }; then
    echo "--- flink-agent journal (last 40 lines) ---"
    inside journalctl -u flink-agent -n 40 --no-pager 2>&1 || true
    echo "--- Flink's journal (last 20 lines) ---"
    inside journalctl -t flink-jobmanager -t flink-taskmanager -n 20 --no-pager 2>&1 || true
  fi
  container_teardown
  [ -n "$pkgs" ] && rm -rf "$pkgs"
  echo "e2e: took ${SECONDS}s"
  echo "e2e: $passed passed, $failed failed"
  if [ "$failed" -gt 0 ] || [ "$rc" -ne 0 ]; then exit 1; fi
}
trap finish EXIT
trap 'exit 130' INT TERM

"$repo/tests/setup/deps.sh"

# --- Build: the package under test and a "newer" one of the same binary for the upgrade --------
pkgs=$(mktemp -d /var/tmp/flink-agent-pkgs.XXXXXX)
"$repo/packaging/build.sh" --out "$pkgs/v1" >/dev/null
deb=$(ls "$pkgs"/v1/flink-agent_*.deb)
rpm=$(ls "$pkgs"/v1/flink-agent-*.rpm)
version=$(dpkg-deb -f "$deb" Version)
upgrade_version="${version%-*}.1"   # 0.1.0-1 → 0.1.0.1-1: sorts after the current one
"$repo/packaging/build.sh" --version "$upgrade_version" --out "$pkgs/v2" >/dev/null
deb2=$(ls "$pkgs"/v2/flink-agent_*.deb)
check "upgrade package version $upgrade_version-1 sorts after $version" \
  dpkg --compare-versions "$upgrade_version-1" gt "$version"
# The stateful job deployed below, compiled against the Flink the container runs.
jar=$(bash "$repo/tests/jobs/build.sh" "$pkgs/jobs")

# --- Static checks: deb vs rpm layout, scriptlets, linters ---------------------------------------
# rpm puts the unit under /usr/lib/systemd (on rpm distributions /lib is a symlink to it), and
# zsh completions where Fedora's zsh looks (Debian's looks in vendor-completions); the deb's doc
# and lintian files mean nothing to rpm.
deb_files=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { sub(/^\./, "", $6); print $6 }' \
  | grep -v '^/usr/share/\(doc\|lintian\)/' \
  | sed 's|^/lib/systemd/|/usr/lib/systemd/|; s|^/usr/share/zsh/vendor-completions/|/usr/share/zsh/site-functions/|' \
  | sort)
rpm_files=$(rpm -qpl "$rpm" 2>/dev/null | sort)
check "rpm and deb ship the same files" equals "$rpm_files" "$deb_files"
expected_files=$(printf '%s\n' /etc/flink-agent/agent.toml /usr/bin/flink-agent \
  /usr/lib/systemd/system/flink-agent.service /usr/lib/sysusers.d/flink-agent.conf \
  /usr/lib/tmpfiles.d/flink-agent.conf /usr/share/bash-completion/completions/flink-agent \
  /usr/share/fish/vendor_completions.d/flink-agent.fish /usr/share/zsh/site-functions/_flink-agent \
  /usr/share/flink-agent/monitoring/grafana-dashboard.json \
  /usr/share/flink-agent/monitoring/prometheus-rules.yaml | sort)
check "the packages ship binary, unit, config, sysusers, tmpfiles, completions, alert rules and dashboard" \
  equals "$(grep -v '^/usr/share/man/' <<<"$rpm_files")" "$expected_files"
# One page per command, generated from the CLI: the top page and every subcommand's.
man_pages=$(grep -c '^/usr/share/man/man8/flink-agent.*\.8\.gz$' <<<"$rpm_files" || true)
subcommands=$("${CARGO_TARGET_DIR:-$repo/target}/release/flink-agent" --help 2>/dev/null | awk '/^Commands:/ { on = 1; next } on && /^  [a-z]/ { print $1 } /^$/ { on = 0 }' | grep -vc '^help$' || true)
check "the packages ship a man page for flink-agent and each of its $subcommands commands (and their subcommands)" \
  test "$man_pages" -gt "$subcommands"
check "the rpm marks the config %config(noreplace)" equals \
  "$(rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm" 2>/dev/null | grep ' /etc/')" \
  "cn /etc/flink-agent/agent.toml"
check "the deb marks the config as a conffile" equals "$(dpkg-deb -I "$deb" conffiles)" /etc/flink-agent/agent.toml
scriptlets=$(rpm -qp --scripts "$rpm" 2>/dev/null)
# rpm --scripts prints "<kind> scriptlet (using /bin/sh):" then the body, for each scriptlet.
rpm_scriptlet() { awk -v want="$1 scriptlet (using /bin/sh):" '/^[a-z]+ scriptlet.*:$/ { on = ($0 == want); next } on' <<<"$scriptlets"; }
for pair in postinst:postinstall prerm:preuninstall postrm:postuninstall; do
  s=${pair%%:*}
  check "rpm $s scriptlet is packaging/scripts/$s" equals "$(rpm_scriptlet "${pair#*:}")" "$(cat "$repo/packaging/scripts/$s")"
  check "deb $s is packaging/scripts/$s" equals "$(dpkg-deb -I "$deb" "$s")" "$(cat "$repo/packaging/scripts/$s")"
done
if out=$(rpmlint -r "$repo/packaging/rpmlintrc" "$rpm" 2>&1); then ok "rpmlint: no errors"; else fail "rpmlint: no errors" "$out"; fi
if out=$(lintian --fail-on error "$deb" 2>&1); then ok "lintian: no errors"; else fail "lintian: no errors" "$out"; fi

# --- Boot ----------------------------------------------------------------------------------------
mkdir -p "$pkgs/in"
cp "$deb" "$pkgs/in/v1.deb"
cp "$deb2" "$pkgs/in/v2.deb"
cp "$jar" "$pkgs/in/test-jobs.jar"
container_boot "$pkgs/in" # copied into the container's /root/pkgs
echo "e2e: container up (leader pid $leader)"

unit=flink-agent.service
config=/etc/flink-agent/agent.toml
sock=/run/flink-agent/agent.sock
prop() { inside systemctl show -P "$1" "$unit"; }
jm_class=org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint
tm_class=org.apache.flink.runtime.taskexecutor.TaskManagerRunner
jvm_count() { inside pgrep -c -f -- "$1" || true; }
# status_py <python expression over s, the parsed `flink-agent status --json`>. --socket: without
# it the CLI reads the socket path from the config, which the reload check makes invalid.
status_py() {
  inside flink-agent status --json --socket $sock 2>/dev/null \
    | python3 -c "import json,sys; s=json.load(sys.stdin); print($1)" 2>/dev/null
}
processes_running() {
  [ "$(status_py "' '.join(p['name']+'='+p['state'] for p in s['processes'])")" = "jobmanager=running taskmanager=running" ]
}
overview_tms() { inside curl -sf http://127.0.0.1:8081/overview | python3 -c 'import json,sys; print(json.load(sys.stdin)["taskmanagers"])' 2>/dev/null; }
overview_shows_tm() { [ "$(overview_tms)" = 1 ]; }
cluster_up() { processes_running && overview_shows_tm; }
status_pid() { status_py "[p['pid'] for p in s['processes'] if p['name'] == '$1'][0]"; }
flink_scopes() { inside systemctl list-units --all --plain --no-legend 'flink-*.scope' | awk '{ print $1 }' | sort | xargs; }
# Exactly one JobManager and one TaskManager JVM in the container, each the pid `status` reports
# and each in its own transient scope flink-<kind>-N.scope under flink.slice (out of the agent's
# unit, so stopping the agent cannot take it along), and no other Flink scope: nothing orphaned,
# nothing duplicated.
jvms_in_scopes() {
  local kind c pid cgroup scopes=""
  for kind in jobmanager taskmanager; do
    if [ $kind = jobmanager ]; then c=$jm_class; else c=$tm_class; fi
    [ "$(jvm_count "$c")" = 1 ] || { echo "       $(jvm_count "$c") JVMs of $c"; return 1; }
    pid=$(inside pgrep -f -- "$c")
    equals "$pid" "$(status_pid $kind)" || return 1
    # The unified hierarchy's line, read inside the container; the path is the host's view (no
    # cgroup namespace entered), so only its end is compared.
    cgroup=$(inside cat "/proc/$pid/cgroup" | grep '^0::')
    [[ $cgroup =~ /flink\.slice/(flink-$kind-[0-9]+\.scope)$ ]] \
      || { echo "       the $kind JVM (pid $pid) is in $cgroup"; return 1; }
    scopes="$scopes ${BASH_REMATCH[1]}"
    # Alone in it (systemd-run and systemd-cat exec'ed into the JVM).
    equals "$(inside ps -e -o pid=,unit= | awk -v u="${BASH_REMATCH[1]}" '$2 == u { print $1 }' | xargs)" "$pid" || return 1
  done
  equals "$(flink_scopes)" "$(echo "$scopes" | tr ' ' '\n' | sort | xargs)"
}
no_jvms() { [ "$(jvm_count $jm_class)" = 0 ] && [ "$(jvm_count $tm_class)" = 0 ]; }
flink_get() { inside curl -sf -m 5 "http://127.0.0.1:8081$1"; }
# jobs_py <python expression over j, the parsed `flink-agent jobs --json`>
jobs_py() {
  inside flink-agent jobs --json --socket $sock 2>/dev/null \
    | python3 -c "import json,sys; j=json.load(sys.stdin); print($1)" 2>/dev/null
}
durable() { jobs_py "j[0]['last_durable_checkpoint']"; }

# --- Install -------------------------------------------------------------------------------------
check "dpkg -i installs the package" inside dpkg -i /root/pkgs/v1.deb
check "the unit is enabled" equals "$(inside systemctl is-enabled $unit 2>&1)" enabled
check "systemd-analyze verify is clean" equals "$(inside systemd-analyze verify $unit 2>&1)" ""
check "the flink user and the flink-agent group exist" quiet inside sh -c 'id flink && getent group flink-agent'
check "data and log dirs are flink:flink 0750" \
  equals "$(inside stat -c '%U:%G %a' /var/lib/flink /var/log/flink | sort -u)" "flink:flink 750"
check "the config is root:flink-agent 0640" equals "$(inside stat -c '%U:%G %a' $config)" "root:flink-agent 640"

# Type=notify: the unit must stay "activating" while Flink comes up and turn active only on the
# agent's READY=1, which it sends once both processes are healthy.
seen_activating=false ready_when_active=""
started_up() {
  local s; s=$(inside systemctl is-active $unit 2>/dev/null) || true
  case "$s" in
    activating) seen_activating=true; return 1 ;;
    active) ready_when_active=$(status_py "s['ready']"); return 0 ;;
    *) return 1 ;;
  esac
}
eventually "the unit becomes active after install" 180 started_up
check "the unit was activating before it was active" $seen_activating
check "when the unit turned active the agent reported ready" equals "$ready_when_active" True
check "flink-agent status: JobManager and TaskManager running" processes_running
eventually "Flink's /overview shows the TaskManager" 60 overview_shows_tm
check "one JobManager and one TaskManager JVM, each in its own scope in flink.slice" jvms_in_scopes
check "the agent's nftables table is in place (CAP_NET_ADMIN under the unit's sandbox)" \
  quiet inside nft list table inet flink_agent
check "the JVMs run as flink" equals "$(inside ps -o user= -C java | sort -u | tr -d ' ')" flink

# --- Socket permissions --------------------------------------------------------------------------
inside useradd --no-create-home --groups flink-agent e2e-member
inside useradd --no-create-home e2e-outsider
check "the socket is root:flink-agent 0660" equals "$(inside stat -c '%U:%G %a' $sock)" "root:flink-agent 660"
check "root can use the CLI" quiet inside flink-agent status
check "a member of flink-agent can use the CLI" quiet inside runuser -u e2e-member -- flink-agent status
# --socket: e2e-outsider cannot read the config either; the socket's own permission is under test.
refused() {
  local out
  out=$(inside runuser -u e2e-outsider -- flink-agent status --socket $sock 2>&1) && return 1
  echo "       refused with: $out"
  [[ $out == *"$sock"* ]] && [[ $out != *jobmanager* ]]
}
check "another user is refused by the socket" refused

# --- Journal -------------------------------------------------------------------------------------
journal=$(inside journalctl -u $unit -o json --no-pager)
# journal_has FIELD=VALUE...: some record has a PRIORITY and all the given fields.
journal_has() { python3 -c '
import json, sys
want = dict(a.split("=", 1) for a in sys.argv[1:])
for line in sys.stdin:
    e = json.loads(line)
    if "PRIORITY" in e and all(e.get(k) == v for k, v in want.items()):
        sys.exit(0)
sys.exit(1)' "$@" <<<"$journal"; }
check "journal: agent records with PRIORITY and SYSLOG_IDENTIFIER=flink-agent" journal_has SYSLOG_IDENTIFIER=flink-agent
# Flink's output goes to the journal from its own scopes (systemd-cat), not through the agent.
flink_journal=$(inside journalctl -t flink-jobmanager -t flink-taskmanager -o json --no-pager)
flink_output() { python3 -c '
import json, re, sys
kind = sys.argv[1]
for line in sys.stdin:
    e = json.loads(line)
    if e.get("SYSLOG_IDENTIFIER") == "flink-" + kind and re.fullmatch("flink-%s-[0-9]+[.]scope" % kind, e.get("_SYSTEMD_UNIT", "")):
        sys.exit(0)
sys.exit(1)' "$1" <<<"$flink_journal"; }
check "journal: JobManager output under SYSLOG_IDENTIFIER=flink-jobmanager, from its scope" flink_output jobmanager
check "journal: TaskManager output under SYSLOG_IDENTIFIER=flink-taskmanager, from its scope" flink_output taskmanager
check "journal: no Flink output among the agent unit's records" not journal_has SYSLOG_IDENTIFIER=flink-jobmanager
# The sandbox shows up as EPERM/EACCES errors in the agent's own records (not Flink's output).
agent_errors() { python3 -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    if e.get("SYSLOG_IDENTIFIER") == "flink-agent" and int(e.get("PRIORITY", 6)) <= 4:
        print("       " + e.get("MESSAGE", ""))' <<<"$journal"; }
check "journal: no warnings or errors from the agent itself" equals "$(agent_errors)" ""
# Restarts skip Flink's scripts: the JVM commands are learned (environ read as the flink user).
for kind in jobmanager taskmanager; do
  check "journal: the $kind JVM command was learned" journal_has SYSLOG_IDENTIFIER=flink-agent \
    "MESSAGE=learned the $kind JVM command; restarts under this config skip Flink's scripts"
done

# --- Reload: checkpoints every second ------------------------------------------------------------
# The default interval is 10 s. With 1 s, several checkpoints complete (and become durable) in the
# few seconds around each agent restart below, so "checkpoints keep completing" is seen within
# seconds, and the gap in completions around an event is measured against a 1 s interval instead
# of hiding in a 10 s one. Set through a reload (a Flink key: both processes restart) before the
# job is deployed, which also covers ExecReload= with a change; the package's conffile is edited
# as an operator would.
agent_pid=$(prop MainPID) jm_pid=$(status_pid jobmanager) tm_pid=$(status_pid taskmanager)
inside sed -i 's/^checkpoint_interval_ms = .*/checkpoint_interval_ms = 1000/' $config
check "the config sets a 1 s checkpoint interval" quiet inside grep -x 'checkpoint_interval_ms = 1000' $config
check "systemctl reload applies it" inside systemctl reload $unit
eventually "the cluster is up again after the reload" 120 cluster_up
check "the reload restarted JobManager and TaskManager (a Flink key changed)" \
  differs "$(status_pid jobmanager) $(status_pid taskmanager)" "$jm_pid $tm_pid"
check "the reload did not restart the agent" equals "$(prop MainPID)" "$agent_pid"
check "after the reload: one JobManager and one TaskManager JVM, each in its own scope" jvms_in_scopes

# --- A stateful job ------------------------------------------------------------------------------
# ProtectHome= hides /root from the agent, which reads the jar itself: such a deploy is refused
# with the path, and the jar goes where a service can read it.
hidden_jar_refused() {
  local out
  out=$(inside flink-agent jobs deploy counter --jar /root/pkgs/test-jobs.jar 2>&1) && return 1
  echo "       refused with: $out"
  [[ $out == *"/root/pkgs/test-jobs.jar"* ]] && [ "$(jobs_py "len(j)")" = 0 ]
}
check "a jar under /root (hidden from the agent by ProtectHome=) is refused with its path" hidden_jar_refused
inside install -D -m 0644 /root/pkgs/test-jobs.jar /opt/jobs/test-jobs.jar
check "jobs deploy counter" inside flink-agent jobs deploy counter --jar /opt/jobs/test-jobs.jar \
  --entry-class flinkagent.testjobs.KeyedCounter --parallelism 1 -- /var/lib/flink/counts.txt 20
deployed_at=$(date +%s)
job_id=$(jobs_py "j[0]['flink_job_id']")
echo "e2e: deployed counter as Flink job $job_id"
first_durable() { [ "$(jobs_py "j[0]['state']")" = RUNNING ] && [ "$(durable)" != None ]; }
eventually "the job runs and a checkpoint of it becomes durable" 120 first_durable
check "Flink checkpoints the job every second" \
  equals "$(flink_get "/jobs/$job_id/checkpoints/config" | python3 -c 'import json,sys; print(json.load(sys.stdin)["interval"])')" 1000
check "the job writes its counts (as the flink user)" inside test -s /var/lib/flink/counts.txt

# Once the first JVMs have settled, the agent dumps their class-data archives (root, in its
# sandbox, from class lists the JVMs wrote as the flink user); later starts map them.
archives_made() {
  local kind
  for kind in jobmanager taskmanager; do
    inside journalctl -u $unit -o cat --no-pager | grep -q "^made the $kind class-data archive " || return 1
  done
}
eventually "journal: the agent made the JobManager's and the TaskManager's class-data archives" 300 archives_made
check "journal: no warnings or errors from the agent since" equals "$(journal=$(inside journalctl -u $unit -o json --no-pager); agent_errors)" ""

# --- The agent goes away and comes back; Flink must not notice ------------------------------------
# survives <event> <timeout> <cmd...>: runs the event's command with the sampler polling Flink
# from 2 s before it until 3 s after the agent is ready again (a new agent process, the unit active,
# status ready), then checks what Flink and the agent saw, and prints the timings.
analysis=""
survives() {
  local event=$1 timeout=$2; shift 2
  local before_agent before_jm before_tm before_started before_durable t_event file a
  before_agent=$(prop MainPID)
  before_jm=$(status_pid jobmanager) before_tm=$(status_pid taskmanager)
  before_started=$(status_py "[p['started_at'] for p in s['processes']]")
  before_durable=$(durable)
  file="$work/samples-${event// /-}.txt"
  sampler_start "$file"
  sleep 2
  t_event=$(epoch_us)
  "$@"
  agent_back() {
    [ "$(prop MainPID)" != "$before_agent" ] && [ "$(prop ActiveState)" = active ] \
      && [ "$(status_py "s['ready']")" = True ]
  }
  eventually "$event: a new agent is ready" "$timeout" agent_back
  # Flink's REST caches checkpoint statistics for up to 3 s (rest.cache.checkpoint-statistics.timeout),
  # so keep sampling until a completion after the event shows, at most 20 s: a window cut 3 s after
  # READY could end before the cache shows one and fail a check that Flink passed.
  local waited=0
  sleep 3
  analysis=$(python3 "$here/samples.py" "$file" --job "$job_id" --event "$t_event")
  while [ "$waited" -lt 20 ] && ! python3 -c "import json,sys; sys.exit(json.loads(sys.argv[1])['checkpoint_gap_at_event_ms'] is None)" "$analysis"; do
    sleep 1; waited=$((waited + 1))
    analysis=$(python3 "$here/samples.py" "$file" --job "$job_id" --event "$t_event")
  done
  sampler_stop
  analysis=$(python3 "$here/samples.py" "$file" --job "$job_id" --event "$t_event")
  a() { python3 -c "import json,sys; a=json.loads(sys.argv[1]); print($1)" "$analysis"; }
  echo "       samples: $analysis"
  every_sample_running() { [ "$(a "a['violation_count'] == 0 and a['samples'] >= 25")" = True ]; }
  check "$event: every sample ($(a "a['samples']") over $(a "a['window_ms']/1000") s) shows job $job_id, alone, RUNNING" every_sample_running
  check "$event: JobManager and TaskManager pids unchanged" \
    equals "$(status_pid jobmanager) $(status_pid taskmanager)" "$before_jm $before_tm"
  check "$event: their start times unchanged" equals "$(status_py "[p['started_at'] for p in s['processes']]")" "$before_started"
  check "$event: Flink restored nothing (latest.restored stays null)" equals "$(a "a['restored']")" "[]"
  completing() { [ "$(a "(a['completed']['last'] or 0) > (a['completed']['first'] or 0) and a['checkpoint_gap_at_event_ms'] is not None")" = True ]; }
  check "$event: checkpoints kept completing ($(a "a['completed']['first']") → $(a "a['completed']['last']") completed)" completing
  [[ $before_durable =~ ^[0-9]+$ ]] || before_durable=-1
  newer_durable() { local d; d=$(durable); [[ $d =~ ^[0-9]+$ ]] && [ "$d" -gt "$before_durable" ]; }
  eventually "$event: a checkpoint newer than $before_durable becomes durable" 30 newer_durable
  adopted_with_uptime() {
    local since=$(( $(date +%s) - deployed_at ))
    [ "$(status_py "all(p['adopted'] and p['uptime_secs'] >= $since for p in s['processes'])")" = True ] \
      || { echo "       deployed ${since}s ago; $(status_py "[(p['name'], p['adopted'], p['uptime_secs']) for p in s['processes']]")"; return 1; }
  }
  check "$event: status shows both processes adopted, with uptimes from before the deploy" adopted_with_uptime
  check "$event: one JobManager and one TaskManager JVM, each in its own scope" jvms_in_scopes
  local exec_us active_us
  exec_us=$(prop ExecMainStartTimestampMonotonic) active_us=$(prop ActiveEnterTimestampMonotonic)
  echo "e2e: $event: agent exec → READY $(( (active_us - exec_us) / 1000 )) ms (systemd's ExecMainStartTimestampMonotonic → ActiveEnterTimestampMonotonic, i.e. READY=1 received)"
  echo "e2e: $event: event → agent READY $(( ($(mono_to_epoch_us "$active_us") - t_event) / 1000 )) ms"
  echo "e2e: $event: job: longest gap between RUNNING samples $(a "a['running_gap_ms']") ms (period $(a "a['period_ms']['median']") ms); checkpoint gap at the event $(a "a['checkpoint_gap_at_event_ms']") ms (median $(a "a['checkpoint_gap_median_ms']") ms)"
}

# The agent crashes: systemd restarts it (Restart=on-failure, RestartSec=5s).
kill_agent() { inside kill -KILL "$(prop MainPID)"; }
survives "agent kill -9" 120 kill_agent

# An operator restarts it (returns once the new agent sent READY=1).
survives "systemctl restart" 120 inside systemctl restart $unit

# The agent hangs: the watchdog aborts it (WatchdogSec=30s, TimeoutAbortSec=10s, RestartSec=5s).
restarts_before=$(prop NRestarts) hung=""
hang_agent() { hung=$(prop MainPID); inside kill -STOP "$hung"; }
survives "watchdog abort" 180 hang_agent
check "watchdog abort: systemd counted the restart (NRestarts grows)" test "$(prop NRestarts)" -gt "$restarts_before"
# Had systemd not killed it, the old agent would still be stopped; let it run so the check sees it.
inside kill -CONT "$hung" 2>/dev/null || true
check "watchdog abort: the hung agent is gone" not quiet inside kill -0 "$hung"

# --- Refused reload ------------------------------------------------------------------------------
inside cp -p $config /root/agent.toml.good
pid_before=$(prop MainPID) jvms_before="$(status_pid jobmanager) $(status_pid taskmanager)"
inside sh -c "echo 'this is = = not toml' >> $config"
check "reload with an invalid config is refused" not quiet inside systemctl reload $unit
# ExecReload reaches the agent even with a file that is not TOML: the refusal is in status.
check "status names the refused reload" \
  equals "$(status_py "'not valid TOML' in (s['config']['last_reload_error'] or '')")" True
check "the service stays active" equals "$(inside systemctl is-active $unit)" active
check "the agent was not restarted" equals "$(prop MainPID)" "$pid_before"
check "the cluster keeps running" cluster_up
check "JobManager and TaskManager keep running (same pids)" \
  equals "$(status_pid jobmanager) $(status_pid taskmanager)" "$jvms_before"
check "the job keeps running" equals "$(jobs_py "j[0]['state']") $(jobs_py "j[0]['flink_job_id']")" "RUNNING $job_id"
inside cp -p /root/agent.toml.good $config
check "reload with the restored config succeeds" inside systemctl reload $unit
check "a reload without a change restarts nothing" \
  equals "$(status_pid jobmanager) $(status_pid taskmanager)" "$jvms_before"

# --- Upgrade -------------------------------------------------------------------------------------
# An operator's edit of the conffile must survive the upgrade.
inside sh -c "printf '\n# e2e: operator edit\n' >> $config"
edited=$(inside sha256sum $config)
upgrade() { check "dpkg -i of the newer package succeeds" inside dpkg -i /root/pkgs/v2.deb; }
# postinst try-restarts a running agent on the new binary.
survives "package upgrade" 180 upgrade
check "the newer version is installed" equals "$(inside dpkg-query -W -f '${Version}' flink-agent)" "$upgrade_version-1"
check "the operator's config edit is preserved" equals "$(inside sha256sum $config)" "$edited"
check "the job is still Flink job $job_id, RUNNING" equals "$(jobs_py "j[0]['state']") $(jobs_py "j[0]['flink_job_id']")" "RUNNING $job_id"

# An adopted cluster takes operator actions as a fresh one does: stop with a savepoint, and start
# again (the agent uploads the jar to the JobManager, which writes it under its temp dir).
check "after the restarts: jobs stop counter takes a savepoint" inside flink-agent jobs stop counter
check "after the restarts: jobs start counter resumes from it" inside flink-agent jobs start counter
running_again() { [ "$(jobs_py "j[0]['state']")" = RUNNING ] && [ "$(jobs_py "j[0]['flink_job_id']")" != "$job_id" ]; }
eventually "after the restarts: the job runs again as a new Flink job" 60 running_again

# --- Purge ---------------------------------------------------------------------------------------
# Stand-ins for checkpoint data: Flink's local checkpoints under its data dir, and the copies in
# the default file:// object store under the agent's state dir.
inside runuser -u flink -- sh -c 'echo state > /var/lib/flink/checkpoints/e2e-marker'
inside sh -c 'mkdir -p /var/lib/flink-agent/object-store && echo state > /var/lib/flink-agent/object-store/e2e-marker'
t0=$SECONDS
check "dpkg --purge succeeds" inside dpkg --purge flink-agent
echo "e2e: dpkg --purge with a job running took $((SECONDS - t0)) s"
check "the unit is gone" equals "$(prop LoadState)" not-found
check "no agent process is left" not quiet inside pgrep -x flink-agent
check "no Flink JVM is left" no_jvms
check "no Flink scope is left" equals "$(flink_scopes)" ""
check "flink.slice is stopped" not quiet inside systemctl is-active flink.slice
check "the agent's nftables table is removed" not quiet inside nft list table inet flink_agent
check "the config dir is removed" not inside test -e /etc/flink-agent
check "the agent's state is removed" equals "$(inside ls /var/lib/flink-agent)" object-store
check "local checkpoint data is kept" inside test -f /var/lib/flink/checkpoints/e2e-marker
check "the default object store is kept" inside test -f /var/lib/flink-agent/object-store/e2e-marker
check "the job's output is kept" inside test -s /var/lib/flink/counts.txt
