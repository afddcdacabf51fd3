#!/usr/bin/env bash
# Sets up (idempotent) and runs the whole test suite: formatting, lints, unit and
# integration tests (real sockets, real speech engines), the config example and the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
start=$(date +%s)
cargo fmt --all -- --check
cargo clippy --locked --all-targets --quiet -- -D warnings
# The daemon without the simulators (the `sim` feature) is what an integrator links.
cargo clippy --locked --no-default-features --lib --bins --quiet -- -D warnings
cargo build --locked --all-targets --quiet  # benches and examples must keep building
./scripts/verify-unit.sh  # systemd-analyze verify + security on the unit (see the script)
VOXHOOK__BOT__CLIENT_SECRET=example-secret cargo run --locked --quiet -- validate --config config/voxhook.toml
cargo test --locked --lib --bins --tests
./scripts/fuzz.sh all 3  # every wire decoder under libFuzzer for 3 s (README, Fuzzing)
cargo run --locked --quiet -- demo --out target/demo-call.wav
echo "test suite wall time: $(( $(date +%s) - start )) s"
