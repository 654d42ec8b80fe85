#!/usr/bin/env bash
# End-to-end test of the flink-agent packages on a booted Debian 12 with a real systemd:
# install, readiness, socket permissions, journal fields, watchdog restart, refused reload,
# upgrade, purge; plus static checks of the .deb (lintian) and the .rpm (layout, scriptlets, rpmlint).
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

finish() {
  local rc=$?
  if [ -n "$leader" ] && { [ "$failed" -gt 0 ] || [ "$rc" -ne 0 ]; }; then
    echo "--- flink-agent journal (last 40 lines) ---"
    inside journalctl -u flink-agent -n 40 --no-pager 2>&1 || true
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

# --- Static checks: deb vs rpm layout, scriptlets, linters ---------------------------------------
# rpm puts the unit under /usr/lib/systemd (on rpm distributions /lib is a symlink to it); the
# deb's doc and lintian files mean nothing to rpm.
deb_files=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { sub(/^\./, "", $6); print $6 }' \
  | grep -v '^/usr/share/\(doc\|lintian\)/' | sed 's|^/lib/systemd/|/usr/lib/systemd/|' | sort)
rpm_files=$(rpm -qpl "$rpm" 2>/dev/null | sort)
check "rpm and deb ship the same files" equals "$rpm_files" "$deb_files"
expected_files=$(printf '%s\n' /etc/flink-agent/agent.toml /usr/bin/flink-agent \
  /usr/lib/systemd/system/flink-agent.service /usr/lib/sysusers.d/flink-agent.conf \
  /usr/lib/tmpfiles.d/flink-agent.conf | sort)
check "the packages ship binary, unit, config, sysusers, tmpfiles" equals "$rpm_files" "$expected_files"
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
# Exactly one JobManager and one TaskManager JVM in the container, both children of the agent
# (the scripts exec java) and in the unit's cgroup: nothing orphaned, nothing duplicated.
jvms_owned_by_agent() {
  local agent c pid
  agent=$(prop MainPID)
  for c in $jm_class $tm_class; do
    [ "$(jvm_count "$c")" = 1 ] || { echo "       $(jvm_count "$c") JVMs of $c"; return 1; }
    pid=$(inside pgrep -f -- "$c")
    equals "$(inside ps -o ppid= -p "$pid" | tr -d ' ')" "$agent" || return 1
    inside grep -q "/system.slice/$unit" "/proc/$pid/cgroup" || return 1
  done
}
no_jvms() { [ "$(jvm_count $jm_class)" = 0 ] && [ "$(jvm_count $tm_class)" = 0 ]; }

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
check "one JobManager and one TaskManager JVM, children of the agent" jvms_owned_by_agent
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
check "journal: JobManager output tagged FLINK_PROCESS=jobmanager" journal_has FLINK_PROCESS=jobmanager
check "journal: TaskManager output tagged FLINK_PROCESS=taskmanager" journal_has FLINK_PROCESS=taskmanager
# The sandbox shows up as EPERM/EACCES errors in the agent's own records (not Flink's output).
agent_errors() { python3 -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    if e.get("SYSLOG_IDENTIFIER") == "flink-agent" and "FLINK_PROCESS" not in e and int(e.get("PRIORITY", 6)) <= 4:
        print("       " + e.get("MESSAGE", ""))' <<<"$journal"; }
check "journal: no warnings or errors from the agent itself" equals "$(agent_errors)" ""
# Restarts skip Flink's scripts: the JVM commands are learned (environ read as the flink user).
for kind in jobmanager taskmanager; do
  check "journal: the $kind JVM command was learned" journal_has SYSLOG_IDENTIFIER=flink-agent \
    "MESSAGE=learned the $kind JVM command; restarts under this config skip Flink's scripts"
done

# --- Watchdog ------------------------------------------------------------------------------------
restarts_before=$(prop NRestarts)
hung=$(prop MainPID)
inside kill -STOP "$hung"
restarted() { [ "$(prop NRestarts)" -gt "$restarts_before" ] && [ "$(prop MainPID)" != "$hung" ] && [ "$(prop ActiveState)" = active ]; }
# WatchdogSec=30s, TimeoutAbortSec=10s, RestartSec=5s, then Flink's start-up.
eventually "a stopped agent is killed by the watchdog and restarted (NRestarts grows)" 180 restarted
# Had systemd not killed it, the old agent would still be stopped; let it run so the check sees it.
inside kill -CONT "$hung" 2>/dev/null || true
check "the hung agent is gone" not quiet inside kill -0 "$hung"
eventually "the cluster is back after the watchdog restart" 120 cluster_up
check "no Flink JVM orphaned or duplicated after the restart" jvms_owned_by_agent

# --- Refused reload ------------------------------------------------------------------------------
inside cp -p $config /root/agent.toml.good
pid_before=$(prop MainPID)
inside sh -c "echo 'this is = = not toml' >> $config"
check "reload with an invalid config is refused" not quiet inside systemctl reload $unit
check "the service stays active" equals "$(inside systemctl is-active $unit)" active
check "the agent was not restarted" equals "$(prop MainPID)" "$pid_before"
check "the cluster keeps running" cluster_up
inside cp -p /root/agent.toml.good $config
check "reload with the restored config succeeds" inside systemctl reload $unit

# --- Upgrade -------------------------------------------------------------------------------------
# An operator's edit of the conffile must survive the upgrade.
inside sh -c "printf '\n# e2e: operator edit\n' >> $config"
edited=$(inside sha256sum $config)
pid_before=$(prop MainPID)
check "dpkg -i of the newer package succeeds" inside dpkg -i /root/pkgs/v2.deb
check "the newer version is installed" equals "$(inside dpkg-query -W -f '${Version}' flink-agent)" "$upgrade_version-1"
restarted_after_upgrade() { [ "$(prop MainPID)" != "$pid_before" ] && [ "$(prop ActiveState)" = active ]; }
eventually "the upgrade restarted the agent" 180 restarted_after_upgrade
check "the operator's config edit is preserved" equals "$(inside sha256sum $config)" "$edited"
eventually "the cluster is back after the upgrade" 120 cluster_up
check "no Flink JVM orphaned or duplicated after the upgrade" jvms_owned_by_agent

# --- Purge ---------------------------------------------------------------------------------------
# Stand-ins for checkpoint data: Flink's local checkpoints under its data dir, and the copies in
# the default file:// object store under the agent's state dir.
inside runuser -u flink -- sh -c 'echo state > /var/lib/flink/checkpoints/e2e-marker'
inside sh -c 'mkdir -p /var/lib/flink-agent/object-store && echo state > /var/lib/flink-agent/object-store/e2e-marker'
check "dpkg --purge succeeds" inside dpkg --purge flink-agent
check "the unit is gone" equals "$(prop LoadState)" not-found
check "no agent process is left" not quiet inside pgrep -x flink-agent
check "no Flink JVM is left" no_jvms
check "the agent's nftables table is removed" not quiet inside nft list table inet flink_agent
check "the config dir is removed" not inside test -e /etc/flink-agent
check "the agent's state is removed" equals "$(inside ls /var/lib/flink-agent)" object-store
check "local checkpoint data is kept" inside test -f /var/lib/flink/checkpoints/e2e-marker
check "the default object store is kept" inside test -f /var/lib/flink-agent/object-store/e2e-marker
