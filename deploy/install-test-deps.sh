#!/usr/bin/env bash
# Installs the Debian packages the integration tests need when they are missing: `prometheus`
# (a real server the tests start on loopback), `git` and `curl` (the CD script's client).
set -euo pipefail
missing=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v git >/dev/null 2>&1 || missing+=(git)
command -v curl >/dev/null 2>&1 || missing+=(curl)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages needed by the integration tests: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  exit 0
fi
cat >&2 <<MSG
The integration tests need Debian packages that are missing here: ${missing[*]}
(a real Prometheus server with promtool, git, curl). Install them, then run make test again:
  Debian/Ubuntu:  sudo apt-get install ${missing[*]}
  elsewhere:      put the prometheus binary (2.x or newer) on PATH, or set REARGUARD_PROMETHEUS_BIN
MSG
exit 1
