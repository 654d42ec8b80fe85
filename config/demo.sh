#!/usr/bin/env bash
# Runs a real single-node Flink cluster under the agent on this machine, on embedded defaults
# (config/local.toml): installs what is missing (Java 17, the Flink distribution into the cache),
# builds the agent, and runs it in the foreground. Ctrl-C stops Flink and the agent.
# In another shell: target/release/flink-agent status --config config/local.toml
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash tests/setup/deps.sh demo
flink_home="$(bash tests/setup/flink.sh)"
mkdir -p .demo
ln -sfn "$flink_home" .demo/flink
cargo build --release --bin flink-agent
exec target/release/flink-agent run --config config/local.toml
