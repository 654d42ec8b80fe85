#!/usr/bin/env bash
# Installs a Flink distribution into the download cache (never into the repo) and prints its
# FLINK_HOME. Flink's official distribution ships inside the PyPI wheels apache-flink and
# apache-flink-libraries; unzipped together they form bin/, lib/, conf/ under pyflink/.
# Idempotent: a complete cached copy is reused.
set -euo pipefail
version="${FLINK_VERSION:-2.3.0}"
cache="${FLINK_AGENT_CACHE:-$HOME/.cache/flink-agent}"
dest="$cache/flink-$version"
home="$dest/pyflink"
if [ -f "$home/lib/flink-dist-$version.jar" ] && [ -x "$home/bin/jobmanager.sh" ]; then
  echo "$home"
  exit 0
fi
mkdir -p "$cache/wheels"
python3 -m pip download --quiet --disable-pip-version-check --no-deps -d "$cache/wheels" \
  "apache-flink==$version" "apache-flink-libraries==$version" >&2
tmp="$dest.partial"
rm -rf "$tmp" && mkdir -p "$tmp"
for w in "$cache/wheels"/apache_flink-"$version"-*.whl "$cache/wheels"/apache_flink_libraries-"$version"-*.whl; do
  python3 -m zipfile -e "$w" "$tmp"
done
# zip archives do not keep the executable bit.
chmod +x "$tmp"/pyflink/bin/*
rm -rf "$dest" && mv "$tmp" "$dest"
echo "$home"
