#!/usr/bin/env bash
# Builds the release binary and the flink-agent .deb and .rpm, and writes them with SHA256SUMS to
# target/packages/ (or --out DIR). One command for CI and for the e2e test.
#
#   packaging/build.sh [--version X.Y.Z] [--out DIR]
#
# --version overrides the package version (default: the workspace version). The e2e test uses it
# to build a "newer" package of the same binary for its upgrade check.
# cargo-deb and cargo-generate-rpm are installed into ~/.cargo/bin on first use and reused.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
version=""
out="$repo/target/packages"
while [ $# -gt 0 ]; do
  case "$1" in
    --version) version="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "usage: $0 [--version X.Y.Z] [--out DIR]" >&2; exit 2 ;;
  esac
done

ensure_tool() { # <cargo subcommand> <crate>
  if ! cargo "$1" --version >/dev/null 2>&1; then
    echo "build.sh: installing $2 into ~/.cargo/bin" >&2
    cargo install --locked "$2" >&2
  fi
}
ensure_tool deb cargo-deb
ensure_tool generate-rpm cargo-generate-rpm

cargo build --release --locked -p flink-agent

# The packaged /etc/flink-agent/agent.toml is the commented reference (config/agent.toml, which
# shows the code's defaults) with the two settings the packages provide for: Flink runs as the
# `flink` user and members of `flink-agent` may use the API socket. Generated, not a second copy
# of the reference to keep in sync; fails if the reference no longer has the lines to switch on.
mkdir -p target/packaging
sed -e 's/^# socket_group = .*/socket_group = "flink-agent"   # created by the package (sysusers.d)/' \
    -e 's/^# user = .*/user = "flink"   # created by the package (sysusers.d)/' \
    config/agent.toml > target/packaging/agent.toml
for line in '^socket_group = "flink-agent"' '^user = "flink"'; do
  grep -q "$line" target/packaging/agent.toml \
    || { echo "build.sh: config/agent.toml no longer has a commented '${line#^}' line to enable" >&2; exit 1; }
done

# Man pages and shell completions, generated from the CLI's own definition (they cannot drift
# from it); man pages compressed as Debian policy and both packagers expect.
bin="${CARGO_TARGET_DIR:-target}/release/flink-agent"
rm -rf target/packaging/man target/packaging/completions
mkdir -p target/packaging/completions
"$bin" generate man target/packaging/man
gzip -9n target/packaging/man/*.8
"$bin" generate completions bash > target/packaging/completions/flink-agent.bash
"$bin" generate completions zsh > target/packaging/completions/_flink-agent
"$bin" generate completions fish > target/packaging/completions/flink-agent.fish

deb_args=() rpm_args=()
if [ -z "$version" ]; then
  # A release: the Debian changelog's newest entry must name this version.
  workspace_version=$(cargo pkgid -p flink-agent | sed 's/.*@//')
  head -n1 packaging/debian/changelog | grep -qF "($workspace_version-1)" \
    || { echo "build.sh: packaging/debian/changelog has no entry for $workspace_version-1" >&2; exit 1; }
else
  # dpkg versions carry a Debian revision; cargo-deb's default is "-1", keep it.
  deb_args=(--deb-version "$version-1")
  rpm_args=(--set-metadata "version = \"$version\"")
fi
mkdir -p "$out"
# Only this build's packages next to its SHA256SUMS.
rm -f "$out"/flink-agent*.deb "$out"/flink-agent*.rpm "$out/SHA256SUMS"
# --no-build: the binary was just built above; the release profile strips it.
cargo deb --no-build --no-strip -p flink-agent -o "$out" "${deb_args[@]}" >/dev/null
cargo generate-rpm -p agent -o "$out" "${rpm_args[@]}" >/dev/null
(cd "$out" && sha256sum flink-agent*.deb flink-agent*.rpm > SHA256SUMS)
ls -1 "$out"/flink-agent*.deb "$out"/flink-agent*.rpm
