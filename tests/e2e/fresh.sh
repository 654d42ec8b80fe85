#!/usr/bin/env bash
# The README's two commands on a fresh machine: a minbase Debian 12 with nothing added but what
# a VM that got a Rust toolchain has (ca-certificates; the host's rustup toolchain bind-mounted
# read-only). Inside it, as root:
#   1. `config/demo.sh` until the demo's sample job has a durable checkpoint in
#      .demo/object-store, then Ctrl-C (SIGINT to its process group): it must stop everything;
#   2. `tests/setup/deps.sh` (the test profile) must succeed.
# A missing install step (pip, javac, a linker) fails here even when the CI machine happens to
# have the package. Flink's wheels come from the host's download cache through pip's
# --find-links, so pip itself still has to be installed, but 300 MB are not fetched per run.
#
# Root (debootstrap, overlayfs, systemd-nspawn). The minbase rootfs is built once into
# ${FLINK_AGENT_CACHE:-~/.cache/flink-agent}; every run works on a throw-away overlay of it.
# Prints `fresh: N passed, N failed` last.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
if [ "$(id -u)" != 0 ]; then
  echo "fresh: must run as root (debootstrap, mount, systemd-nspawn)" >&2
  exit 2
fi
cache="${FLINK_AGENT_CACHE:-$HOME/.cache/flink-agent}"
rustup_home="${RUSTUP_HOME:-$HOME/.rustup}"
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
[ -x "$cargo_bin/cargo" ] || { echo "fresh: no cargo in $cargo_bin" >&2; exit 2; }

passed=0 failed=0 work="" mounted=""
ok() { passed=$((passed + 1)); echo "ok   - $1"; }
fail() { failed=$((failed + 1)); echo "FAIL - $1${2:+: $2}"; }
finish() {
  local rc=$?
  local m
  for m in $mounted; do umount "$m" 2>/dev/null || umount -l "$m" || true; done
  [ -n "$work" ] && rm -rf "$work"
  echo "fresh: took ${SECONDS}s"
  echo "fresh: $passed passed, $failed failed"
  if [ "$failed" -gt 0 ] || [ "$rc" -ne 0 ]; then exit 1; fi
}
trap finish EXIT

# --- A minbase Debian 12, cached --------------------------------------------------------------
suite=bookworm
# What installing a Rust toolchain on a minimal VM needed: TLS roots (rustup, crates.io).
packages=(ca-certificates)
# The mirror apt on this machine already uses (the same lookup as tests/e2e/rootfs.sh).
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
    sed -E 's/\[[^]]*\]//' "$f" | awk -v suite="$suite" '$1 == "deb" && $3 == suite { print $2; exit }'
  done
}
key=$(printf '%s\n' minbase "$suite" "${packages[@]}" | sha256sum | cut -c1-16)
rootfs="$cache/rootfs-fresh-$key"
if [ ! -x "$rootfs/usr/bin/apt-get" ]; then
  mirror="${DEBIAN_MIRROR:-$(mirror_from_apt | head -n1)}"
  [ -n "$mirror" ] || { echo "fresh: no apt source for $suite; set DEBIAN_MIRROR" >&2; exit 1; }
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/rootfs-fresh-$key.partial.XXXXXX")
  echo "fresh: debootstrap --variant=minbase $suite (first run only)" >&2
  debootstrap --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" "$suite" "$tmp" "$mirror" >&2
  rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*
  rm -rf "$rootfs" && mv "$tmp" "$rootfs"
fi

# --- A throw-away overlay with the repository's committed tree ---------------------------------
work=$(mktemp -d /var/tmp/flink-agent-fresh.XXXXXX)
mkdir -p "$work/upper" "$work/work" "$work/root"
mount -t overlay overlay -o "lowerdir=$rootfs,upperdir=$work/upper,workdir=$work/work" "$work/root"
mounted="$work/root"
mkdir -p "$work/root/src" "$work/root/root/.rustup" "$work/root/root/.cargo/bin" "$work/root/wheels" \
  "$work/root/root/.cargo/registry" "$work/root/target"
