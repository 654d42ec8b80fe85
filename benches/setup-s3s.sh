#!/usr/bin/env bash
# Installs s3s-fs (crates.io: an S3 server over a local directory, in Rust, multi-threaded) for
# the checkpoint-sync throughput benchmark and prints its path. moto answers about 140
# requests/s on one core, which caps every tool on small files; s3s-fs is the benchmark's
# server once object_store's conformance suite passes against it (the benchmark runs it first).
# Pinned: 0.14.1 is the newest release this toolchain (rustc 1.95) builds. Outside the repo, in
# the download cache; idempotent (cargo install skips an installed version).
set -euo pipefail
cache="${FLINK_AGENT_CACHE:-$HOME/.cache/flink-agent}"
root="$cache/s3s-fs-0.14.1"
if ! [ -x "$root/bin/s3s-fs" ]; then
  mkdir -p "$cache"
  cargo install --quiet --locked s3s-fs@0.14.1 --features binary --root "$root" \
    --target-dir "$cache/s3s-fs-build" >&2
  rm -rf "$cache/s3s-fs-build"
fi
echo "$root/bin/s3s-fs"
