#!/usr/bin/env bash
# Installs Azurite, Microsoft's Azure Storage emulator, from the npm registry into the download
# cache (never into the repo) and prints the path of its `azurite-blob` executable. Tests start
# it on 127.0.0.1 with a free port and kill it by PID. Idempotent: a complete install (marker
# file written after npm succeeded) is reused; a half-built one is thrown away and rebuilt.
set -euo pipefail
cache="${FLINK_AGENT_CACHE:-$HOME/.cache/flink-agent}"
version=3.35.0
dir="$cache/azurite-$version"
bin="$dir/node_modules/.bin/azurite-blob"
# Test binaries call this in parallel on a fresh machine: one installs, the others wait for it
# (a second install once deleted the first one's files under its running npm, and Azurite then
# failed to start with "Cannot find module").
mkdir -p "$cache"
exec 9>"$cache/.azurite-install.lock"
flock 9
if [ -f "$dir/.complete" ] && [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
command -v npm >/dev/null || { echo "npm is missing: run tests/setup/deps.sh" >&2; exit 1; }
rm -rf "$dir"
mkdir -p "$dir"
npm install --prefix "$dir" --no-audit --no-fund --no-save --loglevel=error "azurite@$version" >&2
touch "$dir/.complete"
echo "$bin"
