#!/usr/bin/env bash
# Builds (once) and prints the path of a minimal Debian 12 rootfs that can be booted with
# systemd-nspawn and can install the flink-agent .deb. The rootfs lives in the download cache,
# never in the repo, keyed by a hash of the suite and the package list, so changing the list
# builds a fresh one instead of silently reusing a stale tree.
# debootstrap writes into a temporary directory that is renamed only when complete: an interrupted
# run never leaves a half-built rootfs that a later run would trust.
set -euo pipefail

suite=bookworm
# systemd + systemd-sysv: PID 1 for `nspawn -b`. No dbus: systemctl talks to PID 1 over its private
# socket as root, and dbus-daemon cannot finish starting inside nspawn on these machines (it never
# sends READY=1), which would hold `systemctl is-system-running` at "starting".
# openjdk-17-jre-headless, nftables: the .deb's dependencies. procps (pgrep/ps), curl (Flink REST),
# iproute2: used by the e2e assertions and the agent's tooling inside the container.
packages=(systemd systemd-sysv openjdk-17-jre-headless nftables procps curl iproute2)

# The mirror apt on this machine already uses; host names are read at run time, not stored here.
# Handles both deb822 (*.sources) and one-line (sources.list) formats and picks the entry that
# serves the plain `bookworm` suite (not -security/-updates).
mirror_from_apt() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$suite" '
      BEGIN { RS=""; FS="\n" }
      {
        uris=""; suites=""; enabled=1
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/)    { uris=$i;   sub(/^URIs:[ \t]*/, "", uris) }
          if ($i ~ /^Suites:/)  { suites=" " $i " "; sub(/^ Suites:/, "", suites) }
          if ($i ~ /^Enabled:[ \t]*no/) enabled=0
          if ($i ~ /^Types:/ && $i !~ /[ \t]deb([ \t]|$)/) enabled=0
        }
        if (enabled && suites ~ ("[ \t]" suite "[ \t]")) { split(uris, u, /[ \t]+/); print u[1]; exit }
      }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # `deb [options] URI suite components...`: drop the optional [options] block first.
    sed -E 's/\[[^]]*\]//' "$f" | awk -v suite="$suite" '$1 == "deb" && $3 == suite { print $2; exit }'
  done
}
mirror="${DEBIAN_MIRROR:-$(mirror_from_apt | head -n1)}"
if [ -z "$mirror" ]; then
  echo "rootfs.sh: no apt source for suite $suite found; set DEBIAN_MIRROR" >&2
  exit 1
fi

cache="${FLINK_AGENT_CACHE:-$HOME/.cache/flink-agent}"
key=$(printf '%s\n' "$suite" "${packages[@]}" | sha256sum | cut -c1-16)
dest="$cache/rootfs-$key"
if [ -x "$dest/usr/lib/systemd/systemd" ] && [ -x "$dest/usr/bin/java" ]; then
  echo "$dest"
  exit 0
fi

mkdir -p "$cache"
tmp=$(mktemp -d "$cache/rootfs-$key.partial.XXXXXX")
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
include=$(IFS=,; echo "${packages[*]}")
echo "rootfs.sh: debootstrap $suite from $mirror into $tmp (first run only, takes minutes)" >&2
debootstrap --variant=minbase --include="$include" "$suite" "$tmp" "$mirror" >&2
# No package caches in the cached tree: every per-run copy would carry them.
rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*
# A booted container wants a hostname and a machine-id that systemd can initialise on first boot.
echo flink-e2e > "$tmp/etc/hostname"
: > "$tmp/etc/machine-id"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "$dest"
