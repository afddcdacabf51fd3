#!/usr/bin/env bash
# Sets up (idempotent), builds and places one demo call through the daemon with the embedded
# offline engines and the local development bot. Extra arguments go to `voxhook demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release --locked --quiet
exec ./target/release/voxhook demo "$@"
