#!/usr/bin/env bash
# Checks systemd/voxhook.service with systemd-analyze: `verify` (syntax, directives, and that
# ExecStart= binaries exist) and `security` (exposure at most 2.0).
#
# The unit names /usr/bin/voxhook, which a build machine does not have installed, so both
# checks run on a copy whose binary path points at the freshly built target/debug/voxhook.
# Nothing else in the copy changes.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$PWD/target/debug/voxhook"
[ -x "$bin" ] || { echo "verify-unit: build first ($bin missing)" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
sed "s|/usr/bin/voxhook|$bin|g" systemd/voxhook.service >"$dir/voxhook.service"
systemd-analyze verify "$dir/voxhook.service"
exposure=$(systemd-analyze security --offline=yes "$dir/voxhook.service" |
  sed -n 's/.*Overall exposure level for voxhook.service: \([0-9.]*\).*/\1/p')
echo "systemd/voxhook.service: verify ok, exposure $exposure"
awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 2.0) }' ||
  { echo "verify-unit: exposure $exposure is above 2.0" >&2; exit 1; }
