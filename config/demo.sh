#!/usr/bin/env bash
# Runs a real single-node Flink cluster under the agent on this machine, on embedded defaults
# (config/local.toml): installs only what the demo needs (a C linker, Java 17 with javac, pip for
# the Flink distribution, which goes into ~/.cache/flink-agent), builds the agent and a small
# stateful sample job, starts the agent, deploys the job once Flink is ready (its checkpoints
# become durable in .demo/object-store at once), and prints the web UI and what to try.
# Ctrl-C stops Flink and the agent.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
config=config/local.toml

bash tests/setup/deps.sh demo
flink_home="$(bash tests/setup/flink.sh)"
mkdir -p .demo
ln -sfn "$flink_home" .demo/flink
cargo build --release --bin flink-agent
agent="${CARGO_TARGET_DIR:-$root/target}/release/flink-agent"
jar="$(FLINK_HOME="$flink_home" bash tests/jobs/build.sh .demo/jobs)"

# The agent runs in this shell's process group: Ctrl-C reaches it (SIGINT: it stops Flink,
# then itself); this script only waits for it.
"$agent" run --config "$config" &
pid=$!
trap 'wait "$pid" 2>/dev/null; exit 130' INT
trap 'kill -INT "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; exit 143' TERM

echo "demo: waiting for Flink's JobManager and TaskManager (the first start takes a minute)..." >&2
until "$agent" status --config "$config" >/dev/null 2>&1; do
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" && rc=0 || rc=$?
    echo "demo: the agent stopped (exit $rc) before Flink was ready; its log is above" >&2
    exit 1
  fi
  sleep 1
done

# The sample job, once: its record survives restarts of the demo in .demo/state.
if ! "$agent" jobs --config "$config" --json | grep -q '"name": "demo-counter"'; then
  "$agent" jobs deploy demo-counter --config "$config" --jar "$jar" \
    --entry-class flinkagent.testjobs.KeyedCounter -- "$root/.demo/counts.txt" 5
fi

web_ui=$("$agent" status --config "$config" --json | sed -n 's/^  "web_ui": "\(.*\)",$/\1/p')
fa="$agent --config $config"
cat <<EOF

================================================================================================
 Flink is running under flink-agent.   Web UI: ${web_ui:-http://127.0.0.1:8081}
 Sample job demo-counter (keyed state; counts in .demo/counts.txt) checkpoints every 5 s into
 .demo/flink-data, and the agent makes each checkpoint durable in .demo/object-store.

 In another shell:
   $fa status              # the verdict first, then processes, jobs, checkpoints
   $fa status --watch      # the same, every 2 s
   $fa jobs                # Flink job id, state, newest completed and durable checkpoint
   curl -s http://127.0.0.1:9248/metrics | grep ^flink_agent_    # what Prometheus scrapes
   $fa tls show            # the certificates in force (the demo runs Flink with TLS)
   $fa tls client-cert demo --out .demo/client    # then, with that certificate:
   curl --cacert .demo/client/flink-ca.pem --cert .demo/client/demo.pem --key .demo/client/demo.key https://127.0.0.1:8081/overview

 Try this:
   kill -9 <the jobmanager's PID in \`status\`>
        # the agent restarts the JobManager and the job comes back from its newest
        # checkpoint (\`jobs\`: a new Flink job id, RESTORED FROM chk-N (local))
   edit config/local.toml: number_of_task_slots = 2 under [advanced], then
   $fa reload              # only the TaskManager restarts, now with 2 slots
   $fa restore --dry-run   # where the job would be restored from
   kill -9 $pid; $agent run --config $config
        # kill the agent and start it again: Flink does not notice, the job keeps its id
 Ctrl-C here stops Flink and the agent.
================================================================================================
EOF

wait "$pid" && rc=0 || rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 130 ]; then
  echo "demo: the agent ended (exit $rc); Flink keeps running without it. Start it again with:" >&2
  echo "  $agent run --config $config" >&2
fi
