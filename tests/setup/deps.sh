#!/usr/bin/env bash
# Installs the Debian packages the agent needs on a fresh Debian 12 machine (a Rust toolchain is
# the only thing assumed). Idempotent and quiet when everything is present.
#
#   deps.sh demo   what config/demo.sh needs: a C linker for cargo, Java 17, pip (the Flink
#                  distribution comes from PyPI wheels)
#   deps.sh        (or `deps.sh test`) all of that plus the test suite's components: nftables,
#                  network namespaces, debootstrap + systemd-nspawn, ZooKeeper, package linters,
#                  venv (the S3 server), Node.js (the Azure emulator), Prometheus and promtool
#                  (the monitoring tests), man (man pages render), curl
#
# Packages are checked by what the scripts run, not only by name: a machine may have Python or
# Node.js from elsewhere (pyenv, NodeSource), and then Debian's package is not needed.
set -euo pipefail
profile=${1:-test}
case "$profile" in
  demo|test) ;;
  *) echo "usage: $0 [demo|test]" >&2; exit 2 ;;
esac

# gcc + libc6-dev: cargo links with `cc`, and ring (TLS) compiles C. openjdk-17-jdk-headless: the
# JVM for Flink, and javac for the sample and test jobs.
pkgs=(gcc libc6-dev openjdk-17-jdk-headless)
if [ "$profile" = test ]; then
  # zookeeper + libslf4j-java: the three-node tests run Debian's ZooKeeper server with SLF4J's
  # simple binding; curl: the three-node benchmark's anchor submits through Flink's REST API;
  # prometheus, man-db: the monitoring tests (promtool, Prometheus scraping) and man pages.
  pkgs+=(nftables iproute2 debootstrap systemd-container zookeeper libslf4j-java rpm rpmlint lintian
    python3-venv prometheus man-db curl)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# tests/setup/flink.sh downloads Flink's wheels with `python3 -m pip download`; a minimal Debian 12
# has neither python3 nor pip (and python3-venv does not bring pip along).
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
if [ "$profile" = test ]; then
  # npm installs the Azure emulator (tests/setup/azurite.sh).
  command -v npm >/dev/null || missing+=(nodejs npm)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # policy-rc.d 101: packages with a service (prometheus) must not start it here; the tests
  # start their own instances and nothing may be left running.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d.flink-agent
  chmod +x /usr/sbin/policy-rc.d.flink-agent
  [ -e /usr/sbin/policy-rc.d ] || ln -s policy-rc.d.flink-agent /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  [ "$(readlink /usr/sbin/policy-rc.d 2>/dev/null)" = policy-rc.d.flink-agent ] && rm -f /usr/sbin/policy-rc.d
  rm -f /usr/sbin/policy-rc.d.flink-agent
fi
