#!/usr/bin/env bash
# Installs the Debian `prometheus` package for the integration tests when it is missing.
set -euo pipefail
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing the Debian 'prometheus' package (needed by the integration tests)..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
  exit 0
fi
cat >&2 <<'MSG'
The integration tests need a real Prometheus server (the `prometheus` and `promtool` binaries).
Install it, then run `make test` again:
  Debian/Ubuntu:  sudo apt-get install prometheus
  elsewhere:      put the `prometheus` binary (2.x or newer) on PATH, or set REARGUARD_PROMETHEUS_BIN
MSG
exit 1
