#!/usr/bin/env bash
# Installs the Debian packages the agent and its test suite need on a fresh Debian 12 machine.
# Idempotent and quiet when everything is present.
set -euo pipefail
pkgs=(openjdk-17-jdk-headless nftables iproute2 debootstrap systemd-container zookeeper python3-venv
  rpm rpmlint lintian)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm installs the Azure emulator (tests/setup/azurite.sh). Checked by command: a machine may
# have Node.js from elsewhere (NodeSource's nodejs package ships npm itself).
command -v npm >/dev/null || missing+=(nodejs npm)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
