#!/usr/bin/env bash
# Compiles the test jobs against the Flink distribution's own jars and prints the path of the
# jar. Usage: tests/jobs/build.sh OUT_DIR   (FLINK_HOME overrides the cached distribution).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: build.sh OUT_DIR}"
flink_home="${FLINK_HOME:-$("$here/../setup/flink.sh")}"
java_home="${JAVA_HOME:-/usr/lib/jvm/java-17-openjdk-amd64}"
rm -rf "$out/classes" && mkdir -p "$out/classes"
"$java_home/bin/javac" -nowarn -d "$out/classes" -cp "$flink_home/lib/*" \
  $(find "$here/src" -name '*.java') >&2
"$java_home/bin/jar" --create --file "$out/test-jobs.jar" -C "$out/classes" . >&2
echo "$out/test-jobs.jar"
