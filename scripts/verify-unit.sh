#!/usr/bin/env bash
# Checks the systemd units with systemd-analyze: `verify` (syntax, directives, and that
# ExecStart= binaries exist) and `security` (exposure at most 2.0).
#
# The units name /usr/bin/voxhook and /opt/voxhook/piper-venv, which a build machine does not
# have installed, so the checks run on copies whose paths point at the freshly built
# target/debug/voxhook and models/piper-venv. Nothing else in the copies changes.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$PWD/target/debug/voxhook"
[ -x "$bin" ] || { echo "verify-unit: build first ($bin missing)" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
check() { # unit, highest exposure
  local unit=$1 max=$2 exposure
  systemd-analyze verify "$dir/$unit"
  exposure=$(systemd-analyze security --offline=yes "$dir/$unit" |
    sed -n "s/.*Overall exposure level for $unit: \([0-9.]*\).*/\1/p")
  echo "systemd/$unit: verify ok, exposure $exposure"
  awk -v e="$exposure" -v m="$max" 'BEGIN { exit !(e != "" && e <= m) }' ||
    { echo "verify-unit: $unit exposure $exposure is above $max" >&2; exit 1; }
}
sed "s|/usr/bin/voxhook|$bin|g" systemd/voxhook.service >"$dir/voxhook.service"
check voxhook.service 2.0
sed "s|/opt/voxhook/piper-venv|$PWD/models/piper-venv|g" systemd/voxhook-piper.service \
  >"$dir/voxhook-piper.service"
check voxhook-piper.service 2.0