# The host's compiled dependencies, copy-on-write: the agent's own crate is still compiled and
# linked in there (a missing linker or C compiler still fails), but the 300 dependencies are
# not rebuilt from nothing, which took most of the hour this check needed.
registry="${CARGO_HOME:-$HOME/.cargo}/registry"
host_target="${CARGO_TARGET_DIR:-$repo/target}"
for pair in "$host_target:target" "$registry:root/.cargo/registry"; do
  lower=${pair%%:*} name=${pair#*:}
  mkdir -p "$lower" "$work/up-${name//\//_}" "$work/wk-${name//\//_}"
  mount -t overlay overlay \
    -o "lowerdir=$lower,upperdir=$work/up-${name//\//_},workdir=$work/wk-${name//\//_}" "$work/root/$name"
  mounted="$work/root/$name $mounted"
done
git -C "$repo" archive HEAD | tar -x -C "$work/root/src"
# The network's own certificate authorities, as the host has them (a network that re-signs TLS
# needs them on any machine, fresh or not); nothing else of the host goes in.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  mkdir -p "$work/root/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$work/root/usr/local/share/ca-certificates/"
fi
# Flink's wheels, fetched once on the host (tests/setup/flink.sh puts them there).
bash "$repo/tests/setup/flink.sh" >/dev/null

inside() { # <timeout-secs> <script>: runs bash -c script in the fresh machine, as root
  timeout "$1" systemd-nspawn --quiet --register=no --keep-unit -D "$work/root" \
    --bind-ro="$rustup_home:/root/.rustup" --bind-ro="$cargo_bin:/root/.cargo/bin" \
    --bind-ro="$cache/wheels:/wheels" \
    --setenv=CARGO_TARGET_DIR=/target \
    --setenv=HOME=/root --setenv=RUSTUP_HOME=/root/.rustup --setenv=CARGO_HOME=/root/.cargo \
    --setenv=PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --setenv=PIP_FIND_LINKS=/wheels --setenv=PIP_NO_INDEX=1 --setenv=CARGO_TERM_COLOR=never \
    --chdir=/src bash -c "$2"
}

# --- 1. config/demo.sh: ready, sample job, a durable checkpoint, Ctrl-C stops everything -------
demo_script='
set -u
update-ca-certificates >/dev/null 2>&1
setsid bash config/demo.sh > /tmp/demo.log 2>&1 < /dev/null &
demo=$!
durable=""
for _ in $(seq 1 2400); do
  durable=$(ls .demo/object-store/*/jobs/demo-counter/chk-*/manifest.json 2>/dev/null | head -n1)
  [ -n "$durable" ] && break
  kill -0 "$demo" 2>/dev/null || break
  sleep 1
done
echo "durable checkpoint: ${durable:-none}"
grep -q -E "Web UI: https?://127.0.0.1:8081" /tmp/demo.log && echo "banner: web UI"
grep -q "Try this:" /tmp/demo.log && echo "banner: try this"
kill -INT -- "-$demo" 2>/dev/null
for _ in $(seq 1 120); do kill -0 "$demo" 2>/dev/null || break; sleep 1; done
if kill -0 "$demo" 2>/dev/null; then echo "demo still running after Ctrl-C"; fi
# minbase has no ps: the command lines of every process (grep'"'"'s own does not match).
left=$(grep -l -a "org[.]apache[.]flink" /proc/[0-9]*/cmdline 2>/dev/null | wc -l)
echo "flink processes left: $left"
# A compiler or linker failure says why above its last lines: show those lines too.
grep -n -E "^error|error:|note: |collect2|ld returned" /tmp/demo.log | head -n 20
tail -n 30 /tmp/demo.log
'
out=$(inside 3600 "$demo_script" 2>&1) || true
echo "$out" | sed 's/^/  | /'
if echo "$out" | grep -q "^durable checkpoint: .*manifest.json"; then
  ok "config/demo.sh: the sample job has a durable checkpoint in .demo/object-store"
else
  fail "config/demo.sh: no durable checkpoint of demo-counter"
fi
if echo "$out" | grep -q "^banner: web UI" && echo "$out" | grep -q "^banner: try this"; then
  ok "config/demo.sh prints the web UI and what to try"
else
  fail "config/demo.sh: no banner with the web UI and 'Try this'"
fi
if echo "$out" | grep -q "^flink processes left: 0" && ! echo "$out" | grep -q "still running"; then
  ok "Ctrl-C stops Flink and the agent"
else
  fail "Ctrl-C left processes behind"
fi

# --- 2. tests/setup/deps.sh (test profile) ----------------------------------------------------
if out=$(inside 1800 'update-ca-certificates >/dev/null 2>&1; bash tests/setup/deps.sh && command -v promtool nft debootstrap npm >/dev/null && python3 -m venv --help >/dev/null' 2>&1); then
  ok "tests/setup/deps.sh installs the test suite's packages on a fresh machine"
else
  echo "$out" | tail -n 20 | sed 's/^/  | /'
  fail "tests/setup/deps.sh on a fresh machine"
fi
