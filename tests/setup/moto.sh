#!/usr/bin/env bash
# Installs moto's S3-compatible server into a venv under the download cache (never into the
# repo) and prints the path of its `moto_server` executable. Tests start it on 127.0.0.1 with a
# free port and kill it by PID. Idempotent: a complete venv (marker file written after pip
# succeeded) is reused; a half-built one is thrown away and rebuilt.
set -euo pipefail
cache="${FLINK_AGENT_CACHE:-$HOME/.cache/flink-agent}"
venv="$cache/moto-venv"
server="$venv/bin/moto_server"
# Test binaries call this in parallel on a fresh machine: one installs, the others wait for it
# (two pip installs into one venv would replace each other's files, as two npm installs did to
# Azurite; see azurite.sh).
mkdir -p "$cache"
exec 9>"$cache/.moto-install.lock"
flock 9
if [ -f "$venv/.complete" ] && [ -x "$server" ]; then
  echo "$server"
  exit 0
fi
mkdir -p "$cache"
rm -rf "$venv"
python3 -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "moto[server]" >&2
touch "$venv/.complete"
echo "$server"
