#!/usr/bin/env bash
# Sets up (idempotent) and runs the whole test suite: formatting, lints, unit and
# integration tests (real sockets, real speech engines), the config example and the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
start=$(date +%s)
cargo fmt --all -- --check
cargo clippy --locked --all-targets --quiet -- -D warnings
cargo build --locked --all-targets --quiet
cargo run --locked --quiet -- validate --config config/voxhook.toml
cargo test --locked --all-targets
echo "test suite wall time: $(( $(date +%s) - start )) s"
